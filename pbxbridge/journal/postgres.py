"""The call journal in PostgreSQL (shared by nodes): see :mod:`pbxbridge.journal.store`.

The connection, its time bounds, the migrations and the redaction of error
texts are :mod:`pbxbridge.storage.postgres`'s; this module holds the journal's
SQL dialect only.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg

from pbxbridge.journal.store import PURGE_BATCH_ROWS, PURGE_SET, _SqlJournal
from pbxbridge.storage.postgres import PostgresConnection

_PgConnection = psycopg.Connection[tuple[Any, ...]]


class PostgresJournal(_SqlJournal):
    """The journal in PostgreSQL (several nodes may share one database).

    Holds one connection (autocommit, explicit transactions) and reconnects on
    the next call after it broke. The connection is bounded in time everywhere:
    connecting, a silent network (TCP keepalives and ``tcp_user_timeout``) and a
    statement (``statement_timeout``), so that a vanished server turns into an
    error the writer spools on, instead of a thread hanging for minutes.

    Args:
        url: libpq connection URL or DSN (``postgresql://user@host/db``).
        connect_timeout: Seconds to connect (libpq's minimum is 2).
        statement_timeout: Seconds any statement may run (also the longest
            wait for another node's migration lock).

    Raises:
        psycopg.OperationalError: If the server cannot be reached (at creation).
    """

    _PARAM = "%s"
    # By ctid (a TID scan): joining the batch back by primary key, PostgreSQL
    # hashes the whole table for every batch (0.9 s per 10,000 calls on a
    # million instead of 0.2 s). A row updated between the two (a late spool
    # replay) has a new ctid: skipped here, purged by the next batch.
    _PURGE = (
        PURGE_SET
        + " WHERE purged_at IS NULL AND ctid = ANY(ARRAY(SELECT ctid"
        + PURGE_BATCH_ROWS
        + "))"
    )

    def __init__(
        self, url: str, *, connect_timeout: float = 5.0, statement_timeout: float = 30.0
    ) -> None:
        super().__init__()
        self._db = PostgresConnection.migrated(
            url,
            application_name="pbxbridge-journal",
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )

    def _use(self, transaction: bool) -> AbstractContextManager[_PgConnection]:
        return self._db.use(transaction)

    @property
    def schema_version(self) -> int:
        """The highest migration applied to the database."""
        rows = self._read("SELECT coalesce(max(version), 0) FROM schema_version", ())
        return int(rows[0][0])

    def _time(self, value: datetime) -> datetime:
        return value

    def _from_time(self, value: Any) -> datetime:
        # psycopg returns the session's zone (ZoneInfo("Etc/UTC") or local):
        # normalise to datetime.UTC like the SQLite store.
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    def _bool(self, value: bool) -> bool:
        return value

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        with self._use(transaction=False) as conn:
            return conn.execute(sql, params).rowcount

    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # executemany pipelines the statements: one round trip per batch, not per row.
        with self._use(transaction=True) as conn, conn.cursor() as cur:
            cur.executemany(sql, rows)

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._use(transaction=False) as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:  # noqa: D102 - see base
        self._db.close()

    def is_transient(self, exc: BaseException) -> bool:  # noqa: D102 - see base
        # OperationalError covers connection loss, admin shutdown, timeouts,
        # serialization failures and deadlocks; InterfaceError a connection
        # that was closed under us.
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError)
