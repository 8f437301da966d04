"""Opening-hours calendars: weekly hours, holidays, extra closed dates, special openings.

All comparisons happen in local wall-clock time of the rules' time zone, so a
calendar that says ``07:00-18:00`` opens at 07:00 local time on the day
daylight saving starts and ends as on any other day. Intervals are half-open:
``07:00`` is open, ``18:00`` is closed.

Precedence on a given date, first match wins:

1. a dated special opening (``open: {"2026-03-08": [...]}``) replaces everything else;
2. a dated closed date (``closed: ["2026-12-24"]``, or a closure from an
   iCalendar file) closes the whole day;
3. a yearly special opening (``open: {"12-24": [...]}``);
4. a yearly closed date (``closed: ["12-24", "12-24..12-31"]``);
5. a public holiday of the configured country/subdivision closes the whole day;
6. otherwise the weekly ``hours`` apply.

A dated entry thus wins over a yearly one on the same day. Closed hours
(``closed_hours``: timed closures from an iCalendar file) are then cut out of
whatever intervals steps 3-6 gave; a dated special opening is kept whole.

Yearly entries are (month, day) pairs. ``02-29`` exists only in leap years:
a yearly ``02-29`` closes nothing in other years (it is not moved to 28
February or 1 March), and a range over the end of February
(``02-28..03-01``) includes 29 February when the year has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holidays_lib

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_RE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_YEARLY_RE = re.compile(r"^\d{2}-\d{2}$")
_LEAP_YEAR = 2024
"""Any leap year: (month, day) pairs are checked and walked in it, so 02-29 exists."""

MonthDay = tuple[int, int]
"""A yearly date: (month, day)."""


class CalendarSyntaxError(ValueError):
    """A time, interval, day or date string in a calendar is malformed."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open local-time interval ``[start, end)`` in seconds after midnight.

    Attributes:
        start: Seconds after midnight, inclusive.
        end: Seconds after midnight, exclusive (86400 for ``24:00``).
        label: Where it comes from, for traces (``mon-fri``, ``2026-03-08``).
    """

    start: int
    end: int
    label: str = ""

    def contains(self, second: int) -> bool:
        """Whether a second-of-day lies inside the interval.

        Args:
            second: Seconds after local midnight.

        Returns:
            True when ``start <= second < end``.
        """
        return self.start <= second < self.end

    def overlaps(self, other: Interval) -> bool:
        """Whether two intervals share at least one second.

        Args:
            other: Another interval.

        Returns:
            True when they overlap (touching ends do not overlap).
        """
        return self.start < other.end and other.start < self.end

    @property
    def text(self) -> str:
        """The interval as ``HH:MM-HH:MM``."""
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def parse_time(text: str) -> int:
    """Parse ``HH:MM`` (``24:00`` allowed) into seconds after midnight.

    Args:
        text: The time string.

    Returns:
        Seconds after midnight.

    Raises:
        CalendarSyntaxError: If it is not a valid ``HH:MM``.
    """
    m = _TIME_RE.match(text.strip())
    if not m:
        raise CalendarSyntaxError(f"invalid time {text!r}: expected HH:MM (00:00 to 24:00)")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours == 24 and minutes:
        raise CalendarSyntaxError(f"invalid time {text!r}: 24:00 is the latest time")
    return hours * 3600 + minutes * 60


def parse_interval(text: str, label: str = "") -> Interval:
    """Parse ``HH:MM-HH:MM`` into an :class:`Interval`.

    Args:
        text: The interval string.
        label: Label for traces.

    Returns:
        The interval.

    Raises:
        CalendarSyntaxError: If malformed or empty (end not after start).
    """
    parts = text.split("-")
    if len(parts) != 2:
        raise CalendarSyntaxError(f"invalid interval {text!r}: expected HH:MM-HH:MM")
    start, end = parse_time(parts[0]), parse_time(parts[1])
    if end <= start:
        raise CalendarSyntaxError(
            f"invalid interval {text!r}: the end must be after the start "
            "(intervals cannot cross midnight; split them at 24:00)"
        )
    return Interval(start, end, label)


def parse_days(spec: str) -> tuple[int, ...]:
    """Parse a day spec like ``mon-fri``, ``sat``, ``mon,wed,fri`` or ``daily``.

    Args:
        spec: The day specification.

    Returns:
        Sorted weekday numbers (Monday is 0).

    Raises:
        CalendarSyntaxError: On unknown day names or reversed ranges.
    """
    if spec.strip() == "daily":
        return tuple(range(7))
    days: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            first, _, last = part.partition("-")
            a, b = _day(first, spec), _day(last, spec)
            if b < a:
                raise CalendarSyntaxError(
                    f"invalid days {spec!r}: {first}-{last} runs backwards (write e.g. mon-fri)"
                )
            days.update(range(a, b + 1))
        else:
            days.add(_day(part, spec))
    return tuple(sorted(days))


def _day(name: str, spec: str) -> int:
    try:
        return WEEKDAYS.index(name.strip().lower())
    except ValueError:
        raise CalendarSyntaxError(
            f"invalid days {spec!r}: unknown day {name!r} (use {', '.join(WEEKDAYS)} or daily)"
        ) from None


def parse_date(text: str) -> date:
    """Parse an ISO date ``YYYY-MM-DD``.

    Args:
        text: The date string.

    Returns:
        The date.

    Raises:
        CalendarSyntaxError: If malformed.
    """
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CalendarSyntaxError(f"invalid date {text!r}: expected YYYY-MM-DD") from None


def parse_date_range(text: str) -> tuple[date, date]:
    """Parse ``YYYY-MM-DD`` or an inclusive range ``YYYY-MM-DD..YYYY-MM-DD``.

    Args:
        text: The date or range.

    Returns:
        First and last date (inclusive).

    Raises:
        CalendarSyntaxError: If malformed or reversed.
    """
    first, sep, last = text.partition("..")
    start = parse_date(first)
    end = parse_date(last) if sep else start
    if end < start:
        raise CalendarSyntaxError(f"invalid date range {text!r}: the end is before the start")
    return start, end


def is_yearly(text: str) -> bool:
    """Whether a ``closed`` entry or ``open`` key is yearly (``MM-DD`` or ``MM-DD..MM-DD``).

    Args:
        text: The entry as written.

    Returns:
        True when its first part has the yearly shape ``MM-DD``.
    """
    return bool(_YEARLY_RE.match(text.partition("..")[0].strip()))


def parse_month_day(text: str) -> MonthDay:
    """Parse a yearly date ``MM-DD``.

    Args:
        text: The yearly date.

    Returns:
        ``(month, day)``.

    Raises:
        CalendarSyntaxError: If malformed or no such day in any year (``02-30``).
    """
    text = text.strip()
    if not _YEARLY_RE.match(text):
        raise CalendarSyntaxError(
            f"invalid yearly date {text!r}: expected MM-DD (or YYYY-MM-DD for one year)"
        )
    month, day = int(text[:2]), int(text[3:])
    try:
        date(_LEAP_YEAR, month, day)
    except ValueError:
        raise CalendarSyntaxError(
            f"invalid yearly date {text!r}: no such day (month 01-12, day within the month)"
        ) from None
    return month, day


def parse_yearly_range(text: str) -> tuple[MonthDay, ...]:
    """Parse ``MM-DD`` or an inclusive yearly range ``MM-DD..MM-DD``.

    A range whose end comes before its start runs over the end of the year:
    ``12-31..01-01`` is 31 December and 1 January. Mixing a dated and a yearly
    end (``2026-12-24..12-31``) is an error.

    Args:
        text: The yearly date or range.

    Returns:
        Every (month, day) the entry covers, in order from its start
        (``02-29`` included when the range spans it).

    Raises:
        CalendarSyntaxError: If malformed.
    """
    first, sep, last = text.partition("..")
    if sep and not _YEARLY_RE.match(last.strip()):
        raise CalendarSyntaxError(
            f"invalid yearly range {text!r}: both ends must be MM-DD "
            "(or both YYYY-MM-DD for a range in one year)"
        )
    start = parse_month_day(first)
    end = parse_month_day(last) if sep else start
    day = date(_LEAP_YEAR, *start)
    stop = date(_LEAP_YEAR + (1 if end < start else 0), *end)
    covered: list[MonthDay] = []
    while day <= stop:
        covered.append((day.month, day.day))
        day += timedelta(days=1)
    return tuple(covered)


def subtract(intervals: tuple[Interval, ...], cut: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """The parts of ``intervals`` outside every interval of ``cut``.

    Args:
        intervals: Sorted, non-overlapping open intervals.
        cut: Intervals to remove (any order, may overlap).

    Returns:
        What is left, sorted, each piece keeping its interval's label.
    """
    left = list(intervals)
    for c in cut:
        nxt: list[Interval] = []
        for i in left:
            if not i.overlaps(c):
                nxt.append(i)
                continue
            if i.start < c.start:
                nxt.append(Interval(i.start, c.start, i.label))
            if c.end < i.end:
                nxt.append(Interval(c.end, i.end, i.label))
        left = nxt
    return tuple(sorted(left, key=lambda x: x.start))


@dataclass(frozen=True, slots=True)
class DayState:
    """Whether a calendar is open at an instant, and why.

    Attributes:
        is_open: Open at that instant.
        reason: One human-readable sentence.
        holiday: The holiday name when a holiday closed the day.
    """

    is_open: bool
    reason: str
    holiday: str = ""


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of local time with one state, for the ``calendar`` command.

    Attributes:
        day: The local date.
        start: Local start (seconds after midnight).
        end: Local end (seconds after midnight, exclusive).
        is_open: Open or closed.
        why: Why (``mon-fri``, ``holiday: Neujahr``, ``extra closed date``, ...).
    """

    day: date
    start: int
    end: int
    is_open: bool
    why: str


