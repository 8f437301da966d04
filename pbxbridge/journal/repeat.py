"""How often a caller called in the last 7 days, for the screen pop.

Agents use the count to spot unresolved matters. The count comes from the
journal, which may be a remote PostgreSQL: the lookup starts when the call is
routed, runs in a worker thread, and the pop (tens of milliseconds later, when
an agent's phone rings) shows whatever is known by then; a slow database only
means the pop shows no count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from pbxbridge.journal.store import JournalStore

log = structlog.get_logger(__name__)

WINDOW = timedelta(days=7)
_TTL_S = 600.0
_MAX_ENTRIES = 10_000


class RepeatCallers:
    """Cache of recent-call counts per caller number.

    Args:
        open_store: Opens a journal store of its own (called in a worker thread).
    """

    def __init__(self, open_store: Callable[[], JournalStore]) -> None:
        self._open = open_store
        self._store: JournalStore | None = None
        self._counts: dict[str, tuple[float, int]] = {}
        self._pending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def prefetch(self, caller: str | None) -> None:
        """Start looking up a caller (non-blocking; call when the call is routed).

        Args:
            caller: E.164 number, or ``None`` for withheld callers.
        """
        if not caller or caller in self._pending:
            return
        cached = self._counts.get(caller)
        if cached is not None and time.monotonic() - cached[0] < _TTL_S:
            return
        self._pending.add(caller)
        task = asyncio.get_running_loop().create_task(self._lookup(caller))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def count(self, caller: str) -> int | None:
        """Earlier calls of a caller in the last 7 days, or ``None`` when not known.

        Args:
            caller: E.164 number.

        Returns:
            Calls in the last 7 days, or ``None`` when not (yet) known.
        """
        cached = self._counts.get(caller)
        return cached[1] if cached is not None else None

    async def _lookup(self, caller: str) -> None:
        try:
            count = await asyncio.to_thread(self._query, caller)
        except Exception as exc:
            log.warning("journal.repeat_lookup_failed", error=str(exc))
            self._store = None  # reopen next time (connection lost)
            return
        finally:
            self._pending.discard(caller)
        if len(self._counts) >= _MAX_ENTRIES:
            self._counts.clear()
        self._counts[caller] = (time.monotonic(), count)

    def _query(self, caller: str) -> int:
        if self._store is None:
            self._store = self._open()
        now = datetime.now(UTC)
        # Earlier calls: those journaled in the window, minus the last few
        # seconds, which may hold this very call (written meanwhile).
        return self._store.repeat_count(caller, now - WINDOW) - self._store.repeat_count(
            caller, now - timedelta(seconds=5)
        )

    def close(self) -> None:
        """Close the store."""
        for task in self._tasks:
            task.cancel()
        if self._store is not None:
            self._store.close()
            self._store = None
