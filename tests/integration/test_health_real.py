"""The real daemon's /healthz verdict against the test bed (ARI, AMI, MQTT all real)."""

from __future__ import annotations

import json
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
