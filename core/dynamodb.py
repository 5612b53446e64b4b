"""DynamoDB plumbing shared by the stores that keep items there (history, file records).

Calls go through :func:`core.aws.call`, so every failure is a :class:`StoreError`; a
conditional write that finds the item other than it expected is the subclass
:class:`ConditionFailed`, which each store turns into its own meaning (a turn already stored,
a file record changed meanwhile, a delete that lost a race). Query results are read page after
page, and batch calls retry what DynamoDB leaves unprocessed (throttling), within a bound.

Paging is a loop over ``ExclusiveStartKey`` rather than a boto3 paginator: a store may be handed
its client, and the tests hand it doubles that count, record or refuse each API method (the
infra tests map every call to the IAM action the template must grant). A paginator
(``client.get_paginator``) would go around those methods, to save six lines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from core import aws
from core.errors import StoreError

BATCH_GET_KEYS = 100  # BatchGetItem takes at most 100 keys
BATCH_WRITE_ITEMS = 25  # BatchWriteItem takes at most 25 requests
UNPROCESSED_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)

_CONDITION_FAILED = "ConditionalCheckFailedException"


def table_definition(table_name: str, *, index: str) -> dict[str, Any]:
    """``CreateTable`` arguments for the layout the history and file records tables share:
    string keys ``pk`` and ``sk``, one global secondary index named ``index`` on ``gsi1pk`` and
    ``gsi1sk`` projecting every attribute, on-demand billing, encryption at rest."""
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
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "SSESpecification": {"Enabled": True},
    }


class ConditionFailed(StoreError):
    """A conditional write found the item other than its condition wanted; nothing changed."""

    cause = "condition_failed"


def create_table(client: Any, definition: dict[str, Any], *, ttl_attribute: str) -> None:
    """Create a table from its ``CreateTable`` arguments, wait until it exists, and turn on TTL
    for ``ttl_attribute``. Errors are botocore's own: this is tooling, run by people and tests,
    not by the service."""
    name = definition["TableName"]
    client.create_table(**definition)
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
    )


def make_client(region: str) -> Any:
    """The DynamoDB client a store builds once per process (``AWS_ENDPOINT_URL_DYNAMODB``
    points it elsewhere)."""
    return aws.store_client("dynamodb", region)


def call(client: Any, api: str, operation: str, **request: Any) -> dict[str, Any]:
    """One DynamoDB call; see :func:`core.aws.call`. Raises :class:`ConditionFailed` when a
    ``ConditionExpression`` did not hold."""
    try:
        return aws.call(client, "DynamoDB", api, operation, **request)
    except StoreError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClientError) and aws.error_code(cause) == _CONDITION_FAILED:
            raise ConditionFailed(str(exc)) from cause
        raise


def query(client: Any, operation: str, **request: Any) -> Iterator[dict[str, Any]]:
    """The items of a query, page after page, until the caller stops or the results end. A
    ``Limit`` in ``request`` bounds each page, so a caller that stops early reads little."""
    while True:
        page = call(client, "Query", operation, **request)
        yield from page.get("Items", [])
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return
        request = {**request, "ExclusiveStartKey": last_key}


def batch_get(
    client: Any, table: str, keys: Sequence[dict[str, Any]], operation: str, **options: Any
) -> list[dict[str, Any]]:
    """The items that exist among ``keys``, in no particular order. ``options`` go into each
    table request (``ProjectionExpression``, ``ConsistentRead``, ...)."""
    items: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_KEYS):
        request = {table: {"Keys": list(keys[start : start + BATCH_GET_KEYS]), **options}}
        for response in _until_processed(
            client, "BatchGetItem", operation, request, "UnprocessedKeys"
        ):
            items.extend(response.get("Responses", {}).get(table, []))
    return items


def batch_delete(client: Any, table: str, keys: Sequence[dict[str, Any]], operation: str) -> int:
    """Delete the items with these keys (deleting a missing item is not an error); returns
    how many deletes were sent."""
    for start in range(0, len(keys), BATCH_WRITE_ITEMS):
        chunk = keys[start : start + BATCH_WRITE_ITEMS]
        request = {table: [{"DeleteRequest": {"Key": key}} for key in chunk]}
        for _ in _until_processed(client, "BatchWriteItem", operation, request, "UnprocessedItems"):
            pass
    return len(keys)


def _until_processed(
    client: Any, api: str, operation: str, request_items: dict[str, Any], unprocessed: str
) -> Iterator[dict[str, Any]]:
    """Each response of a batch call, sending again what it left ``unprocessed`` after a short
    wait; a :class:`StoreError` when some is still left after the last retry."""
    pending = request_items
    for delay in (0.0, *UNPROCESSED_RETRY_DELAYS):
        if delay:
            time.sleep(delay)
        response = call(client, api, operation, RequestItems=pending)
        yield response
        pending = response.get(unprocessed) or {}
        if not pending:
            return
    left = sum(len(v) if isinstance(v, list) else len(v.get("Keys", [])) for v in pending.values())
    raise StoreError(
        f"DynamoDB {api} left {left} requests unprocessed after "
        f"{len(UNPROCESSED_RETRY_DELAYS)} retries ({operation})"
    )
