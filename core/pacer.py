"""The reply pacer: turns a stream of model deltas into a few well-timed chat edits.

Chat platforms limit edits (Slack ``chat.update`` is Tier 3, about 50 a minute per workspace;
Teams about 7 sends a second per thread), so a reply cannot be edited per token. The pacer:

- posts a placeholder at once, so the person sees that the question landed;
- shows the first text as soon as it arrives (the first edit is never held back);
- then coalesces deltas into at most one edit per interval, and a flush fires on a timer, so
  text that arrived just before the stream stalls is still shown on time;
- treats intermediate edits as optional: when the sink says :class:`~core.errors.RateLimited`
  (its rate budget is spent, or the platform sent ``Retry-After``) the edit is skipped and the
  next one, later, shows the newest text, so edits thin out under pressure and no text is lost;
- treats the placeholder and the final edit as required: they wait for the budget and for
  ``Retry-After`` as long as needed within ``final_wait`` seconds; past that the whole answer is
  posted as a new message with a short notice, so an answer the model finished is shown finished;
- splits text over the sink's message limit into continuation messages, at a paragraph, line
  or word boundary, and keeps code fences balanced across the split;
- always finishes: the last message ends as the whole answer or a readable error, never as the
  placeholder.

The model stream is read on a helper thread so that edits can be timed while the model is
silent; the sink is only ever called from the caller's thread.

The sink's contract is in :mod:`core.sinks`. This module is one piece, about 500
lines: streaming, splitting, finishing, posting anew and resuming all move the same state of
one reply (its text, the current message, what it shows, its clocks and its wait bound), which
one class holds.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from core.domain import Reply, SourceCitation
from core.errors import (
    BudgetSpent,
    ChatbotError,
    MessageGone,
    MessageTooLong,
    RateLimited,
    SinkError,
)
from core.models.base import ModelEvent, StreamEnd, TextDelta

# Re-exported: adapters and tests take the contract from here too.
from core.sinks import PLACEHOLDER as PLACEHOLDER
from core.sinks import ProcessLocalSink as ProcessLocalSink
from core.sinks import ReplySink as ReplySink
from core.text import split_message
from core.usage import CountingSink, ReplyStats

log = logging.getLogger(__name__)

EMPTY_ANSWER = "_The model returned an empty answer. Please rephrase and ask again._"
GENERIC_ERROR = ChatbotError.user_message
_STOP_NOTES = {
    "max_tokens": "_(The answer was cut short: it reached the length limit.)_",
    "guardrail_intervened": "_(The answer was stopped by a content filter.)_",
    "content_filtered": "_(The answer was stopped by a content filter.)_",
    "model_context_window_exceeded": "_(The answer was cut short: the conversation is too long "
    "for the model. Start a new thread to continue.)_",
}


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


_END = object()
_MIN_LIMIT = 500
_MAX_SHRINKS = 5
DEFAULT_FINAL_WAIT = 150.0
# Past the final wait, the answer goes out as a new message; that post may wait this long more.
LAST_RESORT_WAIT = 30.0
LATE_NOTICE = "_(Posted as a new message: the platform kept refusing to update the one above.)_"
GONE_NOTICE = "_(Posted as a new message: the one above can no longer be edited.)_"


class ReplyPacer:
    def __init__(
        self,
        sink: ReplySink,
        *,
        interval: float,
        placeholder: str = PLACEHOLDER,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        final_wait: float = DEFAULT_FINAL_WAIT,
    ) -> None:
        self._sink = sink
        self._interval = interval
        self._placeholder = placeholder
        self._clock = clock
        self._sleep = sleep
        self._final_wait = final_wait

    # -- public -----------------------------------------------------------------------------

    def deliver(
        self,
        events: Iterable[ModelEvent],
        *,
        sources: tuple[SourceCitation, ...] = (),
        resume: str | None = None,
        on_message: Callable[[str], None] | None = None,
        stats: ReplyStats | None = None,
    ) -> Reply:
        """Stream ``events`` into the sink; returns what was finally shown.

        ``on_message(id)`` is told the lasting id of the reply's message as soon as it exists
        (before the answer streams into it), so that a run that dies can be resumed: a later
        ``deliver(..., resume=id)`` carries on in that message instead of posting another.
        ``stats``, if given, is filled in with the posts, edits and refusals the reply took.
        """
        run = _Run(self, sources, on_message, stats)
        run.resume = resume
        try:
            return run.stream(events)
        finally:
            self._sink.close()

    def deliver_message(
        self, text: str, *, error: str = "", stats: ReplyStats | None = None
    ) -> Reply:
        """Post a complete message at once (a refusal, an error, a short notice)."""
        run = _Run(self, (), stats=stats)
        try:
            return run.message(text, error=error)
        finally:
            self._sink.close()


class _Run:
    """The state of one reply. Offsets index into ``text``, the whole answer so far."""

    def __init__(
        self,
        pacer: ReplyPacer,
        sources: tuple[SourceCitation, ...],
        on_message: Callable[[str], None] | None = None,
        stats: ReplyStats | None = None,
    ) -> None:
        self.p = pacer
        self.sink: ReplySink = CountingSink(pacer._sink, stats or ReplyStats())
        self.sources = sources
        self.on_message = on_message
        self.resume: str | None = None
        self.noted: str | None = None  # the message id handed to ``on_message``
        self.text = ""
        self.ref: str | None = None
        self.start = 0  # where the current message begins in ``text``
        self.prefix = ""  # a reopened code fence carried into a continuation message
        self.shown = ""  # what the current message shows now
        self.next_edit_at = 0.0  # intermediate edits wait for this (pacing, budget, Retry-After)
        self.paced_until = 0.0  # the final waits only for this (the pacing interval)
        self.edits = 0
        self.limit = self.sink.max_chars  # lowered when the platform says "too long"
        # How long this reply may still wait for rate limits, all required calls together (the
        # placeholder, continuation posts, the final): one bound for the whole reply, so it
        # ends well inside the worker's time limit however often it is refused.
        self.wait_left = pacer._final_wait

    # -- one-shot messages --------------------------------------------------------------------

    def message(self, text: str, *, error: str) -> Reply:
        self.text = text
        reply = Reply(text=text, complete=not error, error=error)
        try:
            self._finish(reply)
        except (RateLimited, MessageGone):
            return self._post_anew(reply, notice="")
        except SinkError as exc:
            log.error("reply could not be posted", extra={"cause": exc.cause, "detail": str(exc)})
            return Reply(text=text, complete=False, error=exc.cause)
        return self._ended(reply)

    # -- streaming ----------------------------------------------------------------------------

    def stream(self, events: Iterable[ModelEvent]) -> Reply:
        if self.resume is not None:
            self.ref = self.sink.adopt(self.resume)
            self.noted = self.resume
            log.info("resuming a reply whose first run did not finish")
        else:
            try:
                self.ref = self._send(self.sink.post, self.p._placeholder)
            except SinkError as exc:
                log.error("placeholder could not be posted", extra={"cause": exc.cause})
                _close(events)
                return Reply(text="", complete=False, error=exc.cause)
            except RateLimited:
                # The answer still comes: the first text or the final is posted when it can be.
                log.warning("placeholder still rate limited; answering without one")
            self._note_message()

        inbox: queue.Queue[object] = queue.Queue()
        stop = threading.Event()
        # The model is read on its own thread, with this thread's context (log keys) carried over.
        reader = threading.Thread(
            target=contextvars.copy_context().run,
            args=(_read_events, events, inbox, stop),
            name="model-stream",
            daemon=True,
        )
        reader.start()
        end: StreamEnd | None = None
        failure: BaseException | None = None
        dirty = False
        try:
            while True:
                timeout = max(0.0, self.next_edit_at - self.p._clock()) if dirty else None
                try:
                    item = inbox.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if isinstance(item, TextDelta):
                    if item.text:
                        self.text += item.text
                        dirty = True
                elif isinstance(item, StreamEnd):
                    end = item
                elif isinstance(item, _Failure):
                    failure = item.error
                elif item is _END:
                    break
                if dirty and self.p._clock() >= self.next_edit_at:
                    dirty = not self._edit()
        except SinkError as exc:
            stop.set()
            log.error("reply stopped: the platform refused an edit", extra={"cause": exc.cause})
            return self._give_up(exc)
        finally:
            stop.set()

        return self._conclude(end, failure)

    def _conclude(self, end: StreamEnd | None, failure: BaseException | None) -> Reply:
        error = ""
        note = ""
        if failure is not None:
            if isinstance(failure, ChatbotError):
                error, note = failure.cause, failure.user_message
                log.warning("model stream failed", extra={"cause": error, "detail": str(failure)})
            else:
                error, note = "internal_error", GENERIC_ERROR
                log.error("model stream raised an unexpected error", exc_info=failure)
        elif end is None:
            error, note = "stream_incomplete", GENERIC_ERROR
            log.error("model stream ended without a stop event")
        elif end.stop_reason in _STOP_NOTES:
            note = _STOP_NOTES[end.stop_reason]
            log.info("model stopped early", extra={"stop_reason": end.stop_reason})

        answer = self.text
        if not answer.strip() and not note:
            note = EMPTY_ANSWER
        if note:
            decorated = f"⚠️ {note}" if error else note
            self.text = f"{answer.rstrip()}\n\n{decorated}" if answer.strip() else decorated
        # Only what the answer cites: a source list must never imply support it does not give.
        cited = tuple(src for src in self.sources if f"[{src.source_id}]" in answer)
        reply = Reply(
            text=answer, sources=cited, complete=not error and end is not None, error=error
        )
        try:
            self._finish(reply)
        except RateLimited:
            log.error("final edit still rate limited at its deadline; posting the answer anew")
            return self._post_anew(reply, notice=LATE_NOTICE)
        except MessageGone:
            log.warning("the reply's message can no longer be edited; posting the answer anew")
            return self._post_anew(reply, notice=GONE_NOTICE)
        except SinkError as exc:
            log.error("final edit refused by the platform", extra={"cause": exc.cause})
            return Reply(text=answer, sources=self.sources, complete=False, error=exc.cause)
        return self._ended(reply)

    def _post_anew(self, reply: Reply, *, notice: str) -> Reply:
        """The final could not be shown where it belongs (edits refused past the deadline, or
        the message is gone): the rest of the answer as new messages (posts count against
        another budget), with ``notice`` saying why where a message above stays unfinished.
        Its sources follow if the platform takes one more edit."""
        remaining = self._body().rstrip()
        if notice and self.ref is not None:
            remaining = f"{remaining}\n\n{notice}" if remaining else notice
        ref, piece = "", ""
        try:
            while remaining:
                if len(remaining) <= self.limit:
                    piece, remaining = remaining, ""
                else:
                    piece, tail_prefix, consumed = split_message(remaining, self.limit, 0)
                    remaining = tail_prefix + remaining[consumed:].lstrip("\n")
                ref = self._send(self.sink.post, piece, extra=LAST_RESORT_WAIT)
        except (RateLimited, SinkError) as exc:
            log.error("the answer could not be posted anew either", extra={"cause": exc.cause})
            return Reply(text=reply.text, sources=reply.sources, complete=False, error=exc.cause)
        self.ref, self.shown = ref, piece
        try:
            self.sink.finish(ref, piece, reply)  # once, no wait: the sources are a bonus here
        except ChatbotError:
            log.warning("answer posted anew without its sources")
        return self._ended(reply)

    def _give_up(self, exc: SinkError) -> Reply:
        """The platform refused an edit: one best-effort final message, so the placeholder is
        not left behind where the platform still takes a message at all."""
        if self.ref is not None:
            note = (
                f"{self.text.rstrip()}\n\n⚠️ {GENERIC_ERROR}"
                if self.text.strip()
                else f"⚠️ {GENERIC_ERROR}"
            )
            failed = Reply(text=self.text, sources=(), complete=False, error=exc.cause)
            try:
                self._send(self.sink.finish, self.ref, note[: self.limit], failed)
            except ChatbotError:
                log.error(
                    "final message refused too; the reply stays as it was",
                    extra={"cause": exc.cause},
                )
            else:
                return self._ended(replace(failed, sources=self.sources))
        return Reply(text=self.text, sources=self.sources, complete=False, error=exc.cause)

    # -- edits ------------------------------------------------------------------------------

    def _body(self) -> str:
        return self.prefix + self.text[self.start :]

    def _split_overflow(self, *, final: bool = False) -> None:
        """While the current message is over the limit, close it and continue in a new one.
        While streaming, the head's edit is optional (a refusal skips this edit, and nothing has
        moved yet); in the final it is required. The continuation's post is required."""
        limit = self.limit
        while len(self._body()) > limit:
            head, tail_prefix, consumed = split_message(self._body(), limit, len(self.prefix))
            assert self.ref is not None
            ref = self.ref
            if final:
                self._send(self.sink.finish, ref, head, Reply(text=head, complete=False))
            else:
                self.sink.update(ref, head)
            self.start += consumed
            self.prefix = tail_prefix
            self.shown = ""
            body = self._body()
            fits = len(body) <= limit
            first = body if fits else self.p._placeholder
            self.ref = self._send(self.sink.post, first)
            self.shown = body if fits else ""

    def _edit(self) -> bool:
        """One paced edit. Returns True if the text on screen is now current."""
        try:
            if self.ref is None:  # no placeholder could be posted: the text starts the message
                body = self._body()
                if len(body) > self.limit:
                    raise RateLimited(self.p._interval, "waiting for the final to post")
                self.ref = self.sink.post(body)
                self.shown = body
                self._note_message()
            self._split_overflow()
            body = self._body()
            if body != self.shown:
                assert self.ref is not None
                self.sink.update(self.ref, body)
                self.shown = body
                self.edits += 1
                self._note_message()
        except RateLimited as exc:
            # Optional: skipped, and the next try shows whatever is newest by then.
            now = self.p._clock()
            self.next_edit_at = now + max(exc.retry_after, self.p._interval)
            if not isinstance(exc, BudgetSpent):  # the platform's Retry-After binds the final too
                self.paced_until = max(self.paced_until, now + exc.retry_after)
            log.debug("edit skipped: rate limited", extra={"retry_after": exc.retry_after})
            return False
        except MessageTooLong:
            self._shrink()
            self.next_edit_at = self.p._clock() + self.p._interval  # never a tight loop
            return False
        except MessageGone:
            # Deleted while the answer streamed (or a resumed run's message is gone): the text
            # goes on in a new message at the next edit.
            log.warning("the reply's message can no longer be edited; continuing in a new one")
            self.ref, self.shown = None, ""
            self.next_edit_at = self.p._clock() + self.p._interval
            return False
        self.next_edit_at = self.paced_until = self.p._clock() + self.p._interval
        return True

    def _ended(self, reply: Reply) -> Reply:
        """``reply``, naming the message it ended in (the last one, after any split)."""
        message_id = self.sink.message_id(self.ref) if self.ref else None
        return replace(reply, message_id=message_id or "")

    def _note_message(self) -> None:
        """Hand the reply's first lasting message id to ``on_message``, once."""
        if self.on_message is None or self.noted is not None or self.ref is None:
            return
        message_id = self.sink.message_id(self.ref)
        if message_id is None:
            return
        self.noted = message_id
        try:
            self.on_message(message_id)
        except ChatbotError as exc:  # the answer goes on; only a crash-resume is lost
            log.warning("could not record the reply's message", extra={"cause": exc.cause})

    def _shrink(self) -> None:
        """The platform refused a message as too long: split at half the refused size."""
        refused = min(self.limit, len(self._body()))
        self.limit = max(_MIN_LIMIT, refused // 2)
        log.warning("message too long for the platform", extra={"new_limit": self.limit})

    def _finish(self, reply: Reply) -> None:
        for _ in range(_MAX_SHRINKS):
            try:
                self._finish_once(reply)
                return
            except MessageTooLong:
                if self.limit <= _MIN_LIMIT:
                    raise
                self._shrink()
        raise MessageTooLong("still too long after splitting")

    def _finish_once(self, reply: Reply) -> None:
        """Final content: split what is over the limit, then one ``finish`` on the last message,
        after the pacing interval; rate limits are waited out within the reply's wait bound."""
        if self.ref is None:
            body = self._body()
            fits = len(body) <= self.limit
            self.ref = self._send(self.sink.post, body if fits else self.p._placeholder)
            self._note_message()
            if fits:
                ref = self.ref
                self._send(self.sink.finish, ref, body, reply)
                return
        self._pause(self.paced_until - self.p._clock())
        self._split_overflow(final=True)
        body = self._body()
        ref = self.ref
        assert ref is not None
        self._send(self.sink.finish, ref, body, reply)

    def _pause(self, seconds: float) -> None:
        """Sleep, out of the reply's wait bound."""
        seconds = min(seconds, self.wait_left)
        if seconds > 0:
            self.p._sleep(seconds)
            self.wait_left -= seconds

    def _send(self, call: Callable[..., str | None], *args: object, extra: float = 0.0) -> str:
        """Run one required sink call, waiting out rate limits out of the reply's wait bound
        (plus ``extra``, for the last resort); past that the last :class:`RateLimited` is
        raised."""
        allowed = self.wait_left + extra
        waited = 0.0
        try:
            while True:
                try:
                    return call(*args) or ""
                except RateLimited as exc:
                    left = allowed - waited
                    if left <= 0:
                        raise
                    log.debug("send rate limited", extra={"retry_after": exc.retry_after})
                    nap = min(max(exc.retry_after, 0.05), left)
                    self.p._sleep(nap)
                    waited += nap
        finally:
            self.wait_left = max(0.0, self.wait_left - max(0.0, waited - extra))


def _read_events(
    events: Iterable[ModelEvent], inbox: queue.Queue[object], stop: threading.Event
) -> None:
    iterator: Iterator[ModelEvent] = iter(events)
    try:
        for event in iterator:
            if stop.is_set():
                break
            inbox.put(event)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which names it
        inbox.put(_Failure(exc))
    finally:
        _close(iterator)
        inbox.put(_END)


def _close(events: object) -> None:
    close = getattr(events, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # closing a finished stream must not mask the answer
            log.debug("closing the model stream failed", exc_info=True)
