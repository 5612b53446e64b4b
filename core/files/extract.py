"""Text out of a shared file, with where each piece came from.

``extract(name, mime_type, data)`` returns an :class:`ExtractedDocument` whose sections carry a
location a citation can show ("page 3", "rows 51-100", "section Installation"), or raises a
:class:`FileRejected` subclass whose ``user_message`` is one line for the person: it names the
file, says what is wrong and what to do. Library exception text never reaches that line; it is
kept as the exception's cause for the log.

This module decides what a file is and whether it is safe to open (size, emptiness, kind,
encoding, a zip bomb posing as .docx); one reader per format then reads it:
:mod:`~core.files.pdf_reader` (pypdf, page by page), :mod:`~core.files.word_reader`
(python-docx), :mod:`~core.files.html_reader`, :mod:`~core.files.csv_reader` and
:mod:`~core.files.sections` (Markdown; the headings every sectioned format shares). Every
section's text goes through :func:`core.text.clean_text`.
"""

from __future__ import annotations

import codecs
import io
import math
import re
import zipfile
from typing import Final

from core.files.csv_reader import read_csv
from core.files.html_reader import html_sections
from core.files.pdf_reader import read_pdf
from core.files.sections import markdown_sections
from core.files.types import (
    CorruptFile,
    DecompressionBomb,
    EmptyFile,
    ExtractedDocument,
    FileTooLarge,
    Section,
    UnsupportedFileType,
)
from core.files.word_reader import corrupt_docx, read_docx
from core.text import clean_text, decode_lenient

MB: Final = 1024 * 1024
DEFAULT_MAX_BYTES: Final = 25 * MB

# A .docx is a zip: these bound what opening one may inflate. Real documents are far below
# them (a few MB, tens to a few hundred entries, XML compressing 5-20×).
MAX_DOCX_UNCOMPRESSED_BYTES: Final = 100 * MB
MAX_DOCX_ENTRIES: Final = 2000
MAX_DOCX_RATIO: Final = 100
DOCX_RATIO_MIN_BYTES: Final = 1 * MB  # a tiny, very repetitive part (styles) is not a bomb

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
        return read_pdf(name, shown, data)
    if kind == "docx":
        _check_docx_zip(shown, data)
        return read_docx(name, shown, data)
    text = _decode(data)
    if kind == "csv":
        return read_csv(name, shown, text)
    if kind == "markdown":
        sections = markdown_sections(text)
    elif kind == "html":
        sections = html_sections(shown, text)
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
            raise corrupt_docx(shown, "not a zip")
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


def _check_docx_zip(shown: str, data: bytes) -> None:
    """Refuse what would inflate far beyond a document before python-docx opens it.

    zipfile never yields more than a member's declared size (it stops there and fails the CRC),
    so the sizes in the central directory bound the work, even when they lie."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise corrupt_docx(shown, f"zip: {type(exc).__name__}") from exc
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
        raise corrupt_docx(shown, "no word/document.xml")
