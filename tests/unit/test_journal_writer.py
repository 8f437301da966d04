"""The journal writer: batching, flushing, the spool on disk and its replay.

The writer is tested against a fake store that fails on command (down,
refusing one entry, hanging) and against real SQLite files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pbxbridge.core.lifecycle import CallEvent, EventKind, advance, start
from pbxbridge.core.models import Action, Decision
from pbxbridge.journal.entry import JournalEntry
from pbxbridge.journal.spool import (
    REJECTED_FILE,
    _Spool,
    entry_from_json,
    entry_to_json,
)
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import (
    CallRow,
    JournalStore,
)
from pbxbridge.journal.writer import JournalWriter
from tests.unit.test_journal_store import (
    BERLIN,
    CALLER,
    ROOT,
    T0,
    at,
    entry,
    lifecycle_of,
    until,
    versions,
)

NEW_YORK = ZoneInfo("America/New_York")
ZONES = [UTC, BERLIN, NEW_YORK, timezone(timedelta(hours=5, minutes=45))]
"""Zones ahead of and behind UTC, with and without DST, one off the full hour."""

CALL_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 12, 31),
    timezones=st.sampled_from(ZONES),
)
"""Times a call can have. Near datetime.min and .max a local time may have no UTC
equivalent at all (see BEYOND_UTC); that edge has tests of its own."""

BEYOND_UTC = [
    # Hypothesis drew this one: Berlin's local mean time (+00:53:28) makes it
    # 0000-12-31 23:06:32 UTC, before datetime.min.
    datetime(1, 1, 1, tzinfo=BERLIN),
    # 10000-01-01 00:00 UTC (EST, -05:00), after datetime.max.
    datetime(9999, 12, 31, 19, 0, tzinfo=NEW_YORK),
]
"""Aware times that no datetime can hold in UTC."""

EDGES_OF_UTC = [
    (datetime(1, 1, 1, 0, 53, 28, tzinfo=BERLIN), datetime(1, 1, 1, tzinfo=UTC)),
    (
        datetime(9999, 12, 31, 18, 59, 59, 999999, tzinfo=NEW_YORK),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ),
]
"""The first and last instants UTC holds, as local times: still fine."""

TIME_FIELDS = ["arrived_at", "queued_at", "answered_at", "ended_at"]


class Down(ConnectionError):
    """The fake database is down (an OSError: transient)."""


class FakeStore(JournalStore):
    """An in-memory store that fails on command.

    Attributes:
        rows: ``(node, call_id)`` → latest entry (what the database holds).
        batches: Every successful upsert, in order.
        fail: How many upserts still fail with :class:`Down`.
        refuse: Call ids the "database" refuses (ValueError: not transient).
        go: Cleared: upsert hangs until it is set again.
        calls: Upsert calls so far (including failed and hanging ones).
        closed: close() calls.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], JournalEntry] = {}
        self.batches: list[list[JournalEntry]] = []
        self.fail = 0
        self.refuse: set[str] = set()
        self.go = threading.Event()
        self.go.set()
        self.calls = 0
        self.closed = 0

    def upsert(self, entries: Sequence[JournalEntry]) -> None:
        self.calls += 1
        self.go.wait()
        if self.fail > 0:
            self.fail -= 1
            raise Down("connection refused")
        if any(e.call_id in self.refuse for e in entries):
            raise ValueError("invalid byte sequence")
        self.batches.append(list(entries))
        for e in entries:
            self.rows[(e.node, e.call_id)] = e

    def written(self) -> list[JournalEntry]:
        return [e for b in self.batches for e in b]

    def calls_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterator[CallRow]:
        raise NotImplementedError

    def repeat_count(self, caller: str, since: datetime) -> int:
        raise NotImplementedError

    def set_disposition(
        self,
        node: str,
        call_id: str,
        disposition: str,
        by: str,
        note: str,
        callback_number: str | None,
        due_at: datetime | None,
        at: datetime,
    ) -> bool:
        raise NotImplementedError

    def mark_callback_done(self, node: str, call_id: str, at: datetime) -> bool:
        raise NotImplementedError

    def open_callbacks(self, tenant: str | None = None) -> list[CallRow]:
        raise NotImplementedError

    def callbacks_due_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterator[CallRow]:
        raise NotImplementedError

    def purge(self, before: datetime, at: datetime) -> int:
        raise NotImplementedError

    def close(self) -> None:
        self.closed += 1


