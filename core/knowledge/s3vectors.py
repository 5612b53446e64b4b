"""The AWS knowledge backend: chunk vectors in Amazon S3 Vectors, file records beside them.

Two stores, each doing what it is good at:

- **S3 Vectors** holds one vector per chunk, and the chunk itself in the vector's metadata::

      key       "{scope}|{file_id}|{version}|{n}"  (n = 0, 1, ... in chunk order; a key longer
                than 1,024 bytes becomes "h:" + sha256(scope|file_id) + "|{version}|{n}")
      data      {"float32": [...]}                 (the chunk's embedding)
      metadata  scope      filterable: every query filters on {"scope": {"$eq": scope}}
                file_id, file_name, location, idx, url, version, text
                           non-filterable (:data:`NON_FILTERABLE_METADATA_KEYS`)

  The chunk text lives in non-filterable metadata: S3 Vectors allows 40 KB of metadata per
  vector but only 2 KB of *filterable* metadata, so the index must be created with those seven
  keys declared non-filterable (:func:`index_definition` gives the exact ``CreateIndex``
  arguments; an index made without it refuses chunks over 2 KB). Keeping the text beside its
  vector means a search is one ``QueryVectors`` call and a whole file is read back with
  ``GetVectors``, with no third store to keep in step.

- **File records** (:class:`~core.knowledge.records.FileRecords`, implemented on DynamoDB by
  :class:`~core.knowledge.dynamodb_records.DynamoDbFileRecords`, table
  ``CHATBOT_KNOWLEDGE_TABLE``) hold one item per (scope, file): the :class:`FileRecord`, the
  current ``version`` and how many vectors it has. The vector keys are derived from those, so
  no list of keys is stored (and a file of any size fits in one small item).

Every put writes a *new version* under new keys and then commits it by replacing the file's
record (one conditional DynamoDB write); only then are the previous version's vectors deleted.
A search keeps only vectors whose ``version`` is the one the record names, so:

- a put that fails part-way leaves the old version searchable and nothing of the new one (its
  vectors are deleted on the way out, and would be ignored if that failed too);
- two puts of one file racing each other cannot both win: the loser's commit fails its
  condition, it deletes its vectors and raises :class:`RecordConflict`;
- a process that dies mid-put leaves vectors no record points to: invisible, and costing only
  storage until the file is put or removed again.

Search needs an embedding of the question (S3 Vectors is queried by vector only here), so this
backend is for deployments with ``BEDROCK_EMBEDDING_MODEL_ID`` set.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from core import aws
from core.config import Settings
from core.domain import Passage, SourceCitation
from core.errors import StoreError
from core.knowledge.base import FileRecord, KnowledgeStore, StoredChunk
from core.knowledge.checks import check_file, workspace_prefix
from core.knowledge.dynamodb_records import DynamoDbFileRecords
from core.knowledge.keys import bounded_key
from core.knowledge.records import FileRecords, IndexedFile, RecordConflict

logger = logging.getLogger(__name__)

NEEDS_EMBEDDINGS = "S3 Vectors needs an embedding model: set BEDROCK_EMBEDDING_MODEL_ID"
NEEDS_BUCKET = "CHATBOT_VECTOR_BUCKET is not set: shared files cannot be indexed or searched"

FILTERABLE_METADATA_KEYS: tuple[str, ...] = ("scope",)
NON_FILTERABLE_METADATA_KEYS: tuple[str, ...] = (
    "file_id",
    "file_name",
    "location",
    "idx",
    "url",
    "version",
    "text",
)

_PUT_BATCH = 500  # PutVectors and DeleteVectors take at most 500 vectors
_GET_BATCH = 100  # GetVectors takes at most 100 keys
_MAX_TOP_K = 100  # QueryVectors returns at most 100
_MAX_KEY_BYTES = 1024
_MAX_METADATA_BYTES = 40 * 1024
_MAX_FILTERABLE_BYTES = 2 * 1024


def build_s3vectors_store(settings: Settings) -> S3VectorsKnowledgeStore:
    """The AWS knowledge store from configuration (``CHATBOT_VECTOR_BUCKET``,
    ``CHATBOT_VECTOR_INDEX``, ``CHATBOT_KNOWLEDGE_TABLE``, ``AWS_REGION``).

    Without a vector bucket the store is still built, and every use of it raises
    :class:`StoreError` naming the setting: the assistant then answers without files instead of
    refusing to start."""
    if not settings.vector_bucket:
        logger.warning(NEEDS_BUCKET)
    records = DynamoDbFileRecords(settings.knowledge_table, region=settings.aws_region)
    return S3VectorsKnowledgeStore(
        settings.vector_bucket,
        settings.vector_index,
        region=settings.aws_region,
        records=records,
    )


def index_definition(vector_bucket: str, index_name: str, dimension: int) -> dict[str, Any]:
    """The exact ``CreateIndex`` arguments for the knowledge index (cosine, float32)."""
    return {
        "vectorBucketName": vector_bucket,
        "indexName": index_name,
        "dataType": "float32",
        "dimension": dimension,
        "distanceMetric": "cosine",
        "metadataConfiguration": {"nonFilterableMetadataKeys": list(NON_FILTERABLE_METADATA_KEYS)},
    }


def vector_key(scope: str, file_id: str, version: str, n: int) -> str:
    return bounded_key("", f"{scope}|{file_id}", f"|{version}|{n}", max_bytes=_MAX_KEY_BYTES)


def vector_keys(entry: IndexedFile) -> list[str]:
    """The keys of a file's current vectors, derived from its record."""
    r = entry.record
    return [vector_key(r.scope, r.file_id, entry.version, n) for n in range(entry.vectors)]


