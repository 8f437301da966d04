"""Virtual hold ("Rückruf statt Warten"): the decisions, without I/O or clock.

A caller waiting in the queue is offered a callback; on acceptance a
placeholder keeps their place in the queue, and when the placeholder reaches a
free agent the citizen is called back. This module decides; the Asterisk side
(dialplan, ARI/AMI) carries the calls and the store keeps the records:

* :func:`estimate_wait`: the expected wait from the queue's own figures;
* :func:`offer_due`: whether to offer now (threshold, waited time, repeat);
* :func:`~pbxbridge.core.callback_number.check_callback_number` (re-exported
  here): whether a number may be called back, and how to dial it;
* :func:`next_try_at`, :func:`requeue_spot`, :func:`ticket_due`: retries at the
  head of the queue, and the callback ticket a hold becomes when it cannot
  complete (tries used up, the tenant closed);
* :class:`VirtualHold` and :func:`step`: the record of one hold and its state
  machine::

      OFFERED ──ACCEPTED──▶ ACCEPTED ──PLACEHOLDER_QUEUED──▶ WAITING
         │  ▲                                                  │ ▲
         │  └─OFFERED (asked again) / ENTRY_FAILED             │ └──RETRY_QUEUED── RETRY_WAIT
      CALL_ENDED                                         AGENT_REACHED              ▲   ▲
         ▼                                                     ▼                    │   │
      DECLINED                                           AGENT_REACHED ──CALLING──▶ CALLING
                                                                                    │   │
                              CONNECTED ◀──CITIZEN_ANSWERED─────────────────────────┘   │
                              TICKET    ◀──CITIZEN_FAILED (last try) ── CITIZEN_FAILED ─┘
      any waiting state ──CLOSED──▶ TICKET;  ──LOST──▶ RETRY_WAIT (due at once, at the head)
      any open state ──CANCELLED──▶ CANCELLED

Every step appends ``(at, event, detail)`` to :attr:`VirtualHold.events`: the
hold's own journal (offer, acceptance, number, placeholder answered, each try
and its outcome).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final, Literal
from zoneinfo import ZoneInfo

from pbxbridge.core.calendar import Calendar
from pbxbridge.core.callback_number import NumberCheck as NumberCheck
from pbxbridge.core.callback_number import NumberProblem as NumberProblem
from pbxbridge.core.callback_number import check_callback_number as check_callback_number

# ---------------------------------------------------------------- the policy


@dataclass(frozen=True, slots=True)
class VirtualHoldSounds:
    """The prompts of a virtual hold (Asterisk sound names, without extension).

    Attributes:
        offer: "Press 1 to be called back instead of waiting; you keep your place."
        read_back: "We will call you back on" (the digits are read after it).
        confirm_or_enter: "Press 1 to confirm, or type another number ending with #."
        enter_number: "Please type your number with area code, ending with #."
        invalid_number: "This number cannot be called back."
        premium_number: "We cannot call back premium-rate or service numbers."
        international_number: "We can only call back German numbers."
        confirmed: "Thank you, we will call you back. You may hang up."
        may_call_tomorrow: "If we close before your turn, we call you back on the
            next working day." Played with the offer.
        agent_whisper: "Callback for" (Rückruf für), played to the agent who takes
            a placeholder, before the tenant's own whisper.
    """

    offer: str = "pbxbridge/vhold-offer"
    read_back: str = "pbxbridge/vhold-read-back"
    confirm_or_enter: str = "pbxbridge/vhold-confirm-or-enter"
    enter_number: str = "pbxbridge/vhold-enter-number"
    invalid_number: str = "pbxbridge/vhold-invalid-number"
    premium_number: str = "pbxbridge/vhold-premium-number"
    international_number: str = "pbxbridge/vhold-international-number"
    confirmed: str = "pbxbridge/vhold-confirmed"
    may_call_tomorrow: str = "pbxbridge/vhold-may-call-tomorrow"
    agent_whisper: str = "pbxbridge/vhold-callback-for"

    def prompt_for(self, problem: NumberProblem) -> str:
        """The prompt that tells the caller why their number was refused.

        Args:
            problem: Why it was refused.

        Returns:
            ``enter_number`` for nothing entered; ``premium_number`` for premium,
            emergency and service numbers; ``international_number`` for foreign
            ones; ``invalid_number`` for everything else.
        """
        if problem is NumberProblem.EMPTY:
            return self.enter_number
        if problem in (NumberProblem.PREMIUM, NumberProblem.EMERGENCY, NumberProblem.SERVICE):
            return self.premium_number
        if problem is NumberProblem.INTERNATIONAL:
            return self.international_number
        return self.invalid_number


OfferWhen = Literal["any", "all"]


@dataclass(frozen=True, slots=True)
class VirtualHoldPolicy:
    """A tenant's virtual-hold settings (compiled from its ``virtual_hold:`` block).

    Attributes:
        enabled: Offer callbacks at all (off by default).
        offer_after_estimate_s: Offer when the estimated wait exceeds this many
            seconds; ``None``: the estimate plays no part.
        offer_after_waited_s: Offer once the caller has waited this many
            seconds; ``None``: the waited time plays no part.
        offer_when: With both thresholds set: ``"any"`` offers when either
            holds, ``"all"`` only when both do.
        repeat_s: Seconds of further waiting before the offer is repeated;
            0 offers once.
        digit: The DTMF digit that accepts.
        sounds: The prompts.
        retry_delay_s: Seconds after a failed call to the citizen before the
            next try is queued.
        max_tries: Calls to the citizen in all (the first one included).
        answer_timeout_s: Seconds the citizen's phone rings before the try
            counts as not answered (voicemail is caught by it too).
        entry_attempts: Number entries a caller gets (a wrong one is asked
            again, after the last the caller goes back to their place).
        allow_international: Foreign numbers may be called back.
        repeat_caller_priority: Added to the queue priority of a call whose
            number has an open callback ticket or a pending virtual hold.
        outbound_context: Dialplan context that dials the citizen through the
            outbound trunk.
    """

    enabled: bool = False
    offer_after_estimate_s: int | None = 120
    offer_after_waited_s: int | None = None
    offer_when: OfferWhen = "any"
    repeat_s: int = 60
    digit: str = "1"
    sounds: VirtualHoldSounds = field(default_factory=VirtualHoldSounds)
    retry_delay_s: int = 300
    max_tries: int = 3
    answer_timeout_s: int = 30
    entry_attempts: int = 2
    allow_international: bool = False
    repeat_caller_priority: int = 0
    outbound_context: str = "pbxbridge-forward"


OFF: Final = VirtualHoldPolicy()
"""The policy of a tenant without a ``virtual_hold:`` block: disabled."""

# ------------------------------------------------------------ estimate, offer

DEFAULT_HANDLE_S: Final = 180.0
"""Handle time assumed while the queue has no recent one (three minutes)."""
RECENT_HANDLES: Final = 20
"""How many of the most recent handle times the average is taken over."""


def estimate_wait(
    *,
    callers_ahead: int,
    agents_free: int,
    agents_busy: int,
    handle_times: Sequence[float],
    default_handle_s: float = DEFAULT_HANDLE_S,
) -> float:
    """The expected wait of a caller, in seconds, from the queue's own figures.

    The formula::

        AHT   = mean of the last RECENT_HANDLES handle times (talk + wrap-up),
                or default_handle_s when there are none
        n     = agents_free + agents_busy        (logged in, not paused)
        short = max(0, callers_ahead + 1 - agents_free)
        wait  = short * AHT / n

    ``short`` is how many callers (this one included) must wait for an agent
    to become free; with ``n`` agents working, one becomes free every ``AHT/n``
    seconds on average. The figure is the usual "callers ahead times average
    handle time over staffed agents" estimate that ACDs announce; it ignores
    abandons (which make it pessimistic) and is meant for the offer, not for a
    promise. No agent logged in at all gives ``math.inf``.

    Args:
        callers_ahead: Callers ahead of this one in the queue (position - 1).
        agents_free: Agents logged in, not paused, not on a call.
        agents_busy: Agents logged in, not paused, on a call or in wrap-up.
        handle_times: Recent handle times in seconds, oldest first.
        default_handle_s: AHT to assume without any handle time.

    Returns:
        Seconds (0.0 when a free agent is left for this caller).
    """
    staffed = max(0, agents_free) + max(0, agents_busy)
    short = max(0, callers_ahead + 1 - max(0, agents_free))
    if short == 0:
        return 0.0
    if staffed == 0:
        return math.inf
    recent = [t for t in handle_times[-RECENT_HANDLES:] if t >= 0]
    aht = sum(recent) / len(recent) if recent else default_handle_s
    return short * aht / staffed


@dataclass(frozen=True, slots=True)
class Offer:
    """Whether to offer a callback now.

    Attributes:
        due: Play the offer now.
        reason: Why (or why not), for traces.
    """

    due: bool
    reason: str


def offer_due(
    policy: VirtualHoldPolicy,
    *,
    waited_s: float,
    estimated_wait_s: float | None,
    last_offer_waited_s: float | None = None,
) -> Offer:
    """Whether a waiting caller should hear the offer now.

    The triggers are the policy's thresholds: the estimated wait *exceeds*
    ``offer_after_estimate_s`` (an unknown estimate never triggers), the caller
    has waited *at least* ``offer_after_waited_s``. After an offer, the next
    one comes once the caller has waited ``repeat_s`` more (never with
    ``repeat_s`` 0).

    Args:
        policy: The tenant's policy.
        waited_s: Seconds the caller has waited in the queue so far.
        estimated_wait_s: The caller's remaining expected wait
            (:func:`estimate_wait`), ``None`` when unknown.
        last_offer_waited_s: ``waited_s`` at the last offer, ``None`` before
            the first.

    Returns:
        The verdict with its reason.
    """
    if not policy.enabled:
        return Offer(False, "virtual hold is off for this tenant")
    if last_offer_waited_s is not None:
        if policy.repeat_s <= 0:
            return Offer(False, "offered once already; no repeat configured")
        if waited_s - last_offer_waited_s < policy.repeat_s:
            return Offer(False, f"last offer less than {policy.repeat_s} s ago")
    checks: list[tuple[bool, str]] = []
    if policy.offer_after_estimate_s is not None:
        over = estimated_wait_s is not None and estimated_wait_s > policy.offer_after_estimate_s
        shown = "unknown" if estimated_wait_s is None else f"{estimated_wait_s:.0f} s"
        checks.append((over, f"estimated wait {shown} vs {policy.offer_after_estimate_s} s"))
    if policy.offer_after_waited_s is not None:
        long = waited_s >= policy.offer_after_waited_s
        checks.append((long, f"waited {waited_s:.0f} s vs {policy.offer_after_waited_s} s"))
    if not checks:
        return Offer(False, "no offer threshold configured")
    hits = [ok for ok, _ in checks]
    due = any(hits) if policy.offer_when == "any" else all(hits)
    return Offer(due, "; ".join(text for _, text in checks))


# ------------------------------------------------------- the hold's record


class VHoldState(StrEnum):
    """Where a virtual hold stands."""

    OFFERED = "offered"
    """Offered at least once; the caller still waits in the queue themself."""
    ACCEPTED = "accepted"
    """The caller accepted and gave a number; no placeholder queued yet."""
    WAITING = "waiting"
    """The placeholder waits in the queue at the caller's place."""
    AGENT_REACHED = "agent_reached"
    """The placeholder was answered by an agent (whisper, pop)."""
    CALLING = "calling"
    """The citizen's phone is being called, the agent on the line."""
    CONNECTED = "connected"
    """The citizen answered: the call is answered (terminal)."""
    RETRY_WAIT = "retry_wait"
    """A try failed (or the placeholder was lost); queued again at ``next_try_at``."""
    TICKET = "ticket"
    """Became a callback ticket on the agent page (terminal)."""
    DECLINED = "declined"
    """The call went on without taking the offer (terminal)."""
    CANCELLED = "cancelled"
    """Cancelled by an operator or impossible to complete (terminal)."""


