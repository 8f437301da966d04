"""Run the real ``pbxbridge run`` daemon as a process against the test bed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.testbed.testbed import Testbed

REPO = Path(__file__).resolve().parents[2]

TEST_RULES = """\
# Rules for the integration tests: calendars that do not depend on the clock.
timezone: Europe/Berlin
calendars:
  always: {hours: {daily: ["00:00-24:00"]}}
  never: {hours: {}}
queues:
  servicecenter: {queue: servicecenter}
  afterhours: {queue: afterhours}
tenants:
  wardenburg:
    name: Gemeinde Wardenburg
    greeting: "Gemeinde Wardenburg, ServiceCenter, guten Tag"
    dids: ["+49 4407 73-0"]
    calendar: always
    open:
      {queue: servicecenter, priority: 5, whisper: custom/pbxbridge-test, callerid_prefix: "WAR"}
    closed: {then: hangup}
    screen_pop: {url: "https://kb.example.org/search?tenant={tenant}&caller={caller}"}
  oldenburg:
    name: Stadt Oldenburg
    dids: ["+49 441 235-0"]
    calendar: always
    open: {queue: servicecenter, priority: 3, callerid_prefix: "OL"}
  nachts:
    name: Gemeinde Nachts
    dids: ["+49 4222 44-0"]
    calendar: never
    open: {queue: servicecenter}
    closed: {announce: custom/pbxbridge-test, then: hangup}
  briefkasten:
    name: Gemeinde Briefkasten
    dids: ["+49 4461 919-0"]
    calendar: never
    open: {queue: servicecenter}
    closed: {announce: custom/pbxbridge-test, then: voicemail, mailbox: "1000@pbxbridge"}
  spaet:
    name: Stadt Spaet
    dids: ["+49 4421 16-0"]
    calendar: never
    open: {queue: servicecenter}
    closed: {then: queue, queue: afterhours}
service_115:
  dids: ["115"]
  by_area_code: {"+49 4407": wardenburg, "+49 441": oldenburg}
  otherwise:
    menu:
      prompt: custom/pbxbridge-test
      options: {"1": oldenburg, "2": wardenburg}
      default: oldenburg
      timeout: 2
unknown_did: {tenant: oldenburg}
state: {path: state.sqlite}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_test_sound(tb: Testbed) -> None:
    """A short real sound (0.3 s of silence, mu-law) for whisper, menu and announce."""
    sounds = tb.root / "usr/share/asterisk/sounds/custom"
    sounds.mkdir(parents=True, exist_ok=True)
    (sounds / "pbxbridge-test.ulaw").write_bytes(b"\xff" * 2400)


class DaemonProcess:
    """A ``pbxbridge run`` child process with its log and health endpoint."""

    def __init__(
        self,
        tb: Testbed,
        workdir: Path,
        rules: str = TEST_RULES,
        extra_env: dict[str, str] | None = None,
        mqtt_port: int = 1883,
    ) -> None:
        self.tb = tb
        self.workdir = workdir
        self.rules_path = workdir / "routing.yaml"
        if not self.rules_path.exists():
            self.rules_path.write_text(rules, encoding="utf-8")
        self.log_path = workdir / "daemon.log"
        self.port = free_port()
        self.extra_env = extra_env or {}
        self.mqtt_port = mqtt_port
        # Tests share the machine's broker: a prefix of our own keeps them apart.
        self.topic_prefix = f"pbxbridge-test/{os.getpid()}-{self.port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PBXBRIDGE_ARI_URL=self.tb.ari_url.removesuffix("/ari"),
            PBXBRIDGE_ARI_USER=self.tb.ari_user,
            PBXBRIDGE_ARI_PASSWORD=self.tb.ari_password,
            PBXBRIDGE_HTTP_BIND=f"127.0.0.1:{self.port}",
            PBXBRIDGE_LOG_LEVEL="debug",
            PBXBRIDGE_LOG_FORMAT="json",
            PBXBRIDGE_AMI_USER=self.tb.ami_user,
            PBXBRIDGE_AMI_PASSWORD=self.tb.ami_password,
            PBXBRIDGE_MQTT_HOST="127.0.0.1",
            PBXBRIDGE_MQTT_PORT=str(self.mqtt_port),
            PBXBRIDGE_MQTT_TOPIC_PREFIX=self.topic_prefix,
        )
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.extra_env)
        return env

    def start(self, wait_connected: bool = True) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pbxbridge", "run", "--config", str(self.rules_path)],
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait_connected:
            self.wait_health(lambda h: h["ari"]["state"] == "connected", timeout=15)

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as err:
            return dict(json.load(err))

    def metrics(self) -> dict[str, float]:
        """The /metrics samples as ``{'name{labels}': value}``."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def wait_health(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | str = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                last = self.health()
                if predicate(last):
                    return last
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"health condition not met in {timeout}s: {last}\n{self.log_tail()}")

    def logs(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    def routed(self) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == "call.routed"]

    def wait_routed(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            routed = self.routed()
            if len(routed) >= count:
                return routed
            time.sleep(0.05)
        raise AssertionError(f"{len(self.routed())} of {count} calls routed\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pbxbridge", *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@contextmanager
def running_daemon(tb: Testbed, workdir: Path, **kw: Any) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tb, workdir, **kw)
    try:
        # start() inside the try: a daemon that starts but never connects
        # must not outlive its test holding the FastAGI and HTTP ports.
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
