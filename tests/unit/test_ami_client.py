"""Unit tests of the AMI client (pbxbridge.adapters.ami) against a fake AMI server on 127.0.0.1.

The fake speaks the AMI text protocol as Asterisk 22 does (banner
``Asterisk Call Manager/9.0.0``, ``Login``, ``Ping``, ``QueueStatus`` as an event
list, ``Originate`` with ``OriginateResponse``, ``Filter``, ``Logoff``) and can
misbehave on request: stop answering pings, refuse logins, restart, split a
UTF-8 character across two TCP segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from panoramisk.message import Message

from pbxbridge.adapters.ami import (
    AmiActionFailed,
    AmiClient,
    AmiConfig,
    AmiEvent,
    AmiState,
    AmiUnavailable,
    Utf8AmiProtocol,
    backoff_delay,
    chan_variables,
    normalize_event,
    ordering_key,
    parse_message,
    parse_queue_status,
    split_message,
)

PASSWORD = "s3cret-pw"
EOL = "\r\n"


# --------------------------------------------------------------------------- fake server


def _encode(fields: dict[str, str] | list[tuple[str, str]]) -> bytes:
    items = fields.items() if isinstance(fields, dict) else fields
    return ("".join(f"{k}: {v}{EOL}" for k, v in items) + EOL).encode()


def _parse(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.decode().split(EOL):
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    logged_in: bool = False


@dataclass
class FakeAmi:
    """A scriptable AMI server."""

    password: str = PASSWORD
    answer_pings: bool = True
    close_on_auth_failure: bool = True
    port: int = 0
    actions: list[dict[str, str]] = field(default_factory=list)
    login_times: list[float] = field(default_factory=list)
    successful_logins: int = 0
    conns: list[_Conn] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every connection (like an Asterisk restart)."""
        if self._server is not None:
            self._server.close()
        for conn in self.conns:
            conn.writer.transport.abort()
        self.conns.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def actions_named(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.actions if a.get("Action", "").lower() == name.lower()]

    async def send(self, data: bytes) -> None:
        for conn in self.conns:
            if conn.logged_in:
                conn.writer.write(data)
                await conn.writer.drain()

    async def event(self, **fields: str) -> None:
        await self.send(_encode(fields))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Each write() becomes its own segment: needed for the split-UTF-8 test.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(writer)
        self.conns.append(conn)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                action = _parse(block)
                self.actions.append(action)
                if not await self._answer(conn, action):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.transport.abort()
            if conn in self.conns:
                self.conns.remove(conn)

    async def _answer(self, conn: _Conn, action: dict[str, str]) -> bool:
        name = action.get("Action", "").lower()
        aid = action.get("ActionID", "")
        w = conn.writer
        if name == "login":
            self.login_times.append(time.monotonic())
            if action.get("Secret") != self.password:
                w.write(
                    _encode(
                        {"Response": "Error", "ActionID": aid, "Message": "Authentication failed"}
                    )
                )
                await w.drain()
                return not self.close_on_auth_failure
            conn.logged_in = True
            self.successful_logins += 1
            w.write(
                _encode(
                    {"Response": "Success", "ActionID": aid, "Message": "Authentication accepted"}
                )
            )
            w.write(
                _encode(
                    {
                        "Event": "FullyBooted",
                        "Privilege": "system,all",
                        "Uptime": "10",
                        "LastReload": "10",
                        "Status": "Fully Booted",
                    }
                )
            )
        elif not conn.logged_in:
            w.write(_encode({"Response": "Error", "ActionID": aid, "Message": "Permission denied"}))
        elif name == "ping":
            if self.answer_pings:
                w.write(
                    _encode(
                        {
                            "Response": "Success",
                            "ActionID": aid,
                            "Ping": "Pong",
                            "Timestamp": "1764097200.000000",
                        }
                    )
                )
        elif name == "queuestatus":
            w.write(
                _encode(
                    {
                        "Response": "Success",
                        "ActionID": aid,
                        "EventList": "start",
                        "Message": "Queue status will follow",
                    }
                )
            )
            for ev in _queue_status_events(aid):
                w.write(_encode(ev))
            w.write(
                _encode(
                    {
                        "Event": "QueueStatusComplete",
                        "ActionID": aid,
                        "EventList": "Complete",
                        "ListItems": "4",
                    }
                )
            )
        elif name == "originate":
            w.write(
                _encode(
                    {
                        "Response": "Success",
                        "ActionID": aid,
                        "Message": "Originate successfully queued",
                    }
                )
            )
            await w.drain()
            await asyncio.sleep(0.05)
            ok = action.get("Channel") != "PJSIP/nobody"
            w.write(
                _encode(
                    {
                        "Event": "OriginateResponse",
                        "Privilege": "call,all",
                        "ActionID": aid,
                        "Response": "Success" if ok else "Failure",
                        "Channel": action.get("Channel", ""),
                        "Context": "agents",
                        "Exten": "100",
                        "Reason": "4" if ok else "3",
                        "Uniqueid": "1764097200.42" if ok else "<null>",
                        "CallerIDNum": "<unknown>",
                        "CallerIDName": "<unknown>",
                    }
                )
            )
        elif name == "filter":
            w.write(
                _encode(
                    {"Response": "Success", "ActionID": aid, "Message": "Filter Added Successfully"}
                )
            )
        elif name == "logoff":
            w.write(
                _encode(
                    {"Response": "Goodbye", "ActionID": aid, "Message": "Thanks for all the fish."}
                )
            )
            await w.drain()
            return False
        else:
            w.write(
                _encode(
                    {"Response": "Error", "ActionID": aid, "Message": "Invalid/unknown command"}
                )
            )
        await w.drain()
        return True


