"""Slack events → core turns. Pure functions: what to answer, where, and what to ignore.

- ``app_mention`` in a channel: answer in that message's thread.
- ``message`` in a DM: answer in the DM (top level shares one conversation; a DM thread is its own).
  The assistant panel's threads are DM threads (:mod:`bots.slack.panel_jobs` routes them).
- ``message`` in a channel thread without a mention: a follow-up, answered only if the bot is
  already part of that thread's conversation (the worker checks history; ingress stays fast).
- Never: bots (ourselves included), edits, deletions, joins and other subtypes, top-level channel
  chatter without a mention.

A mention in a thread reaches us twice (``app_mention`` and ``message``); both map to the same
dedupe id (team, channel, message ts), so one answer comes out.

Every function here is total over JSON: a signed payload of an unexpected shape (a list where an
object belongs, a number for a ts) yields "nothing to answer", never an exception.
:func:`payload_problem` checks, before Bolt reads a payload, the envelope fields that Bolt and
these functions index; Bolt itself raises on many wrong types there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.domain import ConversationKey, FileRef, Role, Turn

PLATFORM = "slack"
DM_THREAD = "dm"
_ANSWERED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_TS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")  # "1700000100.000100"


@dataclass(frozen=True, slots=True)
class SlackTurn:
    turn: Turn
    channel: str
    thread_ts: str | None  # where the reply goes; None: top level (a DM)
    needs_history: bool  # a follow-up: answer only if the bot is in this conversation
    dm_thread: bool = False  # a thread of a DM: the assistant panel's threads are these
    user_team: str = ""  # the asker's own team (another one for a Slack Connect guest), if told

    @property
    def dedupe_id(self) -> str:
        return f"slack:{self.turn.key.workspace}:{self.channel}:{self.turn.turn_id}"


def bot_user_id(body: Mapping[str, Any]) -> str:
    authorizations = body.get("authorizations")
    for authorization in authorizations if isinstance(authorizations, list) else ():
        if not isinstance(authorization, Mapping):
            continue
        user = authorization.get("user_id")
        if authorization.get("is_bot") is True and isinstance(user, str) and user:
            return user
    return ""


def from_event(body: Mapping[str, Any]) -> SlackTurn | None:
    """The turn to answer for an Events API callback, or None when there is nothing to answer
    (including a payload of an unexpected shape)."""
    event = body.get("event")
    if not isinstance(event, Mapping):
        return None
    kind = event.get("type")
    if kind not in ("app_mention", "message"):
        return None
    subtype = event.get("subtype")
    if event.get("bot_id") or not (subtype is None or isinstance(subtype, str)):
        return None
    if subtype not in _ANSWERED_SUBTYPES:
        return None
    bot = bot_user_id(body)
    user = text_of(event.get("user"))
    channel = text_of(event.get("channel"))
    ts = text_of(event.get("ts"))
    team = text_of(body.get("team_id")) or text_of(event.get("team"))
    if not (user and channel and ts and team) or user == bot or not _TS.fullmatch(ts):
        return None
    thread_ts = event.get("thread_ts")
    if thread_ts is not None and not (isinstance(thread_ts, str) and _TS.fullmatch(thread_ts)):
        return None
    text = event.get("text")
    if not isinstance(text, str | None):
        return None
    text = text or ""
    mentioned = kind == "app_mention" or (bool(bot) and f"<@{bot}" in text)

    if event.get("channel_type") == "im":
        key_thread, reply_thread, needs_history = thread_ts or DM_THREAD, thread_ts, False
    elif mentioned:
        key_thread = reply_thread = thread_ts or ts
        needs_history = False
    elif thread_ts:
        key_thread = reply_thread = thread_ts
        needs_history = True
    else:
        return None

    files = event.get("files")
    try:
        key = ConversationKey(PLATFORM, team, channel, key_thread)
    except ValueError:  # an id a key cannot hold ('#')
        return None
    turn = Turn(
        key=key,
        turn_id=ts,
        role=Role.USER,
        user_id=user,
        text=strip_mentions(text, bot),
        created_at=float(ts),
        files=tuple(
            _file(f)
            for f in (files if isinstance(files, list) else ())
            if isinstance(f, Mapping) and text_of(f.get("id"))
        ),
    )
    dm_thread = event.get("channel_type") == "im" and thread_ts is not None
    user_team = text_of(event.get("user_team")) or text_of(event.get("team"))
    return SlackTurn(turn, channel, reply_thread, needs_history, dm_thread, user_team)


def strip_mentions(text: str, bot: str) -> str:
    """Remove mentions of the bot (the question is what is left); other mentions stay. Slack
    escapes ``&``, ``<`` and ``>`` in message text; they are unescaped here so the model reads
    what the person typed, and so the prompt's fences see (and defang) any tag in it."""
    text = _MENTION.sub(lambda m: "" if m.group(1) == bot else m.group(0), text).strip()
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _file(data: Mapping[str, Any]) -> FileRef:
    """A shared file (callers check that it has an ``id``); fields of the wrong type are
    left empty."""
    file_id = text_of(data.get("id"))
    size = data.get("size")
    return FileRef(
        file_id=file_id,
        name=text_of(data.get("name")) or text_of(data.get("title")) or file_id,
        mime_type=text_of(data.get("mimetype")),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0,
        url=text_of(data.get("url_private_download")) or text_of(data.get("url_private")),
        permalink=text_of(data.get("permalink")),
    )


