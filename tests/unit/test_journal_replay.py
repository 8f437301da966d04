"""Replaying the journal (pbxbridge.journal.replay): the reload's background summary."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pbxbridge.core import OverrideState, Rules
from pbxbridge.journal.replay import ReloadImpact, override_timeline, replay_journal
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.storage.overrides import SqliteOverrideStore
from tests.unit.test_cli_replay import entry
from tests.unit.test_replay import RULES, WAR_DID, rules_from

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday


def monday(hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 11, 23, tzinfo=UTC) + timedelta(hours=h - 1, minutes=m)


@pytest.fixture
def rules(tmp_path: Path) -> tuple[Rules, Rules]:
    current = RULES.replace("CAL", "sc")
    new = current.replace(
        'dids: ["+49 4407 73-0"]\n    calendar: sc\n    open: {queue: sc, priority: 5}',
        'dids: ["+49 4407 73-0"]\n    calendar: sc\n    open: {queue: sc, priority: 9}',
    )
    return rules_from(tmp_path, current, "current"), rules_from(tmp_path, new, "new")


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "journal.sqlite"
    with SqliteJournal(path) as store:
        store.upsert(
            [
                entry("a", WAR_DID, "+494411234567", monday("10:00")),
                entry("b", WAR_DID, "+494411234568", monday("11:00")),
                entry("night", WAR_DID, "+494411234569", monday("22:00")),
                entry("old", WAR_DID, "+494411234560", NOW - timedelta(days=8)),
            ]
        )
    return path


class TestReloadImpact:
    async def test_logs_one_line_of_counts_and_keeps_it_for_health(
        self, rules: tuple[Rules, Rules], journal: Path
    ) -> None:
        impact = ReloadImpact(lambda: SqliteJournal(journal), clock=lambda: NOW)
        with capture_logs() as logs:
            await impact.start(*rules, generation=2)
        (line,) = [e for e in logs if e["event"].startswith("rules.replay")]
        assert line == {
            "event": "rules.replay",
            "log_level": "info",
            "generation": 2,
            "days": 7,
            "calls": 3,  # the call 8 days ago is outside the week
            "replayed": 3,
            "changed": 2,
            "not_replayable": 0,
            "by_kind": {"priority": 2},
            "by_tenant": {"wardenburg": 2},
        }
        assert impact.last is not None and impact.last["changed"] == 2
        assert impact.last["generation"] == 2 and impact.last["at"] == NOW.isoformat()
        assert "+49" not in str(logs)  # no numbers, not even shortened ones

    async def test_an_unreadable_journal_is_shown_not_raised(
        self, rules: tuple[Rules, Rules], tmp_path: Path
    ) -> None:
        def broken() -> SqliteJournal:
            raise OSError("disk +494411234567 gone")

        impact = ReloadImpact(broken, clock=lambda: NOW)
        with capture_logs() as logs:
            await impact.start(*rules, generation=3)
        assert impact.last is not None
        assert impact.last["generation"] == 3
        assert "disk" in str(impact.last["error"]) and "+494411234567" not in str(impact.last)
        assert [e["event"] for e in logs] == ["rules.replay_failed"]

    async def test_a_newer_reload_cancels_the_running_one(
        self, rules: tuple[Rules, Rules], journal: Path
    ) -> None:
        impact = ReloadImpact(lambda: SqliteJournal(journal), clock=lambda: NOW)
        first = impact.start(*rules, generation=2)
        second = impact.start(rules[1], rules[0], generation=3)
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
        assert impact.last is not None and impact.last["generation"] == 3

    async def test_the_event_loop_keeps_running(
        self, rules: tuple[Rules, Rules], tmp_path: Path
    ) -> None:
        """50,000 calls (about a second of work): the loop never waits long for it."""
        path = tmp_path / "big.sqlite"
        with SqliteJournal(path) as store:
            store.upsert(
                [
                    entry(
                        f"c{i}",
                        WAR_DID,
                        f"+49441{1000000 + i}",
                        NOW - timedelta(seconds=10 * i + 10),
                    )
                    for i in range(50_000)
                ]
            )
        impact = ReloadImpact(lambda: SqliteJournal(path), clock=lambda: NOW)
        task = impact.start(*rules, generation=2)
        worst = 0.0
        while not task.done():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - before)
        await task
        assert impact.last is not None and impact.last["calls"] == 50_000
        assert worst < 0.25, f"the loop waited {worst:.3f} s"


class TestOverrideTimeline:
    def test_reads_the_whole_history_with_clears(self, tmp_path: Path) -> None:
        with SqliteOverrideStore(tmp_path / "state.sqlite") as store:
            a = store.set("wardenburg", OverrideState.CLOSED, "Sturm", at=monday("10:00"))
            store.clear(at=monday("11:00"), override_id=a.id)
            store.set("*", OverrideState.OPEN, "Wahl", at=monday("12:00"))
            timeline = override_timeline(store)
        assert [o.id for o in timeline.at(monday("10:30"))[1]] == [a.id]
        assert timeline.at(monday("11:00"))[1] == ()
        assert [o.scope for o in timeline.at(monday("13:00"))[1]] == ["*"]
        assert override_timeline(None).at(monday("10:30"))[1] == ()


def test_replay_journal_reads_the_period(rules: tuple[Rules, Rules], journal: Path) -> None:
    with SqliteJournal(journal) as store:
        report = replay_journal(store, *rules, monday("00:00"), monday("10:30"))
    assert [c.call_id for c in report.changed] == ["a"]
