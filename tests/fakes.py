"""Small in-process fakes shared by tests: a recording reply sink and scripted models."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from core.domain import Reply
from core.errors import RateLimited, SinkError
from core.models.base import ChatModel, ModelEvent, StreamEnd, TextDelta
from core.prompt import Prompt


class FakeClock:
    """One fake time for budgets, pacers and sinks: it moves only when the code under test
    sleeps (or a test moves ``now``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SinkCall:
    op: str
    ref: str
    text: str
    at: float
    reply: Reply | None = None


@dataclass
class RecordingSink:
    """A ReplySink that records every call; ``fail`` can script a failure per call number."""

    max_chars: int = 4000
    calls: list[SinkCall] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)
    fail: Callable[[str, int], Exception | None] = lambda op, n: None
    clock: Callable[[], float] = time.monotonic
    closed: int = 0  # how many times the pacer said the reply is over
    adopted: list[str] = field(default_factory=list)  # messages a resumed reply carried on in
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, op: str, ref: str, text: str, reply: Reply | None = None) -> None:
        with self._lock:
            attempt = sum(1 for c in self.calls if c.op.rstrip("!") == op) + 1
            error = self.fail(op, attempt)
            self.calls.append(SinkCall(op + ("!" if error else ""), ref, text, self.clock(), reply))
            if error is not None:
                raise error
            self.messages[ref] = text

    def post(self, text: str) -> str:
        ref = f"m{sum(1 for c in self.calls if c.op == 'post')}"
        self._record("post", ref, text)
        return ref

    def update(self, ref: str, text: str) -> None:
        self._record("update", ref, text)

    def message_id(self, ref: str) -> str | None:
        return ref

    def adopt(self, message_id: str) -> str:
        self.adopted.append(message_id)
        return message_id

    def close(self) -> None:
        self.closed += 1

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self._record("finish", ref, text, reply)

    def ops(self) -> list[str]:
        return [c.op for c in self.calls]

    def final_reply(self) -> Reply | None:
        finishes = [c for c in self.calls if c.op == "finish"]
        return finishes[-1].reply if finishes else None

    def visible_text(self) -> str:
        """What a person reading the chat sees, messages joined in order."""
        return "".join(
            self.messages[ref] for ref in sorted(self.messages, key=lambda r: int(r[1:]))
        )


def rate_limit_on(
    op: str, attempts: Iterable[int], retry_after: float
) -> Callable[[str, int], Exception | None]:
    chosen = set(attempts)
    return lambda o, n: RateLimited(retry_after) if o == op and n in chosen else None


def refuse(op: str) -> Callable[[str, int], Exception | None]:
    return lambda o, n: SinkError("channel_not_found") if o == op else None


def timed_stream(
    chunks: Iterable[str],
    delay: float = 0.0,
    first_delay: float = 0.0,
    stop_reason: str = "end_turn",
    error: Exception | None = None,
) -> Iterator[ModelEvent]:
    """Model events at a fixed pace; optionally an error instead of the end."""
    if first_delay:
        time.sleep(first_delay)
    for i, chunk in enumerate(chunks):
        if i and delay:
            time.sleep(delay)
        yield TextDelta(chunk)
    if error is not None:
        raise error
    yield StreamEnd(stop_reason=stop_reason)


class ScriptedModel(ChatModel):
    """A model whose every call streams the given events and records the prompt it saw."""

    name = "scripted"

    def __init__(self, make: Callable[[Prompt], Iterator[ModelEvent]]) -> None:
        self._make = make
        self.prompts: list[Prompt] = []

    def stream(self, prompt: Prompt) -> Iterator[ModelEvent]:
        self.prompts.append(prompt)
        return self._make(prompt)
