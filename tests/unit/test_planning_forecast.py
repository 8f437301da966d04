"""The staffing forecast (pbxbridge.planning.forecast) over journal rows.

Expectations are worked out by hand from the rows each test writes; the
agents of a half hour are the textbook Erlang C figures (91 calls per 30
minutes at 180 s handle time: 13 agents for 80/20).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.core.calendar import Calendar, Interval
from pbxbridge.core.erlang import Model
from pbxbridge.journal.forecast import fold_half_hours
from pbxbridge.journal.store import CallRow
from pbxbridge.planning.forecast import (
    SHARED,
    Forecast,
    build_forecast,
    history_period,
    slot_of,
)

BERLIN = ZoneInfo("Europe/Berlin")
NINE = 18  # the half hour 09:00-09:30


def calendar() -> Calendar:
    """Mon-Fri 08:00-16:00, Lower Saxony holidays closed."""
    day = (Interval(8 * 3600, 16 * 3600, "mon-fri"),)
    return Calendar(
        name="c", weekly=(day,) * 5 + ((), ()), holiday_country="DE", holiday_subdivision="NI"
    )


def row(
    at: datetime,
    tenant: str,
    *,
    wait: float = 0.0,
    talk: float | None = 150.0,
    wrap: float | None = 30.0,
    abandon: bool = False,
    action: str = "queue",
) -> CallRow:
    answered = None if abandon else at + timedelta(seconds=wait)
    ended = at + timedelta(seconds=wait + (0 if abandon or talk is None else talk))
    return CallRow(
        node="n1", call_id="c", tenant=tenant, did="", caller=None, via_115=False,
        action=action, reasons=(), arrived_at=at, queued_at=at,
        answered_at=answered, ended_at=ended,
        outcome="abandoned" if abandon else "answered", agent="", queue="",
        wait_s=wait, talk_s=None if abandon else talk, rings=(),
        disposition=None if abandon or wrap is None else "resolved",
        disposition_at=None if abandon or wrap is None else ended + timedelta(seconds=wrap),
        disposition_by=None, disposition_note=None, callback_number=None,
        callback_due_at=None, callback_done_at=None, purged_at=None,
    )  # fmt: skip


def calls_at(day: date, n: int, tenant: str = "a", minute: int = 0, **kw: object) -> list[CallRow]:
    """``n`` calls spread over 09:00-09:30 local of ``day``."""
    start = datetime(day.year, day.month, day.day, 9, minute, tzinfo=BERLIN)
    return [row(start + timedelta(seconds=i * 1700 / max(n, 1)), tenant, **kw) for i in range(n)]  # type: ignore[arg-type]


def forecast(
    rows: list[CallRow],
    *,
    week: int = 11,
    weeks: int = 1,
    calendars: Mapping[str, Calendar] | None = None,
    model: Model = "erlang-c",
) -> Forecast:
    """Forecast 2026-W``week`` for 80/20 in Berlin from ``rows`` (any order).

    Tenant ``a`` alone on :func:`calendar` unless ``calendars`` says otherwise.
    The rows are put in arrival order first, as the journal hands them over.
    """
    return build_forecast(
        fold_half_hours(sorted(rows, key=lambda r: r.arrived_at)),
        year=2026,
        week=week,
        weeks=weeks,
        tz=BERLIN,
        calendars=calendars if calendars is not None else {"a": calendar()},
        target_level=0.8,
        threshold_s=20,
        model=model,
    )


class TestForecast:
    def test_textbook_half_hour_and_shared_queue(self) -> None:
        # Four Mondays before 2026-W11 (9 March), 91 calls each at 09:00 for
        # both tenants; talk 150 s + wrap-up 30 s = 180 s.
        rows: list[CallRow] = []
        for week in range(4):
            monday = date(2026, 2, 9) + timedelta(weeks=week)
            rows += calls_at(monday, 91, "a") + calls_at(monday, 91, "b")
        cal = calendar()
        fc = forecast(rows, weeks=4, calendars={"a": cal, "b": cal})
        monday = date(2026, 3, 9)
        a = fc.slot("a", monday, NINE)
        assert a.calls == 91 and a.aht_s == pytest.approx(180.0) and a.agents == 13
        assert a.start == "09:00"
        # Tuesday: no calls in the history, none expected.
        assert fc.slot("a", monday + timedelta(days=1), NINE).agents == 0
        shared = fc.slot(SHARED, monday, NINE)
        assert shared.calls == 182 and shared.aht_s == pytest.approx(180.0)
        # Agents are shared: pooling 18.2 Erlangs needs fewer than two separate 13s.
        assert 19 < shared.agents < 26
        assert fc.history == (date(2026, 2, 9), date(2026, 3, 8))

    def test_holidays_excluded_and_after_closure_weighted(self) -> None:
        # Target 2026-W22: Whit Monday 25 May is a holiday, Tuesday 26 May comes
        # after it. History 11-24 May holds Ascension (Thursday 14 May), so
        # Friday 15 May is a day after a closure.
        days = {
            date(2026, 5, 11): 10, date(2026, 5, 18): 10,  # Mondays
            date(2026, 5, 12): 10, date(2026, 5, 19): 10,  # Tuesdays
            date(2026, 5, 14): 99,  # Ascension: left out
            date(2026, 5, 21): 6,  # the only regular Thursday
            date(2026, 5, 15): 12,  # after Ascension
            date(2026, 5, 22): 8,  # regular Friday
        }  # fmt: skip
        fc = forecast([r for d, n in days.items() for r in calls_at(d, n)], week=22, weeks=2)
        assert fc.after_closure["a"] == pytest.approx(12 / 8)
        assert fc.slot("a", date(2026, 5, 25), NINE).calls == 0  # Whit Monday: closed
        assert fc.slot("a", date(2026, 5, 26), NINE).calls == pytest.approx(15.0)  # 10 x 1.5
        assert fc.slot("a", date(2026, 5, 28), NINE).calls == pytest.approx(6.0)
        assert fc.slot("a", date(2026, 5, 29), NINE).calls == pytest.approx(8.0)
        # Outside the opening hours nothing is forecast.
        assert fc.slot("a", date(2026, 5, 26), 4).calls == 0
        assert fc.tenants == ("a",) and not [s for s in fc.slots if s.tenant == SHARED]

    def test_patience_from_all_waits_over_abandons(self) -> None:
        monday = date(2026, 3, 2)
        rows = calls_at(monday, 7, wait=5.0) + [
            *calls_at(monday, 1, wait=10.0, abandon=True, minute=1),
            *calls_at(monday, 1, wait=20.0, abandon=True, minute=2),
            *calls_at(monday, 1, wait=30.0, abandon=True, minute=3),
        ]
        fc = forecast(rows, model="erlang-a")
        # 7 x 5 s + 10 + 20 + 30 = 95 s waited, 3 abandons.
        assert fc.patience_s["a"] == pytest.approx(95 / 3)
        slot = fc.slot("a", date(2026, 3, 9), NINE)
        assert slot.calls == 10 and slot.staffing is not None
        assert slot.staffing.model == "erlang-a"
        # Handle time from answered calls only: 150 + 30.
        assert slot.aht_s == pytest.approx(180.0)

    def test_closed_hours_and_rejected_calls_are_not_offered(self) -> None:
        monday = date(2026, 3, 2)
        rows = calls_at(monday, 4) + calls_at(monday, 3, action="closed", minute=5)
        rows += calls_at(monday, 2, action="reject", minute=6)
        fc = forecast(rows)
        assert fc.slot("a", date(2026, 3, 9), NINE).calls == 4

    def test_days_before_the_journal_and_after_today_do_not_count(self) -> None:
        # The journal starts on Monday 2 March; the history asked for is four
        # weeks, but only the week with data counts (not averaged with zeros).
        fc = forecast(calls_at(date(2026, 3, 2), 20), weeks=4)
        assert fc.history == (date(2026, 3, 2), date(2026, 3, 8))
        assert fc.slot("a", date(2026, 3, 9), NINE).calls == 20
        # Forecasting W12 on Wednesday 11 March: the history ends on the 10th.
        assert history_period(2026, 12, 2, today=date(2026, 3, 11)) == (
            date(2026, 2, 25),
            date(2026, 3, 10),
        )

    def test_talk_per_cell_when_enough_calls_else_tenant_mean(self) -> None:
        monday, tuesday = date(2026, 3, 2), date(2026, 3, 3)
        rows = calls_at(monday, 40, talk=270.0, wrap=None) + calls_at(
            tuesday, 5, talk=30.0, wrap=None
        )
        fc = forecast(rows)
        assert fc.slot("a", date(2026, 3, 9), NINE).aht_s == pytest.approx(270.0)
        # Five Tuesday calls are too few: the tenant's mean (40x270 + 5x30) / 45.
        assert fc.slot("a", date(2026, 3, 10), NINE).aht_s == pytest.approx(
            (40 * 270 + 5 * 30) / 45
        )

    def test_slot_of_is_local(self) -> None:
        at = datetime(2026, 7, 1, 7, 10, tzinfo=ZoneInfo("UTC"))  # 09:10 CEST
        assert slot_of(at, BERLIN) == (date(2026, 7, 1), NINE)
