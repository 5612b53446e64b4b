"""A Powertools idempotency persistence layer on SQLite: the embedded twin of its DynamoDB one.

Same record, same rules: a record can be (re)written only when none exists, when it has expired,
or when it is in progress and its in-progress expiry has passed; anything else raises
``IdempotencyItemAlreadyExistsError`` with the record found, exactly as the DynamoDB layer does.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (
    STATUS_CONSTANTS,
    DataRecord,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    id                     TEXT PRIMARY KEY,
    status                 TEXT NOT NULL,
    expiration             INTEGER NOT NULL,
    in_progress_expiration INTEGER,
    data                   TEXT NOT NULL DEFAULT '',
    validation             TEXT NOT NULL DEFAULT ''
)
"""


class SqlitePersistenceLayer(BasePersistenceLayer):
    def __init__(self, path: Path | str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def _get_record(self, idempotency_key: str) -> DataRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT id, status, expiration, in_progress_expiration, data, validation "
                "FROM idempotency WHERE id = ?",
                (idempotency_key,),
            ).fetchone()
        if row is None:
            raise IdempotencyItemNotFoundError
        return _record(row)

    def _put_record(self, data_record: DataRecord) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id, status, expiration, in_progress_expiration, data, validation "
                    "FROM idempotency WHERE id = ?",
                    (data_record.idempotency_key,),
                ).fetchone()
                if row is not None and not _replaceable(_record(row), now):
                    raise IdempotencyItemAlreadyExistsError(old_data_record=_record(row))
                self._db.execute(
                    "INSERT OR REPLACE INTO idempotency "
                    "(id, status, expiration, in_progress_expiration, data, validation) "
                    "VALUES (?, ?, ?, ?, '', ?)",
                    (
                        data_record.idempotency_key,
                        data_record.status,
                        data_record.expiry_timestamp,
                        data_record.in_progress_expiry_timestamp,
                        data_record.payload_hash if self.payload_validation_enabled else "",
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _update_record(self, data_record: DataRecord) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE idempotency SET status = ?, expiration = ?, data = ? WHERE id = ?",
                (
                    data_record.status,
                    data_record.expiry_timestamp,
                    data_record.response_data or "",
                    data_record.idempotency_key,
                ),
            )

    def _delete_record(self, data_record: DataRecord) -> None:
        with self._lock:
            self._db.execute("DELETE FROM idempotency WHERE id = ?", (data_record.idempotency_key,))

    def clear_in_progress(self) -> int:
        """Delete every record still marked in progress; returns how many there were.

        For a host that owns this file alone, at start-up: none of its jobs can be running
        yet, so such a mark is left by a run that died mid-job, and would refuse that job's
        redelivery as "already in progress" until the mark lapses. Completed records stay:
        they keep a redelivered job that did finish from running twice."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM idempotency WHERE status = ?", (STATUS_CONSTANTS["INPROGRESS"],)
            )
        return cursor.rowcount


def _record(row: tuple[str, str, int, int | None, str, str]) -> DataRecord:
    return DataRecord(
        idempotency_key=row[0],
        status=row[1],
        expiry_timestamp=row[2],
        in_progress_expiry_timestamp=row[3],
        response_data=row[4],
        payload_hash=row[5],
    )


def _replaceable(existing: DataRecord, now: float) -> bool:
    if existing.expiry_timestamp is not None and existing.expiry_timestamp < now:
        return True
    return (
        existing.status == STATUS_CONSTANTS["INPROGRESS"]
        and existing.in_progress_expiry_timestamp is not None
        and existing.in_progress_expiry_timestamp < now * 1000
    )