def tagged(call_id: str, version: int, node: str = "n1") -> JournalEntry:
    """Entry ``version`` of a call (the version is readable in ``agent``)."""
    return entry(call_id, node=node, agent=f"v{version}")


def version_of(e: JournalEntry) -> int:
    return int(e.agent[1:])


def holds(store: FakeStore, call_id: str, version: int) -> bool:
    row = store.rows.get(("n1", call_id))
    return row is not None and version_of(row) == version


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.jsonl"))


def spool_lines(directory: Path) -> list[JournalEntry]:
    out = []
    for path in segment_files(directory):
        out += [entry_from_json(json.loads(line)) for line in path.read_text().splitlines()]
    return out


@pytest.fixture
def fake() -> FakeStore:
    return FakeStore()


@contextlib.contextmanager
def database_hangs(fake: FakeStore) -> Iterator[None]:
    """Every upsert hangs inside the block; released at its end, also when the test fails.

    Otherwise a failing test hangs the whole session: the writer's worker
    thread waits in ``upsert()`` for ever, and the event loop's executor with it
    (pytest-asyncio closes the loop before function fixtures are torn down).
    """
    fake.go.clear()
    try:
        yield
    finally:
        fake.go.set()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def make_writer(
    store: FakeStore | Callable[[], JournalStore], spool: Path, **options: float
) -> JournalWriter:
    def factory() -> JournalStore:
        return store() if callable(store) and not isinstance(store, FakeStore) else store

    settings_: dict[str, float] = {"flush_interval": 0.02, "min_backoff": 0.02, "max_backoff": 0.05}
    settings_.update(options)
    return JournalWriter(
        factory,
        spool,
        flush_interval=settings_["flush_interval"],
        max_batch=int(settings_.get("max_batch", 1000)),
        min_backoff=settings_["min_backoff"],
        max_backoff=settings_["max_backoff"],
    )


