"""Which journal a node uses: the one choice, for the daemon and the command line alike.

PostgreSQL when a database URL is configured (several nodes share it), else an
SQLite file beside the node's state file. The daemon's writer spools beside it
too. The daemon and ``pbxbridge report``/``purge`` must agree on all of this,
or a report reads a different journal than the daemon writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from pbxbridge.journal.postgres import PostgresJournal
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import JournalStore

JOURNAL_FILE: Final = "journal.sqlite"
"""The SQLite journal's file name (beside the state file)."""
SPOOL_DIR: Final = "journal-spool"
"""The writer's spool directory name (beside the state file)."""


def journal_opener(database_url: str, state_file: Path) -> Callable[[], JournalStore]:
    """How to open this node's journal (each call opens a new store).

    Args:
        database_url: The PostgreSQL URL, or ``""`` for SQLite.
        state_file: The node's state file (the SQLite journal lives beside it).

    Returns:
        A function opening the store (it may raise when the database cannot be
        reached; each long-running user opens its own).
    """
    if database_url:
        return lambda: PostgresJournal(database_url)
    path = state_file.with_name(JOURNAL_FILE)
    return lambda: SqliteJournal(path)


def spool_dir(state_file: Path) -> Path:
    """The journal writer's spool directory (its ``rejected.jsonl`` included).

    Args:
        state_file: The node's state file.

    Returns:
        The directory beside it.
    """
    return state_file.with_name(SPOOL_DIR)
