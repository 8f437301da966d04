"""SQLite mechanics shared by the journal and the override store.

One way to open, one write transaction and one migration runner for every
SQLite file pbxbridge keeps (the journal, a node's state file with its
overrides and virtual holds).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def open_migrated(
    path: Path,
    migrate: Callable[[sqlite3.Connection], None],
    *,
    busy_timeout: float = 5.0,
    pragmas: Sequence[str] = (),
) -> sqlite3.Connection:
    """Open (creating its folder) an SQLite file in WAL mode and migrate it.

    The connection is in autocommit mode (``isolation_level=None``: writers
    issue ``BEGIN IMMEDIATE`` themselves, see :func:`immediate_transaction`, so
    that the migration's read-then-write holds the write lock throughout) and
    usable from any thread (``check_same_thread=False``: the daemon reads and
    writes from worker threads).

    Args:
        path: The database file.
        migrate: Brings the open connection to the current schema
            (e.g. ``lambda db: migrate_sqlite(db, MIGRATIONS)``).
        busy_timeout: Seconds to wait for another connection's lock; also how
            long opening retries.
        pragmas: Further ``PRAGMA`` statements run first (e.g.
            ``"PRAGMA synchronous=FULL"``).

    Returns:
        The open, migrated connection (closed again if opening fails).

    Raises:
        sqlite3.Error: If the file cannot be opened or migrated.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        for pragma in pragmas:
            db.execute(pragma)
        # Switching a fresh file to WAL and migrating it take locks SQLite may
        # refuse at once (SQLITE_BUSY without the busy handler) while another
        # process does the same: retry for a while.
        deadline = time.monotonic() + max(busy_timeout, 1.0)
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                migrate(db)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the file's write lock at once.

    ``BEGIN IMMEDIATE`` rather than a deferred one: a deferred transaction
    that reads first and writes later can fail with "database is locked"
    half-way when another process wrote meanwhile.

    Args:
        db: A connection in autocommit mode (``isolation_level=None``).

    Yields:
        The same connection; committed on leaving, rolled back on any exception.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def user_version(db: sqlite3.Connection) -> int:
    """The file's schema version (``PRAGMA user_version``)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate_sqlite(db: sqlite3.Connection, migrations: Sequence[str]) -> None:
    """Bring a file to the last of ``migrations`` (migration N sets version N).

    Args:
        db: A connection in autocommit mode.
        migrations: Scripts of ``;``-separated statements, oldest first.
    """
    # Up to date (the usual case): no write lock needed, so opening works even
    # while another connection holds a long write transaction.
    if user_version(db) >= len(migrations):
        return
    # The version is read again inside the write transaction: two processes
    # opening a fresh file at once (daemon start, an operator's first command)
    # must not both run migration 1.
    with immediate_transaction(db):
        version = user_version(db)
        for number, script in enumerate(migrations[version:], start=version + 1):
            # executescript() would COMMIT our transaction first.
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