class TestWriterFlushing:
    async def test_coalesces_per_call_and_flushes(self, fake: FakeStore, spool: Path) -> None:
        writer = make_writer(fake, spool)
        for v in range(5):
            for c in ("a", "b", "c"):
                assert writer.submit(tagged(c, v))
        assert writer.stats.pending == 3
        task = asyncio.create_task(writer.run())
        await until(lambda: writer.stats.written == 3)
        assert [(e.call_id, e.agent) for e in fake.written()] == [
            ("a", "v4"),
            ("b", "v4"),
            ("c", "v4"),
        ]
        s = writer.stats
        assert (s.submitted, s.coalesced, s.written, s.spooled, s.backlog) == (15, 12, 3, 0, 0)
        assert s.db_available and s.last_error is None
        assert s.as_dict()["backlog"] == 0 and s.as_dict()["written"] == 3
        await writer.close()
        assert task.done()
        assert fake.closed == 1

    async def test_flushes_every_interval(self, fake: FakeStore, spool: Path) -> None:
        writer = make_writer(fake, spool, flush_interval=0.05)
        task = asyncio.create_task(writer.run())
        for i in range(3):
            writer.submit(tagged("a", i))
            await until(functools.partial(holds, fake, "a", i), within=1.0)
        assert len(fake.batches) == 3
        await writer.close()
        await task

    async def test_a_full_batch_flushes_early(self, fake: FakeStore, spool: Path) -> None:
        writer = make_writer(fake, spool, flush_interval=30, max_batch=10)
        task = asyncio.create_task(writer.run())
        await asyncio.sleep(0.01)
        started = time.monotonic()
        for i in range(10):
            writer.submit(tagged(f"c{i}", 0))
        await until(lambda: writer.stats.written == 10, within=2.0)
        assert time.monotonic() - started < 2.0
        await writer.close()
        await task

    async def test_large_backlogs_are_written_in_batches(
        self, fake: FakeStore, spool: Path
    ) -> None:
        writer = make_writer(fake, spool, max_batch=100)
        for i in range(250):
            writer.submit(tagged(f"c{i}", 0))
        await writer.close()  # close() without run(): the final flush still happens
        assert [len(b) for b in fake.batches] == [100, 100, 50]

    async def test_close_flushes_what_is_pending(self, fake: FakeStore, spool: Path) -> None:
        writer = make_writer(fake, spool, flush_interval=30)
        task = asyncio.create_task(writer.run())
        await asyncio.sleep(0.01)
        writer.submit(tagged("a", 1))
        await writer.close()
        assert fake.rows[("n1", "a")].agent == "v1"
        assert task.done()
        assert not writer.submit(tagged("a", 2))  # closed: refused, not raised
        assert writer.stats.refused == 1

    async def test_observer_submits_lifecycle_entries(self, fake: FakeStore, spool: Path) -> None:
        writer = make_writer(fake, spool)
        observe = writer.observer("node-a")
        decision = Decision(
            action=Action.QUEUE, tenant="wardenburg", did="+494407730", caller=CALLER
        )
        record = start("c1", decision, T0)
        observe(record, None)
        record = advance(record, CallEvent(EventKind.JOIN, at(1), queue="sc")).record
        observe(record, CallEvent(EventKind.JOIN, at(1), queue="sc"))
        await writer.close()
        (row,) = fake.rows.values()
        assert (row.node, row.call_id, row.queue, row.queued_at) == ("node-a", "c1", "sc", at(1))


