"""Prometheus metrics: counters from lifecycle changes, live service level, scrape gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pbxbridge.core.lifecycle import CallEvent, EventKind, advance, start
from pbxbridge.core.models import Action, Decision
from pbxbridge.tracking.metrics import CallMetrics, LiveServiceLevel, ScrapeCollector, render

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(render(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class TestLiveServiceLevel:
    def test_both_definitions_and_windows(self) -> None:
        live = LiveServiceLevel(BERLIN)
        now = T0
        live.add(now - timedelta(hours=2), "a", True, 5)  # today, outside 15 min
        live.add(now - timedelta(minutes=5), "a", True, 30)  # too slow
        live.add(now - timedelta(minutes=4), "a", True, 10)
        live.add(now - timedelta(minutes=3), "a", False, 2)  # short abandon: not offered
        live.add(now - timedelta(minutes=2), "a", False, 40)  # abandon: offered
        figures = live.figures(now)
        assert figures[("a", "15m")] == (1 / 2, 1 / 3)
        assert figures[("a", "day")] == (2 / 3, 2 / 4)
        assert figures[("", "day")] == figures[("a", "day")]

    def test_day_starts_at_local_midnight(self) -> None:
        live = LiveServiceLevel(BERLIN)
        # 23:30 UTC on the 24th is 00:30 CET on the 25th: today.
        live.add(datetime(2026, 11, 24, 23, 30, tzinfo=UTC), "a", True, 1)
        live.add(datetime(2026, 11, 24, 22, 30, tzinfo=UTC), "a", True, 1)  # yesterday
        assert live.figures(T0)[("a", "day")] == (1.0, 1.0)

    def test_no_calls_no_figure(self) -> None:
        assert LiveServiceLevel(BERLIN).figures(T0) == {}

    def test_fifteen_minutes_include_their_start_and_outcomes_stamped_ahead(self) -> None:
        live = LiveServiceLevel(BERLIN)
        live.add(T0 - timedelta(minutes=15), "a", True, 1)  # exactly at the start: in
        live.add(T0 - timedelta(minutes=15, microseconds=1), "b", True, 1)  # just before: out
        live.add(T0 + timedelta(seconds=3), "a", False, 40)  # PBX clock ahead: counted now
        figures = live.figures(T0)
        assert figures[("a", "15m")] == (1.0, 0.5)
        assert ("b", "15m") not in figures
        assert figures[("b", "day")] == (1.0, 1.0)

    def test_only_short_abandons_give_no_ratio(self) -> None:
        live = LiveServiceLevel(BERLIN)
        live.add(T0, "a", False, 4.99)
        assert live.figures(T0) == {
            ("a", "15m"): (None, None),
            ("", "15m"): (None, None),
            ("a", "day"): (None, None),
            ("", "day"): (None, None),
        }

    def test_stays_bounded_when_never_scraped(self) -> None:
        live = LiveServiceLevel(BERLIN)
        start = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
        for hour in range(24 * 5):
            live.add(start + timedelta(hours=hour), "a", True, 1)
        # Five days of calls, one an hour: two days and the newest are kept.
        assert len(live._outcomes) == 49
        now = start + timedelta(hours=24 * 5 - 1)  # 00:00 Berlin on the 25th
        live.add(now, "a", False, 40)
        assert live.figures(now)[("a", "day")] == (1.0, 0.5)
        # A scrape forgets what neither window needs: the two outcomes of the last 15 min.
        assert len(live._outcomes) == 2


class TestCallMetrics:
    def test_counters_follow_the_lifecycle(self) -> None:
        registry = CollectorRegistry()
        metrics = CallMetrics(registry, LiveServiceLevel(BERLIN))
        record = start("c1", Decision(action=Action.QUEUE, tenant="wardenburg"), T0)
        metrics.observe(record, None)
        for event in (
            CallEvent(EventKind.JOIN, T0 + timedelta(seconds=1), queue="sc"),
            CallEvent(EventKind.RING, T0 + timedelta(seconds=2), agent="a1"),
            CallEvent(EventKind.NO_ANSWER, T0 + timedelta(seconds=6), agent="a1"),
            CallEvent(EventKind.RING, T0 + timedelta(seconds=7), agent="a2"),
            CallEvent(EventKind.CONNECT, T0 + timedelta(seconds=26), agent="a2", hold_s=25),
        ):
            record = advance(record, event).record
            metrics.observe(record, event)
        got = samples(registry)
        w = (("tenant", "wardenburg"),)
        assert got[("pbxbridge_calls_routed_total", (("action", "queue"),) + w)] == 1
        assert got[("pbxbridge_calls_offered_total", w)] == 1  # not again after no-answer
        assert got[("pbxbridge_calls_answered_total", w)] == 1
        assert (
            got[("pbxbridge_wait_seconds_bucket", (("le", "20.0"), ("outcome", "answered")) + w)]
            == 0
        )
        assert (
            got[("pbxbridge_wait_seconds_bucket", (("le", "30.0"), ("outcome", "answered")) + w)]
            == 1
        )
        assert metrics.live.figures(T0 + timedelta(seconds=30))[("wardenburg", "15m")] == (0.0, 0.0)


class TestScrapeCollector:
    def test_gauges_read_at_scrape_time(self) -> None:
        registry = CollectorRegistry()
        state = {"waiting": 3.0}
        registry.register(
            ScrapeCollector(
                lambda: [("pbxbridge_calls_waiting", {"tenant": "a"}, state["waiting"])],
                {"pbxbridge_calls_waiting": "waiting now"},
            )
        )
        assert samples(registry)[("pbxbridge_calls_waiting", (("tenant", "a"),))] == 3.0
        state["waiting"] = 1.0
        assert samples(registry)[("pbxbridge_calls_waiting", (("tenant", "a"),))] == 1.0
