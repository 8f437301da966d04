"""The real daemon's /healthz verdict against the test bed (ARI, AMI, MQTT all real)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import free_port, running_daemon
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.asterisk


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    """HTTP status and body of ``/healthz``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status, dict(json.load(resp))
    except urllib.error.HTTPError as err:
        return err.code, dict(json.load(err))


def test_rejected_reload_is_degraded_until_fixed(tb: Testbed, tmp_path: Path) -> None:
    env = {"PBXBRIDGE_AGI_BIND": f"127.0.0.1:{free_port()}"}
    with running_daemon(tb, tmp_path, extra_env=env) as daemon:
        daemon.wait_health(lambda h: h["status"] == "ok", timeout=15)
        assert healthz(daemon.port)[0] == 200

        good = daemon.rules_path.read_text(encoding="utf-8")
        daemon.rules_path.write_text(good.replace('"00:00-24:00"', "17:30"), encoding="utf-8")
        daemon.wait_health(lambda h: h["rules"]["reload_failures"] >= 1, timeout=5)
        code, body = healthz(daemon.port)
        assert (code, body["status"]) == (503, "degraded"), body
        (problem,) = body["problems"]
        assert problem.startswith("rules: last reload rejected"), problem
        assert body["rules"]["generation"] == 1  # the old rules still route

        daemon.rules_path.write_text(good.replace("priority: 5", "priority: 6"), encoding="utf-8")
        daemon.wait_health(lambda h: h["rules"]["generation"] == 2, timeout=5)
        code, body = healthz(daemon.port)
        assert (code, body["status"], body["problems"]) == (200, "ok", []), body


def test_asterisk_restart_resyncs_ami_without_a_traceback(tb: Testbed, tmp_path: Path) -> None:
    env = {"PBXBRIDGE_AGI_BIND": f"127.0.0.1:{free_port()}"}
    with running_daemon(tb, tmp_path, extra_env=env) as daemon:
        daemon.wait_health(lambda h: h["status"] == "ok", timeout=15)
        tb.cli("core restart now")
        daemon.wait_health(lambda h: h["ami"]["state"] != "connected", timeout=10)
        # Back to ok: ARI and AMI logged in again and the AMI resync went through.
        daemon.wait_health(lambda h: h["status"] == "ok", timeout=40)
        ami = [e for e in daemon.logs() if str(e.get("event", "")).startswith("ami.")]
        assert not [e for e in ami if e["event"] in ("ami.resync_failed", "ami.session_crashed")]
        assert not [e for e in ami if "exception" in e or "exc_info" in e], ami
        retries = [e for e in ami if e["event"] in ("ami.resync_retried", "ami.resync_skipped")]
        assert len(retries) <= 1, retries  # one warning line at most per login
        assert any(e["event"] == "ami.connected" for e in ami)


def test_ami_resync_waits_quietly_for_app_queue(tb: Testbed, tmp_path: Path) -> None:
    """What a restart does by chance, made certain: AMI logs in while app_queue is not loaded."""
    env = {"PBXBRIDGE_AGI_BIND": f"127.0.0.1:{free_port()}"}
    with running_daemon(tb, tmp_path, extra_env=env) as daemon:
        daemon.wait_health(lambda h: h["status"] == "ok", timeout=15)
        tb.cli("module unload app_queue.so")
        try:
            connected = tb.cli("manager show connected")
            fds = re.findall(
                rf"^\s*{re.escape(tb.ami_user)}\s+\S+\s+\d+\s+\d+\s+(\d+)", connected, re.MULTILINE
            )
            assert fds, connected
            for fd in fds:
                tb.cli(f"manager kick session {fd}")
            # The daemon logs in again (backoff <= 2 s) and finds no QueueStatus.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                e.get("event") in ("ami.resync_refused", "ami.resync_failed") for e in daemon.logs()
            ):
                time.sleep(0.1)
            time.sleep(1.0)
        finally:
            tb.cli("module load app_queue.so")
        daemon.wait_health(lambda h: h["status"] == "ok", timeout=20)
        ami = [e for e in daemon.logs() if str(e.get("event", "")).startswith("ami.")]
        events = [e["event"] for e in ami]
        assert "ami.resync_refused" in events, events
        assert "ami.resync_failed" not in events and "ami.session_crashed" not in events
        assert not [e for e in ami if "exception" in e or "exc_info" in e], ami
        warnings = [e for e in ami if e["event"] in ("ami.resync_retried", "ami.resync_skipped")]
        assert [e["event"] for e in warnings] == ["ami.resync_retried"], warnings
