"""Text out of a shared file, with where each piece came from.

``extract(name, mime_type, data)`` returns an :class:`ExtractedDocument` whose sections carry a
location a citation can show ("page 3", "rows 51-100", "section Installation"), or raises a
:class:`FileRejected` subclass whose ``user_message`` is one line for the person: it names the
file, says what is wrong and what to do. Library exception text never reaches that line; it is
kept as the exception's cause for the log.

Readers: pypdf for PDF (page by page), python-docx for Word, the standard library for text,
Markdown, CSV and HTML. Every section's text goes through :func:`core.text.clean_text`.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import re
import zipfile
from collections.abc import Iterable
from html.parser import HTMLParser
from itertools import zip_longest
from typing import TYPE_CHECKING, Final

from core.files.types import (
    CorruptFile,
    DecompressionBomb,
    EmptyFile,
    EncryptedFile,
    ExtractedDocument,
    FileTooLarge,
    NoTextLayer,
    Section,
    UnsupportedFileType,
)
from core.text import clean_text, decode_lenient

if TYPE_CHECKING:
    from docx.table import Table

log = logging.getLogger(__name__)

MB: Final = 1024 * 1024
DEFAULT_MAX_BYTES: Final = 25 * MB

# A .docx is a zip: these bound what opening one may inflate. Real documents are far below
# them (a few MB, tens to a few hundred entries, XML compressing 5-20×).
MAX_DOCX_UNCOMPRESSED_BYTES: Final = 100 * MB
MAX_DOCX_ENTRIES: Final = 2000
MAX_DOCX_RATIO: Final = 100
DOCX_RATIO_MIN_BYTES: Final = 1 * MB  # a tiny, very repetitive part (styles) is not a bomb

CSV_ROWS_PER_SECTION: Final = 50
CSV_SECTION_CHARS: Final = 2000  # a section also ends here, so a location stays precise
_HEADING_CHARS: Final = 80  # a location names at most this much of a heading

DOCX_MIME: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SUPPORTED: Final = "PDF, Word (.docx), plain text, Markdown, CSV and HTML"

_BY_EXTENSION: Final = {
    ".pdf": "pdf",
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".csv": "csv",
    ".tsv": "csv",
    ".html": "html",
    ".htm": "html",
    ".docx": "docx",
}
_BY_MIME: Final = {
    "application/pdf": "pdf",
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "csv",
    "text/html": "html",
    "application/xhtml+xml": "html",
    DOCX_MIME: "docx",
}
# Types people often share that we cannot read, with the advice that helps.
_ADVICE: Final = {
    ".doc": "Save it as .docx (Word: File > Save As) and share that.",
    ".rtf": "Save it as .docx or PDF and share that.",
    ".odt": "Save it as .docx or PDF and share that.",
    ".pages": "Export it as PDF or .docx and share that.",
}
_ZIP_KINDS: Final = {
    "xl/workbook.xml": "an Excel workbook",
    "ppt/presentation.xml": "a PowerPoint presentation",
}
_TEXT_KINDS: Final = frozenset({"text", "markdown", "csv", "html"})


def extract(
    name: str, mime_type: str, data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> ExtractedDocument:
    """Read ``data`` (the file called ``name``, of type ``mime_type`` as the platform says).

    The kind comes from the content's signature where it has one (``%PDF``, a zip), else from
    the extension, else from the MIME type. Raises a :class:`FileRejected` subclass with a
    one-line ``user_message`` when the file cannot be read.
    """
    shown = display_name(name)
    if len(data) > max_bytes:
        raise FileTooLarge(
            f"{len(data)} bytes > limit {max_bytes}",
            user_message=(
                f"I can't read {shown}: it is {_size(len(data), round_up=True)}, over the "
                f"{_size(max_bytes)} limit. Share a smaller file or split it into parts."
            ),
        )
    if not data:
        raise EmptyFile(
            "0 bytes",
            user_message=(
                f"I can't read {shown}: the file is empty (0 bytes). "
                "Check that it saved properly and share it again."
            ),
        )
    kind = detect_kind(name, mime_type, data)
    if kind == "pdf":
        return _extract_pdf(name, shown, data)
    if kind == "docx":
        return _extract_docx(name, shown, data)
    text = _decode(data)
    if kind == "csv":
        return _extract_csv(name, shown, text)
    if kind == "markdown":
        sections = _markdown_sections(text)
    elif kind == "html":
        sections = _html_sections(shown, text)
    else:
        cleaned = clean_text(text)
        sections = [Section(cleaned, "text")] if cleaned else []
    if not sections:
        raise EmptyFile(
            "no text",
            user_message=(
                f"I can't read {shown}: it has no text in it. Check the file and share it again."
            ),
        )
    return ExtractedDocument(name=name, kind=kind, sections=tuple(sections))


# -- what the file is --------------------------------------------------------------------------


def detect_kind(name: str, mime_type: str, data: bytes) -> str:
    """One of "pdf", "docx", "text", "markdown", "csv", "html"; raises what cannot be read."""
    shown = display_name(name)
    extension = _extension(name)
    mime = mime_type.split(";", 1)[0].strip().lower()
    claimed = _BY_EXTENSION.get(extension) or _BY_MIME.get(mime)
    if b"%PDF-" in data[:1024]:  # the spec lets junk precede the header
        return "pdf"
    if claimed == "pdf":
        raise CorruptFile(
            "no %PDF header",
            user_message=(
                f"I can't read {shown}: it is not a valid PDF (the content is something else). "
                "Export it to PDF again and share that."
            ),
        )
    is_zip = data.startswith(b"PK\x03\x04")
    if claimed == "docx" or (is_zip and mime == DOCX_MIME):
        if not is_zip:
            raise _corrupt_docx(shown, "not a zip")
        return "docx"
    if claimed is None or is_zip:
        what = f"{extension} files are" if extension else "this type of file is"
        if is_zip and claimed is not None:
            what = "zip archives are"
        advice = _ADVICE.get(extension, "")
        raise UnsupportedFileType(
            f"extension {extension!r}, mime {mime!r}, zip={is_zip}",
            user_message=(
                f"I can't read {shown}: {what} not supported yet. "
                f"{advice + ' ' if advice else ''}I can read {SUPPORTED} files."
            ),
        )
    if claimed in _TEXT_KINDS and _looks_binary(data):
        raise UnsupportedFileType(
            "binary content",
            user_message=(
                f"I can't read {shown}: it holds binary data, not text. "
                f"I can read {SUPPORTED} files."
            ),
        )
    return claimed


def display_name(name: str) -> str:
    """The file's name as one short line, fit to quote in a message."""
    shown = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", name.rsplit("/", 1)[-1]).split())
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return shown or "this file"


