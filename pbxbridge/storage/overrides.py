"""Durable manual overrides: an SQLite file per node, or PostgreSQL shared by nodes.

The CLI writes, the daemon reads. Both open the store through
:func:`open_override_store`, which picks the backend the same way the call
journal does: the PostgreSQL database when a database URL is configured (so that
every node sharing that database routes by the same overrides), else the SQLite
state file of the node.

* :class:`SqliteOverrideStore`: WAL mode lets the daemon read while an operator
  writes, and ``PRAGMA data_version`` tells the daemon cheaply (no query on the
  table) whether anything changed since its last look, so it can poll every few
  hundred milliseconds and pick up a change within a second.
* :class:`PostgresOverrideStore`: the ``overrides`` table of the journal's
  database (created by :func:`~pbxbridge.storage.postgres.migrate_postgres`,
  schema in :mod:`pbxbridge.storage.schema`).

Both implement :class:`OverrideStore` with the same semantics. Overrides are
never deleted: clearing one stamps ``cleared_at``, so the table doubles as the
audit trail of who forced what, when and why.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import psycopg

from pbxbridge.core.models import ALL_TENANTS, Override, OverrideState
from pbxbridge.storage.postgres import PostgresConnection
from pbxbridge.storage.schema import OVERRIDES_SQLITE_MIGRATIONS
from pbxbridge.storage.sqlite import immediate_transaction, migrate_sqlite, open_migrated

HistoryRow = tuple[Override, datetime | None, str]
"""``(override, cleared_at, cleared_by)`` as :meth:`OverrideStore.history` returns it."""

SQLITE: Final = "sqlite"
POSTGRESQL: Final = "postgresql"


class OverrideStore(ABC):
    """Where manual overrides are kept (synchronous; call it from a worker thread).

    The validation lives here, so every backend refuses the same input:
    naive datetimes, an expiry not after the start, NUL characters in text
    (PostgreSQL cannot store them), and a clear without exactly one of scope
    and id. Use as a context manager or call :meth:`close`.
    """

    backend: ClassVar[str]
    """``"sqlite"`` or ``"postgresql"`` (for health, never the location)."""

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
            The stored override with its id (times in UTC).

        Raises:
            ValueError: If times are naive, the expiry is not after ``at`` or a
                text holds a NUL character.
        """
        set_at = _aware(at)
        expires = _aware(expires_at) if expires_at is not None else None
        if expires is not None and expires <= set_at:
            raise ValueError("the expiry must be after the start")
        _no_nul(scope=scope, reason=reason, set_by=set_by)
        new_id = self._insert(scope, state, reason, set_at, expires, set_by)
        return Override(
            scope=scope,
            state=state,
            reason=reason,
            set_at=set_at,
            expires_at=expires,
            id=new_id,
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
        """Clear live overrides of a scope, or one by id (stamps ``cleared_at``).

        Args:
            at: When (aware).
            scope: Tenant id or ``"*"``; clears every live override of that scope.
            override_id: Clear this one only.
            cleared_by: Who cleared it.

        Returns:
            How many overrides were cleared (one already cleared counts 0).

        Raises:
            ValueError: Unless exactly one of ``scope`` and ``override_id`` is
                given, or if ``at`` is naive or a text holds a NUL character.
        """
        if (scope is None) == (override_id is None):
            raise ValueError("give exactly one of scope or override_id")
        _no_nul(scope=scope or "", cleared_by=cleared_by)
        when = _aware(at)
        if override_id is not None:
            return self._clear("id", override_id, when, cleared_by)
        assert scope is not None
        return self._clear("scope", scope, when, cleared_by)

    def active(self, at: datetime) -> list[Override]:
        """Overrides not cleared and not expired at ``at``.

        Args:
            at: The instant (aware).

        Returns:
            Live overrides, oldest first (future ones included: they start at
            ``set_at``; :meth:`Override.active_at` decides).

        Raises:
            ValueError: If ``at`` is naive.
        """
        return self._active(_aware(at))

    @abstractmethod
    def history(self, limit: int = 50) -> list[HistoryRow]:
        """The newest overrides, cleared or not, for the audit view.

        Args:
            limit: How many.

        Returns:
            ``(override, cleared_at, cleared_by)`` newest first; ``cleared_by``
            is ``""`` when not cleared.
        """

    @abstractmethod
    def changed(self) -> bool:
        """Whether anyone wrote overrides since the last call (one cheap query).

        Returns:
            True on the first call and whenever the overrides changed since.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what a backend implements (arguments validated, times aware UTC) --

    @abstractmethod
    def _insert(
        self,
        scope: str,
        state: OverrideState,
        reason: str,
        set_at: datetime,
        expires_at: datetime | None,
        set_by: str,
    ) -> int:
        """Insert one override; its new id."""

    @abstractmethod
    def _clear(self, column: str, value: str | int, at: datetime, cleared_by: str) -> int:
        """Stamp ``cleared_at`` on live rows where ``column`` (scope or id) is ``value``."""

    @abstractmethod
    def _active(self, at: datetime) -> list[Override]:
        """Uncleared rows not expired at ``at``, by id."""


def open_override_store(database_url: str, state_path: str | Path) -> OverrideStore:
    """The override store the daemon and the CLI share.

    The same choice as the call journal's: PostgreSQL when a database URL is
    configured (``Settings.database_url``), so that all nodes sharing it route
    by the same overrides; else the node's SQLite state file.

    Args:
        database_url: PostgreSQL URL, or ``""``.
        state_path: The SQLite state file (used when there is no URL).

    Returns:
        An open store.

    Raises:
        psycopg.Error: If PostgreSQL cannot be reached or migrated.
        sqlite3.Error: If the state file cannot be opened.
    """
    if database_url:
        return PostgresOverrideStore(database_url)
    return SqliteOverrideStore(state_path)


def override_backend(database_url: str) -> str:
    """Which backend :func:`open_override_store` picks for ``database_url``.

    Args:
        database_url: PostgreSQL URL, or ``""``.

    Returns:
        ``"postgresql"`` or ``"sqlite"``.
    """
    return POSTGRESQL if database_url else SQLITE


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("override times must be timezone-aware")
    return at.astimezone(UTC)


def _no_nul(**texts: str) -> None:
    for name, text in texts.items():
        if "\x00" in text:
            raise ValueError(f"{name} must not contain NUL characters")


# ------------------------------------------------------------------ SQLite


class SqliteOverrideStore(OverrideStore):
    """Overrides in the node's SQLite state file.

    Args:
        path: The database file; its folder is created when missing.
    """

    backend = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # One file for overrides and virtual holds, one migration sequence.
        self._db = open_migrated(
            self.path, lambda db: migrate_sqlite(db, OVERRIDES_SQLITE_MIGRATIONS)
        )
        self._seen_version: int | None = None

    def close(self) -> None:  # noqa: D102 - see base
        self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    def _insert(
        self,
        scope: str,
        state: OverrideState,
        reason: str,
        set_at: datetime,
        expires_at: datetime | None,
        set_by: str,
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO overrides (scope, state, reason, set_at, expires_at, set_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (scope, state.value, reason, _iso(set_at), _iso(expires_at), set_by),
            )
        return int(cur.lastrowid or 0)

    def _clear(self, column: str, value: str | int, at: datetime, cleared_by: str) -> int:
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE overrides SET cleared_at = ?, cleared_by = ? "  # noqa: S608 - column is ours
                f"WHERE {column} = ? AND cleared_at IS NULL",
                (_iso(at), cleared_by, value),
            )
        return cur.rowcount

    def _active(self, at: datetime) -> list[Override]:
        rows = self._db.execute(
            "SELECT id, scope, state, reason, set_at, expires_at, set_by FROM overrides"
            " WHERE cleared_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY id",
            (_iso(at),),
        ).fetchall()
        return [_sqlite_row(r) for r in rows]

    def history(self, limit: int = 50) -> list[HistoryRow]:  # noqa: D102 - see base
        rows = self._db.execute(
            "SELECT id, scope, state, reason, set_at, expires_at, set_by, cleared_at,"
            " cleared_by FROM overrides ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(_sqlite_row(r[:7]), _parse(r[7]), r[8] or "") for r in rows]

    def changed(self) -> bool:
        """Whether another connection wrote since the last call (cheap).

        ``PRAGMA data_version`` changes whenever another connection commits to
        the file: no query on the table at all.

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


def _sqlite_row(row: tuple[object, ...]) -> Override:
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


# ------------------------------------------------------------------ PostgreSQL

_PG_COLUMNS: Final = "id, scope, state, reason, set_at, expires_at, set_by"
_PG_FINGERPRINT: Final = (
    # Why a fingerprint and not max(id), data_version-like counters or
    # LISTEN/NOTIFY:
    # * Rows are only ever added, and cleared_at is set once (clear() only
    #   touches rows where it is NULL), so count(*) and count(cleared_at) only
    #   grow: every committed set or clear changes the pair, whatever order
    #   concurrent transactions commit in. max(id) alone would miss an insert
    #   that took a lower sequence value but committed after a higher one had
    #   been seen. max(id) is kept as well: a row deleted by hand plus one set
    #   meanwhile still shows.
    # * It is stateless: after a dropped connection or an outage the next
    #   answer is simply compared with the last one, whereas NOTIFYs sent while
    #   disconnected are lost (and would need a LISTEN connection kept open
    #   besides the one we query with, which poolers in transaction mode break).
    # * One aggregate over a table that stays small (a few rows a week, never
    #   purged) costs well under a millisecond, polled twice a second per node.
    "SELECT count(*), count(cleared_at), coalesce(max(id), 0) FROM overrides"
)


class PostgresOverrideStore(OverrideStore):
    """Overrides in the journal's PostgreSQL database, shared by every node.

    Uses the ``overrides`` table the journal's migrations create
    (:func:`~pbxbridge.storage.postgres.migrate_postgres` runs on opening, so the
    CLI may be the first to touch a fresh database). Like
    :class:`~pbxbridge.journal.postgres.PostgresJournal` it holds one connection,
    bounded in time, and reconnects on the next call after it broke: the call
    that found it broken raises, the next one connects afresh. One instance may
    be used from several threads (calls are serialised).

    Args:
        url: libpq connection URL or DSN.
        connect_timeout: Seconds to connect (libpq's minimum is 2).
        statement_timeout: Seconds any statement may run (also the longest wait
            for another node's migration lock).

    Raises:
        psycopg.OperationalError: If the server cannot be reached (at creation).
    """

    backend = POSTGRESQL

    def __init__(
        self, url: str, *, connect_timeout: float = 5.0, statement_timeout: float = 10.0
    ) -> None:
        self._db = PostgresConnection.migrated(
            url,
            application_name="pbxbridge-overrides",
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self._seen: tuple[int, int, int] | None = None

    def _use(self) -> AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]:
        # Autocommit: every method is a single statement, atomic on its own.
        return self._db.use()

    def _insert(
        self,
        scope: str,
        state: OverrideState,
        reason: str,
        set_at: datetime,
        expires_at: datetime | None,
        set_by: str,
    ) -> int:
        with self._use() as conn:
            row = conn.execute(
                "INSERT INTO overrides (scope, state, reason, set_at, expires_at, set_by)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (scope, state.value, reason, set_at, expires_at, set_by),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def _clear(self, column: str, value: str | int, at: datetime, cleared_by: str) -> int:
        sql = (
            f"UPDATE overrides SET cleared_at = %s, cleared_by = %s "  # noqa: S608 - column is ours
            f"WHERE {column} = %s AND cleared_at IS NULL"
        )
        with self._use() as conn:
            return conn.execute(sql, (at, cleared_by, value)).rowcount

    def _active(self, at: datetime) -> list[Override]:
        with self._use() as conn:
            rows = conn.execute(
                f"SELECT {_PG_COLUMNS} FROM overrides"  # noqa: S608 - our column names
                " WHERE cleared_at IS NULL AND (expires_at IS NULL OR expires_at > %s)"
                " ORDER BY id",
                (at,),
            ).fetchall()
        return [_pg_row(r) for r in rows]

    def history(self, limit: int = 50) -> list[HistoryRow]:  # noqa: D102 - see base
        with self._use() as conn:
            rows = conn.execute(
                f"SELECT {_PG_COLUMNS}, cleared_at, cleared_by FROM overrides"  # noqa: S608
                " ORDER BY id DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [(_pg_row(r[:7]), _utc(r[7]), r[8] or "") for r in rows]

    def changed(self) -> bool:
        """Whether any node (or the CLI) set or cleared an override since the last call.

        One aggregate query (see ``_PG_FINGERPRINT`` for why this one).

        Returns:
            True on the first call and whenever the overrides changed since.
        """
        with self._use() as conn:
            row = conn.execute(_PG_FINGERPRINT).fetchone()
        assert row is not None
        fingerprint = (int(row[0]), int(row[1]), int(row[2]))
        changed = fingerprint != self._seen
        self._seen = fingerprint
        return changed

    def close(self) -> None:  # noqa: D102 - see base
        self._db.close()


def _utc(value: Any) -> datetime | None:
    # psycopg returns the session's zone (Etc/UTC or local): normalise to
    # datetime.UTC like the SQLite store.
    if value is None:
        return None
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def _pg_row(row: tuple[Any, ...]) -> Override:
    set_at = _utc(row[4])
    assert set_at is not None
    return Override(
        id=int(row[0]),
        scope=str(row[1]),
        state=OverrideState(str(row[2])),
        reason=str(row[3]),
        set_at=set_at,
        expires_at=_utc(row[5]),
        set_by=str(row[6] or ""),
    )


__all__ = [
    "ALL_TENANTS",
    "POSTGRESQL",
    "SQLITE",
    "HistoryRow",
    "OverrideStore",
    "PostgresOverrideStore",
    "SqliteOverrideStore",
    "open_override_store",
    "override_backend",
]
