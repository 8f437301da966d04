"""The life of a routed call as a pure state machine.

::

    routed ──▶ queued ──▶ ringing(agent) ──▶ answered(agent) ──▶ ended
       │          │  ▲          │
       │          │  └──────────┘ (agent did not answer: back to queued)
       │          └──▶ abandoned (caller hung up while waiting)
       └──▶ closed (closed-hours handling; ends on hangup)

Adapters translate AMI events into :class:`CallEvent` values and feed them to
:func:`advance`, which returns the new record and the screen pops to publish.
Events that do not fit the current state (duplicates after a reconnect,
out-of-order delivery, calls we never routed) are reported as ignored, never
raised: a confused event stream must not stop the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from pbxbridge.core.models import Action, Decision


class State(StrEnum):
    """Where a call is in its life."""

    ROUTED = "routed"
    QUEUED = "queued"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    ABANDONED = "abandoned"
    CLOSED = "closed"


TERMINAL = frozenset({State.ENDED, State.ABANDONED})


class EventKind(StrEnum):
    """Queue events the lifecycle understands (named after AMI's)."""

    JOIN = "join"  # QueueCallerJoin
    RING = "ring"  # AgentCalled
    NO_ANSWER = "no_answer"  # AgentRingNoAnswer
    CONNECT = "connect"  # AgentConnect
    COMPLETE = "complete"  # AgentComplete
    ABANDON = "abandon"  # QueueCallerAbandon
    LEAVE = "leave"  # QueueCallerLeave (left the queue, answered or not)
    HANGUP = "hangup"  # Hangup of the caller's channel


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One queue event for one call.

    Attributes:
        kind: What happened.
        at: When (aware).
        agent: Agent id for ring/connect/complete/no-answer.
        queue: Queue name, when the event names one.
        hold_s: Seconds the caller waited, when Asterisk says so.
        talk_s: Seconds of conversation (complete).
    """

    kind: EventKind
    at: datetime
    agent: str = ""
    queue: str = ""
    hold_s: float | None = None
    talk_s: float | None = None


class PopKind(StrEnum):
    """Screen-pop events for agents."""

    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Pop:
    """A screen pop to publish to one agent.

    Attributes:
        kind: ringing, answered or ended.
        agent: The agent it is for.
        at: When the underlying event happened.
    """

    kind: PopKind
    agent: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Ring:
    """One attempt to reach an agent.

    Attributes:
        agent: The agent rung.
        started: When it started ringing.
        ended: When it stopped (answered, no answer, caller gone), or ``None``.
        outcome: ``answered``, ``no_answer``, ``caller_gone`` or ``""`` while ringing.
    """

    agent: str
    started: datetime
    ended: datetime | None = None
    outcome: str = ""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything the daemon knows about a call's life.

    Attributes:
        call_id: The caller channel's unique id (ARI channel id = AMI Uniqueid).
        decision: The routing decision.
        state: Current state.
        routed_at: When it was routed.
        queued_at: When it joined the queue.
        answered_at: When an agent answered.
        ended_at: When it ended (hangup, abandon).
        agent: The agent currently ringing or talking.
        rings: Every ring attempt, in order.
        queue: The queue it joined.
        hold_s: Waiting time as Asterisk reported it (answer or abandon).
        talk_s: Conversation time (after completion).
    """

    call_id: str
    decision: Decision
    state: State
    routed_at: datetime
    queued_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    agent: str = ""
    rings: tuple[Ring, ...] = ()
    queue: str = ""
    hold_s: float | None = None
    talk_s: float | None = None

    def waited_s(self, now: datetime) -> float:
        """Seconds the caller has waited (so far) since joining the queue.

        Args:
            now: The current instant.

        Returns:
            Waiting time; Asterisk's own figure once answered or abandoned.
        """
        if self.hold_s is not None:
            return self.hold_s
        start = self.queued_at or self.routed_at
        end = self.answered_at or self.ended_at or now
        return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one event.

    Attributes:
        record: The record after the event.
        pops: Screen pops to publish.
        ignored: Why the event was ignored, or ``""`` when it was applied.
    """

    record: CallRecord
    pops: tuple[Pop, ...] = ()
    ignored: str = ""


def start(call_id: str, decision: Decision, at: datetime) -> CallRecord:
    """A new record for a call that was just routed.

    Args:
        call_id: The channel's unique id.
        decision: The applied decision.
        at: When it was routed.

    Returns:
        A record in state ``routed`` (or ``closed`` for closed-hours handling).
    """
    state = State.CLOSED if decision.action is Action.CLOSED else State.ROUTED
    return CallRecord(call_id=call_id, decision=decision, state=state, routed_at=at)


def advance(record: CallRecord, event: CallEvent) -> Step:
    """Apply one queue event to a call record.

    Args:
        record: The current record.
        event: The event.

    Returns:
        The new record, the pops to publish and, if the event did not fit, why.
    """
    handler = _HANDLERS[event.kind]
    return handler(record, event)


def _ignore(record: CallRecord, event: CallEvent) -> Step:
    return Step(record, ignored=f"{event.kind.value} in state {record.state.value}")


def _join(record: CallRecord, event: CallEvent) -> Step:
    # A closed-hours call handed to another queue (then: queue) joins a queue too.
    if record.state not in (State.ROUTED, State.CLOSED) or record.queued_at is not None:
        return _ignore(record, event)
    return Step(replace(record, state=State.QUEUED, queued_at=event.at, queue=event.queue))


def _ring(record: CallRecord, event: CallEvent) -> Step:
    if record.state is not State.QUEUED and not (
        record.state is State.RINGING and event.agent != record.agent
    ):
        return _ignore(record, event)
    rings = (*record.rings, Ring(agent=event.agent, started=event.at))
    return Step(
        replace(record, state=State.RINGING, agent=event.agent, rings=rings),
        pops=(Pop(PopKind.RINGING, event.agent, event.at),),
    )


def _close_ring(
    rings: tuple[Ring, ...], agent: str, at: datetime, outcome: str
) -> tuple[tuple[Ring, ...], bool]:
    """Close the open ring of ``agent``; report whether there was one."""
    for i in range(len(rings) - 1, -1, -1):
        ring = rings[i]
        if ring.agent == agent and ring.ended is None:
            closed = replace(ring, ended=at, outcome=outcome)
            return (*rings[:i], closed, *rings[i + 1 :]), True
    return rings, False


def _no_answer(record: CallRecord, event: CallEvent) -> Step:
    if record.state is not State.RINGING:
        return _ignore(record, event)
    rings, found = _close_ring(record.rings, event.agent, event.at, "no_answer")
    if not found:
        return _ignore(record, event)
    # The pop moves on: the agent who did not answer gets "ended" so that their
    # screen clears; the next AgentCalled pops it at the next agent.
    return Step(
        replace(record, state=State.QUEUED, agent="", rings=rings),
        pops=(Pop(PopKind.ENDED, event.agent, event.at),),
    )


def _connect(record: CallRecord, event: CallEvent) -> Step:
    if record.state not in (State.RINGING, State.QUEUED):
        return _ignore(record, event)
    rings, found = _close_ring(record.rings, event.agent, event.at, "answered")
    if not found:  # AgentCalled was lost (e.g. during a reconnect): record it now
        rings = (*rings, Ring(event.agent, event.at, event.at, "answered"))
    # With ringall, other agents were ringing too: their screens must clear.
    others = tuple(
        Pop(PopKind.ENDED, r.agent, event.at)
        for r in record.rings
        if r.ended is None and r.agent != event.agent
    )
    rings = tuple(
        replace(r, ended=event.at, outcome="other_answered") if r.ended is None else r
        for r in rings
    )
    return Step(
        replace(
            record,
            state=State.ANSWERED,
            agent=event.agent,
            answered_at=event.at,
            hold_s=event.hold_s if event.hold_s is not None else record.hold_s,
            rings=rings,
        ),
        pops=(*others, Pop(PopKind.ANSWERED, event.agent, event.at)),
    )


def _complete(record: CallRecord, event: CallEvent) -> Step:
    if record.state is not State.ANSWERED:
        return _ignore(record, event)
    return Step(
        replace(record, state=State.ENDED, ended_at=event.at, talk_s=event.talk_s),
        pops=(Pop(PopKind.ENDED, record.agent, event.at),),
    )


def _abandon(record: CallRecord, event: CallEvent) -> Step:
    if record.state not in (State.QUEUED, State.RINGING):
        return _ignore(record, event)
    pops = tuple(Pop(PopKind.ENDED, r.agent, event.at) for r in record.rings if r.ended is None)
    rings = tuple(
        replace(r, ended=event.at, outcome="caller_gone") if r.ended is None else r
        for r in record.rings
    )
    return Step(
        replace(
            record,
            state=State.ABANDONED,
            ended_at=event.at,
            agent="",
            rings=rings,
            hold_s=event.hold_s if event.hold_s is not None else record.hold_s,
        ),
        pops=pops,
    )


def _leave(record: CallRecord, event: CallEvent) -> Step:
    # QueueCallerLeave follows both an answer and an abandon: the events that
    # matter (AgentConnect, QueueCallerAbandon) already moved the call on.
    del event
    return Step(record)


def _hangup(record: CallRecord, event: CallEvent) -> Step:
    if record.state in TERMINAL:
        return _ignore(record, event)
    if record.state is State.ANSWERED:
        # AgentComplete normally comes first; a lost one must not leave the
        # call open forever.
        return _complete(record, event)
    if record.state in (State.QUEUED, State.RINGING):
        return _abandon(record, event)
    # routed (never reached a queue) or closed handling
    return Step(replace(record, state=State.ENDED, ended_at=event.at))


_HANDLERS = {
    EventKind.JOIN: _join,
    EventKind.RING: _ring,
    EventKind.NO_ANSWER: _no_answer,
    EventKind.CONNECT: _connect,
    EventKind.COMPLETE: _complete,
    EventKind.ABANDON: _abandon,
    EventKind.LEAVE: _leave,
    EventKind.HANGUP: _hangup,
}