def _extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1].lower()
    dot = base.rfind(".")
    return base[dot:] if dot > 0 else ""


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    return b"\x00" in head


def _size(size: int, *, round_up: bool = False) -> str:
    """A size as "25 MB", "26.1 MB", "300 KB" or "10 bytes". Rounded up, a file just over a
    limit never reads as equal to it."""
    for unit, name in ((MB, "MB"), (1024, "KB")):
        if size >= unit:
            value = math.ceil(size * 10 / unit) / 10 if round_up else size / unit
            return f"{value:.1f}".removesuffix(".0") + f" {name}"
    return f"{size} bytes"


def _decode(data: bytes) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM; a file with many invalid UTF-8 bytes is taken as
    Windows-1252 (what spreadsheets and old editors write); a few bad bytes become U+FFFD."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lenient = decode_lenient(data)
    if lenient.count("\ufffd") * 200 <= len(lenient):  # at most 0.5% damaged: still UTF-8
        return lenient
    return data.decode("cp1252", errors="replace")


def _short(heading: str) -> str:
    heading = " ".join(heading.split())
    return heading if len(heading) <= _HEADING_CHARS else heading[: _HEADING_CHARS - 3] + "..."


# -- PDF ---------------------------------------------------------------------------------------


def _extract_pdf(name: str, shown: str, data: bytes) -> ExtractedDocument:
    from pypdf import PasswordType, PdfReader  # ~0.2 s of imports: only when a PDF comes
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    encrypted = EncryptedFile(
        "password required",
        user_message=(
            f"I can't read {shown}: it is password-protected. Share a copy without a password."
        ),
    )
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        # pypdf has already tried the empty user password (owner-only "protection" opens).
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise encrypted
        pages = reader.pages
        page_count = len(pages)
    except EncryptedFile:
        raise
    except FileNotDecryptedError as exc:
        raise encrypted from exc
    except DependencyError as exc:  # AES-256 without pypdf's crypto extra
        raise _unsupported_encryption(shown) from exc
    except PyPdfError as exc:
        raise _corrupt_pdf(shown, type(exc).__name__) from exc
    except Exception as exc:  # pypdf raises plain errors on damaged files too
        raise _corrupt_pdf(shown, type(exc).__name__) from exc
    if page_count == 0:
        raise _corrupt_pdf(shown, "no pages")

    sections: list[Section] = []
    failed: list[int] = []
    for number in range(1, page_count + 1):
        try:
            text = pages[number - 1].extract_text()
        except DependencyError as exc:  # AES-128 content without pypdf's crypto extra
            raise _unsupported_encryption(shown) from exc
        except Exception as exc:  # noqa: BLE001 - one bad page must not cost the others
            failed.append(number)
            log.warning(
                "pdf page unreadable",
                extra={"page": number, "error": type(exc).__name__},
            )
            continue
        text = clean_text(text)
        if text:
            sections.append(Section(text, f"page {number}"))
    if not sections:
        if failed:
            raise _corrupt_pdf(shown, f"{len(failed)} of {page_count} pages failed")
        raise NoTextLayer(
            f"{page_count} pages, no text",
            user_message=(
                f"I can't read {shown}: it has no text layer (it looks scanned), and I can't "
                "read images yet (no OCR). Share a version with selectable text."
            ),
        )
    return ExtractedDocument(name=name, kind="pdf", sections=tuple(sections), pages=page_count)


