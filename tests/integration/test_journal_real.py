"""The call journal and the service-level report from real calls, on SQLite and PostgreSQL.

A fixed set of sipp calls with known outcomes goes through the real Asterisk
and the real daemon; `pbxbridge report` must then show exactly the expected
figures, and agree with app_queue's own counters where both measure the same.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.integration.daemon import DaemonProcess, install_test_sound
from tests.postgres import throwaway_database
from tests.testbed.sipp import ABANDON_SCENARIO, CallResult, SippAgent, place_calls
from tests.testbed.testbed import Testbed

pytestmark = [pytest.mark.asterisk]

WARDENBURG = "+494407730"
CALLER = "04407123456"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment for the daemon and the CLI: SQLite (default) or a fresh PostgreSQL."""
    if request.param == "sqlite":
        yield {}
        return
    with throwaway_database() as url:
        yield {"PBXBRIDGE_DATABASE_URL": url}


def background(fn: Any) -> tuple[threading.Thread, list[CallResult]]:
    out: list[CallResult] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def report(daemon: DaemonProcess, tenant: str) -> dict[str, Any]:
    today = datetime.now(ZoneInfo("Europe/Berlin")).date().isoformat()
    out = daemon.cli(
        "report",
        "--config",
        str(daemon.rules_path),
        "--from",
        today,
        "--to",
        today,
        "--format",
        "json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (part,) = [t for t in data["tenants"] if t["tenant"] == tenant]
    return dict(part["total"])


class TestReportFromRealCalls:
    def test_known_outcomes_give_exact_figures(
        self,
        fresh_testbed: Testbed,
        tmp_path: Path,
        backend: dict[str, str],
    ) -> None:
        tb = fresh_testbed
        install_test_sound(tb)
        daemon = DaemonProcess(tb, tmp_path, extra_env=backend)
        daemon.start()
        try:
            daemon.wait_health(lambda h: h["ami"]["state"] == "connected", timeout=15)
            before = tb.queue_counts("servicecenter")

            # A: answered at once.
            with SippAgent.for_agent(1, "answer", ring_delay_ms=200):
                assert place_calls(WARDENBURG, hold_ms=500, caller=CALLER).ok
                # F: 115 placed by area code, answered at once.
                assert place_calls("115", hold_ms=500, caller="04407555123").ok
            # B: nobody answers for 22 s, then agent1 comes up and answers.
            thread, results = background(
                lambda: place_calls(WARDENBURG, hold_ms=500, caller=CALLER, timeout_s=60)
            )
            time.sleep(22)
            with SippAgent.for_agent(1, "answer", ring_delay_ms=200):
                thread.join(30)
            assert results[0].ok, results[0].describe()
            # C and D: callers give up after 2 s (short) and 8 s.
            for wait_ms in (2000, 8000):
                result = place_calls(
                    WARDENBURG,
                    caller=CALLER,
                    scenario=ABANDON_SCENARIO,
                    extra_args=["-key", "wait_ms", str(wait_ms)],
                )
                assert result.ok, result.describe()
            # E: closed hours (tenant "nachts" never opens).
            place_calls("+494222440", hold_ms=2000, caller=CALLER)

            daemon.wait_health(
                lambda h: (
                    h["screen_pops"]["following"] == 0
                    and h["journal"]["backlog"] == 0
                    and h["journal"]["written"] >= 6
                ),
                timeout=15,
            )
            after = tb.queue_counts("servicecenter")
            w = report(daemon, "wardenburg")
            assert (
                w["calls"],
                w["offered"],
                w["answered"],
                w["abandoned"],
                w["short_abandoned"],
            ) == (5, 5, 3, 2, 1)
            assert w["answered_within"] == 2
            assert w["sl_answered_pct"] == 66.66  # 2 of 3 answered within 20 s
            assert w["sl_offered_pct"] == 50.0  # 2 of 4 offered (short abandon left out)
            assert w["via_115"] == 1
            assert 20 < w["p90_wait_s"] < 26  # the call B waited ~22 s
            n = report(daemon, "nachts")
            assert (n["calls"], n["closed_hours"], n["offered"]) == (1, 1, 0)
            # app_queue counted the same answered and abandoned calls.
            assert after["completed"] - before["completed"] == 3
            assert after["abandoned"] - before["abandoned"] == 2
        finally:
            daemon.stop()


class _Proxy:
    """TCP proxy in front of PostgreSQL that can refuse service for a while."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.down = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            for s in self.conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.conns.clear()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.cut()
        self.sock.close()


@pytest.mark.postgres
class TestDatabaseOutage:
    def test_thirty_seconds_down_loses_nothing(
        self, fresh_testbed: Testbed, tmp_path: Path
    ) -> None:
        tb = fresh_testbed
        install_test_sound(tb)
        with throwaway_database() as direct:
            self._outage(tb, tmp_path, direct)

    def _outage(self, tb: Testbed, tmp_path: Path, direct: str) -> None:
        server = conninfo_to_dict(direct)
        proxy = _Proxy((str(server.get("host") or "127.0.0.1"), int(server.get("port") or 5432)))
        url = make_conninfo(direct, host="127.0.0.1", port=proxy.port)
        daemon = DaemonProcess(tb, tmp_path, extra_env={"PBXBRIDGE_DATABASE_URL": url})
        daemon.start()
        try:
            daemon.wait_health(lambda h: h["ami"]["state"] == "connected", timeout=15)
            with (
                SippAgent.for_agent(1, "answer", ring_delay_ms=100),
                SippAgent.for_agent(2, "answer", ring_delay_ms=100),
            ):
                assert place_calls(WARDENBURG, hold_ms=300, caller=CALLER).ok
                daemon.wait_health(lambda h: h["journal"]["written"] >= 1, timeout=10)
                proxy.cut()
                down_at = time.monotonic()
                result = place_calls(WARDENBURG, count=10, rate=1, hold_ms=300, caller=CALLER)
                # No call is affected by the database being away.
                assert result.successful == 10 and result.failed == 0, result.describe()
                health = daemon.wait_health(lambda h: h["journal"]["backlog"] > 0, timeout=15)
                assert health["calls"]["routed"] == 11
                time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
                proxy.restore()
                daemon.wait_health(
                    lambda h: h["journal"]["backlog"] == 0 and h["screen_pops"]["following"] == 0,
                    timeout=60,
                )
            with psycopg.connect(direct) as conn:
                rows = conn.execute(
                    "SELECT outcome, count(*) FROM calls GROUP BY outcome"
                ).fetchall()
            assert dict(rows) == {"answered": 11}
        finally:
            daemon.stop()
            proxy.close()
