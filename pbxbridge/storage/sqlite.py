"""SQLite mechanics shared by the journal and the override store.

One write transaction and one migration runner for every SQLite file
pbxbridge keeps (the journal, a node's override state file).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


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
