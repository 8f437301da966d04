"""Who reads which AMI events: the AMI session asks Asterisk for exactly their union.

Every event Asterisk sends costs the daemon a parse and a dispatch, and Asterisk
the formatting, so the session asks only for events somebody reads (see
:mod:`.filter`). Which ones those are is not one component's business: the call
tracker reads the queue calls' events, a supervisor view would read the queue
members' (``QueueMemberStatus``, ``QueueMemberPause``, ``AgentCalled``, ...), a
virtual-hold feature the callers' (``QueueCallerJoin``, ``QueueCallerLeave``).
Each consumer declares its events here while the daemon is built::

    subscribers = AmiSubscribers()
    subscribers.add(FOLLOWED_EVENTS, tracker.ami_event)
    subscribers.add(("QueueMemberStatus", "QueueMemberPause"), board.ami_event)
    client = AmiClient(AmiConfig(..., events=subscribers.names))
    await client.run(subscribers.handle, ...)

Adding a consumer adds its events to the session's filter; an event nobody
declared never leaves Asterisk. The filter is installed at login, so consumers
are added before the client is built.

The entries of a ``QueueStatus`` answer (``QueueParams``, ``QueueMember``,
``QueueEntry``) are no events: they answer an action
(:meth:`~.client.AmiClient.queue_status`) and no filter touches them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Final

import structlog

from .events import AmiEvent

__all__ = ["AmiSubscribers", "Consumer"]

log = structlog.get_logger(__name__)

Consumer = Callable[[AmiEvent], object]
"""Called with each event of the names it was added for; an awaitable it returns is awaited."""

# Exact event names only: a glob would widen the login's event classes to "on"
# and the Filter action to a regular expression (see filter.py).
_EVENT_NAME: Final = re.compile(r"^[A-Za-z0-9_]+$")


class AmiSubscribers:
    """Consumers by AMI event name, and the union of the names they read."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Consumer]] = {}

    def add(self, names: Iterable[str], consumer: Consumer) -> None:
        """Let ``consumer`` receive the events called ``names``.

        Args:
            names: Exact AMI event names (``QueueCallerJoin``, ...).
            consumer: Called with each such event, in the order Asterisk sent
                them per call (see :meth:`~.client.AmiClient.run`).

        Raises:
            ValueError: A name is not an exact event name.
        """
        for name in names:
            if not _EVENT_NAME.match(name):
                raise ValueError(f"not an AMI event name: {name!r}")
            consumers = self._by_name.setdefault(name, [])
            if consumer not in consumers:
                consumers.append(consumer)

    @property
    def names(self) -> tuple[str, ...]:
        """Every event name some consumer reads, in the order first added."""
        return tuple(self._by_name)

    async def handle(self, event: AmiEvent) -> None:
        """Hand one event to each consumer of its name (the client's event handler).

        A consumer that raises is logged and does not keep the event from the
        others.

        Args:
            event: The event.
        """
        for consumer in self._by_name.get(event.get("Event", ""), ()):
            try:
                result = consumer(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "ami.consumer_failed",
                    event_name=event.get("Event"),
                    consumer=getattr(consumer, "__qualname__", repr(consumer)),
                )
