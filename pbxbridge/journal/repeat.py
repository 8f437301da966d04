"""How often a caller called in the last 7 days, for the screen pop.

Agents use the count to spot unresolved matters. The count comes from the
journal, which may be a remote PostgreSQL: the lookup starts when the call is
routed, runs in a worker thread, and the pop (tens of milliseconds later, when
an agent's phone rings) shows whatever is known by then; a slow database only
means the pop shows no count.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pbxbridge.journal.lookup import CallerLookup
from pbxbridge.journal.store import JournalStore

WINDOW = timedelta(days=7)
_TTL_S = 600.0


class RepeatCallers:
    """Recent-call counts per caller number (a :class:`~pbxbridge.journal.lookup.CallerLookup`).

    Args:
        open_store: Opens a journal store of its own (called in a worker thread).
    """

    def __init__(self, open_store: Callable[[], JournalStore]) -> None:
        self._open = open_store
        self._store: JournalStore | None = None
        self._lookup = CallerLookup(
            self._query,
            ttl_s=_TTL_S,
            failed_event="journal.repeat_lookup_failed",
            on_failure=self._forget_store,
        )

    def prefetch(self, caller: str | None) -> None:
        """Start looking up a caller (non-blocking; call when the call is routed).

        Args:
            caller: E.164 number, or ``None`` for withheld callers.
        """
        self._lookup.prefetch(caller)

    def count(self, caller: str) -> int | None:
        """Earlier calls of a caller in the last 7 days, or ``None`` when not known.

        Args:
            caller: E.164 number.

        Returns:
            Calls in the last 7 days, or ``None`` when not (yet) known.
        """
        return self._lookup.get(caller)

    def _forget_store(self) -> None:
        self._store = None  # reopen next time (connection lost)

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
        self._lookup.cancel()
        if self._store is not None:
            self._store.close()
            self._store = None
