"""The embedded history backend: one SQLite file (or ``:memory:``), no account needed.

One connection serves every thread, guarded by a lock: the local worker pool calls the store from
several threads, and SQLite serialises writers anyway, so one guarded connection is simpler than a
pool and just as fast at this size. Files use WAL so that a reader in another process (a backup,
``sqlite3`` at the shell) never blocks the service.

Rows are ordered by ``created_at`` and then by ``seq`` (insertion order), so two turns with the
same timestamp come back in the order they were stored. Expired rows are never returned and are
deleted opportunistically, at most once a minute, when a turn is appended.

Feedback lives in its own tables beside ``turns`` (``answers``: which answer a final message
carries; ``feedback``: one row per voter and answer, ids and rating only), so no query for turns
can ever return it; one conditional upsert makes a duplicate click write nothing.

Stored text is decoded leniently (invalid UTF-8 becomes U+FFFD): one damaged row must not make a
whole conversation unreadable.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.domain import ConversationKey, Role, Turn
from core.errors import StoreError, TurnAlreadyStored
from core.feedback import AnswerRef, Feedback, Rating
from core.history.base import REPLY_RECORD_SECONDS, HistoryStore, files_from_json, files_to_json
from core.sqlite import open_database

logger = logging.getLogger(__name__)

_DAY = 86_400.0
_PURGE_INTERVAL = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    seq        INTEGER PRIMARY KEY,
    conv_id    TEXT NOT NULL,
    platform   TEXT NOT NULL,
    workspace  TEXT NOT NULL,
    channel    TEXT NOT NULL,
    thread     TEXT NOT NULL,
    turn_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    user_name  TEXT NOT NULL DEFAULT '',
    text       TEXT NOT NULL,
    files      TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    UNIQUE (conv_id, turn_id)
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conv_id, created_at, seq);
CREATE INDEX IF NOT EXISTS turns_by_user ON turns (platform, workspace, user_id);
CREATE INDEX IF NOT EXISTS turns_by_expiry ON turns (expires_at);
CREATE TABLE IF NOT EXISTS reply_messages (
    conv_id    TEXT NOT NULL,
    turn_id    TEXT NOT NULL,
    platform   TEXT NOT NULL,
    workspace  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (conv_id, turn_id)
);
CREATE INDEX IF NOT EXISTS reply_messages_by_user ON reply_messages (platform, workspace, user_id);
CREATE TABLE IF NOT EXISTS answers (
    conv_id    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    answer_id  TEXT NOT NULL,
    model_id   TEXT NOT NULL,
    platform   TEXT NOT NULL,
    workspace  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (conv_id, message_id)
);
CREATE INDEX IF NOT EXISTS answers_by_user ON answers (platform, workspace, user_id);
CREATE TABLE IF NOT EXISTS feedback (
    conv_id    TEXT NOT NULL,
    answer_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    platform   TEXT NOT NULL,
    workspace  TEXT NOT NULL,
    channel    TEXT NOT NULL,
    thread     TEXT NOT NULL,
    rating     TEXT NOT NULL,
    model_id   TEXT NOT NULL,
    at         REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (conv_id, answer_id, user_id)
);
CREATE INDEX IF NOT EXISTS feedback_by_user ON feedback (platform, workspace, user_id);
"""

# One statement, so a double click racing itself writes once: the update happens only when the
# rating changed (or the earlier one expired), and ``rowcount`` says whether anything was written.
_FEEDBACK_UPSERT = """
INSERT INTO feedback (conv_id, answer_id, user_id, platform, workspace, channel, thread, rating,
                      model_id, at, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (conv_id, answer_id, user_id) DO UPDATE SET
    rating = excluded.rating, model_id = excluded.model_id, at = excluded.at,
    expires_at = excluded.expires_at
WHERE feedback.rating <> excluded.rating OR feedback.expires_at <= ?
"""

_INSERT = """
INSERT INTO turns (conv_id, platform, workspace, channel, thread, turn_id, role, user_id,
                   user_name, text, files, created_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_RECENT = """
