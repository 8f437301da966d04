"""The forecast's half-hour sums from the PostgreSQL journal (real server): the same as SQLite's.

The rows and the sums worked out by hand are those of tests/unit/test_journal_forecast.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from pbxbridge.journal.forecast import fold_half_hours, half_hours, history_rows
from pbxbridge.journal.postgres import PostgresJournal
from tests.postgres import query
from tests.unit.test_journal_forecast import BERLIN, EXPECTED, fill

pytestmark = pytest.mark.postgres


class TestHalfHoursPostgres:
    @pytest.fixture
    def store(self, database: str) -> Iterator[PostgresJournal]:
        query(database, "TRUNCATE calls")
        with PostgresJournal(database) as journal:
            fill(journal)
            yield journal

    def test_sums_by_hand(self, store: PostgresJournal) -> None:
        assert half_hours(store, date(2026, 3, 1), date(2026, 3, 2), BERLIN) == EXPECTED
        assert half_hours(store, date(2026, 3, 2), date(2026, 3, 2), BERLIN, "b") == EXPECTED[2:]

    def test_fold_gives_the_same(self, store: PostgresJournal) -> None:
        rows = history_rows(store, date(2026, 3, 1), date(2026, 3, 2), BERLIN)
        assert fold_half_hours(rows) == EXPECTED
