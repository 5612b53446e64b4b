"""CSV and TSV: each row a "column: value; ..." line, in sections of rows located by number.

The delimiter is sniffed (comma, semicolon, tab or bar). A section ends at 50 rows or about
2,000 characters, so that a location ("rows 51-100") stays precise.
"""

from __future__ import annotations

import csv
import io
from itertools import zip_longest
from typing import Final

from core.files.types import CorruptFile, EmptyFile, ExtractedDocument, Section
from core.text import clean_text

CSV_ROWS_PER_SECTION: Final = 50
CSV_SECTION_CHARS: Final = 2000  # a section also ends here, so a location stays precise


def _delimiter(text: str) -> str:
    sample = text[:32768]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rfind("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return "\t" if sample.count("\t") > sample.count(",") else ","


def read_csv(name: str, shown: str, text: str) -> ExtractedDocument:
    """Rows as "column: value; ..." lines (each row readable on its own, in any chunk), grouped
    into sections of at most 50 rows, located by data row number (1 = the row under the
    header). Blank rows are skipped and not counted."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    sections: list[Section] = []
    header: list[str] | None = None
    lines: list[str] = []
    size = 0
    first = row_number = 0
    try:
        for record in reader:
            if not any(value.strip() for value in record):
                continue
            if header is None:
                header = [" ".join(h.split()) or f"column {i}" for i, h in enumerate(record, 1)]
                continue
            row_number += 1
            if not lines:
                first = row_number
            line = "; ".join(
                f"{column or f'column {i}'}: {' '.join(value.split())}"
                for i, (column, value) in enumerate(zip_longest(header, record), 1)
                if value and value.strip()
            )
            lines.append(line)
            size += len(line) + 1
            if len(lines) >= CSV_ROWS_PER_SECTION or size >= CSV_SECTION_CHARS:
                sections.append(_csv_section(lines, first, row_number))
                lines, size = [], 0
    except csv.Error as exc:
        raise CorruptFile(
            f"csv line {reader.line_num}: {exc}",
            user_message=(
                f"I can't read {shown}: it is not valid CSV (a problem near line "
                f"{reader.line_num}). Check the file and share it again."
            ),
        ) from exc
    if lines:
        sections.append(_csv_section(lines, first, row_number))
    sections = [section for section in sections if section.text]
    if not sections:
        raise EmptyFile(
            "csv without data rows",
            user_message=f"I can't read {shown}: it has a header row but no data rows.",
        )
    return ExtractedDocument(name=name, kind="csv", sections=tuple(sections), rows=row_number)


def _csv_section(lines: list[str], first: int, last: int) -> Section:
    location = f"row {first}" if first == last else f"rows {first}-{last}"
    return Section(clean_text("\n".join(lines)), location)
