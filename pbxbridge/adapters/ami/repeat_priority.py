"""Repeat callers go ahead: raise a queued call's priority when its number has an open callback.

A tenant's ``virtual_hold.repeat_caller_priority`` gives a caller whose number
has an open callback ticket or a pending virtual hold a higher queue priority
(:func:`~pbxbridge.core.virtual_hold.repeat_priority`). Whether the number has
one is a database question, and routing never waits for a database: the call
joins the queue at its tenant's priority, and the priority is raised
afterwards, in the background:

1. :meth:`RepeatCallerPriority.routed` (the router's decision observer, before
   the channel continues into ``Queue()``): for a queue call of such a tenant
   with a known number, note the call and start a task;
2. the task waits for the open-callback look-up the routing started
   (:meth:`OpenCallbackLookup.wait`, at most :data:`LOOKUP_TIMEOUT_S`), then
   for the caller's ``QueueCallerJoin`` (its channel name; at most
   :data:`JOIN_TIMEOUT_S`), whichever comes first;
3. with an open callback it sends ``QueueChangePriorityCaller`` with
   ``Immediate: yes``: app_queue moves the caller at once, behind the callers
   of the new priority or higher, ahead of those of lower priority; then
   ``Setvar QUEUE_PRIO`` on the channel, which the dialplan reads when the
   caller leaves the queue for the virtual-hold offer and goes back, or
   becomes a placeholder: the raised priority goes with them.

Nothing of this touches the call's path: a slow or dead database, a caller
who hangs up first or a refused action only means the caller keeps the
tenant's priority (logged, without the number).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

import structlog

from pbxbridge.core.models import Action, Decision
from pbxbridge.core.rules import Rules
from pbxbridge.core.virtual_hold import repeat_priority

from .errors import AmiActionFailed, AmiUnavailable

__all__ = [
    "EVENTS",
    "JOIN_TIMEOUT_S",
    "LOOKUP_TIMEOUT_S",
    "AmiActions",
    "OpenCallbackLookup",
    "RepeatCallerPriority",
]

log = structlog.get_logger(__name__)

EVENTS: Final = ("QueueCallerJoin",)
"""The AMI events :meth:`RepeatCallerPriority.ami_event` reads."""

LOOKUP_TIMEOUT_S: Final = 3.0
"""The longest wait for the open-callback look-up; later, the caller keeps the tenant's priority."""

JOIN_TIMEOUT_S: Final = 15.0
"""The longest wait for the caller's ``QueueCallerJoin`` after routing (normally milliseconds)."""

ACTION_TIMEOUT_S: Final = 5.0
"""The longest wait for Asterisk's answer to each action (the change, the ``Setvar``)."""


class OpenCallbackLookup(Protocol):
    """The open-callback look-up (:class:`~pbxbridge.journal.open_callbacks.OpenCallbacks`)."""

    async def wait(self, caller: str) -> None:
        """Wait for the running look-up of ``caller`` (returns at once without one)."""

    def since(self, caller: str | None) -> object | None:
        """Something (the instant) when ``caller`` has an open callback, else ``None``."""


