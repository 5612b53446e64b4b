"""Summarizing a 300-page document: coverage, model calls, tokens and wall time.

A synthetic document of 300 pages (~2,500 characters each, every page carrying a unique marker
``PAGE-<n>-MARK``) becomes 300 excerpts labelled "page n", as a PDF's pages would. The model is
this module's stand-in: every call sleeps exactly ``CALL_SECONDS`` and then streams a short
summary that names the markers it was shown, so what reached the model, and what survived into
the final summary, can be counted. It counts calls and estimated input and output tokens.

Ours: the real :class:`~core.summarize.Summarizer` at the production defaults (``Settings()``:
part size, concurrency, answer length, edit interval) streaming through the real pacer into a
recording sink. Baseline, in the same run: the seed's approach, stuffing the first 3 chunks into
one call (the same pipeline, given only pages 1-3). Then a sweep of the settings that decide the
wall time: concurrency and part size.

The bench does not import ``tests/``. Run with ``python -m bench.summarize`` or as part of
``python -m bench.run_all``.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.common import machine_info, markdown_table, ratio, verdict, write_section
from bench.core_overhead import production_logging
from core.config import Settings
from core.domain import Reply
from core.models.base import ChatModel, ModelEvent, StreamEnd, TextDelta
from core.pacer import ProcessLocalSink
from core.summarize import Excerpt, Summarizer, SummaryRequest
from core.text import estimate_tokens

if TYPE_CHECKING:
    from core.prompt import Prompt

SECTION = "summarize"
clock = time.perf_counter

PAGES = 300
PAGE_CHARS = 2_500
CALL_SECONDS = 1.0
TARGET_SECONDS = 10.0
BASELINE_CHUNKS = 3
SEED = 300
MARK = re.compile(r"PAGE-(\d+)-MARK")
PAGE_LABEL = re.compile(r"^page \d+( \(cont\.\))?$")
SWEEP = ((1, None), (2, None), (8, None), (None, 10_000))  # (concurrency, part tokens) overrides

_NAMES = ("Ada", "Grace", "Linus", "Barbara", "Edsger", "Margaret", "Alan", "Frances")
_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "the billing service migration review budget staging release customer outage incident "
    "team decision question owner deadline quarter metric latency gateway certificate refund "
    "workflow audit dashboard pipeline approval rollout schedule risk estimate contract vendor "
    "capacity forecast backlog priority design proposal feedback milestone dependency"
).split()


# -- the document --------------------------------------------------------------------------------


def page_text(n: int, rng: random.Random) -> str:
    """About ``PAGE_CHARS`` characters of sentences, starting with the page's marker."""
    sentences = [f"PAGE-{n}-MARK opens page {n}."]
    length = len(sentences[0])
    while length < PAGE_CHARS:
        who = rng.choice(_NAMES)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 16)))
        sentence = f"{who} noted that {words}."
        sentences.append(sentence)
        length += len(sentence) + 1
    return " ".join(sentences)[:PAGE_CHARS]


def document() -> tuple[Excerpt, ...]:
    rng = random.Random(SEED)
    return tuple(Excerpt(page_text(n, rng), f"page {n}") for n in range(1, PAGES + 1))


# -- stand-ins -----------------------------------------------------------------------------------


class FixedLatencyModel(ChatModel):
    """Every call: sleep ``latency`` seconds, then stream a short summary naming the markers it
    was shown. Counts calls, estimated tokens, and which pages' own text it was given."""

    name = "bench-fixed-latency"

    def __init__(self, latency: float) -> None:
        self._latency = latency
        self._lock = threading.Lock()
        self.calls = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.pages_read: set[int] = set()  # pages whose text (not a summary of it) was sent
        self.active = 0
        self.max_active = 0

    def stream(self, prompt: Prompt) -> Iterator[ModelEvent]:
        return self._events(prompt)

    def _events(self, prompt: Prompt) -> Iterator[ModelEvent]:
        text = prompt.system + "\n".join(m.text for m in prompt.messages)
        read = {
            int(n)
            for p in prompt.passages
            if PAGE_LABEL.match(p.source.title)
            for n in MARK.findall(p.text)
        }
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self._latency)
        finally:
            with self._lock:
                self.active -= 1
        seen = sorted({int(n) for n in MARK.findall(text)})
        answer = "- Covers " + " ".join(f"PAGE-{n}-MARK" for n in seen) + "."
        with self._lock:
            self.calls += 1
            self.tokens_in += estimate_tokens(text)
            self.tokens_out += estimate_tokens(answer)
            self.pages_read |= read
        half = len(answer) // 2
        yield TextDelta(answer[:half])
        yield TextDelta(answer[half:])
        yield StreamEnd(stop_reason="end_turn")


