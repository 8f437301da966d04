"""The call journal's stores: SQLite (and its migrations), PostgreSQL errors.

Store behaviours live in :class:`StoreBehaviour`, run here against SQLite in a
temporary directory and, by ``tests/integration/test_journal_postgres.py``,
against the machine's PostgreSQL: both stores must mean the same thing. The
writer is tested in ``test_journal_writer.py``, retention in
``test_journal_retention.py``; the helpers here build the entries for all three.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbxbridge.core.lifecycle import CallEvent, EventKind, advance, start
from pbxbridge.core.models import Action, Decision
from pbxbridge.journal.entry import JournalEntry, Outcome, entry_from_record
from pbxbridge.journal.postgres import PostgresJournal
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import (
    ALL_COLUMNS,
    MAX_NOTE_CHARS,
    CallRow,
    JournalStore,
)
from pbxbridge.storage.schema import JOURNAL_SQLITE_MIGRATIONS as SQLITE_MIGRATIONS
from pbxbridge.storage.schema import JOURNAL_SQLITE_VERSION as SCHEMA_VERSION

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CALLER = "+494411234567"
ROOT = Path(__file__).resolve().parents[2]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def entry(call_id: str = "c1", **changes: object) -> JournalEntry:
    """A call that has just been routed (override any column)."""
    base = JournalEntry(
        node="n1",
        call_id=call_id,
        tenant="wardenburg",
        did="+494407730",
        caller=CALLER,
        via_115=False,
        action="queue",
        reasons=("DID +494407730 matched tenant wardenburg", "open → queue servicecenter"),
        arrived_at=T0,
        queued_at=None,
        answered_at=None,
        ended_at=None,
        outcome=Outcome.IN_PROGRESS,
        agent="",
        queue="",
        wait_s=None,
        talk_s=None,
        rings=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def versions(call_id: str, node: str = "n1", arrived: datetime = T0) -> list[JournalEntry]:
    """The five states a call goes through (routed, queued, ringing, answered, ended)."""
    e0 = entry(call_id, node=node, arrived_at=arrived)
    e1 = replace(e0, queued_at=arrived + timedelta(seconds=1), queue="servicecenter")
    ring = {
        "agent": "agent1",
        "started": (arrived + timedelta(seconds=2)).isoformat(),
        "ended": None,
        "outcome": None,
    }
    e2 = replace(e1, agent="agent1", rings=(ring,))
    answered = {
        **ring,
        "ended": (arrived + timedelta(seconds=5)).isoformat(),
        "outcome": "answered",
    }
    e3 = replace(
        e2,
        answered_at=arrived + timedelta(seconds=5),
        outcome=Outcome.ANSWERED,
        wait_s=4.0,
        rings=(answered,),
    )
    e4 = replace(e3, ended_at=arrived + timedelta(seconds=65), talk_s=60.0)
    return [e0, e1, e2, e3, e4]


def lifecycle_entries(call_id: str, node: str = "n1") -> list[JournalEntry]:
    """The entries the daemon would submit for an answered call (real lifecycle)."""
    decision = Decision(
        action=Action.QUEUE,
        tenant="wardenburg",
        did="+494407730",
        caller=CALLER,
        reasons=("open → queue servicecenter",),
    )
    record = start(call_id, decision, T0)
    out = [entry_from_record(record, node)]
    for event in (
        CallEvent(EventKind.JOIN, at(1), queue="servicecenter"),
        CallEvent(EventKind.RING, at(2), agent="agent1"),
        CallEvent(EventKind.CONNECT, at(5), agent="agent1", hold_s=4.0),
        CallEvent(EventKind.COMPLETE, at(65), agent="agent1", talk_s=60.0),
    ):
        record = advance(record, event).record
        out.append(entry_from_record(record, node))
    return out


def lifecycle_of(row: CallRow) -> JournalEntry:
    """The entry a row was written from (to compare rows with entries)."""
    return JournalEntry(**{c: getattr(row, c) for c in JournalEntry.__slots__})


def keys(rows: Iterator[CallRow] | list[CallRow]) -> list[tuple[str, str]]:
    return [(r.node, r.call_id) for r in rows]


# ------------------------------------------------------------------ store behaviours


class StoreBehaviour:
    """What every JournalStore must do; subclasses provide the ``store`` fixture."""

    def test_empty_store(self, store: JournalStore) -> None:
        assert list(store.calls_between(at(-1e6), at(1e6))) == []
        assert store.open_callbacks() == []
        assert store.repeat_count(CALLER, at(-1e6)) == 0
        assert store.purge(at(1e6), at(1e6)) == 0

    def test_upsert_then_read_every_column(self, store: JournalStore) -> None:
        e = versions("c1")[-1]
        store.upsert([e])
        (row,) = store.calls_between(T0, at(1))
        assert lifecycle_of(row) == e
        assert row.disposition is None and row.callback_number is None
        assert row.purged_at is None
        # CallRow extends JournalEntry (its own __slots__ are the disposition
        # columns): the fields in order, inherited ones first, are the columns.
        assert [f.name for f in fields(CallRow)] == list(ALL_COLUMNS)

    def test_upsert_updates_the_row_in_place(self, store: JournalStore) -> None:
        for v in versions("c1"):
            store.upsert([v])
        (row,) = store.calls_between(T0, at(1))
        assert lifecycle_of(row) == versions("c1")[-1]

    def test_upsert_last_version_in_a_batch_wins(self, store: JournalStore) -> None:
        vs = versions("c1")
        store.upsert([vs[0], vs[3], vs[1]])
        (row,) = store.calls_between(T0, at(1))
        assert lifecycle_of(row) == vs[1]

    def test_lifecycle_update_keeps_the_disposition(self, store: JournalStore) -> None:
        vs = versions("c1")
        store.upsert([vs[3]])  # answered: the agent fills in the form during the call
        assert store.set_disposition(
            "n1",
            "c1",
            "callback",
            "agent1",
            "Rückruf wegen Wohngeld",
            "+494417654321",
            at(3600),
            at(30),
        )
        store.upsert([vs[4]])  # the call ends afterwards
        (row,) = store.calls_between(T0, at(1))
        assert lifecycle_of(row) == vs[4]
        assert (row.disposition, row.disposition_by, row.disposition_note) == (
            "callback",
            "agent1",
            "Rückruf wegen Wohngeld",
        )
        assert row.callback_number == "+494417654321"
        assert row.disposition_at == at(30) and row.callback_due_at == at(3600)

    def test_times_round_trip_as_aware_utc(self, store: JournalStore) -> None:
        local = datetime(2026, 3, 29, 2, 59, 59, 999_999, tzinfo=UTC).astimezone(BERLIN)
        e = replace(
            versions("c1")[-1],
            arrived_at=local,
            queued_at=local + timedelta(microseconds=1),
            answered_at=local + timedelta(hours=1, microseconds=123_457),
            ended_at=datetime(2026, 3, 29, 4, 0, tzinfo=timezone(timedelta(hours=-5))),
        )
        store.upsert([e])
        (row,) = store.calls_between(local, local + timedelta(seconds=1))
        for name in ("arrived_at", "queued_at", "answered_at", "ended_at"):
            value = getattr(row, name)
            assert value == getattr(e, name), name
            assert value.tzinfo is UTC, name

    def test_naive_times_are_refused(self, store: JournalStore) -> None:
        naive = datetime(2026, 11, 25, 9, 0)
        with pytest.raises(ValueError, match="timezone-aware"):
            store.upsert([entry(arrived_at=naive)])
        with pytest.raises(ValueError, match="timezone-aware"):
            store.calls_between(naive, at(1))
        with pytest.raises(ValueError, match="timezone-aware"):
            store.repeat_count(CALLER, naive)
        with pytest.raises(ValueError, match="timezone-aware"):
            store.purge(naive, at(0))
        assert list(store.calls_between(at(-1e6), at(1e6))) == []

    def test_calls_between_is_half_open(self, store: JournalStore) -> None:
        tick = timedelta(microseconds=1)
        start, end = at(0), at(3600)
        store.upsert(
            [
                entry("before", arrived_at=start - tick),
                entry("first", arrived_at=start),
                entry("last", arrived_at=end - tick),
                entry("end", arrived_at=end),
            ]
        )
        assert [r.call_id for r in store.calls_between(start, end)] == ["first", "last"]
        assert list(store.calls_between(start, start)) == []

    def test_calls_between_by_tenant(self, store: JournalStore) -> None:
        store.upsert(
            [
                entry("a", tenant="wardenburg"),
                entry("b", tenant="oldenburg"),
                entry("r", tenant="", action="reject", outcome=Outcome.REJECTED),
            ]
        )
        assert [r.call_id for r in store.calls_between(at(0), at(1), "oldenburg")] == ["b"]
        assert [r.call_id for r in store.calls_between(at(0), at(1), "")] == ["r"]
        assert len(list(store.calls_between(at(0), at(1)))) == 3

    def test_calls_between_orders_and_pages_through_many_rows(self, store: JournalStore) -> None:
        # 4,500 rows (more than two pages), many sharing an arrival time and
        # split over two nodes: the keyset paging must neither skip nor repeat.
        entries = [entry(f"c{i:05d}", node=f"n{i % 2}", arrived_at=at(i // 7)) for i in range(4500)]
        store.upsert(entries)
        got = keys(store.calls_between(at(0), at(10_000)))
        assert got == sorted(
            ((e.node, e.call_id) for e in entries), key=lambda k: (int(k[1][1:]) // 7, k[0], k[1])
        )
        assert len(set(got)) == 4500

    def test_writing_while_iterating(self, store: JournalStore) -> None:
        # The iterator holds no lock or transaction between rows: the writer may
        # write while a report iterates (the new row may or may not show up).
        store.upsert([entry(f"c{i}", arrived_at=at(i)) for i in range(5)])
        rows = store.calls_between(at(0), at(10))
        assert next(rows).call_id == "c0"
        store.upsert([entry("late", arrived_at=at(5))])
        assert [r.call_id for r in rows][:4] == ["c1", "c2", "c3", "c4"]
        assert len(list(store.calls_between(at(0), at(10)))) == 6

    def test_repeat_count(self, store: JournalStore) -> None:
        store.upsert(
            [
                entry("old", arrived_at=at(-8 * 86400)),
                entry("edge", arrived_at=at(-7 * 86400)),
                entry("recent", arrived_at=at(-60)),
                entry("other-node", node="n2", arrived_at=at(-30)),
                entry("other", caller="+4944199999"),
                entry("withheld", caller=None),
            ]
        )
        assert store.repeat_count(CALLER, at(-7 * 86400)) == 3
        assert store.repeat_count(CALLER, at(-59)) == 1
        assert store.repeat_count("+4944199999", at(-1)) == 1
        assert store.repeat_count("", at(-1e6)) == 0

    def test_set_disposition_resolved(self, store: JournalStore) -> None:
        store.upsert([entry("c1")])
        assert store.set_disposition("n1", "c1", "resolved", "agent1", "", None, None, at(90))
        (row,) = store.calls_between(at(0), at(1))
        assert (row.disposition, row.disposition_by, row.disposition_at) == (
            "resolved",
            "agent1",
            at(90),
        )
        assert row.callback_due_at is None
        assert store.open_callbacks() == []

    def test_set_disposition_of_an_unknown_call(self, store: JournalStore) -> None:
        store.upsert([entry("c1")])
        assert not store.set_disposition("n2", "c1", "resolved", "a", "", None, None, at(1))
        assert not store.mark_callback_done("n1", "nope", at(1))

    def test_set_disposition_validates(self, store: JournalStore) -> None:
        store.upsert([entry("c1")])
        with pytest.raises(ValueError, match="unknown disposition"):
            store.set_disposition("n1", "c1", "later", "a", "", None, None, at(1))
        with pytest.raises(ValueError, match="longer"):
            store.set_disposition(
                "n1", "c1", "resolved", "a", "x" * (MAX_NOTE_CHARS + 1), None, None, at(1)
            )
        with pytest.raises(ValueError, match="due time"):
            store.set_disposition("n1", "c1", "callback", "a", "", CALLER, None, at(1))
        with pytest.raises(ValueError, match="resolved"):
            store.set_disposition("n1", "c1", "resolved", "a", "", CALLER, None, at(1))
        with pytest.raises(ValueError, match="timezone-aware"):
            store.set_disposition(
                "n1", "c1", "callback", "a", "", CALLER, datetime(2026, 11, 26), at(1)
            )
        # the maximum is allowed
        assert store.set_disposition(
            "n1", "c1", "resolved", "a", "x" * MAX_NOTE_CHARS, None, None, at(1)
        )

    def test_callbacks_open_done_and_ordered(self, store: JournalStore) -> None:
        store.upsert(
            [
                entry("c1"),
                entry("c2", tenant="oldenburg"),
                entry("c3"),
                entry("c4"),
            ]
        )
        store.set_disposition("n1", "c1", "callback", "a1", "", CALLER, at(7200), at(60))
        store.set_disposition("n1", "c2", "callback", "a2", "", CALLER, at(3600), at(60))
        store.set_disposition("n1", "c3", "callback", "a1", "", CALLER, at(5400), at(60))
        store.set_disposition("n1", "c4", "resolved", "a1", "", None, None, at(60))
        assert [r.call_id for r in store.open_callbacks()] == ["c2", "c3", "c1"]
        assert [r.call_id for r in store.open_callbacks("wardenburg")] == ["c3", "c1"]
        assert store.mark_callback_done("n1", "c3", at(4000))
        assert not store.mark_callback_done("n1", "c3", at(4001))  # done already
        assert not store.mark_callback_done("n1", "c4", at(4001))  # not a callback
        assert [r.call_id for r in store.open_callbacks()] == ["c2", "c1"]
        (c3,) = (r for r in store.calls_between(at(0), at(1)) if r.call_id == "c3")
        assert c3.callback_done_at == at(4000)

    def test_a_new_disposition_replaces_the_callback(self, store: JournalStore) -> None:
        store.upsert([entry("c1")])
        store.set_disposition("n1", "c1", "callback", "a1", "", CALLER, at(7200), at(60))
        store.mark_callback_done("n1", "c1", at(100))
        store.set_disposition("n1", "c1", "callback", "a2", "again", CALLER, at(9000), at(200))
        (row,) = store.open_callbacks()
        assert (row.disposition_by, row.callback_done_at, row.callback_due_at) == (
            "a2",
            None,
            at(9000),
        )
        store.set_disposition("n1", "c1", "resolved", "a2", "", None, None, at(300))
        assert store.open_callbacks() == []
        (row,) = store.calls_between(at(0), at(1))
        assert row.callback_number is None and row.callback_due_at is None

    def test_purge_removes_numbers_and_keeps_aggregates(self, store: JournalStore) -> None:
        old = versions("old", arrived=at(-91 * 86400))[-1]
        new = versions("new", arrived=at(-89 * 86400))[-1]
        store.upsert([old, new])
        store.set_disposition(
            "n1",
            "old",
            "callback",
            "a1",
            "Frau Meyer, Hauptstr. 1",
            "+4944170000",
            at(-90 * 86400),
            at(-91 * 86400 + 100),
        )
        store.set_disposition(
            "n1", "new", "resolved", "a1", "Herr Kühn", None, None, at(-89 * 86400 + 100)
        )
        assert store.purge(at(-90 * 86400), at(0)) == 1
        rows = {r.call_id: r for r in store.calls_between(at(-1e8), at(1))}
        purged = rows["old"]
        assert purged.caller is None and purged.callback_number is None
        # the note is free text and may name the caller: it goes too
        assert purged.disposition_note is None
        # the routing trace names the caller (whole, in journals written
        # before callers were shortened in reasons): emptied
        assert purged.reasons == ()
        assert purged.purged_at == at(0)
        # everything the reports need stays
        assert replace(lifecycle_of(purged), caller=CALLER, reasons=old.reasons) == old
        assert (purged.disposition, purged.callback_due_at) == ("callback", at(-90 * 86400))
        assert (purged.disposition_by, purged.disposition_at) == ("a1", at(-91 * 86400 + 100))
        assert rows["new"].caller == CALLER and rows["new"].purged_at is None
        assert rows["new"].disposition_note == "Herr Kühn"
        assert rows["new"].reasons == new.reasons
        assert store.repeat_count(CALLER, at(-1e8)) == 1
        # idempotent: the first purge time stays
        assert store.purge(at(-90 * 86400), at(10)) == 0
        assert store.purge(at(-80 * 86400), at(20)) == 1
        rows = {r.call_id: r for r in store.calls_between(at(-1e8), at(1))}
        assert rows["old"].purged_at == at(0) and rows["new"].purged_at == at(20)

    def test_pages_through_a_range_with_ties(
        self, store: JournalStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import pbxbridge.journal.store as store_module

        monkeypatch.setattr(store_module, "_PAGE", 3)
        # 11 calls, several arriving at the same instant on two nodes, across pages
        calls = [entry(f"c{i:02d}", node=f"n{i % 2}", arrived_at=at(i // 3)) for i in range(11)]
        store.upsert([*calls, entry("early", arrived_at=at(-5)), entry("late", arrived_at=at(9))])
        got = keys(store.calls_between(at(0), at(4)))
        expected = sorted((c.node, c.call_id) for c in calls)
        assert sorted(got) == expected and len(got) == len(set(got)) == 11
        assert [c for c in got] == sorted(
            got, key=lambda k: ({c.call_id: c.arrived_at for c in calls}[k[1]], k[0], k[1])
        )

    def test_the_menu_digit_is_stored_and_outlives_the_purge(self, store: JournalStore) -> None:
        pressed = entry("pressed", did="+49441115", via_115=True, menu_digit="2")
        timed_out = entry("timeout", did="+49441115", via_115=True, menu_digit="")
        store.upsert([pressed, timed_out, entry("none")])
        store.purge(at(1), at(2))
        rows = {r.call_id: r for r in store.calls_between(at(-1), at(1))}
        assert (rows["pressed"].menu_digit, rows["timeout"].menu_digit) == ("2", "")
        assert rows["none"].menu_digit is None
        assert rows["pressed"].caller is None  # purged, the digit stays

    def test_purged_numbers_do_not_come_back(self, store: JournalStore) -> None:
        vs = versions("c1", arrived=at(-100 * 86400))
        store.upsert([vs[3]])
        store.purge(at(-90 * 86400), at(0))
        store.upsert([vs[4]])  # e.g. a spool replayed late
        store.set_disposition(
            "n1", "c1", "callback", "a1", "ruft wegen Ausweis an", CALLER, at(60), at(1)
        )
        (row,) = store.calls_between(at(-1e8), at(1))
        assert row.caller is None and row.callback_number is None
        assert row.disposition_note is None and row.reasons == ()
        assert (row.disposition, row.disposition_by) == ("callback", "a1")
        assert row.talk_s == 60.0  # the lifecycle update itself was applied

    def test_purge_works_in_batches(
        self, store: JournalStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.upsert([entry(f"old{i}", arrived_at=at(-100 * 86400 + i)) for i in range(10)])
        store.upsert([entry("new", arrived_at=at(-10 * 86400))])
        monkeypatch.setattr(store, "_purge_batch", 3)
        statements: list[str] = []
        write = store._write  # type: ignore[attr-defined]

        def counted(sql: str, params: Sequence[object]) -> int:
            statements.append(sql)
            return int(write(sql, params))

        monkeypatch.setattr(store, "_write", counted)
        assert store.purge(at(-90 * 86400), at(0)) == 10
        assert len(statements) == 5  # 3 + 3 + 3 + 1 + 0, each its own transaction
        rows = {r.call_id: r for r in store.calls_between(at(-1e8), at(1))}
        assert all(rows[f"old{i}"].purged_at == at(0) for i in range(10))
        assert rows["new"].purged_at is None and rows["new"].caller == CALLER
        statements.clear()
        assert store.purge(at(-90 * 86400), at(5)) == 0
        assert len(statements) == 1

    def test_callbacks_due_between_by_deadline_not_arrival(self, store: JournalStore) -> None:
        day = 86400
        store.upsert(
            [
                entry("long_ago", arrived_at=at(-60 * day)),
                entry("done", arrived_at=at(-40 * day)),
                entry("other", arrived_at=at(-40 * day), tenant="oldenburg"),
                entry("later", arrived_at=at(-1 * day)),
                entry("resolved", arrived_at=at(-50 * day)),
            ]
        )
        store.set_disposition(
            "n1", "long_ago", "callback", "a", "", CALLER, at(2 * day), at(-60 * day)
        )
        store.set_disposition("n1", "done", "callback", "a", "", CALLER, at(0), at(-40 * day))
        store.mark_callback_done("n1", "done", at(-1))
        store.set_disposition(
            "n1", "other", "callback", "a", "", CALLER, at(5 * day), at(-40 * day)
        )
        store.set_disposition(
            "n1", "later", "callback", "a", "", CALLER, at(10 * day), at(-1 * day)
        )
        store.set_disposition("n1", "resolved", "resolved", "a", "", None, None, at(-50 * day))
        got = store.callbacks_due_between(at(0), at(10 * day))  # [start, end)
        assert [r.call_id for r in got] == ["long_ago", "done", "other"]
        got = store.callbacks_due_between(at(0), at(10 * day), "wardenburg")
        assert [r.call_id for r in got] == ["long_ago", "done"]
        assert list(store.callbacks_due_between(at(-1e8), at(0))) == []
        with pytest.raises(ValueError, match="aware"):
            store.callbacks_due_between(datetime(2026, 1, 1), at(0))

    def test_nodes_are_part_of_the_key(self, store: JournalStore) -> None:
        store.upsert([entry("c1", node="n1"), entry("c1", node="n2", agent="x")])
        store.set_disposition("n2", "c1", "resolved", "a", "", None, None, at(1))
        rows = {r.node: r for r in store.calls_between(at(0), at(1))}
        assert set(rows) == {"n1", "n2"}
        assert rows["n1"].disposition is None and rows["n2"].disposition == "resolved"

    def test_hostile_text_is_stored(self, store: JournalStore) -> None:
        e = entry(
            "c1",
            agent="Jörg \x00Müller",
            reasons=("caller 'x\ud800y' → ok",),
            queue='q"; DROP TABLE calls; --',
        )
        store.upsert([e])
        (row,) = store.calls_between(at(0), at(1))
        assert row.agent == "Jörg \ufffdMüller"
        assert row.reasons == ("caller 'x?y' → ok",)
        assert row.queue == 'q"; DROP TABLE calls; --'

    def test_real_lifecycle_entries(self, store: JournalStore) -> None:
        entries = lifecycle_entries("c1")
        for e in entries:
            store.upsert([e])
        (row,) = store.calls_between(at(0), at(1))
        assert lifecycle_of(row) == entries[-1]
        assert (row.outcome, row.agent, row.wait_s, row.talk_s) == ("answered", "agent1", 4.0, 60.0)

    def test_close_is_idempotent(self, store: JournalStore) -> None:
        store.close()
        store.close()


class TestSqliteStore(StoreBehaviour):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[JournalStore]:
        with SqliteJournal(tmp_path / "state" / "journal.sqlite") as s:
            yield s


# ------------------------------------------------------------------ SQLite specifics


class TestSqliteMigrations:
    def test_fresh_file_is_migrated_in_wal_mode(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        with SqliteJournal(path) as store:
            assert store.schema_version == SCHEMA_VERSION
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        # Migration 1 created an "overrides" table nothing used; migration 3
        # drops it (a node's overrides live in the state file).
        assert "calls" in tables and "overrides" not in tables
        db.close()

    def test_a_file_at_schema_2_loses_the_unused_overrides_table(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        db = sqlite3.connect(path)
        for script in SQLITE_MIGRATIONS[:2]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO calls (node, call_id, tenant, did, caller, via_115, action, reasons,"
            " arrived_at, outcome, agent, queue, rings) VALUES ('n1', 'kept', 't', 'd', NULL, 0,"
            " 'queue', '[]', ?, 'answered', '', '', '[]')",
            (at(-10).timestamp(),),
        )
        db.commit()
        db.close()
        with SqliteJournal(path) as store:
            assert store.schema_version == SCHEMA_VERSION == 4
            assert [r.call_id for r in store.calls_between(at(-100), at(1))] == ["kept"]
        db = sqlite3.connect(path)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        db.close()
        assert "overrides" not in tables

    def test_a_file_at_schema_1_is_upgraded(self, tmp_path: Path) -> None:
        # A journal written by the release before migration 2 (never edited).
        path = tmp_path / "j.sqlite"
        db = sqlite3.connect(path)
        db.executescript(SQLITE_MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO calls (node, call_id, tenant, did, caller, via_115, action, reasons,"
            " arrived_at, outcome, agent, queue, rings) VALUES ('n1', 'old', 't', 'd', ?, 0,"
            " 'queue', '[\"caller 0441/1234567;cpc=x\"]', ?, 'answered', '', '', '[]')",
            (CALLER, at(-100 * 86400).timestamp()),
        )
        db.commit()
        db.close()
        with SqliteJournal(path) as store:
            # 3 since migration 3 (the unused overrides table dropped).
            assert store.schema_version == SCHEMA_VERSION == 4
            assert store.purge(at(-90 * 86400), at(0)) == 1
            (row,) = store.calls_between(at(-1e8), at(1))
            assert row.caller is None and row.reasons == ()
        db = sqlite3.connect(path)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        db.close()
        assert {"calls_unpurged", "calls_callback_due"} <= names

    def test_reopen_keeps_data_and_does_not_migrate_again(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        with SqliteJournal(path) as store:
            store.upsert([entry("c1")])
        with SqliteJournal(path) as store:
            assert store.schema_version == SCHEMA_VERSION
            assert keys(store.calls_between(at(0), at(1))) == [("n1", "c1")]

    def test_concurrent_fresh_open(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def open_and_write(i: int) -> None:
            try:
                barrier.wait()
                with SqliteJournal(path) as store:
                    store.upsert([entry(f"c{i}")])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with SqliteJournal(path) as store:
            assert store.schema_version == SCHEMA_VERSION
            assert len(list(store.calls_between(at(0), at(1)))) == 8

    def test_concurrent_fresh_open_from_processes(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        code = (
            "import sys; from pbxbridge.journal.sqlite import SqliteJournal; "
            "SqliteJournal(sys.argv[1]).close()"
        )
        procs = [
            subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT) for _ in range(4)
        ]
        assert [p.wait(timeout=30) for p in procs] == [0, 0, 0, 0]
        with SqliteJournal(path) as store:
            assert store.schema_version == SCHEMA_VERSION

    def test_times_are_real_unix_seconds(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        with SqliteJournal(path) as store:
            store.upsert([versions("c1")[-1]])
        db = sqlite3.connect(path)
        arrived, ended, via = db.execute(
            "SELECT arrived_at, ended_at, via_115 FROM calls"
        ).fetchone()
        db.close()
        assert arrived == T0.timestamp() and ended == T0.timestamp() + 65
        assert via == 0

    def test_a_locked_database_is_a_transient_error(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        with SqliteJournal(path, busy_timeout=0.1) as store:
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError) as caught:
                store.upsert([entry("c1")])
            assert store.is_transient(caught.value)
            other.execute("ROLLBACK")
            other.close()
            store.upsert([entry("c1")])  # and it works again
            assert not store.is_transient(ValueError("bad data"))

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        when=st.datetimes(
            min_value=datetime(1980, 1, 1),
            max_value=datetime(2099, 12, 31),
            timezones=st.sampled_from(
                [
                    UTC,
                    BERLIN,
                    ZoneInfo("America/New_York"),
                    timezone(timedelta(hours=5, minutes=45)),
                ]
            ),
        ),
    )
    def test_any_aware_time_round_trips(self, tmp_path: Path, when: datetime) -> None:
        with SqliteJournal(tmp_path / "j.sqlite") as store:
            store.upsert([entry("c1", arrived_at=when, ended_at=when)])
            # Bounds in UTC: aware arithmetic is wall-clock arithmetic in Python
            # (fold=1 + 1 µs would jump back an hour).
            u = when.astimezone(UTC)
            (row,) = store.calls_between(u, u + timedelta(microseconds=1))
        # Compare in UTC: Python never finds a time in a repeated (DST) hour equal
        # to one in another zone (PEP 495), although it is the same instant.
        assert row.arrived_at == when.astimezone(UTC) == row.ended_at
        assert row.arrived_at.tzinfo is UTC


async def until(predicate: Callable[[], bool], within: float = 5.0, what: str = "") -> None:
    """Poll a condition on the objects under test (they offer no event for it)."""
    try:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or predicate}") from None


class TestPostgresConnectErrors:
    """Connection errors never carry the URL's password (they reach logs and /healthz)."""

    @pytest.mark.parametrize(
        "url",
        [
            # libpq: 'unexpected spaces found in "hunter 2", use percent-encoded spaces'
            "postgresql://pbx:hunter 2@127.0.0.1:1/journal",
            # libpq: 'invalid sslmode value: "hunter 2"' (a secret in the wrong place)
            "host=127.0.0.1 port=1 password='hunter 2' sslmode='hunter 2'",
        ],
    )
    def test_the_password_is_redacted(self, url: str) -> None:
        with pytest.raises(psycopg.Error) as caught:
            PostgresJournal(url)
        assert "hunter" not in str(caught.value)
        assert "***" in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


class TestMenuDigitJournalled:
    """The 115 menu digit goes from the decision into the row and the spool line."""

    def test_from_route_to_entry_and_spool(self) -> None:
        from pbxbridge.config import load_rules
        from pbxbridge.core import Call, route
        from pbxbridge.journal.spool import entry_from_json, entry_to_json

        rules, _ = load_rules(ROOT / "config" / "routing.yaml")
        mobile = Call(did="115", caller="0171 1234567")
        assert route(mobile, rules, T0).menu_digit is None  # the menu is still to play
        decision = route(replace(mobile, menu_digit="2"), rules, T0)
        assert (decision.tenant, decision.menu_digit) == ("wardenburg", "2")
        row = entry_from_record(start("c1", decision, T0), "n1")
        assert row.menu_digit == "2"
        assert entry_from_json(entry_to_json(row)).menu_digit == "2"
        # a line spooled before the column existed reads as "no menu"
        old_line = {k: v for k, v in entry_to_json(row).items() if k != "menu_digit"}
        assert entry_from_json(old_line).menu_digit is None
        # a call not on 115 never carries a digit, whatever the Call held
        direct = route(Call(did="+494407730", menu_digit="2"), rules, T0)
        assert direct.menu_digit is None
