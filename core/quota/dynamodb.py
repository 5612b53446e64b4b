"""The AWS quota backend: one DynamoDB item per (scope, day), shared by every worker container.

Item layout::

    pk          S  the scope: "user#{platform}#{workspace}#{user_id}" or
                   "workspace#{platform}#{workspace}"
    sk          S  the UTC day, "2026-11-30"
    questions   N  questions counted that day
    tokens      N  tokens added that day
    expires_at  N  epoch seconds, two days after the day began: the table's TTL attribute

A question is one ``UpdateItem`` with ``ADD questions :one`` and a ``ConditionExpression`` that
holds only below the limits, so the check and the count are one atomic write however many
containers race; a refused write changes nothing and returns the item it found
(``ReturnValuesOnConditionCheckFailure``), so the refusal can say which limit was reached.
Tokens are an unconditional ``ADD``. A person's counters share a partition, so erasing them is
one query and one batch delete.

The table definition lives in :func:`table_definition`; ``infra/`` must describe the same table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core import dynamodb
from core.quota.base import Counter, QuotaLimits, QuotaStore, Used

TTL_ATTRIBUTE = "expires_at"


def table_definition(table_name: str) -> dict[str, Any]:
    """The exact ``CreateTable`` arguments for the quota table."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "SSESpecification": {"Enabled": True},
    }


def create_table(client: Any, table_name: str) -> None:
    """Create the quota table with TTL on ``{TTL_ATTRIBUTE}`` (tooling and tests)."""
    dynamodb.create_table(client, table_definition(table_name), ttl_attribute=TTL_ATTRIBUTE)


class DynamoDbQuotaStore(QuotaStore):
    """Quota counters in a table made by :func:`create_table` (or the SAM template)."""

    def __init__(
        self,
        table_name: str,
        limits: QuotaLimits,
        *,
        region: str,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(limits, clock=clock)
        self._table = table_name
        self._client: Any = client if client is not None else dynamodb.make_client(region)

    def used(self, key: str, day: str) -> Used:
        item = dynamodb.call(
            self._client,
            "GetItem",
            "reading a quota counter",
            TableName=self._table,
            Key=_key(key, day),
            ConsistentRead=True,
        ).get("Item")
        return _used(item or {})

    def _count_question(self, counter: Counter, day: str, expires: int) -> Used | None:
        names = {"#q": "questions", "#e": TTL_ATTRIBUTE}
        values = {":one": {"N": "1"}, ":expires": {"N": str(expires)}}
        conditions = []
        if counter.questions:
            conditions.append("(attribute_not_exists(#q) OR #q < :max_q)")
            values[":max_q"] = {"N": str(counter.questions)}
        if counter.tokens:
            names["#t"] = "tokens"
            conditions.append("(attribute_not_exists(#t) OR #t < :max_t)")
            values[":max_t"] = {"N": str(counter.tokens)}
        condition = {"ConditionExpression": " AND ".join(conditions)} if conditions else {}
        try:
            dynamodb.call(
                self._client,
                "UpdateItem",
                "counting a question",
                TableName=self._table,
                Key=_key(counter.key, day),
                UpdateExpression="ADD #q :one SET #e = :expires",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **condition,
            )
        except dynamodb.ConditionFailed as exc:
            response = getattr(exc.__cause__, "response", None) or {}
            return _used(response.get("Item") or {})
        return None

    def _uncount_question(self, counter: Counter, day: str) -> None:
        dynamodb.call(
            self._client,
            "UpdateItem",
            "giving back a question",
            TableName=self._table,
            Key=_key(counter.key, day),
            UpdateExpression="ADD #q :minus_one",
            ConditionExpression="attribute_exists(#q)",
            ExpressionAttributeNames={"#q": "questions"},
            ExpressionAttributeValues={":minus_one": {"N": "-1"}},
        )

    def _add_tokens(self, counter: Counter, day: str, tokens: int, expires: int) -> None:
        dynamodb.call(
            self._client,
            "UpdateItem",
            "adding tokens",
            TableName=self._table,
            Key=_key(counter.key, day),
            UpdateExpression="ADD #t :tokens SET #e = :expires",
            ExpressionAttributeNames={"#t": "tokens", "#e": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":tokens": {"N": str(tokens)},
                ":expires": {"N": str(expires)},
            },
        )

    def _erase(self, key: str) -> int:
        keys = [
            {"pk": item["pk"], "sk": item["sk"]}
            for item in dynamodb.query(
                self._client,
                "finding a person's quota counters",
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": key}},
                ProjectionExpression="pk, sk",
                ConsistentRead=True,
            )
        ]
        if not keys:
            return 0
        return dynamodb.batch_delete(self._client, self._table, keys, "erasing quota counters")


def _key(key: str, day: str) -> dict[str, Any]:
    return {"pk": {"S": key}, "sk": {"S": day}}


def _used(item: dict[str, Any]) -> Used:
    def number(name: str) -> int:
        return int(item.get(name, {}).get("N", "0"))

    return Used(number("questions"), number("tokens"))
