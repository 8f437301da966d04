"""Journal retention: purging old calls and ageing rejected entries on a schedule."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import pytest

from pbxbridge.journal.retention import (
    DEFAULT_RETENTION_DAYS,
    purge_older_than,
    retention_loop,
)
from pbxbridge.journal.spool import (
    REJECTED_FILE,
    _Spool,
    age_rejected,
    entry_from_json,
)
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import JournalStore
from tests.unit.test_journal_store import (
    CALLER,
    T0,
    at,
    entry,
    until,
)


class TestRetention:
    def test_default_is_90_days(self, tmp_path: Path) -> None:
        assert DEFAULT_RETENTION_DAYS == 90
        with SqliteJournal(tmp_path / "j.sqlite") as store:
            store.upsert(
                [
                    entry("old", arrived_at=at(-90 * 86400 - 1)),
                    entry("kept", arrived_at=at(-90 * 86400)),
                ]
            )
            assert purge_older_than(store, now=T0) == 1
            rows = {r.call_id: r for r in store.calls_between(at(-1e8), at(1))}
        assert rows["old"].caller is None and rows["old"].purged_at == T0
        assert rows["kept"].caller == CALLER

    def test_days_and_now(self, tmp_path: Path) -> None:
        with SqliteJournal(tmp_path / "j.sqlite") as store:
            store.upsert([entry("c1", arrived_at=at(-2 * 86400))])
            assert purge_older_than(store, 3, T0) == 0
            assert purge_older_than(store, 1, T0) == 1
            with pytest.raises(ValueError, match="at least 1 day"):
                purge_older_than(store, 0, T0)
            with pytest.raises(ValueError, match="aware"):
                purge_older_than(store, 1, datetime(2026, 1, 1))

    async def test_retention_loop_purges_and_retries(self, tmp_path: Path) -> None:
        path = tmp_path / "j.sqlite"
        with SqliteJournal(path) as store:
            store.upsert([entry("c1", arrived_at=at(-100 * 86400))])
        opened: list[int] = []

        def factory() -> JournalStore:
            opened.append(1)
            if len(opened) == 1:
                raise sqlite3.OperationalError("database is locked")
            return SqliteJournal(path)

        task = asyncio.create_task(
            retention_loop(factory, interval_s=60, retry_s=0.01, clock=lambda: T0)
        )
        await until(lambda: len(opened) >= 2)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(opened) == 2  # failed once, purged, then waits a day
        with SqliteJournal(path) as store:
            (row,) = store.calls_between(at(-1e8), at(1))
        assert row.caller is None

    def test_rejected_entries_age_out_with_the_retention(self, tmp_path: Path) -> None:
        spool = tmp_path / "journal-spool"
        spool.mkdir()
        rejected = _Spool(spool, 10)
        rejected.reject(
            [
                entry("old", arrived_at=at(-90 * 86400 - 1)),
                entry("kept", arrived_at=at(-90 * 86400)),
            ]
        )
        with (spool / REJECTED_FILE).open("ab") as f:
            f.write(b'{"v": 1, "caller": "+4944112' + b"\n")  # torn: cannot be dated
        with SqliteJournal(tmp_path / "j.sqlite") as store:
            assert purge_older_than(store, now=T0, spool_dir=spool) == 0
        lines = (spool / REJECTED_FILE).read_bytes().splitlines()
        assert [entry_from_json(json.loads(line)).call_id for line in lines] == ["kept"]
        # appending goes on in the rewritten file; nothing left to remove
        rejected.reject([entry("new")])
        assert age_rejected(spool, at(-90 * 86400)) == 0
        assert len((spool / REJECTED_FILE).read_bytes().splitlines()) == 2
        assert age_rejected(tmp_path / "nowhere", T0) == 0
        assert not list(spool.glob("*.tmp"))

    async def test_the_retention_loop_ages_rejected_entries(self, tmp_path: Path) -> None:
        spool = tmp_path / "journal-spool"
        spool.mkdir()
        _Spool(spool, 10).reject([entry("old", arrived_at=at(-100 * 86400))])
        task = asyncio.create_task(
            retention_loop(
                lambda: SqliteJournal(tmp_path / "j.sqlite"),
                spool_dir=spool,
                interval_s=60,
                clock=lambda: T0,
            )
        )
        await until(lambda: (spool / REJECTED_FILE).read_bytes() == b"")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    def test_appends_while_aging_are_not_lost(self, tmp_path: Path) -> None:
        # The writer appends (daemon) while a purge rewrites the file (the
        # daemon's retention task, or the purge command in another process).
        spool = tmp_path / "journal-spool"
        spool.mkdir()
        rejected = _Spool(spool, 10)
        done = threading.Event()

        def append() -> None:
            for i in range(300):
                rejected.reject([entry(f"c{i}")])
            done.set()

        thread = threading.Thread(target=append)
        thread.start()
        rewrites = 0
        while not done.is_set():
            rejected.reject([entry("old", arrived_at=at(-100 * 86400))])
            rewrites += age_rejected(spool, at(-90 * 86400))
        thread.join()
        lines = (spool / REJECTED_FILE).read_bytes().splitlines()
        assert sorted(entry_from_json(json.loads(x)).call_id for x in lines) == sorted(
            f"c{i}" for i in range(300)
        )
