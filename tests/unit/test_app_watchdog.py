"""The real ``pbxbridge run`` process feeds a fake systemd watchdog only while it
can route: Asterisk down keeps it fed, a frozen process or a dead ARI supervisor
task does not (no Asterisk needed: the ARI URL points at a closed port)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import TEST_RULES

# The daemon with one injected fault: once the flag file exists, the task that
# runs AriClient.run (the connection supervisor) dies with an exception.
RUN_WITH_FAULT = """\
import asyncio, os, sys
import pbxbridge.adapters.ari.client as client
original = client.AriClient.run
async def run(self, *args, **kw):
    inner = asyncio.ensure_future(original(self, *args, **kw))
    while not os.path.exists(os.environ["H1_KILL_ARI_FLAG"]):
        await asyncio.sleep(0.05)
    inner.cancel()
    raise RuntimeError("injected: ARI supervisor died")
client.AriClient.run = run
from pbxbridge.cli import main
sys.exit(main())
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Manager:
    """systemd's side: the notify socket, pings with their arrival times."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.02)
        self.messages: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data))

    def pings(self, start: float, end: float) -> int:
        return sum(
            1 for t, m in self.messages if start <= t <= end and b"WATCHDOG=1" in m.split(b"\n")
        )

    def wait_for(self, field: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(field in m.split(b"\n") for _, m in self.messages):
                return
            time.sleep(0.05)
        raise AssertionError(f"no {field!r} in {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def manager() -> Iterator[tuple[Manager, Path]]:
    # Short path: sun_path is limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="wd-") as tmp:
        m = Manager(Path(tmp) / "notify")
        try:
            yield m, Path(tmp)
        finally:
            m.close()


def test_fed_while_alive_not_while_frozen_or_ari_task_dead(
    manager: tuple[Manager, Path], tmp_path: Path
) -> None:
    systemd, sockdir = manager
    (tmp_path / "routing.yaml").write_text(TEST_RULES, encoding="utf-8")
    flag = tmp_path / "kill-ari"
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(sockdir / "notify"),
        "WATCHDOG_USEC": "400000",  # a ping every 0.2 s
        "PBXBRIDGE_ARI_URL": f"http://127.0.0.1:{closed_port()}",  # Asterisk down
        "PBXBRIDGE_ARI_PASSWORD": "x",
        "PBXBRIDGE_HTTP_BIND": "127.0.0.1:0",
        "PBXBRIDGE_AMI_ENABLED": "no",
        "PBXBRIDGE_MQTT_ENABLED": "no",
        "PBXBRIDGE_AGI_ENABLED": "no",
        "H1_KILL_ARI_FLAG": str(flag),
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_FAULT, "run", "--config", str(tmp_path / "routing.yaml")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        systemd.wait_for(b"READY=1", timeout=20)
        # Asterisk down: the supervisor reconnects, the watchdog is fed.
        start = time.monotonic()
        time.sleep(1.0)
        assert systemd.pings(start, time.monotonic()) >= 3

        # Frozen: no ping while stopped, pings again after SIGCONT.
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        time.sleep(1.0)
        resumed = time.monotonic()
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(1.0)
        assert systemd.pings(stopped + 0.05, resumed) == 0
        assert systemd.pings(resumed, time.monotonic()) >= 3

        # The ARI supervisor task dies while the loop goes on turning: no more
        # pings, so systemd restarts the daemon after WatchdogSec.
        flag.touch()
        time.sleep(0.5)
        died = time.monotonic()
        time.sleep(1.0)
        assert proc.poll() is None  # still running, only the watchdog tells
        assert systemd.pings(died, time.monotonic()) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
