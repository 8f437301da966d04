"""The AMI event filter: what the client asks Asterisk for at login and after it.

Pure parts (:func:`login_events`, :func:`filter_actions`, :func:`install`) with
a recorded ``send``; the client's use of them against a small fake AMI server
that records every action: narrowest ``Events`` classes at login, one advanced
``Filter`` per followed event, and both again after every reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import pytest

from pbxbridge.adapters.ami import AmiActionFailed, AmiClient, AmiConfig, AmiEvent
from pbxbridge.adapters.ami.filter import (
    ALWAYS_EVENTS,
    PASS_ALL,
    filter_actions,
    install,
    login_events,
)
from pbxbridge.tracking.call_tracker import FOLLOWED_EVENTS

EOL = "\r\n"


def _names(actions: list[dict[str, str]]) -> list[str]:
    out = []
    for action in actions:
        criteria = action.get("MatchCriteria", "")
        assert criteria.startswith("action(include),name(") and criteria.endswith(")")
        out.append(criteria.removeprefix("action(include),name(").removesuffix(")"))
    return out


class TestLoginEvents:
    def test_followed_events_need_only_agent_call_system(self) -> None:
        # dialplan (Newexten, VarSet), cdr, dtmf, ... are not asked for at all
        assert login_events(FOLLOWED_EVENTS) == "agent,call,system"

    def test_all_events_or_unknown_name_or_glob_means_on(self) -> None:
        assert login_events(()) == "on"
        assert login_events(("Hangup", "Newexten")) == "on"
        assert login_events(("Queue*",)) == "on"


class TestFilterActions:
    def test_one_advanced_filter_per_followed_event_plus_the_needed_ones(self) -> None:
        actions = filter_actions(FOLLOWED_EVENTS)
        assert all(a["Action"] == "Filter" and a["Operation"] == "Add" for a in actions)
        assert all("Filter" not in a for a in actions)  # no regex over the payload
        assert _names(actions) == [*FOLLOWED_EVENTS, *ALWAYS_EVENTS]

    def test_no_names_no_filter(self) -> None:
        assert filter_actions(()) == []

    def test_globs_make_one_legacy_regex(self) -> None:
        assert filter_actions(("Queue*", "Agent?", "Hangup")) == [
            {
                "Action": "Filter",
                "Operation": "Add",
                "Filter": "Event: (Queue.*|Agent.|Hangup|Shutdown|OriginateResponse)",
            }
        ]

    def test_duplicates_sent_once(self) -> None:
        assert _names(filter_actions(("Hangup", "Shutdown", "Hangup"))) == [
            "Hangup",
            "Shutdown",
            "OriginateResponse",
        ]


class TestInstall:
    async def test_all_accepted(self) -> None:
        sent: list[Mapping[str, str]] = []

        async def send(action: Mapping[str, str]) -> object:
            sent.append(action)
            return {}

        assert await install(send, ("Hangup",)) == 3
        assert _names([dict(a) for a in sent]) == ["Hangup", *ALWAYS_EVENTS]

    async def test_first_refused_leaves_the_session_unfiltered(self) -> None:
        sent: list[Mapping[str, str]] = []

        async def send(action: Mapping[str, str]) -> object:
            sent.append(action)
            raise AmiActionFailed("Filter", "Permission denied", {})

        assert await install(send, FOLLOWED_EVENTS) == 0
        assert len(sent) == 1

    async def test_refused_midway_widens_to_everything(self) -> None:
        # Two filters in, the third refused: without the catch-all Asterisk
        # would send only those two events and the tracker would miss the rest.
        sent: list[Mapping[str, str]] = []

        async def send(action: Mapping[str, str]) -> object:
            sent.append(action)
            if len(sent) == 3:
                raise AmiActionFailed("Filter", "Internal error", {})
            return {}

        assert await install(send, FOLLOWED_EVENTS) == 0
        assert sent[-1] == PASS_ALL and len(sent) == 4

    async def test_refused_catch_all_is_raised(self) -> None:
        async def send(action: Mapping[str, str]) -> object:
            if action == PASS_ALL or action.get("MatchCriteria", "").endswith("(AgentCalled)"):
                raise AmiActionFailed("Filter", "Internal error", {})
            return {}

        with pytest.raises(AmiActionFailed):
            await install(send, FOLLOWED_EVENTS)


# ------------------------------------------------------------------ client + fake AMI


@dataclass
class RecordingAmi:
    """Answers Login, Ping and Filter; records every action per connection."""

    port: int = 0
    sessions: list[list[dict[str, str]]] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def drop_connections(self) -> None:
        for writer in self.writers:
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        actions: list[dict[str, str]] = []
        self.sessions.append(actions)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                block = (await reader.readuntil(b"\r\n\r\n")).decode()
                action = dict(line.split(": ", 1) for line in block.split(EOL) if ": " in line)
                actions.append(action)
                answer = {"Response": "Success", "ActionID": action.get("ActionID", "")}
                writer.write(("".join(f"{k}: {v}{EOL}" for k, v in answer.items()) + EOL).encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def fake_ami() -> AsyncIterator[RecordingAmi]:
    server = RecordingAmi()
    await server.start()
    yield server
    await server.stop()


async def _wait_until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _filters(actions: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        {k: v for k, v in a.items() if k != "ActionID"} for a in actions if a["Action"] == "Filter"
    ]


async def test_client_asks_narrowly_and_again_after_every_reconnect(
    fake_ami: RecordingAmi,
) -> None:
    config = AmiConfig(
        host="127.0.0.1",
        port=fake_ami.port,
        username="pbxbridge",
        password="pw",
        events=FOLLOWED_EVENTS,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    client = AmiClient(config)
    connects: list[float] = []

    async def ignore(_: AmiEvent) -> None:
        return None

    async def connected() -> None:
        connects.append(time.monotonic())

    task = asyncio.create_task(client.run(ignore, on_connected=connected))
    try:
        await _wait_until(lambda: len(connects) == 1)
        fake_ami.drop_connections()  # Asterisk restarted: its filters are gone
        await _wait_until(lambda: len(connects) == 2)
        client.reconnect("test")  # and a reconnect the client decides on itself
        await _wait_until(lambda: len(connects) == 3)
    finally:
        await client.close()
        await task
    assert len(fake_ami.sessions) == 3
    for actions in fake_ami.sessions:
        assert actions[0]["Action"] == "Login"
        assert actions[0]["Events"] == "agent,call,system"
        assert _filters(actions) == filter_actions(FOLLOWED_EVENTS)
        # installed before the session counts as connected (before on_connected)
        last_filter = max(i for i, a in enumerate(actions) if a["Action"] == "Filter")
        assert all(a["Action"] in ("Login", "Filter") for a in actions[: last_filter + 1])


async def test_no_server_side_filter_asks_for_everything(fake_ami: RecordingAmi) -> None:
    client = AmiClient(
        AmiConfig(
            host="127.0.0.1",
            port=fake_ami.port,
            username="pbxbridge",
            password="pw",
            events=FOLLOWED_EVENTS,
            server_side_filter=False,
        )
    )

    async def ignore(_: AmiEvent) -> None:
        return None

    task = asyncio.create_task(client.run(ignore))
    try:
        async with asyncio.timeout(3):
            await client.wait_connected()
    finally:
        await client.close()
        await task
    (actions,) = fake_ami.sessions
    assert actions[0]["Events"] == "on"
    assert _filters(actions) == []
