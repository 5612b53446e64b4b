"""Slack events → core turns. Pure functions: what to answer, where, and what to ignore.

- ``app_mention`` in a channel: answer in that message's thread.
- ``message`` in a DM: answer in the DM (top level shares one conversation; a DM thread is its own).
- ``message`` in a channel thread without a mention: a follow-up, answered only if the bot is
  already part of that thread's conversation (the worker checks history; ingress stays fast).
- Never: bots (ourselves included), edits, deletions, joins and other subtypes, top-level channel
  chatter without a mention.

A mention in a thread reaches us twice (``app_mention`` and ``message``); both map to the same
dedupe id (team, channel, message ts), so one answer comes out.
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


@dataclass(frozen=True, slots=True)
class SlackTurn:
    turn: Turn
    channel: str
    thread_ts: str | None  # where the reply goes; None: top level (a DM)
    needs_history: bool  # a follow-up: answer only if the bot is in this conversation

    @property
    def dedupe_id(self) -> str:
        return f"slack:{self.turn.key.workspace}:{self.channel}:{self.turn.turn_id}"


def bot_user_id(body: Mapping[str, Any]) -> str:
    authorizations = body.get("authorizations") or []
    for authorization in authorizations:
        if authorization.get("is_bot") and authorization.get("user_id"):
            return str(authorization["user_id"])
    return ""


def from_event(body: Mapping[str, Any]) -> SlackTurn | None:
    """The turn to answer for an Events API callback, or None when there is nothing to answer."""
    event = body.get("event") or {}
    kind = event.get("type")
    if kind not in ("app_mention", "message"):
        return None
    if event.get("bot_id") or event.get("subtype") not in _ANSWERED_SUBTYPES:
        return None
    bot = bot_user_id(body)
    user = event.get("user")
    channel = event.get("channel")
    ts = event.get("ts")
    team = body.get("team_id") or event.get("team")
    if not (user and channel and ts and team) or user == bot:
        return None
    thread_ts = event.get("thread_ts")
    text = str(event.get("text") or "")
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

    turn = Turn(
        key=ConversationKey(PLATFORM, str(team), str(channel), str(key_thread)),
        turn_id=str(ts),
        role=Role.USER,
        user_id=str(user),
        text=strip_mentions(text, bot),
        created_at=float(ts),
        files=tuple(_file(f) for f in event.get("files") or () if f.get("id")),
    )
    return SlackTurn(turn, str(channel), reply_thread, needs_history)


def strip_mentions(text: str, bot: str) -> str:
    """Remove mentions of the bot (the question is what is left); other mentions stay. Slack
    escapes ``&``, ``<`` and ``>`` in message text; they are unescaped here so the model reads
    what the person typed, and so the prompt's fences see (and defang) any tag in it."""
    text = _MENTION.sub(lambda m: "" if m.group(1) == bot else m.group(0), text).strip()
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _file(data: Mapping[str, Any]) -> FileRef:
    return FileRef(
        file_id=str(data["id"]),
        name=str(data.get("name") or data.get("title") or data["id"]),
        mime_type=str(data.get("mimetype") or ""),
        size=int(data.get("size") or 0),
        url=str(data.get("url_private_download") or data.get("url_private") or ""),
        permalink=str(data.get("permalink") or ""),
    )