def _unsupported_encryption(shown: str) -> EncryptedFile:
    return EncryptedFile(
        "encryption needs a missing dependency",
        user_message=(
            f"I can't read {shown}: it is encrypted in a way I can't open. "
            "Share a copy without a password or encryption."
        ),
    )


def _corrupt_pdf(shown: str, detail: str) -> CorruptFile:
    return CorruptFile(
        detail,
        user_message=(
            f"I can't read {shown}: the PDF is damaged or incomplete. "
            "Check that it opens, then share it again (or export it to PDF anew)."
        ),
    )


# -- Word --------------------------------------------------------------------------------------


def _corrupt_docx(shown: str, detail: str) -> CorruptFile:
    return CorruptFile(
        detail,
        user_message=(
            f"I can't read {shown}: the Word file is damaged or not a real .docx. "
            "Open it in Word, save it as .docx again and share that."
        ),
    )


def _check_docx_zip(shown: str, data: bytes) -> None:
    """Refuse what would inflate far beyond a document before python-docx opens it.

    zipfile never yields more than a member's declared size (it stops there and fails the CRC),
    so the sizes in the central directory bound the work, even when they lie."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise _corrupt_docx(shown, f"zip: {type(exc).__name__}") from exc
    bomb_message = (
        f"I can't read {shown}: it would unpack to far more data than a document holds "
        "(it looks like a zip bomb), so I didn't open it. If it is a real document, "
        "save it as PDF and share that."
    )
    if len(infos) > MAX_DOCX_ENTRIES:
        raise DecompressionBomb(f"{len(infos)} entries", user_message=bomb_message)
    total = sum(info.file_size for info in infos)
    if total > MAX_DOCX_UNCOMPRESSED_BYTES:
        raise DecompressionBomb(f"{total} bytes uncompressed", user_message=bomb_message)
    for info in infos:
        if info.file_size > DOCX_RATIO_MIN_BYTES and info.file_size > MAX_DOCX_RATIO * max(
            info.compress_size, 1
        ):
            raise DecompressionBomb(
                f"member ratio {info.file_size // max(info.compress_size, 1)}",
                user_message=bomb_message,
            )
    names = {info.filename for info in infos}
    if "word/document.xml" not in names:
        for part, what in _ZIP_KINDS.items():
            if part in names:
                raise UnsupportedFileType(
                    f"zip holds {part}",
                    user_message=(
                        f"I can't read {shown}: it is {what}, not a Word document, and I "
                        f"can't read those yet. I can read {SUPPORTED} files."
                    ),
                )
        raise _corrupt_docx(shown, "no word/document.xml")


def _is_heading(style_name: str) -> bool:
    lowered = style_name.lower()
    return lowered == "title" or (
        lowered.startswith("heading ") and lowered[8:].isdigit() and 1 <= int(lowered[8:]) <= 9
    )


def _extract_docx(name: str, shown: str, data: bytes) -> ExtractedDocument:
    _check_docx_zip(shown, data)
    import docx  # lxml and python-docx: only when a .docx comes
    from docx.table import Table

    builder = _SectionBuilder()
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
        raise _corrupt_docx(shown, type(exc).__name__) from exc
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


# -- sections by heading (Markdown, HTML, Word) ------------------------------------------------


class _SectionBuilder:
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
        self._location = f"section {_short(title)}"
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


def _markdown_sections(text: str) -> list[Section]:
    builder = _SectionBuilder()
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


# -- HTML --------------------------------------------------------------------------------------

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
        self.builder = _SectionBuilder()
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


def _html_sections(shown: str, text: str) -> list[Section]:
    parser = _HtmlText()
    try:
        parser.feed(text)
        return parser.finish()
    except Exception as exc:  # html.parser is lenient: anything left is damage
        raise CorruptFile(
            type(exc).__name__,
            user_message=f"I can't read {shown}: the HTML could not be parsed. Share it as PDF.",
        ) from exc


# -- CSV ---------------------------------------------------------------------------------------


def _delimiter(text: str) -> str:
    sample = text[:32768]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rfind("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return "\t" if sample.count("\t") > sample.count(",") else ","


def _extract_csv(name: str, shown: str, text: str) -> ExtractedDocument:
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