TERMINAL: Final = frozenset(
    {VHoldState.CONNECTED, VHoldState.TICKET, VHoldState.DECLINED, VHoldState.CANCELLED}
)
"""States a hold never leaves."""
PENDING: Final = frozenset(
    {
        VHoldState.ACCEPTED,
        VHoldState.WAITING,
        VHoldState.AGENT_REACHED,
        VHoldState.CALLING,
        VHoldState.RETRY_WAIT,
    }
)
"""States in which the daemon owes the citizen a callback (re-adopted after a restart)."""


class VHoldEvent(StrEnum):
    """What happened to a virtual hold (the events of its journal)."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    ENTRY_FAILED = "entry_failed"
    """The number entry failed twice: the caller is back at their place."""
    CALL_ENDED = "call_ended"
    """The caller's call went on (answered, abandoned) without accepting."""
    PLACEHOLDER_QUEUED = "placeholder_queued"
    AGENT_REACHED = "agent_reached"
    CALLING = "calling"
    CITIZEN_ANSWERED = "citizen_answered"
    CITIZEN_FAILED = "citizen_failed"
    RETRY_QUEUED = "retry_queued"
    CLOSED = "closed"
    LOST = "lost"
    """The placeholder or the call to the citizen vanished (Asterisk restarted)."""
    CANCELLED = "cancelled"


