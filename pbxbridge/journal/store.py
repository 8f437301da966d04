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
numbers in the rest are shortened, in :class:`PostgresConnection`, the one
place every statement of both stores passes (see :func:`redact_database_error`).

Both stores are synchronous and meant to be called from a worker thread
(``asyncio.to_thread``). One instance serialises its own calls with a lock, but
it holds a single connection: give each long-running user (the journal
writer, a report) its own instance.

Times go in as timezone-aware datetimes (naive ones are refused: guessing a
zone is how a journal ends up an hour off twice a year) and come out as aware
UTC datetimes. SQLite stores them as REAL Unix seconds, PostgreSQL as
``timestamptz`` (see :mod:`pbxbridge.journal.schema`).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pbxbridge.core.numbers import mask_numbers
from pbxbridge.journal.entry import JournalEntry
from pbxbridge.journal.schema import POSTGRES_MIGRATIONS, SCHEMA_VERSION, SQLITE_MIGRATIONS
from pbxbridge.runtime.settings import redact_database_url


class Disposition:
    """Values of :attr:`CallRow.disposition` (``None``: not recorded yet)."""

    RESOLVED = "resolved"
    """Settled in the first contact."""
    CALLBACK = "callback"
    """Someone has to call back (by :attr:`CallRow.callback_due_at`)."""


DISPOSITIONS: Final = frozenset({Disposition.RESOLVED, Disposition.CALLBACK})
MAX_NOTE_CHARS: Final = 500
"""Longest disposition note accepted (the schema documents the limit)."""

ENTRY_COLUMNS: Final[tuple[str, ...]] = (
    "node",
    "call_id",
    "tenant",
    "did",
    "caller",
    "via_115",
    "action",
    "reasons",
    "arrived_at",
    "queued_at",
    "answered_at",
    "ended_at",
    "outcome",
    "agent",
    "queue",
    "wait_s",
    "talk_s",
    "rings",
)
"""Columns written by :meth:`JournalStore.upsert`, in :class:`JournalEntry` order."""

LIFECYCLE_COLUMNS: Final = ENTRY_COLUMNS[2:]
"""Columns an upsert overwrites (the key excluded)."""

DISPOSITION_COLUMNS: Final[tuple[str, ...]] = (
    "disposition",
    "disposition_at",
    "disposition_by",
    "disposition_note",
    "callback_number",
    "callback_due_at",
    "callback_done_at",
    "purged_at",
)
"""Columns only agents (and retention) write; an upsert never touches them."""

ALL_COLUMNS: Final = ENTRY_COLUMNS + DISPOSITION_COLUMNS
_ARRIVED: Final = ALL_COLUMNS.index("arrived_at")
_PAGE: Final = 2000
"""Rows fetched per query when iterating (bounded memory for 90-day reports)."""
PURGE_BATCH: Final = 10_000
"""Calls purged per statement (and transaction): ~0.2 s each on PostgreSQL."""


