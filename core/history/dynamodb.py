"""The AWS history backend: one DynamoDB table, single-table design.

Item layout (every attribute a plain DynamoDB type, so the table reads well in the console)::

    pk          S  "CONV#" + ConversationKey.id        e.g. CONV#slack#T1#C1#1700000000.000100
    sk          S  "TURN#" + created_at in ms (15 digits, zero-padded) + "#" + turn_id,
                   or "REPLY#" + turn_id: the message carrying the answer to that question
                   (``message_id`` S), so a job redelivered after a crash finishes it,
                   or "ANSWER#" + message_id: the answer a final message carries
                   (``answer_id`` S, ``model_id`` S), so a feedback click naming only the
                   message finds its answer (under the asker's user key),
                   or "FEEDBACK#" + answer_id + "#" + voter: one person's rating of one answer
                   (``answer_id``, ``user_id`` = the voter, ``rating``, ``model_id`` S, ``at`` N;
                   no text), under the voter's user key
    gsi1pk      S  "USER#{platform}#{workspace}#{user_id}"   (index "by-user")
    gsi1sk      S  same as sk
    turn_id     S
    role        S  "user" | "assistant"
    user_id     S
    user_name   S
    text        S
    files       S  JSON list of FileRef fields
    created_at  N  epoch seconds, full precision
    expires_at  N  epoch seconds (created_at + retention, rounded up): the table's TTL attribute

Why this shape:

- A thread's turns share a partition and sort by time, so "the newest N turns" is one query read
  backwards. Turns stored in the same millisecond sort by ``turn_id``.
- A redelivered event carries the same platform timestamp and id, so it maps to the same
  ``sk``; ``attribute_not_exists(pk)`` then refuses the duplicate (``TurnAlreadyStored``).
- The ``by-user`` index (projection ALL) finds one person's turns in one workspace, user and
  assistant turns alike, so they can be erased on request; their reply and answer records and
  the ratings they gave are under the same key and go with them.
- A rating is one conditional ``PutItem`` (``attribute_not_exists(pk) OR rating <> :r``): a
  double click or a redelivered click is refused by the table itself, a changed mind replaces.
- ``recent_turns`` reads only ``begins_with(sk, "TURN#")``: no record of another kind is ever
  returned as a turn.
- DynamoDB's TTL deletes expired items lazily, up to days late (and moto never deletes them), so
  reads filter on ``expires_at`` as well.

The table definition lives in :func:`table_definition` and :func:`create_table`; tests and the
local tooling use them, and ``infra/`` must describe the same table.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from core import dynamodb
from core.domain import ConversationKey, Role, Turn
from core.errors import TurnAlreadyStored
from core.feedback import AnswerRef, Feedback, Rating
from core.history.base import REPLY_RECORD_SECONDS, HistoryStore, files_from_json, files_to_json

logger = logging.getLogger(__name__)

USER_INDEX = "by-user"
TTL_ATTRIBUTE = "expires_at"

_DAY = 86_400


def table_definition(table_name: str) -> dict[str, Any]:
    """The exact ``CreateTable`` arguments for the history table."""
    return dynamodb.table_definition(table_name, index=USER_INDEX)


def create_table(client: Any, table_name: str) -> None:
    """Create the history table with TTL on ``{TTL_ATTRIBUTE}`` (tooling and tests)."""
    dynamodb.create_table(client, table_definition(table_name), ttl_attribute=TTL_ATTRIBUTE)


def conversation_pk(key: ConversationKey) -> str:
    return f"CONV#{key.id}"


def turn_sk(created_at: float, turn_id: str) -> str:
    return f"TURN#{max(0, int(created_at * 1000)):015d}#{turn_id}"


def reply_sk(turn_id: str) -> str:
    """Beside the turns (``TURN#...``), never read by :meth:`recent_turns`."""
    return "REPLY#" + turn_id


def answer_sk(message_id: str) -> str:
    return "ANSWER#" + message_id


def feedback_sk(answer_id: str, voter: str) -> str:
    return f"FEEDBACK#{answer_id}#{voter}"


def user_pk(platform: str, workspace: str, user_id: str) -> str:
    return f"USER#{platform}#{workspace}#{user_id}"


class DynamoDbHistoryStore(HistoryStore):
    """History in a DynamoDB table made by :func:`create_table` (or the SAM template).

    Build one per process: the boto3 client is made here, once, and is thread-safe. Its endpoint
    comes from boto3's configuration (``AWS_ENDPOINT_URL_DYNAMODB`` points it elsewhere).
    """

    def __init__(
        self,
        table_name: str,
        *,
        region: str,
        retention_days: int = 30,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table_name
        self._retention_seconds = retention_days * _DAY
        self._clock = clock
        self._client: Any = client if client is not None else dynamodb.make_client(region)

    def append_turn(self, turn: Turn) -> None:
        sk = turn_sk(turn.created_at, turn.turn_id)
        item = {
            "pk": {"S": conversation_pk(turn.key)},
            "sk": {"S": sk},
            "gsi1pk": {"S": user_pk(turn.key.platform, turn.key.workspace, turn.user_id)},
            "gsi1sk": {"S": sk},
            "turn_id": {"S": turn.turn_id},
            "role": {"S": turn.role.value},
            "user_id": {"S": turn.user_id},
            "user_name": {"S": turn.user_name},
            "text": {"S": turn.text},
            "files": {"S": files_to_json(turn.files)},
            "created_at": {"N": repr(float(turn.created_at))},
            TTL_ATTRIBUTE: {"N": str(math.ceil(turn.created_at + self._retention_seconds))},
        }
        try:
            dynamodb.call(
                self._client,
                "PutItem",
                "appending a turn",
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except dynamodb.ConditionFailed as exc:
            raise TurnAlreadyStored(
                f"turn {turn.turn_id} is already stored in {turn.key.id}"
            ) from exc.__cause__

    def recent_turns(self, key: ConversationKey, limit: int) -> Sequence[Turn]:
        if limit <= 0:
            return []
        now = self._clock()
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :turn)",
            "FilterExpression": "#expires > :now",
            "ExpressionAttributeNames": {"#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":pk": {"S": conversation_pk(key)},
                ":turn": {"S": "TURN#"},
                ":now": {"N": repr(float(now))},
            },
            "ScanIndexForward": False,  # newest first
            "ConsistentRead": True,  # the next message in a thread must see the last answer
            "Limit": limit,  # items evaluated per page: reads only what the answer needs
        }
        newest_first: list[Turn] = []
        for item in dynamodb.query(self._client, "reading recent turns", **request):
            newest_first.append(_turn_from_item(key, item))
            if len(newest_first) == limit:
                break
        newest_first.reverse()
        return newest_first

    def remember_reply(self, question: Turn, message_id: str) -> None:
        key = question.key
        sk = reply_sk(question.turn_id)
        expires = self._clock() + min(self._retention_seconds, REPLY_RECORD_SECONDS)
        item = {
            "pk": {"S": conversation_pk(key)},
            "sk": {"S": sk},
            # Under the asker, like the turns: erasing a person's data erases these too.
            "gsi1pk": {"S": user_pk(key.platform, key.workspace, question.user_id)},
            "gsi1sk": {"S": sk},
            "message_id": {"S": message_id},
            TTL_ATTRIBUTE: {"N": str(math.ceil(expires))},
        }
        dynamodb.call(
            self._client, "PutItem", "recording a reply message", TableName=self._table, Item=item
        )

    def reply_message(self, key: ConversationKey, turn_id: str) -> str | None:
        item = dynamodb.call(
            self._client,
            "GetItem",
            "reading a reply message",
            TableName=self._table,
            Key={"pk": {"S": conversation_pk(key)}, "sk": {"S": reply_sk(turn_id)}},
            ConsistentRead=True,
        ).get("Item")
        if not item or float(item[TTL_ATTRIBUTE]["N"]) <= self._clock():
            return None
        return str(item["message_id"]["S"])

    def remember_answer(self, answer: AnswerRef, message_id: str, *, asker: str = "") -> None:
        key = answer.key
        sk = answer_sk(message_id)
        item: dict[str, Any] = {
            "pk": {"S": conversation_pk(key)},
            "sk": {"S": sk},
            "answer_id": {"S": answer.answer_id},
            "model_id": {"S": answer.model_id},
            TTL_ATTRIBUTE: {"N": str(math.ceil(self._clock() + self._retention_seconds))},
        }
        if asker:  # under the asker, like the turns: erasing a person's data erases these too
            item["gsi1pk"] = {"S": user_pk(key.platform, key.workspace, asker)}
            item["gsi1sk"] = {"S": sk}
        dynamodb.call(
            self._client, "PutItem", "recording an answer message", TableName=self._table, Item=item
        )

    def answer_for_message(self, key: ConversationKey, message_id: str) -> AnswerRef | None:
        item = dynamodb.call(
            self._client,
            "GetItem",
            "reading an answer message",
            TableName=self._table,
            Key={"pk": {"S": conversation_pk(key)}, "sk": {"S": answer_sk(message_id)}},
            ConsistentRead=True,
        ).get("Item")
        if not item or float(item[TTL_ATTRIBUTE]["N"]) <= self._clock():
            return None
        return AnswerRef(key, str(item["answer_id"]["S"]), str(item["model_id"]["S"]))

    def record_feedback(self, feedback: Feedback, user_of_answer: str | None) -> bool:
        answer, key = feedback.answer, feedback.answer.key
        now = self._clock()
        sk = feedback_sk(answer.answer_id, feedback.voter)
        item = {
            "pk": {"S": conversation_pk(key)},
            "sk": {"S": sk},
            "gsi1pk": {"S": user_pk(key.platform, key.workspace, feedback.voter)},
            "gsi1sk": {"S": sk},
            "answer_id": {"S": answer.answer_id},
            "user_id": {"S": feedback.voter},
            "rating": {"S": feedback.rating.value},
            "model_id": {"S": answer.model_id},
            "at": {"N": repr(float(feedback.at))},
            TTL_ATTRIBUTE: {"N": str(math.ceil(now + self._retention_seconds))},
        }
        try:
            dynamodb.call(
                self._client,
                "PutItem",
                "recording feedback",
                TableName=self._table,
                Item=item,
                # The same rating again (unexpired) is refused by the table: nothing changes.
                ConditionExpression="attribute_not_exists(pk) OR #rating <> :rating"
                " OR #expires <= :now",
                ExpressionAttributeNames={"#rating": "rating", "#expires": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":rating": {"S": feedback.rating.value},
                    ":now": {"N": repr(float(now))},
                },
            )
        except dynamodb.ConditionFailed:
            return False
        return True

    def feedback_for_answer(self, key: ConversationKey, answer_id: str) -> list[Feedback]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "#expires > :now AND answer_id = :answer",
            "ExpressionAttributeNames": {"#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":pk": {"S": conversation_pk(key)},
                ":prefix": {"S": feedback_sk(answer_id, "")},
                ":answer": {"S": answer_id},
                ":now": {"N": repr(float(self._clock()))},
            },
            "ConsistentRead": True,
        }
        return [
            Feedback(
                AnswerRef(key, answer_id, str(item["model_id"]["S"])),
                str(item["user_id"]["S"]),
                Rating(item["rating"]["S"]),
                float(item["at"]["N"]),
            )
            for item in dynamodb.query(self._client, "reading feedback", **request)
        ]

    def delete_user_data(self, platform: str, workspace: str, user_id: str) -> int:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": USER_INDEX,
            "KeyConditionExpression": "gsi1pk = :user",
            "ExpressionAttributeValues": {":user": {"S": user_pk(platform, workspace, user_id)}},
            "ProjectionExpression": "pk, sk",
        }
        deleted = 0
        batch: list[dict[str, Any]] = []
        for item in dynamodb.query(self._client, "finding a user's turns", **request):
            batch.append({"pk": item["pk"], "sk": item["sk"]})
            if len(batch) == dynamodb.BATCH_WRITE_ITEMS:
                deleted += self._delete(batch)
                batch = []
        return deleted + (self._delete(batch) if batch else 0)

    def _delete(self, keys: list[dict[str, Any]]) -> int:
        return dynamodb.batch_delete(self._client, self._table, keys, "deleting a user's turns")


def _turn_from_item(key: ConversationKey, item: dict[str, Any]) -> Turn:
    def text(name: str) -> str:
        return str(item.get(name, {}).get("S", ""))

    return Turn(
        key=key,
        turn_id=text("turn_id"),
        role=Role(text("role")),
        user_id=text("user_id"),
        user_name=text("user_name"),
        text=text("text"),
        created_at=float(item["created_at"]["N"]),
        files=files_from_json(text("files")),
    )
