"""iCalendar (RFC 5545) files as closures: what an ``.ics`` file says is closed.

An operator keeps closures in the calendar the office already uses (Outlook,
Google, a Land's holiday feed) and either imports them into the rules
(``pbxbridge calendar --import``) or names the file in a calendar
(``ics: closures.ics``). Every event of the file is a closure: the file is
chosen for that. Parsing is left to ``icalendar`` and recurrence (``RRULE``,
``RDATE``, ``EXDATE``, ``RECURRENCE-ID``) to ``recurring-ical-events``; this
module only adds line numbers to their complaints and turns event instances
into local days and hours of the rules' time zone.

All-day events (``VALUE=DATE``) close whole days, ``DTEND`` exclusive as the
RFC says. Timed events close the part of each local day they cover; one that
covers a whole local day closes it. Events with ``STATUS:CANCELLED`` close
nothing. Floating times (no zone) are read in the rules' time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

MAX_ICS_BYTES = 8 * 1024 * 1024
"""Larger files are refused before parsing (a decade of a Land's holidays is ~100 kB)."""
MAX_INSTANCES = 20_000
"""Refuse files that expand to more event instances than this in the window."""

_NAME_RE = re.compile(r"^[A-Za-z0-9-]+(?=[;:])")
_NEEDED = frozenset(
    ("DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID", "STATUS", "UID")
)
"""Properties whose faults change the closures; a fault elsewhere is ignored."""


class IcsError(ValueError):
    """An iCalendar file that cannot be read; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True, slots=True)
class Closure:
    """A closed stretch of one local day.

    Attributes:
        day: The local date.
        start: Seconds after local midnight, inclusive.
        end: Seconds after local midnight, exclusive (86400 for the day's end).
        summary: The event's SUMMARY (its title), for the import's YAML
            comments only: free text, so never in routing reasons or the feed.
    """

    day: date
    start: int
    end: int
    summary: str

    @property
    def all_day(self) -> bool:
        """Whether it closes the whole day."""
        return self.start == 0 and self.end >= 86400


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    text: str


def _content_lines(text: str) -> list[_Line]:
    """Unfold content lines (RFC 5545 3.1), each with the line it starts on."""
    lines: list[_Line] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if raw[:1] in (" ", "\t") and lines:
            last = lines[-1]
            lines[-1] = _Line(last.number, last.text + raw[1:])
        elif raw.strip():
            lines.append(_Line(number, raw))
    return lines


def _check_structure(lines: list[_Line]) -> list[int]:
    """Line-level faults and the BEGIN line of every VEVENT, in document order.

    ``icalendar`` reports a malformed line or an unbalanced ``BEGIN``/``END``
    without saying where; the operator needs the line.
    """
    stack: list[tuple[str, int]] = []
    events: list[int] = []
    if not lines or lines[0].text.strip().upper() != "BEGIN:VCALENDAR":
        first = lines[0].number if lines else 1
        raise IcsError(first, "not an iCalendar file: it must start with BEGIN:VCALENDAR")
    for line in lines:
        if not _NAME_RE.match(line.text):
            raise IcsError(
                line.number,
                f"not an iCalendar content line: {line.text[:60]!r} (expected NAME:value)",
            )
        name, _, value = line.text.partition(":")
        key = name.split(";", 1)[0].upper()
        if key == "BEGIN":
            stack.append((value.strip().upper(), line.number))
            if value.strip().upper() == "VEVENT":
                events.append(line.number)
        elif key == "END":
            what = value.strip().upper()
            if not stack:
                raise IcsError(line.number, f"END:{what} without a BEGIN")
            opened, at = stack.pop()
            if opened != what:
                raise IcsError(
                    line.number,
                    f"END:{what} closes BEGIN:{opened} of line {at}; END:{opened} missing",
                )
            if not stack and line is not lines[-1]:
                raise IcsError(line.number + 1, "text after END:VCALENDAR")
    if stack:
        opened, at = stack[-1]
        raise IcsError(at, f"BEGIN:{opened} is never closed (END:{opened} missing)")
    return events


def _property_line(lines: list[_Line], begin: int, prop: str | None) -> int:
    """The line of ``prop`` in the component starting at line ``begin``."""
    if not prop:
        return begin
    inside = False
    for line in lines:
        if line.number == begin:
            inside = True
        elif inside:
            if line.text.upper().startswith("END:VEVENT"):
                break
            if line.text.upper().startswith((prop.upper() + ":", prop.upper() + ";")):
                return line.number
    return begin


def parse_ics(raw: bytes | str) -> icalendar.Calendar:
    """Parse and check an iCalendar file, with the line of the first fault.

    Args:
        raw: The file's content.

    Returns:
        The parsed calendar; every VEVENT has a valid DTSTART and no broken property.

    Raises:
        IcsError: With the line and what is wrong.
    """
    if len(raw) > MAX_ICS_BYTES:
        raise IcsError(0, f"file too large ({len(raw)} bytes, at most {MAX_ICS_BYTES})")
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise IcsError(raw[: exc.start].count(b"\n") + 1, "not valid UTF-8") from None
    else:
        text = raw
    lines = _content_lines(text)
    begins = _check_structure(lines)
    try:
        cal = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise IcsError(0, f"cannot read the calendar: {exc}") from None
    events: list[Any] = list(cal.walk("VEVENT"))
    for event, begin in zip(events, begins, strict=False):
        for prop, message in event.errors:
            if prop is not None and prop.upper() not in _NEEDED:
                continue  # a broken CREATED or X-... changes no closure
            raise IcsError(
                _property_line(lines, begin, prop),
                f"{prop or 'content line'}: {message}",
            )
        if "DTSTART" not in event:
            raise IcsError(begin, "VEVENT without DTSTART")
        start = event["DTSTART"].dt
        end = event.get("DTEND")
        if end is not None and isinstance(start, datetime) != isinstance(end.dt, datetime):
            raise IcsError(
                _property_line(lines, begin, "DTEND"),
                "DTEND: a date where DTSTART has a time, or the other way round",
            )
        try:
            backwards = end is not None and end.dt < start
        except TypeError:  # one has a time zone, the other is floating
            raise IcsError(
                _property_line(lines, begin, "DTEND"),
                "DTEND: with a time zone where DTSTART has none, or the other way round",
            ) from None
        if backwards:
            raise IcsError(_property_line(lines, begin, "DTEND"), "DTEND: before DTSTART")
    return cal


def closures(
    raw: bytes | str | icalendar.Calendar,
    *,
    tz: ZoneInfo,
    first: date,
    last: date,
    skip_uids: frozenset[str] = frozenset(),
) -> tuple[Closure, ...]:
    """The closures an iCalendar file implies for local days ``first`` to ``last``.

    Args:
        raw: The file's content (or a calendar :func:`parse_ics` returned).
        tz: The rules' time zone (timed events are read in it; floating times too).
        first: First local date of the window.
        last: Last local date of the window (inclusive).
        skip_uids: Events (series) to leave out, e.g. those imported as yearly entries.

    Returns:
        Closures sorted by day and start; whole days merged per day.

    Raises:
        IcsError: If the file cannot be read or expanded.
    """
    cal = raw if isinstance(raw, icalendar.Calendar) else parse_ics(raw)
    try:
        query = recurring_ical_events.of(cal, skip_bad_series=False)
        instances: Iterable[Any] = query.between(first, last + timedelta(days=1))
        found: list[Closure] = []
        for count, event in enumerate(instances, 1):
            if count > MAX_INSTANCES:
                raise IcsError(0, f"more than {MAX_INSTANCES} events between {first} and {last}")
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            if skip_uids and str(event.get("UID", "")) in skip_uids:
                continue
            summary = str(event.get("SUMMARY", "")).strip() or "closed"
            found.extend(_instance_closures(event, tz, summary, first, last))
    except IcsError:
        raise
    except Exception as exc:  # the recurrence library raises many kinds
        raise IcsError(0, f"cannot expand the events: {type(exc).__name__}: {exc}") from None
    return _merge(found)


def _instance_closures(
    event: Any, tz: ZoneInfo, summary: str, first: date, last: date
) -> Iterator[Closure]:
    start = event["DTSTART"].dt
    end_prop = event.get("DTEND")
    if not isinstance(start, datetime):
        end_day = end_prop.dt if end_prop is not None else start + timedelta(days=1)
        if "DURATION" in event and end_prop is None:
            end_day = start + event["DURATION"].dt
        day = start
        while day < max(end_day, start + timedelta(days=1)):
            if first <= day <= last:
                yield Closure(day, 0, 86400, summary)
            day += timedelta(days=1)
        return
    end = end_prop.dt if end_prop is not None else None
    if end is None:
        end = start + (event["DURATION"].dt if "DURATION" in event else timedelta())
    local_start, local_end = _local(start, tz), _local(end, tz)
    day = local_start.date()
    while True:
        day_start = datetime.combine(day, time(0))
        next_day = day_start + timedelta(days=1)
        s = max(local_start, day_start)
        e = min(local_end, next_day)
        if e > s and first <= day <= last:
            yield Closure(
                day,
                int((s - day_start).total_seconds()),
                int((e - day_start).total_seconds()),
                summary,
            )
        if local_end <= next_day:
            return
        day += timedelta(days=1)


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall-clock time in ``tz`` (floating times are taken as they are)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(tz).replace(tzinfo=None)


def _merge(found: list[Closure]) -> tuple[Closure, ...]:
    whole = {c.day: c for c in found if c.all_day}
    kept: dict[tuple[date, int, int], Closure] = {}
    for c in found:
        if c.all_day:
            kept.setdefault((c.day, 0, 86400), whole[c.day])
        elif c.day not in whole:
            kept.setdefault((c.day, c.start, c.end), c)
    return tuple(sorted(kept.values(), key=lambda c: (c.day, c.start, c.end)))


@dataclass(frozen=True, slots=True)
class YearlySeries:
    """An all-day event that repeats on the same date every year, without end.

    Such a series becomes one yearly entry (``MM-DD`` or ``MM-DD..MM-DD``) on
    import, instead of one dated entry per year that needs re-entering.

    Attributes:
        uid: The series' UID.
        first: The first day of the first occurrence.
        days: How many days each occurrence lasts.
        summary: The event's title.
    """

    uid: str
    first: date
    days: int
    summary: str

    @property
    def entry(self) -> str:
        """The yearly entry: ``MM-DD`` or ``MM-DD..MM-DD``."""
        start = f"{self.first:%m-%d}"
        if self.days == 1:
            return start
        return f"{start}..{self.first + timedelta(days=self.days - 1):%m-%d}"


def yearly_series(cal: icalendar.Calendar, *, since: date) -> tuple[YearlySeries, ...]:
    """The all-day series that are exactly "every year on this date, for ever".

    Only series that have begun by their next occurrence on or after ``since``
    count: a yearly entry for a series that starts in a later year would close
    the days before it too.

    A series with an end (``COUNT``, ``UNTIL``), exceptions (``EXDATE``,
    ``RDATE``, a ``RECURRENCE-ID`` instance) or any rule part beyond the date
    itself is not one: its instances are imported one by one. A series that
    starts on 29 February is not one either (it would close nothing in three
    of four years, or a different day, depending on the program that wrote it).

    Args:
        cal: A calendar from :func:`parse_ics`.
        since: The first day the entries matter (the import window's start).

    Returns:
        The series, in file order.
    """
    events: list[Any] = list(cal.walk("VEVENT"))
    moved = {str(e.get("UID", "")) for e in events if "RECURRENCE-ID" in e}
    found: list[YearlySeries] = []
    for e in events:
        rule = e.get("RRULE")
        start = e["DTSTART"].dt
        if rule is None or isinstance(start, datetime) or "RECURRENCE-ID" in e:
            continue
        if str(e.get("STATUS", "")).upper() == "CANCELLED":
            continue
        uid = str(e.get("UID", ""))
        parts = {k.upper(): v for k, v in dict(rule).items()}
        if parts.pop("FREQ", None) != ["YEARLY"] or uid in moved or not uid:
            continue
        if "EXDATE" in e or "RDATE" in e or (start.month, start.day) == (2, 29):
            continue
        if parts.pop("INTERVAL", [1]) != [1]:
            continue
        if [int(m) for m in parts.pop("BYMONTH", [start.month])] != [start.month]:
            continue
        if [int(d) for d in parts.pop("BYMONTHDAY", [start.day])] != [start.day]:
            continue
        if parts:  # COUNT, UNTIL, BYDAY, ...
            continue
        end = e.get("DTEND")
        days = (end.dt - start).days if end is not None else 1
        if not 1 <= days <= 31:
            continue
        upcoming = start.replace(year=since.year)
        if upcoming < since:
            upcoming = upcoming.replace(year=since.year + 1)
        if start > upcoming:
            continue  # begins in a later year
        summary = str(e.get("SUMMARY", "")).strip() or "closed"
        found.append(YearlySeries(uid, start, days, summary))
    return tuple(found)
