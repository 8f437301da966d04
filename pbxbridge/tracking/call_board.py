"""Today's call figures per tenant for the supervisor page, fed by the call tracker.

Fed with every lifecycle change (the tracker's ``on_record`` observer, like
:mod:`pbxbridge.tracking.metrics`), it counts per local half hour and tenant:

* **offered**: calls that joined a queue;
* **answered** and, of them, **answered within** the threshold;
* **abandoned** and, of them, **short** abandons.

The service-level fractions are :mod:`pbxbridge.core.servicelevel`'s, with
that module's defaults, over the same answered and abandoned calls as
``/metrics``' live gauge (an abandon or answer counts in the half hour, day or
15-minute window in which it happened). Calls waiting now are read from the
tracker's records when asked, so there is no second bookkeeping to drift.

:class:`Outcomes` is the one windowing of answers and abandons: the board's
last 15 minutes and :class:`~pbxbridge.tracking.metrics.LiveServiceLevel`'s
gauges both count through it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from pbxbridge.core import servicelevel
from pbxbridge.core.lifecycle import CallEvent, CallRecord, EventKind, State
from pbxbridge.core.servicelevel import Fraction

ALL: Final = ""
"""The key of the shared queue's totals (every tenant)."""
SLOT_MINUTES: Final = 30
SLOTS_PER_DAY: Final = 24 * 60 // SLOT_MINUTES
RECENT: Final = timedelta(minutes=15)


@dataclass(slots=True)
class Tally:
    """Counts of one tenant (or all) over one stretch of time.

    Attributes:
        offered: Joined a queue.
        answered: Answered by an agent.
        within: Answered within the threshold.
        abandoned: Hung up while waiting.
        short: Abandons shorter than the short-abandon limit.
    """

    offered: int = 0
    answered: int = 0
    within: int = 0
    abandoned: int = 0
    short: int = 0

    def add(self, other: Tally) -> None:
        """Add another tally's counts to this one."""
        self.offered += other.offered
        self.answered += other.answered
        self.within += other.within
        self.abandoned += other.abandoned
        self.short += other.short

    def sl_answered(self) -> Fraction:
        """Service level over answered calls."""
        return servicelevel.over_answered(self.within, self.answered)

    def sl_offered(self) -> Fraction:
        """Service level over offered calls (answered + abandoned, short abandons out)."""
        return servicelevel.over_offered(self.within, self.answered + self.abandoned, self.short)


@dataclass(frozen=True, slots=True)
class Waiting:
    """Callers in a queue now (not yet answered).

    Attributes:
        calls: How many.
        longest_s: The longest wait so far, seconds (0 without calls).
    """

    calls: int = 0
    longest_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """An answer or an abandon, classified once by the service-level rules.

    Attributes:
        at: When it was answered or abandoned.
        tenant: Tenant id.
        answered: True for answered, False for abandoned.
        within: Answered within the threshold.
        short: A short abandon (left out of "offered").
    """

    at: datetime
    tenant: str
    answered: bool
    within: bool
    short: bool


