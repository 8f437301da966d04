"""A VTIMEZONE for a time zone, written from the zone's own transitions.

RFC 5545 (3.6.5) gives each observance's onset as ``DTSTART`` in the local time
*before* the switch, the offset ``TZOFFSETFROM``: Europe/Berlin starts summer time
at ``02:00`` (CET) on the last Sunday of March and ends it at ``03:00`` (CEST) on
the last Sunday of October. ``icalendar.Timezone.from_tzinfo`` walks the wall
clock and writes the summer onset as ``03:00``, one hour late: a client that
reads the feed's VTIMEZONE instead of its own tz database shows the hour from
01:00 to 02:00 UTC on that Sunday in winter time. So the transitions are found
here in UTC (a scan, then bisection to the second) and written as the RFC wants.

An observance that recurs on the same weekday of the same month at the same
local time every year of the window is one ``RRULE`` (``FREQ=YEARLY;BYMONTH=3;
BYDAY=-1SU``) that ends with the window (``UNTIL``, UTC); any other is its first
onset plus ``RDATE`` values. Either way nothing is claimed beyond the window the
feed covers.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import icalendar

_SCAN_STEP_S: Final = 6 * 3600
"""Offsets are compared this far apart (no zone switches twice within 6 hours)."""
_WEEKDAYS: Final = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True, slots=True)
class _State:
    offset: timedelta
    dst: bool
    name: str


@dataclass(frozen=True, slots=True)
class Transition:
    """A switch of a zone's offset or name.

    Attributes:
        at: The first instant (UTC, whole seconds) of the new observance.
        offset_from: The UTC offset before.
        offset_to: The UTC offset after.
        name: The abbreviation after (``CEST``).
        dst: Whether the new observance is daylight saving time.
    """

    at: datetime
    offset_from: timedelta
    offset_to: timedelta
    name: str
    dst: bool

    @property
    def onset(self) -> datetime:
        """The local time of the switch as RFC 5545 writes it: in the offset before."""
        return (self.at + self.offset_from).replace(tzinfo=None)


def _state(tz: ZoneInfo, ts: int) -> _State:
    local = datetime.fromtimestamp(ts, UTC).astimezone(tz)
    return _State(
        local.utcoffset() or timedelta(0),
        bool(local.dst()),
        local.tzname() or "",
    )


def transitions(tz: ZoneInfo, start: datetime, end: datetime) -> list[Transition]:
    """The zone's transitions from ``start`` (inclusive) to ``end`` (exclusive).

    Args:
        tz: The zone.
        start: Aware start.
        end: Aware end.

    Returns:
        The transitions in order, each at the exact second the zone switches.
    """
    found: list[Transition] = []
    ts, stop = int(start.timestamp()), int(end.timestamp())
    before = _state(tz, ts)
    while ts < stop:
        nxt = min(ts + _SCAN_STEP_S, stop)
        after = _state(tz, nxt)
        if after != before:
            lo, hi = ts, nxt  # state(lo) == before, state(hi) == after
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _state(tz, mid) == before:
                    lo = mid
                else:
                    hi = mid
            found.append(
                Transition(
                    datetime.fromtimestamp(hi, UTC),
                    before.offset,
                    after.offset,
                    after.name,
                    after.dst,
                )
            )
        before, ts = after, nxt
    return found


def _yearly_rule(onsets: list[datetime]) -> dict[str, Any] | None:
    """``RRULE`` parts when the onsets fall on one weekday of one month every year."""
    if len(onsets) < 2:
        return None
    first = onsets[0]
    years = [o.year for o in onsets]
    if years != list(range(first.year, first.year + len(onsets))):
        return None
    if any(
        (o.month, o.weekday(), o.time()) != (first.month, first.weekday(), first.time())
        for o in onsets
    ):
        return None
    last = [o.day + 7 > calendar.monthrange(o.year, o.month)[1] for o in onsets]
    nth = {(o.day - 1) // 7 + 1 for o in onsets}
    if all(last):
        which = -1
    elif len(nth) == 1:
        which = nth.pop()
    else:
        return None
    return {
        "freq": "yearly",
        "bymonth": first.month,
        "byday": f"{which}{_WEEKDAYS[first.weekday()]}",
    }


def vtimezone(tz: ZoneInfo, first: date, last: date) -> icalendar.Timezone:
    """The VTIMEZONE of ``tz`` for the whole years from ``first`` to ``last``.

    Args:
        tz: The zone (its key becomes the ``TZID``).
        first: A day of the first year the calendar's times fall in.
        last: A day of the last year.

    Returns:
        The component: the observance in force on 1 January of the first year,
        then one per kind of switch (standard or daylight, offsets, name).
    """
    start = datetime(first.year, 1, 1, tzinfo=tz)
    end = datetime(last.year + 1, 1, 1, tzinfo=tz)
    out = icalendar.Timezone()
    out.add("tzid", tz.key)
    out.add("x-lic-location", tz.key)
    until = end.astimezone(UTC) - timedelta(seconds=1)
    begin = _state(tz, int(start.timestamp()))
    naive_start = start.replace(tzinfo=None)
    out.add_component(_observance(begin.dst, naive_start, begin.offset, begin.offset, begin.name))
    groups: dict[tuple[bool, timedelta, timedelta, str], list[Transition]] = defaultdict(list)
    for t in transitions(tz, start, end):
        groups[(t.dst, t.offset_from, t.offset_to, t.name)].append(t)
    for (dst, offset_from, offset_to, name), switches in groups.items():
        onsets = [t.onset for t in switches]
        component = _observance(dst, onsets[0], offset_from, offset_to, name)
        rule = _yearly_rule(onsets)
        if rule is not None:
            # UNTIL in UTC (RFC 5545 for observances) at the window's end, not at
            # the last onset: a reader that compares it with the local DTSTART
            # (dateutil does) would drop an onset that UNTIL names exactly.
            component.add("rrule", {**rule, "until": until})
        elif len(onsets) > 1:
            component.add("rdate", onsets[1:])
        out.add_component(component)
    return out


def _observance(
    dst: bool, onset: datetime, offset_from: timedelta, offset_to: timedelta, name: str
) -> icalendar.TimezoneStandard | icalendar.TimezoneDaylight:
    component = icalendar.TimezoneDaylight() if dst else icalendar.TimezoneStandard()
    component.add("dtstart", onset)  # naive: local time, in offset_from
    component.add("tzoffsetfrom", offset_from)
    component.add("tzoffsetto", offset_to)
    if name:
        component.add("tzname", name)
    return component


__all__ = ["Transition", "transitions", "vtimezone"]