@dataclass
class TimedSink(ProcessLocalSink):
    """A ReplySink that keeps the final text and when the first text and the finish came."""

    max_chars: int = 12_000
    first_text_at: float | None = None
    finished_at: float | None = None
    text: str = ""
    posts: int = 0
    edits: int = 0

    def post(self, text: str) -> str:
        self.posts += 1
        return f"m{self.posts}"

    def update(self, ref: str, text: str) -> None:
        self.edits += 1
        if self.first_text_at is None and text.strip():
            self.first_text_at = clock()

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self.finished_at = clock()
        if self.first_text_at is None:
            self.first_text_at = self.finished_at
        self.text = reply.text


# -- runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    label: str
    concurrency: int
    part_tokens: int
    calls: int
    tokens_in: int
    tokens_out: int
    wall: float
    first_text: float
    pages_read: int
    pages_in_summary: int
    max_active: int
    complete: bool


def run(label: str, excerpts: tuple[Excerpt, ...], *, concurrency: int, part_tokens: int) -> Run:
    settings = Settings(summary_concurrency=concurrency, summary_part_tokens=part_tokens)
    model = FixedLatencyModel(CALL_SECONDS)
    summarizer = Summarizer.from_settings(model, settings)
    sink = TimedSink()
    request = SummaryRequest("report.pdf", "document", excerpts)
    started = clock()
    reply = summarizer.summarize(request, sink)
    wall = clock() - started
    assert sink.finished_at is not None and sink.first_text_at is not None
    return Run(
        label=label,
        concurrency=concurrency,
        part_tokens=part_tokens,
        calls=model.calls,
        tokens_in=model.tokens_in,
        tokens_out=model.tokens_out,
        wall=wall,
        first_text=sink.first_text_at - started,
        pages_read=len(model.pages_read),
        pages_in_summary=len({int(n) for n in MARK.findall(sink.text)}),
        max_active=model.max_active,
        complete=reply.complete,
    )


# -- report --------------------------------------------------------------------------------------


