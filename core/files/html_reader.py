"""HTML with the standard library's parser: visible text only (no scripts, styles or head),
blocks as lines, table cells as "a | b" lines, list items as "- " lines, and sections that
start at the h1-h6 headings.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Final

from core.files.sections import SectionBuilder
from core.files.types import CorruptFile, Section

_SKIPPED_TAGS: Final = frozenset({"script", "style", "noscript", "template", "head", "svg"})
_BLOCK_TAGS: Final = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
        "caption",
    }
)
_HEADING_TAGS: Final = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_SPACES = re.compile(r"\s+")


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = SectionBuilder()
        self._parts: list[str] = []
        self._skip = 0
        self._heading: list[str] | None = None
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip += 1
        elif tag == "body":
            self._skip = 0  # a <head> that was never closed
        elif tag in _HEADING_TAGS:
            self._end_heading()
            self._flush_lines()
            self._heading = []
        elif tag in ("td", "th"):
            self._parts.append("\t")
        elif tag == "li":
            self._parts.append("\n- ")
        elif tag in _BLOCK_TAGS:
            self._end_heading()  # a heading left open ends where the next block starts
            self._parts.append("\n")
        if tag == "pre":
            self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self._parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _HEADING_TAGS:
            self._end_heading()
        elif tag in _BLOCK_TAGS:
            self._parts.append("\n")
        if tag == "pre":
            self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._heading is not None:
            self._heading.append(data)
        elif self._pre:
            self._parts.append(data.replace("\t", "    "))
        else:
            self._parts.append(_SPACES.sub(" ", data))

    def _end_heading(self) -> None:
        if self._heading is None:
            return
        title = " ".join("".join(self._heading).split())
        self._heading = None
        if title:
            self.builder.heading(title, title)

    def _flush_lines(self) -> None:
        for raw in "".join(self._parts).split("\n"):
            cells = [" ".join(cell.split()) for cell in raw.split("\t")]
            line = " | ".join(cell for cell in cells if cell)
            if line:
                self.builder.text(line)
        self._parts = []

    def finish(self) -> list[Section]:
        self.close()
        self._end_heading()
        self._flush_lines()
        return self.builder.finish()


def html_sections(shown: str, text: str) -> list[Section]:
    parser = _HtmlText()
    try:
        parser.feed(text)
        return parser.finish()
    except Exception as exc:  # html.parser is lenient: anything left is damage
        raise CorruptFile(
            type(exc).__name__,
            user_message=f"I can't read {shown}: the HTML could not be parsed. Share it as PDF.",
        ) from exc
