"""The call journal in an SQLite file (one node): see :mod:`pbxbridge.journal.store`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pbxbridge.journal.store import PURGE_BATCH_ROWS, PURGE_SET, _SqlJournal
from pbxbridge.storage.schema import JOURNAL_SQLITE_MIGRATIONS
from pbxbridge.storage.sqlite import (
    immediate_transaction,
    migrate_sqlite,
    open_migrated,
    user_version,
)


class SqliteJournal(_SqlJournal):
    """The journal in an SQLite file (a single node).

    WAL mode lets reports read while the writer writes; ``busy_timeout`` makes a
    writer wait for another's transaction instead of failing at once. Commits
    are synchronous (``synchronous=FULL``): the writer commits a batch every
    half second, so durability across power loss costs next to nothing.

    Args:
        path: The database file; its folder is created when missing.
        busy_timeout: Seconds to wait for a lock before giving up (the writer
            then spools and retries).
    """

    _PURGE = (
        PURGE_SET + " WHERE purged_at IS NULL AND rowid IN (SELECT rowid" + PURGE_BATCH_ROWS + ")"
    )

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self._db = open_migrated(
            self.path,
            lambda db: migrate_sqlite(db, JOURNAL_SQLITE_MIGRATIONS),
            busy_timeout=busy_timeout,
            pragmas=("PRAGMA synchronous=FULL",),
        )

    @property
    def schema_version(self) -> int:
        """The schema version of the file (``PRAGMA user_version``)."""
        with self._lock:
            return user_version(self._db)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, immediate_transaction(self._db) as db:
            yield db

    def _time(self, value: datetime) -> float:
        return value.timestamp()

    def _from_time(self, value: Any) -> datetime:
        return datetime.fromtimestamp(float(value), UTC)

    def _bool(self, value: bool) -> int:
        return int(value)

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        with self._tx() as db:
            return db.execute(sql, params).rowcount

    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._tx() as db:
            db.executemany(sql, rows)

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:  # noqa: D102 - see base
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def is_transient(self, exc: BaseException) -> bool:  # noqa: D102 - see base
        # OperationalError: locked/busy, disk I/O, cannot open. Integrity and
        # programming errors are about the data or the code: not transient.
        return isinstance(exc, sqlite3.OperationalError | OSError)
