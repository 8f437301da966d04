"""The call journal against the machine's PostgreSQL (127.0.0.1:5432).

Each test module works in a throwaway database (``pbxbridge_test_<random>``),
dropped at the end; tests that need a *fresh* database make their own (both
fixtures, and the cuttable proxy, come from :mod:`tests.postgres`). The
store behaviours are the same :class:`StoreBehaviour` the SQLite store passes.
On top: migrations racing from several threads, two nodes sharing one
database, a connection killed by the server, and an outage: a TCP proxy between
the writer and PostgreSQL cuts every connection and refuses new ones for a few
seconds while calls keep coming; afterwards every call is in the database with
its latest state, none lost, none twice.

``PBXBRIDGE_TEST_POSTGRES`` overrides the server URL; ``PBXBRIDGE_SKIP_POSTGRES=1``
skips the module (otherwise an unreachable server is an error, not a silent skip).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pbxbridge.journal.entry import JournalEntry
from pbxbridge.journal.postgres import PostgresJournal
from pbxbridge.journal.store import JournalStore
from pbxbridge.journal.writer import JournalWriter
from pbxbridge.storage.postgres import PostgresConnection
from pbxbridge.storage.schema import POSTGRES_VERSION as SCHEMA_VERSION
from tests.journal_fill import create_schema, due_for_purge, fill_journal
from tests.postgres import SERVER, Proxy, free_port, query
from tests.unit.test_journal_report import far_callback_report
from tests.unit.test_journal_store import (
    CALLER,
    StoreBehaviour,
    at,
    entry,
    lifecycle_of,
    until,
    versions,
)

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreBehaviour):
    @pytest.fixture
    def store(self, database: str) -> Iterator[JournalStore]:
        with PostgresJournal(database) as s:
            query(database, "TRUNCATE calls")
            yield s


class TestPostgresSpecifics:
    def test_migrations_fresh_and_reopen(self, fresh_database: str) -> None:
        with PostgresJournal(fresh_database) as store:
            assert store.schema_version == SCHEMA_VERSION
            store.upsert([entry("c1")])
        with PostgresJournal(fresh_database) as store:
            assert store.schema_version == SCHEMA_VERSION
            assert [r.call_id for r in store.calls_between(at(0), at(1))] == ["c1"]
        assert query(fresh_database, "SELECT version FROM schema_version") == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
        types = dict(
            query(
                fresh_database,
                "SELECT column_name, data_type FROM "
                "information_schema.columns WHERE table_name = 'calls'",
            )
        )
        assert types["arrived_at"] == "timestamp with time zone"
        assert types["via_115"] == "boolean"

    def test_concurrent_fresh_open(self, fresh_database: str) -> None:
        barrier = threading.Barrier(6)
        errors: list[BaseException] = []

        def open_and_write(i: int) -> None:
            try:
                barrier.wait()
                with PostgresJournal(fresh_database) as store:
                    store.upsert([entry(f"c{i}", node=f"n{i}")])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert query(fresh_database, "SELECT version FROM schema_version") == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
        assert query(fresh_database, "SELECT count(*) FROM calls") == [(6,)]

    def test_times_are_stored_as_instants(self, database: str) -> None:
        with PostgresJournal(database) as store:
            query(database, "TRUNCATE calls")
            store.upsert([entry("c1")])
        (row,) = query(database, "SELECT arrived_at AT TIME ZONE 'UTC' FROM calls")
        assert row[0] == T0_NAIVE

    def test_reconnects_after_the_server_dropped_the_connection(self, database: str) -> None:
        with PostgresJournal(database) as store:
            query(database, "TRUNCATE calls")
            store.upsert([entry("c1")])
            query(
                database,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'pbxbridge-journal' "
                "AND datname = current_database()",
            )
            with pytest.raises(psycopg.OperationalError) as caught:
                store.upsert([entry("c2")])
            assert store.is_transient(caught.value)
            store.upsert([entry("c2")])  # a new connection
            assert len(list(store.calls_between(at(0), at(1)))) == 2

    def test_an_unreachable_server_fails_fast(self) -> None:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            PostgresJournal(
                make_conninfo(SERVER, host="127.0.0.1", port=free_port()), connect_timeout=2
            )
        assert time.monotonic() - started < 5

    def test_two_nodes_share_one_database(self, database: str) -> None:
        query(database, "TRUNCATE calls")
        errors: list[BaseException] = []

        def node(name: str) -> None:
            try:
                with PostgresJournal(database) as store:
                    for v in range(5):
                        store.upsert(
                            [versions(f"c{i}", node=name, arrived=at(i))[v] for i in range(200)]
                        )
                    store.set_disposition(
                        name, "c0", "resolved", f"agent-{name}", "", None, None, at(100)
                    )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=node, args=(n,)) for n in ("n1", "n2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with PostgresJournal(database) as store:
            rows = list(store.calls_between(at(0), at(1000)))
            assert len(rows) == 400
            assert {r.node for r in rows} == {"n1", "n2"}
            for r in rows:
                assert lifecycle_of(r) == versions(r.call_id, node=r.node, arrived=r.arrived_at)[4]
            c0 = {r.node: r for r in rows if r.call_id == "c0"}
            assert c0["n1"].disposition_by == "agent-n1" and c0["n2"].disposition_by == "agent-n2"
            # the repeat-call count spans nodes
            assert store.repeat_count(CALLER, at(0)) == 400
            # and one node's purge covers the shared journal (once)
            assert store.purge(at(10), at(5000)) == 20
        with PostgresJournal(database) as other:
            assert other.purge(at(10), at(6000)) == 0


T0_NAIVE = datetime(2026, 11, 25, 9, 0)


def test_a_callback_due_long_after_the_call(database: str) -> None:
    # Reports select callbacks by deadline in PostgreSQL too.
    with PostgresJournal(database) as store:
        query(database, "TRUNCATE calls")
        far_callback_report(store)


class TestPersonalData:
    def test_database_errors_carry_no_row_data(self, fresh_database: str) -> None:
        # What reaches logs, /healthz and the writer's last_error: the server's
        # DETAIL ("Failing row contains (…, +494411234567, …)") must not.
        with PostgresJournal(fresh_database) as store:
            query(
                fresh_database,
                "ALTER TABLE calls ADD CONSTRAINT no_test_numbers"
                " CHECK (caller <> '+494411234567')",
            )
            with pytest.raises(psycopg.errors.CheckViolation) as caught:
                store.upsert([entry("c1", caller="+494411234567")])
            text = str(caught.value)
            assert "no_test_numbers" in text and "494411234567" not in text
            assert "DETAIL" not in text and "Failing row" not in text
            assert not store.is_transient(caught.value)  # refused data, as before
            assert caught.value.__cause__ is None and caught.value.__suppress_context__
            store.upsert([entry("c2", caller="+4944170000")])  # the connection still works
        db = PostgresConnection(
            fresh_database, application_name="test", connect_timeout=5, statement_timeout=5
        )
        try:
            with (
                pytest.raises(psycopg.errors.NumericValueOutOfRange) as out_of_range,
                db.use() as conn,
            ):
                conn.execute("SELECT '+494411234567'::int")
            assert "494411234567" not in str(out_of_range.value)
            assert "+4944…67" in str(out_of_range.value)  # the primary message, shortened
        finally:
            db.close()

    async def test_the_writer_logs_refusals_without_numbers(
        self, fresh_database: str, tmp_path: Path
    ) -> None:
        # The daemon's path: the writer retries a refused batch entry by entry
        # and logs each refusal at error level with the database's message.
        from structlog.testing import capture_logs

        PostgresJournal(fresh_database).close()
        query(
            fresh_database,
            "ALTER TABLE calls ADD CONSTRAINT no_test_numbers CHECK (caller <> '+494411234567')",
        )
        writer = JournalWriter(
            lambda: PostgresJournal(fresh_database), tmp_path / "spool", flush_interval=0.02
        )
        with capture_logs() as logs:
            task = asyncio.create_task(writer.run())
            writer.submit(entry("bad", caller="+494411234567"))
            writer.submit(entry("good", caller="+4944170000"))
            await until(lambda: writer.stats.rejected == 1 and writer.stats.backlog == 0)
            await writer.close()
            await task
        refused = [e for e in logs if e["event"] == "journal.entry_rejected"]
        assert refused and "no_test_numbers" in refused[0]["error"]
        assert "494411234567" not in repr(logs) + json.dumps(writer.stats.as_dict())
        assert query(fresh_database, "SELECT call_id FROM calls") == [("good",)]

    def test_an_applied_migration_is_upgraded(self, fresh_database: str) -> None:
        # A database at schema 1 (released): rows survive, migration 2 adds
        # the purge's and the report's indexes.
        create_schema(fresh_database, 1)
        fill_journal(fresh_database, 10, datetime(2026, 11, 25, tzinfo=UTC))
        with PostgresJournal(fresh_database) as store:
            assert store.schema_version == SCHEMA_VERSION == 4
            assert len(list(store.calls_between(at(-1e10), at(1e10)))) == 10
        names = {
            r[0]
            for r in query(
                fresh_database, "SELECT indexname FROM pg_indexes WHERE tablename = 'calls'"
            )
        }
        assert {"calls_unpurged", "calls_callback_due"} <= names

    def test_purge_of_a_million_calls(self, fresh_database: str) -> None:
        """The daily purge on a large backlog: batched, indexed, well inside the timeout.

        A million calls over 400 days, 775,000 of them older than 90 days (a
        journal whose purge never ran), written under schema 1 and then
        migrated (migration 2 builds the purge's index on the full table).
        The store runs with a 5 s statement timeout (the default is 30 s):
        each batch of 10,000 must fit.
        """
        rows, days = 1_000_000, 400
        now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
        create_schema(fresh_database, 1)  # a journal that grew before migration 2
        started = time.perf_counter()
        fill_journal(fresh_database, rows, now, days)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        PostgresJournal(fresh_database).close()  # migration 2 builds the indexes
        migrated = time.perf_counter() - started
        with PostgresJournal(fresh_database, statement_timeout=5.0) as store:
            started = time.perf_counter()
            purged = store.purge(now - timedelta(days=90), now)
            took = time.perf_counter() - started
            # The next day's run only looks at the index of unpurged calls.
            started = time.perf_counter()
            again = store.purge(now - timedelta(days=89), now + timedelta(days=1))
            next_day = time.perf_counter() - started
        print(
            f"\nfill {rows:,} rows: {filled:.1f} s; migration 2: {migrated:.1f} s; "
            f"purge {purged:,} calls: {took:.1f} s; "
            f"next day's purge ({again:,} calls): {next_day * 1000:.0f} ms"
        )
        expected = due_for_purge(rows, days, 90)
        assert purged == expected
        assert again == due_for_purge(rows, days, 89) - expected
        left = query(
            fresh_database,
            "SELECT count(*) FROM calls WHERE purged_at IS NOT NULL AND ("
            " caller IS NOT NULL OR callback_number IS NOT NULL"
            " OR disposition_note IS NOT NULL OR reasons <> '[]')",
        )
        assert left == [(0,)]
        kept = query(
            fresh_database,
            "SELECT count(*), min(reasons) FROM calls"
            " WHERE purged_at IS NULL AND caller IS NOT NULL",
        )
        assert kept[0][0] == rows - expected - again
        assert "+49441" in json.loads(kept[0][1])[1]
        assert took < 120  # 12 s measured on the shared 2-core test machine


# ------------------------------------------------------------------ outage


def final(call: int, node: str = "n1") -> JournalEntry:
    return versions(f"c{call:04d}", node=node, arrived=at(call))[4]


async def test_outage_loses_nothing_and_writes_nothing_twice(
    database: str, proxy: Proxy, tmp_path: Path
) -> None:
    query(database, "TRUNCATE calls")
    url = proxy.url(database)
    writer = JournalWriter(
        lambda: PostgresJournal(url, connect_timeout=2, statement_timeout=5),
        tmp_path / "spool",
        flush_interval=0.1,
        min_backoff=0.1,
        max_backoff=0.5,
    )
    task = asyncio.create_task(writer.run())
    # Calls keep coming: every 20 ms a new one, each moving through its five
    # states over the next 80 ms (so many are mid-call when the line is cut).
    stop = asyncio.Event()
    started = 0

    async def traffic() -> None:
        nonlocal started
        tick = 0
        while not stop.is_set() or tick < started + 4:
            if not stop.is_set():
                started += 1
            for k in range(5):
                call = tick - k
                if 0 <= call < started:
                    assert writer.submit(versions(f"c{call:04d}", arrived=at(call))[k])
            tick += 1
            await asyncio.sleep(0.02)

    feeder = asyncio.create_task(traffic())
    await asyncio.sleep(1.0)
    assert writer.stats.db_available and writer.stats.written > 0
    cut = asyncio.create_task(proxy.cut(5.0))
    await until(lambda: not writer.stats.db_available, within=3.0, what="the outage noticed")
    await until(
        lambda: writer.stats.spooled > 0 and bool(writer.spool_files()),
        within=3.0,
        what="entries spooled to disk",
    )
    during = writer.stats.spool_backlog
    await cut
    await asyncio.sleep(1.0)
    stop.set()
    await feeder
    await until(
        lambda: writer.stats.db_available and writer.stats.backlog == 0,
        within=10.0,
        what="the backlog replayed",
    )
    await writer.close()
    await task

    assert during > 0
    assert writer.stats.replayed > 0 and writer.stats.rejected == 0
    assert writer.spool_files() == []
    rows = query(database, "SELECT call_id, count(*) OVER (PARTITION BY node, call_id) FROM calls")
    assert len(rows) == started and all(n == 1 for _, n in rows)
    with PostgresJournal(database) as store:
        got = list(store.calls_between(at(0), at(started + 1)))
    assert [r.call_id for r in got] == [f"c{i:04d}" for i in range(started)]
    wrong = [r.call_id for r in got if lifecycle_of(r) != final(int(r.call_id[1:]))]
    assert wrong == []
    # several seconds of calls were in the cut: it really was an outage
    assert started > 250 and proxy.cuts == 1 and proxy.accepted >= 2


async def test_two_writers_two_nodes(database: str, tmp_path: Path) -> None:
    query(database, "TRUNCATE calls")
    writers = [
        JournalWriter(lambda: PostgresJournal(database), tmp_path / node, flush_interval=0.05)
        for node in ("n1", "n2")
    ]
    tasks = [asyncio.create_task(w.run()) for w in writers]
    for v in range(5):
        for i in range(300):
            for w, node in zip(writers, ("n1", "n2"), strict=True):
                w.submit(versions(f"c{i:04d}", node=node, arrived=at(i))[v])
        await asyncio.sleep(0.01)
    for w in writers:
        await w.close()
    await asyncio.gather(*tasks)
    with PostgresJournal(database) as store:
        rows = list(store.calls_between(at(0), at(1000)))
    assert len(rows) == 600
    assert all(lifecycle_of(r) == final(int(r.call_id[1:]), r.node) for r in rows)
