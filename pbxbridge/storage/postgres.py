"""PostgreSQL for the journal and the overrides: connecting, migrating, redacting.

Every PostgreSQL statement of pbxbridge passes through this module: the call
journal (:mod:`pbxbridge.journal.store`) and the override store
(:mod:`pbxbridge.storage.overrides`) each hold a :class:`PostgresConnection`,
opened with :meth:`PostgresConnection.migrated` so that whichever opens the
database first creates the whole schema (:data:`~pbxbridge.storage.schema.POSTGRES_MIGRATIONS`).

Two things are cut out of what the database and libpq say before anyone logs
or shows it: the URL's password (:func:`redact_database_url`, also used by the
command line and the daemon's override health) and row data in server errors
(:func:`redact_database_error`).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pbxbridge.core.numbers import mask_numbers
from pbxbridge.storage.schema import POSTGRES_MIGRATIONS


def redact_database_url(text: str, url: str) -> str:
    """``text`` (an error message) without the database URL or its password.

    libpq's messages name host and port, not the password; but parse errors
    echo pieces of a malformed URL (``unexpected spaces found in "..."``,
    ``invalid sslmode value: "..."``). Neither may reach logs, ``/healthz`` or
    a terminal someone is sharing.

    Args:
        text: The message.
        url: The configured URL or DSN (``""``: nothing to hide).

    Returns:
        The message with the URL and the password replaced by ``***``.
    """
    if not url:
        return text
    secrets = {url}
    # The password as libpq reads it, as it stands in a URL (raw and decoded),
    # and as it stands in a key=value DSN: a URL libpq cannot parse still has one.
    with contextlib.suppress(Exception):
        secrets.add(str(conninfo_to_dict(url).get("password") or ""))
    with contextlib.suppress(ValueError):
        raw = urlsplit(url).password or ""
        secrets |= {raw, unquote(raw)}
    if match := re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url):
        secrets |= {match.group(1), match.group(1).strip("'")}
    secrets.discard("")
    # Longest first: the URL goes as a whole before the password inside it.
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


_PG_LOCK_KEY: Final = 0x7062_786A_6F75_726E
"""``pg_advisory_xact_lock`` key of the migrations ("pbxjourn")."""


def connect_postgres(
    url: str,
    *,
    application_name: str,
    connect_timeout: float = 5.0,
    statement_timeout: float = 30.0,
) -> psycopg.Connection[tuple[Any, ...]]:
    """One autocommit connection to the journal's PostgreSQL, bounded in time.

    Connecting, a silent network (TCP keepalives and ``tcp_user_timeout``) and
    every statement (``statement_timeout``) are bounded, so that a vanished
    server turns into an error instead of a thread hanging for minutes. Shared
    by the journal and the override store.

    Args:
        url: libpq connection URL or DSN.
        application_name: Shown in ``pg_stat_activity``.
        connect_timeout: Seconds to connect (libpq's minimum is 2).
        statement_timeout: Seconds any statement may run.

    Returns:
        The connection (autocommit: callers open transactions explicitly).

    Raises:
        psycopg.OperationalError: If the server cannot be reached.
        psycopg.ProgrammingError: If libpq cannot parse the URL.
        Either carries a message without the URL's password.
    """
    try:
        return _connect_postgres(url, application_name, connect_timeout, statement_timeout)
    except psycopg.Error as exc:
        # libpq echoes pieces of a malformed URL ('unexpected spaces found in
        # "<password>"'); every caller logs or shows this message (journal
        # health, override health, the CLI), so it is cleaned once, here. Not
        # chained: a logged traceback would print the original.
        raise type(exc)(redact_database_url(str(exc), url).strip()) from None


def _connect_postgres(
    url: str, application_name: str, connect_timeout: float, statement_timeout: float
) -> psycopg.Connection[tuple[Any, ...]]:
    # Keep options the URL brings (e.g. a search_path) next to ours.
    given = conninfo_to_dict(url).get("options")
    ours = f"-c statement_timeout={int(statement_timeout * 1000)}"
    return psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=max(2, round(connect_timeout)),
        application_name=application_name,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        # Unacknowledged data (a query sent into a dead network) fails after
        # this long instead of the kernel's ~15 minutes.
        tcp_user_timeout=int(max(statement_timeout, 10.0) * 1000),
        options=f"{given} {ours}" if given else ours,
    )


def migrate_postgres(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Bring the database's schema (journal and overrides) up to date.

    Safe when several nodes (or a node and the CLI) run it at once: an advisory
    lock serialises them, and the later ones find the schema current.

    Args:
        conn: An autocommit connection (see :func:`connect_postgres`).
    """
    with conn.transaction():
        # Serialises nodes starting at once on a fresh database: the second
        # waits here, then sees the first's schema_version.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        version = int(row[0]) if row else 0
        # A newer version (another node upgraded first) is left as it is:
        # migrations only add, so this code keeps working on it.
        for number, script in enumerate(POSTGRES_MIGRATIONS[version:], start=version + 1):
            conn.execute(script.encode())  # several statements, no parameters
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))