def _queue_status_events(aid: str) -> list[dict[str, str]]:
    return [
        {
            "Event": "QueueParams",
            "Queue": "servicecenter",
            "Max": "0",
            "Strategy": "linear",
            "Calls": "1",
            "Holdtime": "3",
            "TalkTime": "42",
            "Completed": "7",
            "Abandoned": "1",
            "ServiceLevel": "60",
            "ServicelevelPerf": "85.7",
            "ServicelevelPerf2": "85.7",
            "Weight": "0",
            "ActionID": aid,
        },
        {
            "Event": "QueueMember",
            "Queue": "servicecenter",
            "Name": "PJSIP/agent1",
            "Location": "PJSIP/agent1",
            "StateInterface": "PJSIP/agent1",
            "Membership": "static",
            "Penalty": "0",
            "CallsTaken": "5",
            "LastCall": "1764097100",
            "LastPause": "0",
            "LoginTime": "1764090000",
            "InCall": "1",
            "Status": "2",
            "Paused": "0",
            "PausedReason": "",
            "Wrapuptime": "0",
            "ActionID": aid,
        },
        {
            "Event": "QueueMember",
            "Queue": "servicecenter",
            "Name": "Agent Zwei",
            "Location": "PJSIP/agent2",
            "StateInterface": "PJSIP/agent2",
            "Membership": "static",
            "Penalty": "1",
            "CallsTaken": "2",
            "LastCall": "0",
            "LastPause": "0",
            "LoginTime": "1764090000",
            "InCall": "0",
            "Status": "1",
            "Paused": "1",
            "PausedReason": "Mittag",
            "Wrapuptime": "0",
            "ActionID": aid,
        },
        {
            "Event": "QueueEntry",
            "Queue": "servicecenter",
            "Position": "1",
            "Channel": "PJSIP/trunk-00000001",
            "Uniqueid": "1764097200.1",
            "CallerIDNum": "04407123456",
            "CallerIDName": "Jörg Müller",
            "ConnectedLineNum": "<unknown>",
            "ConnectedLineName": "<unknown>",
            "Wait": "12",
            "Priority": "5",
            "ActionID": aid,
        },
    ]


# ------------------------------------------------------------------------------ helpers


