"""Word (.docx) with python-docx: paragraphs and tables in document order, in sections that
start at headings ("Title", "Heading 1" to "Heading 9"); table rows become "a | b | c" lines.

The zip is checked before this reader runs (:func:`core.files.extract.extract` refuses zip
bombs and other Office files); python-docx and lxml are imported when a .docx comes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

from core.files.sections import SectionBuilder
from core.files.types import CorruptFile, EmptyFile, ExtractedDocument

if TYPE_CHECKING:
    from docx.table import Table


def corrupt_docx(shown: str, detail: str) -> CorruptFile:
    return CorruptFile(
        detail,
        user_message=(
            f"I can't read {shown}: the Word file is damaged or not a real .docx. "
            "Open it in Word, save it as .docx again and share that."
        ),
    )


def _is_heading(style_name: str) -> bool:
    lowered = style_name.lower()
    return lowered == "title" or (
        lowered.startswith("heading ") and lowered[8:].isdigit() and 1 <= int(lowered[8:]) <= 9
    )


def read_docx(name: str, shown: str, data: bytes) -> ExtractedDocument:
    import docx  # lxml and python-docx: only when a .docx comes
    from docx.table import Table

    builder = SectionBuilder()
    try:
        document = docx.Document(io.BytesIO(data))
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for line in _table_lines(block):
                    builder.text(line)
                continue
            style = block.style
            style_name = (style.name or "") if style is not None else ""
            if _is_heading(style_name) and block.text.strip():
                builder.heading(block.text.strip(), block.text)
            else:
                builder.text(block.text)
    except Exception as exc:  # python-docx and lxml raise many kinds on bad files
        raise corrupt_docx(shown, type(exc).__name__) from exc
    sections = builder.finish()
    if not sections:
        raise EmptyFile(
            "docx without text",
            user_message=f"I can't read {shown}: the document has no text in it.",
        )
    return ExtractedDocument(name=name, kind="docx", sections=tuple(sections))


def _table_lines(table: Table) -> Iterable[str]:
    for row in table.rows:
        cells: list[str] = []
        previous: object = None
        for cell in row.cells:
            if cell._tc is previous:  # a merged cell repeats across the grid
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        line = " | ".join(c for c in cells if c)
        if line:
            yield line
