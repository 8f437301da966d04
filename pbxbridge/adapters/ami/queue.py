"""Typed view of a ``QueueStatus`` answer (app_queue's state at one moment).

``QueueStatus`` answers with a list of events: one ``QueueParams`` per queue,
followed by that queue's ``QueueMember`` and ``QueueEntry`` (waiting caller)
events, closed by ``QueueStatusComplete``. The daemon uses the snapshot after
every (re)connect to rebuild what it missed while AMI was down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["QueueEntry", "QueueMember", "QueueParams", "QueueSnapshot", "parse_queue_status"]


def _int(event: Mapping[str, str], *keys: str) -> int:
    """First of ``keys`` present, as int (0 when missing or not a number)."""
    for key in keys:
        value = event.get(key)
        if value is not None and value.strip():
            try:
                return int(value.strip())
            except ValueError:
                return 0
    return 0


def _float(event: Mapping[str, str], key: str) -> float:
    try:
        return float(event.get(key, "") or 0.0)
    except ValueError:
        return 0.0


def _str(event: Mapping[str, str], *keys: str) -> str:
    """First non-empty of ``keys``: the header names differ between events."""
    for key in keys:
        value = event.get(key)
        if value:
            return value
    return ""


@dataclass(frozen=True, slots=True)
class QueueParams:
    """One queue's counters (``QueueParams``).

    Attributes:
        queue: Queue name.
        strategy: Ring strategy, e.g. ``linear``.
        calls: Callers waiting now.
        max: ``maxlen`` (0: unlimited).
        holdtime: Average hold time in seconds.
        talktime: Average talk time in seconds.
        completed: Calls answered by a member since the queue was loaded.
        abandoned: Callers who hung up while waiting.
        service_level: ``servicelevel`` in seconds.
        service_level_perf: Percentage answered within the service level.
        raw: The event as received.
    """

    queue: str
    strategy: str
    calls: int
    max: int
    holdtime: int
    talktime: int
    completed: int
    abandoned: int
    service_level: int
    service_level_perf: float
    raw: dict[str, str] = field(repr=False, compare=False)

    @classmethod
    def from_event(cls, event: Mapping[str, str]) -> QueueParams:
        """Build from a ``QueueParams`` event.

        Args:
            event: Normalised event.

        Returns:
            The parsed parameters.
        """
        return cls(
            queue=event.get("Queue", ""),
            strategy=event.get("Strategy", ""),
            calls=_int(event, "Calls"),
            max=_int(event, "Max"),
            holdtime=_int(event, "Holdtime", "HoldTime"),
            talktime=_int(event, "TalkTime", "Talktime"),
            completed=_int(event, "Completed"),
            abandoned=_int(event, "Abandoned"),
            service_level=_int(event, "ServiceLevel"),
            service_level_perf=_float(event, "ServicelevelPerf"),
            raw=dict(event),
        )


@dataclass(frozen=True, slots=True)
class QueueMember:
    """One member (agent) of one queue (``QueueMember``).

    Attributes:
        queue: Queue name.
        name: Member name (``Name``; ``MemberName`` in the member events).
        interface: Dialled interface, e.g. ``PJSIP/agent1`` (``Location`` in the
            QueueStatus answer, ``Interface`` in ``AgentCalled`` & co.).
        state_interface: Interface whose device state decides availability.
        membership: ``static``, ``dynamic`` or ``realtime``.
        penalty: Member penalty.
        calls_taken: Calls answered.
        last_call: Unix time of the last answered call (0: none).
        in_call: Currently in a queue call.
        status: Numeric device state (1 not in use, 2 in use, 6 ringing, ...).
        paused: Paused (not offered calls).
        paused_reason: Reason given when pausing.
        raw: The event as received.
    """

    queue: str
    name: str
    interface: str
    state_interface: str
    membership: str
    penalty: int
    calls_taken: int
    last_call: int
    in_call: bool
    status: int
    paused: bool
    paused_reason: str
    raw: dict[str, str] = field(repr=False, compare=False)

    @classmethod
    def from_event(cls, event: Mapping[str, str]) -> QueueMember:
        """Build from a ``QueueMember`` (or ``QueueMember*``) event.

        Args:
            event: Normalised event.

        Returns:
            The parsed member.
        """
        interface = _str(event, "Location", "Interface")
        return cls(
            queue=event.get("Queue", ""),
            name=_str(event, "Name", "MemberName") or interface,
            interface=interface,
            state_interface=_str(event, "StateInterface") or interface,
            membership=event.get("Membership", ""),
            penalty=_int(event, "Penalty"),
            calls_taken=_int(event, "CallsTaken"),
            last_call=_int(event, "LastCall"),
            in_call=_int(event, "InCall") == 1,
            status=_int(event, "Status"),
            paused=_int(event, "Paused") == 1,
            paused_reason=event.get("PausedReason", ""),
            raw=dict(event),
        )


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One caller waiting in a queue (``QueueEntry``).

    Attributes:
        queue: Queue name.
        position: 1-based position.
        channel: Caller channel name.
        uniqueid: Caller channel's ``Uniqueid``.
        caller_id_num: Calling number.
        caller_id_name: Calling name.
        wait: Seconds waited so far.
        priority: Queue priority (``QUEUE_PRIO``).
        raw: The event as received.
    """

    queue: str
    position: int
    channel: str
    uniqueid: str
    caller_id_num: str
    caller_id_name: str
    wait: int
    priority: int
    raw: dict[str, str] = field(repr=False, compare=False)

    @classmethod
    def from_event(cls, event: Mapping[str, str]) -> QueueEntry:
        """Build from a ``QueueEntry`` event.

        Args:
            event: Normalised event.

        Returns:
            The parsed entry.
        """
        return cls(
            queue=event.get("Queue", ""),
            position=_int(event, "Position"),
            channel=event.get("Channel", ""),
            uniqueid=event.get("Uniqueid", ""),
            caller_id_num=event.get("CallerIDNum", ""),
            caller_id_name=event.get("CallerIDName", ""),
            wait=_int(event, "Wait"),
            priority=_int(event, "Priority"),
            raw=dict(event),
        )


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """app_queue's state as one ``QueueStatus`` answer reported it.

    Attributes:
        queues: Parameters per queue name.
        members: All members, in the order received (queue by queue).
        entries: All waiting callers, in the order received.
    """

    queues: dict[str, QueueParams]
    members: tuple[QueueMember, ...]
    entries: tuple[QueueEntry, ...]

    def members_of(self, queue: str) -> list[QueueMember]:
        """Members of one queue.

        Args:
            queue: Queue name.

        Returns:
            Its members in configuration order.
        """
        return [m for m in self.members if m.queue == queue]

    def entries_of(self, queue: str) -> list[QueueEntry]:
        """Waiting callers of one queue, by position.

        Args:
            queue: Queue name.

        Returns:
            The entries, position 1 first.
        """
        return sorted((e for e in self.entries if e.queue == queue), key=lambda e: e.position)


def parse_queue_status(events: Iterable[Mapping[str, str]]) -> QueueSnapshot:
    """Build a snapshot from the messages of one ``QueueStatus`` action.

    The initial ``Response`` and the closing ``QueueStatusComplete`` may be
    included; they and any unknown events are ignored.

    Args:
        events: Normalised messages.

    Returns:
        The snapshot.
    """
    queues: dict[str, QueueParams] = {}
    members: list[QueueMember] = []
    entries: list[QueueEntry] = []
    for event in events:
        kind = event.get("Event", "")
        if kind == "QueueParams":
            params = QueueParams.from_event(event)
            queues[params.queue] = params
        elif kind == "QueueMember":
            members.append(QueueMember.from_event(event))
        elif kind == "QueueEntry":
            entries.append(QueueEntry.from_event(event))
    return QueueSnapshot(queues=queues, members=tuple(members), entries=tuple(entries))
