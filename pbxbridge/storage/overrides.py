"""Durable manual overrides in SQLite.

The CLI writes, the daemon reads: both open the same file. WAL mode lets the
daemon read while an operator writes, and ``PRAGMA data_version`` tells the
daemon cheaply (no query on the table) whether anything changed since its last
look, so it can poll every few hundred milliseconds and pick up a change
within a second.

Overrides are never deleted: clearing one stamps ``cleared_at``, so the table
doubles as the audit trail of who forced what, when and why.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pbxbridge.core.models import ALL_TENANTS, Override, OverrideState

_MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE overrides (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        scope       TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('open', 'closed')),
        reason      TEXT NOT NULL,
        set_at      TEXT NOT NULL,
        expires_at  TEXT,
        set_by      TEXT NOT NULL DEFAULT '',
        cleared_at  TEXT,
        cleared_by  TEXT
    );
    CREATE INDEX overrides_live ON overrides (cleared_at, expires_at);
    """,
)


class OverrideStore:
    """Overrides in an SQLite file.

    Args:
        path: The database file; its folder is created when missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the daemon reads from a worker thread.
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so that a
        # read-then-write (the migration check) holds the write lock throughout.
        self._db = sqlite3.connect(
            self.path, timeout=5.0, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA busy_timeout=5000")
        # Switching a fresh file to WAL and migrating it need locks that SQLite
        # may refuse at once (SQLITE_BUSY without calling the busy handler)
        # while another process does the same: retry for a few seconds.
        for attempt in range(100):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._migrate()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)
        self._seen_version: int | None = None

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> OverrideStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        # The version is read inside the write transaction: two processes
        # opening a fresh file at once (daemon start, operator's first
        # `override set`) must not both run migration 1.
        with self._tx() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def set(
        self,
        scope: str,
        state: OverrideState,
        reason: str,
        *,
        at: datetime,
        expires_at: datetime | None = None,
        set_by: str = "",
    ) -> Override:
        """Store a new override.

        Args:
            scope: Tenant id or ``"*"`` for all tenants.
            state: Forced state.
            reason: Why (shown in traces).
            at: When it starts (aware).
            expires_at: When it ends (aware), or ``None`` until cleared.
            set_by: Who set it.

        Returns:
            The stored override with its id.

        Raises:
            ValueError: If times are naive or the expiry is not after ``at``.
        """
        if at.tzinfo is None or (expires_at is not None and expires_at.tzinfo is None):
            raise ValueError("override times must be timezone-aware")
        if expires_at is not None and expires_at <= at:
            raise ValueError("the expiry must be after the start")
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO overrides (scope, state, reason, set_at, expires_at, set_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (scope, state.value, reason, _iso(at), _iso(expires_at), set_by),
            )
        return Override(
            scope=scope,
            state=state,
            reason=reason,
            set_at=at.astimezone(UTC),
            expires_at=expires_at.astimezone(UTC) if expires_at else None,
            id=int(cur.lastrowid or 0),
            set_by=set_by,
        )

    def clear(
        self,
        *,
        at: datetime,
        scope: str | None = None,
        override_id: int | None = None,
        cleared_by: str = "",
    ) -> int:
        """Clear live overrides of a scope, or one by id.

        Args:
            at: When (aware).
            scope: Tenant id or ``"*"``; clears every live override of that scope.
            override_id: Clear this one only.
            cleared_by: Who cleared it.

        Returns:
            How many overrides were cleared.

        Raises:
            ValueError: Unless exactly one of ``scope`` and ``override_id`` is given.
        """
        if (scope is None) == (override_id is None):
            raise ValueError("give exactly one of scope or override_id")
        column, value = ("scope", scope) if scope is not None else ("id", override_id)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE overrides SET cleared_at = ?, cleared_by = ? "  # noqa: S608 - column is ours
                f"WHERE {column} = ? AND cleared_at IS NULL",
                (_iso(at), cleared_by, value),
            )
        return cur.rowcount

    def active(self, at: datetime) -> list[Override]:
        """Overrides not cleared and not expired at ``at``.

        Args:
            at: The instant (aware).

        Returns:
            Live overrides, oldest first (future ones included: they start at ``set_at``).
        """
        rows = self._db.execute(
            "SELECT id, scope, state, reason, set_at, expires_at, set_by FROM overrides"
            " WHERE cleared_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY id",
            (_iso(at),),
        ).fetchall()
        return [_row(r) for r in rows]

    def history(self, limit: int = 50) -> list[tuple[Override, datetime | None, str]]:
        """The newest overrides, cleared or not, for the audit view.

        Args:
            limit: How many.

        Returns:
            ``(override, cleared_at, cleared_by)`` newest first.
        """
        rows = self._db.execute(
            "SELECT id, scope, state, reason, set_at, expires_at, set_by, cleared_at,"
            " cleared_by FROM overrides ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(_row(r[:7]), _parse(r[7]), r[8] or "") for r in rows]

    def changed(self) -> bool:
        """Whether another connection wrote since the last call (cheap).

        Returns:
            True on the first call and whenever the file changed since.
        """
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._seen_version
        self._seen_version = version
        return changed


def _iso(value: datetime | None) -> str | None:
    # Stored in UTC with a fixed format so that string comparison in SQL is
    # chronological comparison.
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _row(row: tuple[object, ...]) -> Override:
    set_at = _parse(str(row[4]))
    assert set_at is not None
    return Override(
        id=int(str(row[0])),
        scope=str(row[1]),
        state=OverrideState(str(row[2])),
        reason=str(row[3]),
        set_at=set_at,
        expires_at=_parse(row[5] if isinstance(row[5], str) else None),
        set_by=str(row[6] or ""),
    )


__all__ = ["ALL_TENANTS", "OverrideStore"]