FAILED_OUTCOMES: Final = frozenset({"busy", "noanswer", "failed", "congestion"})
"""Outcomes of a try that count against ``max_tries``."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call to the citizen.

    Attributes:
        started_at: When the citizen's phone was dialled.
        ended_at: When the try ended (answered or failed), ``None`` while ringing.
        outcome: ``""`` while ringing, then ``answered``, ``busy``, ``noanswer``,
            ``failed``, ``congestion`` or ``lost``.
        agent: The agent on the line.
    """

    started_at: datetime
    ended_at: datetime | None = None
    outcome: str = ""
    agent: str = ""


@dataclass(frozen=True, slots=True)
class VirtualHold:
    """One virtual hold: the durable record (see :mod:`pbxbridge.storage.virtual_holds`).

    Attributes:
        node: The node whose Asterisk carries the original call.
        call_id: The original call's id (its journal key with ``node``).
        tenant: Tenant id.
        queue: The app_queue queue name.
        priority: ``QUEUE_PRIO`` the placeholder gets (the caller's).
        position: The caller's queue position at acceptance (0: unknown).
        caller: The caller's number (E.164) or ``None``; personal data.
        number: The number to call back (E.164) or ``None``; personal data.
        dial: The dial string for the outbound context; personal data.
        state: Where the hold stands.
        arrived_at: The original call's arrival (the service level counts from it).
        offered_at: The first offer.
        offers: How many times it was offered.
        last_offer_waited_s: Seconds waited at the last offer.
        accepted_at: When the caller accepted.
        placeholder_answered_at: When an agent last answered the placeholder.
        agent: The agent who answered the placeholder last.
        attempts: The calls to the citizen.
        next_try_at: When a retry is due (``RETRY_WAIT``).
        connected_at: When the citizen answered.
        ticket_due_at: Deadline of the callback ticket (``TICKET``).
        updated_at: Last step.
        events: ``(at, event, detail)`` of every step, oldest first.
    """

    node: str
    call_id: str
    tenant: str
    queue: str
    priority: int
    arrived_at: datetime
    offered_at: datetime
    updated_at: datetime
    state: VHoldState = VHoldState.OFFERED
    position: int = 0
    caller: str | None = None
    number: str | None = None
    dial: str = ""
    offers: int = 1
    last_offer_waited_s: float | None = None
    accepted_at: datetime | None = None
    placeholder_answered_at: datetime | None = None
    agent: str = ""
    attempts: tuple[Attempt, ...] = ()
    next_try_at: datetime | None = None
    connected_at: datetime | None = None
    ticket_due_at: datetime | None = None
    events: tuple[tuple[datetime, str, str], ...] = ()

    @property
    def tries_failed(self) -> int:
        """Tries that count against ``max_tries`` (lost ones do not)."""
        return sum(1 for a in self.attempts if a.outcome in FAILED_OUTCOMES)

    @property
    def wait_s(self) -> float | None:
        """Arrival to connection in seconds (the service-level wait), ``None`` if not connected."""
        if self.connected_at is None:
            return None
        return (self.connected_at - self.arrived_at).total_seconds()


