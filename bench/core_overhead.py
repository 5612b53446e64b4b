"""Core overhead per turn: what the core adds between the model and the chat.

Three measurements, each against a baseline taken in the same run:

a. **First visible text.** From the model yielding its first token to the sink receiving the
   first edit that contains it, through the real ``Assistant`` at the production edit interval.
   Baseline: the same paced model read by a bare loop (the unavoidable handoff).
b. **Core overhead per turn, model time excluded.** ``Assistant.answer`` on the embedded SQLite
   history (load history, build the prompt, pace the reply, append both turns) with a model that
   streams instantly, minus the same stream consumed bare.
c. **Edits per answer.** A long paced answer through the real pacer: how many edits it makes
   against the number of deltas (what editing per token would cost), and the smallest gap between
   two edits against the interval.

The model and the sink are this module's own stand-ins (bench/ ships without tests/). Run with
``python -m bench.core_overhead`` or as part of ``python -m bench.run_all``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    machine_info,
    markdown_table,
    p50,
    p95,
    p99,
    ratio,
    verdict,
    write_section,
)
from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey, Reply, Role, Turn
from core.history.sqlite import SqliteHistoryStore
from core.models.base import ChatModel, ModelEvent, StreamEnd, TextDelta
from core.observability import configure_logging
from core.pacer import ProcessLocalSink, ReplyPacer, ReplySink

if TYPE_CHECKING:
    from core.prompt import Prompt

SECTION = "core"
clock = time.perf_counter  # one monotonic clock for every timestamp, on every thread

PRODUCTION_INTERVAL = Settings().edit_interval_seconds
FIRST_VISIBLE_TARGET = 0.100
OVERHEAD_TARGET = 0.020

# a. first visible text
A_SAMPLES = 60
A_UNMODIFIED_SAMPLES = 3
A_FIRST_DELAY = 0.020  # the model's time to first token; the consumer is already waiting
A_DELAY = 0.005
# b. overhead per turn
B_CONVERSATIONS = 10
B_TURNS_PER_CONVERSATION = 20
B_DELTAS = 60
# c. edits per answer
C_DELTAS = 400
C_DELAY = 0.005
C_INTERVAL = 0.25
C_RUNS = 2

_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "the deploy pipeline runs nightly and promotes a build to staging when every check passes "
    "then waits for a person to approve production because the release notes need a review"
).split()


# -- stand-ins ---------------------------------------------------------------------------------


@dataclass
class SinkCall:
    op: str
    at: float
    text: str


@dataclass
class RecordingSink(ProcessLocalSink):
    """A ReplySink that timestamps every call the moment it arrives."""

    max_chars: int = 4000
    calls: list[SinkCall] = field(default_factory=list)

    def post(self, text: str) -> str:
        self.calls.append(SinkCall("post", clock(), text))
        return f"m{sum(1 for c in self.calls if c.op == 'post')}"

    def update(self, ref: str, text: str) -> None:
        self.calls.append(SinkCall("update", clock(), text))

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self.calls.append(SinkCall("finish", clock(), text))

    def edits(self) -> list[SinkCall]:
        return [c for c in self.calls if c.op in ("update", "finish")]

    def first_showing(self, text: str) -> float:
        """When the first edit containing ``text`` arrived."""
        for call in self.edits():
            if text in call.text:
                return call.at
        raise RuntimeError(f"benchmark invalid: the sink never showed {text!r}")


class PacedModel(ChatModel):
    """Yields the given chunks with a fixed delay between them, stamping each yield."""

    name = "bench-paced"

    def __init__(self, chunks: Sequence[str], *, delay: float = 0.0, first_delay: float = 0.0):
        self._chunks = tuple(chunks)
        self._delay = delay
        self._first_delay = first_delay
        self.yielded_at: list[float] = []  # of the latest stream

    def stream(self, prompt: Prompt | None) -> Iterator[ModelEvent]:  # type: ignore[override]
        self.yielded_at = []
        return self._events(self.yielded_at)

    def _events(self, stamps: list[float]) -> Iterator[ModelEvent]:
        if self._first_delay:
            time.sleep(self._first_delay)
        for i, chunk in enumerate(self._chunks):
            if i and self._delay:
                time.sleep(self._delay)
            stamps.append(clock())
            yield TextDelta(chunk)
        yield StreamEnd(stop_reason="end_turn")


def consume_bare(events: Iterable[ModelEvent]) -> str:
    """The baseline consumer: read the stream and keep the text, nothing else."""
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# -- the real core, with timing seams ----------------------------------------------------------


class SkippedWaits:
    """Stands in for the pacer's ``sleep``: records the wait it asked for and returns at once.

    The pacer sleeps only to keep edits an interval apart (before the final edit) and to honour
    ``Retry-After``. Waiting is pacing, not overhead, so measurements that count wall time skip
    it and report how much was skipped.
    """

    def __init__(self) -> None:
        self.total = 0.0

    def __call__(self, seconds: float) -> None:
        self.total += max(0.0, seconds)


class TimedHistory(SqliteHistoryStore):
    """The real SQLite store, with the time spent in each call added up."""

    read_s = 0.0
    write_s = 0.0

    def recent_turns(self, key: ConversationKey, limit: int) -> Sequence[Turn]:
        started = clock()
        try:
            return super().recent_turns(key, limit)
        finally:
            self.read_s += clock() - started

    def append_turn(self, turn: Turn) -> None:
        started = clock()
        try:
            super().append_turn(turn)
        finally:
            self.write_s += clock() - started


class TimedPacer(ReplyPacer):
    deliver_s = 0.0

    def deliver(self, events: Iterable[ModelEvent], **options: Any) -> Reply:
        started = clock()
        try:
            return super().deliver(events, **options)
        finally:
            TimedPacer.deliver_s += clock() - started


class SeamedAssistant(Assistant):
    """The real Assistant; only its pacer's waits are recorded instead of slept."""

    def __init__(self, *, settings: Settings, waits: SkippedWaits, **parts: object) -> None:
        super().__init__(settings=settings, **parts)  # type: ignore[arg-type]
        self._interval = settings.edit_interval_seconds
        self._waits = waits

    def pacer(self, sink: ReplySink) -> ReplyPacer:
        return TimedPacer(sink, interval=self._interval, sleep=self._waits)


