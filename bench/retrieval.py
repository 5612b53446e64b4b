"""Retrieval on the embedded knowledge store: SQLite FTS5 BM25 at 1k, 10k and 100k chunks.

One store, one scope, grown in three steps through the real ``put_file`` (files of 500 chunks,
each one transaction with ``executemany``). At each size, ~200 questions of 2–6 words go through
the real ``search`` (limit 8), and are timed one by one. Baseline, in the same run, on a sample
of the same questions: a brute-force Python scan of the same chunk texts that counts how many of
the question's terms each chunk contains (what retrieval costs without an index).

Chunks are synthetic, ~150 words each, drawn with Zipf-like frequencies (exponent 1.07) from a
fixed-seed vocabulary whose most frequent words are real English function words and the rest
made-up words, so that word frequencies (and so FTS5's posting lists) look like prose.
Questions take 2–6 distinct content words from one chunk, with 0–2 question words ("what",
"how", ...) mixed in: the shape of a real question about a document. A second scope of 1,000
chunks sits beside the big one, to show what a search there costs.

Also measured: build time, database size, and the peak memory of building and of searching the
100k store, each in a fresh interpreter (peak resident set above the one after imports:
``VmHWM``, reset through ``/proc/self/clear_refs``), which counts SQLite's own allocations that
``tracemalloc`` cannot see, and nothing this process had allocated before. A last, smaller run
times the vector path (hybrid: cosine over 1,024-dimension vectors with numpy, fused with BM25)
at 10k chunks.

Run with ``python -m bench.retrieval`` or as part of ``python -m bench.run_all``.
"""

from __future__ import annotations

import gc
import json
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import machine_info, markdown_table, p50, p95, p99, ratio, verdict, write_section
from core.knowledge.base import FileRecord, StoredChunk
from core.knowledge.sqlite import SqliteKnowledgeStore, fts_query, query_terms

SECTION = "retrieval"
REPO = Path(__file__).resolve().parent.parent
clock = time.perf_counter

SEED = 20_240_611
SIZES = (1_000, 10_000, 100_000)
TARGETS = {10_000: 0.020, 100_000: 0.150}  # p95, from the issue
QUERIES = 200
WARMUP = 10
LIMIT = 8
BASELINE_QUERIES = {1_000: 40, 10_000: 20, 100_000: 8}
FILE_CHUNKS = 500
SCOPE = "slack#T1#C1"
SIDE_SCOPE = "slack#T1#C2"
SIDE_CHUNKS = 1_000
VOCABULARY = 30_000
ZIPF = 1.07
WORDS_PER_CHUNK = (120, 180)
VECTOR_CHUNKS = 10_000
VECTOR_DIMENSIONS = 1024
VECTOR_QUERIES = 100

_FUNCTION_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "the of and to a in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if so "
    "no will can more other what up out into about than them only could new some these may "
    "such its also two any first time should our over most after"
).split()
_QUESTION_WORDS = ("what", "how", "is", "the", "does", "about", "when", "which", "of", "a")
_SYLLABLES = (  # noqa: SIM905
    "ka lo mi ne ru sa ti vo pe da ri zo fu gan tor mel bri sten quo lux ar en il om ust"
).split()


# -- data --------------------------------------------------------------------------------------


