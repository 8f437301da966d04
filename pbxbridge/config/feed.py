"""A tenant's opening hours, holidays and closures as an iCalendar feed.

Staff and partner municipalities subscribe to it in Outlook or Thunderbird
(``pbxbridge calendar --format ics`` or ``GET /calendar/{tenant}.ics``). Each
open stretch of a day is one event ("Geöffnet"), each day closed by something
other than the weekly hours (a public holiday, a closed date, a yearly closure,
an imported closure) one all-day event ("Geschlossen"). Days the weekly hours
leave closed (weekends) get none: they are the rule, not news.

No personal data: a closure's title comes from the rules' kind of entry or the
public holiday's name, never from an imported event's title (a staff calendar
may say whose leave closes the office); numbers, queues and mailboxes are not
in it either.

Clients update events by UID: a UID is made from the calendar, the date, the
kind and the start, so an unchanged day keeps its UID and its event across
refreshes, and a changed one replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar

from pbxbridge.config.vtimezone import transitions, vtimezone
from pbxbridge.core.calendar import WEEKDAYS, Calendar
from pbxbridge.core.rules import Rules

MAX_FEED_DAYS = 731
"""A feed covers at most two years (as ``pbxbridge calendar`` lists)."""
FEED_DAYS_BACK = 30
FEED_DAYS_AHEAD = 400
"""The HTTP feed's default window around today."""
CONTENT_TYPE = "text/calendar; charset=utf-8"


class FeedError(ValueError):
    """An unknown tenant or calendar, or a window that is too long."""


def feed_calendar(rules: Rules, name: str) -> tuple[Calendar, str]:
    """The calendar a feed is for, and the feed's title.

    Args:
        rules: The rules in force.
        name: A tenant key or, failing that, a calendar key.

    Returns:
        The calendar and a display name (the tenant's name, or the calendar key).

    Raises:
        FeedError: If neither exists.
    """
    tenant = rules.tenants.get(name)
    if tenant is not None:
        return tenant.calendar, tenant.name
    cal = rules.calendars.get(name)
    if cal is not None:
        return cal, name
    raise FeedError(f"unknown tenant or calendar {name!r}")


def default_window(today: date) -> tuple[date, date]:
    """The HTTP feed's window: a month back (for a look at last week) to a year ahead."""
    return today - timedelta(days=FEED_DAYS_BACK), today + timedelta(days=FEED_DAYS_AHEAD)


def build_feed(rules: Rules, name: str, first: date, last: date, *, stamp: datetime) -> bytes:
    """The iCalendar feed of a tenant (or calendar) for local days ``first`` to ``last``.

    Args:
        rules: The rules in force.
        name: Tenant key (or calendar key).
        first: First local date.
        last: Last local date (inclusive).
        stamp: DTSTAMP of every event (aware): when the feed was made.

    Returns:
        The feed, UTF-8, CRLF line ends as RFC 5545 wants.

    Raises:
        FeedError: For an unknown name or a window longer than two years or reversed.
    """
    cal, title = feed_calendar(rules, name)
    if last < first:
        raise FeedError("the end is before the start")
    if (last - first).days > MAX_FEED_DAYS:
        raise FeedError("at most two years at a time")
    tz = rules.timezone
    out = icalendar.Calendar()
    out.add("prodid", "-//pbxbridge//Öffnungszeiten//DE")
    out.add("version", "2.0")
    out.add("calscale", "GREGORIAN")
    out.add("method", "PUBLISH")
    out.add("x-wr-calname", f"Öffnungszeiten {title}")
    out.add("x-wr-timezone", tz.key)
    out.add("refresh-interval", timedelta(hours=6), parameters={"VALUE": "DURATION"})
    out.add("x-published-ttl", "PT6H")
    # Our own VTIMEZONE: icalendar's from_tzinfo puts the spring switch at 03:00
    # instead of 02:00 (see pbxbridge/config/vtimezone.py). Whole years, so that every
    # observance the window touches is there.
    out.add_component(vtimezone(tz, first, last))
    for event in _events(cal, tz, first, last, stamp):
        out.add_component(event)
    return bytes(out.to_ical())


def _events(
    cal: Calendar, tz: ZoneInfo, first: date, last: date, stamp: datetime
) -> Iterable[icalendar.Event]:
    day = first
    while day <= last:
        intervals, why, holiday = cal.state_on(day)
        for interval in intervals:
            start = _at(day, interval.start, tz)
            end = _at(day, interval.end, tz)
            yield _event(
                f"{cal.name}-{day:%Y%m%d}-open-{interval.start // 60:04d}",
                "Geöffnet",
                start,
                end,
                stamp,
            )
        if not intervals and why not in WEEKDAYS:
            yield _event(
                f"{cal.name}-{day:%Y%m%d}-closed",
                f"Geschlossen: {holiday}" if holiday else f"Geschlossen ({_kind(why)})",
                day,
                day + timedelta(days=1),
                stamp,
            )
        day += timedelta(days=1)


def _kind(why: str) -> str:
    """A closure's kind in German, without an imported event's title."""
    if why.startswith("yearly closed"):
        return "jährlicher Schließtag"
    if why.startswith("extra closed"):
        return "Schließtag"
    return "Schließung"


def _at(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """The instant a day's wall-clock time is first reached.

    Hours are wall-clock times (the routing core compares the local clock), so
    a time the spring switch skips (02:30 on the last Sunday of March in
    Berlin) is reached at the switch itself (03:00 CEST). Written as the
    skipped time, RFC 5545 would read it with the winter offset (03:30 CEST).
    """
    if seconds >= 86400:
        return datetime.combine(day + timedelta(days=1), time(0), tz)
    local = datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60), tz)
    if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None):
        return local
    # In a gap: fold=1 reads it with the offset after the switch, fold=0 with the
    # one before; the switch lies between the two instants.
    early = local.replace(fold=1).astimezone(UTC)
    late = local.replace(fold=0).astimezone(UTC)
    switch = transitions(tz, early, late + timedelta(seconds=1))
    return switch[0].at.astimezone(tz) if switch else local


def _event(
    uid: str, summary: str, start: date | datetime, end: date | datetime, stamp: datetime
) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", f"{uid}@pbxbridge")
    event.add("dtstamp", stamp)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", summary)
    event.add("transp", "TRANSPARENT")  # never blocks a subscriber's free/busy time
    event.add("class", "PUBLIC")
    return event
