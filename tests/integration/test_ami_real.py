"""The AMI adapter against the real Asterisk 22 of the test bed.

These tests never restart Asterisk (other tests share it): reconnects are
provoked from the client side (:meth:`AmiClient.reconnect`, an impossible ping
timeout). Calls are placed with sipp through the pure-queue trunk (127.0.0.4 ->
``Queue(servicecenter,t)``), which involves neither the daemon nor the shipped
dialplan, or through the test bed's ``sim-open`` stand-in for the daemon.

Run with ``-s`` to see the header names Asterisk sends for each queue event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pbxbridge.adapters.ami import (
    AmiClient,
    AmiConfig,
    AmiEvent,
    AmiState,
    AmiUnavailable,
    chan_variables,
)
from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import place_calls
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.asterisk

DISPLAY = "Jörg Müller"
CALLER = "04407123456"
QUEUE_EVENTS = (
    "QueueCallerJoin",
    "AgentCalled",
    "AgentRingNoAnswer",
    "QueueCallerLeave",
    "AgentConnect",
    "AgentComplete",
    "QueueCallerAbandon",
)


@dataclass
class Session:
    client: AmiClient
    events: list[AmiEvent] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def wait_for(
        self, predicate: Callable[[AmiEvent], bool], within: float = 15.0
    ) -> AmiEvent:
        deadline = time.monotonic() + within
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if predicate(ev):
                    return ev
            seen = len(self.events)
            if time.monotonic() > deadline:
                names = sorted({e.get("Event", "") for e in self.events})
                raise AssertionError(f"expected AMI event did not arrive; got {names}")
            await asyncio.sleep(0.02)


async def _wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _config(tb: Testbed, **overrides: Any) -> AmiConfig:
    values: dict[str, Any] = {
        "host": tb.ami_host,
        "port": tb.ami_port,
        "username": tb.ami_user,
        "password": tb.ami_password,
        "ping_interval": 1.0,
        "ping_timeout": 1.0,
        "backoff_initial": 0.1,
        "backoff_max": 1.0,
    }
    values.update(overrides)
    return AmiConfig(**values)


@pytest.fixture
async def ami_sessions(testbed: Testbed) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await ami_sessions(**config_overrides)`` -> a running Session."""
    made: list[Session] = []

    async def start(**overrides: Any) -> Session:
        session = Session(AmiClient(_config(testbed, **overrides)))
        made.append(session)

        async def collect(event: AmiEvent) -> None:
            session.events.append(event)

        async def on_connected() -> None:
            session.connects.append(time.monotonic())

        session.task = asyncio.create_task(session.client.run(collect, on_connected))
        async with asyncio.timeout(10):
            await session.client.wait_connected()
        return session

    yield start
    for session in made:
        await session.client.close(grace=0.2)
        if session.task is not None:
            await asyncio.wait_for(session.task, 2)


def _field_report(events: list[AmiEvent], uniqueid: str) -> str:
    lines = []
    for ev in events:
        if ev.get("Event") in QUEUE_EVENTS and uniqueid in (ev.get("Uniqueid"), ev.get("Linkedid")):
            lines.append(f"{ev['Event']}: {', '.join(ev)}")
    return "\n".join(lines)


async def test_login_and_ping_rtt(testbed: Testbed, ami_sessions: Callable[..., Any]) -> None:
    session: Session = await ami_sessions()
    status = session.client.status
    assert status.state is AmiState.CONNECTED
    assert status.details["ami_version"]  # "9.0.0" on Asterisk 22
    rtt = await session.client.ping()
    assert 0 < rtt < 500
    assert session.client.status.details["last_ping_rtt_ms"] == rtt
    print(f"\nAMI version {status.details['ami_version']}, Ping RTT {rtt:.3f} ms")


async def test_queue_status_lists_agents(
    testbed: Testbed, ami_sessions: Callable[..., Any]
) -> None:
    # With a server-side Filter installed: list answers of our own actions must
    # not be filtered away.
    session: Session = await ami_sessions(events=("Queue*", "Agent*"))
    snapshot = await session.client.queue_status("servicecenter")
    expected = next(q.members for q in testbed.config.queues if q.name == "servicecenter")
    members = snapshot.members_of("servicecenter")
    assert [m.interface for m in members] == list(expected)
    assert all(m.membership == "static" for m in members)
    assert snapshot.queues["servicecenter"].strategy == "linear"
    print(f"\nQueueMember headers: {', '.join(members[0].raw)}")
    print(f"QueueParams headers: {', '.join(snapshot.queues['servicecenter'].raw)}")
    # all queues
    everything = await session.client.queue_status()
    assert {"servicecenter", "afterhours"} <= set(everything.queues)


