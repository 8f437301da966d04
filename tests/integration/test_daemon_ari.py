"""The daemon on the real Asterisk 22: routing, tagging, bad input and faults.

Every test places real SIP calls with sipp through the test bed; the evidence
is what Asterisk itself reports (CDRs, AMI VarSet events, queue counters) and
what the daemon logs and serves on /healthz.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import (
    TEST_RULES,
    DaemonProcess,
    install_test_sound,
    running_daemon,
)
from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import CallResult, place_calls
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.asterisk

WARDENBURG = "+494407730"
CALLER = "04407123456"


@pytest.fixture
def daemon(tb: Testbed, tmp_path: Path) -> Iterator[DaemonProcess]:
    with running_daemon(tb, tmp_path) as d:
        yield d


def trunk_vars(events: list[dict[str, str]], uniqueid: str | None = None) -> dict[str, str]:
    """Channel variables set on the caller's (trunk) channel, from AMI VarSet events."""
    out: dict[str, str] = {}
    for e in events:
        if e.get("Event") != "VarSet" or not e.get("Channel", "").startswith("PJSIP/trunk"):
            continue
        if uniqueid and e.get("Uniqueid") != uniqueid:
            continue
        out[e["Variable"]] = e.get("Value", "")
    return out


def call(tb: Testbed, did: str, **kw: object) -> tuple[CallResult, list[dict[str, str]]]:
    """Place one call; return sipp's result and the AMI events seen meanwhile."""
    with tb.ami() as ami:
        result = place_calls(did, count=1, **kw)  # type: ignore[arg-type]
        time.sleep(0.3)
        events = [dict(e) for e in ami.events]
    return result, events


# The routing cases (open hours with every tag, closed handling, 115, hostile
# caller IDs) run for both entry points in test_entry_points.py. What follows is
# specific to the ARI daemon: its event filter, live changes and faults.


class TestEventFilter:
    def test_only_the_events_the_router_reads(self, tb: Testbed, daemon: DaemonProcess) -> None:
        _, app = tb.ari_request("GET", "/applications/pbxbridge")
        assert isinstance(app, dict)
        # RESTResponse: the replies to requests sent over the event socket.
        assert {e["type"] for e in app["events_allowed"]} == {
            "StasisStart",
            "StasisEnd",
            "ChannelDtmfReceived",
            "PlaybackFinished",
            "ApplicationReplaced",
            "RESTResponse",
        }


