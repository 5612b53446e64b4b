"""Teams activities → core turns. Pure functions: what to answer, where, and what to ignore.

- Personal chat (``conversationType`` ``personal``, or none as from the Bot Framework Emulator):
  every message is answered; the chat is one conversation.
- Channel: only messages that @mention the bot, answered in the same reply chain. A reply chain
  arrives as ``conversation.id = "<channel>;messageid=<root>"``: the root message id is the
  thread, the channel id (without the suffix) is the channel.
- Group chat: only messages that @mention the bot; a group chat has no threads, so the chat is
  one conversation.
- ``conversationUpdate`` that adds the bot: a welcome.
- ``invoke`` ``message/submitAction`` with ``actionName`` ``feedback``: a click on Teams'
  feedback buttons under an answer (``value.actionValue.reaction`` ``like`` or ``dislike``,
  ``replyToId`` the answer's message). Its key is built from the invoke's own tenant and
  conversation, like a message's, so a click can only name an answer of the conversation it was
  made in. The optional comment (``actionValue.feedback``) is never read: only the rating is
  recorded. A feedback invoke of another shape is ignored (acknowledged, nothing recorded).
- Anything else (edits, reactions, other invokes, other members joining, the bot's own
  activities): ignored.
- ``forget me``: erase what is stored about the sender (the worker does it in a personal chat
  only, and elsewhere says where to ask).

The mention is removed before the question reaches the model. botbuilder's
``TurnContext.remove_recipient_mention`` is not used for that: it deletes the bot's *name*
wherever it occurs in the message ("<at>Chatbot</at> how do I install Chatbot?" loses its last
word) and raises ``KeyError`` on a mention entity without ``mentioned``. Instead the mention
entities are read here and exactly their markup (the entity's ``text``, or ``<at>Name</at>``) is
removed.

msrest's deserializer keeps whatever JSON arrived in free-form fields (``channelData``, a
conversation's ``tenantId``, entity properties) and empty items in lists (it turns a number or a
list where a string belongs into its repr: the ingress checks those fields first), so
:func:`from_activity` checks the types of every field it reads and refuses the activity
(ValueError) when one is wrong.

In unauthenticated local mode nothing vouches for an activity's URLs, so the ingress passes
``download_allowed`` (loopback only, :func:`is_loopback_url`): a file whose download URL fails it
keeps no URL, and the worker answers that it cannot read it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationReference

from core.domain import ConversationKey, FileRef, Role, Turn

log = logging.getLogger(__name__)

PLATFORM = "teams"
NO_TENANT = "no-tenant"  # the Emulator and unauthenticated local use send no tenant
PERSONAL, CHANNEL, GROUP_CHAT = "personal", "channel", "groupChat"

_MESSAGE_ID = re.compile(r";messageid=(?P<root>[^;]+)", re.IGNORECASE)
_SUMMARIZE = re.compile(r"^/?summari[sz]e(?:\s.*)?$", re.IGNORECASE | re.DOTALL)
_FORGET = re.compile(r"^/?forget me[.!]?$", re.IGNORECASE)
_BLANKS = re.compile(r"[ \t\u00a0]+")


class Action(StrEnum):
    ANSWER = "answer"
    WELCOME = "welcome"
    SUMMARIZE = "summarize"
    FORGET = "forget"
    FEEDBACK = "feedback"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where the worker sends the reply: the activity's connector and conversation.

    ``reference`` is botbuilder's ``ConversationReference`` as JSON (it travels in a job);
    ``reply_to_id`` is the message answered (None for a welcome, which starts a new post).
    """

    service_url: str
    reference: Mapping[str, Any]
    reply_to_id: str | None
    conversation_type: str

    @property
    def conversation_id(self) -> str:
        return str((self.reference.get("conversation") or {}).get("id") or "")

    def conversation_reference(self) -> ConversationReference:
        return ConversationReference().deserialize(dict(self.reference))

    def to_payload(self) -> dict[str, Any]:
        return {
            "service_url": self.service_url,
            "reference": dict(self.reference),
            "reply_to_id": self.reply_to_id,
            "conversation_type": self.conversation_type,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ReplyTarget:
        return cls(
            service_url=str(data["service_url"]),
            reference=dict(data["reference"]),
            reply_to_id=data.get("reply_to_id"),
            conversation_type=str(data.get("conversation_type") or PERSONAL),
        )


@dataclass(frozen=True, slots=True)
class TeamsEvent:
    """What an activity asks for. ``turn`` is set for ANSWER; ``key``, ``dedupe_id`` and
    ``reply`` for everything but IGNORE, whose ``reason`` says why (for the log)."""

    action: Action
    reason: str = ""
    key: ConversationKey | None = None
    turn: Turn | None = None
    dedupe_id: str = ""
    reply: ReplyTarget | None = None
    feedback: FeedbackClick | None = None


@dataclass(frozen=True, slots=True)
class FeedbackClick:
    """A click on the feedback buttons: which message, who, and which way."""

    message_id: str
    # The person's Teams id (``from.id``), the id their questions are stored under: so that
    # "forget me", which erases by that id, erases their ratings too (not ``aadObjectId``).
    voter: str
    reaction: str  # "like" | "dislike"

    def to_payload(self) -> dict[str, str]:
        return {"message_id": self.message_id, "voter": self.voter, "reaction": self.reaction}


def ignore(reason: str) -> TeamsEvent:
    return TeamsEvent(Action.IGNORE, reason=reason)


def from_activity(
    activity: Activity, *, download_allowed: Callable[[str], bool] | None = None
) -> TeamsEvent:
    """The event for one incoming activity (already authenticated); ValueError for an activity
    whose fields have the wrong types. ``download_allowed``: which file download URLs may be
    kept (None: any; the worker checks them again)."""
    problem = shape_problem(activity)
    if problem is not None:
        raise ValueError(problem)
    conversation = activity.conversation
    bot = activity.recipient
    if conversation is None or not conversation.id or bot is None or not bot.id:
        return ignore("no conversation or recipient")
    sender = activity.from_property
    if sender is not None and sender.id == bot.id:
        return ignore("the bot's own activity")
    if activity.type == ActivityTypes.conversation_update:
        return _welcome(activity)
    if activity.type == ActivityTypes.invoke:
        return _feedback(activity)
    if activity.type != ActivityTypes.message:
        return ignore(f"activity type {activity.type!r}")
    if sender is None or not sender.id or not activity.id:
        return ignore("message without sender or id")

    kind = conversation_type(activity)
    mentioned = is_mentioned(activity)
    if kind != PERSONAL and not mentioned:
        return ignore(f"{kind} message without a mention of the bot")
    text = strip_bot_mentions(activity) if mentioned else normalize(activity.text or "")

    tenant = tenant_id(activity)
    channel, root = split_conversation_id(conversation.id)
    thread = (root or activity.id) if kind == CHANNEL else channel
    key = ConversationKey(PLATFORM, tenant, channel, thread)
    turn = Turn(
        key=key,
        turn_id=str(activity.id),
        role=Role.USER,
        user_id=str(sender.id),
        user_name=str(sender.name or ""),
        text=text,
        created_at=activity.timestamp.timestamp() if activity.timestamp else time.time(),
        files=uploaded_files(activity, download_allowed),
    )
    action = Action.SUMMARIZE if _SUMMARIZE.match(text) else Action.ANSWER
    if _FORGET.match(text):
        action = Action.FORGET  # the worker erases only in a personal chat
    return TeamsEvent(
        action,
        key=key,
        turn=turn,
        dedupe_id=dedupe_id(tenant, conversation.id, str(activity.id)),
        reply=_reply_target(activity, tenant, reply_to_id=str(activity.id)),
    )


def _welcome(activity: Activity) -> TeamsEvent:
    bot_id = activity.recipient.id
    if not any(member.id == bot_id for member in activity.members_added or ()):
        return ignore("conversation update without the bot being added")
    tenant = tenant_id(activity)
    channel, _ = split_conversation_id(activity.conversation.id)
    key = ConversationKey(PLATFORM, tenant, channel, channel)
    event_id = activity.id or f"welcome:{bot_id}"
    return TeamsEvent(
        Action.WELCOME,
        key=key,
        dedupe_id=dedupe_id(tenant, activity.conversation.id, event_id),
        reply=_reply_target(activity, tenant, reply_to_id=None),
    )


FEEDBACK_INVOKE = "message/submitAction"
REACTIONS = ("like", "dislike")


def _feedback(activity: Activity) -> TeamsEvent:
    """A feedback click (see the module docstring), or IGNORE for any other invoke."""
    if activity.name != FEEDBACK_INVOKE:
        return ignore(f"invoke {str(activity.name)[:64]!r}")
    value = activity.value if isinstance(activity.value, Mapping) else {}
    if value.get("actionName") != "feedback":
        return ignore("submitAction that is not feedback")
    action = value.get("actionValue")
    reaction = action.get("reaction") if isinstance(action, Mapping) else None
    if reaction not in REACTIONS:
        return ignore("feedback without a like or dislike")
    sender = activity.from_property
    message_id = activity.reply_to_id
    if sender is None or not sender.id or not isinstance(message_id, str) or not message_id:
        return ignore("feedback without a sender or a message")
    kind = conversation_type(activity)
    tenant = tenant_id(activity)
    channel, root = split_conversation_id(activity.conversation.id)
    if kind == CHANNEL and root is None:
        return ignore("channel feedback outside a reply chain")
    key = ConversationKey(PLATFORM, tenant, channel, root if kind == CHANNEL and root else channel)
    event_id = activity.id or f"feedback:{message_id}:{sender.id}:{reaction}"
    return TeamsEvent(
        Action.FEEDBACK,
        key=key,
        dedupe_id=dedupe_id(tenant, activity.conversation.id, event_id),
        reply=_reply_target(activity, tenant, reply_to_id=None),
        feedback=FeedbackClick(message_id, str(sender.id), str(reaction)),
    )


def _reply_target(activity: Activity, tenant: str, *, reply_to_id: str | None) -> ReplyTarget:
    reference = TurnContext.get_conversation_reference(activity)
    if reference.conversation is not None and tenant != NO_TENANT:
        # Teams sends ``conversation.tenantId``, which botbuilder's model (``tenantID``) does not
        # read; carry the tenant forward the way BotFrameworkAdapter does for incoming turns.
        reference.conversation.tenant_id = tenant
    return ReplyTarget(
        service_url=str(activity.service_url or ""),
        reference=reference.serialize(),
        reply_to_id=reply_to_id,
        conversation_type=conversation_type(activity),
    )


def dedupe_id(tenant: str, conversation_id: str, activity_id: str) -> str:
    return f"teams:{tenant}:{conversation_id}:{activity_id}"


def conversation_type(activity: Activity) -> str:
    kind = activity.conversation.conversation_type if activity.conversation else None
    if kind in (CHANNEL, GROUP_CHAT):
        return str(kind)
    return PERSONAL


def tenant_id(activity: Activity) -> str:
    channel_data = activity.channel_data if isinstance(activity.channel_data, Mapping) else {}
    tenant = (channel_data.get("tenant") or {}).get("id")
    conversation = activity.conversation
    if not tenant and conversation is not None:
        extra = conversation.additional_properties or {}
        tenant = conversation.tenant_id or extra.get("tenantId")
    return str(tenant) if tenant else NO_TENANT


def split_conversation_id(conversation_id: str) -> tuple[str, str | None]:
    """``"19:x@thread.tacv2;messageid=17"`` → ``("19:x@thread.tacv2", "17")``."""
    match = _MESSAGE_ID.search(conversation_id)
    if match is None:
        return conversation_id, None
    return conversation_id[: match.start()] + conversation_id[match.end() :], match["root"]


def _bot_mentions(activity: Activity) -> list[dict[str, Any]]:
    """The properties (``mentioned``, ``text``) of each mention entity that names the bot."""
    found = []
    for entity in activity.entities or ():
        if not (isinstance(entity.type, str) and entity.type.lower() == "mention"):
            continue
        props = entity.additional_properties or {}
        mentioned = props.get("mentioned")
        if isinstance(mentioned, Mapping) and mentioned.get("id") == activity.recipient.id:
            found.append(props)
    return found


def is_mentioned(activity: Activity) -> bool:
    return bool(_bot_mentions(activity))


def strip_bot_mentions(activity: Activity) -> str:
    """The message text without the bot's mention markup; other mentions stay."""
    text = activity.text or ""
    for props in _bot_mentions(activity):
        markup = str(props.get("text") or "")
        name = str(props["mentioned"].get("name") or "")
        for candidate in (markup, f"<at>{name}</at>" if name else ""):
            if candidate:
                text = text.replace(candidate, " ")
    return normalize(text)


def normalize(text: str) -> str:
    lines = (_BLANKS.sub(" ", line).strip() for line in text.replace("&nbsp;", " ").splitlines())
    return "\n".join(lines).strip()


FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"


def uploaded_files(
    activity: Activity, download_allowed: Callable[[str], bool] | None = None
) -> tuple[FileRef, ...]:
    """Files a person uploaded in a personal chat: Teams sends each as an attachment carrying a
    short-lived, pre-authorised ``downloadUrl`` (no bot credentials are sent to fetch it). A URL
    ``download_allowed`` refuses is dropped, so that the worker says it cannot read the file."""
    files = []
    for attachment in activity.attachments or ():
        if attachment.content_type != FILE_DOWNLOAD_INFO or not isinstance(
            attachment.content, dict
        ):
            continue
        content = attachment.content
        url = _text(content.get("downloadUrl"))
        if not url:
            continue
        if download_allowed is not None and not download_allowed(url):
            log.warning("file download URL refused: not loopback in unauthenticated mode")
            url = ""
        name = _text(attachment.name) or _text(content.get("uniqueId")) or "file"
        file_type = _text(content.get("fileType"))
        files.append(
            FileRef(
                file_id=_text(content.get("uniqueId")) or name,
                name=name if "." in name or not file_type else f"{name}.{file_type}",
                url=url,
                permalink=_text(attachment.content_url),
            )
        )
    return tuple(files)


def is_loopback_url(url: object) -> bool:
    """An http(s) URL to this machine (127.0.0.0/8, ::1, ``localhost``): what the Bot Framework
    Emulator uses, and all that unauthenticated mode may reach."""
    if not isinstance(url, str) or not url.isascii() or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return False
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or parts.username is not None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(value: object) -> str:
    """``value`` if it is a string, else empty: a field of the wrong type counts as absent."""
    return value if isinstance(value, str) else ""


_OPTIONAL_TEXT = (str, type(None))


def shape_problem(activity: Activity) -> str | None:
    """Which field :func:`from_activity` reads has the wrong type, or None."""
    checks: list[tuple[str, object, tuple[type, ...]]] = [
        ("id", activity.id, _OPTIONAL_TEXT),
        ("type", activity.type, _OPTIONAL_TEXT),
        ("text", activity.text, _OPTIONAL_TEXT),
        ("name", activity.name, _OPTIONAL_TEXT),
        ("replyToId", activity.reply_to_id, _OPTIONAL_TEXT),
        ("channelId", activity.channel_id, _OPTIONAL_TEXT),
        ("serviceUrl", activity.service_url, _OPTIONAL_TEXT),
        ("entities", activity.entities, (list, type(None))),
        ("attachments", activity.attachments, (list, type(None))),
        ("membersAdded", activity.members_added, (list, type(None))),
    ]
    for role, account in (("from", activity.from_property), ("recipient", activity.recipient)):
        if account is not None:
            checks += [(f"{role}.id", account.id, _OPTIONAL_TEXT)]
            checks += [(f"{role}.name", account.name, _OPTIONAL_TEXT)]
    conversation = activity.conversation
    if conversation is not None:
        extra = conversation.additional_properties or {}
        checks += [
            ("conversation.id", conversation.id, _OPTIONAL_TEXT),
            ("conversation.conversationType", conversation.conversation_type, _OPTIONAL_TEXT),
            ("conversation.tenantId", conversation.tenant_id, _OPTIONAL_TEXT),
            ("conversation.tenantId", extra.get("tenantId"), _OPTIONAL_TEXT),
        ]
    if isinstance(activity.channel_data, Mapping):
        tenant = activity.channel_data.get("tenant")
        checks += [("channelData.tenant", tenant, (Mapping, type(None)))]
        if isinstance(tenant, Mapping):
            checks += [("channelData.tenant.id", tenant.get("id"), _OPTIONAL_TEXT)]
    for name, value, types in checks:
        if not isinstance(value, types):
            return f"activity {name} is a {type(value).__name__}"
    for name, items, kind in (
        ("entities", activity.entities, object),
        ("attachments", activity.attachments, object),
        ("membersAdded", activity.members_added, ChannelAccount),
    ):
        if any(item is None or not isinstance(item, kind) for item in items or ()):
            return f"activity {name} holds an empty or wrong item"
    for member in activity.members_added or ():
        if not isinstance(member.id, _OPTIONAL_TEXT):
            return "activity membersAdded holds an id that is no string"
    for attachment in activity.attachments or ():
        for field_name in ("content_type", "name", "content_url"):
            if not isinstance(getattr(attachment, field_name, None), _OPTIONAL_TEXT):
                return f"activity attachment {field_name} is not a string"
    return None
