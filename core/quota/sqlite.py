"""The embedded quota backend: one SQLite file, shared by every process that opens it.

A question is counted in one ``BEGIN IMMEDIATE`` transaction (read the counter, refuse or add
one), which takes SQLite's write lock first: two processes on one file are serialised by SQLite
itself, and threads of one process by the store's lock, so no limit is ever passed. Expired
counters are deleted at most once a minute, when a question is counted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.errors import StoreError
from core.quota.base import Counter, QuotaLimits, QuotaStore, Used
from core.sqlite import open_database

log = logging.getLogger(__name__)

_PURGE_INTERVAL = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quota_counters (
    scope      TEXT NOT NULL,
    day        TEXT NOT NULL,
    questions  INTEGER NOT NULL DEFAULT 0,
    tokens     INTEGER NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL,
    PRIMARY KEY (scope, day)
);
CREATE INDEX IF NOT EXISTS quota_counters_by_expiry ON quota_counters (expires_at);
"""

_READ = "SELECT questions, tokens FROM quota_counters WHERE scope = ? AND day = ?"
_ADD = """
INSERT INTO quota_counters (scope, day, questions, tokens, expires_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (scope, day) DO UPDATE SET
    questions = questions + excluded.questions,
    tokens = tokens + excluded.tokens,
    expires_at = excluded.expires_at
"""


class SqliteQuotaStore(QuotaStore):
    def __init__(
        self,
        path: Path | str,
        limits: QuotaLimits,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(limits, clock=clock)
        self._path = path
        self._lock = threading.Lock()
        self._last_purge = float("-inf")
        self._conn = open_database(path, _SCHEMA, what="quota")

    def used(self, key: str, day: str) -> Used:
        with self._lock:
            try:
                row = self._conn.execute(_READ, (key, day)).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"reading a quota counter: {exc}") from exc
        return Used(int(row[0]), int(row[1])) if row else Used()

    def _count_question(self, counter: Counter, day: str, expires: int) -> Used | None:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")  # the write lock, before the read
                try:
                    row = self._conn.execute(_READ, (counter.key, day)).fetchone()
                    found = Used(int(row[0]), int(row[1])) if row else Used()
                    if counter.refuses(found):
                        self._conn.rollback()
                        return found
                    self._conn.execute(_ADD, (counter.key, day, 1, 0, expires))
                    self._conn.commit()
                except BaseException:
                    self._conn.rollback()
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"counting a question in {self._path}: {exc}") from exc
            self._purge_expired()
        return None

    def _uncount_question(self, counter: Counter, day: str) -> None:
        self._write(
            "UPDATE quota_counters SET questions = max(questions - 1, 0)"
            " WHERE scope = ? AND day = ?",
            (counter.key, day),
            "giving back a question",
        )

    def _add_tokens(self, counter: Counter, day: str, tokens: int, expires: int) -> None:
        self._write(_ADD, (counter.key, day, 0, tokens, expires), "adding tokens")

    def _erase(self, key: str) -> int:
        return self._write("DELETE FROM quota_counters WHERE scope = ?", (key,), "erasing")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, sql: str, params: tuple[object, ...], what: str) -> int:
        with self._lock:
            try:
                with self._conn:
                    return self._conn.execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise StoreError(f"{what} in quota counters {self._path}: {exc}") from exc

    def _purge_expired(self) -> None:
        """Delete expired counters; called with the lock held. A failure is logged: the
        question was counted, and an expired day's counter is never read again."""
        now = self._clock()
        if now - self._last_purge < _PURGE_INTERVAL:
            return
        try:
            with self._conn:
                self._conn.execute("DELETE FROM quota_counters WHERE expires_at <= ?", (now,))
        except sqlite3.Error:
            log.warning("purging expired quota counters failed", exc_info=True)
            return
        self._last_purge = now