class TestWriterNeverHurtsTheCaller:
    async def test_submit_never_blocks_while_the_database_hangs(
        self, fake: FakeStore, spool: Path
    ) -> None:
        writer = make_writer(fake, spool, flush_interval=0.01)
        task = asyncio.create_task(writer.run())
        with database_hangs(fake):
            writer.submit(tagged("first", 0))
            await until(lambda: fake.calls == 1)  # a flush is stuck in the database now
            worst = 0.0
            for i in range(20_000):
                t = time.perf_counter()
                assert writer.submit(tagged(f"c{i % 5000}", i))
                worst = max(worst, time.perf_counter() - t)
            # A submit that waited for the database would not return while it
            # hangs; the bound only tells "returned" from "stuck" (a garbage
            # collection late in a full test run took tens of ms here).
            assert worst < 0.5
            assert writer.stats.pending >= 5000
        await until(lambda: len(fake.rows) == 5001)
        await writer.close()
        await task
        assert all(version_of(fake.rows[("n1", f"c{i}")]) == 15_000 + i for i in range(5000))

    async def test_submit_never_raises(self, fake: FakeStore, spool: Path) -> None:
        writer = make_writer(fake, spool)
        assert not writer.submit(entry(arrived_at=datetime(2026, 1, 1)))  # naive
        assert not writer.submit(entry(ended_at=datetime(2026, 1, 1)))
        assert not writer.submit(None)  # type: ignore[arg-type]
        assert not writer.submit("junk")  # type: ignore[arg-type]
        assert writer.stats.refused == 4
        assert writer.stats.submitted == 0
        await writer.close()
        assert not writer.submit(entry())

    @pytest.mark.parametrize("field", TIME_FIELDS)
    async def test_a_time_beyond_utc_is_refused_and_the_journal_goes_on(
        self, fake: FakeStore, spool: Path, field: str
    ) -> None:
        # Accepted, such an entry made the spool raise OverflowError while the
        # database was down: run() died, the calls pending with it were lost and
        # every later submit went nowhere.
        fake.fail = 10**9
        writer = make_writer(fake, spool)
        assert not writer.submit(entry("bad", **{field: BEYOND_UTC[0]}))
        assert not writer.submit(entry("bad", **{field: BEYOND_UTC[1]}))
        assert writer.stats.refused == 2
        assert writer.submit(entry("fine"))
        task = asyncio.create_task(writer.run())
        await until(lambda: writer.stats.spooled == 1, what="spooled")
        assert [e.call_id for e in spool_lines(spool)] == ["fine"]
        fake.fail = 0
        await until(lambda: ("n1", "fine") in fake.rows and writer.stats.backlog == 0)
        await writer.close()
        await task
        assert [e.call_id for e in fake.written()] == ["fine"]

    async def test_submit_from_another_thread(self, fake: FakeStore, spool: Path) -> None:
        writer = make_writer(fake, spool, max_batch=50)
        task = asyncio.create_task(writer.run())

        def produce(prefix: str) -> None:
            for i in range(2000):
                writer.submit(tagged(f"{prefix}{i % 300}", i))

        await asyncio.gather(*(asyncio.to_thread(produce, p) for p in "xyz"))
        await writer.close()
        await task
        assert len(fake.rows) == 900
        assert writer.stats.submitted == 6000
        last = {k: max(i for i in range(2000) if i % 300 == k) for k in range(300)}
        assert all(
            version_of(fake.rows[("n1", f"{p}{k}")]) == last[k] for p in "xyz" for k in range(300)
        )

    async def test_close_gives_up_on_a_hanging_database_and_spools(
        self, fake: FakeStore, spool: Path
    ) -> None:
        writer = make_writer(fake, spool)
        task = asyncio.create_task(writer.run())
        with database_hangs(fake):
            writer.submit(tagged("inflight", 1))
            await until(lambda: fake.calls == 1)
            writer.submit(tagged("pending", 1))
            started = time.monotonic()
            await writer.close(timeout=0.2)
            assert time.monotonic() - started < 1.0
            assert task.done()
            assert [e.call_id for e in spool_lines(spool)] == ["inflight", "pending"]


