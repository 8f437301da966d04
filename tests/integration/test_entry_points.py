"""One routing matrix, two entry points: every case runs over ARI and over FastAGI.

The same sipp call goes in from 127.0.0.2 (endpoint ``trunk`` ->
``pbxbridge-inbound`` -> ``Stasis``) or from 127.0.0.5 (endpoint ``trunk-agi``
-> ``pbxbridge-agi`` -> ``AGI(agi://127.0.0.1:4574/route,...)`` -> ``Goto``), into
the same running daemon, and must come out identically: same tags on the
caller's channel (AMI VarSet events), same CDR, same ``call.routed`` line.
The routing cases live here for both entry points; ``test_daemon_ari.py`` keeps
what is ARI-only.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import DaemonProcess, running_daemon
from tests.integration.test_daemon_ari import CALLER, WARDENBURG, trunk_vars
from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import CallResult, SippAgent, place_calls
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.asterisk


@dataclass(frozen=True)
class Entry:
    """One entry point: how calls reach it and where the daemon counts them."""

    name: str
    source_ip: str
    health_key: str  # "calls" (ARI) or "agi"

    def call(self, tb: Testbed, did: str, **kw: Any) -> tuple[CallResult, list[dict[str, str]]]:
        """Place one call on this entry point; sipp's result and the AMI events."""
        with tb.ami() as ami:
            result = place_calls(did, count=1, source_ip=self.source_ip, **kw)
            time.sleep(0.3)
            events = [dict(e) for e in ami.events]
        return result, events

    def routed_count(self, daemon: DaemonProcess) -> int:
        return int(daemon.health()[self.health_key]["routed"])

    def check_routed_line(self, routed: dict[str, Any]) -> None:
        if self.name == "agi":
            assert routed["entry"] == "agi"
        else:
            assert routed.get("entry", "ari") == "ari"


HOSTILE_NAMES = [
    # Escaped for SIP as a hostile carrier would send it: the name holds a quote.
    'Evil\\" <sip:x@y>;tag=1',
    "a;b,c|d",
    "${SET(PBX_INJECTED=1)}",
    "$[1+1] ${EVAL(${CALLERID(num)})}",
    "line\\nbreak\\r\\n",
    "x" * 300,
    "J\udcf6rg M\udcfcller",  # invalid UTF-8 (latin-1 bytes) via surrogateescape
]
"""Caller names a hostile carrier may send (the matrix's hostile-name cases)."""


ENTRIES = {
    "ari": Entry("ari", "127.0.0.2", "calls"),
    "agi": Entry("agi", "127.0.0.5", "agi"),
}


@pytest.fixture(params=list(ENTRIES))
def entry(request: pytest.FixtureRequest) -> Entry:
    return ENTRIES[str(request.param)]


@pytest.fixture
def daemon(tb: Testbed, tmp_path: Path) -> Iterator[DaemonProcess]:
    with running_daemon(tb, tmp_path) as d:
        d.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
        yield d


