"""Summaries of conversations and files that cover all of the input, however long.

The input is a sequence of :class:`Excerpt` (messages with who said them and when, or pieces of
a document with their page or section). A summary that does not fit the model in one call is
made by map-reduce: split into parts that fit, summarize the parts in parallel (bounded), then
combine, recursively if the partial summaries still do not fit. Nothing is silently dropped: a
part that fails even after a retry is named in the summary as not covered.
"""

from __future__ import annotations

from dataclasses import dataclass


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
