"""Feed the journal without ever slowing a call down, and without losing a call.

:meth:`JournalWriter.submit` is what the daemon calls after every change of a
call (from :class:`~pbxbridge.tracking.call_tracker.CallTracker`' ``on_record`` observer;
:meth:`JournalWriter.observer` adapts it). It only puts the entry into an
in-memory batch, keyed by ``(node, call_id)`` so that a call changing five
times between two flushes is written once, in its latest state. It never
blocks and never raises: the routing path must not care whether the database is
there.

:meth:`JournalWriter.run` flushes the batch every ``flush_interval`` (sooner when
``max_batch`` calls are pending) in a worker thread. When the database fails
(PostgreSQL down, SQLite locked for longer than its busy timeout), the batch
goes to the *spool*: JSON lines appended to segment files in ``spool_dir`` and
fsync'd, so an accepted entry survives the process being killed right after.
While the spool holds anything, newer batches are appended behind it rather
than written directly, and the spool is replayed oldest segment first (each
segment deleted once committed) when the database answers again: the database
never sees an older state of a call after a newer one. Retries back off
exponentially, capped at ``max_backoff``, with some jitter so that several nodes
do not reconnect in lockstep. A spool left behind by a previous process
(crash, kill, database down at shutdown) is replayed first on start.

Durability window: entries are in memory only until the next flush (at most
``flush_interval`` plus the time of the write itself; the PostgreSQL store
bounds that with connect, TCP and statement timeouts). A crash inside that
window loses them; every entry that reached the spool or the database is kept.

A batch the database *refuses* (not a connection problem but the data, see
:meth:`~pbxbridge.journal.store.JournalStore.is_transient`) would block the
journal forever if it were retried as it is: it is retried entry by entry, and
the entries still refused go to ``rejected.jsonl`` beside the spool for an
operator to look at. They hold callers' numbers, so they age out with the
retention: the purge run removes the entries of calls older than the retention
period (:func:`~pbxbridge.journal.spool.age_rejected`). The spool's format and
files are :mod:`pbxbridge.journal.spool`'s.

Only one writer may use a spool directory at a time (one per node).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from pbxbridge.core.lifecycle import CallEvent, CallRecord
from pbxbridge.journal.entry import JournalEntry, entry_from_record
from pbxbridge.journal.spool import Key, _Spool, _valid, coalesce
from pbxbridge.journal.store import JournalStore

log = structlog.get_logger(__name__)

# ------------------------------------------------------------------ the writer


@dataclass(slots=True)
class WriterStats:
    """Counters of a :class:`JournalWriter` (for health and metrics).

    Entry counts are after coalescing where the writer coalesced: five updates
    of one call between two flushes are 5 ``submitted``, 4 ``coalesced`` and 1
    ``written``.

    Attributes:
        submitted: Entries accepted by :meth:`JournalWriter.submit`.
        coalesced: Accepted entries that replaced a pending one of the same call.
        refused: Entries not accepted (naive or out-of-range times, not an entry, or after close).
        written: Entries written to the database directly.
        spooled: Entries appended to the spool.
        replayed: Entries written to the database from the spool.
        rejected: Entries the database refused for good (in ``rejected.jsonl``).
        failures: Failed attempts to reach the database.
        pending: Entries waiting in memory (including one batch in flight).
        spool_backlog: Entries waiting in the spool on disk.
        last_error: The last error, ``None`` once the database answered again.
        db_available: Whether the last attempt to write succeeded.
    """

    submitted: int = 0
    coalesced: int = 0
    refused: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    failures: int = 0
    pending: int = 0
    spool_backlog: int = 0
    last_error: str | None = None
    db_available: bool = False

    @property
    def backlog(self) -> int:
        """Entries not in the database yet (pending + spooled)."""
        return self.pending + self.spool_backlog

    def as_dict(self) -> dict[str, int | str | bool | None]:
        """The counters as a JSON-ready dict (health endpoint, metrics).

        Returns:
            Every counter plus ``backlog``.
        """
        return {
            "submitted": self.submitted,
            "coalesced": self.coalesced,
            "refused": self.refused,
            "written": self.written,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "rejected": self.rejected,
            "failures": self.failures,
            "pending": self.pending,
            "spool_backlog": self.spool_backlog,
            "backlog": self.backlog,
            "last_error": self.last_error,
            "db_available": self.db_available,
        }


class _Transient(Exception):
    """A database error worth retrying (wraps the original)."""


class JournalWriter:
    """Batches journal entries into a store, spooling to disk while it is away.

    Args:
        store_factory: Opens the store (called in a worker thread; again after a
            failure, so a store whose connection broke is replaced).
        spool_dir: Directory for the spool (created when missing; one writer
            per directory).
        flush_interval: Seconds between flushes (the most an entry waits in
            memory when the database is fine).
        max_batch: Calls per transaction; reaching it flushes early.
        min_backoff: First retry delay after a failure, seconds.
        max_backoff: Longest retry delay, seconds.
    """

    def __init__(
        self,
        store_factory: Callable[[], JournalStore],
        spool_dir: str | Path,
        *,
        flush_interval: float = 0.5,
        max_batch: int = 1000,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if flush_interval <= 0 or max_batch < 1 or min_backoff <= 0 or max_backoff < min_backoff:
            raise ValueError("invalid writer settings")
        self._factory = store_factory
        self._spool = _Spool(Path(spool_dir), max_batch)
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._backoff = min_backoff
        self._next_attempt = 0.0  # monotonic; 0: try at once
        self._lock = threading.Lock()  # submit() may come from another thread
        self._pending: dict[Key, JournalEntry] = {}
        self._inflight: list[JournalEntry] = []  # taken from pending, not yet durable
        self._store: JournalStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._closing = False
        self.stats = WriterStats()

    # -- the producer side ---------------------------------------------------

    def submit(self, entry: JournalEntry) -> bool:
        """Accept an entry for writing (never blocks, never raises).

        Safe to call from the event loop and from other threads.

        Args:
            entry: A call's current state.

        Returns:
            Whether it was accepted (``False``: naive times or times out of
            range in UTC, or the writer is closing; logged and counted as
            ``refused``).
        """
        try:
            if self._closing or not _valid(entry):
                self._refuse(entry)
                return False
            key = (entry.node, entry.call_id)
            with self._lock:
                before = len(self._pending)
                self._pending[key] = entry
                size = len(self._pending)
                self.stats.submitted += 1
                self.stats.pending += size - before
                if size == before:
                    self.stats.coalesced += 1
        except Exception:  # the routing path must never see the journal fail
            self.stats.refused += 1
            log.exception("journal.submit_failed")
            return False
        if size == self._max_batch and self._loop is not None:
            # Full batch: flush now. call_soon_threadsafe works from any thread.
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to wake
                self._loop.call_soon_threadsafe(self._wake.set)
        return True

    def _refuse(self, entry: JournalEntry) -> None:
        with self._lock:
            self.stats.refused += 1
            count = self.stats.refused
        # Every submit after close() lands here at shutdown: log a sample only.
        if count <= 10 or count % 1000 == 0:
            log.warning(
                "journal.entry_refused",
                call_id=getattr(entry, "call_id", None),
                why="closing" if self._closing else "naive time or out of range in UTC",
                refused=count,
            )

    def observer(self, node: str) -> Callable[[CallRecord, CallEvent | None], None]:
        """An ``on_record`` observer for :class:`~pbxbridge.tracking.call_tracker.CallTracker`.

        Args:
            node: This node's name (first half of the journal's key).

        Returns:
            A callable that submits the record's journal entry.
        """

        def observe(record: CallRecord, event: CallEvent | None) -> None:
            del event  # the record holds everything the journal needs
            try:
                self.submit(entry_from_record(record, node))
            except Exception:
                log.exception("journal.entry_failed", call_id=record.call_id)

        return observe

    @property
    def spool_dir(self) -> Path:
        """The spool directory."""
        return self._spool.dir

    def spool_files(self) -> list[Path]:
        """The spool's segment files, oldest first (for tests and diagnostics).

        Returns:
            Paths of the segments currently on disk.
        """
        return self._spool.segments

    # -- the consumer side ---------------------------------------------------

    async def run(self) -> None:
        """Flush until :meth:`close`; replay a previous process's spool first.

        Cancelling the task instead of calling :meth:`close` spools what is
        pending (blocking briefly) so that nothing accepted is lost.

        Raises:
            RuntimeError: If the writer is already running.
        """
        if self._task is not None:
            raise RuntimeError("the journal writer is already running")
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            await asyncio.to_thread(self._spool.recover)
            self._refresh()
            if self._spool.entries:
                log.info("journal.spool_found", entries=self._spool.entries)
            first = True  # replay a previous spool at once, not after an interval
            while True:
                if not (self._closing or first):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._flush_interval):
                            await self._wake.wait()
                first = False
                self._wake.clear()
                written = time.monotonic() >= self._next_attempt and await self._attempt()
                if not written and (self._pending or self._inflight):
                    # The database is away: make what is pending durable now,
                    # not when the next retry is due.
                    await self._spool_pending()
                if self._closing:
                    break
        except asyncio.CancelledError:
            self._emergency_spool()
            # A hung connection may hold the store's lock: close it on a daemon
            # thread and do not wait (we are being cancelled).
            store, self._store = self._store, None
            if store is not None:
                threading.Thread(target=_close_quietly, args=(store,), daemon=True).start()
            raise
        finally:
            await self._drop_store()
            self._refresh()
            self._stopped.set()

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - flush deadline
        """Stop accepting, flush (or spool) what is pending, close the store.

        Runs the final flush itself when :meth:`run` was never started. If the
        database hangs past ``timeout``, what is pending is spooled instead.

        Args:
            timeout: Seconds to wait for the final flush.
        """
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            task = asyncio.ensure_future(self.run())
            await asyncio.sleep(0)  # let run() register itself
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("journal.close_timeout", pending=len(self._pending))
            task.cancel()  # run() spools what is pending on cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._refresh()

    # -- internals -----------------------------------------------------------

    def _refresh(self) -> None:
        with self._lock:
            self.stats.pending = len(self._pending) + len(self._inflight)
        self.stats.spool_backlog = self._spool.entries

    def _take(self) -> list[JournalEntry]:
        with self._lock:
            if len(self._pending) <= self._max_batch:
                batch = list(self._pending.values())
                self._pending = {}
            else:
                keys = list(itertools.islice(self._pending, self._max_batch))
                batch = [self._pending.pop(k) for k in keys]
        self._inflight = batch
        return batch

    def _restore(self) -> None:
        """Put an in-flight batch back in front of pending (newer states win)."""
        with self._lock:
            merged = {(e.node, e.call_id): e for e in self._inflight}
            merged.update(self._pending)
            self._pending = merged
        self._inflight = []

    async def _attempt(self) -> bool:
        """Replay the spool, then write pending; on a transient error, back off.

        Returns:
            Whether everything pending reached the database.
        """
        try:
            if self._store is None:
                self._store = await asyncio.to_thread(self._factory)
            while (segment := await asyncio.to_thread(self._spool.oldest)) is not None:
                path, entries, _ = segment
                batch = coalesce(entries)
                await self._write(batch)
                await asyncio.to_thread(self._spool.remove, path)
                self.stats.replayed += len(batch)
                self._refresh()
            while self._pending and not self._spool.entries:
                batch = self._take()
                self._refresh()
                await self._write(batch)
                self._inflight = []
                self.stats.written += len(batch)
                self._refresh()
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, _Transient) else exc
            await self._failed(cause or exc)
            return False
        if not self.stats.db_available:
            log.info(
                "journal.db_available",
                replayed=self.stats.replayed,
                after_failures=self.stats.failures,
            )
        self.stats.db_available = True
        self.stats.last_error = None
        self._backoff = self._min_backoff
        return True

    async def _write(self, batch: list[JournalEntry]) -> None:
        store = self._store
        assert store is not None
        try:
            await asyncio.to_thread(store.upsert, batch)
        except Exception as exc:
            if store.is_transient(exc):
                raise _Transient() from exc
            log.error("journal.batch_refused", entries=len(batch), error=_describe(exc))
            await self._write_one_by_one(store, batch)

    async def _write_one_by_one(self, store: JournalStore, batch: list[JournalEntry]) -> None:
        refused: list[JournalEntry] = []
        for entry in batch:
            try:
                await asyncio.to_thread(store.upsert, [entry])
            except Exception as exc:
                if store.is_transient(exc):
                    raise _Transient() from exc
                refused.append(entry)
                log.error("journal.entry_rejected", call_id=entry.call_id, error=_describe(exc))
        if refused:
            await asyncio.to_thread(self._spool.reject, refused)
            self.stats.rejected += len(refused)

    async def _failed(self, exc: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_error = _describe(exc)
        if self.stats.db_available or self.stats.failures == 1:
            log.warning("journal.db_unavailable", error=self.stats.last_error)
        self.stats.db_available = False
        # Jitter: nodes that lost the same database must not return in lockstep.
        delay = self._backoff * random.uniform(0.8, 1.2)  # noqa: S311 - not crypto
        self._next_attempt = time.monotonic() + delay
        self._backoff = min(self._backoff * 2, self._max_backoff)
        await self._drop_store()

    async def _drop_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(_close_quietly, store)

    async def _spool_pending(self) -> None:
        """Append the in-flight batch (older) and then everything pending."""
        while self._inflight or self._pending:
            batch = self._inflight or self._take()
            self._refresh()
            try:
                await asyncio.to_thread(self._spool.append, batch)
            except OSError as exc:
                # Disk full or gone: keep the entries in memory and try again
                # next round; the routing path still does not notice.
                self._restore()
                self.stats.last_error = f"spool: {_describe(exc)}"
                log.error("journal.spool_failed", error=self.stats.last_error)
                return
            finally:
                self._refresh()
            self._inflight = []
            self.stats.spooled += len(batch)
            self._refresh()

    def _emergency_spool(self) -> None:
        # Cancelled (or close() timed out): block the loop briefly rather than
        # lose what was accepted. The in-flight batch may also have reached the
        # database; writing it again later is harmless (same values, in order).
        with self._lock:
            batch = [*self._inflight, *self._pending.values()]
            self._pending = {}
        self._inflight = []
        if not batch:
            return
        try:
            self._spool.append(batch)
            self.stats.spooled += len(batch)
        except OSError as exc:
            log.error("journal.entries_lost", entries=len(batch), error=_describe(exc))
        self._refresh()


def _close_quietly(store: JournalStore) -> None:
    try:
        store.close()
    except Exception as exc:  # a broken connection may fail to close
        log.debug("journal.store_close_failed", error=_describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


__all__ = [
    "JournalWriter",
    "WriterStats",
]