@contextlib.contextmanager
def production_logging() -> Iterator[None]:
    """Core logs as in production (Powertools JSON at INFO), into a stream that drops it: the
    cost of formatting log lines is part of a turn, writing them out is the host's."""

    class Discard(io.TextIOBase):
        def write(self, text: str) -> int:
            return len(text)

    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ("core", "bots")
        for lg in (logging.getLogger(name),)
    }
    configure_logging("INFO", stream=Discard())
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.level, lg.propagate = handlers, level, propagate


def conversation(n: int) -> ConversationKey:
    return ConversationKey("slack", "TBENCH", f"C{n:04d}", f"17000000{n:02d}.000100")


def question(key: ConversationKey, turn_id: str, i: int) -> Turn:
    words = " ".join(_WORDS[(i + j) % len(_WORDS)] for j in range(18))
    return Turn(key=key, turn_id=turn_id, role=Role.USER, user_id="U1", text=f"{words}?")


def answer_chunks(deltas: int, words_per_delta: int) -> list[str]:
    return [
        " ".join(_WORDS[(d * words_per_delta + j) % len(_WORDS)] for j in range(words_per_delta))
        + " "
        for d in range(deltas)
    ]


# -- a. first visible text ---------------------------------------------------------------------


@dataclass
class FirstVisible:
    core: list[float]
    bare: list[float]
    unmodified: list[float]
    skipped_wait: float


def measure_first_visible(data_dir: Path) -> FirstVisible:
    chunks = ["Firstwords ", "of ", "the ", "answer", "."]
    model = PacedModel(chunks, delay=A_DELAY, first_delay=A_FIRST_DELAY)
    settings = Settings(data_dir=data_dir)  # production interval
    store = SqliteHistoryStore(data_dir / "first_visible.sqlite3")
    waits = SkippedWaits()
    seamed = SeamedAssistant(settings=settings, waits=waits, history=store, model=model)
    unmodified = Assistant(settings=settings, history=store, model=model)

    def core_once(assistant: Assistant, n: int) -> float:
        sink = RecordingSink()
        assistant.answer(question(conversation(n % 6), f"a{n}", n), sink)
        return sink.first_showing(chunks[0]) - model.yielded_at[0]

    def bare_once() -> float:
        events = model.stream(None)
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    return clock() - model.yielded_at[0]
        finally:
            events.close()
        raise RuntimeError("benchmark invalid: the model yielded no text")

    for n in range(3):  # warm up both paths
        core_once(seamed, 100 + n)
        bare_once()
    waits.total = 0.0
    core, bare = [], []
    for n in range(A_SAMPLES):
        bare.append(bare_once())
        core.append(core_once(seamed, n))
    skipped = waits.total / A_SAMPLES
    checks = [core_once(unmodified, 1000 + n) for n in range(A_UNMODIFIED_SAMPLES)]
    store.close()
    return FirstVisible(core, bare, checks, skipped)