async def test_pure_queue_call_produces_queue_events(
    fresh_testbed: Testbed, agents: AgentFactory, ami_sessions: Callable[..., Any]
) -> None:
    tb = fresh_testbed
    everything: Session = await ami_sessions()
    filtered: Session = await ami_sessions(events=("Queue*", "Agent*"))
    # Proof that Asterisk applies the regex we send (the client-side filter would
    # hide it): a session without client-side filter, with the same Filter added.
    server_only: Session = await ami_sessions()
    await server_only.client.action(
        {"Action": "Filter", "Operation": "Add", "Filter": "Event: (Queue.*|Agent.*)"}
    )
    server_only.events.clear()
    agents(1, "answer", ring_delay_ms=100)
    result = await asyncio.to_thread(
        place_calls,
        "4944077399",
        count=1,
        hold_ms=1000,
        caller=CALLER,
        display=DISPLAY,
        source_ip=tb.config.pure_trunk_ip,
    )
    assert result.ok, result.describe()

    join = await everything.wait_for(
        lambda e: e.get("Event") == "QueueCallerJoin" and e.get("CallerIDNum") == CALLER
    )
    uid = join["Uniqueid"]
    await everything.wait_for(lambda e: e.get("Event") == "AgentComplete" and e["Uniqueid"] == uid)
    await everything.wait_for(lambda e: e.get("Event") == "Hangup" and e["Uniqueid"] == uid)

    ours = [e for e in everything.events if e.get("Uniqueid") == uid]
    sequence = [e["Event"] for e in ours if e["Event"] in QUEUE_EVENTS]
    required = ["QueueCallerJoin", "AgentCalled", "AgentConnect", "AgentComplete"]
    positions = [sequence.index(name) for name in required]
    assert positions == sorted(positions), sequence

    by_name = {e["Event"]: e for e in ours}
    assert join["Queue"] == "servicecenter"
    assert join["CallerIDName"] == DISPLAY  # UTF-8 through SIP, Asterisk and AMI
    assert join["Linkedid"] == uid
    called, connect, complete = (
        by_name["AgentCalled"],
        by_name["AgentConnect"],
        by_name["AgentComplete"],
    )
    assert called["Interface"] == "PJSIP/agent1"
    assert connect["Interface"] == "PJSIP/agent1"
    assert connect["MemberName"] == "PJSIP/agent1"
    assert int(connect["HoldTime"]) >= 0
    assert int(complete["TalkTime"]) >= 0
    assert complete["Reason"] in ("caller", "agent")
    # the agent leg has its own Uniqueid but the caller's Linkedid: our ordering key
    assert connect["DestUniqueid"] != uid
    assert connect["DestLinkedid"] == uid
    agent_hangup = await everything.wait_for(
        lambda e: e.get("Event") == "Hangup" and e.get("Uniqueid") == connect["DestUniqueid"]
    )
    assert agent_hangup["Linkedid"] == uid

    # the filtered session got the same queue events and nothing else
    await filtered.wait_for(lambda e: e.get("Event") == "AgentComplete" and e["Uniqueid"] == uid)
    assert {e["Event"] for e in filtered.events} <= {
        n for n in {e["Event"] for e in everything.events} if n.startswith(("Queue", "Agent"))
    }
    assert [
        e["Event"]
        for e in filtered.events
        if e.get("Uniqueid") == uid and e["Event"] in QUEUE_EVENTS
    ] == sequence

    await server_only.wait_for(lambda e: e.get("Event") == "AgentComplete" and e["Uniqueid"] == uid)
    assert all(e["Event"].startswith(("Queue", "Agent")) for e in server_only.events), {
        e["Event"] for e in server_only.events
    }

    print(f"\nsequence for {uid}: {sequence}")
    print(_field_report(everything.events, uid))
    print(f"Hangup: {', '.join(by_name['Hangup'])}")
    print(f"ChanVariable present without channelvars: {'ChanVariable' in join}")


async def test_channelvars_are_attached_to_queue_events(
    fresh_testbed: Testbed, agents: AgentFactory, ami_sessions: Callable[..., Any]
) -> None:
    """``channelvars = PBXBRIDGE_TENANT`` in manager.conf: events carry ChanVariable.

    The shared Asterisk's manager.conf is patched and reloaded for the duration
    of this test only (``manager reload`` keeps existing sessions) and restored
    afterwards. The call goes through the test bed's ``sim-open`` extension,
    which sets ``PBXBRIDGE_TENANT=t1`` like the daemon would and queues the call.
    """
    tb = fresh_testbed
    manager_conf = tb.conf_dir / "manager.conf"
    original = manager_conf.read_text(encoding="utf-8")
    assert "[general]\n" in original
    manager_conf.write_text(
        original.replace("[general]\n", "[general]\nchannelvars = PBXBRIDGE_TENANT\n", 1),
        encoding="utf-8",
    )
    try:
        tb.cli("manager reload")
        session: Session = await ami_sessions()
        agents(1, "answer", ring_delay_ms=100)
        result = await asyncio.to_thread(place_calls, "sim-open", count=1, hold_ms=800)
        assert result.ok, result.describe()
        join = await session.wait_for(
            lambda e: e.get("Event") == "QueueCallerJoin" and e.get("Queue") == "servicecenter"
        )
        uid = join["Uniqueid"]
        connect = await session.wait_for(
            lambda e: e.get("Event") == "AgentConnect" and e["Uniqueid"] == uid
        )
        complete = await session.wait_for(
            lambda e: e.get("Event") == "AgentComplete" and e["Uniqueid"] == uid
        )
        newchannel = next(
            e for e in session.events if e.get("Event") == "Newchannel" and e["Uniqueid"] == uid
        )
    finally:
        manager_conf.write_text(original, encoding="utf-8")
        tb.cli("manager reload")

    assert chan_variables(join) == {"PBXBRIDGE_TENANT": "t1"}
    assert chan_variables(connect) == {"PBXBRIDGE_TENANT": "t1"}
    assert chan_variables(complete) == {"PBXBRIDGE_TENANT": "t1"}
    # set by the dialplan after the channel was created: empty at Newchannel time
    assert chan_variables(newchannel) == {"PBXBRIDGE_TENANT": ""}
    print(f"\nQueueCallerJoin ChanVariable: {join.get('ChanVariable')!r}")
    print(
        f"AgentConnect ChanVariable: {connect.get('ChanVariable')!r}, "
        f"DestChanVariable: {connect.get('DestChanVariable')!r}"
    )
    print(f"Newchannel ChanVariable: {newchannel.get('ChanVariable')!r}")


