"""The forecast's half-hour sums (pbxbridge.journal.forecast): SQL and the Python fold agree.

The expected sums of :func:`mixed_rows` are worked out by hand below; the
SQLite journal's ``GROUP BY`` and :func:`fold_half_hours` over the same rows
must both give them (the PostgreSQL journal is held to the same in
tests/integration/test_journal_forecast_postgres.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.journal.entry import JournalEntry, Outcome
from pbxbridge.journal.forecast import (
    HalfHour,
    fold_half_hours,
    half_hours,
    handle_times,
    history_rows,
)
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import CallRow, JournalStore

BERLIN = ZoneInfo("Europe/Berlin")
# Monday 2 March 2026, 09:00 and 09:30 Berlin (CET) are 08:00 and 08:30 UTC.
NINE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
HALF_PAST = NINE + timedelta(minutes=30)


def call(n: int, at: datetime, **kw: object) -> JournalEntry:
    base = JournalEntry(
        node="n1", call_id=f"c{n}", tenant="a", did="", caller=None, via_115=False,
        action="queue", reasons=(), arrived_at=at, queued_at=at, answered_at=None,
        ended_at=None, outcome=Outcome.IN_PROGRESS, agent="", queue="q", wait_s=None,
        talk_s=None, rings=(),
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def answered(n: int, at: datetime, wait: float | None, talk: float, **kw: object) -> JournalEntry:
    ans = at + timedelta(seconds=8)
    return call(
        n, at, answered_at=ans, ended_at=ans + timedelta(seconds=talk),
        outcome=Outcome.ANSWERED, wait_s=wait, talk_s=talk, **kw,
    )  # fmt: skip


def mixed_rows() -> list[tuple[JournalEntry, float | None]]:
    """Calls and the wrap-up (seconds after the end) to record for each, or ``None``."""
    t = NINE
    return [
        (answered(1, t, 4.0, 100.0), 20.0),  # wrap 20
        (answered(2, t + timedelta(minutes=1), None, 200.0), 2000.0),  # wait 8, wrap 900
        (answered(3, t + timedelta(minutes=2), 6.0, 60.0), None),  # no disposition
        (answered(4, t + timedelta(minutes=3), 1.0, 30.0), -5.0),  # disposition before the end: 0
        (call(5, t + timedelta(minutes=4), ended_at=t + timedelta(minutes=4, seconds=30),
              outcome=Outcome.ABANDONED), None),  # abandoned, wait 30 from times
        (call(6, t + timedelta(minutes=5), ended_at=t + timedelta(minutes=6),
              outcome=Outcome.ABANDONED, wait_s=12.0), None),
        (call(7, t + timedelta(minutes=6), ended_at=t + timedelta(minutes=8),
              outcome=Outcome.UNANSWERED, wait_s=120.0), None),  # queue timeout: waits, no abandon
        (call(8, t + timedelta(minutes=7), action="closed", outcome=Outcome.CLOSED,
              queued_at=None), None),  # not offered
        (call(9, t + timedelta(minutes=8), action="reject", outcome=Outcome.REJECTED,
              tenant=""), None),  # not offered
        (call(10, t + timedelta(minutes=9), action="closed", outcome=Outcome.ANSWERED,
              answered_at=t + timedelta(minutes=10), talk_s=50.0), None),  # after-hours queue
        (answered(11, HALF_PAST + timedelta(minutes=1), 2.0, 300.0, tenant="b"), 10.0),
        (answered(12, HALF_PAST - timedelta(hours=25), 2.0, 300.0), 10.0),  # the day before
    ]  # fmt: skip


EXPECTED = [
    HalfHour("a", HALF_PAST - timedelta(hours=25), 1, 1, 300.0, 1, 10.0, 0, 2.0),
    # offered 1-7; answered 1-4 (talk 390); wrapped 1, 2, 4 (20 + 900 + 0);
    # abandoned 5, 6; waits 4 + 8 + 6 + 1 + 30 + 12 + 120.
    HalfHour("a", NINE, 7, 4, 390.0, 3, 920.0, 2, 181.0),
    HalfHour("b", HALF_PAST, 1, 1, 300.0, 1, 10.0, 0, 2.0),
]


def fill(store: JournalStore) -> None:
    rows = mixed_rows()
    store.upsert([e for e, _ in rows])
    for entry, wrap in rows:
        if wrap is not None:
            assert entry.ended_at is not None
            at = entry.ended_at + timedelta(seconds=wrap)
            assert store.set_disposition("n1", entry.call_id, "resolved", "x", "", None, None, at)


class TestHalfHours:
    @pytest.fixture
    def store(self, tmp_path: Path) -> SqliteJournal:
        journal = SqliteJournal(tmp_path / "journal.sqlite")
        fill(journal)
        return journal

    def test_sqlite_sums_by_hand(self, store: SqliteJournal) -> None:
        sums = half_hours(store, date(2026, 3, 1), date(2026, 3, 2), BERLIN)
        assert sums == EXPECTED
        assert half_hours(store, date(2026, 3, 2), date(2026, 3, 2), BERLIN, "b") == EXPECTED[2:]

    def test_fold_gives_the_same(self, store: SqliteJournal) -> None:
        rows = list(history_rows(store, date(2026, 3, 1), date(2026, 3, 2), BERLIN))
        assert fold_half_hours(rows) == EXPECTED

    def test_other_row_sources_are_folded(self, store: SqliteJournal) -> None:
        class Rows:
            def calls_between(
                self, start: datetime, end: datetime, tenant: str | None = None
            ) -> Iterator[CallRow]:
                return store.calls_between(start, end, tenant)

            def callbacks_due_between(
                self, start: datetime, end: datetime, tenant: str | None = None
            ) -> Iterator[CallRow]:
                return iter(())

        assert half_hours(Rows(), date(2026, 3, 1), date(2026, 3, 2), BERLIN) == EXPECTED

    def test_handle_times(self, store: SqliteJournal) -> None:
        rows = history_rows(store, date(2026, 3, 2), date(2026, 3, 2), BERLIN)
        times = handle_times(rows)
        # Call 3 has no disposition: the tenant's mean wrap-up (20 + 900 + 0) / 3.
        assert times["a"] == [120.0, 1100.0, 60.0 + 920.0 / 3, 30.0]
        assert times["b"] == [310.0]
        assert handle_times(
            history_rows(store, date(2026, 3, 2), date(2026, 3, 2), BERLIN), limit=1
        )["a"] == [30.0]