# -- b. overhead per turn ----------------------------------------------------------------------


@dataclass
class Overhead:
    core: list[float]
    bare: list[float]
    by_depth: dict[int, list[float]]  # turn number within its conversation -> overheads
    read: list[float]
    write: list[float]
    deliver: list[float]
    skipped_wait: list[float]
    history_rows: int

    @property
    def overhead(self) -> list[float]:
        return [c - b for c, b in zip(self.core, self.bare, strict=True)]


def measure_overhead(data_dir: Path) -> Overhead:
    model = PacedModel(answer_chunks(B_DELTAS, words_per_delta=4))
    settings = Settings(data_dir=data_dir)  # production interval; the final wait is skipped
    store = TimedHistory(data_dir / "overhead.sqlite3")
    waits = SkippedWaits()
    assistant = SeamedAssistant(settings=settings, waits=waits, history=store, model=model)
    bare_prompt = None

    # Warm-up: one conversation of its own, excluded from the figures.
    for i in range(8):
        assistant.answer(question(conversation(99), f"w{i}", i), RecordingSink())
        consume_bare(model.stream(bare_prompt))

    result = Overhead([], [], {}, [], [], [], [], 0)
    for depth in range(B_TURNS_PER_CONVERSATION):
        for conv in range(B_CONVERSATIONS):
            started = clock()
            text = consume_bare(model.stream(bare_prompt))
            result.bare.append(clock() - started)

            turn = question(conversation(conv), f"t{depth}", depth * B_CONVERSATIONS + conv)
            read0, write0, deliver0, wait0 = (
                store.read_s,
                store.write_s,
                TimedPacer.deliver_s,
                waits.total,
            )
            sink = RecordingSink()
            started = clock()
            reply = assistant.answer(turn, sink)
            elapsed = clock() - started
            if reply.text != text or not reply.complete:
                raise RuntimeError("benchmark invalid: the core's reply differs from the stream")
            result.core.append(elapsed)
            result.by_depth.setdefault(depth, []).append(elapsed - result.bare[-1])
            result.read.append(store.read_s - read0)
            result.write.append(store.write_s - write0)
            result.deliver.append(TimedPacer.deliver_s - deliver0)
            result.skipped_wait.append(waits.total - wait0)
    result.history_rows = 2 * (B_TURNS_PER_CONVERSATION - 1)
    store.close()
    return result


# -- c. edits per answer -----------------------------------------------------------------------


@dataclass
class Edits:
    deltas: int
    edits: list[int] = field(default_factory=list)
    edit_span_s: list[float] = field(default_factory=list)  # first edit -> last edit
    gaps: list[float] = field(default_factory=list)
    stream_s: list[float] = field(default_factory=list)
    stale: list[float] = field(default_factory=list)  # per delta: yielded -> first shown
    first_edit_lag: list[float] = field(default_factory=list)


def measure_edits(data_dir: Path) -> Edits:
    chunks = answer_chunks(C_DELTAS, words_per_delta=1)
    model = PacedModel(chunks, delay=C_DELAY)
    settings = Settings(data_dir=data_dir, edit_interval_seconds=C_INTERVAL)
    store = SqliteHistoryStore(data_dir / "edits.sqlite3")
    assistant = Assistant(settings=settings, history=store, model=model)  # real sleeps
    result = Edits(deltas=len(chunks))
    ends = [sum(len(c) for c in chunks[: i + 1]) for i in range(len(chunks))]
    for run in range(C_RUNS):
        sink = RecordingSink()
        assistant.answer(question(conversation(50 + run), f"c{run}", run), sink)
        edits = sink.edits()
        if edits[-1].op != "finish" or edits[-1].text != "".join(chunks):
            raise RuntimeError("benchmark invalid: the last edit is not the whole answer")
        stamps = model.yielded_at
        result.edits.append(len(edits))
        result.edit_span_s.append(edits[-1].at - edits[0].at)
        result.gaps += [b.at - a.at for a, b in itertools.pairwise(edits)]
        result.stream_s.append(stamps[-1] - stamps[0])
        result.first_edit_lag.append(edits[0].at - stamps[0])
        for yielded, end in zip(stamps, ends, strict=True):  # edits show prefixes of the answer
            shown = next(e.at for e in edits if len(e.text) >= end)
            result.stale.append(shown - yielded)
    store.close()
    return result


# -- report ------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.3f} ms" if abs(value) < 1 else f"{value:.2f} ms"


