"""Downloading a shared file for the worker, with the limits every platform needs.

The caller says which URLs may be fetched (``allowed``); redirects are followed only to such
URLs, so credentials in ``headers`` never travel to a host the platform does not own. The body is
read up to the size limit and no further. Every failure becomes a one-line ``FileRejected``.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message
from typing import IO

from core.domain import FileRef
from core.files.types import DownloadRefused, FileTooLarge

TIMEOUT_SECONDS = 30
MB = 1024 * 1024

UrlCheck = Callable[[str], bool]


def fetch(
    file: FileRef,
    *,
    allowed: UrlCheck,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    refused_hint: str = "",
) -> tuple[bytes, str]:
    """The file's bytes (at most ``max_bytes``) and the response's content type."""
    if file.size > max_bytes:
        raise too_large(file.name, file.size, max_bytes)
    if not file.url or not allowed(file.url):
        raise DownloadRefused(
            "download URL not allowed",
            user_message=f"I can't read {file.name}: there is no download link I can use.",
        )
    opener = urllib.request.build_opener(_AllowedRedirects(allowed))
    # The scheme was checked by ``allowed`` above.
    request = urllib.request.Request(file.url, headers=dict(headers or {}))  # noqa: S310
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            content_type = str(response.headers.get("Content-Type", ""))
            data: bytes = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise DownloadRefused(
            f"download answered HTTP {exc.code}",
            user_message=f"I can't read {file.name}: the download was refused (HTTP {exc.code})."
            + (f" {refused_hint}" if refused_hint else ""),
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DownloadRefused(
            f"download failed: {exc}",
            user_message=f"I can't read {file.name}: the download failed. Share it again?",
        ) from exc
    if len(data) > max_bytes:
        raise too_large(file.name, len(data), max_bytes)
    return data, content_type


def too_large(name: str, size: int, limit: int) -> FileTooLarge:
    return FileTooLarge(
        f"{size} bytes over the {limit} byte limit",
        user_message=(
            f"I can't read {name}: it is {-(-size // MB)} MB and the limit is {limit // MB} MB."
        ),
    )


class _AllowedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, allowed: UrlCheck) -> None:
        self._allowed = allowed

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not self._allowed(newurl):
            return None  # urllib then raises HTTPError: reported as a refused download
        return super().redirect_request(req, fp, code, msg, headers, newurl)
