"""The knowledge store contract. Both backends pass the same tests."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from core.domain import Passage


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """One chunk as indexed. ``scope`` is :attr:`core.domain.ConversationKey.scope`
    (platform#workspace#channel): the only place its text may ever be retrieved."""

    scope: str
    file_id: str
    file_name: str
    index: int
    location: str
    text: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class FileRecord:
    scope: str
    file_id: str
    file_name: str
    content_hash: str
    chunks: int
    description: str  # e.g. "report.pdf (12 pages)"
    added_at: float


class KnowledgeStore(abc.ABC):
    @abc.abstractmethod
    def put_file(
        self,
        record: FileRecord,
        chunks: Sequence[StoredChunk],
        embeddings: Sequence[Sequence[float]] | None = None,
    ) -> None:
        """Index a file's chunks in its scope, replacing any earlier version of that file there.
        All or nothing: after a failure, no chunk of this version is searchable."""

    @abc.abstractmethod
    def search(
        self,
        scope: str,
        query: str,
        *,
        limit: int,
        query_embedding: Sequence[float] | None = None,
    ) -> list[Passage]:
        """The best ``limit`` passages in ``scope`` only, best first. Source ids are S1, S2, ...
        in rank order; ``location`` and ``title`` say where each passage came from."""

    @abc.abstractmethod
    def get_file(self, scope: str, file_id: str) -> FileRecord | None: ...

    @abc.abstractmethod
    def list_files(self, scope: str) -> list[FileRecord]:
        """Files in a scope, newest first."""

    @abc.abstractmethod
    def file_chunks(self, scope: str, file_id: str) -> list[StoredChunk]:
        """Every chunk of one file, in order (summaries read whole files)."""

    @abc.abstractmethod
    def remove_file(self, scope: str, file_id: str) -> int:
        """Remove a file's chunks and record from one scope; returns the chunks removed."""

    @abc.abstractmethod
    def remove_file_everywhere(self, platform_workspace: str, file_id: str) -> int:
        """Remove a file from every scope of one workspace (``platform#workspace``), for
        platform deletions that do not say which channels the file was in."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""