class InvalidTransition(ValueError):
    """An event that does not apply to the hold's state."""


def offered(
    *,
    node: str,
    call_id: str,
    tenant: str,
    queue: str,
    priority: int,
    caller: str | None,
    arrived_at: datetime,
    at: datetime,
    waited_s: float | None = None,
) -> VirtualHold:
    """A new hold, at its first offer.

    Args:
        node: The node carrying the call.
        call_id: The call's id.
        tenant: Tenant id.
        queue: app_queue queue name.
        priority: The caller's ``QUEUE_PRIO``.
        caller: Caller E.164 or ``None``.
        arrived_at: The call's arrival.
        at: Now.
        waited_s: Seconds waited in the queue at the offer.

    Returns:
        The hold in ``OFFERED``.
    """
    return VirtualHold(
        node=node,
        call_id=call_id,
        tenant=tenant,
        queue=queue,
        priority=priority,
        caller=caller,
        arrived_at=arrived_at,
        offered_at=at,
        updated_at=at,
        last_offer_waited_s=waited_s,
        events=((at, VHoldEvent.OFFERED.value, ""),),
    )


_FROM: Final[dict[VHoldEvent, frozenset[VHoldState]]] = {
    VHoldEvent.OFFERED: frozenset({VHoldState.OFFERED}),
    VHoldEvent.ACCEPTED: frozenset({VHoldState.OFFERED}),
    VHoldEvent.ENTRY_FAILED: frozenset({VHoldState.OFFERED}),
    VHoldEvent.CALL_ENDED: frozenset({VHoldState.OFFERED}),
    VHoldEvent.PLACEHOLDER_QUEUED: frozenset({VHoldState.ACCEPTED}),
    VHoldEvent.AGENT_REACHED: frozenset({VHoldState.WAITING}),
    VHoldEvent.CALLING: frozenset({VHoldState.AGENT_REACHED}),
    VHoldEvent.CITIZEN_ANSWERED: frozenset({VHoldState.CALLING}),
    VHoldEvent.CITIZEN_FAILED: frozenset({VHoldState.CALLING, VHoldState.AGENT_REACHED}),
    VHoldEvent.RETRY_QUEUED: frozenset({VHoldState.RETRY_WAIT}),
    VHoldEvent.CLOSED: frozenset({VHoldState.ACCEPTED, VHoldState.WAITING, VHoldState.RETRY_WAIT}),
    VHoldEvent.LOST: frozenset(
        {VHoldState.ACCEPTED, VHoldState.WAITING, VHoldState.AGENT_REACHED, VHoldState.CALLING}
    ),
    VHoldEvent.CANCELLED: frozenset({VHoldState.OFFERED} | PENDING),
}
"""The states each event applies to."""


