"""Replies in Slack by native streaming: a loading status, then one message that grows.

Slack's AI-app methods stream an answer into one message: ``chat.startStream`` creates it with
the first text, ``chat.appendStream`` adds text, ``chat.stopStream`` ends it (and may add blocks:
the sources and the feedback buttons). Until the first text, ``assistant.threads.setStatus``
shows a status with loading messages under the question, so no placeholder message is posted.

:class:`SlackStreamSink` keeps the :class:`~core.sinks.ReplySink` contract, so the pacer drives it
as it drives the paced sink (:class:`~bots.slack.sink.SlackReplySink`), which it also wraps as its
floor:

- ``post(PLACEHOLDER)`` sets the status and returns a *pending* reference: no message yet. If
  Slack refuses the status, the placeholder is posted as a message instead and that reply is
  paced (nothing on screen until the first text would be worse than the paced path).
- The first ``update`` starts the stream with the text; later ones append only what is new. Text
  that does not extend what was streamed (a code fence closed at a split) cannot be appended:
  the stream is stopped and the message is edited with ``chat.update`` from then on.
- ``post`` of a continuation (a long answer split in several messages) first stops the stream of
  the message before it, which then shows its part; ``finish`` stops the stream with the rest of
  the text and the final blocks. A pending reply that finishes (an answer faster than the first
  edit, a one-line notice) is posted whole with ``chat.postMessage``.
- ``close`` stops, once and best effort, any stream a reply that ended early left open (a final
  refused or rate limited past its deadline, a refused edit), so no message keeps streaming.

Where Slack will not stream, the reply falls back to the paced path and the person still sees
one answer: a refused ``chat.startStream`` sends the same text with ``chat.postMessage`` (and
``chat.update`` after it). Only refusals meaning "no streaming here" (unknown method, missing
scope: :mod:`bots.slack.stream_errors`) are remembered for the workspace
(:class:`~core.refusals.RefusalMemory`), so that its next replies go the paced way at once; any
other refusal (a transient error, one recipient) paces this reply only. A start whose outcome is
unknown (the connection broke, ``fatal_error``) is never tried again blindly: the thread is
searched for a stream it may have created, which is stopped and edited into the answer, else
the answer is posted. Stream calls go through a copy of the client without slack_sdk's
connection retry, which would repeat a call that landed (a second stream, appended text twice).

A stream that fails midway (expired, ``message_not_in_streaming_state``, any refusal that is not
a rate limit) is finished in the same message with ``chat.update`` and the whole text; only if
that message is gone does the pacer post the answer anew. Rate limits are the pacer's business,
as for every sink: ``ratelimited`` is :class:`~core.errors.RateLimited` with ``Retry-After``.

Budgets (:class:`~bots.slack.sink.SlackLimits`): Slack allows about 20 ``chat.stopStream`` a
minute per workspace (Tier 2; ``chat.startStream`` is taken as Tier 2 too), far fewer than
answers at peak. So a reply streams only if it is *admitted*
(:meth:`~bots.slack.sink.SlackLimits.admit_stream`): its stop fits now beside the stop of every
stream already open in the workspace, and a start is free now. Otherwise it goes the paced way
at once (its first text by ``chat.postMessage``, then ``chat.update``, whose budget is a separate
one), and nothing is remembered for the workspace: the next reply asks again. The admitted stop
is required and ends the reservation; appends are optional in their own scope (Tier 4: the start
already showed the first text); the start also counts per channel as a post (required). The
status, the stop at ``close`` and the search for a lost stream are courtesies: unbudgeted, never
failing an answer.

The module runs past 450 lines because a message's four states (pending, stream, leaving,
edit) and every way a stream can end are one state machine, best read in one place.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bots.slack.sink import MAX_MARKDOWN_CHARS, SlackLimits, SlackReplySink, translate
from bots.slack.stream_errors import (
    AMBIGUOUS,
    FATAL,
    NO_STREAMING,
    STREAM_OVER,
    TOO_LONG,
    rate_limited,
    slack_error,
    unreachable,
)
from core.budget import Priority, Scope
from core.domain import Reply
from core.errors import BudgetSpent, ChatbotError
from core.feedback import AnswerRef
from core.refusals import RefusalMemory
from core.sinks import PLACEHOLDER

log = logging.getLogger(__name__)

STATUS = "is thinking…"
LOADING_MESSAGES = (
    "Reading the conversation…",
    "Looking through shared files…",
    "Writing an answer…",
)

_ORPHAN_LOOKBACK = 5  # the newest bot replies in the thread that a lost stream may be


@dataclass
class _Message:
    """One message of the reply. ``mode``: ``pending`` (a status, no message yet), ``stream``
    (open stream), ``leaving`` (its stream must be stopped before it is edited) or ``edit``
    (a normal message, edited with ``chat.update``; ``ts`` None until posted)."""

    mode: str
    ts: str | None = None
    streamed: str = ""  # the text the stream shows
    admitted: bool = False  # its stream's stop has room kept, and a start was granted
    part: str = ""  # the text the pacer's last ``update`` asked this message to show


def without_retries(client: WebClient) -> WebClient:
    """``client`` with no automatic retries (slack_sdk retries a dropped connection once by
    default): for calls that may have landed, as a stream's start, appends and stop. Build it
    once per process and pass it to every sink (``stream_client``)."""
    once = copy.copy(client)
    once.retry_handlers = []
    return once


class SlackStreamSink:
    """A :class:`~core.sinks.ReplySink` streaming natively; see the module docstring."""

    max_chars = MAX_MARKDOWN_CHARS  # a streamed message holds 12,000 characters in all

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        thread_ts: str | None,
        workspace: str,
        limits: SlackLimits,
        support: RefusalMemory,
        recipient_user: str | None = None,
        recipient_team: str | None = None,
        answer: AnswerRef | None = None,
        status: str = STATUS,
        loading_messages: Sequence[str] = LOADING_MESSAGES,
        stream_client: WebClient | None = None,
    ) -> None:
        self._client = client
        # Stream calls are not idempotent: no automatic retry of a call that may have landed.
        self._once = stream_client or without_retries(client)
        self._channel = channel
        self._thread_ts = thread_ts
        self._workspace = workspace
        self._support = support
        self._recipient_user = recipient_user
        # The asker's own team (another one for a Slack Connect guest), else the workspace's.
        self._recipient_team = recipient_team or workspace
        self._status = status
        self._loading = list(loading_messages)
        self._paced = SlackReplySink(
            client,
            channel=channel,
            thread_ts=thread_ts,
            workspace=workspace,
            limits=limits,
            answer=answer,
        )
        self._limits = limits
        self._budget = limits.budget
        self._posts = limits.posts(workspace, channel)
        self._appends = limits.stream_appends(workspace)
        self._stops = limits.stream_stops(workspace)
        self._holder = uuid.uuid4().hex
        self._messages: dict[str, _Message] = {}
        self._status_shown = False
        self._status_refused = False
        self._posted = False  # whether a message exists (Slack then clears the status itself)
        self._open_streams = 0

    # -- the contract ------------------------------------------------------------------------

    def post(self, text: str) -> str:
        self._end_streams_before_next()
        if text == PLACEHOLDER and self._can_stream() and self._show_status():
            ref = f"pending:{len(self._messages)}"
            self._messages[ref] = _Message("pending")
            return ref
        ts = self._paced.post(text)
        self._posted = True
        self._messages[ts] = _Message("edit", ts)
        return ts

    def update(self, ref: str, text: str) -> None:
        m = self._messages[ref]
        m.part = text
        if m.mode == "pending":
            self._start(m, text)
            if m.mode == "stream":
                return
        if m.mode == "stream":
            if text.startswith(m.streamed):
                if len(text) > len(m.streamed):
                    self._append(m, text)
                if m.mode == "stream":
                    return
            else:
                m.mode = "leaving"
        self._edit(m, text)

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        m = self._messages[ref]
        if m.mode == "pending":
            m.ts, m.mode = self._paced.post_final(text, reply), "edit"
            self._posted = True
            if m.admitted:  # admitted, but its start waited for the channel: no stream now
                self._not_started(m)
            return
        if m.mode == "stream":
            if text.startswith(m.streamed) and self._stop(m, text, reply):
                return  # stopped with the whole text and the final blocks
            if m.mode == "stream":
                m.mode = "leaving"
        if m.mode == "leaving":
            self._stop_quietly(m)
        if m.ts is None:
            m.ts = self._paced.post_final(text, reply)
            self._posted = True
            return
        self._paced.finish(m.ts, text, reply)

    def close(self) -> None:
        for m in self._messages.values():
            if m.mode in ("stream", "leaving") and m.ts is not None:
                self._stop_unbudgeted(m.ts, "a reply that ended early")
                m.mode = "edit"
        self._paced.close()
        if self._open_streams or self._admitted_unstarted():
            self._budget.close(self._stops, self._holder)
            self._open_streams = 0
        if self._status_shown and not self._posted:
            self._set_status("")  # no message came to clear it: clear it here

    def message_id(self, ref: str) -> str | None:
        m = self._messages.get(ref)
        return m.ts if m is not None else None

    def adopt(self, message_id: str) -> str:
        # A dead run's stream cannot be resumed: stop it if it is still open, then edit.
        self._posted = True
        m = _Message("leaving" if self._can_stream() else "edit", message_id)
        self._messages[message_id] = m
        if m.mode == "edit":
            self._paced.adopt(message_id)
        return message_id

    # -- streaming ---------------------------------------------------------------------------

    def _can_stream(self) -> bool:
        if not self._thread_ts:
            return False  # Slack streams replies in a thread only
        if self._recipient_user is None and not self._channel.startswith("D"):
            return False  # outside a DM Slack needs to know who the stream is for
        return self._support.allowed(self._workspace)

    def _start(self, m: _Message, text: str) -> None:
        if not m.admitted:
            if not self._limits.admit_stream(self._workspace, self._holder):
                log.info("stream not admitted (slack's stream budget is full): paced")
                m.mode = "edit"  # paced at once; nothing remembered for the workspace
                return
            m.admitted = True  # a start taken and a stop kept, also while the post waits
        self._spend(self._posts, Priority.REQUIRED)
        try:
            response = self._once.chat_startStream(
                channel=self._channel,
                thread_ts=str(self._thread_ts),
                markdown_text=text,
                recipient_team_id=self._recipient_team if self._recipient_user else None,
                recipient_user_id=self._recipient_user,
            )
        except SlackApiError as exc:
            error = slack_error(exc)
            if rate_limited(exc) or error in FATAL or error in TOO_LONG:
                raise translate("chat.startStream", exc) from exc
            if error in NO_STREAMING:
                self._support.refuse(self._workspace, error)
            elif error in AMBIGUOUS:
                log.warning(
                    "chat.startStream failed; it may have landed", extra={"slack_error": error}
                )
                self._recover_lost_stream(m)
            else:
                log.info("slack did not stream this reply: paced", extra={"slack_error": error})
            self._not_started(m)  # the same text goes out by chat.postMessage (or chat.update)
            return
        except (SlackRequestError, OSError) as exc:
            log.warning(
                "chat.startStream unanswered; it may have landed",
                extra={"detail": type(exc).__name__},
            )
            self._recover_lost_stream(m)
            self._not_started(m)
            return
        m.ts, m.mode, m.streamed = str(response["ts"]), "stream", text
        self._posted = True
        self._open_streams += 1  # its stop's room was kept when it was admitted

    def _admitted_unstarted(self) -> bool:
        return any(m.admitted and m.mode == "pending" for m in self._messages.values())

    def _not_started(self, m: _Message) -> None:
        m.mode = "edit"
        if not self._open_streams:
            self._budget.close(self._stops, self._holder)  # no stop to keep room for

    def _recover_lost_stream(self, m: _Message) -> None:
        """A start whose answer was lost may have created a stream in the thread. Stop every
        stream among the newest bot replies there (replies of one thread are answered one at a
        time, so none is another reply's), and carry on in the newest one by ``chat.update``;
        if none is found, the answer is posted. Best effort: never a second stream."""
        try:
            page = self._client.conversations_replies(
                channel=self._channel, ts=str(self._thread_ts), oldest=str(self._thread_ts)
            )
        except (SlackApiError, SlackRequestError, OSError) as exc:
            log.warning("could not look for a lost stream", extra={"detail": type(exc).__name__})
            return
        replies = [
            msg
            for msg in page.get("messages") or []
            if msg.get("bot_id") and msg.get("ts") and msg.get("ts") != self._thread_ts
        ]
        for msg in reversed(replies[-_ORPHAN_LOOKBACK:]):  # newest first
            stopped = self._stop_unbudgeted(str(msg["ts"]), "a stream whose start was lost")
            if stopped and m.ts is None:
                m.ts = str(msg["ts"])
                self._posted = True
                self._paced.adopt(m.ts)  # keeps room for the final edit
        if m.ts is not None:
            log.info("found the lost stream; finishing it by chat.update")

    def _append(self, m: _Message, text: str) -> None:
        self._spend(self._appends, Priority.OPTIONAL)  # the start showed the first text
        try:
            self._once.chat_appendStream(
                channel=self._channel, ts=str(m.ts), markdown_text=text[len(m.streamed) :]
            )
        except SlackApiError as exc:
            self._stream_failed(m, "chat.appendStream", exc)
            return
        except (SlackRequestError, OSError) as exc:
            m.mode = "leaving"  # did it land? The next call replaces the whole text instead.
            raise unreachable("chat.appendStream", exc) from exc
        m.streamed = text

    def _stop(self, m: _Message, text: str, reply: Reply | None) -> bool:
        """End the stream with the rest of ``text`` (and the final blocks for ``reply``); False
        if Slack refused (the message then goes on by ``chat.update``)."""
        # The text block is the stream itself.
        extra = self._paced.final_blocks(text, reply)[1:] if reply is not None else []
        self._spend(self._stops, Priority.REQUIRED, closes=True)
        try:
            self._once.chat_stopStream(
                channel=self._channel,
                ts=str(m.ts),
                markdown_text=text[len(m.streamed) :] or None,
                blocks=extra or None,
            )
        except SlackApiError as exc:
            self._stream_failed(m, "chat.stopStream", exc, stopped=True)
            return False
        except (SlackRequestError, OSError) as exc:
            m.mode = "leaving"
            raise unreachable("chat.stopStream", exc) from exc
        m.streamed = text
        self._stream_closed()
        m.mode = "edit"
        return True

    def _end_streams_before_next(self) -> None:
        """A split answer goes on in a new message: the message before it stops streaming, and
        shows its part (what the last ``update`` gave it). Never in the way of the new message:
        a stop that fails here (a rate limit) is left to :meth:`close`."""
        for m in self._messages.values():
            try:
                if m.mode == "stream" and m.part.startswith(m.streamed):
                    self._stop(m, m.part, None)
                if m.mode in ("stream", "leaving"):
                    self._stop_quietly(m)
            except ChatbotError as exc:
                log.warning(
                    "a part's stream is stopped when the reply ends", extra={"cause": exc.cause}
                )

    def _stop_quietly(self, m: _Message) -> None:
        """Stop a stream whose message goes on by ``chat.update``; a refusal (the stream is
        over already) is fine. Only a rate limit holds it back, to be tried again."""
        self._spend(self._stops, Priority.REQUIRED, closes=True)
        try:
            self._once.chat_stopStream(channel=self._channel, ts=str(m.ts))
        except SlackApiError as exc:
            if rate_limited(exc):
                raise translate("chat.stopStream", exc) from exc
            log.debug("stream was over already", extra={"slack_error": slack_error(exc)})
        except (SlackRequestError, OSError):
            log.debug("stopping the stream failed; editing the message anyway")
        self._switch_to_edits(m)

    def _stop_unbudgeted(self, ts: str, why: str) -> bool:
        """One stop, outside the budget, errors logged: whether Slack stopped a stream."""
        try:
            self._once.chat_stopStream(channel=self._channel, ts=ts)
        except SlackApiError as exc:
            log.debug("stream not stopped", extra={"slack_error": slack_error(exc), "why": why})
            return False
        except (SlackRequestError, OSError) as exc:
            log.warning("stream not stopped", extra={"detail": type(exc).__name__, "why": why})
            return False
        log.info("stopped a stream left open", extra={"why": why})
        return True

    def _stream_failed(
        self, m: _Message, method: str, exc: SlackApiError, *, stopped: bool = False
    ) -> None:
        """A refused append or stop: rate limits and dead channels are raised; anything else
        (the stream expired, a state conflict) moves the message to ``chat.update``, after one
        more try to stop its stream unless that is what was refused."""
        error = slack_error(exc)
        if rate_limited(exc) or error in FATAL:
            raise translate(method, exc) from exc
        log.warning(
            "slack stream ended early; finishing the message by chat.update",
            extra={"method": method, "slack_error": error},
        )
        if stopped or error in STREAM_OVER:
            self._switch_to_edits(m)
        else:
            m.mode = "leaving"

    def _switch_to_edits(self, m: _Message) -> None:
        if m.mode in ("stream", "leaving"):
            self._stream_closed()
        m.mode = "edit"
        assert m.ts is not None
        self._paced.adopt(m.ts)  # keeps room for the final edit

    def _stream_closed(self) -> None:
        if self._open_streams:
            self._open_streams -= 1
            if not self._open_streams:
                self._budget.close(self._stops, self._holder)

    def _edit(self, m: _Message, text: str) -> None:
        if m.mode == "leaving":
            self._stop_quietly(m)
        if m.ts is None:
            m.ts = self._paced.post(text)
            self._posted = True
        else:
            self._paced.update(m.ts, text)

    # -- the status ----------------------------------------------------------------------------

    def _show_status(self) -> bool:
        """Whether the reply has a status on screen (or had, before its first message)."""
        if not (self._status_shown or self._status_refused):
            self._status_shown = self._set_status(self._status)
            self._status_refused = not self._status_shown
        return self._status_shown

    def _set_status(self, status: str) -> bool:
        """Best effort: a status that cannot be set costs the answer nothing."""
        try:
            self._client.assistant_threads_setStatus(
                channel_id=self._channel,
                thread_ts=str(self._thread_ts),
                status=status,
                loading_messages=self._loading if status else None,
            )
        except SlackApiError as exc:
            log.info("slack status not set", extra={"slack_error": slack_error(exc)})
            return False
        except (SlackRequestError, OSError) as exc:
            log.info("slack status not set", extra={"detail": type(exc).__name__})
            return False
        return True

    # -- budget ------------------------------------------------------------------------------

    def _spend(self, scope: Scope, priority: Priority, *, closes: bool = False) -> None:
        wait = self._budget.take(scope, self._holder, priority, closes=closes)
        if wait > 0:
            raise BudgetSpent(wait, f"{scope.key} budget spent")
