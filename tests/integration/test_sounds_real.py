"""The rules' sounds against the real Asterisk's index (ARI GET /sounds)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pbxbridge.adapters.ari.config import AriConfig
from pbxbridge.adapters.ari.sounds import SoundCheck, fetch_sounds
from pbxbridge.config import load_rules
from pbxbridge.config.sounds import sounds_named
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.asterisk

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "routing.yaml"


def ari(tb: Testbed) -> AriConfig:
    return AriConfig(
        base_url=f"http://127.0.0.1:{tb.config.http_port}",
        username=tb.ari_user,
        password=tb.ari_password,
        app="pbxbridge-sounds-test",
    )


def one_present_one_missing(tmp_path: Path) -> Path:
    """The example with Wardenburg's whisper present and Oldenburg's closed announcement not."""
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("whisper: custom/wardenburg", "whisper: custom/pbxbridge-test")
    text = text.replace("announce: custom/oldenburg-closed", "announce: custom/pbxbridge-nowhere")
    assert "custom/pbxbridge-nowhere" in text and "custom/pbxbridge-test" in text
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_check(tb: Testbed, rules: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PBXBRIDGE_ARI_PASSWORD": tb.ari_password,
        "PBXBRIDGE_ARI_USER": tb.ari_user,
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pbxbridge",
            "check",
            str(rules),
            "--ari",
            f"http://127.0.0.1:{tb.config.http_port}",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=60,
    )


class TestSoundsReal:
    def test_the_index_and_the_daemons_check(self, tb: Testbed, tmp_path: Path) -> None:
        index = asyncio.run(fetch_sounds(ari(tb)))
        assert "en" in index["beep"]  # Asterisk's own prompts
        # sounds/custom/pbxbridge-test.ulaw: listed under its folder as language
        assert "custom" in index["pbxbridge-test"]

        rules = one_present_one_missing(tmp_path)
        check = SoundCheck(ari(tb))
        asyncio.run(check.check(sounds_named(load_rules(rules)[1]), why="test"))
        assert check.error is None and check.checked_at is not None
        assert [(m.sound, m.language) for m in check.missing] == [
            ("custom/pbxbridge-nowhere", "en")
        ]
        assert check.health()["missing"] == [
            {
                "sound": "custom/pbxbridge-nowhere",
                "language": "en",
                "used_at": ["tenants.oldenburg.closed.announce"],
            }
        ]

    def test_check_ari_reports_the_line(self, tb: Testbed, tmp_path: Path) -> None:
        rules = one_present_one_missing(tmp_path)
        line = next(
            i
            for i, text in enumerate(rules.read_text(encoding="utf-8").splitlines(), 1)
            if "custom/pbxbridge-nowhere" in text
        )
        done = run_check(tb, rules)
        assert done.returncode == 1, done.stderr
        assert (
            f"{rules}:{line}: tenants.oldenburg.closed.announce: sound "
            "'custom/pbxbridge-nowhere' (closed announcement) is missing in Asterisk "
            "for language 'en'"
        ) in done.stderr
        assert "1 sound(s) missing" in done.stderr
        assert "pbxbridge-test" not in done.stderr

        # German asked for: nothing of the example is in a German folder, but
        # sounds/custom/x plays in every language
        german = run_check(tb, rules, "--language", "de")
        assert "for language 'de'" in german.stderr and german.returncode == 1

    def test_the_example_rules_are_complete_on_the_test_bed(self, tb: Testbed) -> None:
        done = run_check(tb, EXAMPLE)
        assert done.returncode == 0, done.stderr
        assert "OK" in done.stdout

    def test_unreachable_asterisk_is_an_error(self, tmp_path: Path) -> None:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pbxbridge",
                "check",
                str(EXAMPLE),
                "--ari",
                "http://127.0.0.1:9",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
            timeout=60,
            env={**os.environ, "PBXBRIDGE_ARI_PASSWORD": "x"},
        )
        assert done.returncode == 1
        assert "cannot list Asterisk's sounds" in done.stderr


def test_the_daemon_checks_sounds_and_summarises_a_reload(tb: Testbed, tmp_path: Path) -> None:
    """Real daemon, real Asterisk: /healthz, /metrics and the log after a rules change."""
    from datetime import UTC, datetime, timedelta

    from pbxbridge.journal.sqlite import SqliteJournal
    from tests.integration.daemon import TEST_RULES, free_port, running_daemon
    from tests.unit.test_cli_replay import entry

    missing_file = tb.root / "usr/share/asterisk/sounds/custom/pbxbridge-nowhere.ulaw"
    missing_file.unlink(missing_ok=True)
    now = datetime.now(UTC)
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:  # beside state.sqlite
        journal.upsert(
            [
                entry(f"c{i}", "+494407730", f"+49441123456{i}", now - timedelta(hours=i + 1))
                for i in range(3)
            ]
            + [entry("old", "+494407730", "+494411234560", now - timedelta(days=8))]
        )
    env = {"PBXBRIDGE_AGI_BIND": f"127.0.0.1:{free_port()}"}
    with running_daemon(tb, tmp_path, extra_env=env) as daemon:
        daemon.wait_health(lambda h: h["sounds"]["checked_at"] is not None, timeout=15)
        body = daemon.health()
        assert (body["status"], body["sounds"]["missing"]) == ("ok", []), body
        assert body["rules"]["replay"] is None  # no reload yet
        assert daemon.metrics()["pbxbridge_sounds_missing"] == 0.0

        changed = TEST_RULES.replace(
            "priority: 5, whisper: custom/pbxbridge-test",
            "priority: 6, whisper: custom/pbxbridge-test",
        ).replace(
            'open: {queue: servicecenter, priority: 3, callerid_prefix: "OL"}',
            'open: {queue: servicecenter, priority: 3, callerid_prefix: "OL",'
            " whisper: custom/pbxbridge-nowhere}",
        )
        assert changed.count("pbxbridge-nowhere") == 1 and "priority: 6" in changed
        daemon.rules_path.write_text(changed, encoding="utf-8")
        daemon.wait_health(
            lambda h: (
                h["rules"]["generation"] == 2
                and h["rules"]["replay"] is not None
                and h["sounds"]["missing"] != []
            ),
            timeout=15,
        )
        body = daemon.health()
        replay = body["rules"]["replay"]
        assert (replay["generation"], replay["days"], replay["calls"]) == (2, 7, 3)
        assert (replay["changed"], replay["by_kind"]) == (3, {"priority": 3})
        assert body["status"] == "degraded"
        assert body["problems"] == ["sounds: 1 missing in Asterisk (custom/pbxbridge-nowhere [en])"]
        assert body["sounds"]["missing"] == [
            {
                "sound": "custom/pbxbridge-nowhere",
                "language": "en",
                "used_at": ["tenants.oldenburg.open.whisper"],
            }
        ]
        metrics = daemon.metrics()
        assert metrics["pbxbridge_sounds_missing"] == 1.0
        assert (
            metrics['pbxbridge_sound_missing{language="en",sound="custom/pbxbridge-nowhere"}']
            == 1.0
        )
        (line,) = [e for e in daemon.logs() if e.get("event") == "rules.replay"]
        assert line["changed"] == 3 and "+49" not in json.dumps(line)
        assert [e["sound"] for e in daemon.logs() if e.get("event") == "sounds.missing"] == [
            "custom/pbxbridge-nowhere"
        ]

        # The operator copies the prompt into place and reloads the same file.
        missing_file.write_bytes(b"\xff" * 2400)
        try:
            daemon.signal(signal.SIGHUP)
            daemon.wait_health(lambda h: h["sounds"]["missing"] == [], timeout=15)
            assert daemon.health()["status"] == "ok"
            assert daemon.metrics()["pbxbridge_sounds_missing"] == 0.0
        finally:
            missing_file.unlink(missing_ok=True)
