"""LiveOverrides, the daemon's view of the manual overrides (SQLite; no server needed).

The same class against a shared PostgreSQL (two nodes, the CLI, an outage) is
tested in ``tests/integration/test_overrides_postgres.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pbxbridge.core.models import OverrideState
from pbxbridge.runtime.live import LiveOverrides
from pbxbridge.storage.overrides import SqliteOverrideStore
from pbxbridge.storage.postgres import redact_database_url
from tests.postgres import free_port

NOW = datetime.now(UTC)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "pbxbridge.sqlite"


async def test_sqlite_picks_up_a_change_and_names_the_backend(state: Path) -> None:
    live = LiveOverrides(state)
    try:
        assert await live.poll() is False  # nothing there yet
        assert not live.items
        with SqliteOverrideStore(state) as cli:
            item = cli.set("wardenburg", OverrideState.CLOSED, "Unwetter", at=NOW)
        assert await live.poll() is True
        assert live.items == (item,)
        assert await live.poll() is False
        health = live.health()
        assert (health["backend"], health["path"], health["count"], health["error"]) == (
            "sqlite",
            str(state),
            1,
            None,
        )
    finally:
        live.close()


async def test_a_change_whose_read_failed_is_read_on_the_next_poll(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = LiveOverrides(state)
    try:
        await live.poll()
        with SqliteOverrideStore(state) as cli:
            item = cli.set("wardenburg", OverrideState.CLOSED, "Unwetter", at=NOW)
        store = live._store
        assert store is not None
        real_active = store.active

        def broken(at: datetime) -> list[object]:
            raise OSError("disk I/O error")

        monkeypatch.setattr(store, "active", broken)
        # changed() has now reported the write, but reading it failed ...
        assert await live.poll() is False
        assert not live.items and live.error == "disk I/O error"
        monkeypatch.setattr(store, "active", real_active)
        # ... so the next poll reads again although nothing changed since.
        assert await live.poll() is True
        assert live.items == (item,) and live.error is None
    finally:
        live.close()


async def test_broken_state_file_keeps_the_last_overrides(tmp_path: Path) -> None:
    state = tmp_path / "state" / "pbxbridge.sqlite"
    with SqliteOverrideStore(state) as cli:
        item = cli.set(
            "wardenburg", OverrideState.OPEN, "Wahl", at=NOW, expires_at=NOW + timedelta(hours=1)
        )
    live = LiveOverrides(state)
    try:
        assert await live.poll() is True
        live.close()  # the next poll opens the file afresh ...
        state.unlink()
        state.mkdir()  # ... and finds a folder where the file was
        assert await live.poll() is False
        assert live.items == (item,)
        assert live.error is not None and live.health()["error"] == live.error
        state.rmdir()
        with SqliteOverrideStore(state) as cli:
            again = cli.set("wardenburg", OverrideState.OPEN, "Wahl", at=NOW)
        assert await live.poll() is True
        assert live.items == (again,) and live.error is None
    finally:
        live.close()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://pbx:s3cr3t-Pw@127.0.0.1:{port}/pbx", id="refused"),
        # libpq echoes these values in its parse errors
        pytest.param(
            "postgresql://pbx:s3cr3t-Pw@127.0.0.1:{port}/pbx?sslmode=s3cr3t-Pw", id="echoed-option"
        ),
        pytest.param("postgresql://pbx:s3cr3t Pw@127.0.0.1:{port}/pbx", id="space-in-password"),
    ],
)
async def test_unreachable_database_shows_in_health_without_the_password(
    state: Path, url: str
) -> None:
    url = url.format(port=free_port())
    live = LiveOverrides(state, url)
    try:
        assert await live.poll() is False
        assert await live.poll() is False  # retried each poll, still down
        health = live.health()
        assert health["backend"] == "postgresql"
        assert health["path"] is None and health["count"] == 0
        assert isinstance(health["error"], str) and health["error"]
        text = json.dumps(health)
        assert "s3cr3t" not in text and url not in text
        # a database URL means no SQLite state file is made
        assert not state.exists()  # noqa: ASYNC240 - a test, nothing else runs
    finally:
        live.close()


def test_redaction_of_url_forms() -> None:
    url = "postgresql://u:p%40ss@h/db"
    assert redact_database_url(f"at {url}: p@ss", url) == "at ***: ***"
    dsn = "host=h password='hunter 2' dbname=x"
    assert redact_database_url('bad "hunter 2"', dsn) == 'bad "***"'
    assert redact_database_url("fine", "") == "fine"
    assert redact_database_url("h/db fine", "postgresql://h/db") == "h/db fine"
