"""What the person does in the playground's Slack view, turned into what Slack would send.

A message typed in a channel is stored in the workspace (as Slack stores it) and delivered to
the host's own ``/slack/events`` over HTTP as the Events API callbacks Slack sends for it:
``app_mention`` (and ``message``, which the app also subscribes to) when it mentions the bot,
``message`` with ``channel_type`` ``im`` in the DM, ``message`` in a thread. A file becomes a
stored file and a ``file_share`` message. ``/summarize`` and ``/forget`` become form-encoded
slash commands whose ``response_url`` leads back to the emulator; the "Summarize thread"
shortcut a ``message_action`` and a feedback click a ``block_actions`` interactivity payload.
Every request is signed with this run's signing secret by slack_sdk's own
:class:`~slack_sdk.signature.SignatureVerifier`, so the ingress checks it as it checks Slack's.

The checks here are the ones Slack itself makes before anything reaches an app (a channel that
exists, a thread that exists, text within Slack's limit, a command the app registered); what
the app decides (an empty question, a file too large or of a type it cannot read, a summary it
cannot make) is left to the app, which answers in the chat as it would in Slack. (A file over
the bot's limit is kept as its size only: the bot never downloads it.)
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from bots.playground import slack_wire as wire
from bots.playground.slack_api import SlackApi
from bots.playground.slack_wire import (
    MAX_NAME_CHARS,
    TEXT_LIMIT,
    BadInput,
    OverMemoryCap,
    slack_text,
)
from bots.playground.slack_workspace import (
    APP_ID,
    BOT_USER_ID,
    DM_CHANNEL,
    PERSON,
    TEAM_ID,
    Channel,
)

COMMANDS = ("/summarize", "/forget")  # manifest/slack/manifest.yml
SHORTCUTS = ("summarize_thread",)
FEEDBACK_ACTION_ID = "answer_feedback"
TIMEOUT_SECONDS = 10.0


class DeliveryFailed(RuntimeError):
    """The app's own endpoint refused or failed: 502 with this message."""


@dataclass(frozen=True)
class Delivered:
    status: int
    body: bytes