async def wait_until(predicate: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@dataclass
class Harness:
    server: FakeAmi
    client: AmiClient
    events: list[AmiEvent]
    connects: list[float]
    task: asyncio.Task[None] | None = None

    def named(self, name: str) -> list[AmiEvent]:
        return [e for e in self.events if e.get("Event") == name]


def _config(port: int, **overrides: Any) -> AmiConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "pbxbridge",
        "password": PASSWORD,
        "ping_interval": 0.5,
        "ping_timeout": 0.5,
        "connect_timeout": 1.0,
        "action_timeout": 1.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
    }
    values.update(overrides)
    return AmiConfig(**values)


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def harness() -> AsyncIterator[HarnessFactory]:
    made: list[Harness] = []

    async def make(
        *,
        start_client: bool = True,
        handler: Callable[[AmiEvent], Awaitable[None]] | None = None,
        server: FakeAmi | None = None,
        **overrides: Any,
    ) -> Harness:
        srv = server or FakeAmi()
        await srv.start()
        h = Harness(srv, AmiClient(_config(srv.port, **overrides)), [], [])
        made.append(h)

        async def collect(event: AmiEvent) -> None:
            h.events.append(event)

        async def on_connected() -> None:
            h.connects.append(time.monotonic())

        if start_client:
            h.task = asyncio.create_task(h.client.run(handler or collect, on_connected))
            async with asyncio.timeout(2):
                await h.client.wait_connected()
        return h

    yield make
    for h in made:
        await h.client.close(grace=0.1)
        if h.task is not None:
            await asyncio.wait_for(h.task, 1)
        await h.server.stop()


def _protocol() -> tuple[Utf8AmiProtocol, list[Message]]:
    """A protocol instance wired to a stub factory, for byte-level tests."""
    got: list[Message] = []

    class Transport:
        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            pass

        def abort(self) -> None:
            pass

    class Factory:
        forgetable_actions = ("ping", "login")
        awaiting_actions: ClassVar[list[Any]] = []

        def dispatch(self, message: Message) -> None:
            got.append(message)

        def connection_lost(self, exc: object) -> None:
            pass

    proto = Utf8AmiProtocol()
    proto.connection_made(Transport())
    proto.factory = Factory()
    return proto, got


# -------------------------------------------------------------------------------- tests


class TestLogin:
    async def test_logs_in_and_reports_status(self, harness: HarnessFactory) -> None:
        h = await harness()
        login = h.server.actions_named("Login")[0]
        assert login["Username"] == "pbxbridge"
        assert login["Secret"] == PASSWORD
        assert login["Events"] == "on"
        status = h.client.status
        assert status.state is AmiState.CONNECTED and status.connected
        assert status.details["ami_version"] == "9.0.0"
        assert status.failures == 0
        assert len(h.connects) == 1
        assert h.client.status.as_dict()["state"] == "connected"

    async def test_password_not_in_repr(self) -> None:
        cfg = _config(5038)
        assert PASSWORD not in repr(cfg)
        assert PASSWORD not in repr(AmiClient(cfg))

    @pytest.mark.parametrize(
        "overrides",
        [
            {"ping_timeout": 0},
            {"backoff_initial": 2, "backoff_max": 1},
            {"password": "a\r\nAction: Originate"},
            {"events": ("Queue(Caller)",)},
            {"username": ""},
        ],
    )
    def test_config_validation(self, overrides: dict[str, Any]) -> None:
        with pytest.raises(ValueError) as info:
            _config(5038, **overrides)
        assert PASSWORD not in str(info.value)


