"""The embedded knowledge backend: one SQLite file (or ``:memory:``), no account needed.

Layout: ``knowledge_files`` holds one row per (scope, file); ``knowledge_chunks`` holds the
chunks (and, when an embedding model is configured, each chunk's vector as a float32 BLOB);
``knowledge_chunks_fts`` is an FTS5 index over chunk text with *external content*: it stores
only the index, and triggers on ``knowledge_chunks`` keep it in step. Deletes stay correct
because the delete trigger hands FTS5 the row's original values, which is what an
external-content table needs to remove its postings.

Search:

- **Words** (always): the person's text becomes a safe FTS5 query (:mod:`core.knowledge.fts`:
  every term quoted, every operator and punctuation mark dropped, terms OR-ed so partial
  matches count) ranked by ``bm25()``. English stop words are dropped; text with nothing else
  (``what is it?``) does not search words at all, since every chunk would match and none
  would match better.
- **Scope**: the FTS index has a second column holding one token per chunk, the scope's tag
  (``k`` + 24 hex digits of its SHA-256), and every query is ``scope_tag : "<tag>" AND text :
  (...)``. FTS5 then ranks and limits only that scope's chunks, and a search in an empty scope
  costs nothing however large the store. The tag is for speed, not for safety: the few rows
  it returns are joined to ``knowledge_chunks`` and kept only if their ``scope`` is exactly the
  scope asked for, so ``C1`` never sees ``C10``'s chunks even if two tags ever collided. (BM25's
  term weights are computed over the whole index, every scope together; only the order of a
  scope's own chunks depends on them.)
- **Vectors** (when a query embedding is given and the scope has chunk vectors of the same
  size): cosine similarity with numpy over the scope's vectors, fused with the word ranking by
  reciprocal rank fusion, so exact terms (names, ids) and chunks indexed before the embedding
  model was configured still count (:mod:`core.knowledge.vectors`). A scope's vectors are
  loaded once and cached; the cache is dropped for a scope on every write to it, and entirely
  when another connection writes to the file (``PRAGMA data_version``). numpy is imported
  only on this path.

Every write of a file is one transaction (old chunks and record out, new ones in), so a failure
leaves the previous version searchable and nothing of the new one.

One connection serves every thread, guarded by a lock, like the history store.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from core.domain import Passage, SourceCitation
from core.errors import StoreError
from core.knowledge.base import FileRecord, KnowledgeStore, StoredChunk
from core.knowledge.checks import check_file, workspace_prefix
from core.knowledge.fts import fts_query, query_terms, scope_tag
from core.knowledge.vectors import (
    ScopeVectors,
    VectorCache,
    fuse,
    nearest,
    to_blob,
    unit_matrix,
    unit_query,
)
from core.sqlite import open_database

# The FTS helpers are named here too: callers (bench/retrieval.py) import them from this module.
__all__ = ["SqliteKnowledgeStore", "fts_query", "query_terms", "scope_tag"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS knowledge_files (
    scope        TEXT NOT NULL,
    file_id      TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunks       INTEGER NOT NULL,
    description  TEXT NOT NULL,
    added_at     REAL NOT NULL,
    indexed_at   REAL NOT NULL,
    PRIMARY KEY (scope, file_id)
);
CREATE TABLE IF NOT EXISTS knowledge_chunks (
    id         INTEGER PRIMARY KEY,
    scope      TEXT NOT NULL,
    file_id    TEXT NOT NULL,
    file_name  TEXT NOT NULL,
    idx        INTEGER NOT NULL,
    location   TEXT NOT NULL,
    text       TEXT NOT NULL,
    url        TEXT NOT NULL,
    scope_tag  TEXT NOT NULL,
    embedding  BLOB,
    UNIQUE (scope, file_id, idx)
);
CREATE INDEX IF NOT EXISTS knowledge_chunks_by_file ON knowledge_chunks (file_id);
CREATE INDEX IF NOT EXISTS knowledge_files_by_file ON knowledge_files (file_id);
CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_chunks_fts USING fts5(
    text,
    scope_tag,
    content = 'knowledge_chunks',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS knowledge_chunks_ai AFTER INSERT ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (rowid, text, scope_tag)
        VALUES (new.id, new.text, new.scope_tag);
END;
CREATE TRIGGER IF NOT EXISTS knowledge_chunks_ad AFTER DELETE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts, rowid, text, scope_tag)
        VALUES ('delete', old.id, old.text, old.scope_tag);
END;
CREATE TRIGGER IF NOT EXISTS knowledge_chunks_au AFTER UPDATE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts, rowid, text, scope_tag)
        VALUES ('delete', old.id, old.text, old.scope_tag);
    INSERT INTO knowledge_chunks_fts (rowid, text, scope_tag)
        VALUES (new.id, new.text, new.scope_tag);
END;
"""

