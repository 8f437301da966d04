"""FastAGI-only behaviour on the real Asterisk 22: fallbacks, faults, protocol facts.

Calls come in from 127.0.0.5 (endpoint ``trunk-agi`` -> ``[pbxbridge-agi]`` of
``dialplans/freepbx/extensions_custom.conf``). The routing cases shared with the
ARI path are in ``test_entry_points.py``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pbxbridge.runtime.settings import Settings
from tests.integration.daemon import DaemonProcess, running_daemon
from tests.integration.test_daemon_ari import CALLER, WARDENBURG, FaultyDaemon, trunk_vars
from tests.integration.test_screenpops_real import Subscriber
from tests.testbed.config import AGI_SECRET
from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import CallResult, place_calls
from tests.testbed.testbed import Testbed
from tests.unit.test_agi_router import FakeAsterisk, asterisk_env

pytestmark = pytest.mark.asterisk

AGI_TRUNK = "127.0.0.5"
AGI_PORT = Settings().agi_port  # the shipped dialplan's agi://127.0.0.1:4574/route
NOT_FAULTS = ("agi.listening", "agi.no_secret")


@pytest.fixture
def daemon(tb: Testbed, tmp_path: Path) -> Iterator[DaemonProcess]:
    with running_daemon(tb, tmp_path) as d:
        d.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
        yield d


def agi_call(tb: Testbed, did: str, **kw: object) -> tuple[CallResult, list[dict[str, str]]]:
    """One call over the FastAGI trunk; sipp's result and the AMI events."""
    with tb.ami() as ami:
        result = place_calls(did, count=1, source_ip=AGI_TRUNK, **kw)  # type: ignore[arg-type]
        time.sleep(0.3)
        events = [dict(e) for e in ami.events]
    return result, events


def agi_faults(daemon: DaemonProcess) -> list[dict[str, object]]:
    return [
        e
        for e in daemon.logs()
        if str(e.get("event", "")).startswith("agi.") and e["event"] not in NOT_FAULTS
    ]


def place_in_thread(did: str, **kw: object) -> tuple[threading.Thread, list[CallResult]]:
    results: list[CallResult] = []
    thread = threading.Thread(
        target=lambda: results.append(place_calls(did, source_ip=AGI_TRUNK, **kw))  # type: ignore[arg-type]
    )
    thread.start()
    return thread, results


