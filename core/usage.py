"""What one answer cost: its tokens (cache included), its timings and what it took to deliver.

Every answer that reached the model ends with one :class:`AnswerUsage`. The core writes it as
one structured log line (:func:`log_usage`: ids, counts and times, never message text) and hands
it to a :class:`UsageObserver` if the host gave one; the AWS worker's observer turns it into
CloudWatch metrics (``bots/aws/metrics.py``). The core knows no metrics library: a host that
wants none passes no observer, and a host whose observer fails loses a metric, never an answer
(:func:`report` catches and logs).

:class:`ModelMeter` is how the figures are gathered: it wraps each model stream of an answer (a
summary makes several calls) and keeps the time of the first text and the usage from each
:class:`~core.models.base.StreamEnd`, in Bedrock's vocabulary (``inputTokens``,
``cacheReadInputTokens``, ...). Bedrock counts ``inputTokens`` *besides* the cached tokens: an
answer's whole input is input + cache read + cache write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

from core.domain import Reply
from core.errors import BudgetSpent, RateLimited
from core.feedback import Rating
from core.models.base import ModelEvent, StreamEnd, TextDelta
from core.sinks import ReplySink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts as Bedrock bills them: ``input`` is the uncached part of the input."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @classmethod
    def from_bedrock(cls, usage: Mapping[str, int]) -> TokenUsage:
        return cls(
            input=int(usage.get("inputTokens", 0)),
            output=int(usage.get("outputTokens", 0)),
            cache_read=int(usage.get("cacheReadInputTokens", 0)),
            cache_write=int(usage.get("cacheWriteInputTokens", 0)),
        )

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
        )

    @property
    def total_input(self) -> int:
        return self.input + self.cache_read + self.cache_write


@dataclass(slots=True)
class ReplyStats:
    """What delivering one reply took on the platform: a tally the pacer fills in as the reply
    goes (hand one to :meth:`core.pacer.ReplyPacer.deliver`).

    ``edits`` counts accepted updates of a message (the final one included), ``posts`` new
    messages (the placeholder included); ``platform_throttles`` counts the platform's own
    refusals (429, ``Retry-After``), ``budget_waits`` the times our own rate budget said wait
    (no call was made: :class:`~core.errors.BudgetSpent`)."""

    posts: int = 0
    edits: int = 0
    platform_throttles: int = 0
    budget_waits: int = 0


@dataclass(frozen=True, slots=True)
class AnswerUsage:
    """One answer's (or one summary's) cost and timings. Times are seconds from the moment the
    core took the question; ``time_to_first_token`` is None when no text came back."""

    kind: str  # "answer" or "summary"
    model_id: str
    tokens: TokenUsage
    model_calls: int
    time_to_first_token: float | None
    time_to_final: float
    delivery: ReplyStats
    complete: bool
    cause: str  # "ok" or the error's cause
    stop_reason: str = ""
    passages: int = 0  # passages of shared files the prompt carried (answers only)

    def log_fields(self) -> dict[str, object]:
        """The fields of the usage log line: counts, ids and milliseconds, never text."""
        fields: dict[str, object] = {
            "usage_kind": self.kind,
            "model_id": self.model_id,
            "input_tokens": self.tokens.input,
            "output_tokens": self.tokens.output,
            "cache_read_tokens": self.tokens.cache_read,
            "cache_write_tokens": self.tokens.cache_write,
            "model_calls": self.model_calls,
            "time_to_first_token_ms": _ms(self.time_to_first_token),
            "time_to_final_ms": _ms(self.time_to_final),
            "posts": self.delivery.posts,
            "edits": self.delivery.edits,
            "platform_429s": self.delivery.platform_throttles,
            "budget_waits": self.delivery.budget_waits,
            "complete": self.complete,
            "cause": self.cause,
            "passages": self.passages,
        }
        if self.stop_reason:
            fields["stop_reason"] = self.stop_reason
        return fields


class UsageObserver(Protocol):
    """Told each answer's usage once the answer is final (the AWS worker: metrics)."""

    def record(self, usage: AnswerUsage) -> None: ...


@runtime_checkable
class FeedbackObserver(Protocol):
    """Told each effective feedback click (a new or changed rating; never a duplicate). A usage
    observer that also has this method (the AWS worker's metrics) is told both."""

    def feedback(self, rating: Rating, model_id: str, platform: str) -> None: ...


def report(
    usage: AnswerUsage,
    observer: UsageObserver | None,
    *,
    message: str,
    extra: Mapping[str, object] | None = None,
) -> None:
    """Write the usage log line (``message``, with ``extra`` fields besides the usage) and tell
    the observer. An observer that fails is logged: the answer is already given."""
    log.info(message, extra={**usage.log_fields(), **(extra or {})})
    if observer is None:
        return
    try:
        observer.record(usage)
    except Exception:  # a metrics sink is not allowed to fail an answer, whatever it raises
        log.exception("usage observer failed; the answer is unaffected")


@dataclass
class ModelMeter:
    """Gathers an answer's model figures across one or more streams (thread-safe: a summary's
    map calls run in parallel). ``clock`` is the same monotonic clock as the answer's start."""

    started: float
    clock: Callable[[], float] = time.monotonic
    tokens: TokenUsage = field(default_factory=TokenUsage)
    calls: int = 0
    first_text_at: float | None = None
    stop_reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wrap(self, events: Iterable[ModelEvent]) -> Iterator[ModelEvent]:
        """``events`` unchanged, noting the first text and the stream's usage on the way.
        Counted as a model call when the first event is asked for (the request is made)."""
        with self._lock:
            self.calls += 1
        iterator = iter(events)
        try:
            for event in iterator:
                if isinstance(event, TextDelta) and event.text and self.first_text_at is None:
                    with self._lock:
                        if self.first_text_at is None:
                            self.first_text_at = self.clock()
                elif isinstance(event, StreamEnd):
                    with self._lock:
                        self.tokens = self.tokens + TokenUsage.from_bedrock(event.usage)
                        self.stop_reason = event.stop_reason
                yield event
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                close()

    def time_to_first_token(self) -> float | None:
        return None if self.first_text_at is None else self.first_text_at - self.started


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


T = TypeVar("T")


class CountingSink:
    """The reply's sink, counting what each call did into a :class:`ReplyStats`: every path of
    a reply (streaming, splitting, finishing, posting anew) goes through it."""

    def __init__(self, sink: ReplySink, stats: ReplyStats) -> None:
        self._sink = sink
        self._stats = stats

    @property
    def max_chars(self) -> int:
        return self._sink.max_chars

    def post(self, text: str) -> str:
        ref = self._count(self._sink.post, text)
        self._stats.posts += 1
        return ref

    def update(self, ref: str, text: str) -> None:
        self._count(self._sink.update, ref, text)
        self._stats.edits += 1

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self._count(self._sink.finish, ref, text, reply)
        self._stats.edits += 1

    def close(self) -> None:
        self._sink.close()

    def message_id(self, ref: str) -> str | None:
        return self._sink.message_id(ref)

    def adopt(self, message_id: str) -> str:
        return self._sink.adopt(message_id)

    def _count(self, call: Callable[..., T], *args: object) -> T:
        try:
            return call(*args)
        except BudgetSpent:
            self._stats.budget_waits += 1
            raise
        except RateLimited:
            self._stats.platform_throttles += 1
            raise
