"""The calendar feed's VTIMEZONE (pbxbridge.config.vtimezone) and switch-day times.

RFC 5545 3.6.5: an observance's DTSTART is local time in its TZOFFSETFROM.
Europe/Berlin switches at 01:00 UTC: 02:00 CET → 03:00 CEST on the last Sunday
of March, 03:00 CEST → 02:00 CET on the last Sunday of October. The expected
instants below are those of the EU rule, written out, and the zone database
(zoneinfo) is the oracle for the other zones.
"""

from __future__ import annotations

import bisect
import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events

from pbxbridge.config import parse_rules
from pbxbridge.config.feed import build_feed
from pbxbridge.config.vtimezone import vtimezone

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
H = timedelta(hours=1)
STAMP = datetime(2027, 1, 1, tzinfo=UTC)
_names = itertools.count()


def feed(
    openings: str = "{}", first: date = date(2026, 12, 1), last: date = date(2027, 12, 31)
) -> bytes:
    text = EXAMPLE.read_text(encoding="utf-8")
    marker = "    open: {}                                     #"
    assert text.count(marker) == 1  # the servicecenter calendar's special openings
    rules, _ = parse_rules(text.replace(marker, f"    open: {openings}  #"), "routing.yaml")
    return build_feed(rules, "wardenburg", first, last, stamp=STAMP)


def observances(raw: bytes) -> dict[tuple[str, timedelta], Any]:
    """The VTIMEZONE's observances by kind and TZOFFSETFROM (Any: icalendar's
    property values are a union mypy cannot narrow by name)."""
    (tz,) = icalendar.Calendar.from_ical(raw).walk("VTIMEZONE")
    found: dict[tuple[str, timedelta], Any] = {}
    for sub in tz.subcomponents:
        c: Any = sub
        found[(str(c.name), c["TZOFFSETFROM"].td)] = c
    return found


def embedded(raw: bytes) -> bytes:
    """The feed as a client without a zone database reads it: by its VTIMEZONE only.

    The TZID is renamed to one no library knows (a fresh one each time: parsed zones
    are cached by TZID) and X-WR-TIMEZONE dropped, so the VTIMEZONE is all there is.
    """
    name = f"Test/Embedded-{next(_names)}".encode()
    lines = [line for line in raw.split(b"\r\n") if not line.startswith(b"X-WR-TIMEZONE")]
    return b"\r\n".join(lines).replace(b"Europe/Berlin", name)


class TestBerlin:
    def test_summer_time_starts_at_two_and_ends_at_three(self) -> None:
        obs = observances(feed())
        spring = obs[("DAYLIGHT", H)]
        assert spring["DTSTART"].dt == datetime(2026, 3, 29, 2, 0)  # local, in CET
        assert spring["TZOFFSETTO"].td == 2 * H
        assert spring["RRULE"]["FREQ"] == ["YEARLY"]
        assert spring["RRULE"]["BYMONTH"] == [3]
        assert spring["RRULE"]["BYDAY"] == ["-1SU"]
        autumn = obs[("STANDARD", 2 * H)]
        assert autumn["DTSTART"].dt == datetime(2026, 10, 25, 3, 0)  # local, in CEST
        assert autumn["TZOFFSETTO"].td == H
        assert autumn["RRULE"]["BYMONTH"] == [10]
        assert autumn["RRULE"]["BYDAY"] == ["-1SU"]

    def test_the_switches_are_at_one_utc(self) -> None:
        (tz,) = icalendar.Calendar.from_ical(feed()).timezones
        times, infos = tz.get_transitions()  # icalendar's reading of the VTIMEZONE
        switches = [(t, info[0]) for t, info in zip(times, infos, strict=True)][1:]
        assert switches == [
            (datetime(2026, 3, 29, 1), 2 * H),
            (datetime(2026, 10, 25, 1), H),
            (datetime(2027, 3, 28, 1), 2 * H),
            (datetime(2027, 10, 31, 1), H),
        ]

    def test_a_client_without_the_zone_database_gets_every_offset_right(self) -> None:
        # dateutil's reading of the VTIMEZONE alone (icalendar uses it for an unknown
        # TZID): every quarter hour of both years has the zone database's offset. With
        # the spring onset at 03:00 the hour 01:00-02:00 UTC was still CET.
        (vtz,) = icalendar.Calendar.from_ical(embedded(feed())).timezones
        tz, berlin = vtz.to_tz(), ZoneInfo("Europe/Berlin")
        at = datetime(2026, 1, 1, tzinfo=UTC)
        wrong = []
        while at < datetime(2027, 12, 31, 23, tzinfo=UTC):
            if at.astimezone(tz).utcoffset() != at.astimezone(berlin).utcoffset():
                wrong.append(at)
            at += timedelta(minutes=15)
        assert wrong == []