@dataclass(frozen=True, slots=True)
class CallRow:
    """One stored call, every column (what reports and the callback list read).

    Times are aware UTC datetimes. The lifecycle attributes mean what they mean
    on :class:`~pbxbridge.journal.entry.JournalEntry`.

    Attributes:
        node: The node that handled the call.
        call_id: The caller channel's unique id.
        tenant: Tenant id (``""`` for rejected calls without tenant).
        did: Dialled number.
        caller: Caller in E.164, or ``None`` (withheld, or purged).
        via_115: Arrived on a 115 number.
        action: The routing action (queue, closed, reject).
        reasons: The decision's trace.
        arrived_at: When the call was routed.
        queued_at: When it joined the queue.
        answered_at: When an agent answered.
        ended_at: When it ended.
        outcome: See :class:`~pbxbridge.journal.entry.Outcome`.
        agent: The agent who answered (or was last rung).
        queue: The queue it joined.
        wait_s: Seconds waited in the queue.
        talk_s: Seconds of conversation.
        rings: Ring attempts: ``[{"agent", "started", "ended", "outcome"}]``.
        disposition: ``None``, ``"resolved"`` or ``"callback"``.
        disposition_at: When the agent recorded it.
        disposition_by: The agent who recorded it.
        disposition_note: The agent's short note (``None`` once purged).
        callback_number: Number to call back (``None`` once purged).
        callback_due_at: When the callback is due.
        callback_done_at: When the callback was marked done.
        purged_at: When retention removed the personal data.
    """

    node: str
    call_id: str
    tenant: str
    did: str
    caller: str | None
    via_115: bool
    action: str
    reasons: tuple[str, ...]
    arrived_at: datetime
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    outcome: str
    agent: str
    queue: str
    wait_s: float | None
    talk_s: float | None
    rings: tuple[dict[str, str | None], ...]
    disposition: str | None
    disposition_at: datetime | None
    disposition_by: str | None
    disposition_note: str | None
    callback_number: str | None
    callback_due_at: datetime | None
    callback_done_at: datetime | None
    purged_at: datetime | None


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
_PURGE_SET = (
    # The note is free text an agent typed: it may well name the caller; the
    # reasons carry the caller string (shortened now, whole in older rows).
    "UPDATE calls SET caller = NULL, callback_number = NULL, disposition_note = NULL,"
    " reasons = '[]', purged_at = ?"
)
_PURGE_BATCH_ROWS = (
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
        )

    def _row(self, raw: tuple[Any, ...]) -> CallRow:
        # Positional and without per-column lookups: reports convert hundreds of
        # thousands of rows, and this is most of their time.
        (node, call_id, tenant, did, caller, via_115, action, reasons, arrived_at,
         queued_at, answered_at, ended_at, outcome, agent, queue, wait_s, talk_s, rings,
         disposition, disposition_at, disposition_by, disposition_note, callback_number,
         callback_due_at, callback_done_at, purged_at) = raw
        t = self._from_time
        return CallRow(
            node, call_id, tenant, did, caller, bool(via_115), action, _reasons(reasons),
            t(arrived_at),
            None if queued_at is None else t(queued_at),
            None if answered_at is None else t(answered_at),
            None if ended_at is None else t(ended_at),
            outcome, agent, queue, wait_s, talk_s,
            tuple(json.loads(rings)) if rings != "[]" else (),
            disposition,
            None if disposition_at is None else t(disposition_at),
            disposition_by, disposition_note, callback_number,
            None if callback_due_at is None else t(callback_due_at),
            None if callback_done_at is None else t(callback_done_at),
            None if purged_at is None else t(purged_at),
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
        return self._pages(where, bounds)

    def _pages(self, where: str, bounds: list[Any]) -> Iterator[CallRow]:
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


# ------------------------------------------------------------------ SQLite


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
        _PURGE_SET + " WHERE purged_at IS NULL AND rowid IN (SELECT rowid" + _PURGE_BATCH_ROWS + ")"
    )

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: asyncio.to_thread may use any pool thread.
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so that the
        # migration's read-then-write holds the write lock throughout.
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
        )
        try:
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            self._db.execute("PRAGMA synchronous=FULL")
            # Switching a fresh file to WAL and migrating it take locks SQLite may
            # refuse at once (SQLITE_BUSY without the busy handler) while another
            # process does the same: retry for a while.
            deadline = time.monotonic() + max(busy_timeout, 1.0)
            while True:
                try:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._migrate()
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        except BaseException:
            self._db.close()
            raise

    @property
    def schema_version(self) -> int:
        """The schema version of the file (``PRAGMA user_version``)."""
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        # Up to date (the usual case): no write lock needed, so opening works
        # even while another connection holds a long write transaction.
        if int(self._db.execute("PRAGMA user_version").fetchone()[0]) >= SCHEMA_VERSION:
            return
        # The version is read again inside the write transaction: two processes
        # opening a fresh file at once must not both run migration 1.
        with self._tx() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(SQLITE_MIGRATIONS[version:], start=version + 1):
                # executescript() would COMMIT our transaction first.
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

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


# ------------------------------------------------------------------ PostgreSQL

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
    by the journal and the override store (:mod:`pbxbridge.storage.overrides`).

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


_PgConnection = psycopg.Connection[tuple[Any, ...]]


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
        _PURGE_SET
        + " WHERE purged_at IS NULL AND ctid = ANY(ARRAY(SELECT ctid"
        + _PURGE_BATCH_ROWS
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


__all__ = [
    "ALL_COLUMNS",
    "DISPOSITIONS",
    "MAX_NOTE_CHARS",
    "SCHEMA_VERSION",
    "CallRow",
    "Disposition",
    "JournalStore",
    "PostgresJournal",
    "SqliteJournal",
    "connect_postgres",
    "migrate_postgres",
    "redact_database_error",
]