class Corpus:
    """Deterministic synthetic chunks; ``texts(n)`` gives the first ``n`` of one stream."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        words = list(_FUNCTION_WORDS)
        seen = set(words)
        while len(words) < VOCABULARY:
            word = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 5))))
            if word not in seen:
                seen.add(word)
                words.append(word)
        self.vocabulary = np.array(words, dtype=object)
        weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF
        self._p = weights / weights.sum()
        self._rng = rng
        self._texts: list[str] = []

    def texts(self, count: int) -> list[str]:
        """The first ``count`` texts, kept for later calls."""
        while len(self._texts) < count:
            self._texts += self._batch(min(10_000, count - len(self._texts)))
        return self._texts[:count]

    def stream(self, count: int) -> Iterator[list[str]]:
        """The same texts as :meth:`texts`, in batches, keeping none of them."""
        for start in range(0, count, 10_000):
            yield self._batch(min(10_000, count - start))

    def _batch(self, size: int) -> list[str]:
        lengths = self._rng.integers(*WORDS_PER_CHUNK, endpoint=True, size=size)
        ids = self._rng.choice(VOCABULARY, size=int(lengths.sum()), p=self._p)
        words = self.vocabulary[ids]
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        return [
            " ".join(words[offsets[i] : offsets[i + 1]]).capitalize() + "." for i in range(size)
        ]


def make_questions(texts: Sequence[str], count: int, seed: int) -> list[tuple[int, str]]:
    """``(source chunk, question)`` pairs: 2–6 words, most of them content words of the chunk."""
    rng = np.random.default_rng(seed)
    questions = []
    for _ in range(count):
        source = int(rng.integers(len(texts)))
        content = sorted(set(query_terms(texts[source])))
        size = int(rng.integers(2, 7))
        extra = int(rng.integers(0, 3)) if size > 2 else 0
        picked = [str(w) for w in rng.choice(content, size=size - extra, replace=False)]
        picked += [str(w) for w in rng.choice(_QUESTION_WORDS, size=extra)]
        rng.shuffle(picked)
        questions.append((source, " ".join(picked) + "?"))
    return questions


def put_chunks(store: SqliteKnowledgeStore, scope: str, texts: Sequence[str], first: int) -> None:
    """Index ``texts`` as files of FILE_CHUNKS chunks; chunk ``first + i`` is ``texts[i]``."""
    for start in range(0, len(texts), FILE_CHUNKS):
        part = texts[start : start + FILE_CHUNKS]
        file_id = f"F{(first + start) // FILE_CHUNKS:05d}"
        store.put_file(
            FileRecord(scope, file_id, f"{file_id}.txt", "-", len(part), "", float(first + start)),
            [
                StoredChunk(scope, file_id, f"{file_id}.txt", i, f"chunk {first + start + i}", t)
                for i, t in enumerate(part)
            ],
        )


# -- memory --------------------------------------------------------------------------------------


def reset_peak() -> bool:
    """Reset the process's peak resident set (``VmHWM``) to its current size (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_mib() -> float:
    """The process's peak resident set so far: ``VmHWM``, or ``ru_maxrss`` where there is none."""
    kib = _status_kib("VmHWM") or float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return kib / 1024


def memory_child(mode: str, path: str, questions_file: str = "") -> None:
    """Run in a fresh interpreter: build the largest store, or serve the questions from it, and
    print the resident set after imports and the peak during the work, in MiB, as JSON."""
    gc.collect()
    before = _status_kib("VmRSS") / 1024
    reset_peak()
    store = SqliteKnowledgeStore(path)
    if mode == "build":
        done = 0
        for texts in Corpus(SEED).stream(SIZES[-1]):
            put_chunks(store, SCOPE, texts, done)
            done += len(texts)
    else:
        for question in json.loads(Path(questions_file).read_text()):
            store.search(SCOPE, question, limit=LIMIT)
    store.close()
    print(json.dumps({"before": before, "peak": peak_mib()}))


@dataclass
class Memory:
    method: str
    build_before: float
    build_peak: float
    search_before: float
    search_peak: float


def measure_memory(data_dir: Path, questions: Sequence[str]) -> Memory:
    """Peak memory of building and of searching the largest store, each in a fresh process, so
    that nothing this process allocated before (the texts, the other steps) hides or inflates
    it. The build generates its texts in batches of 10k as it goes."""
    path = data_dir / "memory.sqlite3"
    questions_file = data_dir / "questions.json"
    questions_file.write_text(json.dumps(list(questions)))

    def child(*args: str) -> dict[str, float]:
        code = "import sys; from bench.retrieval import memory_child; memory_child(*sys.argv[1:])"
        out = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", code, *args],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return result

    build = child("build", str(path))
    search = child("search", str(path), str(questions_file))
    method = "VmHWM, reset after imports" if reset_peak() else "ru_maxrss"
    return Memory(method, build["before"], build["peak"], search["before"], search["peak"])


def _status_kib(field_name: str) -> float:
    match = re.search(rf"^{field_name}:\s+(\d+)", Path("/proc/self/status").read_text(), re.M)
    return float(match.group(1)) if match else 0.0


# -- measurement ---------------------------------------------------------------------------------


@dataclass
class Step:
    chunks: int
    build_s: float
    db_mib: float
    times: list[float]
    questions: list[str]
    found: float  # share of questions whose source chunk is in the top LIMIT
    terms: list[int]
    baseline: list[float]
    baseline_found: float
    matched: list[float] = field(default_factory=list)  # share of the scope each question matches
    side_times: list[float] = field(default_factory=list)


