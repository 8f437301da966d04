"""The one service-level definition, and /metrics and the report agreeing on it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pbxbridge.core import servicelevel
from pbxbridge.core.servicelevel import Fraction, answered_within, over_offered, short_abandon
from pbxbridge.journal.report import build_report
from pbxbridge.tracking.metrics import LiveServiceLevel
from tests.unit.test_journal_report import abandoned, answered

BERLIN = ZoneInfo("Europe/Berlin")


def test_defaults_are_the_promise() -> None:
    assert (servicelevel.THRESHOLD_S, servicelevel.SHORT_ABANDON_S) == (20.0, 5.0)


def test_boundaries() -> None:
    assert answered_within(20.0) and not answered_within(20.01)
    assert short_abandon(4.99) and not short_abandon(5.0)
    # Unknown wait: not short, it counts against the service level.
    assert not short_abandon(None)


def test_fractions_scale_without_rounding_up() -> None:
    assert Fraction(57, 100).percent() == 57.0
    assert Fraction(7999, 10000).ratio() == 0.7999
    assert Fraction(79996, 100000).hundredths() == 7999
    assert Fraction(1, 0).ratio() is None and Fraction(1, 0).hundredths() is None
    assert over_offered(3, 6, 1) == Fraction(3, 5)


def test_live_and_report_give_the_same_service_level() -> None:
    at = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    waits = [(True, 0.0), (True, 20.0), (True, 25.0), (False, 3.0), (False, 5.0), (False, 40.0)]
    live = LiveServiceLevel(BERLIN)
    rows = []
    for is_answered, wait in waits:
        live.add(at + timedelta(seconds=wait), "t", is_answered, wait)
        row = answered(at, wait, tenant="t") if is_answered else abandoned(at, wait, tenant="t")
        rows.append(row)
    now = at + timedelta(minutes=1)
    sl_answered, sl_offered = live.figures(now)[("t", "day")]
    report = build_report(
        rows,
        start=date(2026, 3, 10),
        end=date(2026, 3, 10),
        tz=BERLIN,
        by=None,
        tenant="t",
        now=now,
    )
    total = report.tenant("t").total
    assert (sl_answered, sl_offered) == (2 / 3, 2 / 5)
    assert (total.sl_answered_pct, total.sl_offered_pct) == (200 / 3, 40.0)
    assert (
        total.fraction("sl_answered_pct").ratio(),
        total.fraction("sl_offered_pct").ratio(),
    ) == (sl_answered, sl_offered)


def test_target_is_met_at_exactly_the_promise_and_not_below() -> None:
    assert servicelevel.TARGET_PERCENT == 80.0
    assert servicelevel.meets_target(Fraction(80, 100)) is True
    assert servicelevel.meets_target(Fraction(7999, 10000)) is False
    assert servicelevel.meets_target(Fraction(3, 4), 75.0) is True
    assert servicelevel.meets_target(Fraction(0, 0)) is None
