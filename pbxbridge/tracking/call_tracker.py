"""The call tracker: follow every routed call through the queue and tell who needs it.

Glue between parts none of which knows the others:

* the routers (Stasis and FastAGI) report each decision (:meth:`CallTracker.routed`),
* the AMI client delivers app_queue events (:meth:`CallTracker.ami_event`),
* the MQTT publisher and the agent page get what :mod:`pbxbridge.core.screenpop`
  builds (screen pops, wallboard messages),
* the ``on_record`` observer sees every change (the daemon feeds the journal and
  :mod:`pbxbridge.tracking.metrics` from it).

The lifecycle itself is the pure state machine in :mod:`pbxbridge.core.lifecycle`;
this module only translates AMI events into its vocabulary and keeps one record
per call in memory (bounded: records end with the call, or are pruned).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from pbxbridge.core.lifecycle import (
    TERMINAL,
    CallEvent,
    CallRecord,
    EventKind,
    Pop,
    PopKind,
    advance,
    start,
)
from pbxbridge.core.models import Decision
from pbxbridge.core.screenpop import (
    agent_message,
    agent_topic,
    callback_message,
    tenant_topic,
    wallboard_message,
)
from pbxbridge.core.virtual_hold import VirtualHold

log = structlog.get_logger(__name__)

_AMI_KINDS: Mapping[str, EventKind] = {
    "QueueCallerJoin": EventKind.JOIN,
    "AgentCalled": EventKind.RING,
    "AgentRingNoAnswer": EventKind.NO_ANSWER,
    "AgentConnect": EventKind.CONNECT,
    "AgentComplete": EventKind.COMPLETE,
    "QueueCallerAbandon": EventKind.ABANDON,
    "QueueCallerLeave": EventKind.LEAVE,
    "Hangup": EventKind.HANGUP,
}
"""AMI events the tracker understands, and the lifecycle event each one is."""

FOLLOWED_EVENTS = tuple(name for name, kind in _AMI_KINDS.items() if kind is not EventKind.LEAVE)
"""The AMI events the daemon asks Asterisk for on the tracker's behalf.

``QueueCallerLeave`` is understood but not asked for: it follows an answer or
an abandon whose own event already moved the call on, so it never changes a
record (:func:`pbxbridge.core.lifecycle.advance` keeps the record as it is),
and at one event per call it would cost a parse, a dispatch and a journal
write for nothing. A consumer that needs it declares it itself.
"""

_LEG_POPS: Mapping[EventKind, PopKind] = {
    EventKind.RING: PopKind.RINGING,
    EventKind.CONNECT: PopKind.ANSWERED,
    EventKind.NO_ANSWER: PopKind.ENDED,
    EventKind.COMPLETE: PopKind.ENDED,
}
"""A virtual hold's callback leg: the pop each member event of its placeholder makes."""

WALLBOARD_EVERY_S = 1.0
"""The daemon's wallboard window: at most one message per call per second (docs/mqtt.md)."""

MAX_CALL_AGE = timedelta(hours=6)
"""Records older than this are dropped (a Hangup we never saw must not leak memory)."""
MAX_RECORDS = 20_000
"""At most this many calls are followed at once (far above any real queue)."""


def agent_id(event: Mapping[str, str]) -> str:
    """The agent an app_queue event is about.

    app_queue names a member by ``MemberName`` (set in queues.conf or by
    AddQueueMember) and by ``Interface`` (``PJSIP/agent1``); the member name is
    what operators choose, the device part of an interface the fallback.

    Args:
        event: An AMI event.

    Returns:
        The agent id, or ``""``.
    """
    name = event.get("MemberName", "").strip() or event.get("Interface", "")
    # Without a configured name app_queue reports the interface (PJSIP/agent1)
    # as the member name too: the device part is the agent.
    return name.split("/", 1)[1] if "/" in name else name


def _seconds(event: Mapping[str, str], key: str) -> float | None:
    # Most events lack most of these keys: no exception for a missing one.
    value = event.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def to_call_event(event: Mapping[str, str], at: datetime) -> tuple[str, CallEvent] | None:
    """Translate an AMI event into ``(call id, lifecycle event)``.

    Queue events describe the caller's channel without a prefix (``Uniqueid``)
    and the agent's channel with ``Dest`` (``DestUniqueid``): the caller's
    unique id is the ARI channel id the router saw, so it correlates the two.

    Args:
        event: An AMI event.
        at: When it was received (or its ``Timestamp`` when Asterisk sends one).

    Returns:
        The translation, or ``None`` for events we do not follow.
    """
    kind = _AMI_KINDS.get(event.get("Event", ""))
    call_id = event.get("Uniqueid", "")
    if kind is None or not call_id:
        return None
    stamp = _seconds(event, "Timestamp")
    when = datetime.fromtimestamp(stamp, UTC) if stamp is not None else at
    agent = (
        agent_id(event)
        if kind in (EventKind.RING, EventKind.NO_ANSWER, EventKind.CONNECT, EventKind.COMPLETE)
        else ""
    )
    return call_id, CallEvent(
        kind=kind,
        at=when,
        agent=agent,
        queue=event.get("Queue", ""),
        hold_s=_seconds(event, "HoldTime"),
        talk_s=_seconds(event, "TalkTime"),
    )


