"""The shared rate budget: one DynamoDB item per scope, so every container counts together.

On AWS several worker containers answer in one Slack workspace at once; a budget per process
would let the deployment as a whole exceed Slack's limits. Each scope is one item::

    scope       S  the scope key, e.g. "slack:T1:chat.update"
    state       S  the scope's WindowState as JSON (recent calls, open replies, waiting finals)
    version     N  optimistic-concurrency counter
    expires_at  N  epoch seconds: the table's TTL attribute (an idle scope disappears)

A decision is one consistent read and one conditional write (``version`` unchanged): the same
:func:`core.budget.base.decide` as in process, over wall-clock time, which container clocks
agree on closely enough for windows of seconds. A lost race is simply decided again.

If the table cannot be reached (throttled, missing, no permission, network), the budget falls
back to an in-process one for a while and says so in the log: replies go on, each container
then keeping under the limit on its own.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.aws import store_client
from core.budget.base import (
    DEFAULT_REPLY_TTL_SECONDS,
    Priority,
    Scope,
    WindowState,
    admit_reply,
    close_reply,
    decide,
    open_reply,
)
from core.budget.local import LocalRateBudget

log = logging.getLogger(__name__)

FALLBACK_SECONDS = 30.0
_MAX_RACES = 8
_MAX_RACES_BOOKKEEPING = 40  # an open or a close must land: it changes no window, only room
_RACE_LOST_WAIT = 0.1


def table_definition(table_name: str) -> dict[str, Any]:
    """The exact ``CreateTable`` arguments; ``infra/`` describes the same table."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "scope", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "scope", "KeyType": "HASH"}],
    }


class DynamoDbRateBudget:
    def __init__(
        self,
        table_name: str,
        *,
        region: str,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        reply_ttl: float = DEFAULT_REPLY_TTL_SECONDS,
    ) -> None:
        self._table = table_name
        # Short reads: a budget that cannot answer quickly is replaced by the local one.
        self._client = client or store_client("dynamodb", region, read_timeout=2.0)
        self._clock = clock
        self._reply_ttl = reply_ttl
        self._fallback = LocalRateBudget(clock=clock, reply_ttl=reply_ttl)
        self._fallback_until = 0.0
        self._lock = threading.Lock()
        # Replies that ended while the table was out of reach: closed there once it is back,
        # so their reservations do not outlive them.
        self._pending_closes: dict[str, set[str]] = {}

    def open(self, scope: Scope, holder: str) -> None:
        def change(state: WindowState, now: float) -> float:
            open_reply(state, scope, now, holder, self._reply_ttl)
            return 0.0

        if self._shared(scope, change, races=_MAX_RACES_BOOKKEEPING) is None:
            self._fallback.open(scope, holder)

    def take(self, scope: Scope, holder: str, priority: Priority, *, closes: bool = False) -> float:
        def change(state: WindowState, now: float) -> float:
            ttl = self._reply_ttl
            return decide(state, scope, now, holder, priority, closes=closes, reply_ttl=ttl)

        wait = self._shared(scope, change)
        if wait is None:
            return self._fallback.take(scope, holder, priority, closes=closes)
        return wait

    def close(self, scope: Scope, holder: str) -> None:
        def change(state: WindowState, now: float) -> float:
            close_reply(state, scope, now, holder)
            return 0.0

        if self._shared(scope, change, races=_MAX_RACES_BOOKKEEPING) is None:
            self._fallback.close(scope, holder)
            with self._lock:
                self._pending_closes.setdefault(scope.key, set()).add(holder)

    def admit(self, scope: Scope, holder: str) -> bool:
        """Admitted only on a write that landed; a lost race (contention) is a refusal, which
        the caller survives (a refused reply takes another way)."""
        admitted = False

        def change(state: WindowState, now: float) -> float:
            nonlocal admitted
            admitted = admit_reply(state, scope, now, holder, self._reply_ttl)
            return 0.0 if admitted else 1.0

        result = self._shared(scope, change)
        if result is None:
            return self._fallback.admit(scope, holder)
        return result == 0.0 and admitted

    def _shared(
        self,
        scope: Scope,
        change: Callable[[WindowState, float], float],
        *,
        races: int = _MAX_RACES,
    ) -> float | None:
        """Apply ``change`` to the scope's item; None when the table cannot be used now.

        Each write also carries over what happened while the table was out of reach: the
        calls counted in process meanwhile (so the window holds them) and the replies that
        ended meanwhile (so their reservations end too)."""
        if self._clock() < self._fallback_until:
            return None
        with self._lock:
            closes = set(self._pending_closes.get(scope.key, ()))
        counted = self._fallback.recent_stamps(scope)
        try:
            for _ in range(races):
                found = self._client.get_item(
                    TableName=self._table, Key={"scope": {"S": scope.key}}, ConsistentRead=True
                ).get("Item")
                version = int(found["version"]["N"]) if found else 0
                state = WindowState.from_json(found["state"]["S"]) if found else WindowState()
                now = self._clock()
                before = state.to_json()
                if counted:
                    state.stamps = sorted(state.stamps + counted)
                for holder in closes:
                    close_reply(state, scope, now, holder)
                result = change(state, now)
                if state.to_json() == before:
                    return result  # nothing to write (a refusal that changed no hold)
                if self._write(scope, state, version, now):
                    self._carried_over(scope, closes, counted)
                    return result
            log.info("rate budget contended; asking again shortly", extra={"scope": scope.key})
            return _RACE_LOST_WAIT
        except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
            code = exc.response["Error"].get("Code", "") if isinstance(exc, ClientError) else ""
            log.warning(
                "shared rate budget unavailable; counting in this process for a while",
                extra={"scope": scope.key, "cause": code or type(exc).__name__},
            )
            self._fallback_until = self._clock() + FALLBACK_SECONDS
            return None

    def _carried_over(self, scope: Scope, closes: set[str], counted: list[float]) -> None:
        if counted:
            self._fallback.forget(scope)
        if closes:
            with self._lock:
                left = self._pending_closes.get(scope.key, set()) - closes
                if left:
                    self._pending_closes[scope.key] = left
                else:
                    self._pending_closes.pop(scope.key, None)

    def _write(self, scope: Scope, state: WindowState, version: int, now: float) -> bool:
        keep = max([now + scope.horizon, *(exp for exp, _ in state.open.values())])
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "scope": {"S": scope.key},
                    "state": {"S": state.to_json()},
                    "version": {"N": str(version + 1)},
                    "expires_at": {"N": str(math.ceil(keep) + 3600)},
                },
                ConditionExpression="attribute_not_exists(#s) OR #v = :v",
                ExpressionAttributeNames={"#s": "scope", "#v": "version"},
                ExpressionAttributeValues={":v": {"N": str(version)}},
            )
        except ClientError as exc:
            if exc.response["Error"].get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
