"""The real-Asterisk test bed and the shipped dialplan, without the pbxbridge daemon.

With no ARI application registered, ``Stasis(pbxbridge)`` fails at once and the
shipped ``dialplans/pbxbridge.conf`` must still deliver the call to a queue agent,
tagged ``unrouted``.  These tests place real SIP calls with sipp and check the
outcome in sipp's statistics, Asterisk's CDRs, queue_log and AMI events.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import SippAgent, place_calls
from tests.testbed.testbed import PROJECT_DIALPLANS, Testbed

DID = "+494407730"
CALLER = "04407123456"
DISPLAY = "Jörg Müller"


def _events(ami_events: list[dict[str, str]], name: str, **match: str) -> list[dict[str, str]]:
    return [
        e
        for e in ami_events
        if e.get("Event") == name and all(e.get(k) == v for k, v in match.items())
    ]


@pytest.mark.asterisk
def test_without_daemon_fallback_routes_to_servicecenter(
    fresh_testbed: Testbed, agents: AgentFactory
) -> None:
    tb = fresh_testbed
    agent1 = agents(1, "answer", ring_delay_ms=100)
    completed_before = tb.queue_counts("servicecenter")["completed"]
    mark = tb.cdr_mark()

    with tb.ami() as ami:
        result = place_calls(DID, count=1, hold_ms=800, caller=CALLER, display=DISPLAY)
        assert result.ok, result.describe()
        assert result.successful == 1
        ami.wait_for_event(
            lambda e: e.get("Event") == "Hangup" and e.get("Channel", "").startswith("PJSIP/trunk")
        )
        events = list(ami.events)

    # the call really went through Stasis(pbxbridge), which failed ...
    trunk_vars = {
        e["Variable"]: e.get("Value", "")
        for e in events
        if e.get("Event") == "VarSet" and e.get("Channel", "").startswith("PJSIP/trunk")
    }
    # AMI reports the inheritable variable under its "__" name
    assert trunk_vars.get("__PBXBRIDGE_DID") == DID
    assert trunk_vars.get("STASISSTATUS") == "FAILED"
    # ... and the fallback tagged it and queued it in the default fallback queue
    assert trunk_vars.get("PBXBRIDGE_TENANT") == "unrouted"
    assert trunk_vars.get("PBXBRIDGE_QUEUE") == "servicecenter"
    assert _events(events, "QueueCallerJoin", Queue="servicecenter")
    connect = _events(events, "AgentConnect", Queue="servicecenter")
    assert connect and connect[0]["Interface"] == "PJSIP/agent1"

    cdr = tb.wait_for_cdr(lambda c: c["dcontext"] == "pbxbridge-queue", since=mark)
    assert cdr["accountcode"] == "unrouted"
    assert cdr["src"] == CALLER
    assert DISPLAY in cdr["clid"]  # UTF-8 calling name survived SIP -> CDR
    assert cdr["lastapp"] == "Queue"
    assert cdr["lastdata"].startswith("servicecenter,t")
    assert cdr["dstchannel"].startswith("PJSIP/agent1-")
    assert cdr["disposition"] == "ANSWERED"

    assert tb.queue_counts("servicecenter")["completed"] == completed_before + 1
    assert any(
        line[2] == "servicecenter" and line[3] == "PJSIP/agent1" and line[4] == "CONNECT"
        for line in tb.queue_log()
        if len(line) > 4
    )
    tb.wait_idle()
    stats = agent1.stop()
    assert stats.successful == 1, agent1.errors()
    assert stats.failed == 0, agent1.errors()
    # INVITE -> 200 OK was measured for the call
    assert len(result.invite_to_200_ms) == 1
    assert 0 <= result.invite_to_200_ms[0] < 5000


@pytest.mark.asterisk
def test_fallback_queue_follows_global(fresh_testbed: Testbed, agents: AgentFactory) -> None:
    tb = fresh_testbed
    agent4 = agents(4, "answer")
    mark = tb.cdr_mark()
    tb.cli("dialplan set global PBXBRIDGE_FALLBACK_QUEUE afterhours")
    try:
        result = place_calls("4940123", count=1, hold_ms=300)
    finally:
        tb.cli('dialplan set global PBXBRIDGE_FALLBACK_QUEUE ""')
        with tb.ami(events=False) as ami:
            reset = ami.action("Getvar", Variable="PBXBRIDGE_FALLBACK_QUEUE")
        assert reset.get("Value", "") == "", reset
    assert result.ok, result.describe()
    cdr = tb.wait_for_cdr(
        lambda c: c["dcontext"] == "pbxbridge-queue" and c["lastdata"].startswith("afterhours"),
        since=mark,
    )
    assert cdr["accountcode"] == "unrouted"
    assert cdr["dstchannel"].startswith("PJSIP/agent4-")
    tb.wait_idle()
    assert agent4.stop().successful == 1


@pytest.mark.asterisk
def test_pure_queue_path(fresh_testbed: Testbed, answering_agents: Sequence[SippAgent]) -> None:
    tb = fresh_testbed
    mark = tb.cdr_mark()
    result = place_calls("4944077399", count=2, rate=5, hold_ms=300, source_ip="127.0.0.4")
    assert result.ok, result.describe()
    assert result.successful == 2
    assert len(result.invite_to_200_ms) == 2
    tb.wait_for_cdr(lambda c: c["dcontext"] == "pure-queue", since=mark)
    tb.wait_idle()
    cdrs = tb.cdrs()[mark:]
    assert [c["disposition"] for c in cdrs] == ["ANSWERED", "ANSWERED"], cdrs
    for cdr in cdrs:
        # no pbxbridge involvement at all: not tagged, straight Queue()
        assert cdr["dcontext"] == "pure-queue"
        assert cdr["accountcode"] == ""
        assert cdr["lastapp"] == "Queue"
        assert cdr["channel"].startswith("PJSIP/trunk-pure-")
    answered = sum(agent.stop().successful for agent in answering_agents)
    assert answered == 2


@pytest.mark.asterisk
def test_busy_and_unanswered_agents_are_skipped(
    fresh_testbed: Testbed, agents: AgentFactory
) -> None:
    tb = fresh_testbed
    busy = agents(1, "reject")
    ringing = agents(2, "noanswer")
    answering = agents(3, "answer")
    mark = tb.cdr_mark()
    # linear: agent1 busy -> agent2 rings until the member timeout (4 s) -> agent3
    result = place_calls(DID, count=1, hold_ms=300, timeout_s=30)
    assert result.ok, result.describe()
    cdr = tb.wait_for_cdr(
        lambda c: c["dcontext"] == "pbxbridge-queue" and c["disposition"] == "ANSWERED",
        since=mark,
    )
    assert cdr["dstchannel"].startswith("PJSIP/agent3-")
    tb.wait_idle()
    assert busy.stop().successful >= 1, busy.errors()
    assert ringing.stop().successful == 1, ringing.errors()  # CANCEL -> 200/487 -> ACK
    assert answering.stop().successful == 1, answering.errors()


@pytest.mark.asterisk
def test_dtmf_via_sip_info_reaches_dialplan(fresh_testbed: Testbed) -> None:
    tb = fresh_testbed
    mark = tb.cdr_mark()
    with tb.ami() as ami:
        result = place_calls("dtmftest", count=1, hold_ms=300, dtmf="7", dtmf_delay_ms=200)
        assert result.ok, result.describe()
        event = ami.wait_for_event(
            lambda e: e.get("Event") == "UserEvent" and e.get("UserEvent") == "TestbedDtmf"
        )
    assert event["Digits"] == "7"
    cdr = tb.wait_for_cdr(lambda c: c["dst"] == "dtmftest", since=mark)
    assert cdr["userfield"] == "dtmf:7"


@pytest.mark.asterisk
def test_shipped_snippet_is_included_verbatim(testbed: Testbed) -> None:
    shipped = PROJECT_DIALPLANS / "pbxbridge.conf"
    assert (testbed.conf_dir / "pbxbridge.conf").read_bytes() == shipped.read_bytes()
    out = testbed.cli("dialplan show pbxbridge-inbound")
    for pattern in ("'_X.'", "'_+X.'", "'s'"):
        assert pattern in out
    assert "Stasis(pbxbridge,${CALLERID(num-pres)},${PBXBRIDGE_DID})" in out


def test_inbound_extension_bodies_are_identical() -> None:
    """The three entry extensions are kept in sync by hand; catch drift."""
    text = (PROJECT_DIALPLANS / "pbxbridge.conf").read_text(encoding="utf-8")
    section = text.split("[pbxbridge-inbound]", 1)[1].split("\n[", 1)[0]
    bodies: dict[str, list[str]] = {}
    current = ""
    for raw in section.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"exten\s*=>\s*([^,]+),1,(.*)", line)
        if m:
            current = m.group(1)
            bodies[current] = [m.group(2)]
        elif line.startswith("same"):
            bodies[current].append(line.split("=>", 1)[1].strip())
    assert set(bodies) == {"_X.", "_+X.", "s"}
    assert bodies["_X."] == bodies["_+X."] == bodies["s"]


def test_snippet_never_evaluates_caller_data_in_expressions() -> None:
    """Caller-controlled values must not appear inside $[...] (dialplan injection)."""
    text = (PROJECT_DIALPLANS / "pbxbridge.conf").read_text(encoding="utf-8")
    code = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    # ${LEN(...)} of caller data is fine: the expression only sees a number
    code = re.sub(r"\$\{LEN\(\$\{[^}]*\}\)\}", "0", code)
    for expr in re.findall(r"\$\[(.*?)\]\?", code):
        for caller_data in ("${CALLERID(", "${EXTEN}", "${FROM_DID}", "${CONNECTEDLINE("):
            assert caller_data not in expr, expr
    assert "EVAL(" not in code
    assert Path(PROJECT_DIALPLANS).is_dir()


# --- the contexts the daemon continues to, driven by dialplan stand-ins -------
# The test bed's [from-trunk] has "sim-*" extensions that set exactly the
# variables pbxbridge sets over ARI and then jump where the daemon's "continue"
# would; this exercises the shipped contexts without the daemon.


@pytest.mark.asterisk
def test_open_queue_uses_daemon_variables(fresh_testbed: Testbed, agents: AgentFactory) -> None:
    tb = fresh_testbed
    agent1 = agents(1, "answer")
    mark = tb.cdr_mark()
    result = place_calls("sim-open", count=1, hold_ms=300, display=DISPLAY)
    assert result.ok, result.describe()
    cdr = tb.wait_for_cdr(lambda c: c["dcontext"] == "pbxbridge-queue", since=mark)
    assert cdr["accountcode"] == "tenant1"
    # queue, options, URL, announceoverride (whisper to the agent), timeout
    assert cdr["lastdata"] == "servicecenter,t,,beep,20"
    assert f"T1: {DISPLAY}" in cdr["clid"]
    assert cdr["dstchannel"].startswith("PJSIP/agent1-")
    tb.wait_idle()
    assert agent1.stop().successful == 1


@pytest.mark.asterisk
@pytest.mark.parametrize(
    ("exten", "lastapp", "lastdata", "disposition"),
    [
        ("sim-closed-hangup", "Hangup", "", "ANSWERED"),
        ("sim-closed-bogus", "Hangup", "", "ANSWERED"),
        # the shipped [pbxbridge-forward] placeholder hangs up without answering
        ("sim-closed-forward", "Dial", "Local/04419876543@pbxbridge-forward", "NO ANSWER"),
        ("sim-reject", "Hangup", "21", "ANSWERED"),
    ],
)
def test_closed_and_reject_end_the_call(
    fresh_testbed: Testbed, exten: str, lastapp: str, lastdata: str, disposition: str
) -> None:
    tb = fresh_testbed
    mark = tb.cdr_mark()
    started = time.monotonic()
    # a long hold: the call must end because Asterisk hangs up, not because we do
    result = place_calls(exten, count=1, hold_ms=20_000, timeout_s=40)
    elapsed = time.monotonic() - started
    assert result.ok, result.describe()
    assert elapsed < 10, f"call lasted {elapsed:.1f}s: Asterisk did not hang up"
    context = "pbxbridge-reject" if exten == "sim-reject" else "pbxbridge-closed"
    cdr = tb.wait_for_cdr(
        lambda c: c["dcontext"] == context and c["lastapp"] == lastapp, since=mark
    )
    assert cdr["lastdata"] == lastdata
    assert cdr["disposition"] == disposition


@pytest.mark.asterisk
def test_closed_then_queue(fresh_testbed: Testbed, agents: AgentFactory) -> None:
    tb = fresh_testbed
    agent4 = agents(4, "answer")
    mark = tb.cdr_mark()
    # pbxbridge-closed answers first (for the announcement), so the 200 OK comes
    # before the agent does: hold long enough for announcement + agent
    result = place_calls("sim-closed-queue", count=1, hold_ms=3000)
    assert result.ok, result.describe()
    cdr = tb.wait_for_cdr(lambda c: c["lastapp"] == "Queue", since=mark)
    assert cdr["lastdata"].startswith("afterhours,t")
    assert cdr["dstchannel"].startswith("PJSIP/agent4-")
    tb.wait_idle()
    assert agent4.stop().successful == 1


@pytest.mark.asterisk
def test_closed_then_voicemail_records_a_message(fresh_testbed: Testbed) -> None:
    tb = fresh_testbed
    before = len(tb.voicemail_messages())
    # greeting (a beep) + the stock "leave your message after the tone" (~4.5 s)
    # + beep, then about 2 s of recording
    result = place_calls("sim-closed-voicemail", count=1, hold_ms=8_500, timeout_s=30)
    assert result.ok, result.describe()
    deadline = time.monotonic() + 5
    while len(tb.voicemail_messages()) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    messages = tb.voicemail_messages()
    assert len(messages) == before + 1
    assert "callerid=" in messages[-1].read_text(errors="replace")