def text_of(value: object) -> str:
    """``value`` if it is a string, else empty: a field of the wrong type counts as absent."""
    return value if isinstance(value, str) else ""


def id_of(value: object) -> str:
    """An id given as itself (``"C1"``) or as an object (``{"id": "C1", ...}``)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return text_of(value)


def is_slack_ts(value: object) -> bool:
    return isinstance(value, str) and _TS.fullmatch(value) is not None


# --- the envelope Bolt reads ---------------------------------------------------------------

# Bolt's request parsing, context building and listener matching index these keys at any level
# they find them (``body.team.id``, ``body.authorizations[0].team_id``, ``body.event.channel``,
# ``body.message.user`` ...), and raise on a wrong type. So do the listeners, which build
# conversation keys (no '#') from ids and ts.
_EITHER_KEYS = frozenset({"team", "enterprise", "user", "channel"})  # an id, an object or null
_OBJECT_KEYS = frozenset(  # an object when present: Bolt reads ``body.get("event", {}).get(..)``
    {
        "event",
        "view",
        "message",
        "previous_message",
        "item",
        "assistant_thread",
        "function_data",
        "container",
        "file",
        "function",
        "tokens",
        "context",
    }
)
_OBJECT_LIST_KEYS = frozenset({"authorizations", "actions", "response_urls", "files"})
_NULLABLE_KEYS = _EITHER_KEYS | frozenset({"authorizations", "files"})
_ID_KEYS = frozenset(
    {"id", "team_id", "user_id", "channel_id", "enterprise_id", "app_installed_team_id"}
)
_STRING_KEYS = _ID_KEYS | frozenset(
    {
        "type",
        "subtype",
        "command",
        "callback_id",
        "action_id",
        "block_id",
        "trigger_id",
        "api_app_id",
        "event_id",
        "response_url",
        "channel_type",
        "bot_id",
        "file_id",
        "user_team",
        "function_execution_id",
        "bot_access_token",
        "ssl_check",
    }
)
_TS_KEYS = frozenset({"ts", "thread_ts", "event_ts"})


def payload_problem(body: object) -> str | None:
    """What makes ``body`` (a parsed Slack request) unsafe to hand to Bolt, or None. Real Slack
    payloads always pass; a validly signed one that does not is acknowledged and dropped."""
    if not isinstance(body, dict):
        return "payload is not an object"
    pending: list[tuple[str, Mapping[str, Any]]] = [("", body)]
    while pending:
        where, obj = pending.pop()
        for key, value in obj.items():
            path = f"{where}.{key}" if where else str(key)
            if value is None:
                if (key in _OBJECT_KEYS or key in _OBJECT_LIST_KEYS) and key not in _NULLABLE_KEYS:
                    return f"{path} is null"
                continue
            if key in _STRING_KEYS and not isinstance(value, str):
                return f"{path} is not a string"
            if (key in _ID_KEYS or key in _EITHER_KEYS) and isinstance(value, str) and "#" in value:
                return f"{path} is not an id"
            if key in _TS_KEYS and not is_slack_ts(value):
                return f"{path} is not a Slack ts"
            if key in _EITHER_KEYS and not isinstance(value, str | dict):
                return f"{path} is neither an id nor an object"
            if key in _OBJECT_KEYS and not isinstance(value, dict):
                return f"{path} is not an object"
            if key in _OBJECT_LIST_KEYS and not (
                isinstance(value, list) and all(isinstance(item, dict) for item in value)
            ):
                return f"{path} is not a list of objects"
            if isinstance(value, dict) and (key in _EITHER_KEYS or key in _OBJECT_KEYS):
                pending.append((path, value))
            elif key in _OBJECT_LIST_KEYS:
                pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None