class TestLiveChanges:
    def test_override_takes_effect_within_a_second(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        out = daemon.cli(
            "override",
            "set",
            "--config",
            str(daemon.rules_path),
            "--tenant",
            "wardenburg",
            "--closed",
            "--reason",
            "Unwetter",
        )
        assert out.returncode == 0, out.stderr
        time.sleep(1.0)
        _, events = call(tb, WARDENBURG, hold_ms=2000, caller=CALLER)
        assert trunk_vars(events)["PBXBRIDGE_CLOSED_THEN"] == "hangup"
        assert "Unwetter" in " ".join(daemon.wait_routed(1)[0]["reasons"])

        daemon.cli(
            "override", "clear", "--config", str(daemon.rules_path), "--tenant", "wardenburg"
        )
        time.sleep(1.0)
        _, events = call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
        assert trunk_vars(events)["PBXBRIDGE_QUEUE"] == "servicecenter"

    @pytest.mark.postgres
    def test_overrides_shared_by_two_nodes_through_postgresql(
        self, tb: Testbed, tmp_path: Path, fresh_database: str, agents: AgentFactory
    ) -> None:
        # Two nodes with their own state directories and one database: node A
        # owns the Stasis application and routes the real calls, node B runs
        # beside it under another application name (a second Asterisk node in
        # production). An operator on a third machine sets the override.
        agents(1, "answer")
        shared = {"PBXBRIDGE_DATABASE_URL": fresh_database, "PBXBRIDGE_AMI_ENABLED": "no"}
        dirs = [tmp_path / name for name in ("node-a", "node-b", "operator")]
        for d in dirs:
            d.mkdir()
        node_a = DaemonProcess(tb, dirs[0], extra_env=shared)
        node_b = DaemonProcess(tb, dirs[1], extra_env={**shared, "PBXBRIDGE_ARI_APP": "node-b"})
        operator = DaemonProcess(tb, dirs[2], extra_env=shared)
        try:
            node_a.start()
            node_b.start()
            for node in (node_a, node_b):
                assert node.health()["overrides"]["backend"] == "postgresql"
                assert node.metrics()['pbxbridge_up{component="overrides"}'] == 1
            out = operator.cli(
                "override",
                "set",
                "--config",
                str(operator.rules_path),
                "--tenant",
                "wardenburg",
                "--closed",
                "--reason",
                "Unwetter",
            )
            assert out.returncode == 0, out.stderr
            for node in (node_a, node_b):
                node.wait_health(lambda h: h["overrides"]["count"] == 1, timeout=1.0)
            _, events = call(tb, WARDENBURG, hold_ms=2000, caller=CALLER)
            assert trunk_vars(events)["PBXBRIDGE_CLOSED_THEN"] == "hangup"
            assert "Unwetter" in " ".join(node_a.wait_routed(1)[0]["reasons"])

            out = operator.cli(
                "override", "clear", "--config", str(operator.rules_path), "--tenant", "wardenburg"
            )
            assert out.returncode == 0, out.stderr
            for node in (node_a, node_b):
                node.wait_health(lambda h: h["overrides"]["count"] == 0, timeout=1.0)
            _, events = call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
            assert trunk_vars(events)["PBXBRIDGE_QUEUE"] == "servicecenter"
            # Nothing went to a node's own SQLite state file.
            assert not list(tmp_path.rglob("*.sqlite"))
        finally:
            node_a.stop()
            node_b.stop()

    def test_invalid_rules_under_load_fail_no_call(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        for n in (1, 2, 3, 4):
            agents(n, "answer")
        good = daemon.rules_path.read_text()
        results: list[CallResult] = []
        caller = threading.Thread(
            target=lambda: results.append(
                place_calls(WARDENBURG, count=40, rate=10, hold_ms=200, caller=CALLER)
            )
        )
        caller.start()
        time.sleep(1.0)
        daemon.rules_path.write_text(good.replace('"00:00-24:00"', "17:30"))
        daemon.wait_health(lambda h: h["rules"]["reload_failures"] >= 1, timeout=5)
        time.sleep(0.5)
        daemon.signal(signal.SIGHUP)  # a reload of the same broken file changes nothing
        caller.join(60)
        (result,) = results
        assert result.failed == 0 and result.successful == 40, result.describe()
        health = daemon.health()
        assert health["rules"]["generation"] == 1
        assert any("17:30" in e for e in health["rules"]["last_reload_error"])
        assert health["calls"]["routed"] == 40
        assert {r["tenant"] for r in daemon.routed()} == {"wardenburg"}
        errors = [e for e in daemon.logs() if e.get("event") == "rules.invalid"]
        assert errors and all(e["line"] > 0 for e in errors)

        # Fixing the file brings a new generation.
        daemon.rules_path.write_text(good.replace("priority: 5", "priority: 7"))
        health = daemon.wait_health(lambda h: h["rules"]["generation"] == 2, timeout=5)
        assert health["rules"]["last_reload_error"] is None
        _, events = call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
        assert trunk_vars(events)["QUEUE_PRIO"] == "7"


class TestFaults:
    def test_daemon_stopped_calls_use_fallback(
        self, tb: Testbed, new_daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        d = new_daemon
        d.start()
        assert d.stop() == 0
        mark = tb.cdr_mark()
        result, events = call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
        assert result.ok, result.describe()
        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "unrouted"
        assert "PBXBRIDGE_TENANT" not in trunk_vars(events) or (
            trunk_vars(events)["PBXBRIDGE_TENANT"] == "unrouted"
        )

    def test_killed_while_calls_wait_in_stasis_then_restarted(
        self, tb: Testbed, new_daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        for n in (1, 2, 3):
            agents(n, "answer")
        d = new_daemon
        d.start()
        assert d.proc is not None
        # Frozen, the daemon keeps its socket: Asterisk still hands it calls,
        # which then wait in Stasis unrouted.
        os.kill(d.proc.pid, signal.SIGSTOP)
        results: list[CallResult] = []
        caller = threading.Thread(
            target=lambda: results.append(
                place_calls(WARDENBURG, count=3, rate=10, hold_ms=300, caller=CALLER, timeout_s=60)
            )
        )
        caller.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, app = tb.ari_request("GET", "/applications/pbxbridge")
            if isinstance(app, dict) and len(app.get("channel_ids", [])) == 3:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"calls did not reach Stasis: {app}")
        d.kill9()
        d.start()  # same state and rules; a new process
        caller.join(60)
        (result,) = results
        assert result.successful == 3, result.describe()
        health = d.health()
        assert health["calls"]["resynced"] == 3, d.log_tail(60)
        assert health["calls"]["routed"] == 3

    def test_asterisk_restart_reconnects_within_two_seconds(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        tb.cli("core restart now")
        daemon.wait_health(lambda h: h["ari"]["state"] != "connected", timeout=10)
        # Wait until Asterisk answers again, then time the daemon's reconnect.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, _ = tb.ari_request("GET", "/asterisk/ping")
                if status == 200:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        back = time.monotonic()
        daemon.wait_health(lambda h: h["ari"]["state"] == "connected", timeout=5)
        assert time.monotonic() - back < 2.0
        install_test_sound(tb)
        agents(1, "answer")
        result, events = call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
        assert result.ok, result.describe()
        assert trunk_vars(events)["PBXBRIDGE_TENANT"] == "wardenburg"

    def test_sigterm_finishes_routing_then_unregisters(
        self, tb: Testbed, new_daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        d = new_daemon
        d.start()
        results: list[CallResult] = []
        # A 115 caller in the menu: routing is in progress for ~2.3 s.
        caller = threading.Thread(
            target=lambda: results.append(
                place_calls("115", count=1, hold_ms=5000, caller="anonymous")
            )
        )
        caller.start()
        d.wait_health(lambda h: h["calls"]["in_progress"] == 1, timeout=10)
        d.signal(signal.SIGTERM)
        assert d.proc is not None
        assert d.proc.wait(20) == 0
        caller.join(30)
        (routed,) = d.routed()
        assert routed["tenant"] == "oldenburg"
        # After the stop the application is gone: new calls take the fallback.
        status, _ = tb.ari_request("GET", "/applications/pbxbridge")
        mark = tb.cdr_mark()
        result, _ = call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
        assert result.ok, result.describe()
        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "unrouted"
        del status


# -- No call is ever left in Stasis -----------------------------------------

FAULTY_RUN = """\
import sys
import pbxbridge.core.routing as routing
real = routing.route
def faulty(call, *args, **kw):
    # An injected bug: the core raises for one DID, like a rules edge case would.
    if "666" in call.did:
        raise RuntimeError("injected fault")
    return real(call, *args, **kw)
routing.route = faulty  # before the adapters import it
from pbxbridge.cli import main
sys.exit(main())
"""


class FaultyDaemon(DaemonProcess):
    """The real daemon process with a core that raises for DIDs containing 666."""

    program = FAULTY_RUN

    def start(self, wait_connected: bool = True) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.program, "run", "--config", str(self.rules_path)],
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait_connected:
            self.wait_health(lambda h: h["ari"]["state"] == "connected", timeout=15)


LOSES_STASIS_START = """\
import sys
from pbxbridge.adapters.ari import router
original = router.StasisRouter.handle
async def handle(self, event):
    # An injected bug: the StasisStart of DIDs containing 777 never arrives.
    if event.get("type") == "StasisStart" and "777" in ",".join(event.get("args") or []):
        return
    await original(self, event)
router.StasisRouter.handle = handle
from pbxbridge.cli import main
sys.exit(main())
"""


def install_long_sound(tb: Testbed, seconds: int) -> str:
    """A prompt of ``seconds`` of silence (mu-law); returns its sound name."""
    sounds = tb.root / "usr/share/asterisk/sounds/custom"
    sounds.mkdir(parents=True, exist_ok=True)
    (sounds / f"pbxbridge-long{seconds}.ulaw").write_bytes(b"\xff" * 8000 * seconds)
    return f"custom/pbxbridge-long{seconds}"


def menu_rules(prompt: str) -> str:
    return TEST_RULES.replace("prompt: custom/pbxbridge-test", f"prompt: {prompt}")


def agent_cdrs(tb: Testbed, mark: int, count: int, timeout: float) -> list[dict[str, str]]:
    """The first ``count`` CDRs after ``mark`` of calls that reached an agent."""
    deadline = time.monotonic() + timeout
    while True:
        cdrs = [c for c in tb.cdrs()[mark:] if c["dstchannel"].startswith("PJSIP/agent")]
        if len(cdrs) >= count or time.monotonic() > deadline:
            return cdrs
        time.sleep(0.2)


class TestNoCallLeftInStasis:
    def test_unexpected_exception_sends_the_call_to_the_fallback(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory
    ) -> None:
        # Before: a non-ARI exception in the first decision killed the routing
        # task and the caller sat in Stasis in silence until they hung up.
        agents(1, "answer")
        d = FaultyDaemon(tb, tmp_path)
        d.start()
        try:
            mark = tb.cdr_mark()
            result, _ = call(tb, "0442166600", hold_ms=1500, caller=CALLER)
            assert result.ok, result.describe()
            cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
            assert cdr["accountcode"] == "unrouted", d.log_tail()
            health = d.health()
            assert health["calls"]["failed"] == 1
            assert d.metrics()['pbxbridge_routing_failures{entry="ari"}'] == 1
            (failed,) = [e for e in d.logs() if e.get("event") == "call.route_failed"]
            assert "injected fault" in failed["error"]
            # The next call (no fault) is routed as usual.
            _, events = call(tb, WARDENBURG, hold_ms=300, caller=CALLER)
            assert trunk_vars(events)["PBXBRIDGE_TENANT"] == "wardenburg"
        finally:
            d.stop()

    def test_channel_whose_stasis_start_was_lost_is_routed_by_the_sweep(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        d = FaultyDaemon(tb, tmp_path, extra_env={"PBXBRIDGE_STASIS_MAX_S": "4"})
        d.program = LOSES_STASIS_START
        d.start()
        try:
            mark = tb.cdr_mark()
            result, _ = call(tb, "0442177700", hold_ms=1500, caller=CALLER, timeout_s=30)
            assert result.ok, result.describe()
            cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
            # Found within two sweeps (2 s apart): routed, or - when found
            # after the bound - sent to the fallback by the guard.
            assert cdr["accountcode"] in {"oldenburg", "unrouted"}, d.log_tail()
            assert [e for e in d.logs() if e.get("event") == "call.unknown_in_stasis"]
            assert d.health()["calls"]["resynced"] == 1
        finally:
            d.stop()

    def test_stasis_guard_sends_a_long_menu_to_the_fallback(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory
    ) -> None:
        # No bug at all: a prompt longer than the bound. The guard continues the
        # call to pbxbridge-unrouted at the bound (3 s), counted and logged.
        agents(1, "answer")
        prompt = install_long_sound(tb, 8)
        d = DaemonProcess(
            tb, tmp_path, rules=menu_rules(prompt), extra_env={"PBXBRIDGE_STASIS_MAX_S": "3"}
        )
        d.start()
        try:
            mark = tb.cdr_mark()
            started = time.monotonic()
            result, _ = call(tb, "115", hold_ms=6000, caller="anonymous")
            assert result.ok, result.describe()
            cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
            assert cdr["accountcode"] == "unrouted", d.log_tail()
            # The agent was reached ~3 s into the call, not after the 8 s prompt:
            # billsec (agent talk time) is most of the 6 s hold.
            assert int(cdr["billsec"]) >= 2, cdr
            assert time.monotonic() - started < 15
            (timeout,) = [e for e in d.logs() if e.get("event") == "call.stasis_timeout"]
            assert timeout["level"] == "warning" and timeout["in_menu"] is True
            assert d.metrics()["pbxbridge_stasis_timeouts"] == 1
            assert d.health()["calls"]["stasis_timeouts"] == 1
        finally:
            d.stop()

    # prompt-playing failed before: the new process's prompt queued up behind
    # the old one, whose PlaybackFinished was taken for the end of the new
    # one; the continue then waited behind the new prompt (~10 s in all).
    @pytest.mark.parametrize("prompt_s", [0, 6], ids=["waiting-for-digit", "prompt-playing"])
    def test_kill9_while_callers_are_in_the_menu_then_restarted(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory, prompt_s: int
    ) -> None:
        # Withheld 115 callers answered by the daemon - the prompt playing, or
        # played and a digit awaited - when the daemon is killed; one of them
        # presses 2 only after the restart. The new process must route all.
        for n in (1, 2, 3):
            agents(n, "answer")
        prompt = install_long_sound(tb, prompt_s) if prompt_s else "custom/pbxbridge-test"
        d = DaemonProcess(tb, tmp_path, rules=menu_rules(prompt))
        d.start()
        mark = tb.cdr_mark()
        results: list[CallResult] = []
        callers = [
            threading.Thread(
                target=lambda: results.append(
                    place_calls(
                        "115", count=2, rate=10, hold_ms=12000, caller="anonymous", timeout_s=60
                    )
                )
            ),
            threading.Thread(
                target=lambda: results.append(
                    place_calls(
                        "115",
                        count=1,
                        hold_ms=12000,
                        caller="anonymous",
                        dtmf="2",
                        dtmf_delay_ms=(prompt_s + 3) * 1000,
                        timeout_s=60,
                    )
                )
            ),
        ]
        for caller in callers:
            caller.start()
        try:
            d.wait_health(lambda h: h["calls"]["menus"] == 3, timeout=10)
            time.sleep(0.5)  # answered; the prompt playing or a digit awaited
            d.kill9()
            d.start()
            restarted = time.monotonic()
            routed = d.wait_routed(3, timeout=15)
            # Within the Stasis bound from the calls' start (10 s), not held
            # behind stale prompts.
            assert time.monotonic() - restarted < 10, routed
            cdrs = agent_cdrs(tb, mark, 3, timeout=40)
            assert len(cdrs) == 3, d.log_tail(60)
            # Routed by the menu (the default, or the digit pressed after the
            # restart), neither left in Stasis nor sent on untagged.
            assert {c["accountcode"] for c in cdrs} <= {"oldenburg", "wardenburg"}, cdrs
            health = d.health()
            assert health["calls"]["resynced"] == 3
            assert health["calls"]["routed"] == 3
        finally:
            for caller in callers:
                caller.join(60)
            d.stop()


class TestFrozenDaemonBound:
    def test_restart_and_resync_time(
        self, tb: Testbed, new_daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        """Measures what WatchdogSec in systemd/pbxbridge.service is chosen from:
        a frozen daemon holding calls in Stasis is killed (as systemd does on
        the watchdog timeout) and started again; the time from the new
        process's start to the last held call continued. Run with ``-s`` to see
        the figure; the bound asserted leaves room on a loaded test machine."""
        for n in (1, 2, 3):
            agents(n, "answer")
        d = new_daemon
        d.extra_env["PYTHONFAULTHANDLER"] = "1"
        d.start()
        assert d.proc is not None
        os.kill(d.proc.pid, signal.SIGSTOP)
        results: list[CallResult] = []
        caller = threading.Thread(
            target=lambda: results.append(
                place_calls(WARDENBURG, count=3, rate=10, hold_ms=300, caller=CALLER, timeout_s=60)
            )
        )
        caller.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, app = tb.ari_request("GET", "/applications/pbxbridge")
            if isinstance(app, dict) and len(app.get("channel_ids", [])) == 3:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"calls did not reach Stasis: {app}")
        # What systemd does on the watchdog timeout (WatchdogSignal=SIGABRT,
        # followed by SIGCONT for a stopped process); PYTHONFAULTHANDLER dumps
        # the stacks first, as under the unit.
        aborted = time.monotonic()
        os.kill(d.proc.pid, signal.SIGABRT)
        os.kill(d.proc.pid, signal.SIGCONT)
        d.proc.wait(10)
        d.proc = None
        abort_s = time.monotonic() - aborted
        started = time.monotonic()
        d.start(wait_connected=False)
        deadline = started + 20
        # Done when no held call is left in the application. Counting the new
        # process's resynced calls is not enough: on a loaded machine the
        # dying process may still continue one between SIGCONT and the abort.
        while time.monotonic() < deadline:
            _, app = tb.ari_request("GET", "/applications/pbxbridge")
            if isinstance(app, dict) and not app.get("channel_ids"):
                break
            time.sleep(0.02)
        else:
            raise AssertionError(d.log_tail(60))
        elapsed = time.monotonic() - started
        assert [e for e in d.routed() if e.get("resynced")], "the new process resynced none"
        ready = [e for e in d.logs() if e.get("event") == "daemon.ready"]
        caller.join(60)
        (result,) = results
        assert result.successful == 3, result.describe()
        print(
            f"\nabort: {abort_s:.2f} s from SIGABRT to exit; restart+resync: "
            f"{elapsed:.2f} s from process start to 3 held calls continued "
            f"({len(ready)} ready lines)"
        )
        assert abort_s < 2.0
        # WatchdogSec=5 + RestartSec=1 + this must stay within ~10 s.
        assert elapsed < 3.0
