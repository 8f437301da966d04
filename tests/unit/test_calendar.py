"""Calendar parsing, periods and working-day arithmetic."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.core.calendar import (
    Calendar,
    CalendarSyntaxError,
    Interval,
    parse_date_range,
    parse_days,
    parse_interval,
    parse_month_day,
    parse_time,
    parse_yearly_range,
    resolve_wall_clock,
    subtract,
)

BERLIN = ZoneInfo("Europe/Berlin")


def servicecenter() -> Calendar:
    weekday = (Interval(7 * 3600, 18 * 3600, "mon-fri"),)
    return Calendar(
        name="servicecenter",
        weekly=(weekday,) * 5 + ((), ()),
        closed_dates={
            date(2026, 12, 24): "extra closed date 2026-12-24",
            date(2026, 12, 31): "extra closed date 2026-12-31",
        },
        holiday_country="DE",
        holiday_subdivision="NI",
    )


class TestParsing:
    @pytest.mark.parametrize(
        ("text", "seconds"), [("00:00", 0), ("07:30", 27000), ("24:00", 86400)]
    )
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
        [
            ("mon-fri", (0, 1, 2, 3, 4)),
            ("sat", (5,)),
            ("mon,wed,fri", (0, 2, 4)),
            ("daily", tuple(range(7))),
            ("Mon-Tue, sun", (0, 1, 6)),
        ],
    )
    def test_days(self, spec: str, days: tuple[int, ...]) -> None:
        assert parse_days(spec) == days

    @pytest.mark.parametrize("spec", ["fri-mon", "mo-fr", "weekdays", ""])
    def test_bad_days(self, spec: str) -> None:
        with pytest.raises(CalendarSyntaxError):
            parse_days(spec)

    def test_date_range(self) -> None:
        assert parse_date_range("2026-12-24..2026-12-31") == (
            date(2026, 12, 24),
            date(2026, 12, 31),
        )
        with pytest.raises(CalendarSyntaxError, match="before the start"):
            parse_date_range("2026-12-31..2026-12-24")


class TestYearlyParsing:
    def test_single_day(self) -> None:
        assert parse_yearly_range("12-24") == ((12, 24),)

    def test_range_within_the_year(self) -> None:
        assert parse_yearly_range("12-24..12-27") == ((12, 24), (12, 25), (12, 26), (12, 27))

    def test_range_over_the_year_end(self) -> None:
        assert parse_yearly_range("12-30..01-02") == ((12, 30), (12, 31), (1, 1), (1, 2))

    def test_a_range_over_february_includes_the_29th(self) -> None:
        assert parse_yearly_range("02-27..03-01") == ((2, 27), (2, 28), (2, 29), (3, 1))

    def test_29_february_is_a_valid_yearly_date(self) -> None:
        assert parse_month_day("02-29") == (2, 29)

    @pytest.mark.parametrize("text", ["02-30", "13-01", "00-10", "04-31", "1-06", "12/24"])
    def test_bad_yearly_dates(self, text: str) -> None:
        with pytest.raises(CalendarSyntaxError, match="invalid yearly date"):
            parse_month_day(text)

    def test_mixed_range(self) -> None:
        with pytest.raises(CalendarSyntaxError, match="both ends must be MM-DD"):
            parse_yearly_range("12-24..2026-12-31")


def yearly_calendar() -> Calendar:
    weekday = (Interval(7 * 3600, 18 * 3600, "mon-fri"),)
    return Calendar(
        name="yearly",
        weekly=(weekday,) * 5 + ((), ()),
        closed_dates={date(2027, 6, 1): "extra closed date 2027-06-01"},
        special_open={date(2027, 12, 24): (Interval(8 * 3600, 12 * 3600, "special"),)},
        yearly_closed={
            (12, 24): "yearly closed date 12-24",
            (2, 29): "yearly closed date 02-29",
        },
        yearly_open={(6, 1): (Interval(9 * 3600, 10 * 3600, "yearly special opening 06-01"),)},
        holiday_country="DE",
        holiday_subdivision="NI",
    )


class TestYearlyEntries:
    @pytest.mark.parametrize("year", [2025, 2026, 2030, 2099])
    def test_closed_every_year(self, year: int) -> None:
        day = date(year, 12, 24)
        assert yearly_calendar().state_on(day) == ((), "yearly closed date 12-24", "")

    def test_a_dated_special_opening_wins_over_a_yearly_closure(self) -> None:
        intervals, why, _ = yearly_calendar().state_on(date(2027, 12, 24))
        assert [i.text for i in intervals] == ["08:00-12:00"]
        assert why == "special opening 2027-12-24"

    def test_a_dated_closure_wins_over_a_yearly_special_opening(self) -> None:
        cal = yearly_calendar()
        assert cal.state_on(date(2027, 6, 1)) == ((), "extra closed date 2027-06-01", "")
        intervals, why, _ = cal.state_on(date(2028, 6, 1))
        assert ([i.text for i in intervals], why) == (
            ["09:00-10:00"],
            "yearly special opening 06-01",
        )

    def test_holidays_still_close_beside_yearly_entries(self) -> None:
        # 2026-12-24 is no public holiday in Lower Saxony, 2026-12-25 is.
        cal = yearly_calendar()
        assert cal.state_on(date(2026, 12, 25))[1] == "holiday: Erster Weihnachtstag"

    def test_29_february_closes_only_in_leap_years(self) -> None:
        cal = yearly_calendar()
        assert cal.state_on(date(2028, 2, 29))[0] == ()  # Tuesday in a leap year
        assert cal.state_on(date(2027, 2, 28))[1] == "sun"
        assert cal.state_on(date(2027, 3, 1))[1] == "mon"  # not moved to 1 March

    def test_other_days_keep_weekly_hours(self) -> None:
        intervals, why, _ = yearly_calendar().state_on(date(2026, 12, 23))
        assert ([i.text for i in intervals], why) == (["07:00-18:00"], "wed")


class TestClosedHours:
    def test_subtract_cuts_the_middle_and_keeps_labels(self) -> None:
        day = (Interval(7 * 3600, 18 * 3600, "mon-fri"),)
        left = subtract(day, (Interval(12 * 3600, 13 * 3600),))
        assert [(i.text, i.label) for i in left] == [
            ("07:00-12:00", "mon-fri"),
            ("13:00-18:00", "mon-fri"),
        ]

    def test_subtract_everything(self) -> None:
        day = (Interval(7 * 3600, 12 * 3600), Interval(13 * 3600, 18 * 3600))
        assert subtract(day, (Interval(0, 86400),)) == ()

    def test_a_timed_closure_shortens_the_day(self) -> None:
        weekday = (Interval(7 * 3600, 18 * 3600, "mon-fri"),)
        cal = Calendar(
            name="c",
            weekly=(weekday,) * 7,
            closed_hours={
                date(2026, 11, 25): (
                    (Interval(12 * 3600, 86400, "Betriebsversammlung"),),
                    "closed: Betriebsversammlung (ics)",
                ),
                date(2026, 11, 26): ((Interval(0, 86400),), "Betriebsausflug"),
            },
        )
        state = cal.state_at(datetime(2026, 11, 25, 12, 30, tzinfo=BERLIN))
        assert not state.is_open
        assert state.reason == (
            "Wed 25.11.2026 12:30 CET inside closure Betriebsversammlung 12:00-24:00 "
            "(open 07:00-12:00)"
        )
        assert cal.state_at(datetime(2026, 11, 25, 11, 59, tzinfo=BERLIN)).is_open
        assert cal.state_on(date(2026, 11, 26)) == ((), "Betriebsausflug", "")


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


# -- one instant, one answer across the DST switches -------------------------


def night_calendar() -> Calendar:
    """Open 02:00-03:00 and 03:00-03:30 every day: the hours the switches move."""
    night = (Interval(2 * 3600, 3 * 3600, "night"), Interval(3 * 3600, 3 * 3600 + 1800, "late"))
    return Calendar(name="night", weekly=(night,) * 7)


# Written by hand from the switch rules (EU: last Sunday of March 01:00 UTC to
# CEST, last Sunday of October 01:00 UTC back to CET), not computed.
DST_TABLE = [
    # --at as written, the instant in UTC, the wall clock it is, open?
    # spring 2026-03-29: 02:00 CET -> 03:00 CEST; 02:00-02:59 does not exist
    ("2026-03-29T01:59", "2026-03-29T00:59", "01:59 CET", False),
    ("2026-03-29T02:00", "2026-03-29T01:00", "03:00 CEST", True),
    ("2026-03-29T02:30", "2026-03-29T01:30", "03:30 CEST", False),
    ("2026-03-29T02:15", "2026-03-29T01:15", "03:15 CEST", True),
    ("2026-03-29T03:00", "2026-03-29T01:00", "03:00 CEST", True),
    ("2026-03-29T03:30", "2026-03-29T01:30", "03:30 CEST", False),
    # autumn 2026-10-25: 03:00 CEST -> 02:00 CET; 02:00-02:59 occurs twice
    ("2026-10-25T01:59", "2026-10-24T23:59", "01:59 CEST", False),
    ("2026-10-25T02:30", "2026-10-25T00:30", "02:30 CEST", True),
    ("2026-10-25T03:00", "2026-10-25T02:00", "03:00 CET", True),
    ("2026-10-25T03:30", "2026-10-25T02:30", "03:30 CET", False),
]


@pytest.mark.parametrize(("written", "utc", "clock", "is_open"), DST_TABLE)
def test_wall_clock_resolves_to_one_instant(
    written: str, utc: str, clock: str, is_open: bool
) -> None:
    resolved, _ = resolve_wall_clock(datetime.fromisoformat(written), BERLIN)
    instant = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    # (PEP 495: a time in the fold never compares equal across zones: compare in UTC.)
    assert resolved.astimezone(UTC) == instant
    assert f"{resolved:%H:%M} {resolved.tzname()}" == clock
    cal = night_calendar()
    # However the instant is written, the calendar gives one answer.
    forms = [
        resolved,
        instant,
        instant.astimezone(BERLIN),
        instant.astimezone(timezone(timedelta(hours=5))),
        datetime.fromisoformat(written).replace(tzinfo=BERLIN),  # read literally before
    ]
    answers = {cal.state_at(form.astimezone(BERLIN)).is_open for form in forms[:4]}
    assert answers == {is_open}
    if resolved.astimezone(UTC) == forms[4].astimezone(UTC):  # literal = same instant
        assert cal.state_at(forms[4]).is_open is is_open


@pytest.mark.parametrize(
    ("written", "note"),
    [
        ("2026-03-29T02:30", "does not exist in Europe/Berlin"),
        ("2026-10-25T02:30", "occurs twice in Europe/Berlin: the first is taken"),
        ("2026-03-29T03:30", ""),
        ("2026-11-25T10:00", ""),
    ],
)
def test_wall_clock_note(written: str, note: str) -> None:
    _, text = resolve_wall_clock(datetime.fromisoformat(written), BERLIN)
    assert (note in text) if note else text == ""


def test_the_skipped_hour_is_not_read_literally() -> None:
    # The review's case: 02:30 local on 29 March with a calendar open 02:00-03:00.
    literal = datetime(2026, 3, 29, 2, 30, tzinfo=BERLIN)
    assert literal.astimezone(BERLIN) is literal  # why astimezone alone did not help
    assert night_calendar().state_at(literal).is_open is False
    assert "03:30 CEST" in night_calendar().state_at(literal).reason


def test_every_wall_clock_minute_of_both_switch_nights_gets_its_instants_answer() -> None:
    cal = night_calendar()
    for night in (datetime(2026, 3, 29), datetime(2026, 10, 25)):
        for minute in range(0, 5 * 60, 5):
            wall = night + timedelta(minutes=minute)
            for fold in (0, 1):
                written = wall.replace(tzinfo=BERLIN, fold=fold)
                # The same instant, reached from UTC: what the clock really shows.
                actual = written.astimezone(UTC).astimezone(BERLIN)
                assert cal.state_at(written).is_open is cal.state_at(actual).is_open, written