async def test_reconnect_after_client_side_close(
    testbed: Testbed, ami_sessions: Callable[..., Any]
) -> None:
    session: Session = await ami_sessions()
    assert len(session.connects) == 1
    pending = asyncio.create_task(session.client.queue_status())
    session.client.reconnect("test: drop the TCP connection")
    with pytest.raises(AmiUnavailable):
        await pending
    started = time.monotonic()
    await _wait_until(lambda: len(session.connects) >= 2 and session.client.connected)
    print(f"\nre-logged in after {1000 * (time.monotonic() - started):.0f} ms")
    snapshot = await session.client.queue_status("servicecenter")
    assert snapshot.members
    assert session.client.status.last_error == "test: drop the TCP connection"


async def test_unanswerable_ping_timeout_reconnects(
    testbed: Testbed, ami_sessions: Callable[..., Any]
) -> None:
    # No real Asterisk answers within a microsecond: every ping "fails", so each
    # connection is declared dead after ping_interval and re-established.
    session: Session = await ami_sessions(ping_interval=0.3, ping_timeout=1e-6)
    await _wait_until(lambda: len(session.connects) >= 2)
    assert "liveness check failed" in (session.client.status.last_error or "")


async def test_unanswered_agent_gives_ring_no_answer(
    fresh_testbed: Testbed, agents: AgentFactory, ami_sessions: Callable[..., Any]
) -> None:
    tb = fresh_testbed
    session: Session = await ami_sessions(events=("Queue*", "Agent*"))
    agents(1, "noanswer")
    agents(2, "answer", ring_delay_ms=100)
    # linear: agent1 rings for the member timeout (4 s), then agent2 answers
    result = await asyncio.to_thread(
        place_calls, "4944077399", count=1, hold_ms=500, source_ip=tb.config.pure_trunk_ip
    )
    assert result.ok, result.describe()
    noanswer = await session.wait_for(lambda e: e.get("Event") == "AgentRingNoAnswer")
    uid = noanswer["Uniqueid"]
    assert noanswer["Interface"] == "PJSIP/agent1"
    assert int(noanswer["RingTime"]) >= 3
    connect = await session.wait_for(
        lambda e: e.get("Event") == "AgentConnect" and e["Uniqueid"] == uid
    )
    assert connect["Interface"] == "PJSIP/agent2"
    print(f"\nAgentRingNoAnswer: {', '.join(noanswer)}")


async def test_caller_hangup_while_waiting_gives_abandon(
    fresh_testbed: Testbed, agents: AgentFactory, ami_sessions: Callable[..., Any]
) -> None:
    tb = fresh_testbed
    session: Session = await ami_sessions()
    agents(1, "noanswer")
    call = asyncio.create_task(
        asyncio.to_thread(
            place_calls,
            "4944077399",
            count=1,
            hold_ms=500,
            source_ip=tb.config.pure_trunk_ip,
            timeout_s=20,
        )
    )
    called = await session.wait_for(lambda e: e.get("Event") == "AgentCalled")
    # while it waits, the caller is a QueueEntry of the snapshot
    snapshot = await session.client.queue_status("servicecenter")
    (entry,) = snapshot.entries_of("servicecenter")
    assert entry.uniqueid == called["Uniqueid"]
    assert entry.channel == called["Channel"]
    assert entry.caller_id_name == DISPLAY  # place_calls' default calling name
    assert entry.position == 1
    print(f"\nQueueEntry: {', '.join(entry.raw)}")
    # The caller gives up: hang up its channel through our own client.
    await session.client.action({"Action": "Hangup", "Channel": called["Channel"], "Cause": "16"})
    abandon = await session.wait_for(
        lambda e: e.get("Event") == "QueueCallerAbandon" and e["Uniqueid"] == called["Uniqueid"]
    )
    assert abandon["Queue"] == "servicecenter"
    assert int(abandon["Position"]) == 1
    assert int(abandon["OriginalPosition"]) == 1
    assert int(abandon["HoldTime"]) >= 0
    await call  # sipp saw a failed call, as intended; we only need it finished
    print(f"\nQueueCallerAbandon: {', '.join(abandon)}")