class TestEventDelivery:
    async def test_events_are_plain_dicts_with_event_key(self, harness: HarnessFactory) -> None:
        h = await harness()
        await h.server.event(
            Event="QueueCallerJoin",
            Channel="PJSIP/trunk-00000001",
            Uniqueid="1.1",
            Linkedid="1.1",
            Queue="servicecenter",
            Position="1",
            Count="1",
            CallerIDNum="04407123456",
        )
        await wait_until(lambda: bool(h.named("QueueCallerJoin")))
        ev = h.named("QueueCallerJoin")[0]
        assert type(ev) is dict
        assert all(type(k) is str and type(v) is str for k, v in ev.items())
        assert ev["Queue"] == "servicecenter" and ev["Position"] == "1"
        assert "content" not in ev
        # FullyBooted, sent right after the login, was delivered too
        assert h.named("FullyBooted")

    async def test_order_kept_per_linkedid_with_slow_handler(self, harness: HarnessFactory) -> None:
        seen: list[tuple[str, str]] = []

        async def slow(ev: AmiEvent) -> None:
            if ev.get("Linkedid") not in ("A", "B"):
                return  # FullyBooted after the login
            if ev.get("Linkedid") == "A" and ev.get("Event") == "QueueCallerJoin":
                await asyncio.sleep(0.2)  # first event of call A is slow
            seen.append((ev.get("Linkedid", ""), ev.get("Event", "")))

        h = await harness(handler=slow)
        for name in ("QueueCallerJoin", "AgentCalled", "AgentConnect"):
            await h.server.event(Event=name, Uniqueid="A", Linkedid="A")
            await h.server.event(Event=name, Uniqueid="B", Linkedid="B")
        await wait_until(lambda: len(seen) == 6)
        assert [e for lid, e in seen if lid == "A"] == [
            "QueueCallerJoin",
            "AgentCalled",
            "AgentConnect",
        ]
        assert [e for lid, e in seen if lid == "B"] == [
            "QueueCallerJoin",
            "AgentCalled",
            "AgentConnect",
        ]
        # B was not held up behind A's slow handler
        assert seen[:3] == [("B", "QueueCallerJoin"), ("B", "AgentCalled"), ("B", "AgentConnect")]

    async def test_blocked_handler_does_not_block_reader(self, harness: HarnessFactory) -> None:
        release = asyncio.Event()

        async def stuck(ev: AmiEvent) -> None:
            if ev.get("Event") == "Hangup":
                await release.wait()

        h = await harness(handler=stuck)
        await h.server.event(Event="Hangup", Uniqueid="X", Linkedid="X")
        # actions (answered through the same reader) still work
        assert await h.client.ping() >= 0
        snapshot = await h.client.queue_status()
        assert snapshot.members
        release.set()

    async def test_handler_errors_are_not_fatal(self, harness: HarnessFactory) -> None:
        delivered: list[str] = []

        async def flaky(ev: AmiEvent) -> None:
            delivered.append(ev["Event"])
            if ev["Event"] == "Boom":
                raise RuntimeError("handler bug")

        h = await harness(handler=flaky)
        await h.server.event(Event="Boom", Uniqueid="1", Linkedid="1")
        await h.server.event(Event="After", Uniqueid="1", Linkedid="1")
        await wait_until(lambda: "After" in delivered)
        assert h.client.connected

    async def test_event_filter_client_and_server_side(self, harness: HarnessFactory) -> None:
        h = await harness(events=("Queue*", "Agent*"))
        flt = h.server.actions_named("Filter")
        assert flt and flt[0]["Operation"] == "Add"
        assert flt[0]["Filter"] == "Event: (Queue.*|Agent.*|Shutdown|OriginateResponse)"
        for name in ("Newchannel", "QueueCallerJoin", "VarSet", "AgentConnect"):
            await h.server.event(Event=name, Uniqueid="1", Linkedid="1")
        await wait_until(lambda: len(h.events) == 2)
        await asyncio.sleep(0.05)
        assert [e["Event"] for e in h.events] == ["QueueCallerJoin", "AgentConnect"]

    async def test_events_during_resync_are_held_until_it_returns(
        self, harness: HarnessFactory
    ) -> None:
        server = FakeAmi()
        await server.start()
        order: list[str] = []
        client = AmiClient(_config(server.port))

        async def handler(ev: AmiEvent) -> None:
            order.append(ev["Event"])

        async def on_connected() -> None:
            await server.event(Event="DuringResync", Uniqueid="9", Linkedid="9")
            snapshot = await client.queue_status("servicecenter")
            order.append(f"snapshot:{len(snapshot.members)}")

        task = asyncio.create_task(client.run(handler, on_connected))
        try:
            await wait_until(lambda: "DuringResync" in order)
            assert order.index("snapshot:2") < order.index("DuringResync")
        finally:
            await client.close()
            await task
            await server.stop()