# --- the store ---------------------------------------------------------------------------------


class S3VectorsKnowledgeStore(KnowledgeStore):
    """File knowledge in an S3 Vectors index made with :func:`index_definition`.

    Build one per process: the boto3 client is made here, once (``AWS_ENDPOINT_URL_S3VECTORS``
    points it elsewhere).
    """

    def __init__(
        self,
        vector_bucket: str,
        index_name: str,
        *,
        region: str,
        records: FileRecords,
        client: Any | None = None,
    ) -> None:
        self._bucket = vector_bucket
        self._index = index_name
        self._records = records
        self._client: Any = (
            client if client is not None else aws.store_client("s3vectors", region, read_timeout=10)
        )

    # --- writes ------------------------------------------------------------------------------

    def put_file(
        self,
        record: FileRecord,
        chunks: Sequence[StoredChunk],
        embeddings: Sequence[Sequence[float]] | None = None,
    ) -> None:
        if embeddings is None:
            raise StoreError(NEEDS_EMBEDDINGS)
        if len(record.scope.encode("utf-8")) > _MAX_FILTERABLE_BYTES // 2:
            raise ValueError("scope is too long for S3 Vectors' filterable metadata")
        check_file(record, chunks, embeddings)
        previous = self._records.get(record.scope, record.file_id)
        entry = IndexedFile(record=record, version=uuid.uuid4().hex[:16], vectors=len(chunks))
        keys = vector_keys(entry)
        vectors = [
            {
                "key": key,
                "data": {"float32": [float(x) for x in vector]},
                "metadata": _metadata(chunk, entry.version),
            }
            for key, chunk, vector in zip(keys, chunks, embeddings, strict=True)
        ]
        written = 0
        try:
            for start in range(0, len(vectors), _PUT_BATCH):
                batch = vectors[start : start + _PUT_BATCH]
                written = start + len(batch)  # a failed call may have written part of it
                self._vectors_call("PutVectors", f"indexing {record.file_id}", vectors=batch)
        except StoreError:
            self._discard(keys[:written], record.file_id)
            raise
        try:
            self._records.commit(entry, replacing=previous.version if previous else None)
        except RecordConflict:
            self._discard(keys, record.file_id)
            raise
        # Any other commit failure is unclear (the write may have landed), so this version's
        # vectors stay: if the record does not name them, search never returns them.
        if previous is not None:
            self._discard(vector_keys(previous), record.file_id)

    def remove_file(self, scope: str, file_id: str) -> int:
        entry = self._records.get(scope, file_id)
        return self._remove(entry) if entry is not None else 0

    def remove_file_everywhere(self, platform_workspace: str, file_id: str) -> int:
        prefix = workspace_prefix(platform_workspace)
        removed = 0
        for entry in self._records.find(prefix.rstrip("#"), file_id):
            if entry.record.scope.startswith(prefix):
                removed += self._remove(entry)
        return removed

    # --- reads -------------------------------------------------------------------------------

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
            raise StoreError(NEEDS_EMBEDDINGS)
        response = self._vectors_call(
            "QueryVectors",
            f"searching {scope}",
            topK=min(_MAX_TOP_K, max(limit * 2, 10)),  # room for superseded versions
            queryVector={"float32": [float(x) for x in query_embedding]},
            filter={"scope": {"$eq": scope}},
            returnMetadata=True,
            returnDistance=True,
        )
        hits = [
            hit
            for hit in response.get("vectors", [])
            if (hit.get("metadata") or {}).get("scope") == scope  # never trust one check alone
        ]
        if not hits:
            return []
        current = self._records.versions(scope, [str(h["metadata"].get("file_id")) for h in hits])
        passages: list[Passage] = []
        for hit in hits:
            metadata = hit["metadata"]
            if current.get(str(metadata.get("file_id"))) != metadata.get("version"):
                continue  # a superseded or unfinished version
            passages.append(
                Passage(
                    source=SourceCitation(
                        source_id=f"S{len(passages) + 1}",
                        title=str(metadata.get("file_name", "")),
                        location=str(metadata.get("location", "")),
                        url=str(metadata.get("url", "")),
                    ),
                    text=str(metadata.get("text", "")),
                    score=1.0 - float(hit.get("distance", 1.0)),  # cosine distance
                )
            )
            if len(passages) == limit:
                break
        return passages

    def get_file(self, scope: str, file_id: str) -> FileRecord | None:
        entry = self._records.get(scope, file_id)
        return entry.record if entry is not None else None

    def list_files(self, scope: str) -> list[FileRecord]:
        entries = self._records.in_scope(scope)
        entries.sort(key=lambda e: (e.record.added_at, e.record.file_id), reverse=True)
        return [e.record for e in entries]

    def file_chunks(self, scope: str, file_id: str) -> list[StoredChunk]:
        entry = self._records.get(scope, file_id)
        if entry is None:
            return []
        keys = vector_keys(entry)
        chunks: list[StoredChunk] = []
        for start in range(0, len(keys), _GET_BATCH):
            response = self._vectors_call(
                "GetVectors",
                f"reading chunks of {file_id}",
                keys=keys[start : start + _GET_BATCH],
                returnData=False,
                returnMetadata=True,
            )
            for vector in response.get("vectors", []):
                metadata = vector.get("metadata") or {}
                if metadata.get("scope") != scope or metadata.get("version") != entry.version:
                    continue
                chunks.append(
                    StoredChunk(
                        scope=scope,
                        file_id=file_id,
                        file_name=str(metadata.get("file_name", "")),
                        index=int(metadata.get("idx", 0)),
                        location=str(metadata.get("location", "")),
                        text=str(metadata.get("text", "")),
                        url=str(metadata.get("url", "")),
                    )
                )
        if len(chunks) != entry.vectors:
            logger.warning(
                "file chunks missing from the vector index",
                extra={"file_id": file_id, "expected": entry.vectors, "found": len(chunks)},
            )
        chunks.sort(key=lambda c: c.index)
        return chunks

    # --- plumbing ----------------------------------------------------------------------------

    def _remove(self, entry: IndexedFile) -> int:
        """Vectors first, then the record: a failure part-way leaves the record, so trying
        again finds the file and finishes the job (deleting missing keys is not an error)."""
        r = entry.record
        keys = vector_keys(entry)
        for start in range(0, len(keys), _PUT_BATCH):
            self._vectors_call(
                "DeleteVectors", f"removing {r.file_id}", keys=keys[start : start + _PUT_BATCH]
            )
        if not self._records.delete(r.scope, r.file_id, entry.version):
            logger.info(
                "file was indexed again while it was being removed; the new version stays",
                extra={"file_id": r.file_id},
            )
        return entry.vectors

    def _discard(self, keys: Sequence[str], file_id: str) -> None:
        """Best-effort delete of vectors no record points to (they are invisible anyway)."""
        try:
            for start in range(0, len(keys), _PUT_BATCH):
                self._vectors_call(
                    "DeleteVectors",
                    f"discarding vectors of {file_id}",
                    keys=list(keys[start : start + _PUT_BATCH]),
                )
        except StoreError:
            logger.warning(
                "could not delete unused vectors; they are never returned by search",
                extra={"file_id": file_id, "vectors": len(keys)},
                exc_info=True,
            )

    def _vectors_call(self, api: str, operation: str, **request: Any) -> dict[str, Any]:
        if not self._bucket:
            raise StoreError(NEEDS_BUCKET)
        return aws.call(
            self._client,
            "S3 Vectors",
            api,
            operation,
            vectorBucketName=self._bucket,
            indexName=self._index,
            **request,
        )


def _metadata(chunk: StoredChunk, version: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "scope": chunk.scope,
        "file_id": chunk.file_id,
        "file_name": chunk.file_name,
        "location": chunk.location,
        "idx": chunk.index,
        "url": chunk.url,
        "version": version,
        "text": chunk.text,
    }
    size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8"))
    if size > _MAX_METADATA_BYTES:
        raise ValueError(
            f"chunk {chunk.index} of {chunk.file_id} is {size} bytes with its metadata; "
            f"S3 Vectors keeps at most {_MAX_METADATA_BYTES} per vector"
        )
    return metadata
