"""Ingestion: bytes of a shared file → extracted, chunked, embedded, indexed in its scope.

Runs in the worker, never on the ack path. All or nothing: a file that fails anywhere leaves no
chunk of itself in the index (the store's ``put_file`` is atomic and runs last). A file shared
again with the same content is not indexed twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.domain import FileRef
from core.files.chunking import chunk
from core.files.extract import extract
from core.files.raw import RawFileStore
from core.files.types import FileTooLarge
from core.knowledge.base import FileRecord, KnowledgeStore, StoredChunk

if TYPE_CHECKING:
    from core.knowledge.embeddings import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ingested:
    record: FileRecord
    already_indexed: bool


class FileIndexer:
    def __init__(
        self,
        store: KnowledgeStore,
        *,
        raw: RawFileStore | None = None,
        embedder: Embedder | None = None,
        max_bytes: int = 25 * 1024 * 1024,
        max_chunks: int = 3000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._max_chunks = max_chunks
        self._store = store
        self._raw = raw
        self._embedder = embedder
        self._max_bytes = max_bytes
        self._clock = clock

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def ingest(self, scope: str, file: FileRef, data: bytes) -> Ingested:
        """Index ``data`` as ``file`` in ``scope``. Raises :class:`core.files.types.FileRejected`
        (with the one line to post) when the file cannot be read."""
        content_hash = hashlib.sha256(data).hexdigest()
        existing = self._store.get_file(scope, file.file_id)
        if existing is not None and existing.content_hash == content_hash:
            log.info("file already indexed", extra={"file_id": file.file_id})
            return Ingested(existing, already_indexed=True)

        document = extract(file.name, file.mime_type, data, max_bytes=self._max_bytes)
        pieces = chunk(document)
        if len(pieces) > self._max_chunks:
            # Within the byte limit but too much text to embed in one worker run: say so.
            raise FileTooLarge(
                f"{len(pieces)} chunks over the {self._max_chunks} limit",
                user_message=(
                    f"I can't read {document.name}: it holds more text than I can take in "
                    f"({len(pieces):,} passages; my limit is {self._max_chunks:,}). "
                    "Share a shorter part of it?"
                ),
            )
        chunks = [
            StoredChunk(
                scope, file.file_id, document.name, p.index, p.location, p.text, file.permalink
            )
            for p in pieces
        ]
        embeddings = self._embedder.embed([c.text for c in chunks]) if self._embedder else None
        record = FileRecord(
            scope=scope,
            file_id=file.file_id,
            file_name=document.name,
            content_hash=content_hash,
            chunks=len(chunks),
            description=document.describe(),
            added_at=self._clock(),
        )
        if self._raw is not None:
            self._raw.put(workspace_of(scope), file.file_id, data)
        self._store.put_file(record, chunks, embeddings)
        log.info(
            "file indexed",
            extra={"file_id": file.file_id, "kind": document.kind, "chunks": len(chunks)},
        )
        return Ingested(record, already_indexed=False)

    def remove(self, scope: str, file_id: str) -> int:
        """The file was unshared from one channel: it stops answering there."""
        return self._store.remove_file(scope, file_id)

    def remove_everywhere(self, platform_workspace: str, file_id: str) -> int:
        """The file was deleted on the platform: every trace of it goes."""
        removed = self._store.remove_file_everywhere(platform_workspace, file_id)
        if self._raw is not None:
            self._raw.delete(platform_workspace, file_id)
        return removed


def workspace_of(scope: str) -> str:
    """``platform#workspace`` of a ``platform#workspace#channel`` scope."""
    return scope.rsplit("#", 1)[0]
