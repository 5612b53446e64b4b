"""The AWS knowledge backend: chunk vectors in Amazon S3 Vectors, file records in DynamoDB.

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

- **File records** (:class:`FileRecords`, implemented on DynamoDB by
  :class:`DynamoDbFileRecords`, table ``CHATBOT_KNOWLEDGE_TABLE``) hold one item per (scope,
  file): the :class:`FileRecord`, the current ``version`` and how many vectors it has. The
  vector keys are derived from those, so no list of keys is stored (and a file of any size
  fits in one small item).

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

import abc
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.config import Settings
from core.domain import Passage, SourceCitation
from core.errors import StoreError
from core.knowledge.base import FileRecord, KnowledgeStore, StoredChunk

logger = logging.getLogger(__name__)

NEEDS_EMBEDDINGS = "S3 Vectors needs an embedding model: set BEDROCK_EMBEDDING_MODEL_ID"
NEEDS_BUCKET = "CHATBOT_VECTOR_BUCKET is not set: shared files cannot be indexed or searched"
FILE_INDEX = "by-file"

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
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=10,
)


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


def records_table_definition(table_name: str) -> dict[str, Any]:
    """The exact ``CreateTable`` arguments for the file records table."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("pk", "sk", "gsi1pk", "gsi1sk")
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": FILE_INDEX,
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "SSESpecification": {"Enabled": True},
    }


def create_records_table(client: Any, table_name: str) -> None:
    """Create the file records table and wait until it exists (tooling and tests)."""
    client.create_table(**records_table_definition(table_name))
    client.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
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
    key = f"{scope}|{file_id}|{version}|{n}"
    if len(key.encode("utf-8")) <= _MAX_KEY_BYTES:
        return key
    digest = hashlib.sha256(f"{scope}|{file_id}".encode()).hexdigest()
    return f"h:{digest}|{version}|{n}"


# --- file records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """A file's record and where its vectors are: ``vectors`` keys of ``version``."""

    record: FileRecord
    version: str
    vectors: int

    def keys(self) -> list[str]:
        r = self.record
        return [vector_key(r.scope, r.file_id, self.version, n) for n in range(self.vectors)]


class RecordConflict(StoreError):
    """The file's record changed while a new version was being written (a concurrent put)."""

    cause = "record_conflict"


class FileRecords(abc.ABC):
    """The small metadata store beside S3 Vectors: one :class:`IndexedFile` per (scope, file)."""

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


class DynamoDbFileRecords(FileRecords):
    """File records in the table :func:`records_table_definition` describes.

    Item layout::

        pk      S  "SCOPE#" + scope                      e.g. SCOPE#slack#T1#C1
        sk      S  "FILE#" + file_id
        gsi1pk  S  "FILE#" + platform#workspace + "#" + file_id   (index "by-file": the
        gsi1sk  S  "SCOPE#" + scope                                 scopes a file is in)
        file_name, content_hash, description, version  S
        chunks, added_at, vectors                      N

    The index is eventually consistent, so :meth:`find` may miss a file put a moment ago.
    """

    def __init__(self, table_name: str, *, region: str, client: Any | None = None) -> None:
        self._table = table_name
        self._client: Any = (
            client
            if client is not None
            else boto3.client("dynamodb", region_name=region, config=_CLIENT_CONFIG)
        )

    def get(self, scope: str, file_id: str) -> IndexedFile | None:
        item = self._call(
            "GetItem",
            f"reading the record of {file_id} in {scope}",
            TableName=self._table,
            Key=_record_key(scope, file_id),
            ConsistentRead=True,
        ).get("Item")
        return _entry_from_item(item) if item else None

    def in_scope(self, scope: str) -> list[IndexedFile]:
        request = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :file)",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"SCOPE#{scope}"},
                ":file": {"S": "FILE#"},
            },
            "ConsistentRead": True,
        }
        return [_entry_from_item(i) for i in self._query(request, f"listing files of {scope}")]

    def find(self, platform_workspace: str, file_id: str) -> list[IndexedFile]:
        request = {
            "TableName": self._table,
            "IndexName": FILE_INDEX,
            "KeyConditionExpression": "gsi1pk = :file",
            "ExpressionAttributeValues": {":file": {"S": f"FILE#{platform_workspace}#{file_id}"}},
        }
        items = self._query(request, f"finding {file_id} in {platform_workspace}")
        return [_entry_from_item(i) for i in items]

    def versions(self, scope: str, file_ids: Sequence[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(file_ids))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 100):  # BatchGetItem takes at most 100 keys
            pending: dict[str, Any] = {
                self._table: {
                    "Keys": [_record_key(scope, f) for f in wanted[start : start + 100]],
                    "ProjectionExpression": "sk, #version",
                    "ExpressionAttributeNames": {"#version": "version"},
                    "ConsistentRead": True,
                }
            }
            for delay in (0.0, 0.05, 0.1, 0.2, 0.4):
                if delay:
                    time.sleep(delay)
                response = self._call(
                    "BatchGetItem", f"checking versions in {scope}", RequestItems=pending
                )
                for item in response.get("Responses", {}).get(self._table, []):
                    found[item["sk"]["S"].removeprefix("FILE#")] = item["version"]["S"]
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise StoreError(f"DynamoDB BatchGetItem left keys unprocessed in {scope}")
        return found

    def commit(self, entry: IndexedFile, *, replacing: str | None) -> None:
        r = entry.record
        workspace = r.scope.rsplit("#", 1)[0]
        item = {
            **_record_key(r.scope, r.file_id),
            "gsi1pk": {"S": f"FILE#{workspace}#{r.file_id}"},
            "gsi1sk": {"S": f"SCOPE#{r.scope}"},
            "scope": {"S": r.scope},
            "file_id": {"S": r.file_id},
            "file_name": {"S": r.file_name},
            "content_hash": {"S": r.content_hash},
            "chunks": {"N": str(int(r.chunks))},
            "description": {"S": r.description},
            "added_at": {"N": repr(float(r.added_at))},
            "version": {"S": entry.version},
            "vectors": {"N": str(entry.vectors)},
        }
        condition: dict[str, Any]
        if replacing is None:
            condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "#version = :replacing",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":replacing": {"S": replacing}},
            }
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise RecordConflict(
                    f"file {r.file_id} in {r.scope} changed while it was being indexed"
                ) from exc
            raise _store_error("DynamoDB PutItem", f"committing {r.file_id}", exc) from exc
        except BotoCoreError as exc:
            raise _store_error("DynamoDB PutItem", f"committing {r.file_id}", exc) from exc

    def delete(self, scope: str, file_id: str, version: str) -> bool:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=_record_key(scope, file_id),
                ConditionExpression="#version = :version",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":version": {"S": version}},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise _store_error("DynamoDB DeleteItem", f"removing {file_id}", exc) from exc
        except BotoCoreError as exc:
            raise _store_error("DynamoDB DeleteItem", f"removing {file_id}", exc) from exc
        return True

    def _query(self, request: dict[str, Any], operation: str) -> Iterator[dict[str, Any]]:
        request = dict(request)
        while True:
            page = self._call("Query", operation, **request)
            yield from page.get("Items", [])
            if not page.get("LastEvaluatedKey"):
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _call(self, api: str, operation: str, **request: Any) -> dict[str, Any]:
        method = getattr(self._client, _snake(api))
        try:
            response: dict[str, Any] = method(**request)
        except (ClientError, BotoCoreError) as exc:
            raise _store_error(f"DynamoDB {api}", operation, exc) from exc
        return response


