"""One keyed serial dispatcher: events of one key in order, keys concurrently.

ARI and AMI both hand each event to a handler in a task, so a slow handler never
stalls the socket reader (Asterisk drops a client whose socket stops accepting
writes). Events under the same key (ARI: the channel; AMI: the call's
``Linkedid``) must still be handled one at a time and in the order Asterisk sent
them, also across reconnects; events of different keys run concurrently and have
no order between them. Concurrency is not bounded.

Each key with work has one "lane": a queue and the one task draining it. The lane
disappears when it is empty, so idle keys cost nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final, Generic, TypeVar

import structlog

__all__ = ["Handler", "KeyedDispatcher"]

log = structlog.get_logger(__name__)

EventT = TypeVar("EventT")

Handler = Callable[[EventT], Awaitable[None]]
"""Coroutine function called once per event."""

# Bounded wait for cancelled handlers: one that swallows CancelledError must not
# block close().
_CANCEL_WAIT: Final = 1.0


class KeyedDispatcher(Generic[EventT]):
    """Hand events to handlers in tasks: serial per key, concurrent across keys.

    An exception in a handler is logged (``failure_event`` with the fields of
    ``describe`` and the key) and otherwise ignored.

    Args:
        key: The key under which an event must stay ordered; ``None`` means
            unordered (its own task).
        failure_event: Log event for a failing handler, e.g. ``ari.handler_failed``.
        describe: Log fields that identify an event (never secrets).
    """

    def __init__(
        self,
        *,
        key: Callable[[EventT], str | None],
        failure_event: str,
        describe: Callable[[EventT], Mapping[str, object]],
    ) -> None:
        self._key = key
        self._failure_event = failure_event
        self._describe = describe
        self._lanes: dict[str, deque[tuple[Handler[EventT], EventT]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Handler tasks not finished yet."""
        return sum(1 for task in self._tasks if not task.done())

    def dispatch(self, event: EventT, handler: Handler[EventT]) -> None:
        """Schedule ``handler(event)`` behind the events queued under the same key.

        Args:
            event: The event.
            handler: Coroutine function to call with it.
        """
        key = self._key(event)
        if key is None:
            self._spawn(self._invoke(handler, event, None))
            return
        lane = self._lanes.get(key)
        if lane is not None:
            # A task is already working through this key's events; it picks this
            # one up after the ones before it.
            lane.append((handler, event))
            return
        lane = deque([(handler, event)])
        self._lanes[key] = lane
        self._spawn(self._drain(key, lane))

    async def finish(self, grace: float) -> None:
        """Let running handlers finish for up to ``grace`` seconds, then cancel them.

        Args:
            grace: Seconds to wait before cancelling.
        """
        current = asyncio.current_task()
        pending = {t for t in self._tasks if t is not current and not t.done()}
        if pending and grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_CANCEL_WAIT)

    async def _drain(self, key: str, lane: deque[tuple[Handler[EventT], EventT]]) -> None:
        try:
            while lane:
                handler, event = lane.popleft()
                await self._invoke(handler, event, key)
        finally:
            # No await between the emptiness check above and this removal, so no
            # event can be appended to a lane that nobody drains any more.
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _invoke(self, handler: Handler[EventT], event: EventT, key: str | None) -> None:
        try:
            await handler(event)
        except Exception:
            log.exception(self._failure_event, **self._describe(event), key=key)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)  # strong reference: the loop keeps only weak ones
        task.add_done_callback(self._tasks.discard)