def step(
    hold: VirtualHold,
    event: VHoldEvent,
    *,
    at: datetime,
    policy: VirtualHoldPolicy,
    number: NumberCheck | None = None,
    position: int | None = None,
    agent: str = "",
    outcome: str = "",
    waited_s: float | None = None,
    ticket_due_at: datetime | None = None,
    detail: str = "",
) -> VirtualHold:
    """The hold after ``event``.

    Args:
        hold: The hold as it stands.
        event: What happened.
        at: When (aware).
        policy: The tenant's policy (retries).
        number: ``ACCEPTED``: the accepted number (``ok`` must be true).
        position: ``ACCEPTED``: the caller's queue position.
        agent: ``AGENT_REACHED``: who answered the placeholder.
        outcome: ``CITIZEN_FAILED``: ``busy``, ``noanswer``, ``failed``,
            ``congestion`` (counted) or ``agent_gone`` (not counted: the agent
            hung up before the citizen answered).
        waited_s: ``OFFERED``: seconds waited at this offer.
        ticket_due_at: ``CLOSED`` and a ``CITIZEN_FAILED`` that uses up the
            last try: the ticket's deadline (:func:`ticket_due`).
        detail: Free text for the event log (no personal data).

    Returns:
        The new hold (``updated_at`` = ``at``; the event appended).

    Raises:
        InvalidTransition: If the event does not apply in this state, or an
            argument it needs is missing.
    """
    if hold.state not in _FROM[event]:
        raise InvalidTransition(f"{event.value} does not apply to a hold in {hold.state.value}")
    new = _apply(hold, event, at, policy, number, position, agent, outcome, waited_s, ticket_due_at)
    note = detail
    if event is VHoldEvent.ACCEPTED and number is not None:
        note = note or number.reason  # the number shortened, never whole
    elif event is VHoldEvent.CITIZEN_FAILED:
        note = note or outcome
    return replace(new, updated_at=at, events=(*hold.events, (at, event.value, note)))