def _row(label: str, values: Sequence[float]) -> list[str]:
    return [label, ms(p50(values)), ms(p95(values)), ms(p99(values)), ms(max(values))]


def report(a: FirstVisible, b: Overhead, c: Edits, took: float) -> tuple[str, str]:
    """Returns (the compact stdout table, the markdown section)."""
    a_ok = p95(a.core) <= FIRST_VISIBLE_TARGET and max(a.unmodified) <= FIRST_VISIBLE_TARGET
    b_ok = p95(b.overhead) <= OVERHEAD_TARGET
    min_gap = min(c.gaps)
    c_ok = min_gap >= C_INTERVAL
    edits_mean = sum(c.edits) / len(c.edits)
    stream_mean = sum(c.stream_s) / len(c.stream_s)
    edits_per_interval = max(
        (n - 1) / (span / C_INTERVAL) for n, span in zip(c.edits, c.edit_span_s, strict=True)
    )

    summary = markdown_table(
        ["measure", "core", "baseline (same run)", "ratio", "target", "result"],
        [
            [
                "a. first text visible after the model's first token, p95",
                ms(p95(a.core)),
                f"{ms(p95(a.bare))} (bare consumer)",
                ratio(p95(a.core), p95(a.bare)),
                f"≤ {FIRST_VISIBLE_TARGET * 1000:.0f} ms",
                verdict(a_ok),
            ],
            [
                "b. core overhead per turn (model time excluded), p95",
                ms(p95(b.overhead)),
                f"{ms(p95(b.bare))} (bare stream)",
                f"{ratio(p95(b.core), p95(b.bare))} (turn wall time)",
                f"≤ {OVERHEAD_TARGET * 1000:.0f} ms",
                verdict(b_ok),
            ],
            [
                "c. edits per answer",
                f"{edits_mean:.1f}",
                f"{c.deltas} deltas (edit per token)",
                ratio(edits_mean, c.deltas),
                "≤ 1 edit per interval (min gap ≥ interval)",
                f"{verdict(c_ok)} (min gap {min_gap / C_INTERVAL:.3f}× interval)",
            ],
        ],
    )

    overhead_by_depth = [
        [
            str(depth + 1),
            str(2 * depth),
            ms(p50(values)),
            ms(max(values)),
        ]
        for depth, values in sorted(b.by_depth.items())
        if depth in (0, 4, 9, 14, B_TURNS_PER_CONVERSATION - 1)
    ]
    pacer_only = [d - bare for d, bare in zip(b.deliver, b.bare, strict=True)]
    rest = [
        core - r - w - d for core, r, w, d in zip(b.core, b.read, b.write, b.deliver, strict=True)
    ]
    turns = len(b.core)

    section = f"""
## Core overhead per turn (`bench.core_overhead`)

Measured {machine_info()}.
Reproduce: `.venv/bin/python -m bench.core_overhead` (this run took {took:.0f} s).

{summary}

### a. First visible text

From the model yielding its first token to the sink receiving the first edit that contains it,
through the real `Assistant` (SQLite history, `ReplyPacer`) at the production edit interval
({PRODUCTION_INTERVAL:g} s, the `Settings` default). The model's first token comes
{A_FIRST_DELAY * 1000:.0f} ms after the stream is opened, as a real model's would, so the core is
already waiting for it. Baseline: the same paced model read by a bare loop on one thread; it
is not zero because the code that runs right after the model's wait runs cold.
{A_SAMPLES} turns, interleaved with {A_SAMPLES} baseline reads.

{
        markdown_table(
            ["", "p50", "p95", "max"],
            [
                ["core (Assistant → sink)", ms(p50(a.core)), ms(p95(a.core)), ms(max(a.core))],
                ["baseline (bare consumer)", ms(p50(a.bare)), ms(p95(a.bare)), ms(max(a.bare))],
                [
                    "added by the core",
                    ms(p50(a.core) - p50(a.bare)),
                    ms(p95(a.core) - p95(a.bare)),
                    "",
                ],
            ],
        )
    }

Ratio core/baseline at p95: {ratio(p95(a.core), p95(a.bare))}; target: first text within
{FIRST_VISIBLE_TARGET * 1000:.0f} ms of the first token, i.e. never held for the
{PRODUCTION_INTERVAL:g} s interval: **{verdict(a_ok)}**.
The pacer's wait before the final edit (on average {a.skipped_wait:.2f} s per turn here) comes
after the measured moment, so it was skipped through `ReplyPacer`'s `sleep` parameter to keep
the run short. Cross-check with the unmodified `Assistant` and real waits,
{A_UNMODIFIED_SAMPLES} turns: {", ".join(ms(v) for v in a.unmodified)}.

### b. Core overhead per turn, model time excluded

{turns} turns of `Assistant.answer` ({B_CONVERSATIONS} conversations × \
{B_TURNS_PER_CONVERSATION} turns, taken round-robin, so history grows to
{b.history_rows} stored turns per conversation) with a model that streams {B_DELTAS} deltas
(about {len("".join(answer_chunks(B_DELTAS, 4)))} characters) instantly: input checks, history
read, prompt build, `ReplyPacer` (placeholder, first edit, final edit), and both history appends on
SQLite in a temporary directory (WAL, `synchronous=NORMAL`). No retriever (retrieval gets its own
benchmark). Core logs go through the production JSON formatter at INFO into a stream that drops
them. Baseline, interleaved turn by turn: the same stream consumed bare (no core).
Overhead = core wall time − baseline time, per turn.

{
        markdown_table(
            ["per turn", "p50", "p95", "p99", "max"],
            [
                _row("core wall time", b.core),
                _row("baseline (bare stream)", b.bare),
                _row("**overhead**", b.overhead),
                _row("– history read", b.read),
                _row("– history append (2 turns)", b.write),
                _row("– pacer, stream time excluded", pacer_only),
                _row("– input checks, prompt, logging", rest),
            ],
        )
    }

Ratio core/baseline: {ratio(p50(b.core), p50(b.bare))} at p50, \
{ratio(p95(b.core), p95(b.bare))} at p95 (the baseline is a
stream of in-memory deltas, so the ratio is large while the absolute overhead is small). Target:
overhead ≤ {OVERHEAD_TARGET * 1000:.0f} ms at p95 on the embedded store: **{verdict(b_ok)}**.

Waiting is not overhead: the pacer runs at the production interval, and its wait before the final
edit (p50 {p50(b.skipped_wait) * 1000:.0f} ms per turn) is recorded through `ReplyPacer`'s
`sleep` parameter instead of slept, so no sleep is in these figures and the edits are the ones
production makes (placeholder, one early edit, one final edit).

The slowest turns are dominated by one slow history append: while writing this benchmark
they were SQLite's WAL auto-checkpoints (about every 80 turns here, ~5 ms each, inside
`append_turn` under the store's lock).

Overhead by history depth ({B_CONVERSATIONS} turns per row):

{
        markdown_table(
            ["turn in conversation", "stored turns read", "overhead p50", "overhead max"],
            overhead_by_depth,
        )
    }

### c. Edits per answer

An answer of {c.deltas} one-word deltas, {C_DELAY * 1000:.0f} ms apart (about \
{stream_mean:.1f} s), through the real
`Assistant` at an edit interval of {C_INTERVAL:g} s with real waits, {C_RUNS} runs. Baseline: one
edit per delta, what editing per token would do.

{
        markdown_table(
            ["", "value"],
            [
                ["edits per answer (updates + final)", ", ".join(str(e) for e in c.edits)],
                ["baseline: deltas per answer", str(c.deltas)],
                ["ratio edits/deltas", f"{edits_mean / c.deltas:.3f}"],
                [
                    "edits per interval, first to last edit (most in one run)",
                    f"{edits_per_interval:.3f}",
                ],
                ["smallest gap between two edits", ms(min_gap)],
                ["smallest gap / interval", f"{min_gap / C_INTERVAL:.3f}"],
                ["first edit after the first token", ms(max(c.first_edit_lag))],
                [
                    "longest a delta waited to be shown (p50 / max)",
                    f"{ms(p50(c.stale))} / {ms(max(c.stale))}",
                ],
            ],
        )
    }

Target: never more than one edit per interval (smallest gap / interval ≥ 1): **{verdict(c_ok)}**.
The longest wait includes the end of the answer, where the final edit waits out the interval.
"""
    compact = summary
    misses = [name for name, ok in (("a", a_ok), ("b", b_ok), ("c", c_ok)) if not ok]
    if misses:
        compact += "\n\nMISSED TARGETS: " + ", ".join(misses) + " (see docs/benchmarks.md)"
    return compact, section


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp, production_logging():
        data_dir = Path(tmp)
        started = clock()
        a = measure_first_visible(data_dir)
        b = measure_overhead(data_dir)
        c = measure_edits(data_dir)
        took = clock() - started
    compact, section = report(a, b, c, took)
    path = write_section(SECTION, section)
    print(compact)
    print(f"\n{took:.1f} s; written to {path}")


if __name__ == "__main__":
    main()
