"""Durable virtual holds: the node's SQLite state file, or PostgreSQL shared by nodes.

A caller who took a callback has hung up; from then on the only trace of their
promise is the record kept here (and the placeholder in Asterisk's queue). The
daemon saves every step of a hold (:func:`pbxbridge.core.virtual_hold.step`)
before acting on it, and after a restart re-adopts what :meth:`pending` lists.

The backend is chosen as the overrides' is (:func:`open_virtual_hold_store`):
PostgreSQL when a database URL is configured, else the node's SQLite state file
(``virtual_holds`` beside ``overrides``; one migration sequence,
:data:`~pbxbridge.storage.schema.OVERRIDES_SQLITE_MIGRATIONS`). The schemas are
in :mod:`pbxbridge.storage.schema`.

Columns of ``virtual_holds`` (one row per hold, keyed like the journal's calls
by ``(node, call_id)`` of the original call):

========================  ==================================================
node, call_id             the original call (its journal key)
tenant, queue             where it waits
priority, position        the caller's queue priority and position at acceptance
caller                    the caller's E.164 number (personal data, purged)
number, dial              the number to call back and its dial string (purged)
state                     :class:`~pbxbridge.core.virtual_hold.VHoldState`
arrived_at                the original call's arrival (service level from here)
offered_at, offers        first offer, how many offers
last_offer_waited_s       seconds waited at the last offer
accepted_at               when the caller accepted
placeholder_answered_at   when an agent last answered the placeholder
agent                     that agent
attempts                  JSON list of the calls to the citizen
next_try_at               when a retry is due
connected_at              when the citizen answered
ticket_due_at             deadline of the callback ticket it became
updated_at                its last step
events                    JSON list ``[at, event, detail]``: the hold's journal
purged_at                 when retention removed the personal data
========================  ==================================================
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import psycopg

from pbxbridge.core.virtual_hold import (
    PENDING,
    TERMINAL,
    Attempt,
    VHoldState,
    VirtualHold,
)
from pbxbridge.storage.postgres import PostgresConnection
from pbxbridge.storage.schema import OVERRIDES_SQLITE_MIGRATIONS
from pbxbridge.storage.sqlite import immediate_transaction, migrate_sqlite, open_migrated

SQLITE: Final = "sqlite"
POSTGRESQL: Final = "postgresql"

COLUMNS: Final = (
    "node",
    "call_id",
    "tenant",
    "queue",
    "priority",
    "position",
    "caller",
    "number",
    "dial",
    "state",
    "arrived_at",
    "offered_at",
    "offers",
    "last_offer_waited_s",
    "accepted_at",
    "placeholder_answered_at",
    "agent",
    "attempts",
    "next_try_at",
    "connected_at",
    "ticket_due_at",
    "updated_at",
    "events",
)
"""The columns :meth:`VirtualHoldStore.save` writes, in this order (``purged_at`` apart)."""
_TIMES: Final = frozenset(
    {
        "arrived_at",
        "offered_at",
        "accepted_at",
        "placeholder_answered_at",
        "next_try_at",
        "connected_at",
        "ticket_due_at",
        "updated_at",
    }
)
_PENDING_SQL: Final = ", ".join(f"'{s.value}'" for s in sorted(PENDING))
_TERMINAL_SQL: Final = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))


class VirtualHoldStore(ABC):
    """Where virtual holds are kept (synchronous; call it from a worker thread).

    Use as a context manager or call :meth:`close`.
    """

    backend: ClassVar[str]
    """``"sqlite"`` or ``"postgresql"``."""

    def save(self, hold: VirtualHold) -> bool:
        """Create the hold's record or replace it with this state.

        A state older than the stored one (``updated_at`` before the stored
        ``updated_at``: a slow task saving what another already moved on) is
        not written, so a hold never steps back. Once purged, a record keeps
        its personal data out: a late save does not bring the number back.

        Args:
            hold: The hold as it stands after its last step.

        Returns:
            Whether it was written (``False``: the store holds a newer state).

        Raises:
            ValueError: If a time is naive or a text holds a NUL character.
        """
        return self._save(_values(hold))

    def get(self, node: str, call_id: str) -> VirtualHold | None:
        """One hold by the original call's key, ``None`` if unknown."""
        m = self._mark
        rows = self._rows(f"node = {m} AND call_id = {m}", (node, call_id))
        return rows[0] if rows else None

    def pending(self, node: str | None = None) -> list[VirtualHold]:
        """Holds the daemon still owes a callback (re-adopted after a restart).

        Args:
            node: Only this node's (each node re-adopts its own); ``None``: all.

        Returns:
            Holds in a :data:`~pbxbridge.core.virtual_hold.PENDING` state, by
            acceptance (the order their places were taken).
        """
        where = f"state IN ({_PENDING_SQL})"
        if node is not None:
            return self._rows(
                f"{where} AND node = {self._mark} ORDER BY accepted_at, call_id", (node,)
            )
        return self._rows(f"{where} ORDER BY accepted_at, node, call_id", ())

    def for_number(self, e164: str) -> list[VirtualHold]:
        """Pending holds whose callback number or caller is ``e164`` (repeat callers).

        Args:
            e164: The number.

        Returns:
            Oldest acceptance first; ``[]`` for ``""``.
        """
        if not e164:
            return []
        m = self._mark
        return self._rows(
            f"state IN ({_PENDING_SQL}) AND (number = {m} OR caller = {m}) ORDER BY accepted_at",
            (e164, e164),
        )

    def between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> list[VirtualHold]:
        """Holds of calls that arrived in ``[start, end)`` (reports).

        Args:
            start: Inclusive (aware).
            end: Exclusive (aware).
            tenant: Only this tenant's; ``None``: all.

        Returns:
            By arrival.
        """
        m = self._mark
        where = f"arrived_at >= {m} AND arrived_at < {m}"
        params: list[Any] = [self._time(_aware(start)), self._time(_aware(end))]
        if tenant is not None:
            where += f" AND tenant = {m}"
            params.append(tenant)
        return self._rows(where + " ORDER BY arrived_at, node, call_id", params)

    @abstractmethod
    def purge(self, before: datetime, at: datetime) -> int:
        """Remove the personal data of finished holds of calls that arrived before ``before``.

        ``caller``, ``number`` and ``dial`` become empty and event details
        (which name the number shortened) are dropped; ``purged_at`` is
        stamped. Pending holds keep their number: the callback is still owed.

        Args:
            before: Cut-off on ``arrived_at`` (aware).
            at: The purge time (aware).

        Returns:
            How many holds were purged now.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    @abstractmethod
    def _save(self, values: dict[str, Any]) -> bool:
        """Upsert one row unless the stored one is newer; whether it was written."""

    # What differs between the backends for the reads above: the parameter
    # mark, how a time is passed, and how rows come back.
    _mark: ClassVar[str]

    @staticmethod
    @abstractmethod
    def _time(value: datetime) -> Any:
        """An aware UTC time as this backend's parameter."""

    @abstractmethod
    def _rows(self, where: str, params: Sequence[Any]) -> list[VirtualHold]:
        """The holds a ``WHERE`` clause (with this backend's marks) selects."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_virtual_hold_store(database_url: str, state_path: str | Path) -> VirtualHoldStore:
    """The virtual-hold store: PostgreSQL when a URL is configured, else the state file.

    Args:
        database_url: PostgreSQL URL, or ``""``.
        state_path: The node's SQLite state file (the overrides' file).

    Returns:
        An open store.

    Raises:
        psycopg.Error: If PostgreSQL cannot be reached or migrated.
        sqlite3.Error: If the state file cannot be opened.
    """
    if database_url:
        return PostgresVirtualHoldStore(database_url)
    return SqliteVirtualHoldStore(state_path)


# ------------------------------------------------------------------ row mapping


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("virtual-hold times must be timezone-aware")
    return value.astimezone(UTC)


def _values(hold: VirtualHold) -> dict[str, Any]:
    """The row of a hold: times aware UTC, lists as JSON text."""
    out: dict[str, Any] = {}
    for name in COLUMNS:
        value: Any
        if name == "attempts":
            value = json.dumps(
                [
                    {
                        "started": _aware(a.started_at).isoformat(),
                        "ended": None if a.ended_at is None else _aware(a.ended_at).isoformat(),
                        "outcome": a.outcome,
                        "agent": a.agent,
                    }
                    for a in hold.attempts
                ]
            )
        elif name == "events":
            value = json.dumps([[_aware(at).isoformat(), ev, d] for at, ev, d in hold.events])
        elif name == "state":
            value = hold.state.value
        else:
            value = getattr(hold, name)
            if name in _TIMES and value is not None:
                value = _aware(value)
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{name} must not contain NUL characters")
        out[name] = value
    return out


def _hold(row: dict[str, Any]) -> VirtualHold:
    """A hold from a row whose times are already aware UTC datetimes."""
    attempts = tuple(
        Attempt(
            started_at=datetime.fromisoformat(a["started"]),
            ended_at=None if a["ended"] is None else datetime.fromisoformat(a["ended"]),
            outcome=str(a["outcome"]),
            agent=str(a["agent"]),
        )
        for a in json.loads(row["attempts"])
    )
    events = tuple(
        (datetime.fromisoformat(at), str(ev), str(d)) for at, ev, d in json.loads(row["events"])
    )
    return VirtualHold(
        node=row["node"],
        call_id=row["call_id"],
        tenant=row["tenant"],
        queue=row["queue"],
        priority=int(row["priority"]),
        position=int(row["position"]),
        caller=row["caller"],
        number=row["number"],
        dial=row["dial"],
        state=VHoldState(row["state"]),
        arrived_at=row["arrived_at"],
        offered_at=row["offered_at"],
        offers=int(row["offers"]),
        last_offer_waited_s=row["last_offer_waited_s"],
        accepted_at=row["accepted_at"],
        placeholder_answered_at=row["placeholder_answered_at"],
        agent=row["agent"],
        attempts=attempts,
        next_try_at=row["next_try_at"],
        connected_at=row["connected_at"],
        ticket_due_at=row["ticket_due_at"],
        updated_at=row["updated_at"],
        events=events,
    )


_SELECT: Final = "SELECT " + ", ".join(COLUMNS) + " FROM virtual_holds"  # noqa: S608 - ours
# A purged row keeps its personal columns empty whatever a late save brings.
_KEEP_PURGED: Final = {
    "caller": "CASE WHEN virtual_holds.purged_at IS NULL THEN excluded.caller END",
    "number": "CASE WHEN virtual_holds.purged_at IS NULL THEN excluded.number END",
    "dial": "CASE WHEN virtual_holds.purged_at IS NULL THEN excluded.dial ELSE '' END",
}


def _upsert_sql(mark: str) -> str:
    updates = ", ".join(f"{c} = {_KEEP_PURGED.get(c, f'excluded.{c}')}" for c in COLUMNS[2:])
    return (
        f"INSERT INTO virtual_holds ({', '.join(COLUMNS)})"  # noqa: S608 - our column names
        f" VALUES ({', '.join([mark] * len(COLUMNS))})"
        f" ON CONFLICT (node, call_id) DO UPDATE SET {updates}"
        " WHERE virtual_holds.updated_at <= excluded.updated_at"
    )


def _purged_events(text: str) -> str:
    return json.dumps([[at, ev, ""] for at, ev, _ in json.loads(text)])


# ------------------------------------------------------------------ SQLite


class SqliteVirtualHoldStore(VirtualHoldStore):
    """Virtual holds in the node's SQLite state file (beside the overrides).

    Args:
        path: The state file; its folder is created when missing.
    """

    backend = SQLITE
    _mark = "?"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # The override store's file and migration sequence (one state file).
        self._db = open_migrated(
            self.path, lambda db: migrate_sqlite(db, OVERRIDES_SQLITE_MIGRATIONS)
        )

    def close(self) -> None:  # noqa: D102 - see base
        self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    def _save(self, values: dict[str, Any]) -> bool:
        row = [_ts(values[c]) if c in _TIMES else values[c] for c in COLUMNS]
        with self._tx() as db:
            return db.execute(_upsert_sql("?"), row).rowcount > 0

    @staticmethod
    def _time(value: datetime) -> float:
        return value.timestamp()  # REAL Unix seconds, as the journal file

    def _rows(self, where: str, params: Sequence[Any]) -> list[VirtualHold]:
        cur = self._db.execute(f"{_SELECT} WHERE {where}", params)
        names = [d[0] for d in cur.description]
        out = []
        for raw in cur.fetchall():
            row = dict(zip(names, raw, strict=True))
            for c in _TIMES:
                row[c] = _dt(row[c])
            out.append(_hold(row))
        return out

    def purge(self, before: datetime, at: datetime) -> int:  # noqa: D102 - see base
        with self._tx() as db:
            rows = db.execute(
                "SELECT node, call_id, events FROM virtual_holds"  # noqa: S608 - ours
                f" WHERE arrived_at < ? AND purged_at IS NULL AND state IN ({_TERMINAL_SQL})",
                (_ts(_aware(before)),),
            ).fetchall()
            for node, call_id, events in rows:
                db.execute(
                    "UPDATE virtual_holds SET caller = NULL, number = NULL, dial = '',"
                    " events = ?, purged_at = ? WHERE node = ? AND call_id = ?",
                    (_purged_events(events), _ts(_aware(at)), node, call_id),
                )
        return len(rows)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


# ------------------------------------------------------------------ PostgreSQL


class PostgresVirtualHoldStore(VirtualHoldStore):
    """Virtual holds in the shared PostgreSQL database (``virtual_holds`` table).

    Opens the database as the journal and the override store do
    (:meth:`PostgresConnection.migrated`), so it may be the first to create
    the schema; reconnects on the next call after the connection broke.

    Args:
        url: libpq connection URL or DSN.
        connect_timeout: Seconds to connect.
        statement_timeout: Seconds any statement may run.
    """

    backend = POSTGRESQL
    _mark = "%s"

    def __init__(
        self, url: str, *, connect_timeout: float = 5.0, statement_timeout: float = 10.0
    ) -> None:
        self._db = PostgresConnection.migrated(
            url,
            application_name="pbxbridge-virtual-holds",
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )

    def _use(
        self, transaction: bool = False
    ) -> AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]:
        return self._db.use(transaction)

    def close(self) -> None:  # noqa: D102 - see base
        self._db.close()

    def _save(self, values: dict[str, Any]) -> bool:
        with self._use() as conn:
            cur = conn.execute(_upsert_sql("%s").encode(), [values[c] for c in COLUMNS])
            return cur.rowcount > 0

    @staticmethod
    def _time(value: datetime) -> datetime:
        return value

    def _rows(self, where: str, params: Sequence[Any]) -> list[VirtualHold]:
        with self._use() as conn:
            cur = conn.execute(f"{_SELECT} WHERE {where}".encode(), params)
            names = [d.name for d in cur.description or ()]
            raws = cur.fetchall()
        out = []
        for raw in raws:
            row = dict(zip(names, raw, strict=True))
            for c in _TIMES:
                if row[c] is not None:
                    row[c] = row[c].astimezone(UTC)
            out.append(_hold(row))
        return out

    def purge(self, before: datetime, at: datetime) -> int:  # noqa: D102 - see base
        with self._use(transaction=True) as conn:
            rows = conn.execute(
                "SELECT node, call_id, events FROM virtual_holds"  # noqa: S608 - ours
                f" WHERE arrived_at < %s AND purged_at IS NULL AND state IN ({_TERMINAL_SQL})"
                " FOR UPDATE",
                (_aware(before),),
            ).fetchall()
            for node, call_id, events in rows:
                conn.execute(
                    "UPDATE virtual_holds SET caller = NULL, number = NULL, dial = '',"
                    " events = %s, purged_at = %s WHERE node = %s AND call_id = %s",
                    (_purged_events(events), _aware(at), node, call_id),
                )
        return len(rows)


__all__ = [
    "COLUMNS",
    "POSTGRESQL",
    "SQLITE",
    "PostgresVirtualHoldStore",
    "SqliteVirtualHoldStore",
    "VirtualHoldStore",
    "open_virtual_hold_store",
]
