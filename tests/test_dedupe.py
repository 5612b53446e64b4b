"""Durable dedupe on both persistence backends: one answer per event, retries after failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    DynamoDBPersistenceLayer,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from moto import mock_aws

from core.config import Settings
from core.dedupe import DedupedHandler, build_persistence
from core.dedupe.sqlite import SqlitePersistenceLayer
from core.jobs import Job


@pytest.fixture(params=["sqlite", "dynamodb"])
def persistence(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BasePersistenceLayer]:
    if request.param == "sqlite":
        yield build_persistence(Settings(data_dir=tmp_path))
        return
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="chatbot-idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        layer = build_persistence(Settings(store="dynamodb"))
        assert isinstance(layer, DynamoDBPersistenceLayer)
        yield layer


def job(dedupe_id: str) -> Job:
    return Job("slack.message", "slack#T1#C1#1.0", dedupe_id, {"text": "hi"})


def test_a_redelivered_job_runs_once(persistence: BasePersistenceLayer) -> None:
    seen: list[str] = []
    handler = DedupedHandler(lambda j: seen.append(j.dedupe_id), persistence)
    assert handler(job("Ev1")) is True
    assert handler(job("Ev1")) is False
    assert handler(job("Ev1")) is False
    assert handler(job("Ev2")) is True
    assert seen == ["Ev1", "Ev2"]


def test_a_job_that_failed_is_answered_when_it_comes_again(
    persistence: BasePersistenceLayer,
) -> None:
    attempts: list[int] = []

    def flaky(j: Job) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("slack unreachable")

    handler = DedupedHandler(flaky, persistence)
    with pytest.raises(ConnectionError):
        handler(job("Ev3"))
    assert handler(job("Ev3")) is True
    assert handler(job("Ev3")) is False
    assert len(attempts) == 2


def test_the_payload_reaches_the_handler_intact(persistence: BasePersistenceLayer) -> None:
    got: list[Job] = []
    DedupedHandler(got.append, persistence)(job("Ev4"))
    assert got == [job("Ev4")]


def test_a_job_still_in_progress_elsewhere_is_not_run_twice(tmp_path: Path) -> None:
    layer = SqlitePersistenceLayer(tmp_path / "i.sqlite3")
    started: list[str] = []

    def reentrant(j: Job) -> None:
        started.append(j.dedupe_id)
        # The same event arrives again while the first delivery is still being answered.
        with pytest.raises(IdempotencyAlreadyInProgressError):
            handler(j)

    handler = DedupedHandler(reentrant, layer)
    assert handler(job("Ev5")) is True
    assert started == ["Ev5"]


def test_records_expire_so_the_table_does_not_grow_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as real_time

    layer = SqlitePersistenceLayer(tmp_path / "i.sqlite3")
    seen: list[str] = []
    handler = DedupedHandler(lambda j: seen.append(j.dedupe_id), layer, expires_after_seconds=60)
    handler(job("Ev6"))
    later = real_time.time() + 61
    monkeypatch.setattr("core.dedupe.sqlite.time.time", lambda: later)
    assert handler(job("Ev6")) is True  # the old record expired: a brand-new delivery
    assert seen == ["Ev6", "Ev6"]