def report(ours: Run, base: Run, sweep: list[Run], took: float, doc_tokens: int) -> tuple[str, str]:
    defaults = Settings()
    every_page = ours.pages_read == PAGES and ours.pages_in_summary == PAGES
    fast = ours.wall <= TARGET_SECONDS
    coverage = ours.pages_read / max(1, base.pages_read)

    def row(r: Run) -> list[object]:
        return [
            r.label,
            r.calls,
            f"{r.tokens_in:,}",
            f"{r.tokens_out:,}",
            f"{r.wall:.2f} s",
            f"{r.first_text:.2f} s",
            f"{r.pages_read}/{PAGES}",
            f"{r.pages_in_summary}/{PAGES}",
        ]

    headers = [
        "run",
        "model calls",
        "tokens in (est.)",
        "tokens out (est.)",
        "wall time",
        "first summary text",
        "pages that reached the model",
        "pages named in the summary",
    ]
    summary = markdown_table(
        ["measure", "ours", "baseline (first 3 chunks)", "ratio", "target", "result"],
        [
            [
                "pages that reached the model",
                f"{ours.pages_read}/{PAGES}",
                f"{base.pages_read}/{PAGES}",
                f"{coverage:.0f}× coverage",
                "every page",
                verdict(every_page),
            ],
            [
                "wall time, 1 s per model call",
                f"{ours.wall:.2f} s",
                f"{base.wall:.2f} s",
                ratio(ours.wall, base.wall),
                f"≤ {TARGET_SECONDS:.0f} s",
                verdict(fast),
            ],
            [
                "model calls",
                str(ours.calls),
                str(base.calls),
                ratio(ours.calls, base.calls),
                "",
                "",
            ],
            [
                "tokens in / out (estimated)",
                f"{ours.tokens_in:,} / {ours.tokens_out:,}",
                f"{base.tokens_in:,} / {base.tokens_out:,}",
                ratio(ours.tokens_in, base.tokens_in) + " in",
                "",
                "",
            ],
        ],
    )
    meets = [r.label for r in (ours, *sweep) if r.wall <= TARGET_SECONDS]
    section = f"""
## Summarizing a 300-page document (`bench.summarize`)

Measured {machine_info()}.
Reproduce: `.venv/bin/python -m bench.summarize` (this run took {took:.0f} s).

{summary}

A synthetic document of {PAGES} pages (~{PAGE_CHARS:,} characters each, about {doc_tokens:,}
estimated tokens in all), one excerpt per page labelled "page n", each page carrying a unique
marker. The model stand-in sleeps exactly {CALL_SECONDS:g} s per call, then streams a short
summary naming the markers it was shown; "pages that reached the model" counts pages whose own
text was in a prompt, "pages named in the summary" the markers that survived map-reduce into
the final message. Ours: the real `Summarizer` at the production defaults
(`CHATBOT_SUMMARY_PART_TOKENS={defaults.summary_part_tokens}`,
`CHATBOT_SUMMARY_CONCURRENCY={defaults.summary_concurrency}`,
`CHATBOT_MAX_ANSWER_TOKENS={defaults.max_answer_tokens}`,
`CHATBOT_EDIT_INTERVAL_SECONDS={defaults.edit_interval_seconds:g}`) through the real `ReplyPacer`.
Baseline: the seed's approach, the first {BASELINE_CHUNKS} chunks stuffed into one call.

{markdown_table(headers, [row(ours), row(base)])}

Wall time is from the call to `summarize` to the final edit: {ours.calls - 1} map calls, at most
{ours.max_active} in flight at once, then one streamed combine, then
the pacer's wait before the final edit (the edit interval: it never edits faster, so about
{defaults.edit_interval_seconds:g} s of every figure here, the baseline's too, is that wait).
The first summary text shows {ours.first_text:.2f} s in; until then the placeholder is up.

### What decides the wall time

The same document and stand-in, one setting changed at a time from the defaults:

{markdown_table(headers, [row(r) for r in sweep])}

With a fixed latency per call, the wall time is about (⌈parts / concurrency⌉ + 1) calls, plus
the pacer's last wait: parts come from the part size, so concurrency and part size trade off
against the model's rate limits and its context window. Settings that meet ≤ {TARGET_SECONDS:g} s
here: {"; ".join(meets) or "none"}.
"""
    compact = summary
    if not (every_page and fast):
        compact += "\n\nMISSED TARGETS (see docs/benchmarks.md)"
    return compact, section


def main() -> None:
    excerpts = document()
    doc_tokens = sum(estimate_tokens(e.text) for e in excerpts)
    defaults = Settings()
    concurrency, part_tokens = defaults.summary_concurrency, defaults.summary_part_tokens
    with production_logging():
        started = clock()
        ours = run(
            f"ours (defaults: concurrency {concurrency}, parts {part_tokens:,} tokens)",
            excerpts,
            concurrency=concurrency,
            part_tokens=part_tokens,
        )
        base = run(
            f"baseline (first {BASELINE_CHUNKS} chunks, one call)",
            excerpts[:BASELINE_CHUNKS],
            concurrency=concurrency,
            part_tokens=part_tokens,
        )
        sweep = []
        for c, p in SWEEP:
            c, p = c or concurrency, p or part_tokens
            sweep.append(
                run(f"concurrency {c}, parts {p:,} tokens", excerpts, concurrency=c, part_tokens=p)
            )
        took = clock() - started
    compact, section = report(ours, base, sweep, took, doc_tokens)
    path = write_section(SECTION, section)
    print(compact)
    print(f"\n{took:.1f} s; written to {path}")


if __name__ == "__main__":
    main()
