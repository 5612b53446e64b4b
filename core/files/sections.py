"""Sections that start at headings, shared by the readers of Markdown, HTML and Word.

A section's location is the heading it starts at ("section Installation", at most 80
characters of it), or "section (start)" for text before the first heading.
"""

from __future__ import annotations

import re
from typing import Final

from core.files.types import Section
from core.text import clean_text

_HEADING_CHARS: Final = 80  # a location names at most this much of a heading


def short_heading(heading: str) -> str:
    heading = " ".join(heading.split())
    return heading if len(heading) <= _HEADING_CHARS else heading[: _HEADING_CHARS - 3] + "..."


class SectionBuilder:
    """Collects lines into sections that start at headings.

    A heading with no text under it (a chapter title right before its first subheading) is
    carried into the next section rather than left as a chunk of its own; text before the first
    heading is "section (start)"."""

    def __init__(self) -> None:
        self._location = "section (start)"
        self._lines: list[str] = []
        self._carried: list[str] = []
        self._has_body = False
        self._sections: list[Section] = []

    def heading(self, title: str, line: str) -> None:
        self._flush()
        self._location = f"section {short_heading(title)}"
        self._lines = [line]

    def text(self, line: str) -> None:
        self._lines.append(line)
        if not self._has_body and line.strip():
            self._has_body = True

    def _flush(self) -> None:
        if self._has_body:
            text = clean_text("\n".join(self._carried + self._lines))
            if text:
                self._sections.append(Section(text, self._location))
            self._carried = []
        else:
            self._carried += [line for line in self._lines if line.strip()]
        self._lines = []
        self._has_body = False

    def finish(self) -> list[Section]:
        self._flush()
        if self._carried:  # headings at the very end, with nothing under them
            text = clean_text("\n".join(self._carried))
            if text:
                self._sections.append(Section(text, self._location))
            self._carried = []
        return self._sections


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def markdown_sections(text: str) -> list[Section]:
    builder = SectionBuilder()
    fence = ""
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
        elif opened:
            fence = opened.group(1)
        else:
            heading = _ATX.match(line)
            if heading and heading.group(2).strip("# \t"):
                builder.heading(heading.group(2).strip(), line)
                continue
        builder.text(line)
    return builder.finish()
