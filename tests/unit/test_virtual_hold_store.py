"""Virtual holds in the node's SQLite state file (the behaviours PostgreSQL passes too).

:class:`VirtualHoldStoreBehaviour` is run against SQLite here and against the
machine's PostgreSQL in ``tests/integration/test_virtual_hold_store_postgres.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.core.models import OverrideState
from pbxbridge.core.virtual_hold import (
    VHoldEvent,
    VHoldState,
    VirtualHold,
    VirtualHoldPolicy,
    check_callback_number,
    offered,
    step,
)
from pbxbridge.storage.overrides import SqliteOverrideStore
from pbxbridge.storage.virtual_holds import (
    SqliteVirtualHoldStore,
    VirtualHoldStore,
    open_virtual_hold_store,
)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
POLICY = VirtualHoldPolicy(enabled=True, max_tries=2, retry_delay_s=60)
NUMBER = "+4915112345678"

OpenStore = Callable[[], VirtualHoldStore]


def new_hold(
    call_id: str, *, node: str = "n1", at: datetime = T0, tenant: str = "wardenburg"
) -> VirtualHold:
    return offered(
        node=node,
        call_id=call_id,
        tenant=tenant,
        queue="service",
        priority=3,
        caller="+494407730",
        arrived_at=at,
        at=at + timedelta(seconds=60),
        waited_s=55.5,
    )


def accepted(hold: VirtualHold, at: datetime) -> VirtualHold:
    number = check_callback_number(NUMBER)
    hold = step(hold, VHoldEvent.ACCEPTED, at=at, policy=POLICY, number=number, position=4)
    return step(hold, VHoldEvent.PLACEHOLDER_QUEUED, at=at, policy=POLICY)


def connected(hold: VirtualHold, at: datetime) -> VirtualHold:
    hold = step(hold, VHoldEvent.AGENT_REACHED, at=at, policy=POLICY, agent="anna")
    hold = step(hold, VHoldEvent.CALLING, at=at, policy=POLICY)
    return step(hold, VHoldEvent.CITIZEN_ANSWERED, at=at + timedelta(seconds=12), policy=POLICY)


class VirtualHoldStoreBehaviour:
    """What every backend does; subclasses give ``open_store``."""

    @pytest.fixture
    def store(self, open_store: OpenStore) -> Iterator[VirtualHoldStore]:
        with open_store() as store:
            yield store

    def test_round_trip_keeps_every_field(self, store: VirtualHoldStore) -> None:
        at = T0 + timedelta(minutes=2)
        hold = accepted(new_hold("c1"), at)
        hold = step(hold, VHoldEvent.AGENT_REACHED, at=at, policy=POLICY, agent="anna")
        hold = step(hold, VHoldEvent.CALLING, at=at, policy=POLICY)
        hold = step(hold, VHoldEvent.CITIZEN_FAILED, at=at, policy=POLICY, outcome="busy")
        store.save(hold)
        got = store.get("n1", "c1")
        assert got == hold
        assert got is not None and got.state is VHoldState.RETRY_WAIT
        assert got.next_try_at == at + timedelta(seconds=60)
        assert got.attempts[0].outcome == "busy" and got.attempts[0].agent == "anna"
        assert got.last_offer_waited_s == 55.5 and got.position == 4
        assert got.dial == "015112345678"

    def test_times_come_back_in_utc_whatever_zone_went_in(self, store: VirtualHoldStore) -> None:
        local = datetime(2026, 12, 1, 9, 0, tzinfo=BERLIN)
        store.save(new_hold("c1", at=local))
        got = store.get("n1", "c1")
        assert got is not None and got.arrived_at == T0 and got.arrived_at.tzinfo == UTC

    def test_unknown_hold(self, store: VirtualHoldStore) -> None:
        assert store.get("n1", "nope") is None

    def test_save_replaces(self, store: VirtualHoldStore) -> None:
        hold = new_hold("c1")
        assert store.save(hold)
        later = accepted(hold, T0 + timedelta(minutes=1))
        assert store.save(later)
        assert store.get("n1", "c1") == later

    def test_an_older_state_never_overwrites_a_newer_one(self, store: VirtualHoldStore) -> None:
        hold = accepted(new_hold("c1"), T0 + timedelta(minutes=1))
        later = connected(hold, T0 + timedelta(minutes=5))
        assert store.save(hold)
        assert store.save(later)
        assert not store.save(hold)  # a slow task with the old state
        assert store.get("n1", "c1") == later
        assert store.save(later)  # the same state again is fine

    def test_pending_lists_open_holds_by_acceptance(self, store: VirtualHoldStore) -> None:
        store.save(new_hold("offered-only"))
        store.save(accepted(new_hold("late"), T0 + timedelta(minutes=5)))
        store.save(accepted(new_hold("early"), T0 + timedelta(minutes=1)))
        store.save(accepted(new_hold("other", node="n2"), T0 + timedelta(minutes=3)))
        done = connected(accepted(new_hold("done"), T0), T0 + timedelta(minutes=9))
        store.save(done)
        assert [h.call_id for h in store.pending("n1")] == ["early", "late"]
        assert [h.call_id for h in store.pending()] == ["early", "other", "late"]

    def test_for_number_finds_pending_holds_by_number_or_caller(
        self, store: VirtualHoldStore
    ) -> None:
        store.save(accepted(new_hold("c1"), T0))
        store.save(connected(accepted(new_hold("c2"), T0), T0))
        assert [h.call_id for h in store.for_number(NUMBER)] == ["c1"]
        assert [h.call_id for h in store.for_number("+494407730")] == ["c1"]
        assert store.for_number("+4930123456") == []
        assert store.for_number("") == []

    def test_between_by_arrival_and_tenant(self, store: VirtualHoldStore) -> None:
        store.save(new_hold("a", at=T0))
        store.save(new_hold("b", at=T0 + timedelta(hours=1), tenant="friesland"))
        store.save(new_hold("c", at=T0 + timedelta(hours=2)))
        got = store.between(T0, T0 + timedelta(hours=2))
        assert [h.call_id for h in got] == ["a", "b"]
        only = store.between(T0, T0 + timedelta(hours=3), "wardenburg")
        assert [h.call_id for h in only] == ["a", "c"]

    def test_purge_removes_numbers_of_finished_holds_only(self, store: VirtualHoldStore) -> None:
        old_done = connected(accepted(new_hold("done"), T0), T0)
        old_open = accepted(new_hold("open"), T0)
        recent = connected(accepted(new_hold("new", at=T0 + timedelta(days=2)), T0), T0)
        for hold in (old_done, old_open, recent):
            store.save(hold)
        cut = T0 + timedelta(days=1)
        assert store.purge(cut, cut) == 1
        assert store.purge(cut, cut) == 0  # idempotent
        purged = store.get("n1", "done")
        assert purged is not None
        assert (purged.caller, purged.number, purged.dial) == (None, None, "")
        assert all(detail == "" for _, _, detail in purged.events)
        assert purged.state is VHoldState.CONNECTED and purged.connected_at == old_done.connected_at
        assert store.get("n1", "open") == old_open
        assert store.get("n1", "new") == recent

    def test_a_late_save_does_not_bring_a_purged_number_back(self, store: VirtualHoldStore) -> None:
        hold = connected(accepted(new_hold("c1"), T0), T0)
        store.save(hold)
        store.purge(T0 + timedelta(days=1), T0 + timedelta(days=1))
        store.save(hold)
        got = store.get("n1", "c1")
        assert got is not None and got.number is None and got.caller is None

    def test_naive_times_and_nul_are_refused(self, store: VirtualHoldStore) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            store.save(replace(new_hold("c1"), updated_at=datetime(2026, 12, 1, 8, 0)))
        with pytest.raises(ValueError, match="NUL"):
            store.save(replace(new_hold("c1"), agent="a\x00b"))
        assert store.get("n1", "c1") is None

    def test_survives_reopening(self, open_store: OpenStore) -> None:
        hold = accepted(new_hold("c1"), T0)
        with open_store() as store:
            store.save(hold)
        with open_store() as store:
            assert store.pending() == [hold]


class TestSqliteVirtualHoldStore(VirtualHoldStoreBehaviour):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> OpenStore:
        return lambda: SqliteVirtualHoldStore(tmp_path / "state" / "pbxbridge.sqlite")

    def test_shares_the_state_file_with_the_overrides(self, tmp_path: Path) -> None:
        path = tmp_path / "pbxbridge.sqlite"
        with SqliteOverrideStore(path) as overrides:
            overrides.set("wardenburg", OverrideState.CLOSED, "Sturm", at=T0)
        with open_virtual_hold_store("", path) as store:
            assert store.backend == "sqlite"
            store.save(new_hold("c1"))
        with SqliteOverrideStore(path) as overrides:
            assert [o.reason for o in overrides.active(T0)] == ["Sturm"]
        db = sqlite3.connect(path)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.close()
        assert {"overrides", "virtual_holds"} <= tables
        assert version == 2

    def test_an_existing_state_file_is_upgraded(self, tmp_path: Path) -> None:
        path = tmp_path / "pbxbridge.sqlite"
        db = sqlite3.connect(path)
        db.executescript(
            "CREATE TABLE overrides (id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL,"
            " state TEXT NOT NULL, reason TEXT NOT NULL, set_at TEXT NOT NULL, expires_at TEXT,"
            " set_by TEXT NOT NULL DEFAULT '', cleared_at TEXT, cleared_by TEXT);"
            "INSERT INTO overrides (scope, state, reason, set_at)"
            " VALUES ('*', 'closed', 'alt', '2026-12-01T08:00:00.000000Z');"
            "PRAGMA user_version = 1;"
        )
        db.close()
        with SqliteVirtualHoldStore(path) as store:
            store.save(new_hold("c1"))
            assert store.get("n1", "c1") is not None
        with SqliteOverrideStore(path) as overrides:
            assert [o.reason for o in overrides.active(T0)] == ["alt"]
