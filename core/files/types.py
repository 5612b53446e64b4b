"""What extraction produces, and the readable errors it raises."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ChatbotError


@dataclass(frozen=True, slots=True)
class Section:
    """A piece of a document with where it is: ``location`` is what a citation shows
    ("page 3", "rows 2-41", "section Installation")."""

    text: str
    location: str


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    name: str
    kind: str  # "pdf", "text", "markdown", "csv", "html", "docx"
    sections: tuple[Section, ...]
    pages: int = 0  # PDFs
    rows: int = 0  # CSVs

    def describe(self) -> str:
        """The one line the bot posts when a file is ready, e.g. "report.pdf (12 pages)"."""
        if self.pages:
            size = f"{self.pages} page{'s' if self.pages != 1 else ''}"
        elif self.rows:
            size = f"{self.rows} row{'s' if self.rows != 1 else ''}"
        else:
            size = f"{len(self.sections)} section{'s' if len(self.sections) != 1 else ''}"
        return f"{self.name} ({size})"


@dataclass(frozen=True, slots=True)
class ChunkText:
    """A retrievable piece of a document: overlapping windows that keep their location."""

    index: int
    text: str
    location: str


class FileRejected(ChatbotError):
    """The file cannot be read; ``user_message`` is the one line posted in the thread."""

    cause = "file_rejected"


class FileTooLarge(FileRejected):
    cause = "file_too_large"


class EmptyFile(FileRejected):
    cause = "file_empty"


class EncryptedFile(FileRejected):
    cause = "file_encrypted"


class CorruptFile(FileRejected):
    cause = "file_corrupt"


class NoTextLayer(FileRejected):
    cause = "file_no_text"


class UnsupportedFileType(FileRejected):
    cause = "file_unsupported"


class DecompressionBomb(FileRejected):
    cause = "file_decompression_bomb"


class DownloadRefused(FileRejected):
    cause = "file_download_refused"
