"""Manual overrides shared through the machine's PostgreSQL (127.0.0.1:5432).

The store behaviours are the same :class:`OverrideStoreBehaviour` the SQLite
store passes. On top: the journal's migrations create the table (also when the
override store is the first to open a fresh database, also racing the
journal), commits out of id order, a connection killed by the server, two
nodes (two ``LiveOverrides`` with their own state directories) following
overrides set and cleared with the real ``pbxbridge`` CLI, and an outage: a TCP
proxy cuts the line; routing keeps the last overrides and health says why.

Throwaway databases and the proxy come from :mod:`tests.postgres`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import make_conninfo

from pbxbridge.cli import cli
from pbxbridge.core.models import Override, OverrideState
from pbxbridge.journal.postgres import PostgresJournal
from pbxbridge.runtime.live import LiveOverrides
from pbxbridge.runtime.settings import Settings
from pbxbridge.storage.overrides import PostgresOverrideStore, open_override_store
from pbxbridge.storage.schema import POSTGRES_VERSION as SCHEMA_VERSION
from tests.postgres import SERVER, Proxy, free_port, query
from tests.unit.test_overrides_store import CLOSED, OPEN, T0, OpenStore, OverrideStoreBehaviour

pytestmark = pytest.mark.postgres

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
WARDENBURG = "04407 73-0"


def empty(url: str) -> None:
    query(url, "TRUNCATE overrides RESTART IDENTITY")


class TestPostgresOverrideStore(OverrideStoreBehaviour):
    backend = "postgresql"

    @pytest.fixture
    def open_store(self, database: str) -> OpenStore:
        empty(database)
        return lambda: PostgresOverrideStore(database)


# ------------------------------------------------------------------ PostgreSQL specifics


class TestSchema:
    def test_a_fresh_database_gets_the_journals_schema(self, fresh_database: str) -> None:
        with PostgresOverrideStore(fresh_database) as store:
            store.set("wardenburg", CLOSED, "x", at=T0)
        assert query(fresh_database, "SELECT version FROM schema_version ORDER BY 1") == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
        types = dict(
            query(
                fresh_database,
                "SELECT column_name, data_type FROM "
                "information_schema.columns WHERE table_name = 'overrides'",
            )
        )
        assert types["set_at"] == types["cleared_at"] == "timestamp with time zone"
        # the journal opens it as its own: same migrations, not run twice
        with PostgresJournal(fresh_database) as journal:
            assert journal.schema_version == SCHEMA_VERSION
        assert query(fresh_database, "SELECT count(*) FROM schema_version") == [(SCHEMA_VERSION,)]
        assert query(fresh_database, "SELECT count(*) FROM overrides") == [(1,)]

    def test_first_open_racing_the_journal(self, fresh_database: str) -> None:
        barrier = threading.Barrier(6)
        errors: list[BaseException] = []

        def open_one(i: int) -> None:
            try:
                barrier.wait()
                if i % 2:
                    with PostgresOverrideStore(fresh_database) as store:
                        store.set(f"t{i}", OPEN, "x", at=T0)
                else:
                    PostgresJournal(fresh_database).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert query(fresh_database, "SELECT version FROM schema_version ORDER BY 1") == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
        assert query(fresh_database, "SELECT count(*) FROM overrides") == [(3,)]

    def test_times_are_stored_as_instants(self, database: str) -> None:
        empty(database)
        with PostgresOverrideStore(database) as store:
            store.set("wardenburg", CLOSED, "x", at=T0, expires_at=T0 + timedelta(hours=1))
        assert query(
            database,
            "SELECT set_at AT TIME ZONE 'UTC', expires_at AT TIME ZONE 'UTC' FROM overrides",
        ) == [(datetime(2026, 11, 25, 9, 0), datetime(2026, 11, 25, 10, 0))]


class TestChangedOnPostgres:
    def test_commits_out_of_id_order_are_seen(self, database: str) -> None:
        # Two operators at once: the first INSERT takes id n but commits after
        # the second (id n + 1) has been seen. A max(id) check would miss it.
        empty(database)
        insert = (
            "INSERT INTO overrides (scope, state, reason, set_at) VALUES (%s, 'closed', 'x', now())"
        )
        with (
            PostgresOverrideStore(database) as reader,
            psycopg.connect(database) as slow,
            psycopg.connect(database, autocommit=True) as fast,
        ):
            assert reader.changed() is True
            slow.execute(insert, ("wardenburg",))  # transaction left open
            fast.execute(insert, ("oldenburg",))
            assert reader.changed() is True
            assert [o.scope for o in reader.active(datetime.now(UTC))] == ["oldenburg"]
            assert reader.changed() is False
            slow.commit()
            assert reader.changed() is True
            assert [o.scope for o in reader.active(datetime.now(UTC))] == [
                "wardenburg",
                "oldenburg",
            ]

    def test_detects_writes_from_a_plain_connection(self, database: str) -> None:
        empty(database)
        with PostgresOverrideStore(database) as store:
            store.changed()
            query(
                database,
                "INSERT INTO overrides (scope, state, reason, set_at)"
                " VALUES ('wardenburg', 'open', 'x', '2026-11-25 09:00Z')",
            )
            assert store.changed() is True
            assert store.active(T0)[0].state is OPEN
            query(database, "UPDATE overrides SET cleared_at = now()")
            assert store.changed() is True
            assert store.active(T0) == []


class TestConnection:
    def test_reconnects_after_the_server_dropped_the_connection(self, database: str) -> None:
        empty(database)
        with PostgresOverrideStore(database) as store:
            item = store.set("wardenburg", CLOSED, "x", at=T0)
            store.changed()
            query(
                database,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'pbxbridge-overrides' "
                "AND datname = current_database()",
            )
            with pytest.raises(psycopg.OperationalError):
                store.active(T0)
            assert store.active(T0) == [item]  # a new connection
            assert store.changed() is False  # nothing changed meanwhile

    def test_an_unreachable_server_fails_fast(self) -> None:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            PostgresOverrideStore(
                make_conninfo(SERVER, host="127.0.0.1", port=free_port()), connect_timeout=2
            )
        assert time.monotonic() - started < 5

    def test_factory_picks_postgresql_with_a_url(self, database: str, tmp_path: Path) -> None:
        state = tmp_path / "state" / "pbxbridge.sqlite"
        with open_override_store(database, state) as store:
            assert isinstance(store, PostgresOverrideStore)
            assert store.backend == "postgresql"
        assert not state.parent.exists()


# ------------------------------------------------------------------ two nodes and the CLI


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "routing.yaml"
    shutil.copyfile(EXAMPLE, path)
    return path


@pytest.fixture
def pbxbridge(database: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the real CLI with the shared database configured and a state directory of its own."""
    for name in ("PBXBRIDGE_DATABASE_URL_FILE", "CREDENTIALS_DIRECTORY", "PBXBRIDGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str | Path, state_dir: Path) -> Result:
        result = runner.invoke(
            cli,
            [str(a) for a in args],
            env={"PBXBRIDGE_DATABASE_URL": database, "STATE_DIRECTORY": str(state_dir)},
        )
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    return invoke


async def until_all(nodes: list[LiveOverrides], done: Callable[[LiveOverrides], bool]) -> float:
    """Poll the nodes as the daemon does (every ``overrides_poll_s``) until ``done``; seconds."""
    interval = Settings().overrides_poll_s
    started = time.monotonic()
    while time.monotonic() - started < 5.0:
        await asyncio.gather(*(node.poll() for node in nodes))
        if all(done(node) for node in nodes):
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise AssertionError(f"not seen by every node: {[n.items for n in nodes]}")


async def test_two_nodes_follow_the_cli(
    database: str, tmp_path: Path, config: Path, pbxbridge: Callable[..., Result]
) -> None:
    empty(database)
    states = {name: tmp_path / name for name in ("node-a", "node-b", "cli", "explain")}
    nodes = [LiveOverrides(states[n] / "pbxbridge.sqlite", database) for n in ("node-a", "node-b")]
    try:
        for node in nodes:
            assert await node.poll() is False
            assert not node.items

        out = pbxbridge(
            "override",
            "set",
            "-c",
            config,
            "--tenant",
            "wardenburg",
            "--closed",
            "--reason",
            "Unwetter",
            state_dir=states["cli"],
        ).stdout
        assert out == "override #1: wardenburg forced closed until cleared (Unwetter)\n"
        took = await until_all(nodes, lambda n: len(n.items) == 1)
        assert took < 1.0
        (item_a,), (item_b,) = (node.items for node in nodes)
        assert item_a == item_b
        assert (item_a.id, item_a.scope, item_a.state, item_a.reason) == (
            1,
            "wardenburg",
            OverrideState.CLOSED,
            "Unwetter",
        )

        # Another node's operator sees it too: explain and list, own state dir.
        explained = json.loads(
            pbxbridge(
                "explain", "-c", config, "--did", WARDENBURG, "--json", state_dir=states["explain"]
            ).stdout
        )
        assert (explained["tenant"], explained["action"]) == ("wardenburg", "closed")
        assert (
            "override #1 for wardenburg: forced closed until cleared (Unwetter)"
            in explained["reasons"]
        )
        listed = json.loads(
            pbxbridge(
                "override", "list", "-c", config, "--json", state_dir=states["explain"]
            ).stdout
        )
        assert [(o["id"], o["in_force"]) for o in listed] == [(1, True)]

        out = pbxbridge(
            "override", "clear", "-c", config, "--tenant", "wardenburg", state_dir=states["explain"]
        ).stdout
        assert out == "cleared 1 override(s)\n"
        took = await until_all(nodes, lambda n: not n.items)
        assert took < 1.0
        explained = json.loads(
            pbxbridge(
                "explain", "-c", config, "--did", WARDENBURG, "--json", state_dir=states["cli"]
            ).stdout
        )
        assert not any("override" in reason for reason in explained["reasons"])
        (row,) = query(
            database, "SELECT cleared_at IS NOT NULL, set_by = cleared_by FROM overrides"
        )
        assert row == (True, True)  # the audit trail, in the shared database

        for node in nodes:
            health = node.health()
            assert (health["backend"], health["path"], health["error"]) == (
                "postgresql",
                None,
                None,
            )
            assert database not in json.dumps(health)
        # No node and no CLI run made a state file of its own.
        assert [p for p in tmp_path.rglob("*.sqlite")] == []  # noqa: ASYNC240 - test only
    finally:
        for node in nodes:
            node.close()


def test_the_cli_reports_an_unreachable_database_in_one_line(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PBXBRIDGE_DATABASE_URL_FILE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    url = make_conninfo(SERVER, host="127.0.0.1", port=free_port(), password="s3cr3t-Pw")
    result = CliRunner().invoke(
        cli,
        ["override", "set", "-c", str(config), "--all", "--open", "--reason", "x"],
        env={"PBXBRIDGE_DATABASE_URL": url, "STATE_DIRECTORY": str(tmp_path / "state")},
    )
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: overrides database: connection failed")
    assert "s3cr3t" not in result.output
    assert not (tmp_path / "state").exists()  # no fallback to a local file


# ------------------------------------------------------------------ outage


def set_directly(url: str, scope: str, state: OverrideState) -> Override:
    with PostgresOverrideStore(url) as store:
        return store.set(scope, state, "direct", at=datetime.now(UTC))


async def test_an_outage_keeps_the_last_overrides_routing(
    database: str, proxy: Proxy, tmp_path: Path
) -> None:
    empty(database)
    first = set_directly(database, "wardenburg", OverrideState.CLOSED)
    node = LiveOverrides(tmp_path / "pbxbridge.sqlite", proxy.url(database))
    try:
        assert await node.poll() is True
        assert node.items == (first,) and node.error is None

        cut = asyncio.create_task(proxy.cut(2.0))
        await asyncio.sleep(0.05)  # the line is down now
        # Meanwhile an operator on another node (direct line) changes them.
        with PostgresOverrideStore(database) as other:
            other.clear(at=datetime.now(UTC), override_id=first.id)
        second = set_directly(database, "oldenburg", OverrideState.OPEN)

        errors: list[Any] = []
        while not cut.done():
            assert await node.poll() is False
            assert node.items == (first,)  # the last overrides keep routing
            errors.append(node.health()["error"])
            await asyncio.sleep(0.2)
        await cut
        assert errors and all(isinstance(e, str) and e for e in errors)
        assert node.health()["backend"] == "postgresql"

        # Back: the next poll reconnects, clears the error and reads the change.
        assert await node.poll() is True
        assert node.items == (second,) and node.error is None
        assert node.health()["error"] is None
        assert proxy.cuts == 1 and proxy.accepted >= 2
    finally:
        node.close()
