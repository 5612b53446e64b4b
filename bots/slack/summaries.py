"""What ``/summarize`` and the "Summarize thread" shortcut ask for, and reading it from Slack.

Three parts, none of which calls a model:

- :func:`parse_summarize_args` turns the command text into a :data:`SummarizeTarget` (a time
  window of the channel, its last N messages, a thread, or a shared file) or an
  :class:`ArgumentError` whose one-line ``message`` lists the forms that are accepted.
- :class:`SlackHistory` reads a channel window, the last N messages or a thread with the bot's
  token (``conversations.history`` / ``conversations.replies``, cursor pages of 200) and turns
  them into :class:`core.summarize.Excerpt` values, oldest first, each labelled with who wrote
  it and when. Names come from :class:`UserNames`, a per-process cache of ``users.info``.
- :func:`latest_file`, :func:`file_by_name` and :func:`file_excerpts` find a shared file in the
  channel's knowledge and read all of it back as excerpts.

What a channel summary covers (the choices, so they can be stated to people):

- Top-level messages of the window (or the last N top-level messages), newest first until
  ``max_messages``; then, within what is left of ``max_messages``, the replies of the threads
  among them (newest threads first; at most ``max_reply_threads`` ``conversations.replies``
  calls). A thread's replies are placed right after their parent, labelled as thread replies,
  so each conversation stays together; everything else is in chronological order. Replies
  posted in the window to a thread whose parent is older than the window are not read (Slack
  lists threads by their parent).
- Kept: people's messages, bot messages (labelled with the bot's name), thread broadcasts, file
  shares (the file's name is noted) and ``/me`` messages. Skipped: joins, leaves, topic and
  purpose changes, pins and other system subtypes, and our own "thinking" placeholder.
- Whatever a limit leaves out is said in :attr:`HistoryResult.limit_note`: the message limit,
  the thread limit, or Slack's rate limit cutting a read short once something was read.

Slack errors become :class:`SummaryUnavailable` with a ``message`` fit to show the person
(ephemerally): not a member, channel or thread not found, a missing scope, rate limiting that a
short wait (``Retry-After``, at most ``max_retry_wait`` seconds per read) did not clear, or
nothing to summarize.

Slack's own limits matter here: apps not approved for the Slack Marketplace get Tier 1 for
``conversations.history`` and ``conversations.replies`` (1 request a minute, at most 15
messages a page) since 2025-05-29 for new apps and installations and 2025-09-02 for existing
ones. Under that regime the first page is read and the rate limit cuts the rest short: the
summary then says exactly which messages it covers (see ``partial_on_rate_limit``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

from core.pacer import PLACEHOLDER
from core.summarize import Excerpt, SummaryRequest
from core.summary_sources import SummaryUnavailable, file_by_name, file_excerpts, latest_file

if TYPE_CHECKING:
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS: Final = 24 * 3600
MAX_WINDOW_DAYS: Final = 30
DEFAULT_MAX_COUNT: Final = 2000
PAGE_SIZE: Final = 200  # Slack recommends at most 200 a page; Tier 1 apps get 15 whatever we ask
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

RATE_LIMITED: Final = "Slack is rate-limiting history reads right now; try again in a minute."

# Message subtypes that carry something someone said; every other subtype (channel_join,
# channel_leave, channel_topic, pinned_item, bot_add, tombstone, ...) is skipped.
_KEPT_SUBTYPES: Final = frozenset(
    {"", "bot_message", "thread_broadcast", "file_share", "me_message"}
)


# --- what the command asks for -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelWindow:
    """The channel's messages since ``oldest`` (epoch seconds). ``label``: "last 24 hours";
    ``note`` says when the asked-for period was shortened to the maximum."""

    oldest: float
    label: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class ChannelCount:
    """The channel's last ``count`` messages (top level; their thread replies come too)."""

    count: int
    label: str


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """A thread: ``ts`` is its root's ts (or any message of it; Slack finds the thread)."""

    channel: str
    ts: str


@dataclass(frozen=True, slots=True)
class FileTarget:
    """A file shared in the channel: ``name`` None means the latest one."""

    name: str | None


