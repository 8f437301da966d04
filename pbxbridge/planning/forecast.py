"""Next week's staffing from the call journal: arrivals, handle time, patience, agents (pure).

:func:`build_forecast` reads the history weeks' calls summed per tenant and
half hour (:class:`~pbxbridge.journal.forecast.HalfHour`, which also defines
*offered*, talk, wrap-up and waits) and forecasts, for every day of the target
ISO week and every half hour of local time, per tenant and for the shared queue:

``calls``
    Expected *offered* calls (the report's definition: reached the service
    queue in opening hours), by local arrival time.
``aht_s``
    Mean handle time: talk plus wrap-up. Talk is the journal's ``talk_s`` of
    answered calls, averaged over the same weekday and half hour when that
    cell holds at least :data:`MIN_CELL_CALLS` answered calls, else over the
    tenant's whole history. Wrap-up is the time from the end of the call to
    the agent's disposition (clamped: a card left open is not work on the
    call), averaged over the tenant's calls that have one.
``patience_s``
    Mean patience, estimated from the abandons as the standard estimator
    for exponential patience under censoring: total time spent waiting by
    *all* queued calls (answered, abandoned or timed out) divided by the
    number of abandons (Brown et al., JASA 2005; Mandelbaum and Zeltyn). A
    caller answered after 30 s shows patience of *at least* 30 s; dividing only
    the abandoned callers' waits would understate it. ``None`` without abandons.
``staffing``
    :func:`pbxbridge.core.erlang.staffing` for the half hour: the fewest agents
    for the target with their service level, ASA, occupancy and abandons.

How the history is weighted
    The history is the ``weeks`` whole weeks before the target week (or before
    ``today`` when that is earlier, so an unfinished day never counts as a
    quiet one, nor do days before the journal's first call). Every history day
    is classified with the tenant's calendar from the rules:

    * a *regular* day (the weekly hours apply) counts towards the weekday's
      profile, each such day with the same weight: the mean over the regular
      same weekdays of the history;
    * a holiday, closed date or special opening is left out (it is not a
      Monday like the others);
    * a regular day right after a closure (the day after a holiday, or the
      Monday after a Friday holiday: looking back over closed days, one of
      them was closed by a holiday or closure rather than the weekly hours)
      is left out of the profile too, and measures the *after-closure
      factor*: its calls divided by what its weekday's profile expected. A
      forecast day after a closure gets its weekday's profile times that
      factor (1.0 when the history holds no such day).

    A target day's half hours outside the tenant's opening hours that day
    (a holiday: all of them) are forecast as zero.

The shared queue
    Agents answer every tenant, so what is staffed is the shared queue: its
    arrivals are the tenants' forecast arrivals summed, its handle time their
    call-weighted mean, its patience the estimator over all tenants' calls,
    and its agents are computed from those (never the tenants' agents summed:
    pooling needs fewer agents than the separate queues).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from pbxbridge.core import erlang
from pbxbridge.core.calendar import WEEKDAYS, Calendar
from pbxbridge.journal.forecast import SLOT_S, HalfHour

SLOTS: Final = 86400 // SLOT_S
SHARED: Final = "*"
"""Tenant label of the shared queue (as the report's all-tenants rows)."""
MIN_CELL_CALLS: Final = 30
"""Answered calls a weekday/half-hour cell needs for its own talk-time mean."""
_LOOKBACK_DAYS: Final = 14
"""How far back over closed days a day looks for a holiday or closure."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One half hour of one tenant (or the shared queue).

    Attributes:
        tenant: Tenant id, or :data:`SHARED`.
        day: The local date.
        index: Half hour of the day, 0 (00:00) to 47 (23:30).
        calls: Expected offered calls.
        aht_s: Mean handle time (talk plus wrap-up), or ``None`` without history.
        patience_s: Mean patience, or ``None`` without abandons.
        staffing: Agents and figures; ``None`` without calls or handle time.
    """

    tenant: str
    day: date
    index: int
    calls: float
    aht_s: float | None
    patience_s: float | None
    staffing: erlang.Staffing | None

    @property
    def start(self) -> str:
        """Local start as ``HH:MM``."""
        return f"{self.index // 2:02d}:{(self.index % 2) * 30:02d}"

    @property
    def agents(self) -> int:
        """Agents needed (0 without calls)."""
        return self.staffing.agents if self.staffing is not None else 0


@dataclass(frozen=True, slots=True)
class Forecast:
    """A week's forecast.

    Attributes:
        year: ISO year of the target week.
        week: ISO week number.
        days: The seven local dates, Monday first.
        history: First and last local date of the history used.
        weeks: History weeks asked for.
        target_level: Service-level target (0.8).
        threshold_s: Its threshold (20 s).
        model: Staffing model asked for (a slot without patience uses Erlang C).
        tenants: Tenants forecast, sorted (without :data:`SHARED`).
        slots: Per tenant then the shared queue (when several tenants), each
            by day and half hour.
        after_closure: Per tenant, the after-closure factor used.
        patience_s: Per tenant and :data:`SHARED`, the estimated mean patience.
    """

    year: int
    week: int
    days: tuple[date, ...]
    history: tuple[date, date]
    weeks: int
    target_level: float
    threshold_s: float
    model: erlang.Model
    tenants: tuple[str, ...]
    slots: tuple[Slot, ...]
    after_closure: Mapping[str, float]
    patience_s: Mapping[str, float | None]
    _index: Mapping[tuple[str, date, int], Slot] = field(
        default_factory=dict, repr=False, compare=False
    )

    def slot(self, tenant: str, day: date, index: int) -> Slot:
        """One slot.

        Args:
            tenant: Tenant id or :data:`SHARED`.
            day: A day of the week.
            index: Half hour 0..47.

        Returns:
            The slot.

        Raises:
            KeyError: If it is not in the forecast.
        """
        return self._index[(tenant, day, index)]


def week_days(year: int, week: int) -> tuple[date, ...]:
    """The seven dates of an ISO week, Monday first.

    Raises:
        ValueError: If the week does not exist.
    """
    monday = date.fromisocalendar(year, week, 1)
    return tuple(monday + timedelta(days=i) for i in range(7))


def history_period(
    year: int, week: int, weeks: int, today: date | None = None
) -> tuple[date, date]:
    """First and last local date of the history for a target week.

    The ``weeks`` whole weeks before the target week; when ``today`` falls
    before the target week's Monday, the history ends the day before
    ``today`` (still ``weeks * 7`` days long), so a day not yet over never counts.

    Args:
        year: ISO year.
        week: ISO week.
        weeks: History weeks (>= 1).
        today: The current local date, or ``None``.

    Returns:
        ``(first, last)``, inclusive.
    """
    if weeks < 1:
        raise ValueError("the history needs at least one week")
    end = week_days(year, week)[0]
    if today is not None and today < end:
        end = today
    return end - timedelta(days=7 * weeks), end - timedelta(days=1)


@dataclass(slots=True)
class _Tenant:
    """One tenant's half-hour sums, gathered."""

    counts: dict[tuple[date, int], int] = field(default_factory=dict)
    talk: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    """(weekday, half hour) to [talk seconds, answered calls]."""
    talk_sum: float = 0.0
    talk_n: int = 0
    wrap_sum: float = 0.0
    wrap_n: int = 0
    wait_sum: float = 0.0
    abandons: int = 0


def _regular(calendar: Calendar, day: date) -> bool:
    return calendar.state_on(day)[1] in WEEKDAYS


def _after_closure(calendar: Calendar, day: date) -> bool:
    """A regular day whose run of closed days before it holds a holiday or closure."""
    for back in range(1, _LOOKBACK_DAYS + 1):
        prev = day - timedelta(days=back)
        intervals, why, _ = calendar.state_on(prev)
        if intervals:
            return False
        if why not in WEEKDAYS:
            return True
    return False


def _open_slots(calendar: Calendar, day: date) -> set[int]:
    intervals = calendar.state_on(day)[0]
    out: set[int] = set()
    for interval in intervals:
        first = interval.start // SLOT_S
        last = (interval.end - 1) // SLOT_S
        out.update(range(first, min(last, SLOTS - 1) + 1))
    return out


class _Clock:
    """UTC instant to (local date, half hour), cached per UTC half hour.

    Local half hours start on UTC half hours in every zone whose offset is a
    multiple of 30 minutes (all of Europe), so one conversion per half hour
    serves every call in it.
    """

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._cache: dict[int, tuple[date, int]] = {}

    def __call__(self, instant: datetime) -> tuple[date, int]:
        key = int(instant.timestamp()) // SLOT_S
        hit = self._cache.get(key)
        if hit is None:
            local = datetime.fromtimestamp(key * SLOT_S, UTC).astimezone(self.tz)
            hit = (local.date(), (local.hour * 3600 + local.minute * 60) // SLOT_S)
            self._cache[key] = hit
        return hit


def _accumulate(
    sums: Iterable[HalfHour], tz: ZoneInfo, wanted: set[str], first: date, last: date
) -> tuple[dict[str, _Tenant], date | None]:
    clock = _Clock(tz)
    acc: dict[str, _Tenant] = {t: _Tenant() for t in wanted}
    earliest: date | None = None
    for half in sums:
        day, index = clock(half.start)
        if earliest is None or day < earliest:
            earliest = day
        t = acc.get(half.tenant)
        if t is None or not first <= day <= last:
            continue
        key = (day, index)
        t.counts[key] = t.counts.get(key, 0) + half.offered
        if half.answered:
            cell = t.talk.setdefault((day.weekday(), index), [0.0, 0])
            cell[0] += half.talk_sum
            cell[1] += half.answered
        t.talk_sum += half.talk_sum
        t.talk_n += half.answered
        t.wrap_sum += half.wrap_sum
        t.wrap_n += half.wrapped
        t.wait_sum += half.waited_sum
        t.abandons += half.abandoned
    return acc, earliest


def _profile(
    t: _Tenant, calendar: Calendar, days: list[date]
) -> tuple[dict[tuple[int, int], float], float]:
    """Mean calls per (weekday, half hour) over regular days, and the after-closure factor."""
    base_days: dict[int, list[date]] = {}
    after: list[date] = []
    for day in days:
        if not _regular(calendar, day):
            continue
        if _after_closure(calendar, day):
            after.append(day)
        else:
            base_days.setdefault(day.weekday(), []).append(day)
    profile: dict[tuple[int, int], float] = {}
    for weekday, group in base_days.items():
        for index in range(SLOTS):
            total = sum(t.counts.get((d, index), 0) for d in group)
            if total:
                profile[(weekday, index)] = total / len(group)
    seen = sum(t.counts.get((d, i), 0) for d in after for i in range(SLOTS))
    expected = sum(profile.get((d.weekday(), i), 0.0) for d in after for i in range(SLOTS))
    return profile, (seen / expected if expected > 0 else 1.0)


def _staff(
    calls: float,
    aht: float | None,
    patience: float | None,
    *,
    target_level: float,
    threshold_s: float,
    model: erlang.Model,
) -> erlang.Staffing | None:
    if calls <= 0 or aht is None or aht <= 0:
        return None
    use: erlang.Model = model if patience is not None else "erlang-c"
    return erlang.staffing(
        calls,
        SLOT_S,
        aht,
        target_level=target_level,
        threshold_s=threshold_s,
        model=use,
        patience_s=patience if use == "erlang-a" else None,
    )


def build_forecast(
    sums: Iterable[HalfHour],
    *,
    year: int,
    week: int,
    weeks: int,
    tz: ZoneInfo,
    calendars: Mapping[str, Calendar],
    target_level: float,
    threshold_s: float,
    model: erlang.Model = "erlang-c",
    today: date | None = None,
) -> Forecast:
    """Forecast a week per tenant and for the shared queue (see the module docstring).

    Args:
        sums: The journal's half-hour sums over :func:`history_period`
            (:func:`pbxbridge.journal.forecast.half_hours`; others are ignored).
        year: ISO year of the target week.
        week: ISO week number.
        weeks: History weeks.
        tz: The rules' time zone (days and half hours are local).
        calendars: Tenant id to its opening-hours calendar; exactly these
            tenants are forecast.
        target_level: Service-level target, 0 < level < 1.
        threshold_s: Its threshold in seconds.
        model: ``erlang-c`` or ``erlang-a`` (Erlang A where patience is known).
        today: The current local date (the history ends before it).

    Returns:
        The forecast.

    Raises:
        ValueError: On a week that does not exist, ``weeks < 1`` or a bad target.
    """
    days = week_days(year, week)
    first, last = history_period(year, week, weeks, today)
    acc, earliest = _accumulate(sums, tz, set(calendars), first, last)
    start = max(first, earliest) if earliest is not None else first
    history = [start + timedelta(days=i) for i in range((last - start).days + 1)]
    tenants = tuple(sorted(calendars))
    slots: list[Slot] = []
    factors: dict[str, float] = {}
    patience: dict[str, float | None] = {}
    shared_calls = [[0.0] * SLOTS for _ in days]
    shared_work = [[0.0] * SLOTS for _ in days]
    for tenant in tenants:
        t = acc[tenant]
        calendar = calendars[tenant]
        profile, factor = _profile(t, calendar, history)
        factors[tenant] = factor
        patience[tenant] = t.wait_sum / t.abandons if t.abandons else None
        talk_mean = t.talk_sum / t.talk_n if t.talk_n else None
        wrap_mean = t.wrap_sum / t.wrap_n if t.wrap_n else 0.0
        for n, day in enumerate(days):
            open_slots = _open_slots(calendar, day)
            scale = factor if _regular(calendar, day) and _after_closure(calendar, day) else 1.0
            for index in range(SLOTS):
                calls = profile.get((day.weekday(), index), 0.0) * scale
                if index not in open_slots:
                    calls = 0.0
                talk_s, answered = t.talk.get((day.weekday(), index), (0.0, 0))
                talk = talk_s / answered if answered >= MIN_CELL_CALLS else talk_mean
                aht = None if talk is None else talk + wrap_mean
                staffed = _staff(
                    calls,
                    aht,
                    patience[tenant],
                    target_level=target_level,
                    threshold_s=threshold_s,
                    model=model,
                )
                slots.append(Slot(tenant, day, index, calls, aht, patience[tenant], staffed))
                if aht is not None:
                    shared_calls[n][index] += calls
                    shared_work[n][index] += calls * aht
    waits = sum(acc[x].wait_sum for x in tenants)
    abandons = sum(acc[x].abandons for x in tenants)
    patience[SHARED] = waits / abandons if abandons else None
    if len(tenants) > 1:
        for n, day in enumerate(days):
            for index in range(SLOTS):
                calls = shared_calls[n][index]
                aht = shared_work[n][index] / calls if calls > 0 else None
                staffed = _staff(
                    calls,
                    aht,
                    patience[SHARED],
                    target_level=target_level,
                    threshold_s=threshold_s,
                    model=model,
                )
                slots.append(Slot(SHARED, day, index, calls, aht, patience[SHARED], staffed))
    return Forecast(
        year=year,
        week=week,
        days=days,
        history=(start, last),
        weeks=weeks,
        target_level=target_level,
        threshold_s=threshold_s,
        model=model,
        tenants=tenants,
        slots=tuple(slots),
        after_closure=factors,
        patience_s=patience,
        _index={(s.tenant, s.day, s.index): s for s in slots},
    )


def slot_of(instant: datetime, tz: ZoneInfo) -> tuple[date, int]:
    """The local date and half hour (0..47) of an instant (for "the current half hour").

    Args:
        instant: An aware instant.
        tz: The rules' time zone.

    Returns:
        ``(day, index)``.
    """
    local = instant.astimezone(tz)
    return local.date(), (local.hour * 3600 + local.minute * 60) // SLOT_S


def day_start(day: date, index: int, tz: ZoneInfo) -> datetime:
    """The aware local start of a half hour (wall clock; see :func:`slot_of`)."""
    return datetime.combine(day, time(index // 2, (index % 2) * 30), tz)
