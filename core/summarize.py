"""Summaries of conversations and files that cover all of the input, however long.

The input is a sequence of :class:`Excerpt` (messages with who said them and when, or pieces of
a document with their page or section). A summary that does not fit the model in one call is
made by map-reduce: split into parts that fit, summarize the parts in parallel (bounded), then
combine, recursively if the partial summaries still do not fit. Nothing is silently dropped: a
part that fails even after a retry is named in the summary as not covered.

The summary streams into the chat like any answer: the pacer posts its placeholder at once, the
map rounds run while it shows, and the final call (the only one, when everything fits) streams
into the message. What the summary could not cover (a missing part, the request's own
``limit_note``) is written by this code at the end of the message, never left to the model.

The words the model is given live in :mod:`core.summary_prompts`. What is left here is one piece,
about 540 lines: planning parts, the map rounds, retries, the tally and the usage of one summary
all work on the same request's state, and splitting them would only pass that state around.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.domain import Reply
from core.errors import ModelError, ModelUnavailable
from core.models.base import ChatModel, InferenceSettings, ModelEvent, StreamEnd, TextDelta
from core.pacer import DEFAULT_FINAL_WAIT, ReplyPacer, ReplySink
from core.prompt import Prompt
from core.summary_prompts import (
    PROMPT_OVERHEAD_TOKENS,
    final_instructions,
    map_instructions,
    summary_prompt,
)
from core.text import clean_text, estimate_tokens, truncate_to_tokens
from core.usage import AnswerUsage, ModelMeter, ReplyStats, UsageObserver, report

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Excerpt:
    """One unit of what is summarized, with where it came from (``label``: "Ada Lovelace,
    09:14" for a message; "page 3", "rows 1-50" or "section Setup" for a document)."""

    text: str
    label: str


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    """``title`` names what is summarized ("#general, last 24 hours", "thread in #general",
    "plan.pdf"); ``kind`` is "conversation" or "document"; ``limit_note`` says what a limit
    left out, if one applied (it is stated in the summary, never hidden)."""

    title: str
    kind: str
    excerpts: tuple[Excerpt, ...]
    limit_note: str = ""


PLACEHOLDER = "_Summarizing…_"
NOTHING_TO_SUMMARIZE = "There is nothing to summarize in {title}: it has no text."
UNTITLED = "this conversation or file"
NOT_COVERED = "⚠️ Not covered: {part} ({span}) could not be summarized."
NOT_COMBINED = "⚠️ Not covered: {span}: the partial summaries were still too long to combine."
LIMIT_NOTE = "⚠️ {note}"

_MAX_ROUNDS = 6  # each round shrinks the input several times over; this only stops a runaway
_PROMPT_MARGIN = 250  # tokens for the title, the part's labels and the estimate's rounding
_MIN_CONTENT_TOKENS = 200


@dataclass(frozen=True, slots=True)
class _Item:
    """One unit of a round's input: an excerpt (or a piece of one) in the first round, a
    partial summary in later rounds. ``first`` and ``last`` are the original labels it spans."""

    text: str
    label: str
    first: str
    last: str


@dataclass(frozen=True, slots=True)
class _Part:
    """What one map call summarizes: consecutive items, and where it sits in its round."""

    round: int
    index: int  # 1-based
    total: int
    items: tuple[_Item, ...]

    @property
    def span(self) -> str:
        return _span(self.items[0].first, self.items[-1].last)

    @property
    def name(self) -> str:
        where = f" in combining round {self.round}" if self.round > 1 else ""
        return f"part {self.index} of {self.total}{where}"


class _Tally:
    """Counts for one summary, shared by the map threads: what the log line reports."""

    def __init__(self, meter: ModelMeter) -> None:
        self._lock = threading.Lock()
        self.meter = meter  # the model's own figures: tokens as billed, first text
        self.parts = 0  # parts of the first map round (0: everything fitted one call)
        self.rounds = 0  # map rounds
        self.calls = 0
        self.retries = 0
        self.tokens_in = 0  # estimated
        self.tokens_out = 0  # estimated
        self.missing: list[str] = []  # the lines that say so, in the order found
        self.last_error: ModelError | None = None

    def call(self, prompt: Prompt) -> None:
        tokens = estimate_tokens(prompt.system) + sum(
            estimate_tokens(m.text) for m in prompt.messages
        )
        with self._lock:
            self.calls += 1
            self.tokens_in += tokens

    def output(self, text: str) -> None:
        with self._lock:
            self.tokens_out += estimate_tokens(text)

    def failed(self, error: ModelError, *, retrying: bool) -> None:
        with self._lock:
            self.last_error = error
            self.retries += int(retrying)


class Summarizer:
    """Summarizes a :class:`SummaryRequest` of any length into one streamed reply.

    ``part_tokens`` bounds the estimated size of one model call's prompt; ``concurrency`` bounds
    the map calls in flight for one summary; a failed map call is tried ``map_attempts`` times in
    all (the model's own retries, for throttling, come on top: see :class:`ChatModel`).
    One instance per process, shared by every summary; it holds no per-summary state.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        part_tokens: int,
        concurrency: int,
        inference: InferenceSettings,
        edit_interval: float,
        map_attempts: int = 2,
        final_wait: float = DEFAULT_FINAL_WAIT,
        usage_observer: UsageObserver | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if map_attempts < 1:
            raise ValueError("map_attempts must be at least 1")
        overhead = PROMPT_OVERHEAD_TOKENS + _PROMPT_MARGIN
        if part_tokens - overhead < _MIN_CONTENT_TOKENS:
            raise ValueError(f"part_tokens must be at least {overhead + _MIN_CONTENT_TOKENS}")
        self._model = model
        self._budget = part_tokens - overhead  # for the excerpts, fences included
        self._concurrency = concurrency
        self._inference = inference
        # A partial summary is kept well under a part, so each round shrinks the input several
        # times over and the rounds converge.
        map_tokens = min(inference.max_tokens, max(100, self._budget // 4))
        self._map_inference = InferenceSettings(
            max_tokens=map_tokens,
            temperature=inference.temperature,
            top_p=inference.top_p,
            stop_sequences=inference.stop_sequences,
        )
        self._edit_interval = edit_interval
        self._final_wait = final_wait
        self._map_attempts = map_attempts
        self._usage_observer = usage_observer

    @classmethod
    def from_settings(
        cls,
        model: ChatModel,
        settings: Settings,
        *,
        usage_observer: UsageObserver | None = None,
    ) -> Summarizer:
        return cls(
            model,
            part_tokens=settings.summary_part_tokens,
            concurrency=settings.summary_concurrency,
            inference=InferenceSettings(
                max_tokens=settings.max_answer_tokens, temperature=settings.temperature
            ),
            edit_interval=settings.edit_interval_seconds,
            final_wait=settings.final_wait_seconds,
            usage_observer=usage_observer,
        )

    @property
    def model(self) -> ChatModel:
        return self._model

    def summarize(self, request: SummaryRequest, sink: ReplySink) -> Reply:
        """Summarize ``request`` into ``sink``; returns what was finally shown."""
        started = time.monotonic()
        pacer = ReplyPacer(
            sink,
            interval=self._edit_interval,
            placeholder=PLACEHOLDER,
            final_wait=self._final_wait,
        )
        title = _one_line(request.title) or UNTITLED
        items = [
            _Item(text, e.label, e.label, e.label)
            for e in request.excerpts
            if (text := clean_text(e.text))
        ]
        if not items:
            log.info("nothing to summarize", extra={"kind": request.kind, "excerpts": 0})
            return pacer.deliver_message(NOTHING_TO_SUMMARIZE.format(title=title))

        tally = _Tally(ModelMeter(started=started))
        log.info(
            "summarizing",
            extra={
                "model": self._model.name,
                "kind": request.kind,
                "excerpts": len(items),
                "tokens_estimated": sum(estimate_tokens(i.text) for i in items),
                "limited": bool(request.limit_note),
            },
        )
        stats = ReplyStats()
        reply = pacer.deliver(self._events(request, items, tally), stats=stats)
        meter = tally.meter
        usage = AnswerUsage(
            kind="summary",
            model_id=self._model.model_id or self._model.name,
            tokens=meter.tokens,
            model_calls=meter.calls,
            time_to_first_token=meter.time_to_first_token(),
            time_to_final=time.monotonic() - started,
            delivery=stats,
            complete=reply.complete,
            cause=reply.error or "ok",
        )
        report(
            usage,
            self._usage_observer,
            message="summarized",
            extra={
                "parts": tally.parts,
                "rounds": tally.rounds,
                "retries": tally.retries,
                "missing_parts": len(tally.missing),
                "tokens_in_estimated": tally.tokens_in,
                "tokens_out_estimated": tally.tokens_out,
            },
        )
        return reply

    # -- the whole summary, as one stream of events for the pacer ---------------------------

    def _events(
        self, request: SummaryRequest, items: list[_Item], tally: _Tally
    ) -> Iterator[ModelEvent]:
        """Runs on the pacer's reader thread, so the placeholder is up while the map rounds
        run; a failure here reaches the chat as the pacer's readable error."""
        final_items, combining = self._condense(request, items, tally)
        prompt = self._final_prompt(request, final_items, combining=combining)
        notes = list(tally.missing)
        if request.limit_note.strip():
            notes.append(LIMIT_NOTE.format(note=_one_line(request.limit_note)))
        yield from _with_notes(self._final_stream(prompt, tally), notes, tally)

    def _condense(
        self, request: SummaryRequest, items: list[_Item], tally: _Tally
    ) -> tuple[tuple[_Item, ...], bool]:
        """Map rounds until what is left fits one call; returns it and whether it is partial
        summaries (True) or the excerpts themselves (False)."""
        combining = False
        before = 0
        while True:
            parts = self._pack(items)
            if len(parts) == 1:
                return parts[0], combining
            if tally.rounds == _MAX_ROUNDS or (before and len(parts) >= before):
                # The partial summaries do not shrink (a model ignoring its length limit):
                # combine what fits and say what is left out, rather than loop.
                left_out = _span(parts[1][0].first, parts[-1][-1].last)
                tally.missing.append(NOT_COMBINED.format(span=left_out))
                log.error(
                    "summary rounds do not converge",
                    extra={"rounds": tally.rounds, "parts": len(parts), "parts_before": before},
                )
                return parts[0], combining
            before = len(parts)
            tally.rounds += 1
            if tally.rounds == 1:
                tally.parts = len(parts)
            items = self._map(request, self._parts(parts, tally.rounds), tally)
            combining = True

    def _parts(self, packed: list[tuple[_Item, ...]], round_no: int) -> list[_Part]:
        return [_Part(round_no, i, len(packed), items) for i, items in enumerate(packed, 1)]

    def _map(self, request: SummaryRequest, parts: list[_Part], tally: _Tally) -> list[_Item]:
        """Summarize every part, at most ``concurrency`` at a time; a part that still fails
        after its attempts is recorded as missing. Raises if every part failed."""
        workers = min(self._concurrency, len(parts))
        context = contextvars.copy_context()  # log keys (conversation id) follow into the threads
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="summary-part") as pool:
            results = list(
                pool.map(
                    lambda part: context.copy().run(self._summarize_part, request, part, tally),
                    parts,
                )
            )
        partials: list[_Item] = []
        for part, text in zip(parts, results, strict=True):
            if text is None:
                tally.missing.append(NOT_COVERED.format(part=part.name, span=part.span))
                continue
            first, last = part.items[0].first, part.items[-1].last
            partials.append(_Item(text, _span(first, last), first, last))
        log.info(
            "summary round done",
            extra={
                "round": parts[0].round,
                "parts": len(parts),
                "failed_parts": len(parts) - len(partials),
            },
        )
        if not partials:
            raise tally.last_error or ModelUnavailable("every part of the summary failed")
        return partials

    def _summarize_part(self, request: SummaryRequest, part: _Part, tally: _Tally) -> str | None:
        prompt = self._map_prompt(request, part)
        for attempt in range(1, self._map_attempts + 1):
            tally.call(prompt)
            try:
                text, end = _collect(tally.meter.wrap(self._model.stream(prompt)))
                if not text.strip():
                    raise ModelUnavailable("EmptySummary: the model returned no text")
            except ModelError as exc:
                retrying = attempt < self._map_attempts
                tally.failed(exc, retrying=retrying)
                log.warning(
                    "summary part failed",
                    extra={
                        "round": part.round,
                        "part": part.index,
                        "parts": part.total,
                        "attempt": attempt,
                        "cause": exc.cause,
                        "retrying": retrying,
                    },
                )
                continue
            tally.output(text)
            if end.stop_reason != "end_turn":
                log.info(
                    "summary part stopped early",
                    extra={"round": part.round, "part": part.index, "stop_reason": end.stop_reason},
                )
            return text.strip()
        return None

    def _final_stream(self, prompt: Prompt, tally: _Tally) -> Iterator[ModelEvent]:
        """The final call, streamed. A failure before its first event is tried again (nothing
        has been shown from it yet); after that, the pacer reports it as it is."""
        for attempt in range(1, self._map_attempts + 1):
            tally.call(prompt)
            try:
                events = iter(tally.meter.wrap(self._model.stream(prompt)))
                first = next(events, None)
            except ModelError as exc:
                retrying = attempt < self._map_attempts
                tally.failed(exc, retrying=retrying)
                if not retrying:
                    raise
                log.warning(
                    "summary final call failed, retrying",
                    extra={"attempt": attempt, "cause": exc.cause},
                )
                continue
            if first is not None:
                yield first
                yield from events
            return

    # -- packing -------------------------------------------------------------------------------

    def _pack(self, items: Sequence[_Item]) -> list[tuple[_Item, ...]]:
        """Consecutive items grouped into parts within the budget; an item too big for a part
        is split at word boundaries first."""
        parts: list[tuple[_Item, ...]] = []
        current: list[_Item] = []
        used = 0
        for item in items:
            for piece in self._fit(item):
                cost = _cost(piece)
                if current and used + cost > self._budget:
                    parts.append(tuple(current))
                    current, used = [], 0
                current.append(piece)
                used += cost
        if current:
            parts.append(tuple(current))
        return parts

    def _fit(self, item: _Item) -> list[_Item]:
        if _cost(item) <= self._budget:
            return [item]
        cont = f"{item.label} (cont.)"
        room = self._budget - _cost(_Item("", cont, "", ""))
        pieces: list[_Item] = []
        rest = item.text
        while rest:
            # The estimate counts at least one token per four characters: no piece is longer.
            piece = truncate_to_tokens(rest[: 4 * room + 8], room) or rest[: max(1, room)]
            label = cont if pieces else item.label
            pieces.append(_Item(piece, label, item.first, item.last))
            rest = rest[len(piece) :].lstrip()
        return pieces

    # -- prompts -------------------------------------------------------------------------------

    def _map_prompt(self, request: SummaryRequest, part: _Part) -> Prompt:
        kind = _kind(request)
        instructions = map_instructions(
            kind,
            combining=part.round > 1,
            index=part.index,
            total=part.total,
            span=part.span,
            words=self._map_inference.max_tokens * 3 // 4,
        )
        return self._prompt(request, part.items, instructions, self._map_inference)

    def _final_prompt(
        self, request: SummaryRequest, items: Sequence[_Item], *, combining: bool
    ) -> Prompt:
        instructions = final_instructions(_kind(request), combining=combining)
        return self._prompt(request, items, instructions, self._inference)

    def _prompt(
        self,
        request: SummaryRequest,
        items: Sequence[_Item],
        instructions: str,
        inference: InferenceSettings,
    ) -> Prompt:
        return summary_prompt(
            title=request.title,
            kind=_kind(request),
            excerpts=[(item.label, item.text) for item in items],
            instructions=instructions,
            inference=inference,
        )


