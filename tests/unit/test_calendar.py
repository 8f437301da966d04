"""Calendar parsing, periods and working-day arithmetic."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.core.calendar import (
    Calendar,
    CalendarSyntaxError,
    Interval,
    parse_date_range,
    parse_days,
    parse_interval,
    parse_time,
)

BERLIN = ZoneInfo("Europe/Berlin")


def servicecenter() -> Calendar:
    weekday = (Interval(7 * 3600, 18 * 3600, "mon-fri"),)
    return Calendar(
        name="servicecenter",
        weekly=(weekday,) * 5 + ((), ()),
        closed_dates={date(2026, 12, 24): "extra closed date 2026-12-24",
                      date(2026, 12, 31): "extra closed date 2026-12-31"},
        holiday_country="DE",
        holiday_subdivision="NI",
    )


class TestParsing:
    @pytest.mark.parametrize(("text", "seconds"), [("00:00", 0), ("07:30", 27000),
                                                     ("24:00", 86400)])
    def test_time(self, text: str, seconds: int) -> None:
        assert parse_time(text) == seconds

    @pytest.mark.parametrize("text", ["7:00", "24:30", "25:00", "12:60", "noon", "1050"])
    def test_bad_time(self, text: str) -> None:
        with pytest.raises(CalendarSyntaxError):
            parse_time(text)

    def test_interval(self) -> None:
        assert parse_interval("07:00-18:00").text == "07:00-18:00"
        with pytest.raises(CalendarSyntaxError, match="after the start"):
            parse_interval("18:00-07:00")

    @pytest.mark.parametrize(
        ("spec", "days"),
        [("mon-fri", (0, 1, 2, 3, 4)), ("sat", (5,)), ("mon,wed,fri", (0, 2, 4)),
         ("daily", tuple(range(7))), ("Mon-Tue, sun", (0, 1, 6))],
    )
    def test_days(self, spec: str, days: tuple[int, ...]) -> None:
        assert parse_days(spec) == days

    @pytest.mark.parametrize("spec", ["fri-mon", "mo-fr", "weekdays", ""])
    def test_bad_days(self, spec: str) -> None:
        with pytest.raises(CalendarSyntaxError):
            parse_days(spec)

    def test_date_range(self) -> None:
        assert parse_date_range("2026-12-24..2026-12-31") == (date(2026, 12, 24),
                                                              date(2026, 12, 31))
        with pytest.raises(CalendarSyntaxError, match="before the start"):
            parse_date_range("2026-12-31..2026-12-24")


class TestPeriods:
    def test_christmas_week(self) -> None:
        cal = servicecenter()
        periods = list(cal.periods(date(2026, 12, 23), date(2026, 12, 26)))
        opened = [(p.day, p.start, p.end) for p in periods if p.is_open]
        assert opened == [(date(2026, 12, 23), 7 * 3600, 18 * 3600)]
        whys = {p.day: p.why for p in periods if not p.is_open and p.start == 0}
        assert whys[date(2026, 12, 24)] == "extra closed date 2026-12-24"
        assert whys[date(2026, 12, 25)] == "holiday: Erster Weihnachtstag"
        # Each day is covered end to end without gaps.
        for day in (date(2026, 12, 23), date(2026, 12, 24)):
            spans = [(p.start, p.end) for p in periods if p.day == day]
            assert spans[0][0] == 0 and spans[-1][1] == 86400
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


class TestEndOfWorkingDay:
    @pytest.mark.parametrize(
        ("after", "due"),
        [
            (date(2026, 11, 25), datetime(2026, 11, 26, 18, 0, tzinfo=BERLIN)),  # Wed -> Thu
            (date(2026, 11, 27), datetime(2026, 11, 30, 18, 0, tzinfo=BERLIN)),  # Fri -> Mon
            (date(2026, 12, 23), datetime(2026, 12, 28, 18, 0, tzinfo=BERLIN)),  # Christmas
            (date(2026, 12, 30), datetime(2027, 1, 4, 18, 0, tzinfo=BERLIN)),  # new year
            (date(2026, 4, 2), datetime(2026, 4, 7, 18, 0, tzinfo=BERLIN)),  # Easter
        ],
    )
    def test_next_working_day(self, after: date, due: datetime) -> None:
        assert servicecenter().end_of_working_day(after, 1, BERLIN) == due

    def test_two_working_days(self) -> None:
        got = servicecenter().end_of_working_day(date(2026, 11, 26), 2, BERLIN)
        assert got == datetime(2026, 11, 30, 18, 0, tzinfo=BERLIN)

    def test_never_open(self) -> None:
        cal = Calendar(name="never", weekly=((),) * 7)
        with pytest.raises(ValueError, match="no working day"):
            cal.end_of_working_day(date(2026, 1, 1), 1, BERLIN)