class TestOpenHours:
    def test_wardenburg_reaches_agent_with_every_tag(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer", ring_delay_ms=100)
        mark = tb.cdr_mark()
        result, events = entry.call(
            tb, WARDENBURG, hold_ms=800, caller=CALLER, display="Jörg Müller"
        )
        assert result.ok and result.successful == 1, result.describe()

        tags = trunk_vars(events)
        assert tags["PBXBRIDGE_TENANT"] == "wardenburg"
        assert tags["PBXBRIDGE_TENANT_NAME"] == "Gemeinde Wardenburg"
        assert tags["PBXBRIDGE_DID"] == WARDENBURG
        assert tags["PBXBRIDGE_VIA_115"] == "0"
        assert tags["QUEUE_PRIO"] == "5"
        assert tags["PBXBRIDGE_QUEUE"] == "servicecenter"
        assert tags["PBXBRIDGE_WHISPER"] == "custom/pbxbridge-test"
        assert tags["PBXBRIDGE_CALLER"] == "+494407123456"

        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "wardenburg"
        # The agent's phone (and so the CDR) shows the normalised number.
        assert cdr["clid"] == '"WAR: Jörg Müller" <+494407123456>'
        assert cdr["disposition"] == "ANSWERED"
        assert cdr["lastapp"] == "Queue"
        assert cdr["lastdata"].split(",")[3] == "custom/pbxbridge-test"
        trunk = "trunk-agi" if entry.name == "agi" else "trunk"
        assert cdr["channel"].startswith(f"PJSIP/{trunk}-")

        (routed,) = daemon.wait_routed(1)
        entry.check_routed_line(routed)
        assert routed["tenant"] == "wardenburg" and routed["action"] == "queue"
        assert routed["call_id"] == cdr["uniqueid"]
        assert routed["caller"] == "+4944…56"
        assert entry.routed_count(daemon) == 1

    def test_unknown_did_routes_as_default_tenant(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        result, events = entry.call(tb, "+4980012345", hold_ms=300, caller=CALLER)
        assert result.ok, result.describe()
        assert trunk_vars(events)["PBXBRIDGE_TENANT"] == "oldenburg"
        assert "unknown DID" in " ".join(daemon.wait_routed(1)[0]["reasons"])

    def test_withheld_caller(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        mark = tb.cdr_mark()
        result, events = entry.call(tb, WARDENBURG, hold_ms=300, caller="anonymous", display="")
        assert result.ok, result.describe()
        tags = trunk_vars(events)
        assert tags["PBXBRIDGE_TENANT"] == "wardenburg"
        assert tags["PBXBRIDGE_CALLER"] == ""
        cdr = tb.wait_for_cdr(lambda c: c["accountcode"] == "wardenburg", since=mark)
        assert cdr["clid"] == '"WAR" <anonymous>'
        assert daemon.wait_routed(1)[0]["caller"] == "withheld"


class TestClosedHours:
    def test_announcement_then_hangup(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        mark = tb.cdr_mark()
        _, events = entry.call(tb, "+494222440", hold_ms=3000, caller=CALLER)
        tags = trunk_vars(events)
        assert tags["PBXBRIDGE_TENANT"] == "nachts"
        assert tags["PBXBRIDGE_CLOSED_THEN"] == "hangup"
        cdr = tb.wait_for_cdr(lambda c: c["accountcode"] == "nachts", since=mark)
        assert cdr["dcontext"] == "pbxbridge-closed"
        assert cdr["dstchannel"] == ""
        assert daemon.wait_routed(1)[0]["action"] == "closed"

    def test_voicemail(self, entry: Entry, tb: Testbed, daemon: DaemonProcess) -> None:
        mark = tb.cdr_mark()
        _, events = entry.call(tb, "+4944619190", hold_ms=2500, caller=CALLER)
        assert trunk_vars(events)["PBXBRIDGE_CLOSED_TARGET"] == "1000@pbxbridge"
        cdr = tb.wait_for_cdr(lambda c: c["accountcode"] == "briefkasten", since=mark)
        assert cdr["lastapp"] == "VoiceMail"

    def test_other_queue(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(4, "answer")
        mark = tb.cdr_mark()
        result, _ = entry.call(tb, "+494421160", hold_ms=500, caller=CALLER)
        assert result.ok, result.describe()
        cdr = tb.wait_for_cdr(lambda c: c["accountcode"] == "spaet", since=mark)
        assert cdr["dstchannel"].startswith("PJSIP/agent4")
        assert cdr["lastdata"].startswith("afterhours")


class TestService115:
    def test_area_code_places_caller(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        result, events = entry.call(tb, "115", hold_ms=300, caller="04407555123")
        assert result.ok, result.describe()
        tags = trunk_vars(events)
        assert tags["PBXBRIDGE_TENANT"] == "wardenburg"
        assert tags["PBXBRIDGE_VIA_115"] == "1"

    def test_menu_digit_chooses_tenant(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        _, events = entry.call(
            tb, "115", hold_ms=2500, caller="01711234567", dtmf="2", dtmf_delay_ms=200
        )
        tags = trunk_vars(events)
        assert tags.get("PBXBRIDGE_TENANT") == "wardenburg", daemon.log_tail()
        (routed,) = daemon.wait_routed(1)
        assert "caller pressed 2" in " ".join(routed["reasons"])
        entry.check_routed_line(routed)

    def test_menu_without_digit_falls_back_to_default(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        started = time.monotonic()
        _, events = entry.call(tb, "115", hold_ms=5000, caller="anonymous")
        assert trunk_vars(events).get("PBXBRIDGE_TENANT") == "oldenburg", daemon.log_tail()
        (routed,) = daemon.wait_routed(1)
        assert "no digit pressed" in " ".join(routed["reasons"])
        assert routed["ms"] < 4000  # prompt (0.3 s) + the 2 s menu timeout
        assert time.monotonic() - started < 15


class TestHostileCallerId:
    @pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
    def test_routed_and_sanitised(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory, name: str
    ) -> None:
        agents(1, "answer")
        mark = tb.cdr_mark()
        result, events = entry.call(tb, WARDENBURG, hold_ms=300, caller=CALLER, display=name)
        tags = trunk_vars(events)
        assert tags.get("PBXBRIDGE_TENANT") == "wardenburg", (result.describe(), daemon.log_tail())
        assert "PBX_INJECTED" not in tags
        for key, value in tags.items():
            if key.startswith("PBXBRIDGE") or key in ("CALLERID(name)", "QUEUE_PRIO"):
                assert not set(value) & set('"$;,|\\\n\r{}'), (key, value)
        cdr = tb.wait_for_cdr(lambda c: c["accountcode"] == "wardenburg", since=mark)
        shown = cdr["clid"].split('" <')[0].lstrip('"')
        assert shown.startswith("WAR")
        assert len(shown) <= 80
        assert not set(shown) & set("$;,|\\{}")
        assert not [
            e
            for e in daemon.logs()
            if str(e.get("event", "")).startswith("agi.")
            and e["event"] not in ("agi.listening", "agi.no_secret")
        ]

    def test_hostile_caller_number(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory
    ) -> None:
        agents(1, "answer")
        _, events = entry.call(tb, WARDENBURG, hold_ms=300, caller="$(SET(PBX_INJECTED=1));a=b,c")
        tags = trunk_vars(events)
        assert tags.get("PBXBRIDGE_TENANT") == "wardenburg"
        assert tags["PBXBRIDGE_CALLER"] == ""
        assert "PBX_INJECTED" not in tags


HOSTILE_DIDS = [
    "0441,5,1",  # Goto(pbxbridge-inbound,${EXTEN},1) split it into four arguments
    "04407,s,1",
    "+49441(235)0",
    "0441$%7BCALLERID(num)%7D",  # ${CALLERID(num)}, escaped as a request URI must
    "0441%22x%22)",  # quotes and a closing parenthesis
    "0441%20235%200",  # blanks
    "0441$%7BSET(PBX_INJECTED=1)%7D,x",
]
"""Request URIs a hostile or broken carrier may send (user parts starting with a digit,
so they reach the trunk snippet's ``_X.``)."""


class TestRecommendedTrunkSnippet:
    """The test bed's [from-trunk] is the snippet dialplans/pbxbridge.conf recommends."""

    @pytest.mark.parametrize("did", HOSTILE_DIDS, ids=range(len(HOSTILE_DIDS)))
    def test_any_request_uri_reaches_stasis(
        self, tb: Testbed, daemon: DaemonProcess, agents: AgentFactory, did: str
    ) -> None:
        agents(1, "answer")
        mark = tb.cdr_mark()
        result, events = ENTRIES["ari"].call(tb, did, hold_ms=300, caller=CALLER)
        assert result.ok and result.successful == 1, (result.describe(), daemon.log_tail())
        (routed,) = daemon.wait_routed(1)
        # Oldenburg either way: "+49441(235)0" and "0441 235 0" are its number
        # written oddly, the others match no tenant (the unknown_did rule).
        assert routed["tenant"] == "oldenburg" and routed.get("entry", "ari") == "ari"
        tags = trunk_vars(events)
        assert tags["PBXBRIDGE_TENANT"] == "oldenburg"
        assert "PBX_INJECTED" not in tags
        assert not set(tags["PBXBRIDGE_DID"]) & set('"$;,|\\{}')
        # The whole request URI reached the daemon (a Goto that split it lost
        # the rest, or all of it), and nothing in it was evaluated.
        digits = "".join(c for c in tags["PBXBRIDGE_DID"] if c.isdigit())
        sent = urllib.parse.unquote(did)  # Asterisk decodes %XX in the request URI
        assert "".join(c for c in sent if c.isdigit()).lstrip("0") in digits, tags
        assert "7123456" not in digits  # ${CALLERID(num)} stayed text
        cdr = tb.wait_for_cdr(lambda c: c["dstchannel"].startswith("PJSIP/agent1"), since=mark)
        assert cdr["accountcode"] == "oldenburg"


# -- what the agent's phone shows for a caller "number" that is none ----------

HOSTILE_NUMBERS = [
    "%3Cscript%3E",  # <script>, escaped as a SIP URI user part must be
    "$(reboot)",
    "9" * 300,
]
"""Caller "numbers" that are no phone number (pjsip decodes %XX in the From user)."""


def _invite_to_agent(agent: SippAgent) -> str:
    """The INVITE the agent's sipp received (its -trace_msg log)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for log in agent.workdir.glob("*_messages.log"):
            text = log.read_text(encoding="utf-8", errors="replace")
            start = text.find("INVITE sip:")
            if start != -1:
                end = text.find("\n\n", start)
                return text[start : end if end != -1 else None]
        time.sleep(0.1)
    raise AssertionError(f"agent received no INVITE: {list(agent.workdir.iterdir())}")


def _header(invite: str, name: str) -> str:
    for line in invite.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


class TestCallerShownToAgent:
    """The agent's phone gets the E.164 number, or "anonymous" and a word why."""

    @pytest.mark.parametrize("caller", HOSTILE_NUMBERS, ids=range(len(HOSTILE_NUMBERS)))
    def test_invalid_number_never_reaches_the_phone(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess, caller: str
    ) -> None:
        agent = SippAgent.for_agent(1, "answer", 50, tb.config, trace_messages=True).start()
        try:
            result, _ = entry.call(tb, WARDENBURG, hold_ms=300, caller=caller, display="")
            assert result.ok, (result.describe(), daemon.log_tail())
            invite = _invite_to_agent(agent)
        finally:
            agent.stop()
        sent = urllib.parse.unquote(caller)
        for name in ("From", "P-Asserted-Identity", "Remote-Party-ID"):
            assert sent not in _header(invite, name), (name, invite)
        assert "reboot" not in invite and "script" not in invite and "9" * 30 not in invite
        from_ = _header(invite, "From")
        assert from_.startswith('"WAR ungültige Nummer" <sip:anonymous@'), invite

    def test_valid_number_reaches_the_phone_in_e164(
        self, entry: Entry, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        agent = SippAgent.for_agent(1, "answer", 50, tb.config, trace_messages=True).start()
        try:
            result, _ = entry.call(
                tb, WARDENBURG, hold_ms=300, caller="04411234567", display="Jörg Müller"
            )
            assert result.ok, (result.describe(), daemon.log_tail())
            invite = _invite_to_agent(agent)
        finally:
            agent.stop()
        from_ = _header(invite, "From")
        assert from_.startswith('"WAR: Jörg Müller" <sip:+494411234567@'), invite
