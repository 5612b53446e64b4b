"""The playground's Slack workspace: channels, people, messages and files, in memory.

One small workspace (team ``T-PLAYGROUND``): ``#general`` and ``#random`` with the bot as a
member, and a DM between the person trying the playground and the bot. Messages are kept the
way Slack's Web API returns them (``ts``, ``thread_ts``, ``reply_count``, ``blocks``, ``files``,
``bot_id``), so ``conversations.history`` and ``conversations.replies`` answer from the same
store the page is drawn from. :meth:`SlackWorkspace.view` is a message as the page sees it
(docs/playground.md, /work/notes/playground-protocol.md); every change is published to the hub.

Bounded: at most :data:`MAX_MESSAGES` per channel (the oldest go) and :data:`MAX_FILES` files
or :data:`MAX_FILE_BYTES_TOTAL` bytes of files (the oldest files go; their messages stay and a
download answers 404).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bots.playground.hub import Hub

TEAM_ID = "T-PLAYGROUND"
TEAM_NAME = "Playground"
BOT_USER_ID = "UPLAYBOT"
BOT_ID = "BPLAYBOT"
APP_ID = "APLAYGROUND"
BOT_NAME = "assistant"  # manifest/slack/manifest.yml: features.bot_user.display_name
PERSON = "UPLAYER"
DM_CHANNEL = "DPLAYBOT"
MAX_MESSAGES = 1_000
MAX_FILES = 16
MAX_FILE_BYTES_TOTAL = 128 * 1024 * 1024  # the bytes of all files kept, together


@dataclass
class Channel:
    id: str
    name: str
    is_im: bool = False
    members: tuple[str, ...] = ()
    messages: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def info(self) -> dict[str, Any]:
        """As ``conversations.info`` returns it."""
        info: dict[str, Any] = {
            "id": self.id,
            "created": 1_700_000_000,
            "is_archived": False,
            "is_member": BOT_USER_ID in self.members,
            "is_private": False,
            "is_im": self.is_im,
            "is_mpim": False,
        }
        if self.is_im:
            info["user"] = PERSON
        else:
            info.update(name=self.name, is_channel=True, is_general=self.name == "general")
        return info


@dataclass
class StoredFile:
    id: str
    name: str
    mimetype: str
    data: bytes | None  # None: not kept (over the bot's limit: it never downloads it)
    user: str
    created: int
    size: int  # the file's true size, as Slack reports it

    def payload(self, base_url: str) -> dict[str, Any]:
        """As Slack describes a file in a message and in ``files.info``."""
        url = f"{base_url}/playground/slack/files/{self.id}/{self.name}"
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.name,
            "mimetype": self.mimetype,
            "filetype": self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "text",
            "user": self.user,
            "mode": "hosted",
            "size": self.size,
            "is_public": True,
            "url_private": url,
            "url_private_download": url,
            "permalink": f"{base_url}/?file={self.id}",
        }


class SlackWorkspace:
    """The workspace, thread-safe; every change goes to ``hub``."""

    def __init__(self, hub: Hub, base_url: str) -> None:
        self.hub = hub
        self.base_url = base_url
        self.lock = threading.RLock()
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, Channel] = {}
        self.files: OrderedDict[str, StoredFile] = OrderedDict()
        self.ephemeral: list[dict[str, Any]] = []
        self.threads: dict[tuple[str, str], dict[str, Any]] = {}  # assistant status/prompts/title
        self._last_micros = 0
        self._ids = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.users = {
                PERSON: _user(PERSON, "you", "You"),
                "UALEX": _user("UALEX", "alex", "Alex Kim"),
                BOT_USER_ID: {**_user(BOT_USER_ID, BOT_NAME, BOT_NAME), "is_bot": True},
            }
            everyone = (PERSON, "UALEX", BOT_USER_ID)
            self.channels = {
                "CGENERAL": Channel("CGENERAL", "general", members=everyone),
                "CRANDOM": Channel("CRANDOM", "random", members=everyone),
                DM_CHANNEL: Channel(
                    DM_CHANNEL, BOT_NAME, is_im=True, members=(PERSON, BOT_USER_ID)
                ),
            }
            self.files.clear()
            self.ephemeral.clear()
            self.threads.clear()

    # ids -----------------------------------------------------------------------------------

    def new_ts(self) -> str:
        """A fresh ts, later than every earlier one (Slack's are unique per channel)."""
        with self.lock:
            self._last_micros = max(time.time_ns() // 1000, self._last_micros + 1)
            return f"{self._last_micros // 1_000_000}.{self._last_micros % 1_000_000:06d}"

    def new_id(self, prefix: str) -> str:
        with self.lock:
            self._ids += 1
            return f"{prefix}{self._ids:06d}"

    # reading -------------------------------------------------------------------------------

    def channel(self, channel_id: object) -> Channel | None:
        return self.channels.get(channel_id) if isinstance(channel_id, str) else None

    def message(self, channel: str, ts: object) -> dict[str, Any] | None:
        found = self.channels.get(channel)
        if found is None or not isinstance(ts, str):
            return None
        return found.messages.get(ts)

    def thread_of(self, channel: Channel, ts: str) -> list[dict[str, Any]]:
        """The thread ``ts`` belongs to: its parent first, then the replies, oldest first."""
        msg = channel.messages.get(ts)
        root = msg.get("thread_ts", ts) if msg else ts
        parent = channel.messages.get(root)
        replies = [m for m in channel.messages.values() if m.get("thread_ts") == root]
        return ([parent] if parent else []) + [m for m in replies if m["ts"] != root]

    @staticmethod
    def is_top_level(msg: dict[str, Any]) -> bool:
        thread_ts = msg.get("thread_ts")
        return thread_ts is None or thread_ts == msg["ts"]

    def view(self, msg: dict[str, Any], channel: str) -> dict[str, Any]:
        """A message as the page draws it (see the protocol)."""
        thread_ts = msg.get("thread_ts")
        return {
            "channel": channel,
            "ts": msg["ts"],
            "thread_ts": thread_ts if thread_ts and thread_ts != msg["ts"] else None,
            "user": msg.get("user"),
            "bot_id": msg.get("bot_id"),
            "subtype": msg.get("subtype"),
            "text": msg.get("text", ""),
            "blocks": copy.deepcopy(msg.get("blocks")),
            "streaming": bool(msg.get("_streaming")),
            "status": msg.get("_status"),
            "edited": int(msg.get("_edits", 0)),
            "ephemeral": bool(msg.get("_ephemeral")),
            "reply_count": int(msg.get("reply_count", 0)),
            "files": [_file_view(f) for f in msg.get("files") or ()],
        }

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            messages = [
                self.view(m, c.id) for c in self.channels.values() for m in c.messages.values()
            ]
            messages += [copy.deepcopy(e) for e in self.ephemeral]
            messages.sort(key=lambda m: _ts_key(m["ts"]))
            return {
                "team": {"id": TEAM_ID, "name": TEAM_NAME},
                "users": [
                    {"id": u["id"], "name": u["profile"]["display_name"]}
                    for u in self.users.values()
                ],
                "channels": [
                    {"id": c.id, "name": c.name, "is_im": c.is_im} for c in self.channels.values()
                ],
                "messages": messages,
                "threads": [
                    {"channel": ch, "thread_ts": ts, **copy.deepcopy(state)}
                    for (ch, ts), state in self.threads.items()
                ],
            }

    # writing (callers hold the lock) --------------------------------------------------------

    def store(self, channel: Channel, msg: dict[str, Any], thread_ts: str | None) -> None:
        """Add ``msg``, threading it under ``thread_ts`` as Slack does, and publish it (and its
        parent, whose reply count changed)."""
        parent = None
        if thread_ts and thread_ts != msg["ts"]:
            msg["thread_ts"] = thread_ts
            parent = channel.messages.get(thread_ts)
            if parent is not None:
                msg["parent_user_id"] = parent.get("user", "")
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                users = parent.setdefault("reply_users", [])
                if msg.get("user") and msg["user"] not in users:
                    users.append(msg["user"])
                parent["reply_users_count"] = len(users)
                parent["latest_reply"] = msg["ts"]
        channel.messages[msg["ts"]] = msg
        while len(channel.messages) > MAX_MESSAGES:
            channel.messages.popitem(last=False)
        self.publish(channel, msg)
        if parent is not None:
            self.publish(channel, parent)

    def publish(self, channel: Channel, msg: dict[str, Any]) -> None:
        self.hub.publish({"type": "slack.message", "message": self.view(msg, channel.id)})

    def add_file(
        self, name: str, mimetype: str, data: bytes | None, user: str, *, size: int
    ) -> StoredFile:
        stored = StoredFile(self.new_id("F"), name, mimetype, data, user, int(time.time()), size)
        self.files[stored.id] = stored
        while len(self.files) > 1 and (
            len(self.files) > MAX_FILES
            or sum(len(f.data or b"") for f in self.files.values()) > MAX_FILE_BYTES_TOTAL
        ):
            self.files.popitem(last=False)
        return stored

    def add_ephemeral(
        self, channel: str, user: str, text: str, *, blocks: Any = None, thread_ts: Any = None
    ) -> dict[str, Any]:
        """A message only ``user`` sees (a slash command's answer, ``chat.postEphemeral``)."""
        view = {
            "channel": channel,
            "ts": self.new_ts(),
            "thread_ts": thread_ts if isinstance(thread_ts, str) and thread_ts else None,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "subtype": None,
            "text": text,
            "blocks": blocks if isinstance(blocks, list) else None,
            "streaming": False,
            "status": None,
            "edited": 0,
            "ephemeral": True,
            "to": user,
            "reply_count": 0,
            "files": [],
        }
        self.ephemeral.append(view)
        del self.ephemeral[:-MAX_MESSAGES]
        self.hub.publish({"type": "slack.message", "message": copy.deepcopy(view)})
        return view


def _user(user_id: str, name: str, real_name: str) -> dict[str, Any]:
    return {
        "id": user_id,
        "team_id": TEAM_ID,
        "name": name,
        "real_name": real_name,
        "deleted": False,
        "is_bot": False,
        "tz": "UTC",
        "profile": {"display_name": real_name, "real_name": real_name},
    }


def _file_view(file: dict[str, Any]) -> dict[str, Any]:
    return {k: file.get(k) for k in ("id", "name", "mimetype", "size", "url_private")}


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, fraction = ts.partition(".")
    return int(seconds), int(fraction.ljust(6, "0") or 0)