class Outcomes:
    """Answers and abandons in arrival order, counted per tenant over a window when asked.

    Forgetting is from the oldest arrival only, so a window's owner forgets
    before the earliest instant any of its windows can still need.

    Args:
        threshold_s: Service-level threshold.
        short_abandon_s: Short-abandon limit.
    """

    def __init__(self, *, threshold_s: float, short_abandon_s: float) -> None:
        self.threshold_s = threshold_s
        self.short_abandon_s = short_abandon_s
        self._items: deque[Outcome] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, tenant: str, at: datetime, *, answered: bool, wait_s: float | None) -> Outcome:
        """Classify and keep an answer or an abandon.

        Args:
            tenant: Tenant id.
            at: When it was answered or abandoned.
            answered: True for answered, False for abandoned.
            wait_s: Seconds waited (``None``: unknown).

        Returns:
            The outcome as kept.
        """
        if wait_s is None:
            # Unknown waits count against the service level, as in the report.
            within = False
            short = False
        else:
            within = answered and servicelevel.answered_within(wait_s, self.threshold_s)
            short = not answered and servicelevel.short_abandon(wait_s, self.short_abandon_s)
        outcome = Outcome(at, tenant, answered, within, short)
        self._items.append(outcome)
        return outcome

    def forget_before(self, instant: datetime) -> None:
        """Drop the oldest arrivals while they happened before ``instant``."""
        while self._items and self._items[0].at < instant:
            self._items.popleft()

    def tally(self, since: datetime, until: datetime | None = None) -> dict[str, Tally]:
        """Count the outcomes from ``since`` (inclusive) to ``until`` (inclusive; ``None``: no end).

        Args:
            since: The window's start.
            until: The window's end.

        Returns:
            Tenant to tally, and :data:`ALL` for every tenant, only for keys
            with an outcome in the window (``offered`` stays 0: only outcomes
            are windowed).
        """
        out: dict[str, Tally] = {}
        for o in self._items:
            # Arrival order is not time order (journal seeds, AMI timestamps).
            if o.at < since or (until is not None and o.at > until):
                continue
            for key in (o.tenant, ALL):
                tally = out.setdefault(key, Tally())
                tally.answered += o.answered
                tally.within += o.within
                tally.abandoned += not o.answered
                tally.short += o.short
        return out


@dataclass(slots=True)
class _Day:
    day: date
    # tenant -> 48 half-hour tallies
    slots: dict[str, list[Tally]] = field(default_factory=dict)