@dataclass(frozen=True, slots=True)
class ArgumentError:
    """The command text was not understood; ``message`` is one line for the person."""

    message: str


SummarizeTarget = ChannelWindow | ChannelCount | ThreadRef | FileTarget

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
_DURATION = re.compile(r"(\d{1,9})\s*([a-z]+)")
_COUNT = re.compile(r"\d{1,3}(?:,\d{3})+|\d{1,12}")
_FILE_WORD = re.compile(r"file(?:\s+|\s*:\s*)(?P<name>.+)", re.IGNORECASE | re.DOTALL)
_WRAPPED_LINK = re.compile(r"<(?P<url>[^<>|]+)(?:\|[^<>]*)?>")
_THREAD_PATH = re.compile(r"/archives/(?P<channel>[CGD][A-Z0-9]+)/p(?P<digits>\d{16})/?")
_TS = re.compile(r"\d{9,10}\.\d{1,6}")
_QUOTES: Final = "\"'`“”‘’"


def usage(max_count: int = DEFAULT_MAX_COUNT) -> str:
    """The accepted forms, in one line."""
    return (
        "Try /summarize with nothing (this channel, last 24 hours), a period like 90m, 24h, "
        f"7d or 2w (up to {MAX_WINDOW_DAYS} days), a number of messages (1 to {max_count:,}), "
        "a thread link, `file` (the latest shared file) or `file <name>`."
    )


def parse_summarize_args(
    text: str, *, now: float, max_count: int = DEFAULT_MAX_COUNT
) -> SummarizeTarget | ArgumentError:
    """What ``/summarize <text>`` asks for; ``now`` is epoch seconds (windows end there)."""
    raw = " ".join((text or "").split())
    if not raw:
        return ChannelWindow(now - DEFAULT_WINDOW_SECONDS, "last 24 hours")
    lowered = raw.lower()

    if (duration := _DURATION.fullmatch(lowered)) and duration.group(2) in _UNITS:
        return _window(int(duration.group(1)), duration.group(2), raw, now, max_count)

    if _COUNT.fullmatch(raw):
        count = int(raw.replace(",", ""))
        if 1 <= count <= max_count:
            return ChannelCount(count, _plural(count, "message"))
        return ArgumentError(
            f"I can summarize between 1 and {max_count:,} messages. {usage(max_count)}"
        )

    if "slack.com" in lowered or lowered.startswith(("<http", "http")):
        thread = _thread_link(raw)
        if thread is not None:
            return thread
        return ArgumentError(
            f"That doesn't look like a link to a Slack message (use Copy link on the thread). "
            f"{usage(max_count)}"
        )

    if lowered == "file":
        return FileTarget(None)
    if named := _FILE_WORD.fullmatch(raw):
        name = named.group("name").strip().strip(_QUOTES).strip()
        return FileTarget(name) if name else FileTarget(None)
    bare = raw.strip(_QUOTES).strip()
    if bare.lower().endswith(FILE_EXTENSIONS) and "/" not in bare and len(bare) > 4:
        return FileTarget(bare)

    shown = raw if len(raw) <= 40 else raw[:39] + "…"
    return ArgumentError(f"I didn't understand “{shown}”. {usage(max_count)}")


def _window(
    amount: int, unit: str, raw: str, now: float, max_count: int
) -> ChannelWindow | ArgumentError:
    if amount <= 0:
        return ArgumentError(f"The period must be longer than zero. {usage(max_count)}")
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


def _plural(count: int, word: str) -> str:
    return f"last {word}" if count == 1 else f"last {count:,} {word}s"


# --- errors ------------------------------------------------------------------------------


# --- display names -----------------------------------------------------------------------


