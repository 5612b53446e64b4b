"""What ``/summarize`` and the "Summarize thread" shortcut ask for, in Slack's terms.

The words after ``/summarize`` are parsed by :mod:`core.summary_request`, the grammar both
platforms share; what is left for Slack is its own piece of it: a thread link. The core hands
back any link as typed, and :func:`parse_summarize_args` turns a message permalink into a
:class:`ThreadRef` (or says it is not one). The shortcut names its thread directly
(:func:`thread_of_message`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from core.summary_request import (
    DEFAULT_MAX_COUNT,
    ArgumentError,
    ChannelCount,
    ChannelWindow,
    FileTarget,
    LinkTarget,
    SummaryGrammar,
    parse_summary_args,
)
from core.summary_request import usage as grammar_usage


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """A thread: ``ts`` is its root's ts (or any message of it; Slack finds the thread)."""

    channel: str
    ts: str


SlackSummaryTarget = ChannelWindow | ChannelCount | ThreadRef | FileTarget

_WRAPPED_LINK: Final = re.compile(r"<(?P<url>[^<>|]+)(?:\|[^<>]*)?>")
_THREAD_PATH: Final = re.compile(r"/archives/(?P<channel>[CGD][A-Z0-9]+)/p(?P<digits>\d{16})/?")
_TS: Final = re.compile(r"\d{9,10}\.\d{1,6}")


def slack_grammar(max_count: int = DEFAULT_MAX_COUNT) -> SummaryGrammar:
    return SummaryGrammar(
        command="/summarize",
        default="this channel, last 24 hours",
        max_count=max_count,
        link_form="a thread link",
    )


def usage(max_count: int = DEFAULT_MAX_COUNT) -> str:
    """The accepted forms, in one line."""
    return grammar_usage(slack_grammar(max_count))


def parse_summarize_args(
    text: str, *, now: float, max_count: int = DEFAULT_MAX_COUNT
) -> SlackSummaryTarget | ArgumentError:
    """What ``/summarize <text>`` asks for; ``now`` is epoch seconds (windows end there)."""
    target = parse_summary_args(text, slack_grammar(max_count), now=now)
    if not isinstance(target, LinkTarget):
        return target
    thread = _thread_link(target.text)
    if thread is not None:
        return thread
    return ArgumentError(
        "That doesn't look like a link to a Slack message (use Copy link on the thread). "
        f"{usage(max_count)}"
    )


def _thread_link(raw: str) -> ThreadRef | None:
    wrapped = _WRAPPED_LINK.search(raw)
    url = wrapped.group("url") if wrapped else raw.split()[0]
    url = url.replace("&amp;", "&")  # Slack escapes & in text it sends
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host.endswith(".slack.com"):
        return None
    path = _THREAD_PATH.fullmatch(parts.path)
    if path is None:
        return None
    digits = path.group("digits")
    ts = f"{digits[:10]}.{digits[10:]}"
    root = (parse_qs(parts.query).get("thread_ts") or [""])[0]
    if root and _TS.fullmatch(root):
        ts = root
    return ThreadRef(path.group("channel"), ts)


def thread_of_message(channel: str, message: Mapping[str, Any]) -> ThreadRef:
    """The thread a message-shortcut's message belongs to (itself, if it starts none)."""
    return ThreadRef(channel, str(message.get("thread_ts") or message["ts"]))
