"""Real calls through the real Asterisk and daemon, then ``pbxbridge replay`` on their journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.journal.sqlite import SqliteJournal
from tests.integration.daemon import TEST_RULES, free_port, running_daemon
from tests.testbed.sipp import SippAgent, place_calls
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.asterisk

ROOT = Path(__file__).resolve().parents[2]


def test_a_menu_call_is_journalled_with_its_digit_and_replayed(tb: Testbed, tmp_path: Path) -> None:
    env = {"PBXBRIDGE_AGI_BIND": f"127.0.0.1:{free_port()}"}
    with running_daemon(tb, tmp_path, extra_env=env) as daemon:
        daemon.wait_health(lambda h: h["ami"]["state"] == "connected", timeout=15)
        with SippAgent.for_agent(1, "answer", ring_delay_ms=100):
            # A mobile caller on 115 cannot be placed: the menu; 2 is Wardenburg.
            assert place_calls("115", hold_ms=1500, caller="01711234567", dtmf="2").ok
            assert place_calls("+494407730", hold_ms=500, caller="04407123456").ok
        daemon.wait_health(
            lambda h: h["journal"]["backlog"] == 0 and h["journal"]["written"] >= 2, timeout=20
        )
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        rows = list(
            journal.calls_between(
                datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")),
                datetime(2100, 1, 1, tzinfo=ZoneInfo("UTC")),
            )
        )
    menu = [r for r in rows if r.via_115]
    assert [(r.tenant, r.menu_digit) for r in menu] == [("wardenburg", "2")]
    assert [r.menu_digit for r in rows if not r.via_115] == [None]

    # New rules: the menu's 2 goes to Oldenburg.
    new = tmp_path / "new.yaml"
    new.write_text(
        TEST_RULES.replace(
            'options: {"1": oldenburg, "2": wardenburg}',
            'options: {"1": oldenburg, "2": oldenburg}',
        ),
        encoding="utf-8",
    )
    assert '2": oldenburg' in new.read_text(encoding="utf-8")
    today = datetime.now(ZoneInfo("Europe/Berlin")).date().isoformat()
    done = subprocess.run(
        [
            sys.executable, "-m", "pbxbridge", "replay", "-c", str(tmp_path / "routing.yaml"),
            "--rules", str(new), "--from", today, "--to", today, "--format", "json",
        ],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PBXBRIDGE_DATABASE")},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    (change,) = data["changed"]
    assert (change["menu_digit"], change["change"]) == ("2", "tenant+priority")
    assert (change["before"]["tenant"], change["after"]["tenant"]) == ("wardenburg", "oldenburg")
    assert data["summary"]["calls"] == 2