class TestUtf8Split:
    async def test_character_split_across_tcp_segments(self, harness: HarnessFactory) -> None:
        h = await harness()
        head = (
            b"Event: QueueCallerJoin\r\nUniqueid: 1.5\r\nLinkedid: 1.5\r\n"
            b"CallerIDName: J\xc3\xb6rg M\xc3"
        )
        await h.server.send(head)
        await asyncio.sleep(0.05)  # the rest arrives in a separate segment
        await h.server.send(b"\xbcller\r\nQueue: servicecenter\r\n\r\n")
        await wait_until(lambda: bool(h.named("QueueCallerJoin")))
        assert h.named("QueueCallerJoin")[0]["CallerIDName"] == "Jörg Müller"

    def test_protocol_split_in_the_middle_of_o_umlaut(self) -> None:
        proto, got = _protocol()
        proto.data_received(b"Asterisk Call Manager/9.0.0\r\n")
        proto.data_received(b"Event: Newchannel\r\nCallerIDName: J\xc3")
        proto.data_received(b"\xb6rg M\xc3\xbcller\r\nUniqueid: 1.1\r\n\r\n")
        assert proto.version == "9.0.0"
        assert len(got) == 1
        assert got[0]["CallerIDName"] == "Jörg Müller"

    def test_panoramisk_original_loses_the_character(self) -> None:
        # Documents the defect we work around; if panoramisk ever fixes it this
        # test fails and the workaround can be reconsidered.
        from panoramisk.ami_protocol import AMIProtocol

        got: list[Message] = []

        class Factory:
            def dispatch(self, message: Message) -> None:
                got.append(message)

        proto = AMIProtocol()
        proto.connection_made(object())
        proto.factory = Factory()
        proto.encoding = "utf8"
        proto.data_received(b"Event: Newchannel\r\nCallerIDName: J\xc3")
        proto.data_received(b"\xb6rg M\xc3\xbcller\r\n\r\n")
        assert got[0]["CallerIDName"] == "Jrg Müller"

    @settings(max_examples=200, deadline=None)
    @given(
        name=st.text(
            alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
            max_size=30,
        ),
        data=st.data(),
    )
    def test_any_split_of_any_name(self, name: str, data: st.DataObject) -> None:
        raw = (
            b"Asterisk Call Manager/9.0.0\r\nEvent: X\r\nCallerIDName: "
            + name.encode()
            + (b"\r\nUniqueid: 1\r\n\r\n")
        )
        cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
        proto, got = _protocol()
        start = 0
        for cut in [*cuts, len(raw)]:
            proto.data_received(raw[start:cut])
            start = cut
        assert len(got) == 1
        # only the separator space is stripped: leading/trailing spaces survive
        assert got[0]["CallerIDName"] == name

    def test_invalid_bytes_are_replaced_not_dropped(self) -> None:
        proto, got = _protocol()
        proto.data_received(b"Event: X\r\nCallerIDName: A\xffB\r\n\r\n")
        assert got[0]["CallerIDName"] == "A\ufffdB"

    def test_oversized_message_closes_connection(self) -> None:
        proto, _ = _protocol()
        aborted: list[bool] = []

        def abort() -> None:
            aborted.append(True)

        proto.transport.abort = abort
        proto.data_received(b"Event: X\r\nData: " + b"x" * (4 * 1024 * 1024 + 10))
        assert aborted == [True]


class TestPlainEventPath:
    """Events that answer no action reach ``on_event`` as plain dicts, without panoramisk."""

    TEXTS = (
        "Event: AgentConnect\r\nChanVariable: PBXBRIDGE_TENANT=t1\r\n"
        "ChanVariable: OTHER=x=y\r\nCallerIDName: Jörg Müller\r\nAccountCode: ",
        "Event: QueueCallerJoin\r\nUniqueid: 1.1\r\nData:  two leading\r\n--free text--",
        "Event: Hangup\nUniqueid: 1.2\nCause-txt: Normal Clearing",
    )

    def _wired(self) -> tuple[Utf8AmiProtocol, list[Message], list[AmiEvent]]:
        proto, via_panoramisk = _protocol()
        plain: list[AmiEvent] = []
        proto.on_event = plain.append
        return proto, via_panoramisk, plain

    @pytest.mark.parametrize("text", TEXTS)
    def test_same_dict_as_the_panoramisk_way(self, text: str) -> None:
        proto, via_panoramisk, plain = self._wired()
        proto.data_received(text.encode() + b"\r\n\r\n")
        message = parse_message(text)
        assert message is not None
        assert via_panoramisk == []
        assert plain == [normalize_event(message)]
        assert all(type(v) is str for v in plain[0].values())

    def test_action_answers_and_shutdown_go_the_panoramisk_way(self) -> None:
        proto, via_panoramisk, plain = self._wired()
        proto.data_received(
            b"Response: Success\r\nActionID: a1\r\nMessage: ok\r\n\r\n"
            b"Event: QueueMember\r\nActionID: a2\r\nQueue: q\r\n\r\n"
            b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
            b"Event: Shutdown\r\nShutdown: Cleanly\r\n\r\n"
        )
        assert [e["Event"] for e in plain] == ["Hangup"]
        # The response has no waiting action and no Event: panoramisk drops it.
        assert [m["Event"] for m in via_panoramisk] == ["QueueMember", "Shutdown"]

    def test_many_messages_in_one_chunk_and_split_over_chunks(self) -> None:
        proto, _, plain = self._wired()
        raw = b"".join(f"Event: E{i}\r\nUniqueid: {i}\r\n\r\n".encode() for i in range(50))
        for cut in range(0, len(raw), 7):
            proto.data_received(raw[cut : cut + 7])
        assert [e["Uniqueid"] for e in plain] == [str(i) for i in range(50)]


