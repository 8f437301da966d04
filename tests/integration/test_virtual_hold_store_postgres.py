"""Virtual holds in the machine's PostgreSQL (127.0.0.1:5432), shared by nodes.

The same :class:`VirtualHoldStoreBehaviour` the SQLite store passes, plus the
migration: a fresh database opened first by the virtual-hold store gets the
whole schema (journal and overrides too), and the journal then finds it current.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from pbxbridge.journal.postgres import PostgresJournal
from pbxbridge.storage.schema import POSTGRES_VERSION
from pbxbridge.storage.virtual_holds import PostgresVirtualHoldStore, open_virtual_hold_store
from tests.postgres import query
from tests.unit.test_virtual_hold_store import (
    T0,
    OpenStore,
    VirtualHoldStoreBehaviour,
    accepted,
    new_hold,
)

pytestmark = pytest.mark.postgres


class TestPostgresVirtualHoldStore(VirtualHoldStoreBehaviour):
    @pytest.fixture
    def open_store(self, database: str) -> OpenStore:
        query(database, "TRUNCATE virtual_holds")
        return lambda: PostgresVirtualHoldStore(database)

    def test_a_fresh_database_gets_the_whole_schema(self, fresh_database: str) -> None:
        with open_virtual_hold_store(fresh_database, "/nonexistent/state.sqlite") as store:
            assert store.backend == "postgresql"
            store.save(accepted(new_hold("c1"), T0 + timedelta(minutes=1)))
        assert query(fresh_database, "SELECT version FROM schema_version ORDER BY 1") == [
            (v,) for v in range(1, POSTGRES_VERSION + 1)
        ]
        with PostgresJournal(fresh_database) as journal:
            assert journal.schema_version == POSTGRES_VERSION
        types = dict(
            query(
                fresh_database,
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'virtual_holds'",
            )
        )
        assert types["arrived_at"] == types["next_try_at"] == "timestamp with time zone"

    def test_two_nodes_see_each_others_holds(self, database: str) -> None:
        query(database, "TRUNCATE virtual_holds")
        with PostgresVirtualHoldStore(database) as a, PostgresVirtualHoldStore(database) as b:
            a.save(accepted(new_hold("c1", node="a"), T0))
            b.save(accepted(new_hold("c1", node="b"), T0 + timedelta(seconds=1)))
            assert [h.node for h in a.pending()] == ["a", "b"]
            assert [h.node for h in b.pending("a")] == ["a"]
