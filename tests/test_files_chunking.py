"""Chunking: overlapping windows that keep their section's location and lose no text."""

from __future__ import annotations

import itertools
import random
import re
import time

import pytest

from core.files.chunking import chunk, split_text, window_spans
from core.files.extract import extract
from core.files.types import ChunkText, ExtractedDocument, Section
from tests import files_factory as make

WORDS = (  # noqa: SIM905 - a word list reads better as text
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


def doc_of(*texts: str) -> ExtractedDocument:
    return ExtractedDocument(
        name="d.txt",
        kind="text",
        sections=tuple(Section(t, f"page {i}") for i, t in enumerate(texts, 1)),
    )


def sentences(count: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
        out.append(f"{n}{' '.join(words).capitalize()}.")  # numbered: every sentence differs
    return " ".join(out)


def spans(text: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Where each piece sits in ``text``, in order (pieces are substrings, in order)."""
    found, at = [], 0
    for piece in pieces:
        start = text.find(piece, at)
        assert start != -1, f"chunk is not a piece of its section: {piece[:60]!r}"
        found.append((start, start + len(piece)))
        at = start + 1
    return found


def exact_spans(text: str, target: int, overlap: int) -> list[tuple[int, int]]:
    located = window_spans(text, target, overlap)
    assert [text[a:b] for a, b in located] == split_text(text, target, overlap)
    return located


def assert_covers(text: str, located: list[tuple[int, int]]) -> None:
    """Every non-space character of ``text`` is inside some span: no text lost."""
    covered = 0
    for start, end in located:
        gap = text[covered:start] if start > covered else ""
        assert not gap.strip(), f"text lost: {gap[:60]!r}"
        covered = max(covered, end)
    assert not text[covered:].strip(), f"text lost at the end: {text[covered:][:60]!r}"


def test_a_short_section_is_one_chunk_with_its_location() -> None:
    assert chunk(doc_of("Just this.")) == [ChunkText(0, "Just this.", "page 1")]


def test_chunks_never_cross_sections_and_are_indexed_in_order() -> None:
    doc = doc_of(sentences(40, 1), "Short page.", sentences(30, 2))
    chunks = chunk(doc, target_chars=400, overlap_chars=80)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    by_location: dict[str, list[str]] = {}
    for c in chunks:
        by_location.setdefault(c.location, []).append(c.text)
    assert list(by_location) == ["page 1", "page 2", "page 3"]
    assert by_location["page 2"] == ["Short page."]
    for section in doc.sections:
        assert_covers(section.text, spans(section.text, by_location[section.location]))


def test_windows_end_at_sentence_ends_and_overlap_from_a_word_start() -> None:
    text = sentences(60)
    pieces = split_text(text, 500, 100)
    assert len(pieces) > 3
    for piece in pieces[:-1]:
        assert piece.endswith("."), piece[-40:]
    located = exact_spans(text, 500, 100)
    for (_s1, e1), (s2, _) in itertools.pairwise(located):
        overlap = e1 - s2
        assert 0 < overlap <= 100
        assert overlap >= 100 - max(len(w) for w in WORDS) - 4  # about overlap_chars
        assert s2 == 0 or text[s2 - 1] == " "  # starts at a word
    assert_covers(text, located)


def test_windows_prefer_paragraph_breaks() -> None:
    paragraphs = [sentences(3, seed) for seed in range(12)]
    text = "\n\n".join(paragraphs)
    located = exact_spans(text, 800, 0)
    assert len(located) > 3
    for _, end in located[:-1]:
        assert text[end : end + 2] == "\n\n"
    assert_covers(text, located)


def test_a_tiny_tail_joins_the_chunk_before_it() -> None:
    text = sentences(30)
    target = 600
    located = exact_spans(text, target, 100)
    tail = target // 4
    assert len(located) > 2
    assert located[-1][1] - located[-2][1] >= tail  # new text in the last chunk
    # exactly one window plus a little: one chunk, not a window and a sliver
    assert split_text(text[: target + tail - 5].strip(), target, 100) == [
        text[: target + tail - 5].strip()
    ]


def test_a_giant_word_is_cut_hard_and_nothing_is_lost() -> None:
    text = "start " + "x" * 5000 + " end"
    located = exact_spans(text, 1000, 200)
    assert all(end - start <= 1000 + 250 for start, end in located)
    assert_covers(text, located)


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk(doc_of("x"), target_chars=400, overlap_chars=200)
    with pytest.raises(ValueError, match="overlap"):
        chunk(doc_of("x"), overlap_chars=-1)
    with pytest.raises(ValueError, match="target"):
        chunk(doc_of("x"), target_chars=10, overlap_chars=0)


def test_sizes_stay_within_bounds_on_random_text() -> None:
    """Property-style: seeded random texts and sizes; bounds, coverage, overlap, order."""
    rng = random.Random(20240607)
    for _ in range(300):
        target = rng.randint(40, 2000)
        overlap = rng.randint(0, target // 2 - 1)
        parts: list[str] = []
        for _ in range(rng.randint(0, 600)):
            word = rng.choice(WORDS)
            if rng.random() < 0.02:
                word = "z" * rng.randint(1, 3 * target)  # an occasional very long token
            parts.append(word)
            parts.append(rng.choice([" "] * 20 + [". ", "\n", "\n\n", "? "]))
        text = "".join(parts).strip()
        if not text:
            assert split_text(text, target, overlap) == []
            continue
        pieces = split_text(text, target, overlap)
        assert pieces and all(p == p.strip() and p for p in pieces)
        located = exact_spans(text, target, overlap)
        for i, (start, end) in enumerate(located):
            size = end - start
            assert size <= target + target // 4, (target, size)
            if i < len(located) - 1:
                assert size >= target // 2 - 2, (target, size)
                assert located[i + 1][0] > start  # always moves forward
                assert end - located[i + 1][0] <= overlap  # overlap is bounded
        assert_covers(text, located)


def test_every_word_of_a_real_document_lands_in_a_chunk() -> None:
    pages = [sentences(25, seed) for seed in range(6)]
    doc = extract("r.pdf", "application/pdf", make.make_pdf(pages, compress=True))
    chunks = chunk(doc)
    for section in doc.sections:
        mine = " ".join(c.text for c in chunks if c.location == section.location)
        for word in re.findall(r"\w+", section.text):
            assert word in mine
    assert {c.location for c in chunks} == {f"page {n}" for n in range(1, 7)}


def test_chunking_is_linear_not_quadratic() -> None:
    text = sentences(20000)  # about 2 MB
    started = time.perf_counter()
    pieces = split_text(text, 1200, 200)
    assert time.perf_counter() - started < 1.0
    assert len(pieces) > len(text) // 1200


def test_the_indexer_refuses_more_text_than_it_can_embed_with_a_clear_line() -> None:
    from core.domain import FileRef
    from core.files.ingest import FileIndexer
    from core.files.types import FileTooLarge
    from core.knowledge.sqlite import SqliteKnowledgeStore

    store = SqliteKnowledgeStore(":memory:")
    indexer = FileIndexer(store, max_chunks=3)
    text = ("A sentence about deployments and their owners. " * 200).encode()
    with pytest.raises(FileTooLarge) as caught:
        indexer.ingest("slack#T1#C1", FileRef("F1", "long.txt", "text/plain"), text)
    assert "long.txt" in caught.value.user_message and "3" in caught.value.user_message
    assert store.list_files("slack#T1#C1") == []