class UserNames:
    """Display names by user id, from ``users.info``, cached for the process.

    Preference: ``profile.display_name``, then ``real_name``, then ``name``. A lookup that fails
    (unknown user, rate limit, network) answers the id itself and is remembered for
    ``failure_ttl_seconds``, so a channel full of one deleted user costs one call, not one per
    message. Thread-safe: concurrent lookups of one id make one call.
    """

    def __init__(
        self,
        client: WebClient,
        *,
        ttl_seconds: float = 3600.0,
        failure_ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._failure_ttl = failure_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._names: dict[str, tuple[str, float]] = {}  # id -> (name, expires at)
        self._pending: dict[str, threading.Lock] = {}

    def name(self, user_id: str) -> str:
        if not user_id:
            return "someone"
        cached = self._cached(user_id)
        if cached is not None:
            return cached
        with self._lock:
            pending = self._pending.setdefault(user_id, threading.Lock())
        with pending:
            cached = self._cached(user_id)  # another thread may have looked it up meanwhile
            if cached is not None:
                return cached
            name, ttl = self._lookup(user_id)
            with self._lock:
                self._names[user_id] = (name, self._clock() + ttl)
                self._pending.pop(user_id, None)
            return name

    def _cached(self, user_id: str) -> str | None:
        with self._lock:
            entry = self._names.get(user_id)
            if entry is not None and entry[1] > self._clock():
                return entry[0]
            return None

    def _lookup(self, user_id: str) -> tuple[str, float]:
        from slack_sdk.errors import SlackApiError

        try:
            user = self._client.users_info(user=user_id).get("user") or {}
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "unknown"
            log.warning("users.info failed", extra={"user_id": user_id, "slack_error": error})
            return user_id, self._failure_ttl
        except OSError as exc:
            log.warning("users.info unreachable", extra={"user_id": user_id, "detail": str(exc)})
            return user_id, self._failure_ttl
        profile = user.get("profile") or {}
        for candidate in (
            profile.get("display_name"),
            user.get("real_name"),
            profile.get("real_name"),
            user.get("name"),
        ):
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip(), self._ttl
        return user_id, self._ttl


# --- message text ------------------------------------------------------------------------

_ANGLE = re.compile(r"<([^<>\n]+)>")
_BROADCASTS: Final = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def readable_text(text: str, name_of: Callable[[str], str]) -> str:
    """Slack's message markup as people see it: ``<@U1>`` -> ``@Ada``, ``<#C1|general>`` ->
    ``#general``, ``<!here>`` -> ``@here``, ``<url|label>`` -> ``label (url)``, ``<url>`` ->
    ``url``, and ``&amp; &lt; &gt;`` unescaped."""

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            user_id = target[1:]
            name = name_of(user_id)
            if name == user_id and label:
                name = label.lstrip("@")
            return f"@{name}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            keyword = target[1:].split("^", 1)[0]
            if keyword in _BROADCASTS:
                return _BROADCASTS[keyword]
            if label:
                return label  # <!subteam^S1|@eng>, <!date^...|fallback>
            return f"@{keyword}"
        if target.startswith("mailto:"):
            return label or target.removeprefix("mailto:")
        if not label or label == target or target.split("://", 1)[-1] == label:
            return target
        return f"{label} ({target})"

    rewritten = _ANGLE.sub(replace, text)
    return rewritten.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _message_body(msg: Mapping[str, Any]) -> str:
    text = str(msg.get("text") or "")
    if not text.strip():
        parts = []
        for attachment in msg.get("attachments") or ():
            if isinstance(attachment, Mapping):
                piece = attachment.get("text") or attachment.get("fallback") or ""
                title = attachment.get("title") or attachment.get("pretext") or ""
                parts.append("\n".join(p for p in (str(title), str(piece)) if p))
        text = "\n".join(p for p in parts if p)
    names = [
        str(f.get("name") or f.get("title"))
        for f in msg.get("files") or ()
        if isinstance(f, Mapping) and (f.get("name") or f.get("title"))
    ]
    if names:
        text = (text + "\n" if text.strip() else "") + f"[shared {', '.join(names)}]"
    return text.strip()


# --- reading history ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """Excerpts oldest first; ``limit_note`` says what a limit left out ("" if nothing);
    ``oldest_ts`` / ``newest_ts`` bound what was read."""

    excerpts: tuple[Excerpt, ...]
    limit_note: str
    oldest_ts: str | None
    newest_ts: str | None

    def request(self, title: str) -> SummaryRequest:
        return SummaryRequest(title, "conversation", self.excerpts, self.limit_note)


class _RateLimitedRead(Exception):
    """A read Slack kept rate-limiting after the allowed wait."""


@dataclass
class _Read:
    """One read operation: its retry budget, and the names used in messages to people."""

    where: str  # "#general" or "<#C1>", as people see it
    thread: bool
    wait_left: float


@dataclass
class _Msg:
    ts: str
    raw: Mapping[str, Any]
    reply: bool = False
    replies: list[_Msg] = field(default_factory=list)


def _reply_count(msg: Mapping[str, Any]) -> int:
    try:
        return int(msg.get("reply_count") or 0)
    except (TypeError, ValueError):
        return 0


def _micros(ts: str) -> int:
    seconds, _, fraction = ts.partition(".")
    return int(seconds or 0) * 1_000_000 + int(fraction.ljust(6, "0")[:6] or 0)


class SlackHistory:
    """Reads conversations with the bot's token; see the module docstring for what is kept.

    ``max_messages`` bounds every read (top level and replies together). A 429 or
    ``ratelimited`` answer is retried once per call after ``Retry-After`` seconds, if the read
    still has that much of ``max_retry_wait`` left; otherwise the read stops. With
    ``partial_on_rate_limit`` a read that already has messages returns them with a note saying
    what was not read; one that has none raises :class:`SummaryUnavailable`.
    """

    def __init__(
        self,
        client: WebClient,
        *,
        max_messages: int,
        user_names: UserNames,
        bot_name: str = "chatbot",
        include_replies: bool = True,
        max_reply_threads: int = 50,
        max_retry_wait: float = 3.0,
        partial_on_rate_limit: bool = True,
        timezone: tzinfo = UTC,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._client = client
        self._max = max_messages
        self._names = user_names
        self._bot_name = bot_name
        self._include_replies = include_replies
        self._max_reply_threads = max_reply_threads
        self._max_retry_wait = max_retry_wait
        self._partial = partial_on_rate_limit
        self._tz = timezone
        self._sleep = sleep

    # the three reads

    def read(
        self,
        target: ChannelWindow | ChannelCount | ThreadRef,
        *,
        channel: str,
        channel_name: str = "",
    ) -> HistoryResult:
        """Dispatch on a parsed target; ``channel`` is where the command was used."""
        if isinstance(target, ChannelWindow):
            result = self.channel_window(
                channel, target.oldest, channel_name=channel_name, label=target.label
            )
            if target.note:
                note = f"{target.note} {result.limit_note}".strip()
                result = HistoryResult(result.excerpts, note, result.oldest_ts, result.newest_ts)
            return result
        if isinstance(target, ChannelCount):
            return self.channel_count(channel, target.count, channel_name=channel_name)
        name = channel_name if target.channel == channel else ""
        return self.thread(target.channel, target.ts, channel_name=name)

    def channel_window(
        self, channel: str, oldest: float, *, channel_name: str = "", label: str = ""
    ) -> HistoryResult:
        """Top-level messages since ``oldest`` (epoch seconds), with their threads' replies."""
        read = self._start(channel, channel_name, thread=False)
        span = f"from the {label}" if label else f"since {self._when(f'{oldest:.6f}')}"
        top, more, cut = self._top_level(read, channel, self._max, oldest=f"{oldest:.6f}")
        notes = []
        if cut:
            notes.append(self._cut_note(top, read, f"older messages {span}"))
        elif more:
            notes.append(
                f"Covers the latest {self._kept_count(top):,} messages "
                f"(from {self._oldest(top)}); older messages {span} are not included "
                f"(limit: {self._max:,} messages)."
            )
        return self._finish(read, channel, top, notes, empty=f"{read.where} {span}")

    def channel_count(self, channel: str, count: int, *, channel_name: str = "") -> HistoryResult:
        """The last ``count`` top-level messages, with their threads' replies."""
        read = self._start(channel, channel_name, thread=False)
        wanted = min(count, self._max)
        top, more, cut = self._top_level(read, channel, wanted, oldest=None)
        notes = []
        if cut:
            notes.append(self._cut_note(top, read, f"the rest of the last {wanted:,} messages"))
        elif more and count > wanted:
            notes.append(
                f"You asked for {count:,} messages; this covers the latest {wanted:,} "
                f"(from {self._oldest(top)}; limit: {self._max:,} messages)."
            )
        return self._finish(read, channel, top, notes, empty=read.where)

    def thread(self, channel: str, ts: str, *, channel_name: str = "") -> HistoryResult:
        """A thread, parent first; a thread longer than ``max_messages`` is covered from its
        start (the parent and the earliest replies) and the note says so."""
        read = self._start(channel, channel_name, thread=True)
        messages: list[_Msg] = []
        notes: list[str] = []
        try:
            more = self._thread_messages(read, channel, ts, messages, self._max)
        except _RateLimitedRead:
            if not (messages and self._partial):
                raise SummaryUnavailable(RATE_LIMITED, cause="rate_limited") from None
            more = False
            notes.append(
                f"Slack rate-limited reading this thread: this covers its first "
                f"{len(messages):,} messages (to {self._when(messages[-1].ts)}); later replies "
                "were not read."
            )
        if not messages:
            raise SummaryUnavailable(
                "There are no messages to summarize in this thread.", cause="empty"
            )
        if more:
            notes.append(
                f"Covers the first {len(messages):,} messages of this thread "
                f"(to {self._when(messages[-1].ts)}); later replies are not included "
                f"(limit: {self._max:,} messages)."
            )
        excerpts = tuple(self._excerpt(m) for m in messages)
        return HistoryResult(excerpts, " ".join(notes), messages[0].ts, messages[-1].ts)

    # reading

    def _start(self, channel: str, channel_name: str, *, thread: bool) -> _Read:
        where = f"#{channel_name.lstrip('#')}" if channel_name else f"<#{channel}>"
        return _Read(where=where, thread=thread, wait_left=self._max_retry_wait)

    def _top_level(
        self, read: _Read, channel: str, limit: int, *, oldest: str | None
    ) -> tuple[list[_Msg], bool, bool]:
        """Up to ``limit`` kept top-level messages, newest first, plus skipped parents of
        threads (a deleted message's replies still count); returns (messages, older messages
        exist, the rate limit cut the read short)."""
        found: list[_Msg] = []
        kept = 0
        params: dict[str, Any] = {"channel": channel, "limit": PAGE_SIZE}
        if oldest is not None:
            params["oldest"] = oldest
        try:
            for page, has_more in self._pages(read, "conversations_history", params):
                for i, msg in enumerate(page):
                    if kept >= limit:
                        return found, has_more or any(self._kept(m) for m in page[i:]), False
                    if self._kept(msg):
                        kept += 1
                    elif not msg.get("reply_count"):
                        continue
                    found.append(_Msg(str(msg["ts"]), msg))
                if kept >= limit:
                    return found, has_more, False  # no page read just to learn there is more
        except _RateLimitedRead:
            if not (kept and self._partial):
                raise SummaryUnavailable(RATE_LIMITED, cause="rate_limited") from None
            return found, True, True
        return found, False, False

    def _thread_messages(
        self,
        read: _Read,
        channel: str,
        ts: str,
        out: list[_Msg],
        limit: int,
        *,
        exclude: frozenset[str] = frozenset(),
        replies: bool = False,
    ) -> bool:
        """Append up to ``limit`` kept messages of the thread at ``ts`` to ``out``, oldest
        first, leaving out ``exclude`` (for replies: the parent and broadcasts already shown);
        returns whether the thread has more kept messages than were appended."""
        params: dict[str, Any] = {"channel": channel, "ts": ts, "limit": PAGE_SIZE}
        first_page = True
        for page, has_more in self._pages(read, "conversations_replies", params):
            if first_page and page:
                first = page[0]
                root = str(first.get("thread_ts") or first.get("ts"))
                if root != str(first.get("ts")) and root != ts:
                    # Slack answered with the reply alone: ask again for the whole thread.
                    return self._thread_messages(
                        read, channel, root, out, limit, exclude=exclude, replies=replies
                    )
            first_page = False
            seen = {m.ts for m in out} | exclude
            for msg in page:
                msg_ts = str(msg.get("ts"))
                if msg_ts in seen or not self._kept(msg):
                    continue
                if len(out) >= limit:
                    return True
                seen.add(msg_ts)
                out.append(_Msg(msg_ts, msg, reply=replies))
            if len(out) >= limit and has_more:
                return True
        return False

    def _finish(
        self, read: _Read, channel: str, top: list[_Msg], notes: list[str], *, empty: str
    ) -> HistoryResult:
        top.sort(key=lambda m: _micros(m.ts))
        if self._include_replies:
            notes.extend(self._add_replies(read, channel, top))
        ordered: list[_Msg] = []
        for msg in top:
            if self._kept(msg.raw):
                ordered.append(msg)
            ordered.extend(msg.replies)
        if not ordered:
            raise SummaryUnavailable(
                f"There are no messages to summarize in {empty}.", cause="empty"
            )
        excerpts = tuple(self._excerpt(m) for m in ordered)
        times = [m.ts for m in ordered]
        oldest = min(times, key=_micros)
        newest = max(times, key=_micros)
        return HistoryResult(excerpts, " ".join(n for n in notes if n), oldest, newest)

    def _add_replies(self, read: _Read, channel: str, top: list[_Msg]) -> list[str]:
        """Fill each thread parent's ``replies``, newest threads first, within what is left of
        ``max_messages``; returns the note on what was left out, if anything."""
        threads = [m for m in reversed(top) if _reply_count(m.raw) > 0]
        budget = self._max - sum(1 for m in top if self._kept(m.raw))
        shown = frozenset(m.ts for m in top)
        incomplete = missing = 0
        reason = ""
        unread = len(threads)  # index of the first thread not read at all
        for index, parent in enumerate(threads):
            if budget <= 0:
                reason = f"limit: {self._max:,} messages"
                unread = index
                break
            if index >= self._max_reply_threads:
                unread = index
                reason = f"at most {self._max_reply_threads} threads are read"
                break
            replies: list[_Msg] = []
            try:
                more = self._thread_messages(
                    read, channel, parent.ts, replies, budget, exclude=shown, replies=True
                )
            except _RateLimitedRead:
                more = True
                reason = "Slack rate-limited reading threads"
            except SummaryUnavailable:
                continue  # e.g. the parent was deleted meanwhile: its replies are gone too
            parent.replies = replies
            budget -= len(replies)
            if more:
                incomplete += 1
                missing += max(1, _reply_count(parent.raw) - len(replies))
                reason = reason or f"limit: {self._max:,} messages"
            if reason:
                unread = index + 1
                break
        left = threads[unread:]
        incomplete += len(left)
        missing += sum(_reply_count(m.raw) for m in left)
        if not incomplete:
            return []
        return [
            f"Not all thread replies are included ({reason}): about {missing:,} replies in "
            f"{incomplete:,} threads are left out."
        ]

    def _cut_note(self, top: list[_Msg], read: _Read, what: str) -> str:
        return (
            f"Slack rate-limited reading {read.where}: this covers only the latest "
            f"{self._kept_count(top):,} messages (from {self._oldest(top)}); {what} were not read."
        )

    def _kept_count(self, messages: Sequence[_Msg]) -> int:
        return sum(1 for m in messages if self._kept(m.raw))

    def _oldest(self, messages: Sequence[_Msg]) -> str:
        return self._when(min((m.ts for m in messages if self._kept(m.raw)), key=_micros))

    def _pages(
        self, read: _Read, method: str, params: dict[str, Any]
    ) -> Iterator[tuple[list[Mapping[str, Any]], bool]]:
        """Each page's messages and has_more, following ``next_cursor``; ``params["cursor"]``
        is the cursor of the page being yielded (absent for the first)."""
        while True:
            response = self._call(read, method, params)
            page = [m for m in response.get("messages") or () if isinstance(m, Mapping)]
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or ""
            has_more = bool(response.get("has_more")) and bool(cursor)
            yield page, has_more
            if not has_more:
                return
            params["cursor"] = cursor

    def _call(self, read: _Read, method: str, params: dict[str, Any]) -> Any:
        from slack_sdk.errors import SlackApiError

        retried = False
        while True:
            try:
                return getattr(self._client, method)(**params)
            except SlackApiError as exc:
                response = exc.response
                error = str(response.get("error") or "unknown_error")
                if response.status_code == 429 or error == "ratelimited":
                    wait = _retry_after(response.headers)
                    if not retried and wait <= read.wait_left:
                        log.info(
                            "slack history read rate limited; retrying",
                            extra={"method": method, "retry_after": wait},
                        )
                        read.wait_left -= wait
                        self._sleep(wait)
                        retried = True
                        continue
                    log.warning(
                        "slack history read rate limited",
                        extra={"method": method, "retry_after": wait},
                    )
                    raise _RateLimitedRead(method) from exc
                raise self._refusal(read, method, error, response) from exc
            except OSError as exc:  # urllib's URLError, timeouts, refused connections
                log.warning("slack unreachable", extra={"method": method, "detail": str(exc)})
                raise SummaryUnavailable(
                    "I couldn't reach Slack to read the messages; please try again shortly.",
                    cause="slack_unreachable",
                ) from exc

    def _refusal(self, read: _Read, method: str, error: str, response: Any) -> SummaryUnavailable:
        log.warning("slack refused a history read", extra={"method": method, "slack_error": error})
        cause = f"slack_{error}"
        invite = f"invite me with /invite @{self._bot_name} and try again"
        if error == "not_in_channel":
            return SummaryUnavailable(f"I'm not in {read.where} — {invite}.", cause=cause)
        if error == "channel_not_found":
            if read.thread:
                return SummaryUnavailable(
                    "That thread is in a channel I can't see, or in another workspace. "
                    f"If it's a private channel, {invite} there.",
                    cause=cause,
                )
            return SummaryUnavailable(
                f"I can't read {read.where}: if it's a private channel, {invite}. "
                "I can't read direct messages I'm not part of.",
                cause=cause,
            )
        if error in ("thread_not_found", "message_not_found"):
            return SummaryUnavailable(
                "I couldn't find that thread; it may have been deleted.", cause=cause
            )
        if error == "missing_scope":
            needed = str(response.get("needed") or "a history")
            return SummaryUnavailable(
                f"I'm not allowed to read this conversation's messages (I need Slack's "
                f"{needed} permission); an admin needs to add it and reinstall me.",
                cause=cause,
            )
        return SummaryUnavailable(
            f"Slack wouldn't let me read the messages ({error}); please try again later.",
            cause=cause,
        )

    # shaping

    def _kept(self, msg: Mapping[str, Any]) -> bool:
        if str(msg.get("subtype") or "") not in _KEPT_SUBTYPES:
            return False
        if msg.get("bot_id") and str(msg.get("text") or "").strip() == PLACEHOLDER:
            return False  # a reply of ours still being written
        return bool(_message_body(msg))

    def _excerpt(self, msg: _Msg) -> Excerpt:
        raw = msg.raw
        label = f"{self._author(raw)}, {self._when(msg.ts)}"
        if msg.reply:
            label += " (thread reply)"
        return Excerpt(readable_text(_message_body(raw), self._names.name), label)

    def _author(self, msg: Mapping[str, Any]) -> str:
        if msg.get("bot_id") or msg.get("subtype") == "bot_message":
            profile = msg.get("bot_profile") or {}
            name = profile.get("name") or msg.get("username")
            if name:
                return str(name)
            if msg.get("user"):
                return self._names.name(str(msg["user"]))
            return str(msg.get("bot_id") or "a bot")
        return self._names.name(str(msg.get("user") or ""))

    def _when(self, ts: str) -> str:
        moment = datetime.fromtimestamp(_micros(ts) / 1_000_000, tz=self._tz)
        return moment.strftime("%Y-%m-%d %H:%M ") + (moment.tzname() or "")


def _retry_after(headers: Mapping[str, Any] | None) -> float:
    headers = headers or {}
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


__all__ = [
    "ArgumentError",
    "ChannelCount",
    "ChannelWindow",
    "FileTarget",
    "HistoryResult",
    "SlackHistory",
    "SummaryUnavailable",
    "ThreadRef",
    "UserNames",
    "file_by_name",
    "file_excerpts",
    "latest_file",
    "parse_summarize_args",
]