@pytest.mark.parametrize("reader", ["zone database", "VTIMEZONE only"])
def test_openings_on_the_switch_days(reader: str) -> None:
    """Parsed by icalendar and expanded by recurring-ical-events, both ways."""
    raw = feed('{"2027-03-28": ["02:30-04:00"], "2027-10-31": ["02:30-04:00"]}')
    cal = icalendar.Calendar.from_ical(raw if reader == "zone database" else embedded(raw))

    def opening(day: date) -> tuple[datetime, datetime]:
        (event,) = recurring_ical_events.of(cal).at(day)
        assert str(event["SUMMARY"]) == "Geöffnet"
        return event["DTSTART"].dt.astimezone(UTC), event["DTEND"].dt.astimezone(UTC)

    # 02:30 does not exist on 28 March: the wall clock passes it at the switch,
    # 03:00 CEST (01:00 UTC), and the office is open from then to 04:00 CEST.
    assert opening(date(2027, 3, 28)) == (
        datetime(2027, 3, 28, 1, tzinfo=UTC),
        datetime(2027, 3, 28, 2, tzinfo=UTC),
    )
    # 02:30 occurs twice on 31 October: the first time, in CEST; 04:00 is CET.
    assert opening(date(2027, 10, 31)) == (
        datetime(2027, 10, 31, 0, 30, tzinfo=UTC),
        datetime(2027, 10, 31, 3, tzinfo=UTC),
    )


def test_the_skipped_time_is_written_as_the_switch() -> None:
    raw = feed('{"2027-03-28": ["02:30-04:00"]}').decode()
    assert "DTSTART;TZID=Europe/Berlin:20270328T030000\r\n" in raw
    assert "20270328T023000" not in raw


@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Berlin",
        "America/New_York",
        "America/Sao_Paulo",
        "Australia/Lord_Howe",
        "Africa/Casablanca",
        "UTC",
    ],
)
@pytest.mark.parametrize(("first", "last"), [(2018, 2019), (2026, 2027), (2027, 2027)])
def test_any_zone_matches_the_zone_database(zone: str, first: int, last: int) -> None:
    """Read as RFC 5545 says (icalendar's get_transitions), the offset at every quarter
    hour of the years is the zone database's: half-hour switches (Lord Howe), switches
    at midnight (São Paulo 2018), a year without (São Paulo 2026), Morocco's Ramadan."""
    tz = ZoneInfo(zone)
    component = vtimezone(tz, date(first, 1, 1), date(last, 12, 31))
    parsed = icalendar.Timezone.from_ical(component.to_ical())
    assert isinstance(parsed, icalendar.Timezone)
    times, infos = parsed.get_transitions()
    assert infos, "an observance in force on 1 January at least"
    at, end = datetime(first, 1, 1, tzinfo=tz).astimezone(UTC), datetime(last + 1, 1, 1, tzinfo=tz)
    wrong = []
    while at < end:
        i = bisect.bisect_right(times, at.replace(tzinfo=None)) - 1
        if i < 0 or infos[i][0] != at.astimezone(tz).utcoffset():
            wrong.append(at)
        at += timedelta(minutes=15)
    assert wrong == []