def timed_searches(
    search: Callable[[str], list[str]], questions: Sequence[tuple[int, str]], texts: Sequence[str]
) -> tuple[list[float], float]:
    times, found = [], 0
    for source, question in questions:
        started = clock()
        results = search(question)
        times.append(clock() - started)
        found += texts[source] in results
    return times, found / len(questions)


def brute_force(texts: Sequence[str]) -> Callable[[str], list[str]]:
    """The baseline: scan every chunk, count the question's distinct terms it contains."""

    def search(question: str) -> list[str]:
        terms = set(query_terms(question))
        scored = []
        for i, text in enumerate(texts):
            words = set(re.findall(r"\w+", text.lower()))
            overlap = len(terms & words)
            if overlap:
                scored.append((-overlap, i))
        scored.sort()
        return [texts[i] for _, i in scored[:LIMIT]]

    return search


def matched_shares(path: Path, questions: Sequence[str], size: int) -> list[float]:
    """For each question, the share of the scope's chunks that FTS5 must rank (any term)."""
    with sqlite3.connect(path) as raw:
        return [
            raw.execute(
                "SELECT count(*) FROM knowledge_chunks_fts WHERE knowledge_chunks_fts MATCH ?",
                (fts_query(SCOPE, question),),
            ).fetchone()[0]
            / size
            for question in questions
            if fts_query(SCOPE, question)
        ]


