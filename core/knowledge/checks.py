"""Checks every knowledge backend makes on what it is given, before it writes or deletes."""

from __future__ import annotations

from collections.abc import Sequence

from core.knowledge.base import FileRecord, StoredChunk


def check_file(
    record: FileRecord,
    chunks: Sequence[StoredChunk],
    embeddings: Sequence[Sequence[float]] | None,
) -> None:
    """Refuse a file whose parts disagree, before anything is written (a caller's mistake)."""
    if not record.scope or not record.file_id:
        raise ValueError("a file record needs a scope and a file id")
    for chunk in chunks:
        if chunk.scope != record.scope or chunk.file_id != record.file_id:
            raise ValueError(
                f"chunk {chunk.index} belongs to {chunk.scope}/{chunk.file_id}, "
                f"not to {record.scope}/{record.file_id}"
            )
    if len({chunk.index for chunk in chunks}) != len(chunks):
        raise ValueError(f"file {record.file_id} has two chunks with the same index")
    if embeddings is None:
        return
    if len(embeddings) != len(chunks):
        raise ValueError(f"{len(embeddings)} embeddings for {len(chunks)} chunks")
    if len({len(vector) for vector in embeddings}) > 1:
        raise ValueError("embeddings of one file must all have the same size")


def workspace_prefix(platform_workspace: str) -> str:
    """``"platform#workspace#"``, the start of every scope in that workspace, from
    ``platform#workspace`` (a trailing ``#`` is fine). Anything else is refused: a removal
    "everywhere" must never reach past one workspace."""
    value = platform_workspace.rstrip("#")
    if value.count("#") != 1 or not all(value.split("#")):
        raise ValueError(f"expected 'platform#workspace', got {platform_workspace!r}")
    return value + "#"
