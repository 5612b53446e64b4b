"""File records: the small metadata store beside the S3 Vectors knowledge backend.

S3 Vectors keeps one vector per chunk and nothing else; a file record says which of a file's
vectors are current. One record per (scope, file): the :class:`FileRecord`, the ``version``
its vectors were written under, and how many there are. The vector keys are derived from
those (:func:`core.knowledge.s3vectors.vector_key`), so no list of keys is stored.

One base here, one module per backend: :mod:`core.knowledge.dynamodb_records` (the AWS one).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import StoreError
from core.knowledge.base import FileRecord


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """A file's record and where its vectors are: ``vectors`` keys of ``version``."""

    record: FileRecord
    version: str
    vectors: int


class RecordConflict(StoreError):
    """The file's record changed while a new version was being written (a concurrent put)."""

    cause = "record_conflict"


class FileRecords(abc.ABC):
    """One :class:`IndexedFile` per (scope, file)."""

    @abc.abstractmethod
    def get(self, scope: str, file_id: str) -> IndexedFile | None: ...

    @abc.abstractmethod
    def in_scope(self, scope: str) -> list[IndexedFile]:
        """Every file of a scope, in no particular order."""

    @abc.abstractmethod
    def find(self, platform_workspace: str, file_id: str) -> list[IndexedFile]:
        """The file in every scope of one workspace (``platform#workspace``)."""

    @abc.abstractmethod
    def versions(self, scope: str, file_ids: Sequence[str]) -> dict[str, str]:
        """The current version of each of these files that has a record in ``scope``."""

    @abc.abstractmethod
    def commit(self, entry: IndexedFile, *, replacing: str | None) -> None:
        """Store ``entry`` if the file's current version is still ``replacing`` (``None``: no
        record yet); otherwise raise :class:`RecordConflict` and change nothing."""

    @abc.abstractmethod
    def delete(self, scope: str, file_id: str, version: str) -> bool:
        """Delete the record if it still names ``version``; ``False`` if it did not."""
