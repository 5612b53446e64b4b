"""The one way the embedded stores open SQLite: shared by history and knowledge."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.errors import StoreError
from core.text import decode_lenient


def open_database(path: Path | str, schema: str, *, what: str) -> sqlite3.Connection:
    """A connection usable from several threads (callers hold their own lock), with WAL for
    files, stored text decoded leniently (invalid UTF-8 becomes U+FFFD, never an exception),
    and ``schema`` applied. Failures become a StoreError naming ``what`` and the path."""
    in_memory = str(path) == ":memory:"
    try:
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
        conn.text_factory = decode_lenient
        if not in_memory:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        with conn:
            conn.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"opening {what} database {path}: {exc}") from exc
    return conn