def _apply(
    hold: VirtualHold,
    event: VHoldEvent,
    at: datetime,
    policy: VirtualHoldPolicy,
    number: NumberCheck | None,
    position: int | None,
    agent: str,
    outcome: str,
    waited_s: float | None,
    ticket_due_at: datetime | None,
) -> VirtualHold:
    s = VHoldState
    match event:
        case VHoldEvent.OFFERED:
            return replace(hold, offers=hold.offers + 1, last_offer_waited_s=waited_s)
        case VHoldEvent.ACCEPTED:
            if number is None or not number.ok:
                raise InvalidTransition("accepting needs an accepted number")
            return replace(
                hold,
                state=s.ACCEPTED,
                number=number.e164,
                dial=number.dial,
                position=position or 0,
                accepted_at=at,
            )
        case VHoldEvent.ENTRY_FAILED:
            return hold
        case VHoldEvent.CALL_ENDED:
            return replace(hold, state=s.DECLINED)
        case VHoldEvent.PLACEHOLDER_QUEUED | VHoldEvent.RETRY_QUEUED:
            return replace(hold, state=s.WAITING, next_try_at=None)
        case VHoldEvent.AGENT_REACHED:
            return replace(hold, state=s.AGENT_REACHED, agent=agent, placeholder_answered_at=at)
        case VHoldEvent.CALLING:
            return replace(
                hold,
                state=s.CALLING,
                attempts=(*hold.attempts, Attempt(started_at=at, agent=hold.agent)),
            )
        case VHoldEvent.CITIZEN_ANSWERED:
            return replace(
                hold, state=s.CONNECTED, connected_at=at, attempts=_end(hold, at, "answered")
            )
        case VHoldEvent.CITIZEN_FAILED:
            return _failed(hold, at, policy, outcome, ticket_due_at)
        case VHoldEvent.CLOSED:
            if ticket_due_at is None:
                raise InvalidTransition("closing needs the ticket's deadline")
            return replace(hold, state=s.TICKET, ticket_due_at=ticket_due_at, next_try_at=None)
        case VHoldEvent.LOST:
            attempts = _end(hold, at, "lost") if hold.state is s.CALLING else hold.attempts
            return replace(hold, state=s.RETRY_WAIT, next_try_at=at, attempts=attempts)
        case VHoldEvent.CANCELLED:
            return replace(hold, state=s.CANCELLED, next_try_at=None)
    raise InvalidTransition(f"unknown event {event}")  # pragma: no cover - enum is exhaustive


def _end(hold: VirtualHold, at: datetime, outcome: str) -> tuple[Attempt, ...]:
    if not hold.attempts or hold.attempts[-1].ended_at is not None:
        return hold.attempts
    last = replace(hold.attempts[-1], ended_at=at, outcome=outcome)
    return (*hold.attempts[:-1], last)


def _failed(
    hold: VirtualHold,
    at: datetime,
    policy: VirtualHoldPolicy,
    outcome: str,
    ticket_due_at: datetime | None,
) -> VirtualHold:
    if hold.state is VHoldState.AGENT_REACHED or outcome == "agent_gone":
        # Nobody dialled the citizen (or the agent left mid-ring): not a try.
        attempts = _end(hold, at, "agent_gone")
        return replace(hold, state=VHoldState.RETRY_WAIT, next_try_at=at, attempts=attempts)
    if outcome not in FAILED_OUTCOMES:
        raise InvalidTransition(f"unknown outcome {outcome!r} of a try")
    after = replace(hold, attempts=_end(hold, at, outcome))
    due = next_try_at(policy, tries_done=after.tries_failed, failed_at=at)
    if due is not None:
        return replace(after, state=VHoldState.RETRY_WAIT, next_try_at=due)
    if ticket_due_at is None:
        raise InvalidTransition("the last try failed: the ticket's deadline is needed")
    return replace(after, state=VHoldState.TICKET, ticket_due_at=ticket_due_at, next_try_at=None)


# ------------------------------------------------------- retries and tickets


def next_try_at(
    policy: VirtualHoldPolicy, *, tries_done: int, failed_at: datetime
) -> datetime | None:
    """When the next call to the citizen is queued, or ``None`` when none is left.

    Args:
        policy: The tenant's policy.
        tries_done: Failed tries so far (the one that just failed included).
        failed_at: When the last one failed.

    Returns:
        ``failed_at + retry_delay_s`` while ``tries_done < max_tries``, else ``None``
        (the hold becomes a callback ticket).
    """
    if tries_done >= policy.max_tries:
        return None
    return failed_at + timedelta(seconds=policy.retry_delay_s)


def tries_left(policy: VirtualHoldPolicy, hold: VirtualHold) -> int:
    """Calls to the citizen still allowed."""
    return max(0, policy.max_tries - hold.tries_failed)


