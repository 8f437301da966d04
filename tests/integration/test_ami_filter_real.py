"""The AMI event filter against the real Asterisk 22 of the test bed.

The daemon's AMI session (``events=FOLLOWED_EVENTS``) must receive from Asterisk
only the events the call tracker reads, during real queue calls and again after
a reconnect (filters are per session), while a session without filter sees the
dialplan's ``Newexten``/``VarSet`` flood of the same calls. What arrives is
counted on the wire, before the client's own filter, by wrapping the client's
event callback. That screen pops keep working with this filter is shown by
``test_screenpops_real.py``, whose daemon uses the same configuration.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pbxbridge.adapters.ami import AmiClient, AmiConfig, AmiEvent
from pbxbridge.adapters.ami.filter import ALWAYS_EVENTS
from pbxbridge.tracking.call_tracker import FOLLOWED_EVENTS
from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import place_calls
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.asterisk

CALLER = "04407123456"
# Sent by Asterisk at login whatever the filter (not an event of the stream).
_LOGIN_ONLY = {"FullyBooted"}


class WireCount:
    """An AmiClient plus a count of every event name Asterisk sent it."""

    def __init__(self, tb: Testbed, events: tuple[str, ...]) -> None:
        self.client = AmiClient(
            AmiConfig(
                host=tb.ami_host,
                port=tb.ami_port,
                username=tb.ami_user,
                password=tb.ami_password,
                events=events,
                backoff_initial=0.1,
                backoff_max=1.0,
            )
        )
        self.wire: Counter[str] = Counter()
        self.delivered: list[AmiEvent] = []
        self.connects = 0
        inner = self.client._on_event  # the wire hook: every event, either way in

        def counting(event: AmiEvent) -> None:
            self.wire[event.get("Event", "")] += 1
            inner(event)

        # Bound before the first connection hands it to the protocol.
        self.client._on_event = counting  # type: ignore[method-assign]
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async def collect(event: AmiEvent) -> None:
            self.delivered.append(event)

        async def connected() -> None:
            self.connects += 1

        self.task = asyncio.create_task(self.client.run(collect, on_connected=connected))
        async with asyncio.timeout(10):
            await self.client.wait_connected()

    async def wait_for(self, predicate: Callable[[AmiEvent], bool], within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while not any(predicate(e) for e in self.delivered):
            assert time.monotonic() < deadline, f"not delivered; wire: {dict(self.wire)}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.client.close(grace=0.2)
        if self.task is not None:
            await asyncio.wait_for(self.task, 2)


@pytest.fixture
async def sessions(testbed: Testbed) -> AsyncIterator[Callable[[tuple[str, ...]], Any]]:
    made: list[WireCount] = []

    async def start(events: tuple[str, ...]) -> WireCount:
        session = WireCount(testbed, events)
        made.append(session)
        await session.start()
        return session

    yield start
    for session in made:
        await session.close()


async def _one_call(tb: Testbed, everything: WireCount, followed: WireCount) -> None:
    """A pure-queue call, answered by agent1; wait until both sessions saw its end."""
    result = await asyncio.to_thread(
        place_calls,
        "4944077399",
        count=1,
        hold_ms=500,
        caller=CALLER,
        display="Jörg Müller",
        source_ip=tb.config.pure_trunk_ip,
    )
    assert result.ok, result.describe()
    joins = [
        e["Uniqueid"]
        for e in everything.delivered
        if e.get("Event") == "QueueCallerJoin" and e.get("CallerIDNum") == CALLER
    ]
    assert joins
    uid = joins[-1]
    for session in (everything, followed):
        await session.wait_for(lambda e: e.get("Event") == "Hangup" and e.get("Uniqueid") == uid)
    names = [e["Event"] for e in followed.delivered if e.get("Uniqueid") == uid]
    for needed in ("QueueCallerJoin", "AgentCalled", "AgentConnect", "AgentComplete", "Hangup"):
        assert needed in names, names


async def test_only_followed_events_reach_the_daemon_also_after_reconnect(
    fresh_testbed: Testbed, agents: AgentFactory, sessions: Callable[..., Any]
) -> None:
    tb = fresh_testbed
    everything: WireCount = await sessions(())
    followed: WireCount = await sessions(FOLLOWED_EVENTS)
    allowed = {*FOLLOWED_EVENTS, *ALWAYS_EVENTS, *_LOGIN_ONLY}
    agents(1, "answer", ring_delay_ms=100)

    await _one_call(tb, everything, followed)
    # The unfiltered session proves the dialplan events were there to filter.
    assert everything.wire["Newexten"] > 0 and everything.wire["VarSet"] > 0, everything.wire
    assert set(followed.wire) <= allowed, followed.wire
    # Answers to our own actions are no events: a filtered session still gets them.
    snapshot = await followed.client.queue_status("servicecenter")
    assert snapshot.members_of("servicecenter")

    # A new session starts unfiltered on Asterisk's side: the client installs
    # the filter again before it reports connected.
    followed.client.reconnect("test: filters are per session")
    deadline = time.monotonic() + 10
    while not (followed.connects == 2 and followed.client.connected):
        assert time.monotonic() < deadline, "no reconnect"
        await asyncio.sleep(0.02)
    followed.wire.clear()
    everything.wire.clear()
    await _one_call(tb, everything, followed)
    assert everything.wire["Newexten"] > 0
    assert set(followed.wire) <= allowed, followed.wire
    assert sum(followed.wire.values()) * 5 < sum(everything.wire.values())
    print(
        f"\nper call, unfiltered: {sum(everything.wire.values())} events "
        f"{dict(everything.wire.most_common(6))}; filtered: {dict(followed.wire)}"
    )
