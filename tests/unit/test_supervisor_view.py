"""The supervisor board's HTML and SVG: colours, number formats, charts."""

from __future__ import annotations

from datetime import UTC, datetime

from pbxbridge.core.servicelevel import Fraction
from pbxbridge.tracking.call_board import Tally
from pbxbridge.web.supervisor_live import Snapshot, SupervisorConfig
from pbxbridge.web.supervisor_view import (
    arrivals_chart,
    duration_text,
    grade,
    percent_text,
    sl_chart,
)

NOW = datetime(2026, 3, 10, 9, 10, tzinfo=UTC)


def snapshot(half_hours: list[Tally], forecast: list[float] | None = None) -> Snapshot:
    return Snapshot(
        now=NOW,
        local=NOW,
        unix=NOW.timestamp(),
        rows=[],
        agents=[],
        names={},
        half_hours=half_hours,
        forecast=forecast,
        agents_needed=None,
        signed_in=0,
        config=SupervisorConfig(),
        slot=18,
    )


class TestSupervisorView:
    def test_grades_against_the_target(self) -> None:
        cfg = SupervisorConfig()  # 80 %, amber band 5 points
        assert grade(Fraction(80, 100), cfg) == "ok"
        assert grade(Fraction(7999, 10000), cfg) == "warn"
        assert grade(Fraction(75, 100), cfg) == "warn"
        assert grade(Fraction(7499, 10000), cfg) == "bad"
        assert grade(Fraction(0, 0), cfg) == "none"

    def test_percent_is_truncated_never_rounded_up(self) -> None:
        assert percent_text(Fraction(79999, 100000), "de") == "79,9 %"
        assert percent_text(Fraction(1, 3), "en") == "33.3 %"
        assert percent_text(Fraction(0, 0), "de") == "–"

    def test_durations(self) -> None:
        assert duration_text(0) == "0:00"
        assert duration_text(75.9) == "1:15"
        assert duration_text(3725) == "1:02:05"
        assert duration_text(-3) == "0:00"

    def test_sl_chart_bars_per_half_hour_and_target_line(self) -> None:
        slots = [Tally() for _ in range(48)]
        slots[16] = Tally(offered=10, answered=10, within=9)  # 08:00 90 %
        slots[17] = Tally(offered=4, answered=2, within=1, abandoned=2)  # 08:30 25 %
        svg = sl_chart(snapshot(slots), "de")
        assert svg.count("<rect") == 2
        assert 'data-slot="16" data-grade="ok"' in svg
        assert 'data-slot="17" data-grade="bad"' in svg
        assert 'data-target="80"' in svg
        assert "style=" not in svg  # the CSP allows no inline styles

    def test_arrivals_chart_with_and_without_forecast(self) -> None:
        slots = [Tally() for _ in range(48)]
        slots[18] = Tally(offered=7)
        plain = arrivals_chart(snapshot(slots), "de")
        assert 'data-offered="7"' in plain and "polyline" not in plain
        with_forecast = arrivals_chart(snapshot(slots, [5.0] * 48), "en")
        assert "<polyline" in with_forecast and "forecast (line)" in with_forecast