_INSERT_FILE = """
INSERT INTO knowledge_files (scope, file_id, file_name, content_hash, chunks, description,
                             added_at, indexed_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

_INSERT_CHUNK = """
INSERT INTO knowledge_chunks (scope, file_id, file_name, idx, location, text, url, scope_tag,
                              embedding)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_FILE_COLUMNS = "scope, file_id, file_name, content_hash, chunks, description, added_at"

# FTS5 ranks and limits the scope's matches (the scope tag column weighs nothing in bm25);
# only those rows are joined, and kept only if their scope is exactly the one asked for.
_SEARCH_WORDS = """
SELECT c.id, c.file_name, c.location, c.text, c.url, hits.score
FROM (
    SELECT rowid AS id, bm25(knowledge_chunks_fts, 1.0, 0.0) AS score
    FROM knowledge_chunks_fts
    WHERE knowledge_chunks_fts MATCH ?
    ORDER BY score, rowid
    LIMIT ?
) AS hits
JOIN knowledge_chunks AS c ON c.id = hits.id
WHERE c.scope = ?
ORDER BY hits.score, c.id
"""

_VECTOR_CACHE_BYTES = 256 * 1024 * 1024


class SqliteKnowledgeStore(KnowledgeStore):
    """File knowledge in a local SQLite database; ``path`` may be ``":memory:"``."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        vector_cache_bytes: int = _VECTOR_CACHE_BYTES,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._vectors = VectorCache(vector_cache_bytes)
        self._data_version = -1
        self._conn = open_database(path, _SCHEMA, what="knowledge")

    # --- writes ------------------------------------------------------------------------------

    def put_file(
        self,
        record: FileRecord,
        chunks: Sequence[StoredChunk],
        embeddings: Sequence[Sequence[float]] | None = None,
    ) -> None:
        check_file(record, chunks, embeddings)
        blobs: Iterable[bytes | None] = (
            (to_blob(vector) for vector in embeddings)
            if embeddings is not None
            else (None for _ in chunks)
        )
        tag = scope_tag(record.scope)
        rows = [
            (c.scope, c.file_id, c.file_name, c.index, c.location, c.text, c.url, tag, blob)
            for c, blob in zip(chunks, blobs, strict=True)
        ]
        file_row = (
            record.scope,
            record.file_id,
            record.file_name,
            record.content_hash,
            record.chunks,
            record.description,
            record.added_at,
            self._clock(),
        )
        where = (record.scope, record.file_id)
        with self._lock:
            self._vectors.forget(record.scope)
            try:
                with self._conn:  # one transaction: all of it, or none of it
                    self._conn.execute(
                        "DELETE FROM knowledge_chunks WHERE scope = ? AND file_id = ?", where
                    )
                    self._conn.execute(
                        "DELETE FROM knowledge_files WHERE scope = ? AND file_id = ?", where
                    )
                    self._conn.execute(_INSERT_FILE, file_row)
                    self._conn.executemany(_INSERT_CHUNK, rows)
            except sqlite3.Error as exc:
                raise StoreError(
                    f"indexing file {record.file_id} in {record.scope}: {exc}"
                ) from exc

    def remove_file(self, scope: str, file_id: str) -> int:
        where = (scope, file_id)
        with self._lock:
            self._vectors.forget(scope)
            try:
                with self._conn:
                    removed = self._conn.execute(
                        "DELETE FROM knowledge_chunks WHERE scope = ? AND file_id = ?", where
                    ).rowcount
                    self._conn.execute(
                        "DELETE FROM knowledge_files WHERE scope = ? AND file_id = ?", where
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"removing file {file_id} from {scope}: {exc}") from exc
        return removed

    def remove_file_everywhere(self, platform_workspace: str, file_id: str) -> int:
        prefix = workspace_prefix(platform_workspace)
        # substr() compares the prefix exactly: no LIKE wildcards to escape in ids.
        where = "substr(scope, 1, ?) = ? AND file_id = ?"
        args = (len(prefix), prefix, file_id)
        with self._lock:
            try:
                with self._conn:
                    scopes = [
                        row[0]
                        for row in self._conn.execute(
                            f"SELECT DISTINCT scope FROM knowledge_chunks WHERE {where}",  # noqa: S608 - constant
                            args,
                        )
                    ]
                    removed = self._conn.execute(
                        f"DELETE FROM knowledge_chunks WHERE {where}",  # noqa: S608 - constant
                        args,
                    ).rowcount
                    self._conn.execute(
                        f"DELETE FROM knowledge_files WHERE {where}",  # noqa: S608 - constant
                        args,
                    )
            except sqlite3.Error as exc:
                raise StoreError(
                    f"removing file {file_id} from every scope of {platform_workspace}: {exc}"
                ) from exc
            for scope in scopes:
                self._vectors.forget(scope)
        return removed

    # --- reads -------------------------------------------------------------------------------

    def get_file(self, scope: str, file_id: str) -> FileRecord | None:
        row = self._fetch_one(
            f"SELECT {_FILE_COLUMNS} FROM knowledge_files WHERE scope = ? AND file_id = ?",  # noqa: S608 - constant
            (scope, file_id),
            f"reading file {file_id} of {scope}",
        )
        return _record_from_row(row) if row is not None else None

    def list_files(self, scope: str) -> list[FileRecord]:
        rows = self._fetch_all(
            f"SELECT {_FILE_COLUMNS} FROM knowledge_files WHERE scope = ?"  # noqa: S608 - constant
            " ORDER BY added_at DESC, rowid DESC",
            (scope,),
            f"listing files of {scope}",
        )
        return [_record_from_row(row) for row in rows]

    def file_chunks(self, scope: str, file_id: str) -> list[StoredChunk]:
        rows = self._fetch_all(
            "SELECT scope, file_id, file_name, idx, location, text, url FROM knowledge_chunks"
            " WHERE scope = ? AND file_id = ? ORDER BY idx",
            (scope, file_id),
            f"reading chunks of file {file_id} in {scope}",
        )
        return [
            StoredChunk(
                scope=r[0],
                file_id=r[1],
                file_name=r[2],
                index=int(r[3]),
                location=r[4],
                text=r[5],
                url=r[6],
            )
            for r in rows
        ]

    def search(
        self,
        scope: str,
        query: str,
        *,
        limit: int,
        query_embedding: Sequence[float] | None = None,
    ) -> list[Passage]:
        if limit <= 0 or not query.strip():
            return []
        if query_embedding is None or len(query_embedding) == 0:
            hits = self._search_words(scope, query, limit)
            return _passages([(row, -score) for row, score in hits])
        depth = max(limit * 4, 50)
        vector_hits = self._search_vectors(scope, query_embedding, depth)
        word_hits = self._search_words(scope, query, depth)
        if not vector_hits:
            return _passages([(row, -score) for row, score in word_hits[:limit]])
        rows = {row[0]: row for row, _ in (*vector_hits, *word_hits)}
        ranked = fuse([[row[0] for row, _ in hits] for hits in (vector_hits, word_hits)])
        return _passages([(rows[chunk_id], score) for chunk_id, score in ranked[:limit]])

    def close(self) -> None:
        with self._lock:
            self._vectors.clear()
            self._conn.close()

    # --- words -------------------------------------------------------------------------------

    def _search_words(self, scope: str, query: str, limit: int) -> list[tuple[_Row, float]]:
        """``(row, bm25)`` best first; bm25 is negative, lower is better."""
        match = fts_query(scope, query)
        if not match:
            return []
        with self._lock:
            try:
                rows = self._conn.execute(_SEARCH_WORDS, (match, limit, scope)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"searching {scope}: {exc}") from exc
        return [((r[0], r[1], r[2], r[3], r[4]), float(r[5])) for r in rows]

    # --- vectors -----------------------------------------------------------------------------

    def _search_vectors(
        self, scope: str, query_embedding: Sequence[float], limit: int
    ) -> list[tuple[_Row, float]]:
        """``(row, cosine similarity)`` best first, over the scope's vectors of the query's size."""
        query = unit_query(query_embedding)
        if query is None:
            return []
        vectors = self._scope_vectors(scope, int(query.shape[0]))
        if vectors is None:
            return []
        hits = nearest(vectors, query, limit)
        rows = self._rows_by_id([chunk_id for chunk_id, _ in hits])
        return [(rows[chunk_id], score) for chunk_id, score in hits if chunk_id in rows]

    def _scope_vectors(self, scope: str, dimensions: int) -> ScopeVectors | None:
        with self._lock:
            try:
                version = self._conn.execute("PRAGMA data_version").fetchone()[0]
                if version != self._data_version:  # another connection wrote to the file
                    self._vectors.clear()
                    self._data_version = version
                cached = self._vectors.get(scope, dimensions)
                if cached is not None:
                    return cached
                rows = self._conn.execute(
                    "SELECT id, embedding FROM knowledge_chunks"
                    " WHERE scope = ? AND length(embedding) = ?",
                    (scope, dimensions * 4),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"reading the vectors of {scope}: {exc}") from exc
            if not rows:
                return None
            vectors = unit_matrix([r[0] for r in rows], [r[1] for r in rows], dimensions)
            self._vectors.put(scope, dimensions, vectors)
            return vectors

    def _rows_by_id(self, ids: Sequence[int]) -> dict[int, _Row]:
        if not ids:
            return {}
        placeholders = ",".join("?" * len(ids))
        rows = self._fetch_all(
            "SELECT id, file_name, location, text, url FROM knowledge_chunks"  # noqa: S608 - placeholders only
            f" WHERE id IN ({placeholders})",
            ids,
            "reading matched chunks",
        )
        return {int(r[0]): (r[0], r[1], r[2], r[3], r[4]) for r in rows}

    # --- plumbing ----------------------------------------------------------------------------

    def _fetch_one(self, sql: str, args: Sequence[Any], operation: str) -> Any:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"{operation}: {exc}") from exc

    def _fetch_all(self, sql: str, args: Sequence[Any], operation: str) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{operation}: {exc}") from exc


# (id, file_name, location, text, url)
_Row = tuple[int, str, str, str, str]


def _passages(ranked: Sequence[tuple[_Row, float]]) -> list[Passage]:
    return [
        Passage(
            source=SourceCitation(source_id=f"S{rank}", title=row[1], location=row[2], url=row[4]),
            text=row[3],
            score=score,
        )
        for rank, (row, score) in enumerate(ranked, start=1)
    ]


def _record_from_row(row: Sequence[Any]) -> FileRecord:
    scope, file_id, file_name, content_hash, chunks, description, added_at = row
    return FileRecord(
        scope=scope,
        file_id=file_id,
        file_name=file_name,
        content_hash=content_hash,
        chunks=int(chunks),
        description=description,
        added_at=float(added_at),
    )
