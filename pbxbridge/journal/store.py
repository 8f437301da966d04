"""Where the call journal lives: SQLite (one node) or PostgreSQL (shared by nodes).

Both stores implement :class:`JournalStore` with the same semantics, so the
writer, the reports and the CLI never care which one they talk to:

* :meth:`JournalStore.upsert` writes one row per call, inserted on the first
  update and overwritten in place afterwards. Only the *lifecycle* columns are
  overwritten (the ones :class:`~pbxbridge.journal.entry.JournalEntry` carries);
  the disposition columns belong to the agents and are never touched by it.
* Reading is by arrival time (half-open ``[start, end)``), by callback deadline
  (reports), by caller (repeat calls) and by open callback.
* :meth:`JournalStore.purge` is the retention step: it removes the personal data
  (caller and callback numbers, the agent's free-text note, the routing trace)
  of old calls and keeps everything the aggregates need. It works in batches
  of :data:`PURGE_BATCH` rows, each its own short transaction, so that a large
  backlog neither hits PostgreSQL's statement timeout nor holds up the writer.

Errors from PostgreSQL carry no row data: the server's ``DETAIL`` ("Failing
row contains (…)", "Key (…)=(…)") and the statement excerpt are dropped and
numbers in the rest are shortened, in
:class:`~pbxbridge.storage.postgres.PostgresConnection`, the one place every
statement of both stores passes (see
:func:`~pbxbridge.storage.postgres.redact_database_error`).

Both stores are synchronous and meant to be called from a worker thread
(``asyncio.to_thread``). One instance serialises its own calls with a lock, but
it holds a single connection: give each long-running user (the journal
writer, a report) its own instance.

Times go in as timezone-aware datetimes (naive ones are refused: guessing a
zone is how a journal ends up an hour off twice a year) and come out as aware
UTC datetimes. SQLite stores them as REAL Unix seconds, PostgreSQL as
``timestamptz`` (see :mod:`pbxbridge.storage.schema`). The two stores are
:class:`~pbxbridge.journal.sqlite.SqliteJournal` and
:class:`~pbxbridge.journal.postgres.PostgresJournal`; this module holds what
they share (the interface, the row, the SQL).
"""

from __future__ import annotations

import functools
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final, Self

from pbxbridge.journal.entry import JournalEntry


class Disposition:
    """Values of :attr:`CallRow.disposition` (``None``: not recorded yet)."""

    RESOLVED = "resolved"
    """Settled in the first contact."""
    CALLBACK = "callback"
    """Someone has to call back (by :attr:`CallRow.callback_due_at`)."""


DISPOSITIONS: Final = frozenset({Disposition.RESOLVED, Disposition.CALLBACK})
MAX_NOTE_CHARS: Final = 500
"""Longest disposition note accepted (the schema documents the limit)."""

_PAGE: Final = 2000
"""Rows fetched per query when iterating (bounded memory for 90-day reports)."""
PURGE_BATCH: Final = 10_000
"""Calls purged per statement (and transaction): ~0.2 s each on PostgreSQL."""


@dataclass(frozen=True, slots=True)
class CallRow(JournalEntry):
    """One stored call, every column (what reports and the callback list read).

    The writer's :class:`~pbxbridge.journal.entry.JournalEntry` (the lifecycle
    columns, which mean what they mean there) plus the columns only agents and
    retention write. Times are aware UTC datetimes.

    Attributes:
        disposition: ``None``, ``"resolved"`` or ``"callback"``.
        disposition_at: When the agent recorded it.
        disposition_by: The agent who recorded it.
        disposition_note: The agent's short note (``None`` once purged).
        callback_number: Number to call back (``None`` once purged).
        callback_due_at: When the callback is due.
        callback_done_at: When the callback was marked done.
        purged_at: When retention removed the personal data.
    """

    disposition: str | None
    disposition_at: datetime | None
    disposition_by: str | None
    disposition_note: str | None
    callback_number: str | None
    callback_due_at: datetime | None
    callback_done_at: datetime | None
    purged_at: datetime | None


ENTRY_COLUMNS: Final = tuple(f.name for f in fields(JournalEntry))
"""Columns written by :meth:`JournalStore.upsert`, in :class:`JournalEntry` order."""

