"""Who of the queue members is free, ringing, talking, in wrap-up, paused or away.

A pure state machine (no I/O, no clock: every method is told the time) fed
with app_queue's AMI events by the daemon and rebuilt from a ``QueueStatus``
answer after every (re)connect, because AMI does not replay what happened
while nobody listened.

Three facts per agent are kept apart and combined only when asked:

* the **device state** app_queue reports (``QueueMemberStatus``,
  ``QueueMemberAdded``; 1 not in use, 2 in use, 6 ringing, 5 unavailable ...);
* **paused** per queue, with the reason (``QueueMemberPause``);
* the **queue-call phase** from ``AgentCalled`` (ringing), ``AgentConnect``
  (talking), ``AgentComplete`` (wrap-up) and ``AgentRingNoAnswer`` (over).

The shown state, most important first: *paused* (in every queue the agent is
a member of), *unavailable* (device unavailable, invalid or unknown),
*ringing*, *talking* (a queue call, or the device in use for any other call),
*wrap-up* (after a queue call, until the agent records the wrap-up on the
agent page, is offered the next call, pauses, or :attr:`AgentBoard.wrapup_limit_s`
passes), else *free*. "Time in state" is the time since the shown state last
changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from pbxbridge.tracking.call_tracker import agent_id

BOARD_EVENTS: Final = (
    "QueueMemberStatus",
    "QueueMemberAdded",
    "QueueMemberRemoved",
    "QueueMemberPause",
    "AgentCalled",
    "AgentRingNoAnswer",
    "AgentConnect",
    "AgentComplete",
)
"""The AMI events the board reads (the AMI filter must let them through)."""

WRAPUP_LIMIT_S: Final = 300.0
"""Wrap-up not recorded on the agent page ends after this long (agent shown free)."""

_UNAVAILABLE_DEVICE: Final = frozenset({0, 4, 5})  # unknown, invalid, unavailable
_RINGING_DEVICE: Final = frozenset({6, 7})  # ringing, ringing while in use
_IN_USE_DEVICE: Final = frozenset({2, 3, 8})  # in use, busy, on hold


class AgentState(StrEnum):
    """What an agent is doing, as the supervisor page shows it."""

    FREE = "free"
    RINGING = "ringing"
    TALKING = "talking"
    WRAPUP = "wrapup"
    PAUSED = "paused"
    UNAVAILABLE = "unavailable"


class _Phase(StrEnum):
    NONE = ""
    RINGING = "ringing"
    TALKING = "talking"
    WRAPUP = "wrapup"


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One queue member as a ``QueueStatus`` answer lists it (the adapter translates).

    Attributes:
        queue: Queue name.
        agent: Agent id (member name, or the interface's device part).
        device: Numeric device state.
        paused: Paused in this queue.
        reason: Pause reason.
        in_call: In a queue call now.
    """

    queue: str
    agent: str
    device: int
    paused: bool = False
    reason: str = ""
    in_call: bool = False


@dataclass(frozen=True, slots=True)
class AgentView:
    """One agent's line on the board.

    Attributes:
        agent: Agent id.
        state: The shown state.
        since: When the shown state began (the board's time base).
        reason: Pause reason (paused only).
        queues: Queues the agent is a member of.
    """

    agent: str
    state: AgentState
    since: float
    reason: str
    queues: tuple[str, ...]


