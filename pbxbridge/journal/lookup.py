"""A per-caller lookup off the routing path: started when a call is routed, read when it pops.

The screen pop shows what the journal knows about a caller (calls in the last
days, an open callback). The journal may be a remote PostgreSQL, so the query
never runs on the call's path: :meth:`CallerLookup.prefetch` starts it in a
worker thread when the call is routed, and whoever needs the answer tens of
milliseconds later (the pop, the queue priority) takes whatever is known by
then (:meth:`CallerLookup.get`). A slow or dead database only means no answer.

Answers are kept for a while (``ttl_s``) so that a caller who rings again is
not looked up again at once; the cache is bounded by clearing it when full
(numbers are many, a full cache is rare, and an empty one only costs queries).
Whoever changes what a caller's answer would be (a callback accepted or
written) says so with :meth:`CallerLookup.forget`, and the next call asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")

MAX_ENTRIES: Final = 10_000
"""Cached callers at most (then the cache starts afresh)."""


class CallerLookup(Generic[T]):
    """Cache of one answer per caller number, filled by queries in worker threads.

    Args:
        query: Computes a caller's answer (runs in a worker thread; may open stores).
        ttl_s: How long a known answer is reused.
        failed_event: The log event of a failed query (the number is never
            logged: personal data; the error's text is the store's, without row data).
        on_failure: Called after a failed query (e.g. drop the store's
            connection so that the next query reopens it).
    """

    def __init__(
        self,
        query: Callable[[str], T],
        *,
        ttl_s: float,
        failed_event: str,
        on_failure: Callable[[], None],
    ) -> None:
        self._query = query
        self.ttl_s = ttl_s
        self._failed_event = failed_event
        self._on_failure = on_failure
        self._known: dict[str, tuple[float, T]] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # the forgotten ones too (cancel)

    def prefetch(self, caller: str | None) -> None:
        """Start looking a caller up (non-blocking; call when the call is routed).

        Args:
            caller: E.164 number, or ``None`` for withheld callers.
        """
        if not caller or caller in self._pending:
            return
        known = self._known.get(caller)
        if known is not None and time.monotonic() - known[0] < self.ttl_s:
            return
        task = asyncio.get_running_loop().create_task(self._lookup(caller))
        self._pending[caller] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, caller: str) -> None:
        """Await a pending lookup of ``caller`` (off the call's path: repeat-caller bump, tests)."""
        task = self._pending.get(caller)
        if task is not None:
            await asyncio.shield(task)

    def forget(self, caller: str | None) -> None:
        """Drop what is known of ``caller``: its answer changed (the next prefetch asks again).

        A lookup of it still running may have read the store before the change:
        its answer is not kept (the pending entry goes, so a prefetch starts a new one).

        Args:
            caller: E.164 number; ``None`` or ``""`` do nothing.
        """
        if not caller:
            return
        self._known.pop(caller, None)
        self._pending.pop(caller, None)

    def get(self, caller: str | None) -> T | None:
        """The caller's answer, or ``None`` when not (yet) known."""
        if not caller:
            return None
        known = self._known.get(caller)
        return known[1] if known is not None else None

    async def _lookup(self, caller: str) -> None:
        me = asyncio.current_task()
        current = False
        try:
            answer = await asyncio.to_thread(self._query, caller)
        except Exception as exc:
            log.warning(self._failed_event, error=str(exc))
            self._on_failure()
            return
        finally:
            # Not the caller's pending lookup any more: forgotten meanwhile (its
            # answer may predate the change), and a newer one may be running.
            current = self._pending.get(caller) is me
            if current:
                del self._pending[caller]
        if not current:
            return
        if len(self._known) >= MAX_ENTRIES:
            self._known.clear()
        self._known[caller] = (time.monotonic(), answer)

    def cancel(self) -> None:
        """Cancel the running lookups (on close)."""
        for task in list(self._tasks):
            task.cancel()