LIFECYCLE_COLUMNS: Final = ENTRY_COLUMNS[2:]
"""Columns an upsert overwrites (the key excluded)."""

ALL_COLUMNS: Final = tuple(f.name for f in fields(CallRow))
"""Every column, in :class:`CallRow` order (the order of the SELECTs)."""

_ARRIVED: Final = ALL_COLUMNS.index("arrived_at")


class JournalStore(ABC):
    """The journal's storage (synchronous; call it from a worker thread).

    Use as a context manager or call :meth:`close`.
    """

    @abstractmethod
    def upsert(self, entries: Sequence[JournalEntry]) -> None:
        """Insert or update calls, all in one transaction.

        Only the lifecycle columns are written; the disposition columns that
        agents set are kept. When ``entries`` holds several versions of one call,
        the last one wins. A call whose personal data was purged stays purged.

        Args:
            entries: The calls' current states.

        Raises:
            ValueError: If an entry has a naive time.
        """

    @abstractmethod
    def calls_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterator[CallRow]:
        """Calls that arrived in ``[start, end)``, oldest first.

        Rows are fetched lazily, page by page, so a 90-day report does not hold
        the whole range in memory. The iteration is not one snapshot: a call
        written meanwhile may or may not appear.

        Args:
            start: Inclusive lower bound on ``arrived_at`` (aware).
            end: Exclusive upper bound on ``arrived_at`` (aware).
            tenant: Only this tenant (``""``: calls without tenant); ``None``: all.

        Returns:
            The rows, ordered by ``(arrived_at, node, call_id)``.

        Raises:
            ValueError: If a bound is naive.
        """

    @abstractmethod
    def callbacks_due_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterator[CallRow]:
        """Calls with a callback whose deadline falls in ``[start, end)``, done or not.

        However long ago the call arrived: reports count callbacks by their
        deadline, and deadlines may lie weeks after the call (working days
        across long closures).

        Args:
            start: Inclusive lower bound on ``callback_due_at`` (aware).
            end: Exclusive upper bound on ``callback_due_at`` (aware).
            tenant: Only this tenant; ``None``: all.

        Returns:
            The rows, ordered by ``(arrived_at, node, call_id)``.

        Raises:
            ValueError: If a bound is naive.
        """

    @abstractmethod
    def repeat_count(self, caller: str, since: datetime) -> int:
        """How many calls from ``caller`` arrived at or after ``since`` (all nodes).

        Args:
            caller: E.164 number; ``""`` counts nothing.
            since: Start of the window (aware).

        Returns:
            The number of calls (purged ones no longer have a caller).
        """

    @abstractmethod
    def set_disposition(
        self,
        node: str,
        call_id: str,
        disposition: str,
        by: str,
        note: str,
        callback_number: str | None,
        due_at: datetime | None,
        at: datetime,
    ) -> bool:
        """Record what an agent concluded about a call (replaces an earlier one).

        Args:
            node: The call's node.
            call_id: The call.
            disposition: ``"resolved"`` or ``"callback"``.
            by: The agent.
            note: Short note (at most :data:`MAX_NOTE_CHARS` characters; not
                stored for a call already purged).
            callback_number: Number to call back (``callback`` only).
            due_at: When the callback is due (required for ``callback``).
            at: When the agent recorded it (aware).

        Returns:
            Whether the call exists (``False``: not journalled yet; retry later).

        Raises:
            ValueError: On an unknown disposition, a note that is too long, a
                callback without due time, callback data on ``resolved`` or a
                naive time.
        """

    @abstractmethod
    def mark_callback_done(self, node: str, call_id: str, at: datetime) -> bool:
        """Mark an open callback as done.

        Args:
            node: The call's node.
            call_id: The call.
            at: When it was done (aware).

        Returns:
            Whether an open callback was closed (``False``: none, or done already).
        """

    @abstractmethod
    def open_callbacks(self, tenant: str | None = None) -> list[CallRow]:
        """Callbacks not done yet, the most urgent first.

        Args:
            tenant: Only this tenant; ``None``: all.

        Returns:
            Rows ordered by ``(callback_due_at, arrived_at)``.
        """

    @abstractmethod
    def purge(self, before: datetime, at: datetime) -> int:
        """Remove the personal data of calls that arrived before ``before``.

        Sets ``caller``, ``callback_number`` and ``disposition_note`` (free
        text that may name the caller) to ``NULL``, empties ``reasons`` (the
        routing trace names the caller, and older versions wrote it whole) and
        stamps ``purged_at``; every other column stays for the aggregates.
        Calls purged earlier are left alone (their ``purged_at`` stays the
        first purge). Works in batches of :data:`PURGE_BATCH` calls, each
        committed on its own: an interrupted purge keeps what it did, and the
        next run goes on from there.

        Args:
            before: Calls with ``arrived_at < before`` are purged (aware).
            at: The purge time stamped on them (aware).

        Returns:
            How many calls were purged now.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    def is_transient(self, exc: BaseException) -> bool:
        """Whether an error from this store is worth retrying as it is.

        The writer retries (and meanwhile spools) transient errors: the database
        is down, unreachable, locked or timed out. Anything else means the data
        itself was refused, and retrying the same batch would block the journal
        for good.

        Args:
            exc: An exception raised by one of the methods.

        Returns:
            True for connection/lock/timeout/I/O problems.
        """
        return isinstance(exc, OSError)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ shared SQL


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value


def _clean(text: str) -> str:
    # PostgreSQL refuses NUL in text and neither driver can encode lone
    # surrogates (which JSON-decoded hostile caller names can contain): one such
    # string would make its whole batch fail forever. Replace, don't refuse.
    if "\x00" not in text and (text.isascii() or text.isprintable()):
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _clean_or_none(text: str | None) -> str | None:
    return None if text is None else _clean(text)


@functools.lru_cache(maxsize=4096)
def _reasons(text: str) -> tuple[str, ...]:
    # Traces repeat (same tenant, same hours, same steps): decode each text once.
    # Sharing the tuple is safe, it is immutable.
    return tuple(json.loads(text))


def _dedupe(entries: Sequence[JournalEntry]) -> list[JournalEntry]:
    # One statement may not update the same row twice (PostgreSQL refuses it in
    # one INSERT; in general it is wasted work): the last version wins.
    latest: dict[tuple[str, str], JournalEntry] = {}
    for entry in entries:
        latest[(entry.node, entry.call_id)] = entry
    return list(latest.values())


_UPSERT = (
    f"INSERT INTO calls ({', '.join(ENTRY_COLUMNS)}) "  # noqa: S608 - our column names
    f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)}) "
    "ON CONFLICT (node, call_id) DO UPDATE SET "
    + ", ".join(
        # A late update (a replayed spool, a call running across the purge) must
        # not bring back a number retention has removed.
        "caller = CASE WHEN calls.purged_at IS NULL THEN excluded.caller END"
        if column == "caller"
        else "reasons = CASE WHEN calls.purged_at IS NULL THEN excluded.reasons"
        " ELSE calls.reasons END"
        if column == "reasons"
        else f"{column} = excluded.{column}"
        for column in LIFECYCLE_COLUMNS
    )
)
_SELECT = f"SELECT {', '.join(ALL_COLUMNS)} FROM calls"  # noqa: S608 - our column names
_ORDER = " ORDER BY arrived_at, node, call_id LIMIT ?"
_SET_DISPOSITION = (
    "UPDATE calls SET disposition = ?, disposition_at = ?, disposition_by = ?,"
    # Same reason as in the upsert: a purged call gets no note or number back.
    " disposition_note = CASE WHEN purged_at IS NULL THEN ? END,"
    " callback_number = CASE WHEN purged_at IS NULL THEN ? END,"
    " callback_due_at = ?, callback_done_at = NULL"
    " WHERE node = ? AND call_id = ?"
)
_CALLBACK_DONE = (
    "UPDATE calls SET callback_done_at = ? WHERE node = ? AND call_id = ?"
    " AND disposition = 'callback' AND callback_done_at IS NULL"
)
_OPEN_CALLBACKS = (
    # The exact predicate of the partial index calls_callbacks, so it is used.
    " WHERE disposition = 'callback' AND callback_done_at IS NULL"
)
_CALLBACKS_DUE = (
    # The predicate of the partial index calls_callback_due (migration 2).
    " WHERE disposition = 'callback' AND callback_due_at >= ? AND callback_due_at < ?"
)
PURGE_SET = (
    # The note is free text an agent typed: it may well name the caller; the
    # reasons carry the caller string (shortened now, whole in older rows).
    "UPDATE calls SET caller = NULL, callback_number = NULL, disposition_note = NULL,"
    " reasons = '[]', purged_at = ?"
)
PURGE_BATCH_ROWS = (
    # One batch, the oldest first, read from the partial index calls_unpurged
    # (migration 2), which holds only the calls not purged yet: each batch
    # costs the same however many were purged before it. (Without the ORDER
    # BY, PostgreSQL scans the table from its start every time.)
    " FROM calls WHERE arrived_at < ? AND purged_at IS NULL ORDER BY arrived_at LIMIT ?"
)


class _SqlJournal(JournalStore):
    """The journal logic once, over a small driver interface (the hooks)."""

    _PARAM = "?"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False

    # -- hooks -------------------------------------------------------------

    @abstractmethod
    def _time(self, value: datetime) -> Any:
        """A datetime as the driver stores it."""

    @abstractmethod
    def _from_time(self, value: Any) -> datetime:
        """A stored time as an aware UTC datetime."""

    @abstractmethod
    def _bool(self, value: bool) -> Any:
        """A bool as the driver stores it."""

    @abstractmethod
    def _write(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement in its own transaction; the affected row count."""

    @abstractmethod
    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many rows in one transaction."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a query; all its rows."""

    # -- helpers -----------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text if self._PARAM == "?" else text.replace("?", self._PARAM)

    def _opt_time(self, value: datetime | None, name: str) -> Any:
        return None if value is None else self._time(_aware(value, name))

    def _params(self, e: JournalEntry) -> tuple[Any, ...]:
        return (
            _clean(e.node),
            _clean(e.call_id),
            _clean(e.tenant),
            _clean(e.did),
            _clean_or_none(e.caller),
            self._bool(e.via_115),
            _clean(e.action),
            _clean(e.reasons_json()),
            self._time(_aware(e.arrived_at, "arrived_at")),
            self._opt_time(e.queued_at, "queued_at"),
            self._opt_time(e.answered_at, "answered_at"),
            self._opt_time(e.ended_at, "ended_at"),
            _clean(e.outcome),
            _clean(e.agent),
            _clean(e.queue),
            e.wait_s,
            e.talk_s,
            _clean(e.rings_json()),
            _clean_or_none(e.menu_digit),
        )

    def _row(self, raw: tuple[Any, ...]) -> CallRow:
        # Positional and without per-column lookups: reports convert hundreds of
        # thousands of rows, and this is most of their time.
        (
            node,
            call_id,
            tenant,
            did,
            caller,
            via_115,
            action,
            reasons,
            arrived_at,
            queued_at,
            answered_at,
            ended_at,
            outcome,
            agent,
            queue,
            wait_s,
            talk_s,
            rings,
            menu_digit,
            disposition,
            disposition_at,
            disposition_by,
            disposition_note,
            callback_number,
            callback_due_at,
            callback_done_at,
            purged_at,
        ) = raw
        t = self._from_time
        return CallRow(
            node,
            call_id,
            tenant,
            did,
            caller,
            bool(via_115),
            action,
            _reasons(reasons),
            t(arrived_at),
            None if queued_at is None else t(queued_at),
            None if answered_at is None else t(answered_at),
            None if ended_at is None else t(ended_at),
            outcome,
            agent,
            queue,
            wait_s,
            talk_s,
            tuple(json.loads(rings)) if rings != "[]" else (),
            disposition,
            None if disposition_at is None else t(disposition_at),
            disposition_by,
            disposition_note,
            callback_number,
            None if callback_due_at is None else t(callback_due_at),
            None if callback_done_at is None else t(callback_done_at),
            None if purged_at is None else t(purged_at),
            menu_digit=menu_digit,
        )

    # -- the API -----------------------------------------------------------

    def upsert(self, entries: Sequence[JournalEntry]) -> None:
        rows = [self._params(e) for e in _dedupe(entries)]
        if rows:
            self._write_many(self._sql(_UPSERT), rows)

    def calls_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterator[CallRow]:
        # Validate now, not at the first next(): errors belong to the caller.
        bounds = [self._time(_aware(start, "start")), self._time(_aware(end, "end"))]
        where = " WHERE arrived_at >= ? AND arrived_at < ?"
        if tenant is not None:
            where += " AND tenant = ?"
            bounds.append(tenant)
        return self._pages(where, bounds, by_arrival=True)

    def _pages(
        self, where: str, bounds: list[Any], *, by_arrival: bool = False
    ) -> Iterator[CallRow]:
        # Keyset paging: each page is a short query of its own, so iterating a
        # long range holds no transaction (and no lock) between pages.
        first = self._sql(_SELECT + where + _ORDER)
        after = self._sql(_SELECT + where + " AND (arrived_at, node, call_id) > (?, ?, ?)" + _ORDER)
        raw = self._read(first, [*bounds, _PAGE])
        while raw:
            for item in raw:
                yield self._row(item)
            if len(raw) < _PAGE:
                return
            last = raw[-1]
            if by_arrival:
                # The next page starts at the last arrival: SQLite's index
                # search takes the first lower bound, not the row value, and
                # would otherwise walk every earlier row again on each page
                # (a million calls: 40 s instead of 10).
                bounds = [last[_ARRIVED], *bounds[1:]]
            raw = self._read(after, [*bounds, last[_ARRIVED], last[0], last[1], _PAGE])

    def callbacks_due_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterator[CallRow]:
        bounds = [self._time(_aware(start, "start")), self._time(_aware(end, "end"))]
        where = _CALLBACKS_DUE
        if tenant is not None:
            where += " AND tenant = ?"
            bounds.append(tenant)
        return self._pages(where, bounds)

    def repeat_count(self, caller: str, since: datetime) -> int:
        if not caller:
            return 0
        rows = self._read(
            self._sql("SELECT count(*) FROM calls WHERE caller = ? AND arrived_at >= ?"),
            [caller, self._time(_aware(since, "since"))],
        )
        return int(rows[0][0])

    def set_disposition(
        self,
        node: str,
        call_id: str,
        disposition: str,
        by: str,
        note: str,
        callback_number: str | None,
        due_at: datetime | None,
        at: datetime,
    ) -> bool:
        if disposition not in DISPOSITIONS:
            raise ValueError(f"unknown disposition {disposition!r}")
        if len(note) > MAX_NOTE_CHARS:
            raise ValueError(f"the note is longer than {MAX_NOTE_CHARS} characters")
        if disposition == Disposition.CALLBACK and due_at is None:
            raise ValueError("a callback needs a due time")
        if disposition == Disposition.RESOLVED and (
            callback_number is not None or due_at is not None
        ):
            raise ValueError("a resolved call has no callback number or due time")
        count = self._write(
            self._sql(_SET_DISPOSITION),
            (
                disposition,
                self._time(_aware(at, "at")),
                _clean(by),
                _clean(note),
                _clean_or_none(callback_number),
                self._opt_time(due_at, "due_at"),
                node,
                call_id,
            ),
        )
        return count > 0

    def mark_callback_done(self, node: str, call_id: str, at: datetime) -> bool:
        count = self._write(
            self._sql(_CALLBACK_DONE), (self._time(_aware(at, "at")), node, call_id)
        )
        return count > 0

    def open_callbacks(self, tenant: str | None = None) -> list[CallRow]:
        sql = _SELECT + _OPEN_CALLBACKS
        params: list[Any] = []
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)
        sql += " ORDER BY callback_due_at, arrived_at, node, call_id"
        return [self._row(r) for r in self._read(self._sql(sql), params)]

    _purge_batch = PURGE_BATCH
    _PURGE: str
    """The batched purge statement (rows addressed by the engine's row id)."""

    def purge(self, before: datetime, at: datetime) -> int:
        params = (self._time(_aware(at, "at")), self._time(_aware(before, "before")))
        sql = self._sql(self._PURGE)
        total = 0
        while True:
            # Each batch is its own transaction (and statement, under the
            # statement timeout): the journal writer gets the table between two.
            count = self._write(sql, (*params, self._purge_batch))
            total += count
            # Not "fewer than a batch": a batch may come short with more left
            # (PostgreSQL skips a row updated meanwhile). Nothing purged means
            # nothing left, or another node purging the same rows right now.
            if count == 0:
                return total


__all__ = [
    "ALL_COLUMNS",
    "DISPOSITIONS",
    "MAX_NOTE_CHARS",
    "CallRow",
    "Disposition",
    "JournalStore",
]
