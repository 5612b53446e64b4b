"""Text hygiene shared by every path that takes text from people, files or storage."""

from __future__ import annotations

import re
import unicodedata

# C0/C1 control characters except tab and newline; DEL; lone surrogates (from bad JSON escapes);
# zero-width and bidi format characters, which can hide text or split a tag.
_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]"
)
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Normalise text for the model and for storage: NFC, ``\\r\\n`` to ``\\n``, no control
    characters or lone surrogates, at most one blank line in a row, no outer whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = unicodedata.normalize("NFC", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def decode_lenient(data: bytes) -> str:
    """Bytes from storage or a file as text; invalid UTF-8 becomes U+FFFD, never an exception."""
    return data.decode("utf-8", errors="replace")


def estimate_tokens(text: str) -> int:
    """A cheap, deliberately generous token estimate (no tokenizer is shipped): about four
    ASCII characters per token, one token per other character (CJK, emoji)."""
    ascii_chars = len(text.encode("ascii", errors="ignore"))
    return ascii_chars // 4 + (len(text) - ascii_chars) + 1


def truncate_to_tokens(text: str, budget: int) -> str:
    """The longest prefix of ``text`` whose estimate fits ``budget``, cut at a word boundary."""
    if estimate_tokens(text) <= budget:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_tokens(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    space = cut.rfind(" ")
    return cut[:space] if space > lo // 2 else cut


def split_message(body: str, limit: int, prefix_len: int) -> tuple[str, str, int]:
    """Split ``body`` to fit ``limit``: returns the head to show, the prefix the next message
    starts with (a reopened code fence, or nothing), and how many characters of the answer
    (excluding the current prefix) the head consumed."""
    room = max(limit - 4, prefix_len + 1)  # leave room to close a code fence
    window = body[:room]
    cut = -1
    for sep in ("\n\n", "\n", ". ", " "):
        at = window.rfind(sep)
        if at > max(prefix_len, room // 2):
            cut = at + len(sep)
            break
    if cut <= prefix_len:
        cut = room
    head = body[:cut]
    tail_prefix = ""
    if head.count("```") % 2 == 1:
        head = head.rstrip("\n") + "\n```"
        tail_prefix = "```\n"
    return head.rstrip(), tail_prefix, cut - prefix_len