class TestParsing:
    def test_parse_message_keeps_empty_last_header_and_repeats(self) -> None:
        msg = parse_message(
            "Event: AgentConnect\r\nChanVariable: PBXBRIDGE_TENANT=t1\r\n"
            "ChanVariable: OTHER=x=y\r\nDestChanVariable: PBXBRIDGE_TENANT=\r\n"
            "AccountCode: "
        )
        assert msg is not None
        ev = normalize_event(msg)
        assert ev["AccountCode"] == ""
        assert chan_variables(ev) == {"PBXBRIDGE_TENANT": "t1", "OTHER": "x=y"}
        assert chan_variables(ev, "Dest") == {"PBXBRIDGE_TENANT": ""}
        assert parse_message("Garbage line\r\nFoo: bar") is None

    @pytest.mark.parametrize(
        ("text", "headers", "content"),
        [
            ("Event: X\r\nA: 1\r\nB:\r\nC:  2", {"Event": "X", "A": "1", "B": "", "C": " 2"}, []),
            ("Event: X\nA: a\rb\r\nB: c\r", {"Event": "X", "A": "a\rb", "B": "c"}, []),
            ("Event: X\r\nA: 1\r\nA: 2", {"Event": "X", "A": ["1", "2"]}, []),
            ("Event: X\r\nNo colon here\r\nA b: c", {"Event": "X"}, ["No colon here", "A b: c"]),
            ("Event: X\r\nA: x: y\r\n: z", {"Event": "X", "A": "x: y"}, [": z"]),
            ("\r\nEvent: X\r\n", {"Event": "X"}, []),
        ],
    )
    def test_split_message(self, text: str, headers: dict[str, object], content: list[str]) -> None:
        assert split_message(text) == (headers, content)

    def test_ordering_key(self) -> None:
        assert ordering_key({"Uniqueid": "2", "Linkedid": "1"}) == "1"
        assert ordering_key({"Uniqueid": "2"}) == "2"
        assert ordering_key({"Event": "QueueMemberStatus"}) == ""

    def test_queue_snapshot(self) -> None:
        snap = parse_queue_status([{"Response": "Success"}, *_queue_status_events("x")])
        assert snap.queues["servicecenter"].completed == 7
        assert snap.queues["servicecenter"].service_level_perf == pytest.approx(85.7)
        m1, m2 = snap.members_of("servicecenter")
        assert (m1.interface, m1.in_call, m1.status, m1.calls_taken) == ("PJSIP/agent1", True, 2, 5)
        assert (m2.name, m2.paused, m2.paused_reason, m2.penalty) == (
            "Agent Zwei",
            True,
            "Mittag",
            1,
        )
        (entry,) = snap.entries_of("servicecenter")
        assert (entry.caller_id_name, entry.position, entry.wait, entry.priority) == (
            "Jörg Müller",
            1,
            12,
            5,
        )

    @pytest.mark.parametrize("failures", [1, 2, 3, 10, 1000])
    def test_backoff_bounds(self, failures: int) -> None:
        for r in (0.0, 0.5, 1.0):
            d = backoff_delay(failures, 0.5, 30.0, rand=functools.partial(float, r))
            ceiling = min(30.0, 0.5 * 2 ** (failures - 1)) if failures < 100 else 30.0
            assert ceiling / 2 <= d <= ceiling


