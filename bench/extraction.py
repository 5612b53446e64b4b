"""File extraction speed: ``extract()`` + ``chunk()`` against bare pypdf on the same PDF.

A PDF of text pages (about 3,000 characters each, Helvetica, Flate-compressed content streams,
as most producers write them) is made in memory by this module's own minimal PDF writer
(bench/ ships without tests/). Baseline: ``PdfReader`` + ``page.extract_text()`` for every page,
nothing else: the floor any PDF reading through pypdf pays. Ours: ``extract()`` (signature
check, reader, per-page extraction, ``clean_text``, sections) then ``chunk()`` at the default
sizes. The two run interleaved, round after round, on the same bytes; each round's ratio is
baseline time / our time, so 1.0 means extraction and chunking cost nothing on top of pypdf.

Run with ``python -m bench.extraction`` or as part of ``python -m bench.run_all``.
"""

from __future__ import annotations

import io
import logging
import random
import textwrap
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.common import machine_info, markdown_table, p50, verdict, write_section
from core.files.chunking import chunk
from core.files.extract import extract
from core.files.types import ExtractedDocument, Section
from core.text import clean_text

SECTION = "extraction"
clock = time.perf_counter

PAGES = 150
CHARS_PER_PAGE = 3000
ROUNDS = 9
TARGET_RATIO = 0.8  # ours must run at ≥ 0.8× bare pypdf's pages/s

_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "the quarterly report shows revenue growth across every region while costs stayed flat "
    "because the operations team renegotiated supplier contracts and the north office opened "
    "two new sites; customers asked for faster delivery, clearer invoices and better support. "
    "Margins improved. Headcount grew by twelve percent? Risks remain in currency and freight!"
).split()


# -- a minimal PDF writer (duplicated from the tests' factory on purpose) ----------------------


def _pdf_string(text: str) -> bytes:
    raw = text.encode("latin-1", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _content(text: str) -> bytes:
    ops = [b"BT", b"/F1 10 Tf", b"12 TL", b"50 770 Td"]
    for paragraph in text.split("\n"):
        for line in textwrap.wrap(paragraph, 95) or [""]:
            if line:
                ops.append(_pdf_string(line) + b" Tj")
            ops.append(b"T*")
    ops.append(b"ET")
    return zlib.compress(b"\n".join(ops))


def make_pdf(pages: Sequence[str]) -> bytes:
    """Objects (catalog, page tree, a Helvetica font, a page and a Flate content stream per
    page), an xref table with their byte offsets, the trailer."""
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, text in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        stream = _content(text)
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def page_texts(count: int, chars: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    pages = []
    for number in range(1, count + 1):
        paragraphs: list[str] = [f"Section {number}. Page {number} of the report."]
        size = len(paragraphs[0])
        while size < chars:
            paragraph = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(30, 90)))
            paragraph = paragraph[0].upper() + paragraph[1:] + "."
            paragraphs.append(paragraph)
            size += len(paragraph)
        pages.append("\n".join(paragraphs))
    return pages


# -- measurement -------------------------------------------------------------------------------


