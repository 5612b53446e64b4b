"""PDF, page by page, with pypdf: each page with text is a section located "page N".

A password-protected file, a damaged one and one with no text layer (scanned) are each
refused with their own one-line reason; one unreadable page costs only that page. pypdf is
imported when a PDF comes (about 0.2 s of imports), never before.
"""

from __future__ import annotations

import io
import logging

from core.files.types import CorruptFile, EncryptedFile, ExtractedDocument, NoTextLayer, Section
from core.text import clean_text

logger = logging.getLogger(__name__)


def read_pdf(name: str, shown: str, data: bytes) -> ExtractedDocument:
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
            logger.warning(
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