class TestWriterOutage:
    async def test_failures_spool_to_disk_and_replay_in_order_once(
        self, fake: FakeStore, spool: Path
    ) -> None:
        fake.fail = 10**9  # down until told otherwise
        writer = make_writer(fake, spool, max_batch=4)
        task = asyncio.create_task(writer.run())
        submitted: list[JournalEntry] = []
        for v in range(5):
            for c in range(6):
                e = tagged(f"c{c}", v)
                submitted.append(e)
                writer.submit(e)
            await until(lambda: writer.stats.pending == 0, what="spooled")
        assert not writer.stats.db_available
        assert writer.stats.last_error == "Down: connection refused"
        on_disk = spool_lines(spool)
        assert len(on_disk) == writer.stats.spooled == writer.stats.spool_backlog == 30
        assert writer.stats.backlog == 30
        assert len(writer.spool_files()) >= 2  # segments of max_batch entries
        assert fake.rows == {}
        # the database comes back
        fake.fail = 0
        writer.submit(tagged("c0", 5))  # newer than anything spooled
        await until(lambda: writer.stats.backlog == 0 and writer.stats.db_available)
        await writer.close()
        await task
        # every call holds its latest version...
        assert {k[1]: version_of(e) for k, e in fake.rows.items()} == {
            "c0": 5,
            **{f"c{c}": 4 for c in range(1, 6)},
        }
        # ...each call's versions reached the database in order, none twice
        per_call: dict[str, list[int]] = {}
        for e in fake.written():
            per_call.setdefault(e.call_id, []).append(version_of(e))
        for call_id, seen in per_call.items():
            assert seen == sorted(set(seen)), call_id
        assert writer.stats.replayed + writer.stats.written == len(fake.written())
        assert segment_files(spool) == []

    async def test_the_database_down_at_start(self, spool: Path) -> None:
        store = FakeStore()
        opened: list[int] = []

        def factory() -> JournalStore:
            opened.append(1)
            if len(opened) <= 3:
                raise Down("no route to host")
            return store

        writer = make_writer(factory, spool)
        writer.submit(tagged("a", 1))
        task = asyncio.create_task(writer.run())
        await until(lambda: writer.stats.spooled == 1)
        # The row reaches the store (in the worker thread) before the writer
        # deletes the segment and counts the replay: wait for the count.
        await until(lambda: writer.stats.replayed >= 1)
        assert ("n1", "a") in store.rows
        assert writer.stats.failures == 3
        assert writer.stats.replayed == 1
        await writer.close()
        await task

    async def test_close_while_down_spools_and_the_next_start_replays(
        self, fake: FakeStore, spool: Path
    ) -> None:
        fake.fail = 10**9
        writer = make_writer(fake, spool, flush_interval=30)
        task = asyncio.create_task(writer.run())
        await until(lambda: writer.stats.db_available)  # nothing to write yet
        writer.submit(tagged("a", 1))
        writer.submit(tagged("b", 1))
        await writer.close()
        await task
        assert [e.call_id for e in spool_lines(spool)] == ["a", "b"]
        # the next process
        store = FakeStore()
        writer2 = make_writer(store, spool)
        assert writer2.submit(tagged("a", 2))
        task2 = asyncio.create_task(writer2.run())
        await until(lambda: writer2.stats.backlog == 0 and writer2.stats.written == 1)
        await writer2.close()
        await task2
        # the old spool went first, then the newer submit
        assert [(e.call_id, e.agent) for e in store.written()] == [
            ("a", "v1"),
            ("b", "v1"),
            ("a", "v2"),
        ]
        assert writer2.stats.replayed == 2

    async def test_a_spool_left_by_a_killed_process_is_replayed(self, spool: Path) -> None:
        # A real process: the store is down, 40 entries are accepted and spooled,
        # then the process is killed with SIGKILL (no close, no cleanup).
        script = f"""
import asyncio, os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.unit.test_journal_writer import FakeStore, make_writer, tagged
from pathlib import Path

async def main():
    store = FakeStore()
    store.fail = 10**9
    writer = make_writer(store, Path(sys.argv[1]), max_batch=16)
    task = asyncio.create_task(writer.run())
    for i in range(40):
        writer.submit(tagged(f"c{{i}}", 1))
        await asyncio.sleep(0)
    while writer.stats.spooled < 40:
        await asyncio.sleep(0.005)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(spool), cwd=ROOT
        )
        assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
        assert len(spool_lines(spool)) == 40
        # a torn last line, as a kill in the middle of a write would leave
        last = segment_files(spool)[-1]
        with last.open("ab") as f:
            f.write(b'{"v":1,"node":"n1","call_id":"torn')
        store = FakeStore()
        writer = make_writer(store, spool)
        task = asyncio.create_task(writer.run())
        await until(lambda: writer.stats.backlog == 0 and len(store.rows) == 40)
        await writer.close()
        await task
        assert sorted(store.rows) == sorted(("n1", f"c{i}") for i in range(40))
        assert len(store.written()) == 40  # each exactly once
        assert segment_files(spool) == []

    async def test_a_refused_entry_does_not_block_the_journal(
        self, fake: FakeStore, spool: Path
    ) -> None:
        fake.refuse = {"bad"}
        writer = make_writer(fake, spool)
        task = asyncio.create_task(writer.run())
        for c in ("a", "bad", "b"):
            writer.submit(tagged(c, 1))
        await until(lambda: writer.stats.rejected == 1)
        writer.submit(tagged("c", 1))
        await until(lambda: ("n1", "c") in fake.rows)
        await writer.close()
        await task
        assert sorted(k[1] for k in fake.rows) == ["a", "b", "c"]
        rejected = (spool / REJECTED_FILE).read_text().splitlines()
        assert [entry_from_json(json.loads(x)).call_id for x in rejected] == ["bad"]

    async def test_spool_disk_failure_keeps_entries_in_memory(
        self, fake: FakeStore, spool: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake.fail = 10**9
        writer = make_writer(fake, spool)
        real_fsync = os.fsync
        broken = {"on": True}

        def fsync(fd: int) -> None:
            if broken["on"]:
                raise OSError(28, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        task = asyncio.create_task(writer.run())
        writer.submit(tagged("a", 1))
        await until(lambda: (writer.stats.last_error or "").startswith("spool:"))
        assert writer.stats.pending == 1
        writer.submit(tagged("a", 2))
        broken["on"] = False
        fake.fail = 0
        await until(lambda: ("n1", "a") in fake.rows and writer.stats.backlog == 0)
        await writer.close()
        await task
        assert fake.rows[("n1", "a")].agent == "v2"

    async def test_cancelling_run_spools_what_is_pending(
        self, fake: FakeStore, spool: Path
    ) -> None:
        writer = make_writer(fake, spool, flush_interval=30)
        task = asyncio.create_task(writer.run())
        await asyncio.sleep(0.01)
        writer.submit(tagged("a", 1))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [e.call_id for e in spool_lines(spool)] == ["a"]


class TestWriterWithSqlite:
    async def test_lifecycles_end_up_in_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        writer = JournalWriter(lambda: SqliteJournal(path), tmp_path / "spool", flush_interval=0.01)
        task = asyncio.create_task(writer.run())
        for v in range(5):
            for c in range(50):
                writer.submit(versions(f"c{c}", arrived=at(c))[v])
            await asyncio.sleep(0.005)
        await writer.close()
        await task
        with SqliteJournal(path) as store:
            rows = list(store.calls_between(at(0), at(100)))
        assert [r.call_id for r in rows] == [f"c{c}" for c in range(50)]
        assert all(lifecycle_of(r) == versions(r.call_id, arrived=r.arrived_at)[-1] for r in rows)

    async def test_a_locked_file_spools_then_replays(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        SqliteJournal(path).close()
        writer = JournalWriter(
            lambda: SqliteJournal(path, busy_timeout=0.05),
            tmp_path / "spool",
            flush_interval=0.01,
            min_backoff=0.01,
            max_backoff=0.05,
        )
        task = asyncio.create_task(writer.run())
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # e.g. an operator's long transaction
        writer.submit(versions("c1")[0])
        await until(lambda: writer.stats.spooled >= 1, what="spooled")
        assert "locked" in (writer.stats.last_error or "")
        writer.submit(versions("c1")[4])
        await until(lambda: writer.stats.spooled >= 2, what="spooled again")
        locker.execute("ROLLBACK")
        locker.close()
        await until(lambda: writer.stats.backlog == 0 and writer.stats.db_available)
        await writer.close()
        await task
        with SqliteJournal(path) as store:
            (row,) = store.calls_between(at(0), at(1))
        assert lifecycle_of(row) == versions("c1")[4]


class TestSpoolFormat:
    @settings(max_examples=50, deadline=None)
    @given(
        caller=st.none() | st.text(max_size=20),
        reasons=st.lists(st.text(max_size=30), max_size=4),
        wait=st.none() | st.floats(allow_nan=False),
        when=CALL_TIMES,
    )
    def test_round_trip(
        self, caller: str | None, reasons: list[str], wait: float | None, when: datetime
    ) -> None:
        e = entry(
            "c\x00\ud800",
            caller=caller,
            reasons=tuple(reasons),
            wait_s=wait,
            arrived_at=when,
            ended_at=when,
            rings=({"agent": "a", "ended": None},),
        )
        line = json.dumps(entry_to_json(e))
        assert line.isascii()
        back = entry_from_json(json.loads(line))
        # Times come back in UTC (the same instants; compared in UTC because
        # Python never equates a DST-fold time with another zone's, PEP 495).
        assert back.arrived_at.tzinfo is UTC
        assert back == replace(e, arrived_at=when.astimezone(UTC), ended_at=when.astimezone(UTC))

    @settings(max_examples=200, deadline=None)
    @given(when=st.datetimes(timezones=st.sampled_from(ZONES)))
    # Random draws rarely land within hours of the ends: pin both sides of each.
    @example(when=BEYOND_UTC[0])
    @example(when=BEYOND_UTC[1])
    @example(when=EDGES_OF_UTC[0][0])
    @example(when=EDGES_OF_UTC[1][0])
    def test_any_time_round_trips_or_is_refused(self, when: datetime) -> None:
        # The whole range of datetime, its ends included: a time comes back as
        # the same instant or is refused with a ValueError, never anything else.
        try:
            instant = when.astimezone(UTC)
        except OverflowError:
            with pytest.raises(ValueError, match=r"arrived_at .* out of range"):
                entry_to_json(entry(arrived_at=when))
            return
        back = entry_from_json(json.loads(json.dumps(entry_to_json(entry(arrived_at=when)))))
        assert back.arrived_at == instant
        assert back.arrived_at.tzinfo is UTC

    @pytest.mark.parametrize("field", TIME_FIELDS)
    @pytest.mark.parametrize("when", BEYOND_UTC, ids=str)
    def test_a_time_beyond_utc_is_refused_with_a_clear_error(
        self, field: str, when: datetime
    ) -> None:
        with pytest.raises(ValueError, match=rf"{field} .* out of range in UTC"):
            entry_to_json(entry("c1", **{field: when}))

    @pytest.mark.parametrize(("when", "utc"), EDGES_OF_UTC, ids=str)
    def test_the_first_and_last_instants_round_trip(self, when: datetime, utc: datetime) -> None:
        line = json.dumps(entry_to_json(entry(arrived_at=when, ended_at=when)))
        back = entry_from_json(json.loads(line))
        assert (back.arrived_at, back.ended_at) == (utc, utc)
        assert back.arrived_at.tzinfo is UTC

    def test_a_line_with_a_time_beyond_utc_or_without_zone_is_unreadable(self) -> None:
        # The writer only writes UTC; other times come from a hand-edited or
        # foreign line. ValueError is what the replay skips as unreadable.
        data = entry_to_json(entry())
        with pytest.raises(ValueError, match=r"arrived_at .* out of range in UTC"):
            entry_from_json({**data, "arrived_at": "0001-01-01T00:00:00+05:00"})
        with pytest.raises(ValueError, match=r"ended_at .* no time zone"):
            entry_from_json({**data, "ended_at": "2026-11-25T10:00:00"})
        back = entry_from_json({**data, "queued_at": "2026-11-25T10:00:00+01:00"})
        assert back.queued_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
        assert back.queued_at is not None and back.queued_at.tzinfo is UTC

    def test_an_entry_it_cannot_write_leaves_the_spool_as_it_was(self, tmp_path: Path) -> None:
        spool = _Spool(tmp_path, 10)
        spool.recover()
        with pytest.raises(ValueError, match="out of range"):
            spool.append([entry("fine"), entry("bad", arrived_at=BEYOND_UTC[0])])
        assert list(tmp_path.iterdir()) == []
        assert (spool.entries, spool.segments) == (0, [])
        spool.append([entry("fine")])  # and it works on
        written = spool.oldest()
        assert written is not None
        assert [e.call_id for e in written[1]] == ["fine"]

    def test_unknown_format_is_refused(self) -> None:
        data = entry_to_json(entry())
        data["v"] = 99
        with pytest.raises(ValueError, match="format"):
            entry_from_json(data)


def test_writer_settings_are_checked(spool: Path) -> None:
    with pytest.raises(ValueError):
        JournalWriter(FakeStore, spool, flush_interval=0)
    with pytest.raises(ValueError):
        JournalWriter(FakeStore, spool, max_batch=0)