class TestFallback:
    def test_daemon_down_agi_fails_and_the_call_reaches_an_agent_unrouted(
        self, tb: Testbed, new_daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        new_daemon.start()
        assert new_daemon.stop() == 0  # the AGI port is closed again
        mark = tb.cdr_mark()
        result, events = agi_call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
        assert result.ok and result.successful == 1, result.describe()
        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "unrouted"
        assert cdr["channel"].startswith("PJSIP/trunk-agi-")
        tags = trunk_vars(events)
        assert tags["AGISTATUS"] == "FAILURE"  # connection refused
        assert tags["PBXBRIDGE_TENANT"] == "unrouted"
        assert tags.get("PBXBRIDGE_DEST_CONTEXT", "") == ""
        # Refused at once: no connect timeout before the fallback.
        assert result.percentile(95) < 1000

    def test_killed_mid_session_the_call_continues_unrouted(
        self, tb: Testbed, new_daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        d = new_daemon
        d.start()
        d.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
        mark = tb.cdr_mark()
        # A 115 caller without a digit keeps the session open for ~2.3 s.
        thread, results = place_in_thread("115", count=1, hold_ms=3000, caller="anonymous")
        d.wait_health(lambda h: h["agi"]["in_progress"] == 1, timeout=10)
        d.kill9()  # the socket closes with the process: AGI() ends without a destination
        thread.join(30)
        (result,) = results
        assert result.successful == 1, result.describe()
        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "unrouted"


class TestFreePbxStyle:
    def test_from_did_behind_a_custom_destination(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        mark = tb.cdr_mark()
        # "did<DID>": the test bed's stand-in for an inbound route sets
        # FROM_DID and goes to pbxbridge-agi,s,1 (the custom destination).
        result, events = agi_call(tb, f"did{WARDENBURG}", hold_ms=300, caller=CALLER)
        assert result.ok, result.describe()
        tags = trunk_vars(events)
        assert tags["__FROM_DID"] == WARDENBURG  # VarSet names keep the inheritance prefix
        assert tags["PBXBRIDGE_TENANT"] == "wardenburg"
        assert tags["PBXBRIDGE_DID"] == WARDENBURG
        assert tags["PBXBRIDGE_DEST_CONTEXT"] == "pbxbridge-queue"
        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "wardenburg"
        assert daemon.wait_routed(1)[0]["did"] == WARDENBURG


class TestMenuDtmf:
    @pytest.mark.parametrize("delay_ms", [0, 200, 450])
    def test_digit_right_after_the_answer_never_hangs_the_call(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory, delay_ms: int
    ) -> None:
        # With the AGI ANSWER command (which waits up to 500 ms for media), an
        # INFO digit in that window came back later as a lone "DTMF begin" and
        # the bridged call never hung up, not even after the caller's BYE.
        agents(1, "answer")
        result, events = agi_call(
            tb, "115", hold_ms=1500, caller="01711234567", dtmf="2", dtmf_delay_ms=delay_ms
        )
        assert result.ok, result.describe()
        assert trunk_vars(events).get("PBXBRIDGE_TENANT") == "wardenburg", daemon.log_tail()
        tb.wait_idle(timeout=5)  # the BYE ended both legs


class TestFaults:
    def test_caller_hangs_up_during_the_menu(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        # sipp hangs up 0.5 s after the 200 OK, while GET DATA still waits.
        agi_call(tb, "115", hold_ms=500, caller="anonymous")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if daemon.health()["agi"]["gone"] == 1:
                break
            time.sleep(0.1)
        health = daemon.health()["agi"]
        assert health["gone"] == 1 and health["routed"] == 0, daemon.log_tail()
        assert health["in_progress"] == 0
        gone = [e for e in daemon.logs() if e.get("event") == "call.gone"]
        assert gone and gone[0]["entry"] == "agi"
        assert agi_faults(daemon) == []
        # The next call is routed as usual.
        result, events = agi_call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
        assert result.ok and trunk_vars(events)["PBXBRIDGE_TENANT"] == "wardenburg"

    def test_burst_of_calls_all_routed(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        for n in (1, 2, 3, 4):
            agents(n, "answer")
        result = place_calls(
            WARDENBURG, count=40, rate=20, hold_ms=200, caller=CALLER, source_ip=AGI_TRUNK
        )
        assert result.failed == 0 and result.successful == 40, result.describe()
        health = daemon.health()["agi"]
        assert health["routed"] == 40 and health["failed"] == 0
        assert health["evicted"] == 0 and health["faults"] == {}
        assert agi_faults(daemon) == []
        metrics = daemon.metrics()
        assert metrics['pbxbridge_up{component="agi"}'] == 1
        assert metrics['pbxbridge_calls_routed_total{action="queue",tenant="wardenburg"}'] == 40
        assert metrics['pbxbridge_routing_failures{entry="agi"}'] == 0
        assert metrics['pbxbridge_calls_in_routing{entry="agi"}'] == 0

    def test_a_protocol_fault_shows_in_the_metrics(self, daemon: DaemonProcess) -> None:
        # Not Asterisk: a peer that sends one 9 KB environment line (the server
        # reads at most 8 KB per line) and is cut off.
        with socket.create_connection(("127.0.0.1", AGI_PORT), timeout=5) as peer:
            peer.sendall(b"agi_request: " + b"x" * 9000 + b"\n")
            assert peer.recv(100) == b""  # closed by the server
        daemon.wait_health(lambda h: h["agi"]["faults"] == {"line_too_long": 1}, timeout=5)
        metrics = daemon.metrics()
        assert metrics['pbxbridge_agi_faults{reason="line_too_long"}'] == 1
        assert metrics['pbxbridge_agi_faults{reason="over_capacity"}'] == 0
        assert metrics['pbxbridge_up{component="agi"}'] == 1
        assert metrics["pbxbridge_agi_connections"] == 0

    def test_sigterm_finishes_the_menu_then_refuses(
        self, tb: Testbed, new_daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        d = new_daemon
        d.start()
        d.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
        thread, _ = place_in_thread("115", count=1, hold_ms=5000, caller="anonymous")
        d.wait_health(lambda h: h["agi"]["in_progress"] == 1, timeout=10)
        d.signal(signal.SIGTERM)
        assert d.proc is not None
        assert d.proc.wait(20) == 0
        thread.join(30)
        (routed,) = d.routed()
        assert routed["tenant"] == "oldenburg" and routed["entry"] == "agi"
        mark = tb.cdr_mark()
        result, _ = agi_call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
        assert result.ok, result.describe()
        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "unrouted"


class TestProtocolFacts:
    """What the server's design relies on, checked against Asterisk itself."""

    async def test_pipelined_commands_stall_so_commands_go_one_at_a_time(
        self, tb: Testbed, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        seen: dict[str, bytes | None] = {}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (await reader.readline()).strip():
                pass  # the environment
            # Two commands in one segment: Asterisk's fgets() takes both into
            # stdio's buffer, answers the first, then poll()s the socket for more.
            writer.write(b"GET VARIABLE CALLERID(num)\nGET VARIABLE CALLERID(num-pres)\n")
            seen["first"] = await asyncio.wait_for(reader.readline(), 2)
            try:
                seen["second"] = await asyncio.wait_for(reader.readline(), 1.5)
            except TimeoutError:
                seen["second"] = None
            # A third command, alone, wakes poll(): the stalled second one is
            # answered first.
            writer.write(b"GET VARIABLE CALLERID(num)\n")
            seen["after_nudge"] = await asyncio.wait_for(reader.readline(), 2)
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", AGI_PORT, reuse_address=True)
        try:
            result = await asyncio.to_thread(
                place_calls, WARDENBURG, count=1, hold_ms=300, caller=CALLER, source_ip=AGI_TRUNK
            )
        finally:
            server.close()
            await server.wait_closed()
        assert result.ok, result.describe()
        assert seen["first"] == b"200 result=1 (04407123456)\n"
        assert seen["second"] is None, seen
        assert seen["after_nudge"] == b"200 result=1 (allowed_not_screened)\n"


def healthz(daemon: DaemonProcess) -> tuple[int, dict[str, Any]]:
    """``/healthz`` with its HTTP status (DaemonProcess.health hides the status)."""
    url = f"http://127.0.0.1:{daemon.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, dict(json.load(resp))
    except urllib.error.HTTPError as err:
        return err.code, dict(json.load(err))


class TestPortTaken:
    def test_healthz_is_degraded_while_fastagi_cannot_listen(
        self, tb: Testbed, tmp_path: Path
    ) -> None:
        # FreePBX's FastAGI server (or anything else) holds the port first.
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        daemon = DaemonProcess(tb, tmp_path, extra_env={"PBXBRIDGE_AGI_BIND": f"127.0.0.1:{port}"})
        try:
            daemon.start()  # ARI connected: calls are routed, only FastAGI is missing
            code, body = healthz(daemon)
            assert body["agi"]["state"] == "down"
            assert "in use" in str(body["agi"]["last_error"]).lower()
            # H5's status mechanism: "degraded" with HTTP 503, the AGI problem named.
            assert (code, body.get("status")) == (503, "degraded"), body
            assert any("agi" in problem for problem in body.get("problems", [])), body
            blocker.close()  # the port comes free: the 2 s bind retry takes it
            daemon.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
            _, body = healthz(daemon)
            assert not any("agi" in p for p in body.get("problems", [])), body
        finally:
            blocker.close()
            daemon.stop()


class TestSharedSecret:
    def test_right_secret_routes_wrong_secret_falls_back(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        (tmp_path / "right").mkdir()
        (tmp_path / "wrong").mkdir()
        # The test bed's [globals] hold PBXBRIDGE_AGI_SECRET, which the shipped
        # [pbxbridge-agi] passes as the first AGI argument.
        with running_daemon(
            tb, tmp_path / "right", extra_env={"PBXBRIDGE_AGI_SECRET": AGI_SECRET}
        ) as d:
            d.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
            assert d.health()["agi"]["authentication"] == "shared secret"
            result, events = agi_call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
            assert result.ok, result.describe()
            assert trunk_vars(events)["PBXBRIDGE_TENANT"] == "wardenburg"
            assert d.health()["agi"]["faults"] == {}
            assert AGI_SECRET not in d.log_path.read_text(errors="replace")
        other = "another-secret-0123456789"
        with running_daemon(tb, tmp_path / "wrong", extra_env={"PBXBRIDGE_AGI_SECRET": other}) as d:
            d.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
            mark = tb.cdr_mark()
            result, events = agi_call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
            assert result.ok, result.describe()
            tags = trunk_vars(events)
            assert tags["PBXBRIDGE_TENANT"] == "unrouted"  # the dialplan's fallback
            assert tags.get("PBXBRIDGE_DEST_CONTEXT", "") == ""
            cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
            assert cdr["accountcode"] == "unrouted"
            assert d.health()["agi"]["faults"] == {"bad_secret": 1}
            assert d.health()["agi"]["routed"] == 0
            log = d.log_path.read_text(errors="replace")
            assert "agi.bad_secret" in log
            assert AGI_SECRET not in log and other not in log


class TestInjectedSession:
    @pytest.mark.mosquitto
    def test_cannot_replace_a_live_calls_pop(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        # Any local process can speak FastAGI when no secret is set. It names a
        # live call's unique id and another tenant's DID: the live call keeps
        # its record, pop and callback number.
        pops = Subscriber(1883, daemon.topic_prefix)
        thread, results = place_in_thread(WARDENBURG, count=1, hold_ms=4000, caller=CALLER)
        (routed,) = daemon.wait_routed(1)
        call_id = routed["call_id"]
        fake = asyncio.run(
            FakeAsterisk(
                AGI_PORT,
                env=asterisk_env(uniqueid=call_id, extension="+494412350", callerid="01716666666"),
            ).call()
        )
        assert fake.destination is not None  # the router itself answered the intruder
        daemon.wait_health(lambda h: h["screen_pops"]["duplicate_routed"] == 1, timeout=5)
        agents(1, "answer", ring_delay_ms=200)  # now the queue rings agent1
        deadline = time.monotonic() + 10
        while not pops.agent("agent1") and time.monotonic() < deadline:
            time.sleep(0.05)
        thread.join(30)
        (ringing, *_) = pops.agent("agent1")
        assert ringing["call_id"] == call_id
        assert ringing["tenant"]["id"] == "wardenburg"
        assert ringing["caller"]["number"] == "+494407123456"
        assert results[0].ok, results[0].describe()
        assert daemon.health()["screen_pops"]["followed"] == 1


class TestUnexpectedException:
    """The shared route-a-call procedure over FastAGI."""

    def test_a_bug_in_the_core_sends_the_call_to_the_fallback(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        d = FaultyDaemon(tb, tmp_path)  # the core raises for DIDs containing 666
        d.start()
        try:
            d.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
            mark = tb.cdr_mark()
            result, events = agi_call(tb, "0442166600", hold_ms=1500, caller=CALLER)
            assert result.ok, result.describe()
            cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
            assert cdr["accountcode"] == "unrouted", d.log_tail()
            tags = trunk_vars(events)
            assert tags.get("PBXBRIDGE_DEST_CONTEXT", "") == ""
            assert d.health()["agi"]["failed"] == 1
            assert d.metrics()['pbxbridge_routing_failures{entry="agi"}'] == 1
            (failed,) = [e for e in d.logs() if e.get("event") == "call.route_failed"]
            assert failed["entry"] == "agi" and "injected fault" in failed["error"]
        finally:
            d.stop()
