"""The Slack stand-in's assistant-panel methods and a channel directory, added with ``on()``.

:class:`AssistantSurface` teaches a running :class:`~tests.standins.slack.SlackStandIn`:

- ``assistant.threads.setSuggestedPrompts`` and ``assistant.threads.setTitle``, checked as Slack
  documents them (``channel_id`` and ``thread_ts`` required, at most four prompts each with a
  ``title`` and a ``message``, a non-empty title) and kept per call
  (``assistant.threads.setStatus`` is the stand-in's own);
- ``conversations.info`` and ``conversations.members`` over a directory of channels: public or
  private, who is in them, and whether the bot is. As in Slack, a private channel the bot is not
  in does not exist for it (``channel_not_found``), while a public one it has not joined answers
  ``conversations.info`` (and the stand-in's ``conversations.history`` says ``not_in_channel``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from tests.slack_requests import new_ts
from tests.standins.slack import Params, SlackApiFailure, SlackStandIn

MAX_PROMPTS = 4


@dataclass
class DirectoryEntry:
    id: str
    name: str
    private: bool
    members: set[str] = field(default_factory=set)
    bot_member: bool = True
    is_im: bool = False


class AssistantSurface:
    def __init__(self, standin: SlackStandIn) -> None:
        self.standin = standin
        self._lock = threading.Lock()
        self.prompts: list[Params] = []  # each accepted setSuggestedPrompts call
        self.titles: list[Params] = []  # each accepted setTitle call
        self.directory: dict[str, DirectoryEntry] = {}
        # Cleared, setSuggestedPrompts waits for it: a test holds a greeting job mid-way.
        self.prompts_gate = threading.Event()
        self.prompts_gate.set()
        standin.on("assistant.threads.setSuggestedPrompts", self._set_prompts)
        standin.on("assistant.threads.setTitle", self._set_title)
        standin.on("conversations.info", self._info)
        standin.on("conversations.members", self._members)

    def add_channel(
        self,
        id: str,
        name: str,
        *,
        private: bool = False,
        members: tuple[str, ...] = (),
        bot_member: bool = True,
        is_im: bool = False,
    ) -> None:
        """A channel in both the stand-in (its messages) and the directory (its membership)."""
        self.standin.add_channel(id, name, member=bot_member, is_im=is_im)
        with self._lock:
            self.directory[id] = DirectoryEntry(id, name, private, set(members), bot_member, is_im)

    def _set_prompts(self, params: Params) -> dict[str, Any]:
        if not self.prompts_gate.wait(20):
            raise SlackApiFailure("standin_gate_never_opened")
        prompts = params.get("prompts")
        if not params.get("channel_id") or not params.get("thread_ts"):
            raise SlackApiFailure("invalid_arguments")
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_PROMPTS:
            raise SlackApiFailure("invalid_arguments")
        for prompt in prompts:
            if not (isinstance(prompt, dict) and prompt.get("title") and prompt.get("message")):
                raise SlackApiFailure("invalid_arguments")
        with self._lock:
            self.prompts.append(dict(params))
        return {}

    def _set_title(self, params: Params) -> dict[str, Any]:
        if not (params.get("channel_id") and params.get("thread_ts") and params.get("title")):
            raise SlackApiFailure("invalid_arguments")
        with self._lock:
            self.titles.append(dict(params))
        return {}

    def _visible(self, params: Params) -> DirectoryEntry:
        with self._lock:
            entry = self.directory.get(str(params.get("channel") or ""))
        if entry is None or ((entry.private or entry.is_im) and not entry.bot_member):
            raise SlackApiFailure("channel_not_found")
        return entry

    def _info(self, params: Params) -> dict[str, Any]:
        entry = self._visible(params)
        return {
            "channel": {
                "id": entry.id,
                "name": entry.name,
                "is_channel": not (entry.private or entry.is_im),
                "is_group": entry.private,
                "is_im": entry.is_im,
                "is_mpim": False,
                "is_private": entry.private,
                "is_member": entry.bot_member,
            }
        }

    def _members(self, params: Params) -> dict[str, Any]:
        entry = self._visible(params)
        members = sorted(
            entry.members | ({self.standin.bot_user_id} if entry.bot_member else set())
        )
        return {"members": members, "response_metadata": {"next_cursor": ""}}


def thread_event(
    kind: str,
    thread_ts: str,
    *,
    channel: str = "D1",
    user: str = "U1",
    context_channel: str | None = "C1",
    context_team: str = "T1",
) -> dict[str, Any]:
    """An ``assistant_thread_started`` or ``assistant_thread_context_changed`` event, shaped as
    Slack documents it (wrap it with ``tests.slack_requests.event_callback``)."""
    context: dict[str, Any] = {}
    if context_channel is not None:
        context = {"channel_id": context_channel, "team_id": context_team, "enterprise_id": None}
    return {
        "type": kind,
        "assistant_thread": {
            "user_id": user,
            "context": context,
            "channel_id": channel,
            "thread_ts": thread_ts,
        },
        "event_ts": new_ts(),
    }