class Publisher(Protocol):
    """What the screen pops need from the MQTT publisher."""

    def publish(
        self, topic: str, payload: bytes, *, expires_at: float | None = None, kind: str = ""
    ) -> None:
        """Queue a message below the topic prefix; never blocks."""


@dataclass
class TrackerStats:
    """Counters for health and metrics."""

    followed: int = 0
    pops: int = 0
    callback_pops: int = 0
    ignored_events: int = 0
    unknown_calls: int = 0
    pruned: int = 0
    duplicate_routed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class CallTracker:
    """Keeps one lifecycle record per routed call and publishes pops.

    Args:
        publisher: Where messages go (``None``: follow calls, publish nothing).
        ring_timeout_s: A ``ringing`` pop older than this is dropped, not shown late.
        clock: "now" (tests inject one).
        repeat_calls: Optional lookup: E.164 number → calls in the last 7 days.
        open_callback: Optional lookup: E.164 number → the note of its open
            callback ticket or pending virtual hold ("offener Rückruf vom Di 09:14"),
            ``None`` when none (or not known yet).
        on_record: Optional observer of every record change (the journal).
        local: Optional in-process sink for agent pops ``(agent, message)``,
            e.g. the agent web page; called with the same messages as MQTT.
        wallboard_every_s: ``0``: one wallboard message per state change. Else
            at most one per call per this many seconds: a change opens the
            call's window, and the state the call has when the window closes
            is sent (its ``times`` carry the milestones skipped in between);
            call :meth:`flush_wallboard` before stopping. A wallboard shows the
            current state; a call passes routed, queued, ringing and answered
            within milliseconds, and each message is a QoS 1 round trip to the
            broker. Windows are the call's own: a call that is over within one
            is sent once, in its final state.
    """

    def __init__(
        self,
        publisher: Publisher | None,
        *,
        ring_timeout_s: float = 20.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        repeat_calls: Callable[[str], int | None] | None = None,
        open_callback: Callable[[str], str | None] | None = None,
        on_record: Callable[[CallRecord, CallEvent | None], None] | None = None,
        local: Callable[[str, dict[str, object]], None] | None = None,
        wallboard_every_s: float = 0.0,
    ) -> None:
        self._publisher = publisher
        self._ring_timeout_s = ring_timeout_s
        self._clock = clock
        self._repeat_calls = repeat_calls
        self._open_callback = open_callback
        self._on_record = on_record
        self._local = local
        self._wallboard_every_s = wallboard_every_s
        # call id -> (record, when): the latest state not yet published, in
        # order of the latest change (the order they go out in).
        self._wall_pending: dict[str, tuple[CallRecord, datetime]] = {}
        # call id -> loop time its window closes, in order of the windows' opening.
        self._wall_due: dict[str, float] = {}
        self._wall_flush: asyncio.TimerHandle | None = None
        self.records: dict[str, CallRecord] = {}
        self.stats = TrackerStats()

    def routed(self, call_id: str, decision: Decision) -> None:
        """Start following a call the router just decided.

        Called before the router continues the channel into the dialplan, so
        the queue's first event cannot arrive before the record exists.

        A call id that is already followed keeps its record: a second report
        for a live call (an injected FastAGI session naming a real channel's
        unique id) must not replace its pop, tenant or callback number. It is
        counted in ``duplicate_routed`` and logged.

        Args:
            call_id: The channel id.
            decision: The decision.
        """
        if call_id in self.records:
            self.stats.duplicate_routed += 1
            log.warning(
                "calls.duplicate_routed",
                call_id=call_id,
                kept_tenant=self.records[call_id].decision.tenant,
                ignored_tenant=decision.tenant,
            )
            return
        now = self._clock()
        record = start(call_id, decision, now)
        self.records[call_id] = record
        self.stats.followed += 1
        self._wallboard(record, now)
        self._observe(record, None)
        self._prune(now)

    def ami_event(self, event: Mapping[str, str]) -> None:
        """Apply one AMI event.

        Args:
            event: The AMI event (fields as Asterisk sends them).
        """
        call_id = event.get("Uniqueid", "")
        record = self.records.get(call_id)
        if record is None:
            # Not a call we routed (the agent's leg, a pure-dialplan call, or
            # one that ended already): nothing to pop. Looked up before the
            # translation: a third of the events of a queue call are such.
            if event.get("Event", "") in _AMI_KINDS and call_id:
                self.stats.unknown_calls += 1
            return
        mapped = to_call_event(event, self._clock())
        if mapped is None:
            return
        call_event = mapped[1]
        step = advance(record, call_event)
        if step.ignored:
            self.stats.ignored_events += 1
            log.debug("calls.event_ignored", call_id=call_id, why=step.ignored)
            return
        new = step.record
        if new.state in TERMINAL:
            del self.records[call_id]
            outcome = new.state.value
            self.stats.by_outcome[outcome] = self.stats.by_outcome.get(outcome, 0) + 1
        else:
            self.records[call_id] = new
        for pop in step.pops:
            self._pop(new, pop.kind, pop.agent, step_pop_at=pop.at)
        if new.state is not record.state:
            self._wallboard(new, call_event.at)
            # debug: four lines per call at info cost more than the tracking;
            # the journal keeps every call's milestones.
            log.debug(
                "call.state",
                call_id=call_id,
                tenant=new.decision.tenant,
                state=new.state.value,
                agent=new.agent or None,
                waited_s=round(new.waited_s(call_event.at), 1),
            )
        self._observe(new, call_event)

    def resync(self, waiting: Mapping[str, str]) -> None:
        """Note which of our calls app_queue still holds after an AMI reconnect.

        Args:
            waiting: Caller unique id to queue name, from ``QueueStatus`` entries.
        """
        for call_id, queue in waiting.items():
            record = self.records.get(call_id)
            if record is not None and record.queued_at is None:
                self.ami_event({"Event": "QueueCallerJoin", "Uniqueid": call_id, "Queue": queue})
        log.info("calls.resync", waiting=len(waiting), following=len(self.records))

    def callback_leg(
        self, event: Mapping[str, str], hold: VirtualHold, *, tenant_name: str, greeting: str
    ) -> bool:
        """Pop a virtual hold's callback leg to the agent its placeholder rings or reached.

        The placeholder is a caller to app_queue but no call of its own: it is
        not followed (no record, so no journal row and no count in the
        metrics); its member events only make pops, marked as the callback leg
        (:func:`pbxbridge.core.screenpop.callback_message`), with the original
        call's id, whose journal row a wrap-up then completes.

        Args:
            event: ``AgentCalled``, ``AgentConnect``, ``AgentRingNoAnswer`` or
                ``AgentComplete`` of the placeholder's queue half.
            hold: The hold the placeholder stands for.
            tenant_name: The tenant's display name.
            greeting: The tenant's greeting.

        Returns:
            Whether a pop went out.
        """
        if self._publisher is None and self._local is None:
            return False
        mapped = to_call_event(event, self._clock())
        kind = _LEG_POPS.get(mapped[1].kind) if mapped is not None else None
        if mapped is None or kind is None or not mapped[1].agent:
            return False
        pop = Pop(kind, mapped[1].agent, mapped[1].at)
        message = callback_message(hold, pop, tenant_name=tenant_name, greeting=greeting)
        self.send_pop(pop.agent, kind, message)
        self.stats.callback_pops += 1
        # The number stays out of the log: the call id finds it in the hold.
        log.info("calls.callback_pop", call_id=hold.call_id, agent=pop.agent, kind=kind.value)
        return True

    def _pop(self, record: CallRecord, kind: PopKind, agent: str, step_pop_at: datetime) -> None:
        if (self._publisher is None and self._local is None) or not agent:
            return
        repeat = None
        if self._repeat_calls is not None and record.decision.caller:
            repeat = self._repeat_calls(record.decision.caller)
        note = None
        if self._open_callback is not None and record.decision.caller:
            note = self._open_callback(record.decision.caller)
        message = agent_message(
            record, Pop(kind, agent, step_pop_at), repeat_calls_7d=repeat, open_callback=note
        )
        self.send_pop(agent, kind, message)

    def send_pop(self, agent: str, kind: PopKind, message: dict[str, object]) -> None:
        """Send one agent pop to the agent page and MQTT, as the tracker's own pops go.

        Also the way in for pops of legs the tracker does not follow as calls:
        a virtual hold's callback leg (:func:`pbxbridge.core.screenpop.callback_message`)
        reaches the agent like a call but must not become a record (no second
        journal row, no second count in the metrics).

        Args:
            agent: The agent it is for.
            kind: ringing, answered or ended (a ringing pop expires).
            message: The JSON-ready pop.
        """
        if not agent:
            return
        if self._local is not None:
            try:
                self._local(agent, message)
            except Exception:
                log.exception("calls.local_sink_failed", agent=agent)
        if self._publisher is not None:
            # A ringing pop is useless once the phone stopped ringing: let the
            # publisher drop it rather than show it late after a broker outage.
            expires = time.monotonic() + self._ring_timeout_s if kind is PopKind.RINGING else None
            self._publisher.publish(
                agent_topic_relative(agent), _encode(message), expires_at=expires, kind=kind.value
            )
        self.stats.pops += 1

    def flush_wallboard(self) -> None:
        """Publish every wallboard state still held back by ``wallboard_every_s``."""
        if self._wall_flush is not None:
            self._wall_flush.cancel()
            self._wall_flush = None
        pending, self._wall_pending = self._wall_pending, {}
        self._wall_due.clear()
        for record, at in pending.values():
            self._publish_wallboard(record, at)

    def _wallboard(self, record: CallRecord, at: datetime) -> None:
        if self._publisher is None or not record.decision.tenant:
            return
        if self._wallboard_every_s <= 0:
            self._publish_wallboard(record, at)
            return
        call_id = record.call_id
        # pop + insert: the dict stays in order of the latest change, which is
        # the order the held-back messages go out in.
        self._wall_pending.pop(call_id, None)
        self._wall_pending[call_id] = (record, at)
        if call_id not in self._wall_due:
            loop = asyncio.get_running_loop()
            self._wall_due[call_id] = loop.time() + self._wallboard_every_s
            if self._wall_flush is None:
                self._schedule_wallboard(loop)

    def _schedule_wallboard(self, loop: asyncio.AbstractEventLoop) -> None:
        # Late by up to a tenth of the window, never early: windows closing
        # that close together go out on one timer, not one timer per call.
        first = next(iter(self._wall_due.values()))
        self._wall_flush = loop.call_at(first + self._wallboard_every_s / 10, self._flush_due)

    def _flush_due(self) -> None:
        """Publish the calls whose window has closed; wait for the next one."""
        self._wall_flush = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        closed: set[str] = set()
        for call_id, due in self._wall_due.items():
            if due > now:
                break  # in order of opening, so of closing too
            closed.add(call_id)
        for call_id in closed:
            del self._wall_due[call_id]
        ready = [entry for call_id, entry in self._wall_pending.items() if call_id in closed]
        for call_id in closed:
            del self._wall_pending[call_id]
        for record, at in ready:
            self._publish_wallboard(record, at)
        if self._wall_due:
            self._schedule_wallboard(loop)

    def _publish_wallboard(self, record: CallRecord, at: datetime) -> None:
        if self._publisher is None or not record.decision.tenant:
            return
        self._publisher.publish(
            tenant_topic_relative(record.decision.tenant),
            _encode(wallboard_message(record, at)),
            kind="wallboard",
        )

    def _observe(self, record: CallRecord, event: CallEvent | None) -> None:
        if self._on_record is not None:
            try:
                self._on_record(record, event)
            except Exception:
                log.exception("calls.observer_failed", call_id=record.call_id)

    def _prune(self, now: datetime) -> None:
        # Records leave when their call ends; a Hangup that never arrives (AMI
        # away, AMI disabled) must not grow memory or cost time per call. The
        # dict keeps insertion (= routing) order, so the oldest are in front and
        # pruning stops at the first young one: O(1) per routed call.
        cutoff = now - MAX_CALL_AGE
        while self.records:
            call_id, record = next(iter(self.records.items()))
            if len(self.records) <= MAX_RECORDS and record.routed_at >= cutoff:
                break
            del self.records[call_id]
            self.stats.pruned += 1


def agent_topic_relative(agent: str) -> str:
    """The agent's topic below the publisher's prefix."""
    return agent_topic("", agent).lstrip("/")


def tenant_topic_relative(tenant: str) -> str:
    """The tenant's topic below the publisher's prefix."""
    return tenant_topic("", tenant).lstrip("/")


def _encode(message: Mapping[str, object]) -> bytes:
    # ensure_ascii=False keeps "Jörg Müller" readable; json escapes quotes,
    # backslashes and control characters, so hostile names stay inert data.
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