def _record_key(scope: str, file_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"SCOPE#{scope}"}, "sk": {"S": f"FILE#{file_id}"}}


def _entry_from_item(item: dict[str, Any]) -> IndexedFile:
    def text(name: str) -> str:
        return str(item.get(name, {}).get("S", ""))

    def number(name: str) -> float:
        return float(item.get(name, {}).get("N", "0"))

    return IndexedFile(
        record=FileRecord(
            scope=text("scope"),
            file_id=text("file_id"),
            file_name=text("file_name"),
            content_hash=text("content_hash"),
            chunks=int(number("chunks")),
            description=text("description"),
            added_at=number("added_at"),
        ),
        version=text("version"),
        vectors=int(number("vectors")),
    )


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
            client
            if client is not None
            else boto3.client("s3vectors", region_name=region, config=_CLIENT_CONFIG)
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
        _check_file(record, chunks, embeddings)
        previous = self._records.get(record.scope, record.file_id)
        entry = IndexedFile(record=record, version=uuid.uuid4().hex[:16], vectors=len(chunks))
        keys = entry.keys()
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
            self._discard(previous.keys(), record.file_id)

    def remove_file(self, scope: str, file_id: str) -> int:
        entry = self._records.get(scope, file_id)
        return self._remove(entry) if entry is not None else 0

    def remove_file_everywhere(self, platform_workspace: str, file_id: str) -> int:
        workspace = platform_workspace.rstrip("#")
        if workspace.count("#") != 1 or not all(workspace.split("#")):
            raise ValueError(f"expected 'platform#workspace', got {platform_workspace!r}")
        removed = 0
        for entry in self._records.find(workspace, file_id):
            if entry.record.scope.startswith(workspace + "#"):
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
        keys = entry.keys()
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
        keys = entry.keys()
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
        method = getattr(self._client, _snake(api))
        try:
            response: dict[str, Any] = method(
                vectorBucketName=self._bucket, indexName=self._index, **request
            )
        except (ClientError, BotoCoreError) as exc:
            raise _store_error(f"S3 Vectors {api}", operation, exc) from exc
        return response


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


def _check_file(
    record: FileRecord, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]]
) -> None:
    """Refuse a file whose parts disagree, before anything is written (a caller's mistake)."""
    if len(record.scope.encode("utf-8")) > _MAX_FILTERABLE_BYTES // 2:
        raise ValueError("scope is too long for S3 Vectors' filterable metadata")
    if any(c.scope != record.scope or c.file_id != record.file_id for c in chunks):
        raise ValueError(f"every chunk must belong to {record.scope}/{record.file_id}")
    if len({c.index for c in chunks}) != len(chunks):
        raise ValueError(f"file {record.file_id} has two chunks with the same index")
    if len(embeddings) != len(chunks):
        raise ValueError(f"{len(embeddings)} embeddings for {len(chunks)} chunks")
    if len({len(v) for v in embeddings}) > 1:
        raise ValueError("embeddings of one file must all have the same size")


def _snake(api: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in api).lstrip("_")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _store_error(api: str, operation: str, exc: Exception) -> StoreError:
    code = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return StoreError(f"{api} failed with {code} while {operation}")
