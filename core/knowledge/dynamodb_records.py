"""File records in DynamoDB (table ``CHATBOT_KNOWLEDGE_TABLE``), beside S3 Vectors.

Item layout (every attribute a plain DynamoDB type, so the table reads well in the console)::

    pk      S  "SCOPE#" + scope                              e.g. SCOPE#slack#T1#C1
    sk      S  "FILE#" + file_id                             (:func:`record_key`)
    gsi1pk  S  "FILE#" + platform#workspace + "#" + file_id  (index "by-file": the scopes a
    gsi1sk  S  "SCOPE#" + scope                               file is in; :func:`file_index_key`)
    scope, file_id, file_name, content_hash, description, version  S
    chunks, added_at, vectors                                      N

A key that would pass DynamoDB's limits (1,024 bytes for a sort key, 2,048 for a partition
key) carries ``"h:" + sha256(...)`` in place of its variable part, as the S3 Vectors keys do
(:func:`core.knowledge.keys.bounded_key`): a Teams attachment known only by a long name can
still be shared. Short ids keep the keys they always had. The full id is the ``file_id``
attribute, and every read keeps only items whose ``file_id`` is the one asked for, so an id
that happens to look like another's hash can never be taken for it.

The table definition lives in :func:`records_table_definition`; ``infra/`` must describe the
same table. The index is eventually consistent, so :meth:`DynamoDbFileRecords.find` may miss a
file put a moment ago.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core import dynamodb
from core.knowledge.base import FileRecord
from core.knowledge.keys import bounded_key
from core.knowledge.records import FileRecords, IndexedFile, RecordConflict

FILE_INDEX = "by-file"

_MAX_PARTITION_KEY_BYTES = 2048
_MAX_SORT_KEY_BYTES = 1024
_VERSION = {"#version": "version"}


def records_table_definition(table_name: str) -> dict[str, Any]:
    """The exact ``CreateTable`` arguments for the file records table."""
    return dynamodb.table_definition(table_name, index=FILE_INDEX)


def create_records_table(client: Any, table_name: str) -> None:
    """Create the file records table and wait until it exists (tooling and tests)."""
    client.create_table(**records_table_definition(table_name))
    client.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


def record_key(scope: str, file_id: str) -> dict[str, Any]:
    """The primary key of a file's record in a scope: every write and every lookup uses it."""
    return {
        "pk": {"S": f"SCOPE#{scope}"},
        "sk": {"S": bounded_key("FILE#", file_id, max_bytes=_MAX_SORT_KEY_BYTES)},
    }


def file_index_key(platform_workspace: str, file_id: str) -> str:
    """The ``by-file`` index's partition key: one file in one workspace, whatever the scope."""
    return bounded_key(
        "FILE#", f"{platform_workspace}#{file_id}", max_bytes=_MAX_PARTITION_KEY_BYTES
    )


class DynamoDbFileRecords(FileRecords):
    """File records in the table :func:`records_table_definition` describes.

    Build one per process: the boto3 client is made here, once (``AWS_ENDPOINT_URL_DYNAMODB``
    points it elsewhere).
    """

    def __init__(self, table_name: str, *, region: str, client: Any | None = None) -> None:
        self._table = table_name
        self._client: Any = client if client is not None else dynamodb.make_client(region)

    def get(self, scope: str, file_id: str) -> IndexedFile | None:
        item = dynamodb.call(
            self._client,
            "GetItem",
            f"reading the record of {file_id} in {scope}",
            TableName=self._table,
            Key=record_key(scope, file_id),
            ConsistentRead=True,
        ).get("Item")
        entry = _entry_from_item(item) if item else None
        return entry if entry is not None and entry.record.file_id == file_id else None

    def in_scope(self, scope: str) -> list[IndexedFile]:
        items = dynamodb.query(
            self._client,
            f"listing files of {scope}",
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :file)",
            ExpressionAttributeValues={":pk": {"S": f"SCOPE#{scope}"}, ":file": {"S": "FILE#"}},
            ConsistentRead=True,
        )
        return [_entry_from_item(item) for item in items]

    def find(self, platform_workspace: str, file_id: str) -> list[IndexedFile]:
        items = dynamodb.query(
            self._client,
            f"finding {file_id} in {platform_workspace}",
            TableName=self._table,
            IndexName=FILE_INDEX,
            KeyConditionExpression="gsi1pk = :file",
            ExpressionAttributeValues={":file": {"S": file_index_key(platform_workspace, file_id)}},
        )
        entries = (_entry_from_item(item) for item in items)
        return [e for e in entries if e.record.file_id == file_id]

    def versions(self, scope: str, file_ids: Sequence[str]) -> dict[str, str]:
        wanted = set(file_ids)
        keys = {key["sk"]["S"]: key for key in (record_key(scope, f) for f in wanted)}
        items = dynamodb.batch_get(
            self._client,
            self._table,
            list(keys.values()),
            f"checking versions in {scope}",
            ProjectionExpression="#file_id, #version",
            ExpressionAttributeNames={"#file_id": "file_id", **_VERSION},
            ConsistentRead=True,
        )
        found = ((item["file_id"]["S"], item["version"]["S"]) for item in items)
        return {file_id: version for file_id, version in found if file_id in wanted}

    def commit(self, entry: IndexedFile, *, replacing: str | None) -> None:
        r = entry.record
        workspace = r.scope.rsplit("#", 1)[0]
        item = {
            **record_key(r.scope, r.file_id),
            "gsi1pk": {"S": file_index_key(workspace, r.file_id)},
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
                "ExpressionAttributeNames": _VERSION,
                "ExpressionAttributeValues": {":replacing": {"S": replacing}},
            }
        try:
            dynamodb.call(
                self._client,
                "PutItem",
                f"committing {r.file_id}",
                TableName=self._table,
                Item=item,
                **condition,
            )
        except dynamodb.ConditionFailed as exc:
            raise RecordConflict(
                f"file {r.file_id} in {r.scope} changed while it was being indexed"
            ) from exc.__cause__

    def delete(self, scope: str, file_id: str, version: str) -> bool:
        try:
            dynamodb.call(
                self._client,
                "DeleteItem",
                f"removing {file_id}",
                TableName=self._table,
                Key=record_key(scope, file_id),
                ConditionExpression="#version = :version",
                ExpressionAttributeNames=_VERSION,
                ExpressionAttributeValues={":version": {"S": version}},
            )
        except dynamodb.ConditionFailed:
            return False
        return True


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
