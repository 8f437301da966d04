"""Reading iCalendar files as closures (pbxbridge/config/ical.py) with real-world exports.

The files in tests/data/ics/ are written as the programs write them: an Outlook
export (Windows time zone name, X-MS fields), a Google Calendar export
(X-WR-TIMEZONE, UTC times, a cancelled event), a Thunderbird-style series with
EXDATE and a moved instance (RECURRENCE-ID), a Land's holiday feed (all-day
VALUE=DATE events) and a broken file. The expected closures are read off the
files by hand.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.config.ical import (
    Closure,
    IcsError,
    YearlySeries,
    closures,
    parse_ics,
    yearly_series,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "ics"
BERLIN = ZoneInfo("Europe/Berlin")
H = 3600


def read(
    name: str, first: date = date(2026, 1, 1), last: date = date(2027, 12, 31)
) -> list[Closure]:
    return list(closures((DATA / name).read_bytes(), tz=BERLIN, first=first, last=last))


class TestClosures:
    def test_outlook_export(self) -> None:
        assert read("outlook-schliesstage.ics") == [
            Closure(date(2026, 6, 12), 0, 24 * H, "Betriebsausflug"),
            # TZID "W. Europe Standard Time" from the file's VTIMEZONE: CET in November
            Closure(date(2026, 11, 25), 12 * H, 18 * H, "Personalversammlung"),
            Closure(date(2026, 12, 27), 0, 24 * H, "Inventur"),  # RRULE yearly
            Closure(date(2027, 12, 27), 0, 24 * H, "Inventur"),
        ]

    def test_google_export(self) -> None:
        # DTSTART 12:00Z with X-WR-TIMEZONE Europe/Berlin is 13:00 local, and the
        # series stays at 13:00 local after the switch to summer time, as Google
        # shows it; the cancelled event closes nothing.
        assert read("google-export.ics") == [
            Closure(date(2026, 3, 4), 13 * H, 15 * H, "Fortbildung"),
            Closure(date(2026, 4, 1), 13 * H, 15 * H, "Fortbildung"),
            Closure(date(2026, 5, 6), 13 * H, 15 * H, "Fortbildung"),
            Closure(date(2026, 5, 15), 0, 24 * H, "Brückentag"),
        ]

    def test_exdate_and_a_moved_instance(self) -> None:
        found = read("exdate-recurrence-id.ics")
        days = [c.day for c in found]
        assert date(2026, 11, 13) not in days  # EXDATE
        assert date(2026, 12, 25) not in days  # EXDATE
        assert date(2027, 1, 1) not in days  # after UNTIL
        assert len(found) == 11  # 13 Fridays from 2 October to 25 December, less 2 EXDATEs
        moved = next(c for c in found if c.day == date(2026, 10, 30))
        assert (moved.start, moved.end) == (12 * H, 18 * H)
        assert moved.summary.endswith("ab 12 Uhr)")
        assert all((c.start, c.end) == (14 * H, 18 * H) for c in found if c is not moved)

    def test_holiday_feed_with_a_multi_day_event(self) -> None:
        found = read("feiertage-niedersachsen.ics")
        assert [c.day for c in found[:3]] == [
            date(2026, 1, 1),
            date(2026, 4, 3),
            date(2026, 10, 31),
        ]
        christmas = [c.day for c in found if c.summary.startswith("Weihnachtsferien")]
        # DTEND 2027-01-06 is exclusive
        assert christmas[0] == date(2026, 12, 23)
        assert christmas[-1] == date(2027, 1, 5)
        assert len(christmas) == 14
        assert all(c.all_day for c in found)

    def test_window(self) -> None:
        found = read("outlook-schliesstage.ics", date(2027, 1, 1), date(2027, 12, 31))
        assert found == [Closure(date(2027, 12, 27), 0, 24 * H, "Inventur")]


def calendar_with(*events: str) -> bytes:
    body = "".join(
        f"BEGIN:VEVENT\nUID:e{i}\nDTSTAMP:20260101T000000Z\nSUMMARY:E{i}\n{e}END:VEVENT\n"
        for i, e in enumerate(events)
    )
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:t\n{body}END:VCALENDAR\n".encode()


class TestYearlySeries:
    def test_outlook_yearly_event(self) -> None:
        cal = parse_ics((DATA / "outlook-schliesstage.ics").read_bytes())
        (series,) = yearly_series(cal, since=date(2026, 3, 2))
        assert (series.entry, series.summary, series.first) == (
            "12-27",
            "Inventur",
            date(2026, 12, 27),
        )

    def test_a_series_beginning_in_a_later_year_is_not_yearly(self) -> None:
        cal = parse_ics((DATA / "outlook-schliesstage.ics").read_bytes())
        assert yearly_series(cal, since=date(2025, 6, 1)) == ()

    def test_only_plain_for_ever_yearly_all_day_series(self) -> None:
        day = "DTSTART;VALUE=DATE:20241224\nDTEND;VALUE=DATE:20241227\n"
        cal = parse_ics(
            calendar_with(
                day + "RRULE:FREQ=YEARLY\n",  # e0: yes, three days
                day + "RRULE:FREQ=YEARLY;COUNT=3\n",
                day + "RRULE:FREQ=YEARLY;INTERVAL=2\n",
                day + "RRULE:FREQ=YEARLY\nEXDATE;VALUE=DATE:20251224\n",
                day + "RRULE:FREQ=MONTHLY\n",
                "DTSTART:20241224T100000\nRRULE:FREQ=YEARLY\n",  # timed
                "DTSTART;VALUE=DATE:20240229\nRRULE:FREQ=YEARLY\n",
                "DTSTART;VALUE=DATE:20241231\nRRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31\n",
            )
        )
        assert yearly_series(cal, since=date(2026, 1, 1)) == (
            YearlySeries("e0", date(2024, 12, 24), 3, "E0"),
            YearlySeries("e7", date(2024, 12, 31), 1, "E7"),
        )
        assert [s.entry for s in yearly_series(cal, since=date(2026, 1, 1))] == [
            "12-24..12-26",
            "12-31",
        ]


BROKEN = [
    ("invalid-dtstart", (DATA / "invalid-dtstart.ics").read_text(), 13, "DTSTART"),
    ("not-a-calendar", "Hallo\n", 1, "must start with BEGIN:VCALENDAR"),
    (
        "garbage-line",
        "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nDTSTART:20260101\nthis is no line\n"
        "END:VEVENT\nEND:VCALENDAR\n",
        5,
        "not an iCalendar content line",
    ),
    (
        "unclosed-event",
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\nEND:VCALENDAR\n",
        4,
        "END:VEVENT missing",
    ),
    (
        "missing-dtstart",
        "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:x\nSUMMARY:a\nEND:VEVENT\nEND:VCALENDAR\n",
        3,
        "VEVENT without DTSTART",
    ),
    (
        "bad-rrule",
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nDTSTART;VALUE=DATE:20260101\n"
        "RRULE:FREQ=YEARLI\nEND:VEVENT\nEND:VCALENDAR\n",
        5,
        "RRULE",
    ),
    (
        "end-before-start",
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nDTSTART:20260101T100000\n"
        "DTEND:20260101T090000\nEND:VEVENT\nEND:VCALENDAR\n",
        5,
        "DTEND: before DTSTART",
    ),
    (
        "floating-end-of-a-zoned-start",
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nDTSTART:20260101T100000Z\n"
        "DTEND:20260101T120000\nEND:VEVENT\nEND:VCALENDAR\n",
        5,
        "DTEND: with a time zone where DTSTART has none",
    ),
    (
        "folded-line-counts-from-its-start",
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nSUMMARY:a long\n  title\n"
        "DTSTART;VALUE=DATE:\n 2026-01-01\nEND:VEVENT\nEND:VCALENDAR\n",
        6,
        "DTSTART",
    ),
]


class TestBrokenFiles:
    @pytest.mark.parametrize(
        ("text", "line", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in BROKEN]
    )
    def test_error_names_the_line(self, text: str, line: int, fragment: str) -> None:
        with pytest.raises(IcsError) as info:
            closures(text.encode(), tz=BERLIN, first=date(2026, 1, 1), last=date(2026, 12, 31))
        assert info.value.line == line
        assert fragment in info.value.message

    def test_a_broken_property_that_changes_nothing_is_ignored(self) -> None:
        text = (
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:t\nBEGIN:VEVENT\nUID:x\n"
            "DTSTAMP:20260101T000000Z\nCREATED:yesterday\nLAST-MODIFIED:2026\n"
            "DTSTART;VALUE=DATE:20260612\nSUMMARY:Ausflug\nEND:VEVENT\nEND:VCALENDAR\n"
        )
        found = closures(text, tz=BERLIN, first=date(2026, 1, 1), last=date(2026, 12, 31))
        assert found == (Closure(date(2026, 6, 12), 0, 24 * H, "Ausflug"),)

    def test_not_utf8(self) -> None:
        with pytest.raises(IcsError, match="UTF-8") as info:
            parse_ics(b"BEGIN:VCALENDAR\nSUMMARY:\xff\nEND:VCALENDAR\n")
        assert info.value.line == 2
