"""Wraps a job handler so that each job (by its ``dedupe_id``) runs to completion at most once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from core.config import Settings
from core.jobs import Job

log = logging.getLogger(__name__)

# Long enough to outlive every platform redelivery (Slack's last retry comes after minutes;
# SQS redrives after the visibility timeout), short enough to keep the table small.
RECORD_TTL_SECONDS = 24 * 3600


def build_persistence(settings: Settings) -> BasePersistenceLayer:
    if settings.store == "dynamodb":
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        return DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
    from core.dedupe.sqlite import SqlitePersistenceLayer

    return SqlitePersistenceLayer(settings.data_dir / "idempotency.sqlite3")


class DedupedHandler:
    """``handler(job)`` runs at most once per ``dedupe_id`` while its record lives.

    A job whose handler raised leaves no record, so its redelivery runs again. Returns True if
    the handler ran, False if the job was a duplicate and was skipped.
    """

    def __init__(
        self,
        handle: Callable[[Job], object],
        persistence: BasePersistenceLayer,
        *,
        expires_after_seconds: int = RECORD_TTL_SECONDS,
        in_progress_seconds: int = 300,
    ) -> None:
        self.config = IdempotencyConfig(
            event_key_jmespath="dedupe_id",
            expires_after_seconds=expires_after_seconds,
            raise_on_no_idempotency_key=True,
        )
        # A job that dies mid-way (its process killed) must not block its redelivery forever:
        # the in-progress mark lapses after this long. The Lambda worker replaces this with the
        # invocation's real deadline through ``register_lambda_context``.
        self.config.register_lambda_context(_Deadline(in_progress_seconds))  # type: ignore[arg-type]
        self._ran = threading.local()

        @idempotent_function(  # type: ignore[untyped-decorator]
            data_keyword_argument="job", persistence_store=persistence, config=self.config
        )
        def run(job: dict[str, Any]) -> dict[str, bool]:
            self._ran.stack[-1] = True
            handle(Job(**job))
            return {"done": True}

        self._run = run

    def __call__(self, job: Job) -> bool:
        stack: list[bool] = self._ran.__dict__.setdefault("stack", [])
        stack.append(False)
        try:
            self._run(job=asdict(job))
            ran = stack[-1]
        finally:
            stack.pop()
        if not ran:
            log.info("duplicate job skipped", extra={"job_id": job.dedupe_id, "job_kind": job.kind})
        return ran


class _Deadline:
    """The one method of a Lambda context that Powertools' idempotency reads."""

    def __init__(self, seconds: int) -> None:
        self._millis = seconds * 1000

    def get_remaining_time_in_millis(self) -> int:
        return self._millis