def redact_database_error(exc: psycopg.Error) -> psycopg.Error:
    """The same error (same class, so the same sqlstate) without row data.

    The server's full text carries the values of the statement: ``DETAIL:
    Failing row contains (…, +494411234567, …)``, ``Key (…)=(…)``, the
    statement excerpt after ``LINE 1:``. Logs, ``/healthz`` and the writer's
    ``last_error`` show this text, so only the primary message is kept, with
    numbers in it shortened (``value "+4944…67" is out of range``).
    Client-side errors (connecting) have no primary message and keep their
    text, also number-shortened.

    Args:
        exc: An error psycopg raised.

    Returns:
        A new exception of the same class with the redacted message.
    """
    primary = exc.diag.message_primary
    return type(exc)(mask_numbers(primary or str(exc)).strip())


class PostgresConnection:
    """One bounded PostgreSQL connection, opened on first use and after it broke.

    Shared by the journal and the override store: the call that finds the
    connection broken raises (psycopg closes it), the next call connects
    afresh. One user at a time: the lock is held while a caller uses it, so an
    instance may be shared by threads.

    Args:
        url: libpq connection URL or DSN.
        application_name: Shown in ``pg_stat_activity``; also names the user
            in the "closed" error.
        connect_timeout: Seconds to connect.
        statement_timeout: Seconds any statement may run.
    """

    def __init__(
        self,
        url: str,
        *,
        application_name: str,
        connect_timeout: float,
        statement_timeout: float,
    ) -> None:
        self._url = url
        self._name = application_name
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._closed = False

    @contextmanager
    def use(self, transaction: bool = False) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """The connection, for one statement (autocommit) or one transaction.

        Args:
            transaction: Wrap the block in a transaction (committed at its end,
                rolled back on an exception).

        Yields:
            The open connection.

        Raises:
            psycopg.InterfaceError: After :meth:`close`.
            psycopg.OperationalError: If the server cannot be reached.
        """
        with self._lock:
            if self._closed:
                raise psycopg.InterfaceError(f"{self._name}: the store is closed")
            if self._conn is None or self._conn.closed:
                self._conn = connect_postgres(
                    self._url,
                    application_name=self._name,
                    connect_timeout=self._connect_timeout,
                    statement_timeout=self._statement_timeout,
                )
            conn = self._conn
            try:
                if transaction:
                    with conn.transaction():
                        yield conn
                else:  # one statement: autocommit spares the BEGIN/COMMIT round trips
                    yield conn
            except psycopg.Error as exc:
                # Every statement of both stores passes here: the one place
                # where row data is cut out of error texts. Not chained: a
                # logged traceback would print the original.
                raise redact_database_error(exc) from None
            finally:
                # A broken connection is closed by psycopg; drop it so that the
                # next call connects afresh.
                if conn.closed:
                    self._conn = None

    def close(self) -> None:
        """Close the connection; every later :meth:`use` raises."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @classmethod
    def migrated(
        cls,
        url: str,
        *,
        application_name: str,
        connect_timeout: float,
        statement_timeout: float,
    ) -> PostgresConnection:
        """Connect and bring the schema up to date (:func:`migrate_postgres`).

        Both stores open their database this way, so whichever a node (or the
        CLI) opens first creates the whole schema.

        Args:
            url: libpq connection URL or DSN.
            application_name: Shown in ``pg_stat_activity``.
            connect_timeout: Seconds to connect.
            statement_timeout: Seconds any statement may run (also the longest
                wait for another node's migration lock).

        Returns:
            The connection holder, connected.

        Raises:
            psycopg.OperationalError: If the server cannot be reached.
        """
        db = cls(
            url,
            application_name=application_name,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        try:
            with db.use() as conn:
                migrate_postgres(conn)
        except BaseException:
            db.close()
            raise
        return db


__all__ = [
    "PostgresConnection",
    "connect_postgres",
    "migrate_postgres",
    "redact_database_error",
    "redact_database_url",
]
