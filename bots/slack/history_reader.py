"""What a Slack channel or thread summary covers, read into excerpts.

:class:`SlackHistory` reads a channel window, the last N messages or a thread (through
:class:`bots.slack.history_api.HistoryApi`) and turns them into
:class:`core.summarize.Excerpt` values, oldest first, each labelled with who wrote it and when
(names from :class:`bots.slack.user_names.UserNames`, text through :mod:`bots.slack.markup`).
It is a module of its own because what a summary covers is the product's choice, and should
be stated to people:

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

Slack errors become :class:`core.summary_sources.SummaryUnavailable` with a ``message`` fit to
show the person (ephemerally): not a member, channel or thread not found, a missing scope, rate
limiting that a short wait did not clear, or nothing to summarize.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Final

from bots.slack.history_api import (
    PAGE_SIZE,
    RATE_LIMITED,
    HistoryApi,
    HistoryRead,
    RateLimitedRead,
)
from bots.slack.markup import message_body, readable_text
from bots.slack.summary_args import ThreadRef
from bots.slack.user_names import UserNames
from core.pacer import PLACEHOLDER
from core.summarize import Excerpt, SummaryRequest
from core.summary_request import ChannelCount, ChannelWindow
from core.summary_sources import SummaryUnavailable

if TYPE_CHECKING:
    from slack_sdk import WebClient

# Message subtypes that carry something someone said; every other subtype (channel_join,
# channel_leave, channel_topic, pinned_item, bot_add, tombstone, ...) is skipped.
_KEPT_SUBTYPES: Final = frozenset(
    {"", "bot_message", "thread_broadcast", "file_share", "me_message"}
)


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
        self._api = HistoryApi(client, bot_name=bot_name, sleep=sleep)
        self._max = max_messages
        self._names = user_names
        self._include_replies = include_replies
        self._max_reply_threads = max_reply_threads
        self._max_retry_wait = max_retry_wait
        self._partial = partial_on_rate_limit
        self._tz = timezone

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
        except RateLimitedRead:
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

    def _start(self, channel: str, channel_name: str, *, thread: bool) -> HistoryRead:
        where = f"#{channel_name.lstrip('#')}" if channel_name else f"<#{channel}>"
        return HistoryRead(where=where, thread=thread, wait_left=self._max_retry_wait)

    def _top_level(
        self, read: HistoryRead, channel: str, limit: int, *, oldest: str | None
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
            for page, has_more in self._api.pages(read, "conversations_history", params):
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
        except RateLimitedRead:
            if not (kept and self._partial):
                raise SummaryUnavailable(RATE_LIMITED, cause="rate_limited") from None
            return found, True, True
        return found, False, False

    def _thread_messages(
        self,
        read: HistoryRead,
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
        for page, has_more in self._api.pages(read, "conversations_replies", params):
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
        self, read: HistoryRead, channel: str, top: list[_Msg], notes: list[str], *, empty: str
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

    def _add_replies(self, read: HistoryRead, channel: str, top: list[_Msg]) -> list[str]:
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
            except RateLimitedRead:
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

    def _cut_note(self, top: list[_Msg], read: HistoryRead, what: str) -> str:
        return (
            f"Slack rate-limited reading {read.where}: this covers only the latest "
            f"{self._kept_count(top):,} messages (from {self._oldest(top)}); {what} were not read."
        )

    def _kept_count(self, messages: Sequence[_Msg]) -> int:
        return sum(1 for m in messages if self._kept(m.raw))

    def _oldest(self, messages: Sequence[_Msg]) -> str:
        return self._when(min((m.ts for m in messages if self._kept(m.raw)), key=_micros))

    # shaping

    def _kept(self, msg: Mapping[str, Any]) -> bool:
        if str(msg.get("subtype") or "") not in _KEPT_SUBTYPES:
            return False
        if msg.get("bot_id") and str(msg.get("text") or "").strip() == PLACEHOLDER:
            return False  # a reply of ours still being written
        return bool(message_body(msg))

    def _excerpt(self, msg: _Msg) -> Excerpt:
        raw = msg.raw
        label = f"{self._author(raw)}, {self._when(msg.ts)}"
        if msg.reply:
            label += " (thread reply)"
        return Excerpt(readable_text(message_body(raw), self._names.name), label)

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