class TestActions:
    async def test_single_and_list_actions(self, harness: HarnessFactory) -> None:
        h = await harness()
        pong = await h.client.action({"Action": "Ping"})
        assert isinstance(pong, dict) and pong["Ping"] == "Pong"
        listed = await h.client.action({"Action": "QueueStatus"})
        assert isinstance(listed, list)
        assert listed[0]["Response"] == "Success"
        assert listed[-1]["Event"] == "QueueStatusComplete"
        snapshot = await h.client.queue_status("servicecenter")
        assert h.server.actions_named("QueueStatus")[-1]["Queue"] == "servicecenter"
        assert [m.interface for m in snapshot.members] == ["PJSIP/agent1", "PJSIP/agent2"]
        assert snapshot.entries[0].caller_id_name == "Jörg Müller"
        # list items of the action never reach the event handler
        assert not h.named("QueueMember")

    async def test_error_response_raises(self, harness: HarnessFactory) -> None:
        h = await harness()
        with pytest.raises(AmiActionFailed) as info:
            await h.client.action({"Action": "NoSuchThing"})
        assert info.value.action == "NoSuchThing"
        assert info.value.message == "Invalid/unknown command"
        assert h.client.connected

    async def test_header_injection_is_refused(self, harness: HarnessFactory) -> None:
        h = await harness()
        with pytest.raises(ValueError, match="line break"):
            await h.client.action({"Action": "Setvar", "Value": "x\r\n\r\nAction: Originate"})
        assert not h.server.actions_named("Originate")

    async def test_not_connected_raises_unavailable(self) -> None:
        client = AmiClient(_config(1))
        with pytest.raises(AmiUnavailable):
            await client.action({"Action": "Ping"})

    async def test_action_timeout_raises_unavailable(self, harness: HarnessFactory) -> None:
        h = await harness()
        h.server.answer_pings = False
        started = time.monotonic()
        with pytest.raises(AmiUnavailable, match="no complete answer"):
            await h.client.action({"Action": "Ping"}, timeout=0.1)
        assert time.monotonic() - started < 0.5


class TestOriginate:
    async def test_async_true_always_sent(self, harness: HarnessFactory) -> None:
        h = await harness()
        resp = await h.client.originate(
            Channel="PJSIP/agent1", Context="agents", Exten="100", Priority="1", Async="false"
        )
        assert resp["Response"] == "Success"
        sent = h.server.actions_named("Originate")[0]
        assert sent["Async"] == "true"
        assert "async" not in {k for k in sent if k != "Async"}
        # wait=False: the result arrives as an event
        await wait_until(lambda: bool(h.named("OriginateResponse")))
        assert h.named("OriginateResponse")[0]["Uniqueid"] == "1764097200.42"
        assert h.client.connected

    async def test_wait_returns_originate_response(self, harness: HarnessFactory) -> None:
        h = await harness()
        result = await h.client.originate(
            wait=True,
            Channel="PJSIP/agent1",
            Context="agents",
            Exten="100",
            Priority="1",
            Timeout="1000",
        )
        assert result["Event"] == "OriginateResponse"
        assert result["Reason"] == "4"
        assert not h.named("OriginateResponse")

    async def test_wait_failure_raises(self, harness: HarnessFactory) -> None:
        h = await harness()
        with pytest.raises(AmiActionFailed) as info:
            await h.client.originate(
                wait=True,
                Channel="PJSIP/nobody",
                Context="agents",
                Exten="100",
                Priority="1",
                Timeout="1000",
            )
        assert info.value.response["Reason"] == "3"


class TestLiveness:
    async def test_unanswered_ping_triggers_reconnect(self, harness: HarnessFactory) -> None:
        h = await harness(ping_interval=0.2, ping_timeout=0.2)
        await wait_until(lambda: h.client.status.details["last_ping_rtt_ms"] is not None)
        h.server.answer_pings = False
        stopped = time.monotonic()
        await wait_until(lambda: h.client.status.state is not AmiState.CONNECTED, within=2)
        detected = time.monotonic() - stopped
        assert detected <= 0.2 + 0.2 + 0.15, detected
        assert "liveness" in (h.client.status.last_error or "")
        h.server.answer_pings = True
        await wait_until(lambda: len(h.connects) == 2, within=2)
        assert h.server.successful_logins == 2
        await wait_until(lambda: h.client.connected)


class TestServerRestart:
    async def test_reconnects_and_calls_on_connected_again(self, harness: HarnessFactory) -> None:
        h = await harness()
        pending = asyncio.create_task(h.client.action({"Action": "Ping"}, timeout=5))
        h.server.answer_pings = False
        await asyncio.sleep(0.05)
        await h.server.stop()
        # the in-flight action fails at once instead of waiting for its timeout
        with pytest.raises(AmiUnavailable, match="connection lost"):
            await asyncio.wait_for(pending, 1)
        await wait_until(lambda: h.client.status.state is not AmiState.CONNECTED)
        h.server.answer_pings = True
        await asyncio.sleep(0.3)  # down for a while: a few refused attempts
        assert h.client.status.failures >= 1
        await h.server.start()  # same port
        await wait_until(lambda: len(h.connects) == 2, within=3)
        await h.server.event(Event="AgentConnect", Uniqueid="7", Linkedid="7")
        await wait_until(lambda: bool(h.named("AgentConnect")))

    async def test_shutdown_event_drops_connection(self, harness: HarnessFactory) -> None:
        h = await harness()
        await h.server.event(Event="Shutdown", Shutdown="Cleanly", Restart="True")
        await wait_until(lambda: len(h.connects) == 2, within=3)
        assert h.client.status.last_error == "Asterisk shut down (restart: True)"


