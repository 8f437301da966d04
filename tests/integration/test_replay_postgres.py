"""``pbxbridge replay`` on a journal and overrides shared in the real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pbxbridge.core import OverrideState
from pbxbridge.journal.postgres import PostgresJournal
from pbxbridge.storage.overrides import PostgresOverrideStore
from tests.unit.test_cli_replay import berlin, entry
from tests.unit.test_replay import RULES, WAR_DID

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def test_replay_reads_the_shared_journal_and_override_history(
    fresh_database: str, tmp_path: Path
) -> None:
    current = RULES.replace("CAL", "sc")
    new = current.replace("closed: {then: hangup}", "closed: {then: voicemail, mailbox: '7@w'}")
    (tmp_path / "current.yaml").write_text(current, encoding="utf-8")
    (tmp_path / "new.yaml").write_text(new, encoding="utf-8")
    with PostgresJournal(fresh_database) as journal:
        journal.upsert(
            [
                entry("day", WAR_DID, "+494411234567", berlin(23, "10:30")),
                entry("storm", WAR_DID, "+494411234568", berlin(23, "11:30")),
                entry("night", WAR_DID, "+494411234569", berlin(23, "22:00")),
                entry("menu", "115", "+491711234567", berlin(23, "10:00"), menu_digit="2"),
            ]
        )
    with PostgresOverrideStore(fresh_database) as store:
        storm = store.set("wardenburg", OverrideState.CLOSED, "Unwetter", at=berlin(23, "11:00"))
        store.clear(at=berlin(23, "12:00"), override_id=storm.id)
    env = {
        **os.environ,
        "PBXBRIDGE_DATABASE_URL": fresh_database,
        "STATE_DIRECTORY": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pbxbridge",
            "replay",
            "-c",
            str(tmp_path / "current.yaml"),
            "--rules",
            str(tmp_path / "new.yaml"),
            "--from",
            "2026-11-23",
            "--to",
            "2026-11-23",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    # Wardenburg's closed handling changed: the night call and the call during
    # the storm override (closed then); the menu call pressed 2 (Wardenburg)
    # during opening hours and stays in the queue.
    assert [c["call_id"] for c in data["changed"]] == ["storm", "night"]
    assert data["summary"]["calls"] == 4
    assert not (tmp_path / "state").exists()  # PostgreSQL only: no state file made
