"""pbxbridge behind a FreePBX 17 inbound route, on the real Asterisk 22.

The test bed's FreePBX stand-in (``render_freepbx_contexts`` in
``tests/testbed/config.py``, written from FreePBX's documented behaviour) does
what a FreePBX inbound route does before its custom destination: ``FROM_DID``,
``CDR(did)``, the number copied into an empty name, the presentation saved in
``CALLINGNUMPRES_SV`` and set to ``allowed_not_screened``, FreePBX's own AGI
over FastAGI on 127.0.0.1:4573 - then ``pbxbridge-agi,s,1`` ("Return = No"),
the ``customdests`` Gosub ("Return = Yes"), or ``pbxbridge-inbound,s,1`` (ARI).
FreePBX's FastAGI server is played by :class:`FreePbxFastAgi`, a stub that
answers its own scripts on port 4573, beside the daemon on 4574.

The carrier (endpoints ``trunk-freepbx*``, which trust ``P-Asserted-Identity``)
delivers a withheld caller the way German carriers do: the number in
``P-Asserted-Identity`` and ``Privacy: id``.
"""

from __future__ import annotations

import re
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import DaemonProcess, running_daemon
from tests.integration.test_daemon_ari import WARDENBURG, trunk_vars
from tests.integration.test_screenpops_real import Subscriber
from tests.testbed.config import FREEPBX_FASTAGI_PORT
from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import TRUNK_SCENARIO, CallResult, SippAgent, place_calls
from tests.testbed.testbed import Testbed

pytestmark = [pytest.mark.asterisk, pytest.mark.mosquitto]

WITHHELD = "04407555123"
"""A withheld caller from the Wardenburg area code: shown, the number would place
a 115 call by area code; withheld, the caller must get the menu."""
WITHHELD_DIGITS = "7555123"  # what must never appear anywhere pbxbridge writes


class FreePbxFastAgi(socketserver.ThreadingTCPServer):
    """FreePBX core's FastAGI server, as far as the tests need it.

    Answers every script with one ``SET VARIABLE FREEPBX_AGI <script>`` and
    closes (``AGISTATUS=SUCCESS``); remembers which scripts it served.
    """

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int = FREEPBX_FASTAGI_PORT) -> None:
        self.served: list[str] = []
        super().__init__(("127.0.0.1", port), _FreePbxAgiHandler)


class _FreePbxAgiHandler(socketserver.StreamRequestHandler):
    server: FreePbxFastAgi

    def handle(self) -> None:
        env: dict[str, str] = {}
        while line := self.rfile.readline().decode("utf-8", "replace").rstrip("\n"):
            key, _, value = line.partition(": ")
            env[key] = value
        script = env.get("agi_network_script", "")
        self.server.served.append(script)
        self.wfile.write(f'SET VARIABLE FREEPBX_AGI "{script}"\n'.encode())
        self.rfile.readline()  # "200 result=1"


@pytest.fixture
def freepbx_agi() -> Iterator[FreePbxFastAgi]:
    server = FreePbxFastAgi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def daemon(tb: Testbed, tmp_path: Path, freepbx_agi: FreePbxFastAgi) -> Iterator[DaemonProcess]:
    # The daemon's defaults: FastAGI on 127.0.0.1:4574, beside FreePBX's 4573.
    with running_daemon(tb, tmp_path) as d:
        d.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
        yield d


@dataclass(frozen=True)
class Route:
    """One way a FreePBX inbound route hands the call to pbxbridge."""

    name: str
    source_ip: str
    entry: str  # the daemon's log "entry"
    health_key: str


ROUTES = {
    "custom-destination": Route("custom-destination", "127.0.0.6", "agi", "agi"),
    "custom-destination-return": Route("custom-destination-return", "127.0.0.7", "agi", "agi"),
    "custom-destination-ari": Route("custom-destination-ari", "127.0.0.8", "ari", "calls"),
}


@pytest.fixture(params=list(ROUTES))
def route(request: pytest.FixtureRequest) -> Route:
    return ROUTES[str(request.param)]


def withheld_scenario(workdir: Path) -> Path:
    """``trunk_call.xml`` as a carrier sends a withheld caller (PAI + Privacy: id)."""
    text = TRUNK_SCENARIO.read_text(encoding="utf-8")
    from_line = re.search(r"^\s*From: .*$", text, re.MULTILINE)
    assert from_line is not None
    indent = from_line.group(0)[: len(from_line.group(0)) - len(from_line.group(0).lstrip())]
    replacement = (
        f'{indent}From: "Anonymous" <sip:anonymous@anonymous.invalid>;'
        "tag=[pid]SIPpTag00[call_number]\n"
        f"{indent}P-Asserted-Identity: <sip:[caller]@[local_ip]>\n"
        f"{indent}Privacy: id"
    )
    path = workdir / "trunk_withheld.xml"
    path.write_text(text.replace(from_line.group(0), replacement, 1), encoding="utf-8")
    return path


