"""Overlapping windows over a document's sections, each keeping its section's location.

A chunk never spans two sections, so its location ("page 3", "rows 51-100") is exact. Within a
section, a window ends at the last paragraph break, else line break, else sentence end, else
space in the second half of the window, and the next window starts about ``overlap_chars``
before that end, at a word boundary. A tail too small to stand on its own joins the chunk
before it. Work is linear in the text: every search is bounded by one window.
"""

from __future__ import annotations

import re
from typing import Final

from core.files.types import ChunkText, ExtractedDocument

_SPACE_RUN = re.compile(r"\s+")
_LEADING_SPACE = re.compile(r"\s*")
_SENTENCE_ENDS: Final = (". ", "? ", "! ", ".\n", "?\n", "!\n", "; ")


def chunk(
    doc: ExtractedDocument, *, target_chars: int = 1200, overlap_chars: int = 200
) -> list[ChunkText]:
    """The document's chunks, indexed 0..n-1 in document order.

    Non-final chunks of a section are between ``target_chars // 2`` and ``target_chars``
    characters; a section's last chunk may reach ``target_chars + target_chars // 4`` (a small
    tail merged in). Consecutive chunks of one section share at most ``overlap_chars``.
    """
    if target_chars < 20:
        raise ValueError("target_chars must be at least 20")
    if not 0 <= overlap_chars < target_chars // 2:
        raise ValueError("overlap_chars must be at least 0 and less than half of target_chars")
    chunks: list[ChunkText] = []
    for section in doc.sections:
        for text in split_text(section.text, target_chars, overlap_chars):
            chunks.append(ChunkText(len(chunks), text, section.location))
    return chunks


def split_text(text: str, target: int, overlap: int) -> list[str]:
    """``text`` as overlapping windows (see :func:`chunk`); whitespace-only pieces are dropped."""
    return [text[start:end] for start, end in window_spans(text, target, overlap)]


def window_spans(text: str, target: int, overlap: int) -> list[tuple[int, int]]:
    """Where each window of :func:`split_text` lies in ``text``, outer whitespace excluded."""
    length = len(text)
    tail = target // 4  # new text shorter than this joins the chunk before it
    spans: list[tuple[int, int]] = []
    start = 0
    while start < length:
        if length - start <= target + tail:
            end = length
        else:
            end = _cut(text, start + target // 2, start + target)
            if length - end < tail:
                end = length
        window = text[start:end]
        stripped = window.strip()
        if stripped:
            first = start + len(window) - len(window.lstrip())
            spans.append((first, first + len(stripped)))
        if end >= length:
            break
        start = _next_start(text, start, end, overlap)
    return spans


def _cut(text: str, low: int, high: int) -> int:
    """Where a window ending by ``high`` should end: the best boundary after ``low``."""
    at = text.rfind("\n\n", low, high)
    if at != -1:
        return at
    at = text.rfind("\n", low, high)
    if at != -1:
        return at
    best = max(text.rfind(mark, low, high + 1) for mark in _SENTENCE_ENDS)
    if best != -1:
        return best + 1  # keep the punctuation
    at = text.rfind(" ", low, high)
    if at != -1:
        return at
    return high  # one very long word: cut it


def _next_start(text: str, start: int, end: int, overlap: int) -> int:
    """About ``overlap`` characters before ``end``, moved forward to the start of a word; always
    after ``start``."""
    begin = max(end - overlap, start + 1)
    if begin < end and not text[begin - 1].isspace():
        space = _SPACE_RUN.search(text, begin, end)
        # No space in the overlap (a very long word): start mid-word rather than lose text.
        begin = space.end() if space else begin
    else:
        match = _LEADING_SPACE.match(text, begin, end)
        begin = match.end() if match else begin
    return begin