def requeue_spot(hold: VirtualHold) -> tuple[int, int]:
    """Where a retried or lost placeholder re-enters the queue.

    The caller has already waited their turn, so they go to the head: the
    caller's own priority (a higher-priority caller still goes first, as the
    queue defines) at position 1 (``Queue()``'s position argument).

    Args:
        hold: The hold.

    Returns:
        ``(priority, position)``.
    """
    return hold.priority, 1


def ticket_due(calendar: Calendar, tz: ZoneInfo, *, at: datetime, working_days: int) -> datetime:
    """The deadline of the callback ticket a hold becomes at ``at``.

    The same deadline as any callback an agent notes (the tenant's
    ``callback.working_days``-th working day after the day of ``at``, end of
    that day): :meth:`Calendar.end_of_working_day`, the one copy.

    Args:
        calendar: The tenant's calendar.
        tz: The rules' time zone.
        at: When the hold became a ticket (closing time, the last try).
        working_days: The tenant's ``callback_working_days``.

    Returns:
        The aware local deadline.
    """
    local_day: date = at.astimezone(tz).date()
    return calendar.end_of_working_day(local_day, working_days, tz)


def retry_due(hold: VirtualHold, at: datetime) -> bool:
    """Whether a hold waiting for a retry (or lost) should be queued again now.

    Args:
        hold: The hold.
        at: Now.

    Returns:
        True in ``RETRY_WAIT`` once ``next_try_at`` has come.
    """
    return (
        hold.state is VHoldState.RETRY_WAIT
        and hold.next_try_at is not None
        and hold.next_try_at <= at
    )


CLOSABLE: Final = frozenset({VHoldState.ACCEPTED, VHoldState.WAITING, VHoldState.RETRY_WAIT})
"""States a closing turns into a ticket. A hold an agent already took
(``AGENT_REACHED``, ``CALLING``) finishes its try first; should that try fail,
its retry is closed here."""


def closing_step(
    hold: VirtualHold,
    *,
    open_now: bool,
    at: datetime,
    policy: VirtualHoldPolicy,
    calendar: Calendar,
    tz: ZoneInfo,
    working_days: int,
) -> VirtualHold | None:
    """The hold as a ticket when its tenant is closed now, else ``None``.

    Call it for every pending hold whenever the open state may have changed
    (the calendar's hours, an override, a rules reload) and before queueing a
    retry. ``open_now`` is the routing's verdict
    (:func:`pbxbridge.core.routing.tenant_open` with the overrides in force),
    so a hold closes exactly when new calls would get the closed handling.

    Args:
        hold: A hold.
        open_now: Whether the hold's tenant is open at ``at``.
        at: Now.
        policy: The tenant's policy.
        calendar: The tenant's calendar (the ticket's deadline).
        tz: The rules' time zone.
        working_days: The tenant's ``callback_working_days``.

    Returns:
        The hold after ``CLOSED`` (a ticket due at the end of the
        ``working_days``-th next working day), or ``None`` when nothing changes.
    """
    if open_now or hold.state not in CLOSABLE:
        return None
    due = ticket_due(calendar, tz, at=at, working_days=working_days)
    return step(
        hold, VHoldEvent.CLOSED, at=at, policy=policy, ticket_due_at=due, detail="tenant closed"
    )


# ---------------------------------------------------------------- repeat callers

_WEEKDAYS_DE: Final = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")


def open_callback_note(since: datetime, *, now: datetime) -> str:
    """The pop's note for a caller with an open callback or pending virtual hold.

    Args:
        since: When the callback was asked for (aware, in the rules' time zone).
        now: Now, in the same zone.

    Returns:
        ``offener Rückruf vom Di 09:14`` within the last six days,
        ``offener Rückruf vom 24.11. 09:14`` before that.
    """
    if (now.date() - since.date()).days < 7:
        day = _WEEKDAYS_DE[since.weekday()]
    else:
        day = since.strftime("%d.%m.")
    return f"offener Rückruf vom {day} {since:%H:%M}"


def repeat_priority(base: int, policy: VirtualHoldPolicy, *, has_open_callback: bool) -> int:
    """The queue priority of a call, with the repeat-caller bump.

    Args:
        base: The tenant's ``open.priority``.
        policy: The tenant's policy.
        has_open_callback: The caller's number has an open callback ticket or
            a pending virtual hold.

    Returns:
        ``base + repeat_caller_priority`` for such callers, else ``base``.
    """
    return base + policy.repeat_caller_priority if has_open_callback else base