def call(tb: Testbed, route: Route, did: str, **kw: Any) -> tuple[CallResult, list[dict[str, str]]]:
    with tb.ami() as ami:
        result = place_calls(did, count=1, source_ip=route.source_ip, **kw)
        time.sleep(0.3)
        events = [dict(e) for e in ami.events]
    return result, events


class TestWithheldCaller:
    def test_115_menu_and_the_number_shown_nowhere(
        self, route: Route, tb: Testbed, daemon: DaemonProcess, tmp_path: Path
    ) -> None:
        agent = SippAgent.for_agent(1, "answer", 100, tb.config, trace_messages=True).start()
        pops = Subscriber(1883, daemon.topic_prefix)
        try:
            result, events = call(
                tb,
                route,
                "115",
                hold_ms=3000,
                caller=WITHHELD,
                display="",
                dtmf="1",
                dtmf_delay_ms=300,
                scenario=withheld_scenario(tmp_path),
            )
            (routed,) = daemon.wait_routed(1)
            deadline = time.monotonic() + 5
            while not pops.agent("agent1") and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            agent.stop()
        assert result.ok, (result.describe(), daemon.log_tail())
        # FreePBX really did its part: presentation saved, then "allowed".
        tags = {k.lstrip("_"): v for k, v in trunk_vars(events).items()}
        assert tags["CALLINGNUMPRES_SV"].startswith("prohib"), tags
        assert tags["FROM_DID"] == "115"
        assert tags["FREEPBX_AGI"] == "freepbx-inbound.agi"
        # pbxbridge saw a withheld caller: the menu, not the area code.
        assert routed["entry"] == route.entry
        assert routed["caller"] == "withheld"
        assert "caller pressed 1" in " ".join(routed["reasons"]), routed
        assert tags["PBXBRIDGE_TENANT"] == "oldenburg"
        assert tags["PBXBRIDGE_CALLER"] == ""
        assert WITHHELD_DIGITS not in tags.get("CALLERID(name)", "")
        # The pop: withheld, no number, no name that is the number.
        (ringing, *_) = pops.agent("agent1")
        assert ringing["caller"] == {
            "number": None,
            "withheld": True,
            "invalid": False,
            "name": "",
        }
        assert not [m for _, _, m in pops.messages if WITHHELD_DIGITS in str(m)]
        # The agent's phone: Asterisk sends no number for a restricted presentation.
        invite = _first_invite(agent)
        assert WITHHELD_DIGITS not in invite, invite
        # The daemon's log, every level.
        assert WITHHELD_DIGITS not in daemon.log_path.read_text(errors="replace")


def _first_invite(agent: SippAgent) -> str:
    logs = sorted(agent.workdir.glob("*_messages.log"))
    assert logs, f"no sipp message trace in {agent.workdir}"
    text = logs[0].read_text(errors="replace")
    start = text.index("INVITE sip:")
    end = text.find("\n\n", start)
    return text[start : end if end > 0 else None]


class TestBesideFreePbx:
    def test_freepbx_agi_on_4573_and_pbxbridge_on_4574(
        self,
        route: Route,
        tb: Testbed,
        daemon: DaemonProcess,
        agents: AgentFactory,
        freepbx_agi: FreePbxFastAgi,
    ) -> None:
        agents(1, "answer")
        mark = tb.cdr_mark()
        result, events = call(tb, route, WARDENBURG, hold_ms=600, caller="04407123456", display="")
        assert result.ok, (result.describe(), daemon.log_tail())
        assert freepbx_agi.served == ["freepbx-inbound.agi"]
        health = daemon.health()
        assert health["agi"]["bind"] == "127.0.0.1:4574"
        tags = {k.lstrip("_"): v for k, v in trunk_vars(events).items()}
        assert tags["FREEPBX_AGI"] == "freepbx-inbound.agi"
        assert tags["PBXBRIDGE_TENANT"] == "wardenburg"
        (routed,) = daemon.wait_routed(1)
        assert routed["entry"] == route.entry
        assert int(daemon.health()[route.health_key]["routed"]) == 1
        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "wardenburg"
        # FreePBX copied the number into the empty name; pbxbridge shows the
        # tenant prefix and that name (the number is not withheld here).
        name, _, number = cdr["clid"].partition(" <")
        assert name.startswith('"WAR: ') and "4407123456" in name
        assert number.rstrip(">").endswith("4407123456")
        assert cdr["userfield"] != "customdests-returned"  # "Return = Yes" never returns
        assert not [e for e in daemon.logs() if e.get("event") == "agi.unknown_script"]
