"""What feeds what: the observers and AMI subscribers the composition root wires together.

:class:`pbxbridge.app.Daemon` builds the parts; the functions here say which
part hears which event (a decided call, a change of a call's life, an AMI
event, a saved virtual hold) so that a new consumer is added in one place.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import structlog

from pbxbridge.adapters.ami.client import AmiClient
from pbxbridge.adapters.ami.errors import AmiActionFailed, AmiUnavailable
from pbxbridge.adapters.ami.events import AmiEvent
from pbxbridge.adapters.ami.queue import QueueSnapshot
from pbxbridge.adapters.ami.repeat_priority import EVENTS as REPEAT_EVENTS
from pbxbridge.adapters.ami.repeat_priority import RepeatCallerPriority
from pbxbridge.adapters.ami.subscribers import AmiSubscribers
from pbxbridge.adapters.ari.virtual_hold import EVENTS as VHOLD_EVENTS
from pbxbridge.adapters.ari.virtual_hold import VirtualHoldService
from pbxbridge.core.lifecycle import CallEvent, CallRecord
from pbxbridge.core.models import Decision
from pbxbridge.core.virtual_hold import VirtualHold
from pbxbridge.journal.open_callbacks import OpenCallbacks
from pbxbridge.journal.repeat import RepeatCallers
from pbxbridge.journal.store import JournalStore
from pbxbridge.journal.virtual_holds import record_ticket
from pbxbridge.journal.writer import JournalWriter
from pbxbridge.tracking.agents_board import BOARD_EVENTS, MemberStatus
from pbxbridge.tracking.call_tracker import (
    FOLLOWED_EVENTS,
    CallTracker,
    agent_id,
)
from pbxbridge.tracking.metrics import CallMetrics
from pbxbridge.tracking.virtual_holds import VirtualHoldBoard
from pbxbridge.web.supervisor_live import SupervisorHub

log = structlog.get_logger(__name__)

RESYNC_TRIES = 6
RESYNC_BACKOFF_S = 0.25
"""AMI resync refused (app_queue still loading): retry after 0.25, 0.5 … 4 s (~7.75 s)."""


def observers(
    call_metrics: CallMetrics,
    journal: JournalWriter | None,
    node: str,
    supervisor: SupervisorHub | None = None,
) -> Callable[[CallRecord, CallEvent | None], None]:
    """What every change of a call's life feeds: the metrics, the journal, the supervisor page."""
    journal_observer = journal.observer(node) if journal is not None else None

    def on_record(record: CallRecord, event: CallEvent | None) -> None:
        call_metrics.observe(record, event)
        if journal_observer is not None:
            # The writer's own observer: a record it cannot take is logged
            # there and never breaks the tracker or the metrics.
            journal_observer(record, event)
        if supervisor is not None:
            supervisor.observe(record, event)  # never raises

    return on_record


def on_decision(
    tracker: CallTracker,
    repeat: RepeatCallers | None,
    open_callbacks: OpenCallbacks | None = None,
    bump: RepeatCallerPriority | None = None,
) -> Callable[[str, Decision], None]:
    """What a decided call (any entry point) sets off: following it, looking its caller up.

    ``bump`` raises the call's queue priority later if its caller has an open
    callback (it waits for the look-up started here, in the background).
    """

    def routed(call_id: str, decision: Decision) -> None:
        if repeat is not None:
            repeat.prefetch(decision.caller)
        if open_callbacks is not None:
            open_callbacks.prefetch(decision.caller)
        if bump is not None:
            bump.routed(call_id, decision)
        tracker.routed(call_id, decision)

    return routed


def ami_subscribers(
    tracker: CallTracker,
    supervisor: SupervisorHub | None,
    vhold: VirtualHoldService | None = None,
    repeat_priority: RepeatCallerPriority | None = None,
    *,
    vhold_on: bool = False,
) -> AmiSubscribers:
    """Who reads which AMI events: the tracker, the agent board, virtual hold, repeat callers.

    ``vhold_on`` declares virtual hold's events before its service exists
    (the service is built after the AMI client it uses).

    The session asks Asterisk for the union of their events and nothing else;
    a new consumer of AMI events is added here.
    """
    subscribers = AmiSubscribers()
    # Late-bound (looked up per event), as the handler this replaces was: the
    # faces are also put on stand-in parts.
    subscribers.add(FOLLOWED_EVENTS, lambda event: tracker.ami_event(event))
    if supervisor is not None:
        subscribers.add(BOARD_EVENTS, lambda event: supervisor.ami_event(event))  # never raises
    if vhold is not None:
        subscribers.add(VHOLD_EVENTS, vhold.ami_event)  # never raises
    elif vhold_on:
        subscribers.add(VHOLD_EVENTS, lambda event: None)
    if repeat_priority is not None:
        subscribers.add(REPEAT_EVENTS, repeat_priority.ami_event)  # never raises
    return subscribers