def bare_pypdf(data: bytes) -> int:
    """The baseline: pypdf's own extraction of every page, nothing else."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    return sum(len(page.extract_text()) for page in reader.pages)


def ours(data: bytes) -> tuple[int, int]:
    document = extract("report.pdf", "application/pdf", data)
    chunks = chunk(document)
    return document.pages, len(chunks)


@dataclass
class Result:
    bare_s: list[float] = field(default_factory=list)
    ours_s: list[float] = field(default_factory=list)
    chunk_s: list[float] = field(default_factory=list)
    added_s: list[float] = field(default_factory=list)
    chunks: int = 0
    chars: int = 0
    pdf_bytes: int = 0


def measure() -> Result:
    data = make_pdf(page_texts(PAGES, CHARS_PER_PAGE))
    result = Result(pdf_bytes=len(data))
    bare_pypdf(data)  # warm imports and caches for both
    document = extract("report.pdf", "application/pdf", data)
    assert document.pages == PAGES and len(document.sections) == PAGES
    result.chars = sum(len(s.text) for s in document.sections)
    raw = raw_page_texts(data)
    for round_ in range(ROUNDS):
        order = (bare_pypdf, ours) if round_ % 2 == 0 else (ours, bare_pypdf)
        for step in order:
            started = clock()
            step(data)
            took = clock() - started
            (result.bare_s if step is bare_pypdf else result.ours_s).append(took)
        started = clock()  # chunking alone, on the extracted document
        result.chunks = len(chunk(document))
        result.chunk_s.append(clock() - started)
        started = clock()  # all we add to pypdf's page texts: clean, sections, chunks
        added_work(raw)
        result.added_s.append(clock() - started)
    return result


def raw_page_texts(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(io.BytesIO(data), strict=False).pages]


def added_work(raw: list[str]) -> int:
    """What ``extract()`` + ``chunk()`` do with pypdf's page texts, without pypdf's part."""
    sections = tuple(
        Section(text, f"page {n}") for n, text in enumerate(map(clean_text, raw), 1) if text
    )
    document = ExtractedDocument("report.pdf", "pdf", sections, pages=len(raw))
    return len(chunk(document))


def report(result: Result, took: float) -> tuple[str, str]:
    ratios = [b / o for b, o in zip(result.bare_s, result.ours_s, strict=True)]
    ratio = p50(ratios)
    ok = ratio >= TARGET_RATIO
    bare_rate = PAGES / p50(result.bare_s)
    ours_rate = PAGES / p50(result.ours_s)
    chunk_ms = p50(result.chunk_s) * 1000
    added_ms = p50(result.added_s) * 1000
    expected = p50(result.bare_s) / (p50(result.bare_s) + p50(result.added_s))
    summary = markdown_table(
        ["measure", "ours (extract + chunk)", "baseline (bare pypdf)", "ratio", "target", "result"],
        [
            [
                f"pages/s, {PAGES}-page text PDF, p50 of {ROUNDS} rounds",
                f"{ours_rate:,.0f}",
                f"{bare_rate:,.0f}",
                f"{ratio:.2f}×",
                f"≥ {TARGET_RATIO}×",
                verdict(ok),
            ]
        ],
    )
    rows = [
        [str(i + 1), f"{b * 1000:.0f} ms", f"{o * 1000:.0f} ms", f"{b / o:.2f}×"]
        for i, (b, o) in enumerate(zip(result.bare_s, result.ours_s, strict=True))
    ]
    section = f"""
## File extraction (`bench.extraction`)

Measured {machine_info()}.
Reproduce: `.venv/bin/python -m bench.extraction` (this run took {took:.0f} s).

{summary}

A {PAGES}-page PDF made in memory ({result.pdf_bytes / 1024:.0f} KB; about \
{CHARS_PER_PAGE:,} characters of text per page,
Helvetica, Flate-compressed content streams, {result.chars:,} characters extracted in all).
Baseline: `PdfReader(strict=False)` + `page.extract_text()` for every page, nothing else. Ours:
`extract()` (signature check, the same reader, per-page extraction, `clean_text`, one section
per page) then `chunk()` at the defaults (1,200-character windows, 200 overlap:
{result.chunks} chunks). The two run interleaved, alternating which goes first, on the same
bytes; ratio = baseline time / our time per round, so 1.0× means our work on top of pypdf's is
free (a round above 1.0× is run-to-run noise).

{markdown_table(["round", "bare pypdf", "extract + chunk", "ratio"], rows)}

Where the time goes, p50 over the rounds, per page: pypdf's own extraction
{p50(result.bare_s) * 1000 / PAGES:.2f} ms; everything we add to pypdf's page texts
(`clean_text`, sections, `chunk()`) {added_ms * 1000 / PAGES:.0f} µs, of which chunking
{chunk_ms * 1000 / PAGES:.0f} µs. So the added work alone puts the ratio at about
{expected:.3f}×; the rest of the difference, round to round, is noise on this shared machine.
Target: extraction + chunking at ≥ {TARGET_RATIO}× bare pypdf's pages/s:
**{verdict(ok)}** ({ratio:.2f}×).
"""
    compact = summary
    if not ok:
        compact += "\n\nMISSED TARGET (see docs/benchmarks.md)"
    return compact, section


def main() -> None:
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    started = clock()
    result = measure()
    took = clock() - started
    compact, section = report(result, took)
    path = write_section(SECTION, section)
    print(compact)
    print(f"\n{took:.1f} s; written to {path}")


if __name__ == "__main__":
    main()