class SlackClient:
    def __init__(self, api: SlackApi, *, events_url: str, signing_secret: str) -> None:
        self._api = api
        self._ws = api.ws
        self._events_url = events_url
        self._signer = SignatureVerifier(signing_secret)

    # page actions --------------------------------------------------------------------------

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        thread_ts = self._thread(channel, body.get("thread_ts"))
        user = self._user(body.get("user"))
        text = wire.required_text(body.get("text"), "text")
        wire_text = slack_text(text)
        with self._ws.lock:
            msg = self._person_message(user, wire_text)
            self._ws.store(channel, msg, thread_ts)
        self._deliver_message(channel, msg, thread_ts)
        return {"ok": True, "ts": msg["ts"]}

    def file(self, body: dict[str, Any], *, max_bytes: int, memory_cap: int) -> dict[str, Any]:
        """A file shared by the person. ``max_bytes`` is the bot's own limit
        (``CHATBOT_MAX_FILE_MB``): a larger file is shared all the same, as Slack shares it,
        with its true size and no bytes kept, so the bot refuses it in the chat with
        production's message. ``memory_cap`` is the playground's own: beyond it, 413."""
        channel = self._channel(body.get("channel"))
        thread_ts = self._thread(channel, body.get("thread_ts"))
        user = self._user(body.get("user"))
        name = wire.required_text(body.get("name"), "name").strip()
        if len(name) > MAX_NAME_CHARS or "/" in name or "\\" in name:
            raise BadInput(f"a file name has at most {MAX_NAME_CHARS} characters and no slashes")
        mime_type = body.get("mime_type") or "application/octet-stream"
        if not isinstance(mime_type, str) or len(mime_type) > 255:
            raise BadInput("mime_type must be a media type such as text/plain")
        raw = body.get("data_base64")
        if not isinstance(raw, str):
            raise BadInput("data_base64 must be the file's bytes in base64")
        size = wire.base64_size(raw)
        if size > memory_cap:
            raise OverMemoryCap(size, memory_cap)
        data: bytes | None = None
        if size <= max_bytes:
            try:
                data = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise BadInput("data_base64 is not valid base64") from None
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise BadInput("comment must be text")
        if comment and len(comment) > TEXT_LIMIT:
            raise BadInput(f"a message has at most {TEXT_LIMIT:,} characters (Slack's limit)")
        with self._ws.lock:
            stored = self._ws.add_file(name, mime_type, data, user, size=size)
            msg = self._person_message(user, slack_text(comment or ""))
            msg["subtype"] = "file_share"
            msg["files"] = [stored.payload(self._ws.base_url)]
            msg["upload"] = True
            self._ws.store(channel, msg, thread_ts)
        self._deliver_message(channel, msg, thread_ts)
        shared = {
            "type": "file_shared",
            "file_id": stored.id,
            "file": {"id": stored.id},
            "user_id": user,
            "channel_id": channel.id,
            "event_ts": msg["ts"],
        }
        self._event(shared)
        return {"ok": True, "ts": msg["ts"], "file_id": stored.id}

    def command(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        command = body.get("command")
        if command not in COMMANDS:
            raise BadInput(
                f"{command!s:.40} is not a valid command here: try {' or '.join(COMMANDS)}"
            )
        text = body.get("text") or ""
        if not isinstance(text, str) or len(text) > 4_000:
            raise BadInput("a command's text has at most 4,000 characters")
        user = self._user(body.get("user"))
        thread_ts = self._thread(channel, body.get("thread_ts"))
        key = f"{uuid.uuid4().hex}"
        with self._ws.lock:
            self._api.response_urls[key] = (channel.id, user, thread_ts)
        fields = {
            "token": "playground-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "playground",
            "channel_id": channel.id,
            "channel_name": "directmessage" if channel.is_im else channel.name,
            "user_id": user,
            "user_name": self._ws.users[user]["name"],
            "command": str(command),
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"{self._ws.base_url}/playground/slack/response/{key}",
            "trigger_id": wire.trigger_id(),
        }
        delivered = self._post(urlencode(fields).encode(), "application/x-www-form-urlencoded")
        self._show_ack(delivered, channel.id, user, thread_ts)
        return {"ok": True}

    def shortcut(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        callback_id = body.get("callback_id") or SHORTCUTS[0]
        if callback_id not in SHORTCUTS:
            raise BadInput(f"no shortcut {callback_id!s:.40}: try {SHORTCUTS[0]}")
        msg = self._existing(channel, body.get("message_ts"))
        user = self._user(body.get("user"))
        payload = {
            "type": "message_action",
            "token": "playground-verification-token",
            "action_ts": self._ws.new_ts(),
            "team": {"id": TEAM_ID, "domain": "playground"},
            "user": {"id": user, "username": self._ws.users[user]["name"], "team_id": TEAM_ID},
            "channel": {"id": channel.id, "name": channel.name},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": wire.trigger_id(),
            "response_url": self._response_url(channel.id, user, msg.get("thread_ts")),
            "message_ts": msg["ts"],
            "message": msg,
        }
        self._interactivity(payload)
        return {"ok": True}

    def feedback(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        msg = self._existing(channel, body.get("message_ts"))
        action_id = body.get("action_id") or FEEDBACK_ACTION_ID
        value = body.get("value")
        found = wire.button(msg, action_id, value)
        if found is None:
            raise BadInput("that message has no such button (it may still be streaming)")
        block_id, kind = found
        user = self._user(body.get("user"))
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": self._ws.users[user]["name"], "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "playground-verification-token",
            "container": {
                "type": "message",
                "message_ts": msg["ts"],
                "channel_id": channel.id,
                "is_ephemeral": False,
                **({"thread_ts": msg["thread_ts"]} if msg.get("thread_ts") else {}),
            },
            "trigger_id": wire.trigger_id(),
            "team": {"id": TEAM_ID, "domain": "playground"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel.id, "name": channel.name},
            "message": msg,
            "response_url": self._response_url(channel.id, user, msg.get("thread_ts")),
            "actions": [
                {
                    "type": kind,
                    "action_id": action_id,
                    "block_id": block_id,
                    "value": value,
                    "action_ts": self._ws.new_ts(),
                }
            ],
        }
        self._interactivity(payload)
        return {"ok": True}

    def assistant(self, body: dict[str, Any]) -> dict[str, Any]:
        """The assistant panel: ``open`` starts a thread in the DM (Slack posts its root and
        sends ``assistant_thread_started``); ``context`` says the person is now looking at
        another channel (``assistant_thread_context_changed``)."""
        action = body.get("action")
        if action not in ("open", "context"):
            raise BadInput("action must be 'open' or 'context'")
        dm = self._ws.channels[DM_CHANNEL]
        looking_at = body.get("context_channel") or "CGENERAL"
        if self._ws.channel(looking_at) is None:
            raise BadInput(f"no channel {looking_at!s:.40} in the playground")
        if action == "open":
            with self._ws.lock:
                root = self._person_message(PERSON, "")
                root.update(subtype="assistant_app_thread", user=BOT_USER_ID)
                self._ws.store(dm, root, None)
            thread_ts = root["ts"]
            kind = "assistant_thread_started"
        else:
            thread_ts = self._thread(dm, body.get("thread_ts")) or ""
            if not thread_ts:
                raise BadInput("thread_ts must name an assistant thread in the DM")
            kind = "assistant_thread_context_changed"
        event = {
            "type": kind,
            "assistant_thread": {
                "user_id": PERSON,
                "context": {"channel_id": looking_at, "team_id": TEAM_ID, "enterprise_id": ""},
                "channel_id": dm.id,
                "thread_ts": thread_ts,
            },
            "event_ts": self._ws.new_ts(),
        }
        self._event(event)
        return {"ok": True, "thread_ts": thread_ts}

    # delivery --------------------------------------------------------------------------------

    def _deliver_message(
        self, channel: Channel, msg: dict[str, Any], thread_ts: str | None
    ) -> None:
        event = {
            "type": "message",
            "user": msg["user"],
            "text": msg["text"],
            "ts": msg["ts"],
            "team": TEAM_ID,
            "channel": channel.id,
            "event_ts": msg["ts"],
            "channel_type": "im" if channel.is_im else "channel",
        }
        if msg.get("subtype"):
            event["subtype"] = msg["subtype"]
        else:
            event["client_msg_id"] = str(uuid.uuid4())
        if msg.get("files"):
            event["files"] = msg["files"]
            event["upload"] = True
        if thread_ts:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = msg.get("parent_user_id", "")
        mentioned = f"<@{BOT_USER_ID}>" in msg["text"]
        if mentioned and not channel.is_im:
            mention = {k: v for k, v in event.items() if k not in ("channel_type", "subtype")}
            self._event({**mention, "type": "app_mention"})
        self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        now = int(time.time())
        payload = {
            "token": "playground-verification-token",
            "team_id": TEAM_ID,
            "context_team_id": TEAM_ID,
            "context_enterprise_id": None,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": "Ev" + uuid.uuid4().hex[:12].upper(),
            "event_time": now,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + uuid.uuid4().hex,
        }
        self._post(json.dumps(payload).encode(), "application/json")

    def _interactivity(self, payload: dict[str, Any]) -> Delivered:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self._post(body, "application/x-www-form-urlencoded")

    def _post(self, body: bytes, content_type: str) -> Delivered:
        timestamp = str(int(time.time()))
        signature = self._signer.generate_signature(timestamp=timestamp, body=body)
        request = urllib.request.Request(  # noqa: S310 - our own loopback endpoint
            self._events_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature or "",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                return Delivered(response.status, response.read(64 * 1024))
        except urllib.error.HTTPError as exc:
            detail = exc.read(2_000).decode("utf-8", "replace")
            raise DeliveryFailed(f"the app's /slack/events answered {exc.code}: {detail}") from exc
        except OSError as exc:
            raise DeliveryFailed(f"the app's /slack/events could not be reached: {exc}") from exc

    def _show_ack(
        self, delivered: Delivered, channel: str, user: str, thread_ts: str | None
    ) -> None:
        """A command's acknowledgement with text is shown to the person, as Slack does."""
        try:
            answer = json.loads(delivered.body) if delivered.body.strip() else None
        except ValueError:
            answer = {"text": delivered.body.decode("utf-8", "replace")}
        if isinstance(answer, dict) and (answer.get("text") or answer.get("blocks")):
            with self._ws.lock:
                self._ws.add_ephemeral(
                    channel,
                    user,
                    str(answer.get("text") or ""),
                    blocks=answer.get("blocks"),
                    thread_ts=thread_ts,
                )

    # checks ------------------------------------------------------------------------------

    def _channel(self, channel_id: object) -> Channel:
        channel = self._ws.channel(channel_id)
        if channel is None:
            raise BadInput(f"no channel {channel_id!s:.40} in the playground")
        return channel

    def _thread(self, channel: Channel, thread_ts: object) -> str | None:
        if thread_ts is None or thread_ts == "":
            return None
        msg = self._ws.message(channel.id, thread_ts)
        if msg is None:
            raise BadInput("no such thread in that channel")
        return str(msg.get("thread_ts") or msg["ts"])

    def _existing(self, channel: Channel, ts: object) -> dict[str, Any]:
        with self._ws.lock:
            msg = self._ws.message(channel.id, ts)
            if msg is None:
                raise BadInput("no such message in that channel")
            return {k: v for k, v in msg.items() if not k.startswith("_")}

    def _user(self, user: object) -> str:
        if user is None or user == "":
            return PERSON
        if not isinstance(user, str) or user not in self._ws.users or user == BOT_USER_ID:
            raise BadInput("user must be one of the playground's people")
        return user

    def _person_message(self, user: str, text: str) -> dict[str, Any]:
        return {
            "type": "message",
            "user": user,
            "text": text,
            "ts": self._ws.new_ts(),
            "team": TEAM_ID,
        }

    def _response_url(self, channel: str, user: str, thread_ts: object) -> str:
        key = uuid.uuid4().hex
        with self._ws.lock:
            self._api.response_urls[key] = (
                channel,
                user,
                thread_ts if isinstance(thread_ts, str) else None,
            )
        return f"{self._ws.base_url}/playground/slack/response/{key}"