# -- streams -----------------------------------------------------------------------------------


def _collect(events: Iterable[ModelEvent]) -> tuple[str, StreamEnd]:
    """A whole (non-streamed) answer: its text and its end. A stream without an end was cut."""
    chunks: list[str] = []
    end: StreamEnd | None = None
    iterator = iter(events)
    try:
        for event in iterator:
            if isinstance(event, TextDelta):
                chunks.append(event.text)
            elif isinstance(event, StreamEnd):
                end = event
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
    if end is None:
        raise ModelUnavailable("IncompleteStream: the stream ended without a stop event")
    return "".join(chunks), end


def _with_notes(
    events: Iterable[ModelEvent], notes: list[str], tally: _Tally
) -> Iterator[ModelEvent]:
    """The final stream with our notes appended as text before its end, so they are in the
    message whatever the model wrote, and also when the stream fails part way."""
    text = "\n\n" + "\n".join(notes) if notes else ""
    out: list[str] = []
    try:
        for event in events:
            if isinstance(event, StreamEnd):
                if text:
                    yield TextDelta(text)
                    text = ""
            elif isinstance(event, TextDelta):
                out.append(event.text)
            yield event
    except Exception:
        if text:
            yield TextDelta(text)
        raise
    finally:
        tally.output("".join(out))
    if text:
        yield TextDelta(text)


# -- small helpers -----------------------------------------------------------------------------


def _kind(request: SummaryRequest) -> str:
    return "conversation" if request.kind == "conversation" else "document"


def _span(first: str, last: str) -> str:
    return first if first == last else f"{first} to {last}"


def _cost(item: _Item) -> int:
    """Estimated tokens of an item in the prompt, its fence included."""
    return estimate_tokens(item.text) + estimate_tokens(item.label) + 8


def _one_line(value: str) -> str:
    return " ".join(value.split())