SELECT turn_id, role, user_id, user_name, text, files, created_at
FROM turns
WHERE conv_id = ? AND expires_at > ?
ORDER BY created_at DESC, seq DESC
LIMIT ?
"""


class SqliteHistoryStore(HistoryStore):
    """History in a local SQLite database; ``path`` may be ``":memory:"`` (tests, one-offs)."""

    def __init__(
        self,
        path: Path | str,
        *,
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._retention_seconds = retention_days * _DAY
        self._clock = clock
        self._lock = threading.Lock()
        self._last_purge = float("-inf")
        self._conn = open_database(path, _SCHEMA, what="history")

    def append_turn(self, turn: Turn) -> None:
        key = turn.key
        row = (
            key.id,
            key.platform,
            key.workspace,
            key.channel,
            key.thread,
            turn.turn_id,
            turn.role.value,
            turn.user_id,
            turn.user_name,
            turn.text,
            files_to_json(turn.files),
            turn.created_at,
            turn.created_at + self._retention_seconds,
        )
        now = self._clock()
        with self._lock:
            try:
                with self._conn:
                    self._conn.execute(_INSERT, row)
            except sqlite3.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise TurnAlreadyStored(
                        f"turn {turn.turn_id} is already stored in {key.id}"
                    ) from exc
                raise StoreError(f"appending turn {turn.turn_id}: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"appending turn {turn.turn_id}: {exc}") from exc
            if now - self._last_purge >= _PURGE_INTERVAL:
                self._purge_expired(now)

    def recent_turns(self, key: ConversationKey, limit: int) -> Sequence[Turn]:
        if limit <= 0:
            return []
        now = self._clock()
        with self._lock:
            try:
                rows = self._conn.execute(_RECENT, (key.id, now, limit)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"reading recent turns of {key.id}: {exc}") from exc
        rows.reverse()
        return [_turn_from_row(key, row) for row in rows]

    def remember_reply(self, question: Turn, message_id: str) -> None:
        key = question.key
        expires = self._clock() + min(self._retention_seconds, REPLY_RECORD_SECONDS)
        row = (key.id, question.turn_id, key.platform, key.workspace, question.user_id)
        with self._lock:
            try:
                with self._conn:
                    self._conn.execute(
                        "INSERT OR REPLACE INTO reply_messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*row, message_id, expires),
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"recording the reply to {question.turn_id}: {exc}") from exc

    def reply_message(self, key: ConversationKey, turn_id: str) -> str | None:
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT message_id FROM reply_messages"
                    " WHERE conv_id = ? AND turn_id = ? AND expires_at > ?",
                    (key.id, turn_id, self._clock()),
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"reading the reply to {turn_id}: {exc}") from exc
        return str(row[0]) if row else None

    def remember_answer(self, answer: AnswerRef, message_id: str, *, asker: str = "") -> None:
        key = answer.key
        row = (key.id, message_id, answer.answer_id, answer.model_id, key.platform, key.workspace)
        expires = self._clock() + self._retention_seconds
        with self._lock:
            try:
                with self._conn:
                    self._conn.execute(
                        "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (*row, asker, expires),
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"recording the answer in {message_id}: {exc}") from exc

    def answer_for_message(self, key: ConversationKey, message_id: str) -> AnswerRef | None:
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT answer_id, model_id FROM answers"
                    " WHERE conv_id = ? AND message_id = ? AND expires_at > ?",
                    (key.id, message_id, self._clock()),
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"reading the answer in {message_id}: {exc}") from exc
        return AnswerRef(key, str(row[0]), str(row[1])) if row else None

    def record_feedback(self, feedback: Feedback, user_of_answer: str | None) -> bool:
        answer, key = feedback.answer, feedback.answer.key
        now = self._clock()
        row = (
            key.id,
            answer.answer_id,
            feedback.voter,
            key.platform,
            key.workspace,
            key.channel,
            key.thread,
            feedback.rating.value,
            answer.model_id,
            feedback.at,
            now + self._retention_seconds,
        )
        with self._lock:
            try:
                with self._conn:
                    cursor = self._conn.execute(_FEEDBACK_UPSERT, (*row, now))
            except sqlite3.Error as exc:
                raise StoreError(f"recording feedback on {answer.answer_id}: {exc}") from exc
        return cursor.rowcount > 0

    def feedback_for_answer(self, key: ConversationKey, answer_id: str) -> list[Feedback]:
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT user_id, rating, model_id, at FROM feedback"
                    " WHERE conv_id = ? AND answer_id = ? AND expires_at > ? ORDER BY user_id",
                    (key.id, answer_id, self._clock()),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"reading feedback on {answer_id}: {exc}") from exc
        return [
            Feedback(AnswerRef(key, answer_id, str(model)), str(voter), Rating(rating), float(at))
            for voter, rating, model, at in rows
        ]

    def delete_user_data(self, platform: str, workspace: str, user_id: str) -> int:
        deleted = 0
        with self._lock:
            try:
                with self._conn:
                    for table in ("turns", "reply_messages", "answers", "feedback"):
                        cursor = self._conn.execute(
                            f"DELETE FROM {table}"  # noqa: S608 - a fixed table name
                            " WHERE platform = ? AND workspace = ? AND user_id = ?",
                            (platform, workspace, user_id),
                        )
                        deleted += cursor.rowcount
            except sqlite3.Error as exc:
                raise StoreError(f"deleting user data of {platform}/{workspace}: {exc}") from exc
        return deleted

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _purge_expired(self, now: float) -> None:
        """Delete expired rows; called with the lock held. A failure here is logged, not raised:
        the turn was stored, and expired rows are filtered on read anyway."""
        try:
            with self._conn:
                cursor = self._conn.execute("DELETE FROM turns WHERE expires_at <= ?", (now,))
                for table in ("reply_messages", "answers", "feedback"):
                    self._conn.execute(
                        f"DELETE FROM {table} WHERE expires_at <= ?",  # noqa: S608 - fixed name
                        (now,),
                    )
        except sqlite3.Error:
            logger.warning("purging expired history turns failed", exc_info=True)
            return
        self._last_purge = now
        if cursor.rowcount:
            logger.info("purged %d expired history turns", cursor.rowcount)


def _is_unique_violation(exc: sqlite3.IntegrityError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY") or (
        "UNIQUE constraint failed" in str(exc)
    )


def _turn_from_row(key: ConversationKey, row: Sequence[Any]) -> Turn:
    turn_id, role, user_id, user_name, text, files, created_at = row
    return Turn(
        key=key,
        turn_id=turn_id,
        role=Role(role),
        user_id=user_id,
        user_name=user_name,
        text=text,
        created_at=float(created_at),
        files=files_from_json(files),
    )