class AmiActions(Protocol):
    """What is used of the AMI session (:class:`~.client.AmiClient`): one action."""

    async def action(
        self,
        action: Mapping[str, str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - AmiClient.action's own parameter
    ) -> object:
        """Send an action; raises :class:`AmiActionFailed` / :class:`AmiUnavailable`."""


@dataclass(slots=True)
class _Pending:
    """A routed call waiting for its look-up and its join."""

    tenant: str
    queue: str
    priority: int
    joined: asyncio.Future[str]
    """Resolved with the caller's channel name by its ``QueueCallerJoin``."""


class RepeatCallerPriority:
    """Raises the queue priority of repeat callers once they wait in the queue.

    Args:
        ami: The daemon's AMI session (the action); events come via :meth:`ami_event`.
        rules: The live rules (the tenant's ``repeat_caller_priority``).
        lookup: The open-callback look-up the routing started.
        lookup_timeout_s: See :data:`LOOKUP_TIMEOUT_S`.
        join_timeout_s: See :data:`JOIN_TIMEOUT_S`.
    """

    def __init__(
        self,
        ami: AmiActions,
        rules: Callable[[], Rules],
        lookup: OpenCallbackLookup,
        *,
        lookup_timeout_s: float = LOOKUP_TIMEOUT_S,
        join_timeout_s: float = JOIN_TIMEOUT_S,
    ) -> None:
        self._ami = ami
        self._rules = rules
        self._lookup = lookup
        self._lookup_timeout_s = lookup_timeout_s
        self._join_timeout_s = join_timeout_s
        self._pending: dict[str, _Pending] = {}
        # asyncio keeps only weak references to tasks: these keep them alive.
        self._tasks: set[asyncio.Task[None]] = set()
        self.raised = 0
        """Calls whose priority was raised (tests, logs)."""

    def routed(self, call_id: str, decision: Decision) -> None:
        """Note a routed call; raise its priority later if its number has an open callback.

        Called before the channel continues into the queue, so its
        ``QueueCallerJoin`` cannot be missed. Never blocks and never raises
        for a call it leaves alone.

        Args:
            call_id: The channel's unique id (the queue events' ``Uniqueid``).
            decision: The router's decision.
        """
        target = decision.queue
        if (
            decision.action is not Action.QUEUE
            or target is None
            or not decision.caller
            or decision.tenant is None
            or call_id in self._pending
        ):
            return
        tenant = self._rules().tenants.get(decision.tenant)
        if tenant is None or tenant.virtual_hold.repeat_caller_priority <= 0:
            return
        pending = _Pending(
            tenant=tenant.id,
            queue=target.queue,
            priority=repeat_priority(target.priority, tenant.virtual_hold, has_open_callback=True),
            joined=asyncio.get_running_loop().create_future(),
        )
        self._pending[call_id] = pending
        task = asyncio.create_task(self._raise(call_id, decision.caller, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ami_event(self, event: Mapping[str, str]) -> None:
        """Read a ``QueueCallerJoin``: the channel name of a call being watched."""
        pending = self._pending.get(event.get("Uniqueid", ""))
        channel = event.get("Channel", "")
        if pending is not None and channel and not pending.joined.done():
            pending.joined.set_result(channel)

    async def _raise(self, call_id: str, caller: str, pending: _Pending) -> None:
        try:
            if not await self._has_open_callback(call_id, caller, pending):
                return
            try:
                async with asyncio.timeout(self._join_timeout_s):
                    channel = await pending.joined
            except TimeoutError:
                # Hung up first, routed elsewhere by the dialplan, or the join
                # event was lost with the AMI session.
                log.info("queue.repeat_caller_not_joined", call_id=call_id, tenant=pending.tenant)
                return
            await self._send(call_id, channel, pending)
        finally:
            self._pending.pop(call_id, None)

    async def _has_open_callback(self, call_id: str, caller: str, pending: _Pending) -> bool:
        try:
            async with asyncio.timeout(self._lookup_timeout_s):
                await self._lookup.wait(caller)
        except TimeoutError:
            log.info("queue.repeat_caller_lookup_late", call_id=call_id, tenant=pending.tenant)
            return False
        return self._lookup.since(caller) is not None

    async def _send(self, call_id: str, channel: str, pending: _Pending) -> None:
        try:
            await self._ami.action(
                {
                    "Action": "QueueChangePriorityCaller",
                    "Queue": pending.queue,
                    "Caller": channel,
                    "Priority": str(pending.priority),
                    # Without it app_queue only stores the number; the caller
                    # would keep their place.
                    "Immediate": "yes",
                },
                timeout=ACTION_TIMEOUT_S,
            )
        except (AmiActionFailed, AmiUnavailable) as exc:
            # Left the queue meanwhile (answered, hung up), or AMI is away:
            # the caller keeps the tenant's priority.
            log.warning(
                "queue.repeat_caller_priority_failed",
                call_id=call_id,
                tenant=pending.tenant,
                error=str(exc),
            )
            return
        self.raised += 1
        try:
            await self._ami.action(
                {
                    "Action": "Setvar",
                    "Channel": channel,
                    "Variable": "QUEUE_PRIO",
                    "Value": str(pending.priority),
                },
                timeout=ACTION_TIMEOUT_S,
            )
        except (AmiActionFailed, AmiUnavailable) as exc:
            # Raised in the queue all the same; only a return to the queue
            # (offer declined, placeholder) would be at the tenant's priority.
            log.warning(
                "queue.repeat_caller_setvar_failed",
                call_id=call_id,
                tenant=pending.tenant,
                error=str(exc),
            )
        log.info(
            "queue.repeat_caller_priority",
            call_id=call_id,
            tenant=pending.tenant,
            queue=pending.queue,
            priority=pending.priority,
        )