class CallBoard:
    """Today's counts per tenant and half hour, and the last 15 minutes.

    Args:
        tz: The time zone that defines "today" and the half hours.
        threshold_s: Service-level threshold.
        short_abandon_s: Short-abandon limit.
    """

    def __init__(
        self,
        tz: ZoneInfo,
        *,
        threshold_s: float = servicelevel.THRESHOLD_S,
        short_abandon_s: float = servicelevel.SHORT_ABANDON_S,
    ) -> None:
        self.tz = tz
        self.threshold_s = threshold_s
        self.short_abandon_s = short_abandon_s
        self._day: _Day | None = None
        self._recent = Outcomes(threshold_s=threshold_s, short_abandon_s=short_abandon_s)
        self.generation = 0
        """Counts changes (a page re-renders when it moves)."""

    def _slots(self, at: datetime, tenant: str) -> list[Tally] | None:
        local = at.astimezone(self.tz)
        if self._day is None or local.date() > self._day.day:
            self._day = _Day(local.date())
        if local.date() < self._day.day:
            return None  # late news of yesterday: not today's figure
        return self._day.slots.setdefault(tenant, [Tally() for _ in range(SLOTS_PER_DAY)])

    @staticmethod
    def slot_of(local: datetime) -> int:
        """The half hour of a local time (0 = 00:00-00:30)."""
        return (local.hour * 60 + local.minute) // SLOT_MINUTES

    def observe(self, record: CallRecord, event: CallEvent | None) -> None:
        """Count one lifecycle change (the tracker's ``on_record`` observer).

        Args:
            record: The record after the change.
            event: What changed it (``None``: just routed, not counted).
        """
        if event is None:
            return
        tenant = record.decision.tenant or "unknown"
        state = record.state
        if event.kind is EventKind.JOIN and state is State.QUEUED:
            self.offered(tenant, event.at)
        elif event.kind is EventKind.CONNECT and state is State.ANSWERED:
            self.outcome(tenant, event.at, answered=True, wait_s=record.waited_s(event.at))
        elif state is State.ABANDONED:
            self.outcome(tenant, event.at, answered=False, wait_s=record.waited_s(event.at))

    def offered(self, tenant: str, at: datetime) -> None:
        """Count a call that joined a queue (live, or from the journal after a restart).

        Args:
            tenant: Tenant id.
            at: When it joined.
        """
        slots = self._slots(at, tenant)
        if slots is not None:
            slots[self.slot_of(at.astimezone(self.tz))].offered += 1
            self.generation += 1

    def outcome(self, tenant: str, at: datetime, *, answered: bool, wait_s: float | None) -> None:
        """Count an answer or an abandon (live, or from the journal after a restart).

        Args:
            tenant: Tenant id.
            at: When it was answered or abandoned.
            answered: True for answered, False for abandoned.
            wait_s: Seconds waited (``None``: unknown; an unknown answer is late).
        """
        # Bounded without readers too (no page open for weeks): older than the
        # window behind the newest outcome is never needed again.
        self._recent.forget_before(at - RECENT)
        outcome = self._recent.add(tenant, at, answered=answered, wait_s=wait_s)
        slots = self._slots(at, tenant)
        if slots is not None:
            tally = slots[self.slot_of(at.astimezone(self.tz))]
            tally.answered += outcome.answered
            tally.within += outcome.within
            tally.abandoned += not outcome.answered
            tally.short += outcome.short
        self.generation += 1

    def half_hours(self, now: datetime) -> dict[str, list[Tally]]:
        """Today's tallies per tenant and half hour; :data:`ALL` sums every tenant.

        Args:
            now: The current instant (a new day starts empty).

        Returns:
            Tenant to 48 tallies (00:00 first).
        """
        if self._day is None or now.astimezone(self.tz).date() != self._day.day:
            return {ALL: [Tally() for _ in range(SLOTS_PER_DAY)]}
        out = {tenant: list(slots) for tenant, slots in self._day.slots.items()}
        total = [Tally() for _ in range(SLOTS_PER_DAY)]
        for slots in out.values():
            for i, tally in enumerate(slots):
                total[i].add(tally)
        out[ALL] = total
        return out

    def today(self, now: datetime) -> dict[str, Tally]:
        """Today so far per tenant, :data:`ALL` for the shared queue.

        Args:
            now: The current instant.

        Returns:
            Tenant to tally.
        """
        out: dict[str, Tally] = {}
        for tenant, slots in self.half_hours(now).items():
            day = out[tenant] = Tally()
            for tally in slots:
                day.add(tally)
        return out

    def recent(self, now: datetime) -> dict[str, Tally]:
        """The last 15 minutes' answers and abandons per tenant and :data:`ALL`.

        Args:
            now: The current instant.

        Returns:
            Tenant to tally (``offered`` stays 0: only outcomes are windowed).
        """
        since = now - RECENT
        self._recent.forget_before(since)
        # The page shows the shared queue first, even when it is quiet.
        out: dict[str, Tally] = {ALL: Tally()}
        # Not after now: an outcome stamped ahead of this clock waits its turn.
        out.update(self._recent.tally(since, now))
        return out


def waiting(records: Iterable[CallRecord], now: datetime) -> dict[str, Waiting]:
    """Callers in a queue now, not yet answered, per tenant and :data:`ALL`.

    Args:
        records: The tracker's live records.
        now: The current instant.

    Returns:
        Tenant to :class:`Waiting`.
    """
    counts: dict[str, list[float]] = {ALL: [0, 0.0]}
    for record in records:
        if record.state not in (State.QUEUED, State.RINGING):
            continue
        wait = record.waited_s(now)
        for key in (record.decision.tenant or "unknown", ALL):
            entry = counts.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] = max(entry[1], wait)
    return {k: Waiting(int(v[0]), v[1]) for k, v in counts.items()}


__all__ = [
    "ALL",
    "RECENT",
    "SLOTS_PER_DAY",
    "SLOT_MINUTES",
    "CallBoard",
    "Outcome",
    "Outcomes",
    "Tally",
    "Waiting",
    "waiting",
]