def ticket_recorder(open_journal: Callable[[], JournalStore]) -> Callable[[VirtualHold], bool]:
    """Puts a virtual hold that became a ticket on the callbacks list (worker thread)."""
    opened: list[JournalStore] = []
    lock = threading.Lock()

    def record(hold: VirtualHold) -> bool:
        with lock:
            if not opened:
                opened.append(open_journal())
            return record_ticket(opened[0], hold, at=hold.updated_at)

    return record


def ami_handlers(
    ami: AmiClient,
    tracker: CallTracker,
    supervisor: SupervisorHub | None = None,
    vhold: VirtualHoldService | None = None,
    repeat_priority: RepeatCallerPriority | None = None,
) -> tuple[Callable[[AmiEvent], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """The AMI session's event handler (see :func:`ami_subscribers`) and its login step."""

    async def on_connected() -> None:
        await ami_resync(ami, tracker, supervisor)
        if vhold is not None:
            try:
                await vhold.on_ami_connected()
            except (AmiActionFailed, AmiUnavailable) as exc:
                # The next login tries again; calls keep flowing meanwhile.
                log.warning("vhold.publish_failed", error=str(exc))

    return ami_subscribers(tracker, supervisor, vhold, repeat_priority).handle, on_connected


def queue_members(snapshot: QueueSnapshot) -> list[MemberStatus]:
    """The agent board's view of a ``QueueStatus`` answer's members."""
    return [
        MemberStatus(
            queue=m.queue,
            agent=agent_id({"MemberName": m.name, "Interface": m.interface}),
            device=m.status,
            paused=m.paused,
            reason=m.paused_reason,
            in_call=m.in_call,
        )
        for m in snapshot.members
    ]


async def ami_resync(
    ami: AmiClient, tracker: CallTracker, supervisor: SupervisorHub | None = None
) -> None:
    """After every AMI login: ask app_queue which callers wait now, and who is a member.

    AMI does not replay what happened while we were away: the answer puts
    their records in the queue, not stuck in routing, and rebuilds the
    supervisor page's agent board.

    Args:
        ami: The AMI client.
        tracker: The call tracker to resync.
        supervisor: The supervisor page's hub, if it is on.
    """
    for attempt in range(1, RESYNC_TRIES + 1):
        try:
            snapshot = await ami.queue_status()
        except AmiActionFailed as exc:
            # Right after an Asterisk restart the manager accepts logins
            # before app_queue is loaded ("QueueStatus: unknown command"):
            # wait for it quietly instead of failing the session.
            log.debug("ami.resync_refused", attempt=attempt, error=exc.message)
            if attempt == RESYNC_TRIES:
                # Without app_queue nobody waits in a queue: nothing to
                # resync. Events flow; the next login resyncs again.
                log.warning("ami.resync_skipped", tries=attempt, error=exc.message)
                return
            await asyncio.sleep(RESYNC_BACKOFF_S * 2 ** (attempt - 1))
            continue
        if attempt > 1:
            log.warning("ami.resync_retried", tries=attempt)
        tracker.resync({e.uniqueid: e.queue for e in snapshot.entries})
        if supervisor is not None:
            supervisor.rebuild(queue_members(snapshot))
        return


def hold_observers(
    board: VirtualHoldBoard, open_callbacks: OpenCallbacks | None
) -> Callable[[VirtualHold], None]:
    """Every saved hold feeds the gauges and drops the caller's cached "no open callback".

    Without the second, a hold accepted within the lookup cache's minute after
    the caller's first call would show no "offener Rückruf" note on a repeat call.
    """

    def on_change(hold: VirtualHold) -> None:
        board.observe(hold)
        if open_callbacks is not None:
            open_callbacks.hold_changed(hold)

    return on_change