@dataclass(slots=True)
class Calendar:
    """A compiled opening-hours calendar.

    Attributes:
        name: The calendar's key in the rules.
        weekly: For each weekday (Monday first), its open intervals, sorted.
        closed_dates: Extra closed dates with their reason.
        special_open: Dates with special opening intervals (replace everything else).
        yearly_closed: (month, day) closed every year, with the reason.
        yearly_open: (month, day) with special opening intervals every year.
        closed_hours: Dates with closed intervals (timed closures from an
            iCalendar file), cut out of the day's opening hours, with the reason.
        holiday_country: ISO country for public holidays, or ``""`` for none.
        holiday_subdivision: Subdivision (``NI`` for Lower Saxony), or ``""``.
    """

    name: str
    weekly: tuple[tuple[Interval, ...], ...]
    closed_dates: Mapping[date, str] = field(default_factory=dict)
    special_open: Mapping[date, tuple[Interval, ...]] = field(default_factory=dict)
    yearly_closed: Mapping[MonthDay, str] = field(default_factory=dict)
    yearly_open: Mapping[MonthDay, tuple[Interval, ...]] = field(default_factory=dict)
    closed_hours: Mapping[date, tuple[tuple[Interval, ...], str]] = field(default_factory=dict)
    holiday_country: str = ""
    holiday_subdivision: str = ""
    _holiday_years: dict[int, dict[date, str]] = field(default_factory=dict, repr=False)

    def holiday(self, day: date) -> str:
        """The public holiday's name on ``day``, or ``""``.

        Holidays are computed once per year and kept: pure computation, no I/O,
        so routing stays deterministic while the hot path does a dict lookup.

        Args:
            day: A local date.

        Returns:
            The German name of the holiday, or ``""``.
        """
        if not self.holiday_country:
            return ""
        year = self._holiday_years.get(day.year)
        if year is None:
            year = holidays_for_year(self.holiday_country, self.holiday_subdivision, day.year)
            self._holiday_years[day.year] = year
        return year.get(day, "")

    def state_on(self, day: date) -> tuple[tuple[Interval, ...], str, str]:
        """The open intervals of a local date and the rule that set them.

        Args:
            day: A local date.

        Returns:
            ``(intervals, why, holiday)``: the open intervals (empty when closed
            all day), which rule decided, and the holiday name if any.
        """
        special = self.special_open.get(day)
        if special is not None:
            return special, f"special opening {day.isoformat()}", ""
        closed = self.closed_dates.get(day)
        if closed is not None:
            return (), closed, ""
        intervals, why, name = self._undated_state(day)
        cut = self.closed_hours.get(day)
        if cut is not None and intervals:
            left = subtract(intervals, cut[0])
            if left != intervals:
                return left, cut[1] if not left else why, name
        return intervals, why, name

    def regular_state(self, day: date) -> tuple[tuple[Interval, ...], str, str]:
        """The state of a day as it would be without any special opening.

        For ``pbxbridge check``: a special opening on a day that is open anyway
        is probably meant for another day.

        Args:
            day: A local date.

        Returns:
            ``(intervals, why, holiday)`` as :meth:`state_on` gives them, with
            dated and yearly special openings left out.
        """
        closed = self.closed_dates.get(day)
        if closed is not None:
            return (), closed, ""
        closed = self.yearly_closed.get((day.month, day.day))
        if closed is not None:
            return (), closed, ""
        return self._weekly_state(day)

    def _undated_state(self, day: date) -> tuple[tuple[Interval, ...], str, str]:
        """Steps 3-6 of the precedence: yearly entries, holidays, weekly hours."""
        if self.yearly_open or self.yearly_closed:
            month_day = (day.month, day.day)
            yearly = self.yearly_open.get(month_day)
            if yearly is not None:
                return yearly, f"yearly special opening {day.month:02d}-{day.day:02d}", ""
            closed = self.yearly_closed.get(month_day)
            if closed is not None:
                return (), closed, ""
        return self._weekly_state(day)

    def _weekly_state(self, day: date) -> tuple[tuple[Interval, ...], str, str]:
        """The last steps of the precedence: a public holiday, else the weekly hours."""
        name = self.holiday(day)
        if name:
            return (), f"holiday: {name}", name
        weekday = day.weekday()
        return self.weekly[weekday], WEEKDAYS[weekday], ""

    def state_at(self, local: datetime) -> DayState:
        """Open or closed at a local wall-clock time, with a reason.

        Args:
            local: A datetime in the calendar's time zone.

        Returns:
            The state and one sentence explaining it.
        """
        local = normalise(local)
        day = local.date()
        second = local.hour * 3600 + local.minute * 60 + local.second
        intervals, why, holiday = self.state_on(day)
        stamp = format_local(local)
        if not intervals:
            if why in WEEKDAYS:
                why = f"{why}: no opening hours"
            return DayState(False, f"{stamp}: closed all day ({why})", holiday)
        for interval in intervals:
            if interval.contains(second):
                return DayState(True, f"{stamp} inside {interval.label} {interval.text}")
        hours = ", ".join(i.text for i in intervals)
        cut = self.closed_hours.get(day)
        closure = next((c for c in cut[0] if c.contains(second)), None) if cut else None
        if closure is not None:
            return DayState(
                False, f"{stamp} inside closure {closure.label} {closure.text} (open {hours})"
            )
        return DayState(False, f"{stamp} outside {intervals[0].label} {hours}")

    def periods(self, first: date, last: date) -> Iterator[Period]:
        """Yield the open and closed periods of each date in ``[first, last]``.

        Args:
            first: First local date.
            last: Last local date (inclusive).

        Yields:
            Periods in order, covering each whole day.
        """
        day = first
        while day <= last:
            intervals, why, _ = self.state_on(day)
            cursor = 0
            for interval in intervals:
                if interval.start > cursor:
                    yield Period(day, cursor, interval.start, False, "outside hours")
                label = interval.label if why in WEEKDAYS else why
                yield Period(day, interval.start, interval.end, True, label)
                cursor = interval.end
            if cursor < 86400:
                closed_why = f"{why}: no opening hours" if why in WEEKDAYS else why
                yield Period(
                    day, cursor, 86400, False, closed_why if not intervals else "outside hours"
                )
            day += timedelta(days=1)

    def end_of_working_day(self, after: date, days: int, tz: ZoneInfo) -> datetime:
        """The close of the ``days``-th working day after ``after``.

        Used for callback deadlines ("by the end of the next working day").

        Args:
            after: The local date the count starts from (not counted itself).
            days: How many working days ahead (1 = next working day).
            tz: The calendar's time zone.

        Returns:
            The aware local datetime at which that working day's last interval ends.

        Raises:
            ValueError: If no working day is found within two years.
        """
        day = after
        remaining = days
        for _ in range(731):
            day += timedelta(days=1)
            intervals = self.state_on(day)[0]
            if intervals:
                remaining -= 1
                if remaining <= 0:
                    end = intervals[-1].end
                    if end >= 86400:
                        return datetime.combine(day + timedelta(days=1), time(0), tz)
                    return datetime.combine(day, time(end // 3600, end % 3600 // 60), tz)
        raise ValueError(f"calendar {self.name} has no working day within two years")


def holidays_for_year(country: str, subdivision: str, year: int) -> dict[date, str]:
    """Public holidays of one year, with German names where available.

    Args:
        country: ISO 3166 country code (``DE``).
        subdivision: Subdivision code (``NI``), or ``""``.
        year: The year.

    Returns:
        Date to holiday name.
    """
    subdiv = subdivision or None
    try:
        table = holidays_lib.country_holidays(country, subdiv=subdiv, years=year, language="de")
    except NotImplementedError:  # no German names for this country: use its default
        table = holidays_lib.country_holidays(country, subdiv=subdiv, years=year)
    return {d: str(n) for d, n in table.items()}


def normalise(local: datetime) -> datetime:
    """The wall-clock reading of an aware datetime's instant, through UTC.

    ``astimezone`` into a datetime's own zone returns it unchanged, so a time
    in the hour skipped in spring (``2026-03-29 02:30`` Europe/Berlin) would
    be read literally; its instant is ``01:30 UTC``, i.e. ``03:30 CEST``.
    Going through UTC gives one instant one reading however it was written.

    Args:
        local: An aware datetime (a naive one is returned unchanged).

    Returns:
        The same instant in the same zone, as its clock shows it.
    """
    if local.tzinfo is None:
        return local
    return local.astimezone(UTC).astimezone(local.tzinfo)


def resolve_wall_clock(naive: datetime, tz: ZoneInfo) -> tuple[datetime, str]:
    """Read a wall-clock time written without an offset as one instant in ``tz``.

    zoneinfo's ``fold=0`` decides, as PEP 495 defines it: a time that occurs
    twice (the hour before the switch to winter time) is the first one, a time
    that does not exist (the hour skipped in spring) is read with the offset
    before the switch, i.e. as the time that far after it (``02:30`` → ``03:30
    CEST``); the result is normalised through UTC (see :func:`normalise`).

    Args:
        naive: The wall-clock time (its ``tzinfo`` is ignored).
        tz: The rules' time zone.

    Returns:
        The aware, normalised datetime and a sentence for the operator when the
        wall-clock time was ambiguous or did not exist (else ``""``).
    """
    naive = naive.replace(tzinfo=None)
    first = naive.replace(tzinfo=tz, fold=0)
    resolved = normalise(first)
    written = f"{naive:%Y-%m-%d %H:%M}" + (f":{naive.second:02d}" if naive.second else "")
    if resolved.replace(tzinfo=None) != naive:
        return resolved, (
            f"{written} does not exist in {tz.key} (clocks skip that hour): "
            f"read as {format_local(resolved)} ({resolved.astimezone(UTC):%H:%M} UTC)"
        )
    if first.utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset():
        return resolved, (
            f"{written} occurs twice in {tz.key}: the first is taken, "
            f"{format_local(resolved)} ({resolved.astimezone(UTC):%H:%M} UTC)"
        )
    return resolved, ""


def format_local(local: datetime) -> str:
    """Format a local datetime for traces: ``Wed 25.11.2026 10:00 CET``.

    Args:
        local: An aware local datetime.

    Returns:
        The formatted stamp (seconds shown only when not zero).
    """
    # f-string instead of strftime: this runs on every routing decision.
    seconds = f":{local.second:02d}" if local.second else ""
    return (
        f"{_WEEKDAY_TITLES[local.weekday()]} {local.day:02d}.{local.month:02d}.{local.year} "
        f"{local.hour:02d}:{local.minute:02d}{seconds} {local.tzname()}"
    )


_WEEKDAY_TITLES = tuple(d.capitalize() for d in WEEKDAYS)
