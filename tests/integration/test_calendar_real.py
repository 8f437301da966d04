"""The real daemon process with an ``ics:`` calendar: reload on change, broken file kept out.

Needs no Asterisk: ARI points at a closed port (the daemon keeps retrying, as it
does while Asterisk starts), AMI, MQTT and FastAGI are off. What is real: the
``pbxbridge run`` process, its file watch, its reload and its HTTP endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import free_port

ROOT = Path(__file__).resolve().parents[2]
ICS = ROOT / "tests" / "data" / "ics"
TOKEN = "calendar-feed-test-token-42"


class Daemon:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PBXBRIDGE_")}
        env.pop("NOTIFY_SOCKET", None)
        env.pop("CREDENTIALS_DIRECTORY", None)
        env.update(
            PBXBRIDGE_ARI_URL=f"http://127.0.0.1:{free_port()}",
            PBXBRIDGE_ARI_USER="nobody",
            PBXBRIDGE_ARI_PASSWORD="nothing",
            PBXBRIDGE_AMI_ENABLED="false",
            PBXBRIDGE_MQTT_ENABLED="false",
            PBXBRIDGE_AGI_ENABLED="false",
            PBXBRIDGE_HTTP_BIND=f"127.0.0.1:{self.port}",
            PBXBRIDGE_LOG_FORMAT="json",
            PBXBRIDGE_CALENDAR_FEED="token",
            PBXBRIDGE_CALENDAR_FEED_TOKEN=TOKEN,
        )
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pbxbridge", "run", "--config", "routing.yaml"],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def health(self) -> dict[str, Any]:
        return dict(json.loads(self.get("/healthz")[1]))

    def wait(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited:\n{self.log.read_text()[-3000:]}")
            try:
                body = self.health()
                last = body
                if predicate(body):
                    return body
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"not reached in {timeout} s: {last}\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    text = (ROOT / "config" / "routing.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "  servicecenter:\n    holidays:",
        "  servicecenter:\n    ics: closures.ics\n    holidays:",
        1,
    )
    (tmp_path / "routing.yaml").write_text(text + "state: {path: state.sqlite}\n", encoding="utf-8")
    shutil.copyfile(ICS / "outlook-schliesstage.ics", tmp_path / "closures.ics")
    running = Daemon(tmp_path)
    try:
        running.wait(lambda h: h["rules"]["generation"] == 1)
        yield running
    finally:
        running.stop()


def replace_file(path: Path, data: bytes) -> None:
    """Write beside and rename, as editors and deployment tools do (new inode)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_ics_changes_reload_and_a_broken_ics_keeps_the_last_rules(daemon: Daemon) -> None:
    ics = daemon.workdir / "closures.ics"
    first = daemon.health()["rules"]["digest"]

    replace_file(ics, ics.read_bytes().replace(b"Personalversammlung", b"Personalrat"))
    rules = daemon.wait(lambda h: h["rules"]["generation"] == 2)["rules"]
    assert rules["digest"] != first
    assert rules["last_reload_error"] is None

    replace_file(ics, (ICS / "invalid-dtstart.ics").read_bytes())
    rules = daemon.wait(lambda h: h["rules"]["reload_failures"] == 1)["rules"]
    assert rules["generation"] == 2
    (error,) = rules["last_reload_error"]
    assert error.startswith(f"{ics}:13: calendars.servicecenter.ics: DTSTART:")
    rules_text = (daemon.workdir / "routing.yaml").read_text(encoding="utf-8")
    line = rules_text.splitlines().index("    ics: closures.ics") + 1
    assert error.endswith(f"(named at routing.yaml:{line})")  # the --config as given

    replace_file(ics, (ICS / "feiertage-niedersachsen.ics").read_bytes())
    rules = daemon.wait(lambda h: h["rules"]["generation"] == 3)["rules"]
    assert rules["last_reload_error"] is None


def test_the_daemon_serves_the_feed_from_the_rules_in_force(daemon: Daemon) -> None:
    path = "/calendar/wardenburg.ics?from=2026-06-11&to=2026-06-12"
    status, body, _ = daemon.get(path)
    assert (status, body) == (403, b"calendar feed: token missing or wrong\n")

    status, body, headers = daemon.get(path + f"&token={TOKEN}")
    assert status == 200
    assert headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert b"SUMMARY:Geschlossen (Schlie\xc3\x9fung)\r\n" in body  # 12 June: the excursion
    assert b"Betriebsausflug" not in body
    assert body.count(b"BEGIN:VEVENT") == 2  # open on 11 June, closed on 12 June

    # The file changes: the excursion moves a week; the feed follows the reload.
    ics = daemon.workdir / "closures.ics"
    replace_file(ics, ics.read_bytes().replace(b"2026061", b"2026071"))
    daemon.wait(lambda h: h["rules"]["generation"] == 2)
    status, body, _ = daemon.get(path + f"&token={TOKEN}")
    assert status == 200
    assert b"Geschlossen" not in body
    assert body.count(b"SUMMARY:Ge\xc3\xb6ffnet\r\n") == 2
