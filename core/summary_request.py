"""What a person asks to have summarized, in words both chat platforms share.

Slack's ``/summarize`` and Teams' ``summarize`` message take the same words, so they are parsed
here once; a :class:`SummaryGrammar` holds what differs between the platforms (the command's
name, what the bare command covers, whether a link is accepted, the largest count), and
:func:`usage` builds each platform's one-line help from it, so help and parser cannot drift.

The grammar (the command word itself is stripped by the platform adapter)::

    (nothing)              the platform's default: Slack, the last 24 hours of the channel;
                           Teams, everything the bot has stored of the conversation
    90m  24h  7 days  2w   a period ending now, at most 30 days (a longer one is capped and
                           the summary says so)
    200  1,000             the last N messages, 1 to the platform's maximum
    <link>                 text starting with http(s):// or <http: a :class:`LinkTarget` with
                           the raw text, for the adapter to resolve (Slack: a thread permalink);
                           refused where the grammar takes no links (Teams)
    file                   the latest file shared here
    file <name>            a shared file by name: everything after the word ``file`` and a
                           space or a colon, spaces kept, quotes dropped (``file: "Q3 plan"``);
                           so ``file filename.pdf`` is "filename.pdf" and ``file files.txt``
                           is "files.txt"
    <name>.<ext>           a shared file by its whole name when it ends in a document
                           extension (``Budget 2026.csv``); never split, so ``filename.pdf``
                           is the file "filename.pdf", not ``file`` + "name.pdf"

Anything else (``files``, ``last week``, ``0``) is an :class:`ArgumentError` whose one-line
message ends with the usage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

DEFAULT_WINDOW_SECONDS: Final = 24 * 3600
MAX_WINDOW_DAYS: Final = 30
DEFAULT_MAX_COUNT: Final = 2000
# Names ending so are taken as files without the word "file" (what the indexer can read).
FILE_EXTENSIONS: Final = (
    ".pdf",
    ".txt",
    ".md",
    ".markdown",
    ".csv",
    ".tsv",
    ".html",
    ".htm",
    ".docx",
)


@dataclass(frozen=True, slots=True)
class ChannelWindow:
    """The conversation's messages since ``oldest`` (epoch seconds). ``label``: "last 24 hours";
    ``note`` says when the asked-for period was shortened to the maximum."""

    oldest: float
    label: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class ChannelCount:
    """The conversation's last ``count`` messages. ``label``: "last 200 messages", or "" when
    no count was asked for (the bare command on a platform whose default is "all of it")."""

    count: int
    label: str


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """A link, as typed; only the platform knows what it points to."""

    text: str


@dataclass(frozen=True, slots=True)
class FileTarget:
    """A file shared in the conversation: ``name`` None means the latest one."""

    name: str | None


@dataclass(frozen=True, slots=True)
class ArgumentError:
    """The text was not understood; ``message`` is one line for the person, with the usage."""

    message: str


SummaryTarget = ChannelWindow | ChannelCount | LinkTarget | FileTarget


@dataclass(frozen=True, slots=True)
class SummaryGrammar:
    """What one platform's summarize command accepts.

    ``command`` is how people type it ("/summarize"); ``default`` says in the usage what the
    bare command covers: the last 24 hours, or with ``default_window`` False the last
    ``max_count`` messages (label ""), for a platform that summarizes only what it stored.
    ``link_form`` names in the usage what a link may point to ("a thread link"); empty: links
    are refused.
    """

    command: str
    default: str
    default_window: bool = True
    max_count: int = DEFAULT_MAX_COUNT
    link_form: str = ""


_UNITS: Final = {
    "m": ("minute", 60),
    "min": ("minute", 60),
    "mins": ("minute", 60),
    "minute": ("minute", 60),
    "minutes": ("minute", 60),
    "h": ("hour", 3600),
    "hr": ("hour", 3600),
    "hrs": ("hour", 3600),
    "hour": ("hour", 3600),
    "hours": ("hour", 3600),
    "d": ("day", 86400),
    "day": ("day", 86400),
    "days": ("day", 86400),
    "w": ("week", 7 * 86400),
    "wk": ("week", 7 * 86400),
    "wks": ("week", 7 * 86400),
    "week": ("week", 7 * 86400),
    "weeks": ("week", 7 * 86400),
}
_DURATION: Final = re.compile(r"(\d{1,9})\s*([a-z]+)")
_COUNT: Final = re.compile(r"\d{1,3}(?:,\d{3})+|\d{1,12}")
# "file" alone, or followed by a space or a colon and the name (which may be empty).
_FILE_WORD: Final = re.compile(r"file(?:(?:\s*:|\s)\s*(?P<name>.*))?", re.IGNORECASE | re.DOTALL)
_LINK_STARTS: Final = ("http://", "https://", "<http")
_QUOTES: Final = "\"'`“”‘’"


def usage(grammar: SummaryGrammar) -> str:
    """The accepted forms, in one line."""
    link = f"{grammar.link_form}, " if grammar.link_form else ""
    return (
        f"Try {grammar.command} with nothing ({grammar.default}), a period like 90m, 24h, "
        f"7d or 2w (up to {MAX_WINDOW_DAYS} days), a number of messages "
        f"(1 to {grammar.max_count:,}), {link}`file` (the latest shared file) or `file <name>`."
    )


def parse_summary_args(
    text: str, grammar: SummaryGrammar, *, now: float
) -> SummaryTarget | ArgumentError:
    """What ``<command> <text>`` asks for; ``now`` is epoch seconds (periods end there)."""
    raw = " ".join((text or "").split())
    if not raw:
        return _default(grammar, now)
    lowered = raw.lower()

    if (duration := _DURATION.fullmatch(lowered)) and duration.group(2) in _UNITS:
        return _window(int(duration.group(1)), duration.group(2), raw, now, grammar)

    if _COUNT.fullmatch(raw):
        count = int(raw.replace(",", ""))
        if 1 <= count <= grammar.max_count:
            return ChannelCount(count, _plural(count, "message"))
        return ArgumentError(
            f"I can summarize between 1 and {grammar.max_count:,} messages. {usage(grammar)}"
        )

    if lowered.startswith(_LINK_STARTS):
        if grammar.link_form:
            return LinkTarget(raw)
        return ArgumentError(f"I can't summarize what a link points to here. {usage(grammar)}")

    if named := _FILE_WORD.fullmatch(raw):
        name = (named.group("name") or "").strip().strip(_QUOTES).strip()
        return FileTarget(name or None)
    bare = raw.strip(_QUOTES).strip()
    if bare.lower().endswith(FILE_EXTENSIONS) and "/" not in bare and len(bare) > 4:
        return FileTarget(bare)

    if lowered in ("help", "?"):
        return ArgumentError(usage(grammar))
    shown = raw if len(raw) <= 40 else raw[:39] + "…"
    return ArgumentError(f"I didn't understand “{shown}”. {usage(grammar)}")


def _default(grammar: SummaryGrammar, now: float) -> ChannelWindow | ChannelCount:
    if grammar.default_window:
        return ChannelWindow(now - DEFAULT_WINDOW_SECONDS, "last 24 hours")
    return ChannelCount(grammar.max_count, "")


def _window(
    amount: int, unit: str, raw: str, now: float, grammar: SummaryGrammar
) -> ChannelWindow | ArgumentError:
    if amount <= 0:
        return ArgumentError(f"The period must be longer than zero. {usage(grammar)}")
    name, seconds = _UNITS[unit]
    span = amount * seconds
    cap = MAX_WINDOW_DAYS * 86400
    if span > cap:
        note = (
            f"You asked for {raw}; I summarize at most the last {MAX_WINDOW_DAYS} days, "
            "so that is what this covers."
        )
        return ChannelWindow(now - cap, f"last {MAX_WINDOW_DAYS} days", note)
    label = f"last {name}" if amount == 1 else f"last {amount} {name}s"
    return ChannelWindow(now - span, label)


def _plural(count: int, word: str) -> str:
    return f"last {word}" if count == 1 else f"last {count:,} {word}s"