def db_size_mib(path: Path) -> float:
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [path, Path(f"{path}-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


def measure_words(data_dir: Path) -> list[Step]:
    corpus = Corpus(SEED)
    side = Corpus(SEED + 1).texts(SIDE_CHUNKS)
    path = data_dir / "knowledge.sqlite3"
    store = SqliteKnowledgeStore(path)
    put_chunks(store, SIDE_SCOPE, side, 0)
    steps: list[Step] = []
    indexed = 0
    for size in SIZES:
        texts = corpus.texts(size)
        started = clock()
        put_chunks(store, SCOPE, texts[indexed:], indexed)
        build_s = clock() - started
        indexed = size
        questions = make_questions(texts, QUERIES + WARMUP, seed=size)

        def search(question: str) -> list[str]:
            return [p.text for p in store.search(SCOPE, question, limit=LIMIT)]

        timed_searches(search, questions[:WARMUP], texts)
        times, found = timed_searches(search, questions[WARMUP:], texts)

        sample = questions[WARMUP : WARMUP + BASELINE_QUERIES[size]]
        baseline, baseline_found = timed_searches(brute_force(texts), sample, texts)

        matched = matched_shares(path, [q for _, q in questions[WARMUP:]], size)
        side_questions = make_questions(side, QUERIES, seed=size + 1)

        def search_side(question: str) -> list[str]:
            return [p.text for p in store.search(SIDE_SCOPE, question, limit=LIMIT)]

        side_times, _ = timed_searches(search_side, side_questions, side)
        steps.append(
            Step(
                chunks=size,
                build_s=build_s,
                db_mib=db_size_mib(path),
                times=times,
                questions=[q for _, q in questions[WARMUP:]],
                found=found,
                terms=[len(query_terms(q)) for _, q in questions[WARMUP:]],
                baseline=baseline,
                baseline_found=baseline_found,
                matched=matched,
                side_times=side_times,
            )
        )
        print(
            f"  {size:>7,} chunks: built in {build_s:.1f} s, p95 {p95(times) * 1000:.1f} ms",
            flush=True,
        )
    store.close()
    return steps


@dataclass
class VectorRun:
    build_s: float
    db_mib: float
    first_s: float  # the first search loads and normalizes the scope's vectors
    times: list[float]
    words_times: list[float]


def measure_vectors(data_dir: Path) -> VectorRun:
    texts = Corpus(SEED + 2).texts(VECTOR_CHUNKS)
    rng = np.random.default_rng(SEED + 3)
    vectors = rng.standard_normal((VECTOR_CHUNKS, VECTOR_DIMENSIONS), dtype=np.float32)
    path = data_dir / "vectors.sqlite3"
    store = SqliteKnowledgeStore(path)
    started = clock()
    for start in range(0, VECTOR_CHUNKS, FILE_CHUNKS):
        part = texts[start : start + FILE_CHUNKS]
        file_id = f"V{start // FILE_CHUNKS:05d}"
        store.put_file(
            FileRecord(SCOPE, file_id, f"{file_id}.txt", "-", len(part), "", float(start)),
            [StoredChunk(SCOPE, file_id, f"{file_id}.txt", i, "", t) for i, t in enumerate(part)],
            vectors[start : start + FILE_CHUNKS],  # type: ignore[arg-type]  # rows are sequences
        )
    build_s = clock() - started
    questions = make_questions(texts, VECTOR_QUERIES + 1, seed=99)
    embeddings = [
        vectors[source] + 0.5 * rng.standard_normal(VECTOR_DIMENSIONS, dtype=np.float32)
        for source, _ in questions
    ]
    started = clock()
    store.search(SCOPE, questions[0][1], limit=LIMIT, query_embedding=list(embeddings[0]))
    first_s = clock() - started
    times, words_times = [], []
    for (_, question), embedding in zip(questions[1:], embeddings[1:], strict=True):
        query_embedding = embedding.tolist()
        started = clock()
        store.search(SCOPE, question, limit=LIMIT, query_embedding=query_embedding)
        times.append(clock() - started)
        started = clock()
        store.search(SCOPE, question, limit=LIMIT)
        words_times.append(clock() - started)
    store.close()
    return VectorRun(build_s, db_size_mib(path), first_s, times, words_times)


# -- report --------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def report(
    steps: Sequence[Step], vectors: VectorRun, memory: Memory, took: float
) -> tuple[str, str]:
    def target(step: Step) -> str:
        goal = TARGETS.get(step.chunks)
        return f"≤ {goal * 1000:.0f} ms" if goal else "—"

    def result(step: Step) -> str:
        goal = TARGETS.get(step.chunks)
        return verdict(p95(step.times) <= goal) if goal else "—"

    summary = markdown_table(
        [
            "chunks in scope",
            "p50",
            "p95",
            "baseline p95 (Python scan)",
            "ratio",
            "target",
            "result",
        ],
        [
            [
                f"{s.chunks:,}",
                ms(p50(s.times)),
                ms(p95(s.times)),
                ms(p95(s.baseline)),
                ratio(p95(s.times), p95(s.baseline)),
                target(s),
                result(s),
            ]
            for s in steps
        ],
    )
    detail = markdown_table(
        [
            "chunks",
            "p50",
            "p95",
            "p99",
            "max",
            "source chunk in top 8",
            "baseline p50 / p95 (n)",
            "baseline: source in top 8",
        ],
        [
            [
                f"{s.chunks:,}",
                ms(p50(s.times)),
                ms(p95(s.times)),
                ms(p99(s.times)),
                ms(max(s.times)),
                f"{s.found:.0%}",
                f"{ms(p50(s.baseline))} / {ms(p95(s.baseline))} ({len(s.baseline)})",
                f"{s.baseline_found:.0%}",
            ]
            for s in steps
        ],
    )
    build = markdown_table(
        [
            "chunks",
            "added in this step",
            "build time",
            "chunks/s",
            "database size",
        ],
        [
            [
                f"{s.chunks:,}",
                f"{s.chunks - prev:,}",
                f"{s.build_s:.1f} s",
                f"{(s.chunks - prev) / s.build_s:,.0f}",
                f"{s.db_mib:.1f} MiB",
            ]
            for s, prev in zip(steps, (0, *SIZES), strict=False)
        ],
    )
    side = markdown_table(
        ["big scope beside it", "p50", "p95", "max"],
        [
            [f"{s.chunks:,}", ms(p50(s.side_times)), ms(p95(s.side_times)), ms(max(s.side_times))]
            for s in steps
        ],
    )
    terms = [t for s in steps for t in s.terms]
    section = f"""
## Retrieval on the embedded store (`bench.retrieval`)

Measured {machine_info()}.
Reproduce: `.venv/bin/python -m bench.retrieval` (this run took {took:.0f} s).

SQLite FTS5 BM25, the embedded default (`SqliteKnowledgeStore`, no embedding model): one
scope grown to 1k, 10k and 100k chunks through `put_file` (files of {FILE_CHUNKS} chunks, one
transaction each), then {QUERIES} questions timed one by one through `search` (limit {LIMIT},
after {WARMUP} warm-up questions). Baseline, same run, same chunks and questions (a sample, it
is slow): a brute-force Python scan that counts each chunk's distinct question terms.

{summary}

Targets from the issue: p95 ≤ 20 ms at 10k chunks and ≤ 150 ms at 100k.

### Data

Synthetic chunks of {WORDS_PER_CHUNK[0]}–{WORDS_PER_CHUNK[1]} words (~150) drawn with Zipf-like
frequencies (exponent {ZIPF}) from a fixed-seed vocabulary of {VOCABULARY:,} words, the most
frequent being English function words. Questions take 2–6 distinct content words from one chunk
(the *source*), with 0–2 question words mixed in ({min(terms)}–{max(terms)} searchable terms after
stop words, mean {sum(terms) / len(terms):.1f}). Every term is OR-ed, so a question matches every
chunk that holds any of its words, and FTS5 scores every match: the median question matches
{p50(steps[-1].matched):.0%} of the scope's chunks (p95 {p95(steps[-1].matched):.0%}) at
{steps[-1].chunks:,}, which is what the time grows with.

### Latency

{detail}

"Source chunk in top 8" is a sanity check that the ranking works (the chunk the question was
taken from should rank high), not a relevance measure: the text is synthetic.

### A small scope beside the big one

A second scope of {SIDE_CHUNKS:,} chunks lives in the same database. Each search asks FTS5 for
`scope_tag : "<tag>" AND text : (...)`, so only that scope's postings are ranked: its latency
does not grow with the big scope.

{side}

### Build, memory and size

{build}

Memory at {SIZES[-1]:,} chunks, each measured in a fresh interpreter ({memory.method}): the
peak resident set during the work, above the resident set after imports. It counts SQLite's
page cache and FTS5's buffers, which `tracemalloc` cannot see.

{
        markdown_table(
            ["fresh process", "resident after imports", "peak during the work", "growth"],
            [
                [
                    f"build {SIZES[-1]:,} chunks (texts generated 10k at a time)",
                    f"{memory.build_before:.0f} MiB",
                    f"{memory.build_peak:.0f} MiB",
                    f"{memory.build_peak - memory.build_before:.0f} MiB",
                ],
                [
                    f"{QUERIES} searches on the {SIZES[-1]:,}-chunk store",
                    f"{memory.search_before:.0f} MiB",
                    f"{memory.search_peak:.0f} MiB",
                    f"{memory.search_peak - memory.search_before:.0f} MiB",
                ],
            ],
        )
    }

### Vector path (hybrid), {VECTOR_CHUNKS:,} chunks

{VECTOR_CHUNKS:,} chunks with random {VECTOR_DIMENSIONS}-dimension float32 vectors (no
embedding model runs here: query vectors are a chunk's vector plus noise), {VECTOR_QUERIES}
questions. Each search runs cosine similarity over the scope's vectors with numpy and BM25, and
fuses the two rankings (reciprocal rank fusion).

{
        markdown_table(
            ["", "value"],
            [
                ["build (vectors stored as float32 BLOBs)", f"{vectors.build_s:.1f} s"],
                ["database size", f"{vectors.db_mib:.1f} MiB"],
                ["first search (loads and caches the scope's vectors)", ms(vectors.first_s)],
                [
                    "hybrid search p50 / p95",
                    f"{ms(p50(vectors.times))} / {ms(p95(vectors.times))}",
                ],
                [
                    "same questions, words only, p50 / p95",
                    f"{ms(p50(vectors.words_times))} / {ms(p95(vectors.words_times))}",
                ],
            ],
        )
    }
"""
    compact = summary
    misses = [
        f"{s.chunks:,}" for s in steps if s.chunks in TARGETS and p95(s.times) > TARGETS[s.chunks]
    ]
    if misses:
        compact += f"\n\nMISSED TARGETS at {', '.join(misses)} chunks (see docs/benchmarks.md)"
    return compact, section


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        started = clock()
        steps = measure_words(Path(tmp))
        vectors = measure_vectors(Path(tmp))
        memory = measure_memory(Path(tmp), steps[-1].questions)
        took = clock() - started
    compact, section = report(steps, vectors, memory, took)
    path = write_section(SECTION, section)
    print(compact)
    print(f"\n{took:.1f} s; written to {path}")


if __name__ == "__main__":
    main()
