"""The override stores: behaviours shared by SQLite and PostgreSQL, SQLite specifics.

Store behaviours live in :class:`OverrideStoreBehaviour`, run here against an
SQLite file in a temporary directory and, by
``tests/integration/test_overrides_postgres.py``, against the machine's
PostgreSQL: both stores must mean the same thing, so that the CLI and the daemon
behave alike whichever one a node is configured with.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.core.models import ALL_TENANTS, Override, OverrideState
from pbxbridge.storage.overrides import (
    OverrideStore,
    SqliteOverrideStore,
    open_override_store,
    override_backend,
)

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=BERLIN)
OPEN = OverrideState.OPEN
CLOSED = OverrideState.CLOSED

OpenStore = Callable[[], OverrideStore]
"""Opens another store on the same database (another process, another node)."""


def ids(items: list[Override]) -> list[int]:
    return [o.id for o in items]


class OverrideStoreBehaviour:
    """What every OverrideStore must do.

    Subclasses provide ``open_store`` (a factory for stores on one empty
    database) and ``backend``; ``store`` is the first store it opens.
    """

    backend = ""

    @pytest.fixture
    def store(self, open_store: OpenStore) -> Iterator[OverrideStore]:
        with open_store() as s:
            yield s

    # -- SetAndActive ----------------------------------------

    def test_empty_store_has_nothing_active(self, store: OverrideStore) -> None:
        assert store.active(T0) == []
        assert store.history() == []

    def test_set_returns_the_stored_override(self, store: OverrideStore) -> None:
        item = store.set(
            "wardenburg",
            CLOSED,
            "Unwetter",
            at=T0,
            expires_at=T0 + timedelta(hours=2),
            set_by="alice",
        )
        assert item.id >= 1
        assert (item.scope, item.state, item.reason, item.set_by) == (
            "wardenburg",
            CLOSED,
            "Unwetter",
            "alice",
        )
        assert item.set_at == T0
        assert item.set_at.tzinfo == UTC
        assert item.expires_at == T0 + timedelta(hours=2)

    def test_active_returns_what_was_set(self, store: OverrideStore) -> None:
        item = store.set("wardenburg", CLOSED, "Unwetter", at=T0, set_by="alice")
        (got,) = store.active(T0 + timedelta(minutes=1))
        assert got == item
        assert got.expires_at is None

    def test_active_is_oldest_first_and_covers_all_scopes(self, store: OverrideStore) -> None:
        a = store.set("wardenburg", CLOSED, "a", at=T0)
        b = store.set(ALL_TENANTS, OPEN, "b", at=T0 + timedelta(minutes=1))
        c = store.set("oldenburg", OPEN, "c", at=T0 + timedelta(minutes=2))
        assert ids(store.active(T0 + timedelta(minutes=5))) == [a.id, b.id, c.id]
        assert store.active(T0 + timedelta(minutes=5))[1].scope == ALL_TENANTS

    def test_future_overrides_are_listed(self, store: OverrideStore) -> None:
        # active() includes overrides that start later; Override.active_at decides.
        later = store.set("wardenburg", CLOSED, "later", at=T0 + timedelta(days=1))
        (got,) = store.active(T0)
        assert got.id == later.id
        assert not got.active_at(T0)
        assert got.active_at(T0 + timedelta(days=1))

    def test_reason_with_quotes_and_umlauts_round_trips(self, store: OverrideStore) -> None:
        reason = "Sturm 'Xaver'; \"Rathaus\" geschlossen — Überflutung"
        store.set("wardenburg", CLOSED, reason, at=T0)
        assert store.active(T0)[0].reason == reason

    def test_other_time_zones_are_normalised(self, store: OverrideStore) -> None:
        at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
        expires = datetime(2026, 11, 25, 5, 0, tzinfo=ZoneInfo("America/New_York"))
        store.set("wardenburg", CLOSED, "x", at=at, expires_at=expires)
        (got,) = store.active(at)
        assert got.set_at == at
        assert got.expires_at == expires
        assert got.expires_at is not None and got.expires_at.tzinfo == UTC

    # -- Validation ----------------------------------------

    @pytest.mark.parametrize(
        ("at", "expires_at"),
        [
            pytest.param(datetime(2026, 11, 25, 10, 0), None, id="naive-start"),
            pytest.param(T0, datetime(2026, 11, 25, 12, 0), id="naive-expiry"),
        ],
    )
    def test_naive_datetimes_are_rejected(
        self, store: OverrideStore, at: datetime, expires_at: datetime | None
    ) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            store.set("wardenburg", CLOSED, "x", at=at, expires_at=expires_at)
        assert store.history() == []

    @pytest.mark.parametrize(
        "expires_at",
        [T0, T0 - timedelta(seconds=1), T0 - timedelta(days=1)],
        ids=["equal", "one-second-before", "one-day-before"],
    )
    def test_expiry_not_after_start_is_rejected(
        self, store: OverrideStore, expires_at: datetime
    ) -> None:
        with pytest.raises(ValueError, match="after the start"):
            store.set("wardenburg", CLOSED, "x", at=T0, expires_at=expires_at)
        assert store.history() == []

    @pytest.mark.parametrize(
        ("scope", "override_id"), [(None, None), ("wardenburg", 1)], ids=["neither", "both"]
    )
    def test_clear_needs_exactly_one_of_scope_and_id(
        self, store: OverrideStore, scope: str | None, override_id: int | None
    ) -> None:
        store.set("wardenburg", CLOSED, "x", at=T0)
        with pytest.raises(ValueError, match="exactly one"):
            store.clear(at=T0, scope=scope, override_id=override_id)
        assert len(store.active(T0)) == 1

    # -- Expiry ----------------------------------------

    @pytest.fixture
    def item(self, store: OverrideStore) -> Override:
        return store.set("wardenburg", CLOSED, "x", at=T0, expires_at=T0 + timedelta(hours=2))

    @pytest.mark.parametrize(
        ("offset", "active"),
        [
            (timedelta(0), True),
            (timedelta(hours=1), True),
            (timedelta(hours=2) - timedelta(microseconds=1), True),
            (timedelta(hours=2), False),
            (timedelta(hours=2, microseconds=1), False),
            (timedelta(days=3), False),
        ],
        ids=["at-start", "middle", "just-before", "at-expiry", "just-after", "days-after"],
    )
    def test_active_until_expiry_exclusive(
        self, store: OverrideStore, item: Override, offset: timedelta, active: bool
    ) -> None:
        at = T0 + offset
        assert (ids(store.active(at)) == [item.id]) is active
        assert item.active_at(at) is active

    def test_expiry_compared_across_time_zones(self, store: OverrideStore, item: Override) -> None:
        # T0 + 2h is 11:00 UTC; 11:59 in London is after it, 11:59 in Berlin before.
        assert store.active(datetime(2026, 11, 25, 11, 59, tzinfo=BERLIN)) != []
        assert store.active(datetime(2026, 11, 25, 11, 59, tzinfo=ZoneInfo("Europe/London"))) == []

    def test_expired_overrides_stay_in_history(self, store: OverrideStore, item: Override) -> None:
        assert store.active(T0 + timedelta(days=1)) == []
        ((kept, cleared_at, cleared_by),) = store.history()
        assert kept == item
        assert (cleared_at, cleared_by) == (None, "")

    # -- Clear ----------------------------------------

    def test_clear_by_scope_clears_all_live_overrides_of_that_scope(
        self, store: OverrideStore
    ) -> None:
        store.set("wardenburg", CLOSED, "a", at=T0)
        store.set("wardenburg", OPEN, "b", at=T0)
        other = store.set("oldenburg", CLOSED, "c", at=T0)
        glob = store.set(ALL_TENANTS, CLOSED, "d", at=T0)
        assert store.clear(at=T0 + timedelta(minutes=1), scope="wardenburg") == 2
        assert ids(store.active(T0 + timedelta(minutes=2))) == [other.id, glob.id]

    def test_clear_all_scope_leaves_tenant_overrides(self, store: OverrideStore) -> None:
        tenant = store.set("wardenburg", CLOSED, "a", at=T0)
        store.set(ALL_TENANTS, OPEN, "b", at=T0)
        assert store.clear(at=T0, scope=ALL_TENANTS) == 1
        assert ids(store.active(T0)) == [tenant.id]

    def test_clear_by_id(self, store: OverrideStore) -> None:
        a = store.set("wardenburg", CLOSED, "a", at=T0)
        b = store.set("wardenburg", OPEN, "b", at=T0)
        assert store.clear(at=T0, override_id=a.id) == 1
        assert ids(store.active(T0)) == [b.id]

    def test_clearing_twice_counts_zero(self, store: OverrideStore) -> None:
        a = store.set("wardenburg", CLOSED, "a", at=T0)
        assert store.clear(at=T0, override_id=a.id, cleared_by="alice") == 1
        assert store.clear(at=T0 + timedelta(hours=1), override_id=a.id, cleared_by="bob") == 0
        assert store.clear(at=T0, scope="wardenburg") == 0
        ((_, cleared_at, cleared_by),) = store.history()
        assert (cleared_at, cleared_by) == (T0, "alice")

    @pytest.mark.parametrize(
        ("scope", "override_id"), [("nobody", None), (None, 999)], ids=["scope", "id"]
    )
    def test_clear_unknown_counts_zero(
        self, store: OverrideStore, scope: str | None, override_id: int | None
    ) -> None:
        store.set("wardenburg", CLOSED, "a", at=T0)
        assert store.clear(at=T0, scope=scope, override_id=override_id) == 0
        assert len(store.active(T0)) == 1

    # -- History ----------------------------------------

    def test_history_keeps_cleared_ones_with_who_and_when(self, store: OverrideStore) -> None:
        a = store.set("wardenburg", CLOSED, "Unwetter", at=T0, set_by="alice")
        b = store.set(ALL_TENANTS, OPEN, "Wahl", at=T0 + timedelta(minutes=1), set_by="carol")
        cleared = T0 + timedelta(hours=1)
        store.clear(at=cleared, scope="wardenburg", cleared_by="bob")
        history = store.history()
        assert [h[0].id for h in history] == [b.id, a.id]  # newest first
        (b_item, b_cleared, b_by), (a_item, a_cleared, a_by) = history
        assert a_item == a
        assert (a_cleared, a_by) == (cleared, "bob")
        assert a_cleared is not None and a_cleared.tzinfo == UTC
        assert b_item == b
        assert (b_cleared, b_by) == (None, "")

    def test_history_limit(self, store: OverrideStore) -> None:
        made = [store.set("wardenburg", CLOSED, str(i), at=T0) for i in range(5)]
        assert [h[0].id for h in store.history(limit=2)] == [made[4].id, made[3].id]

    # -- validation shared by every backend ------------------------------

    @pytest.mark.parametrize(
        ("field", "kwargs"),
        [
            ("scope", {"scope": "warden\x00burg"}),
            ("reason", {"reason": "Un\x00wetter"}),
            ("set_by", {"set_by": "al\x00ice"}),
        ],
    )
    def test_nul_characters_are_rejected(
        self, store: OverrideStore, field: str, kwargs: dict[str, str]
    ) -> None:
        # PostgreSQL cannot store NUL in text; SQLite could, but must refuse alike.
        args = {"scope": "wardenburg", "reason": "x", "set_by": ""} | kwargs
        with pytest.raises(ValueError, match=f"{field} must not contain NUL"):
            store.set(args["scope"], CLOSED, args["reason"], at=T0, set_by=args["set_by"])
        assert store.history() == []

    def test_naive_times_are_rejected_by_clear_and_active(self, store: OverrideStore) -> None:
        store.set("wardenburg", CLOSED, "x", at=T0)
        naive = datetime(2026, 11, 25, 10, 0)
        with pytest.raises(ValueError, match="timezone-aware"):
            store.clear(at=naive, scope="wardenburg")
        with pytest.raises(ValueError, match="timezone-aware"):
            store.active(naive)
        assert len(store.active(T0)) == 1

    # -- durability and several stores on one database --------------------

    def test_overrides_survive_reopening(self, open_store: OpenStore) -> None:
        with open_store() as first:
            a = first.set("wardenburg", CLOSED, "Unwetter", at=T0, set_by="alice")
            b = first.set(ALL_TENANTS, OPEN, "Wahl", at=T0, expires_at=T0 + timedelta(hours=1))
            first.clear(at=T0 + timedelta(minutes=5), override_id=b.id, cleared_by="bob")
        with open_store() as second:
            assert second.active(T0 + timedelta(minutes=10)) == [a]
            assert [h[0].id for h in second.history()] == [b.id, a.id]
            assert second.history()[0][2] == "bob"
            c = second.set("oldenburg", OPEN, "c", at=T0)
        assert c.id > b.id

    def test_two_stores_open_at_once(self, open_store: OpenStore) -> None:
        with open_store() as a, open_store() as b:
            item = a.set("wardenburg", CLOSED, "x", at=T0)
            assert b.active(T0) == [item]
            assert b.clear(at=T0, override_id=item.id) == 1
            assert a.active(T0) == []

    def test_backend_and_context_manager(self, open_store: OpenStore) -> None:
        store = open_store()
        with store as entered:
            assert entered is store
            assert store.backend == self.backend
        store.close()  # idempotent

    # -- changed() --------------------------------------------------------

    def test_first_call_reports_a_change(self, store: OverrideStore) -> None:
        assert store.changed() is True

    def test_no_change_without_writes(self, store: OverrideStore) -> None:
        store.changed()
        assert store.changed() is False
        store.active(T0)
        store.history()
        assert store.changed() is False

    def test_detects_writes_from_another_store(self, open_store: OpenStore) -> None:
        with open_store() as reader, open_store() as writer:
            assert reader.changed() is True
            assert reader.changed() is False
            item = writer.set("wardenburg", CLOSED, "x", at=T0)
            assert reader.changed() is True
            assert reader.changed() is False
            writer.clear(at=T0, scope="wardenburg")
            assert reader.changed() is True
            assert reader.changed() is False
            # a second override, cleared by id: each step is seen once
            other = writer.set("oldenburg", OPEN, "y", at=T0)
            assert reader.changed() is True
            writer.clear(at=T0, override_id=other.id)
            assert reader.changed() is True
            assert reader.changed() is False
            # clearing what is cleared already writes nothing
            assert writer.clear(at=T0, override_id=item.id) == 0

    def test_failed_write_elsewhere_is_no_change(self, open_store: OpenStore) -> None:
        with open_store() as reader, open_store() as writer:
            reader.changed()
            with pytest.raises(ValueError):
                writer.set("wardenburg", CLOSED, "x", at=T0, expires_at=T0)
            assert writer.clear(at=T0, scope="nobody") == 0
            assert reader.changed() is False


class TestSqliteOverrideStore(OverrideStoreBehaviour):
    backend = "sqlite"

    @pytest.fixture
    def open_store(self, db_path: Path) -> OpenStore:
        return lambda: SqliteOverrideStore(db_path)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "pbxbridge.sqlite"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SqliteOverrideStore]:
    with SqliteOverrideStore(db_path) as s:
        yield s


# ------------------------------------------------------------------ choosing the backend


class TestFactory:
    def test_without_url_the_state_file(self, db_path: Path) -> None:
        assert override_backend("") == "sqlite"
        with open_override_store("", db_path) as store:
            assert isinstance(store, SqliteOverrideStore)
            store.set("wardenburg", CLOSED, "x", at=T0)
        assert db_path.is_file()

    def test_with_url_postgresql(self) -> None:
        # Which class it opens is checked against a real server in
        # tests/integration/test_overrides_postgres.py.
        assert override_backend("postgresql://pbx@db.example/pbx") == "postgresql"


# ------------------------------------------------------------------ SQLite specifics


class TestSqliteFile:
    def test_folder_is_created(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "state.sqlite"
        with SqliteOverrideStore(path) as s:
            s.set("wardenburg", CLOSED, "x", at=T0)
        assert path.is_file()

    def test_visible_to_a_plain_sqlite_reader(
        self, sqlite_store: SqliteOverrideStore, db_path: Path
    ) -> None:
        sqlite_store.set("wardenburg", CLOSED, "x", at=T0, expires_at=T0 + timedelta(hours=1))
        with sqlite3.connect(db_path) as raw:
            row = raw.execute("SELECT scope, state, set_at, expires_at FROM overrides").fetchone()
        assert row == (
            "wardenburg",
            "closed",
            "2026-11-25T09:00:00.000000Z",
            "2026-11-25T10:00:00.000000Z",
        )

    def test_detects_writes_from_a_plain_connection(
        self, sqlite_store: SqliteOverrideStore, db_path: Path
    ) -> None:
        sqlite_store.changed()
        with sqlite3.connect(db_path) as raw:
            raw.execute(
                "INSERT INTO overrides (scope, state, reason, set_at) VALUES (?, ?, ?, ?)",
                ("wardenburg", "open", "x", "2026-11-25T09:00:00.000000Z"),
            )
        assert sqlite_store.changed() is True
        assert sqlite_store.active(T0)[0].state is OPEN


class TestSqliteMigration:
    def test_new_file_gets_the_current_user_version_and_wal(self, db_path: Path) -> None:
        SqliteOverrideStore(db_path).close()
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("PRAGMA user_version").fetchone()[0] == 2  # + virtual holds
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
        assert {"overrides", "overrides_live"} <= tables

    def test_reopening_an_existing_file_does_not_fail(self, db_path: Path) -> None:
        for _ in range(3):
            with SqliteOverrideStore(db_path) as s:
                s.set("wardenburg", CLOSED, "x", at=T0)
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("PRAGMA user_version").fetchone()[0] == 2  # + virtual holds
            assert raw.execute("SELECT COUNT(*) FROM overrides").fetchone()[0] == 3

    def test_concurrent_first_open_of_a_fresh_file(self, tmp_path: Path) -> None:
        errors: list[BaseException] = []
        for attempt in range(20):
            path = tmp_path / f"fresh-{attempt}.sqlite"
            barrier = threading.Barrier(3)

            def open_store(path: Path = path, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    SqliteOverrideStore(path).close()
                except Exception as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=open_store) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