class TestReconnectRequest:
    async def test_reconnect_drops_and_logs_in_again(self, harness: HarnessFactory) -> None:
        h = await harness()
        h.server.answer_pings = False
        pending = asyncio.create_task(h.client.action({"Action": "Ping"}, timeout=5))
        await asyncio.sleep(0.02)
        h.client.reconnect("operator asked")
        with pytest.raises(AmiUnavailable):
            await asyncio.wait_for(pending, 1)
        h.server.answer_pings = True
        await wait_until(lambda: len(h.connects) == 2 and h.client.connected)
        assert h.client.status.last_error == "operator asked"
        assert h.server.successful_logins == 2


class TestWrongPassword:
    async def test_backs_off_without_hot_loop(self, harness: HarnessFactory) -> None:
        h = await harness(
            start_client=False, password="wrong-password", backoff_initial=0.1, backoff_max=0.4
        )
        task = asyncio.create_task(h.client.run(_ignore))
        h.task = task
        await asyncio.sleep(1.5)
        attempts = len(h.server.login_times)
        # 0.05..0.1, 0.1..0.2, 0.2..0.4, then 0.2..0.4 each: at most ~8 in 1.5 s
        assert 3 <= attempts <= 9, attempts
        gaps = [b - a for a, b in zip(h.server.login_times, h.server.login_times[1:], strict=False)]
        assert min(gaps) >= 0.04
        status = h.client.status
        assert status.state in (AmiState.DISCONNECTED, AmiState.CONNECTING)
        assert status.failures == attempts or status.failures == attempts - 1
        assert status.last_error == "login refused: Authentication failed"
        assert "wrong-password" not in repr(status)

    async def test_server_that_keeps_connection_open_after_failure(
        self, harness: HarnessFactory
    ) -> None:
        h = await harness(
            start_client=False, password="wrong", server=FakeAmi(close_on_auth_failure=False)
        )
        h.task = asyncio.create_task(h.client.run(_ignore))
        await wait_until(lambda: len(h.server.login_times) >= 2, within=2)
        # we closed the refused connection ourselves
        await wait_until(lambda: len(h.server.conns) <= 1)


class TestClose:
    async def test_close_is_prompt_with_stuck_handler(self, harness: HarnessFactory) -> None:
        async def stuck(ev: AmiEvent) -> None:
            await asyncio.sleep(3600)

        h = await harness(handler=stuck)
        await h.server.event(Event="Hangup", Uniqueid="1", Linkedid="1")
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await h.client.close(grace=0.1)
        assert h.task is not None
        await asyncio.wait_for(h.task, 0.5)  # run() returned normally
        assert time.monotonic() - started < 0.5
        assert h.client.status.state is AmiState.CLOSED
        await wait_until(lambda: bool(h.server.actions_named("Logoff")), within=1)
        with pytest.raises(RuntimeError):
            await h.client.run(_ignore)
        await h.client.close()  # idempotent

    async def test_close_during_backoff(self, harness: HarnessFactory) -> None:
        h = await harness(start_client=False, backoff_initial=5.0, backoff_max=10.0)
        await h.server.stop()
        h.task = asyncio.create_task(h.client.run(_ignore))
        await wait_until(lambda: h.client.status.state is AmiState.DISCONNECTED)
        started = time.monotonic()
        await h.client.close()
        await asyncio.wait_for(h.task, 0.5)
        assert time.monotonic() - started < 0.5

    async def test_cancelling_run_propagates(self, harness: HarnessFactory) -> None:
        h = await harness()
        assert h.task is not None
        h.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await h.task
        assert h.task.cancelled()
        assert h.client.status.state is AmiState.IDLE
        h.task = None


async def _ignore(_: AmiEvent) -> None:
    return None