@dataclass(slots=True)
class _Agent:
    device: int = 1
    paused: dict[str, str] = field(default_factory=dict)  # queue -> reason, paused queues
    queues: set[str] = field(default_factory=set)
    phase: _Phase = _Phase.NONE
    phase_since: float = 0.0
    shown: AgentState = AgentState.FREE
    since: float = 0.0


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class AgentBoard:
    """Every queue member's state (pure; feed it, ask it).

    Args:
        wrapup_limit_s: Longest wrap-up shown without a wrap-up on the agent page.
    """

    def __init__(self, *, wrapup_limit_s: float = WRAPUP_LIMIT_S) -> None:
        self.wrapup_limit_s = wrapup_limit_s
        self._agents: dict[str, _Agent] = {}
        self.generation = 0
        """Counts changes of any shown state (a page re-renders when it moves)."""

    def event(self, event: Mapping[str, str], at: float) -> bool:
        """Apply one AMI event.

        Args:
            event: The event as Asterisk sends it.
            at: When it arrived.

        Returns:
            Whether the board changed (a membership or a shown state).
        """
        name = event.get("Event", "")
        if name not in BOARD_EVENTS:
            return False
        agent = agent_id(event)
        if not agent:
            return False
        queue = event.get("Queue", "")
        if name == "QueueMemberRemoved":
            entry = self._agents.get(agent)
            if entry is None:
                return False
            entry.queues.discard(queue)
            entry.paused.pop(queue, None)
            if not entry.queues:
                del self._agents[agent]
            self.generation += 1
            return True
        entry = self._agents.get(agent)
        if entry is None:
            entry = self._agents[agent] = _Agent(since=at, phase_since=at)
        before = (entry.shown, len(entry.queues))
        if queue:
            entry.queues.add(queue)
        if name in ("QueueMemberStatus", "QueueMemberAdded"):
            device = _int(event.get("Status"), entry.device)
            self._device(entry, device, at)
            self._pause(entry, queue, event)
        elif name == "QueueMemberPause":
            self._pause(entry, queue, event)
            if entry.phase is _Phase.WRAPUP and queue in entry.paused:
                self._phase(entry, _Phase.NONE, at)
        elif name == "AgentCalled":
            self._phase(entry, _Phase.RINGING, at)
        elif name == "AgentRingNoAnswer":
            if entry.phase is _Phase.RINGING:
                self._phase(entry, _Phase.NONE, at)
        elif name == "AgentConnect":
            self._phase(entry, _Phase.TALKING, at)
        elif name == "AgentComplete":
            self._phase(entry, _Phase.WRAPUP, at)
        return self._settle(entry, at) or before[1] != len(entry.queues)

    def _device(self, entry: _Agent, device: int, at: float) -> None:
        entry.device = device
        if device == 1:
            # Not in use any more: a ring nobody took is over; a queue call
            # whose AgentComplete is still on its way has ended (wrap-up).
            if entry.phase is _Phase.RINGING:
                self._phase(entry, _Phase.NONE, at)
            elif entry.phase is _Phase.TALKING:
                self._phase(entry, _Phase.WRAPUP, at)

    @staticmethod
    def _pause(entry: _Agent, queue: str, event: Mapping[str, str]) -> None:
        if "Paused" not in event or not queue:
            return
        if event.get("Paused") == "1":
            entry.paused[queue] = (event.get("PausedReason") or event.get("Reason") or "").strip()
        else:
            entry.paused.pop(queue, None)

    @staticmethod
    def _phase(entry: _Agent, phase: _Phase, at: float) -> None:
        if entry.phase is not phase:
            entry.phase = phase
            entry.phase_since = at

    def _shown(self, entry: _Agent, at: float) -> tuple[AgentState, float | None]:
        """The shown state, and when it began if that is known from the phase."""
        if entry.queues and all(q in entry.paused for q in entry.queues):
            return AgentState.PAUSED, None
        if entry.device in _UNAVAILABLE_DEVICE:
            return AgentState.UNAVAILABLE, None
        # The queue-call phase first: the device state lags it by a few ms.
        if entry.phase is _Phase.RINGING:
            return AgentState.RINGING, None
        if entry.phase is _Phase.TALKING:
            return AgentState.TALKING, None
        if entry.device in _RINGING_DEVICE:
            return AgentState.RINGING, None
        if entry.device in _IN_USE_DEVICE:
            return AgentState.TALKING, None
        if entry.phase is _Phase.WRAPUP:
            ends = entry.phase_since + self.wrapup_limit_s
            if at < ends:
                return AgentState.WRAPUP, None
            return AgentState.FREE, max(ends, entry.since)
        return AgentState.FREE, None

    def _settle(self, entry: _Agent, at: float) -> bool:
        shown, began = self._shown(entry, at)
        if shown is entry.shown:
            return False
        entry.shown = shown
        entry.since = at if began is None else began
        self.generation += 1
        return True

    def wrapped_up(self, agent: str, at: float) -> bool:
        """The agent recorded the wrap-up on the agent page: wrap-up is over.

        Args:
            agent: Agent id.
            at: When.

        Returns:
            Whether the board changed.
        """
        entry = self._agents.get(agent)
        if entry is None or entry.phase is not _Phase.WRAPUP:
            return False
        self._phase(entry, _Phase.NONE, at)
        return self._settle(entry, at)

    def rebuild(self, members: Iterable[MemberStatus], at: float) -> None:
        """Replace what the board knows with a ``QueueStatus`` answer.

        Agents no longer listed are dropped; a listed agent keeps its time in
        state when its shown state did not change meanwhile. A member in a
        queue call is talking; a wrap-up in progress is kept (``QueueStatus``
        cannot tell it).

        Args:
            members: Every queue member, all queues.
            at: When the answer arrived.
        """
        seen: dict[str, list[MemberStatus]] = {}
        for member in members:
            if member.agent:
                seen.setdefault(member.agent, []).append(member)
        for agent in [a for a in self._agents if a not in seen]:
            del self._agents[agent]
            self.generation += 1
        for agent, rows in seen.items():
            entry = self._agents.get(agent)
            if entry is None:
                entry = self._agents[agent] = _Agent(since=at, phase_since=at)
                entry.shown = AgentState.FREE
                self.generation += 1
            entry.queues = {m.queue for m in rows}
            entry.paused = {m.queue: m.reason.strip() for m in rows if m.paused}
            entry.device = rows[0].device
            in_call = any(m.in_call for m in rows)
            if in_call:
                self._phase(entry, _Phase.TALKING, at)
            elif entry.phase is not _Phase.WRAPUP:
                self._phase(entry, _Phase.NONE, at)
            self._settle(entry, at)

    def agents(self, at: float) -> list[AgentView]:
        """Every agent now, by agent id.

        Args:
            at: Now (ends wrap-ups that ran out).

        Returns:
            One view per agent.
        """
        out: list[AgentView] = []
        for agent in sorted(self._agents):
            entry = self._agents[agent]
            self._settle(entry, at)
            reason = ""
            if entry.shown is AgentState.PAUSED:
                reasons = sorted({r for r in entry.paused.values() if r})
                reason = ", ".join(reasons)
            out.append(
                AgentView(agent, entry.shown, entry.since, reason, tuple(sorted(entry.queues)))
            )
        return out

    def counts(self, at: float) -> dict[AgentState, int]:
        """How many agents are in each state (every state listed, zeros too).

        Args:
            at: Now.

        Returns:
            State to count.
        """
        out = dict.fromkeys(AgentState, 0)
        for view in self.agents(at):
            out[view.state] += 1
        return out

    def signed_in(self, at: float) -> int:
        """Agents who can take calls now or are busy with one (not paused, not away).

        Args:
            at: Now.

        Returns:
            The count.
        """
        counts = self.counts(at)
        return len(self._agents) - counts[AgentState.PAUSED] - counts[AgentState.UNAVAILABLE]


__all__ = [
    "BOARD_EVENTS",
    "WRAPUP_LIMIT_S",
    "AgentBoard",
    "AgentState",
    "AgentView",
    "MemberStatus",
]
