"""Unit tests for the in-house ARI client against a fake ARI server (aiohttp.web).

The fake server records every request exactly as it arrived on the wire and
decodes it the way Asterisk does (percent-decoding, "+" as space), so encoding
bugs show up as mismatches rather than being papered over by a lenient router.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from pbxbridge.adapters.ari import (
    AriClient,
    AriConfig,
    AriConflict,
    AriError,
    AriNotFound,
    AriState,
    AriUnavailable,
    AriVariableNotFound,
    backoff_delay,
    ordering_key,
)

PASSWORD = "s3cr3t-Pä$$:word"
USERNAME = "pbxbridge"
APP = "pbxbridge-test"
EXPECTED_AUTH = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
HOSTILE = "1700000000.1 ?#&=+%;,ä€😀'\"<>\\\r\n\t"


# --------------------------------------------------------------------------- fake ARI


@dataclass
class Recorded:
    method: str
    raw_path: str  # percent-encoded path as sent on the wire, without the query
    raw_query: str
    segments: list[str]  # decoded path segments (after splitting on the raw "/")
    query: dict[str, str]  # decoded like Asterisk does ("+" is a space)
    authorization: str | None
    via: str = "http"  # "ws": a RESTRequest frame on the event socket
    body: bytes = b""


# How the fake answers RESTRequest frames: like Asterisk 22 ("answer"), like an
# Asterisk before 22.4 ("ignore"), with a 400 ("reject"), by closing the socket
# ("drop").
WsRestMode = Literal["answer", "ignore", "reject", "drop"]
PROBE_URI = "asterisk/ping"


@dataclass
class FakeAri:
    """A programmable stand-in for Asterisk's ARI HTTP/WebSocket server."""

    port: int
    requests: list[Recorded] = field(default_factory=list)
    responses: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    delay: float = 0.0
    ws_requests: list[Recorded] = field(default_factory=list)
    connections: list[web.WebSocketResponse] = field(default_factory=list)
    on_ws: Callable[[web.WebSocketResponse], Awaitable[None]] | None = None
    ws_autoping: bool = True
    ws_reject_status: int | None = None
    ws_probe: WsRestMode = "answer"  # for the client's GET asterisk/ping
    ws_rest: WsRestMode = "answer"  # for every other RESTRequest
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        # [\s\S]: decoded hostile ids contain newlines, which "." would not match.
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is None:
            return
        for ws in self.connections:
            if not ws.closed:
                await ws.close()
        await self._runner.cleanup()
        self._runner = None

    def respond(self, method: str, raw_path: str, status: int, body: Any = None) -> None:
        self.responses[(method, raw_path)] = (status, body)

    @staticmethod
    def _record(request: web.Request) -> Recorded:
        raw_path, _, raw_query = request.raw_path.partition("?")
        return Recorded(
            method=request.method,
            raw_path=raw_path,
            raw_query=raw_query,
            segments=[urllib.parse.unquote_plus(s) for s in raw_path.split("/")[1:]],
            query=dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True)),
            authorization=request.headers.get("Authorization"),
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = self._record(request)
        if recorded.raw_path == "/ari/events" and request.headers.get("Upgrade"):
            return await self._events(request, recorded)
        recorded.body = await request.read()
        self.requests.append(recorded)
        if self.delay:
            await asyncio.sleep(self.delay)
        status, body = self.responses.get((request.method, recorded.raw_path), (204, None))
        if isinstance(body, bytes):
            return web.Response(status=status, body=body)
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)

    async def _events(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        self.ws_requests.append(recorded)
        if self.ws_reject_status is not None:
            return web.json_response({"message": "rejected"}, status=self.ws_reject_status)
        ws = web.WebSocketResponse(autoping=self.ws_autoping, timeout=0.5)
        await ws.prepare(request)
        self.connections.append(ws)
        if self.on_ws is not None:
            await self.on_ws(ws)
        async for msg in ws:  # keep the socket open until the client closes it
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._rest_frame(ws, json.loads(msg.data), recorded.authorization)
        return ws

    def ws_calls(self) -> list[Recorded]:
        """RESTRequests received on the event socket, without the probe."""
        return [r for r in self.requests if r.via == "ws" and r.raw_path != f"/ari/{PROBE_URI}"]

    def http_calls(self) -> list[Recorded]:
        return [r for r in self.requests if r.via == "http"]

    async def _rest_frame(
        self, ws: web.WebSocketResponse, frame: dict[str, Any], authorization: str | None
    ) -> None:
        """Answer a RESTRequest frame like Asterisk 22 (res/ari/ari_websocket_requests.c)."""
        uri = str(frame.get("uri", ""))
        raw_path, _, raw_query = ("/ari/" + uri).partition("?")
        recorded = Recorded(
            method=str(frame.get("method")),
            raw_path=raw_path,
            raw_query=raw_query,
            segments=[urllib.parse.unquote_plus(s) for s in raw_path.split("/")[1:]],
            query=dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True)),
            authorization=authorization,
            via="ws",
        )
        self.requests.append(recorded)
        mode = self.ws_probe if uri == PROBE_URI else self.ws_rest
        if mode == "ignore":
            return
        if mode == "drop":
            await ws.close()
            return
        if self.delay:
            await asyncio.sleep(self.delay)
        if mode == "reject":
            status, body = 400, {"message": "Unknown request type."}
        elif uri == PROBE_URI:
            status, body = 200, {"ping": "pong"}
        else:
            status, body = self.responses.get((recorded.method, raw_path), (204, None))
        answer: dict[str, Any] = {
            "type": "RESTResponse",
            "transaction_id": "",
            "request_id": frame.get("request_id", ""),
            "status_code": status,
            "reason_phrase": "whatever",
            "uri": uri.partition("?")[0],
            "application": APP,
        }
        if body is not None:
            # Asterisk sends the body as a JSON *string*.
            answer["content_type"] = "application/json"
            answer["message_body"] = json.dumps(body)
        await ws.send_str(json.dumps(answer))


def event(kind: str, channel: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"type": kind, "application": APP, **extra}
    if channel is not None:
        data["channel"] = {"id": channel, "name": f"PJSIP/{channel}"}
    return data


async def send_events(ws: web.WebSocketResponse, *events: dict[str, Any]) -> None:
    for item in events:
        await ws.send_str(json.dumps(item))


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


def make_config(port: int, **overrides: Any) -> AriConfig:
    settings: dict[str, Any] = {
        "base_url": f"http://127.0.0.1:{port}",
        "username": USERNAME,
        "password": PASSWORD,
        "app": APP,
        "request_timeout": 1.0,
        "backoff_initial": 0.02,
        "backoff_max": 0.1,
        "heartbeat": None,
    }
    settings.update(overrides)
    return AriConfig(**settings)


class Recorder:
    """Collects what the client hands to the application callbacks."""

    def __init__(self, resync_delay: float = 0.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.timeline: list[str] = []
        self.connects = 0
        self.resync_delay = resync_delay

    async def handler(self, evt: dict[str, Any]) -> None:
        self.events.append(evt)
        self.timeline.append(f"event:{evt.get('type')}")

    async def on_connected(self) -> None:
        self.connects += 1
        self.timeline.append(f"resync-start:{self.connects}")
        if self.resync_delay:
            await asyncio.sleep(self.resync_delay)
        self.timeline.append(f"resync-done:{self.connects}")

    def types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    server = FakeAri(port=unused_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake: FakeAri) -> AsyncIterator[AriClient]:
    ari = AriClient(make_config(fake.port))
    yield ari
    await ari.close()


@pytest.fixture
def run_client() -> Iterator[Callable[..., asyncio.Task[None]]]:
    """Start ``client.run(...)`` in a task; make sure it is gone after the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(ari: AriClient, recorder: Recorder, **kwargs: Any) -> asyncio.Task[None]:
        kwargs.setdefault("on_connected", recorder.on_connected)
        task = asyncio.create_task(ari.run(recorder.handler, **kwargs))
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()


def attempt_counter() -> tuple[aiohttp.TraceConfig, list[float]]:
    """Trace config recording the time of every event-socket connection attempt."""
    attempts: list[float] = []

    async def on_request_start(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        if params.url.path.endswith("/ari/events"):
            attempts.append(time.monotonic())

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return trace, attempts


# --------------------------------------------------------------------------- config


class TestAriConfig:
    def test_password_is_not_in_repr_of_config_or_client(self) -> None:
        config = make_config(8088)
        assert PASSWORD not in repr(config)
        assert PASSWORD not in str(config)
        assert PASSWORD not in repr(AriClient(config))
        assert "pbxbridge-test" in repr(config)

    @pytest.mark.parametrize(
        "overrides",
        [
            {"base_url": "ftp://127.0.0.1:8088"},
            {"base_url": "127.0.0.1:8088"},
            {"base_url": f"http://{USERNAME}:{PASSWORD}@127.0.0.1:8088"},
            {"base_url": "http://127.0.0.1:8088/?x=1"},
            {"username": ""},
            {"username": "a:b"},
            {"app": ""},
            {"app": "one,two"},
            {"request_timeout": 0},
            {"backoff_initial": -1},
            {"backoff_initial": 2.0, "backoff_max": 1.0},
            {"backoff_max": float("inf")},
            {"heartbeat": 0},
        ],
    )
    def test_invalid_settings_are_rejected_without_echoing_secrets(
        self, overrides: dict[str, Any]
    ) -> None:
        with pytest.raises(ValueError) as info:
            make_config(8088, **overrides)
        assert PASSWORD not in str(info.value)

    def test_defaults_match_the_documented_policy(self) -> None:
        config = AriConfig(base_url="http://127.0.0.1:8088", username="u", password="p", app="a")
        assert (config.backoff_initial, config.backoff_max) == (0.2, 5.0)
        assert config.subscribe_all is False
        assert config.heartbeat is not None


# ----------------------------------------------------------------------------- REST

Call = Callable[[AriClient], Awaitable[Any]]


class TestRestRequests:
    @pytest.mark.parametrize(
        ("call", "method", "raw_path", "query"),
        [
            (
                lambda c: c.continue_in_dialplan("c1", "from-pbxbridge", "100", 2),
                "POST",
                "/ari/channels/c1/continue",
                {"context": "from-pbxbridge", "extension": "100", "priority": "2"},
            ),
            (
                lambda c: c.continue_in_dialplan("c1", "ctx", "s", label="open"),
                "POST",
                "/ari/channels/c1/continue",
                {"context": "ctx", "extension": "s", "label": "open"},
            ),
            (
                lambda c: c.set_variable("c1", "TENANT", "lk-oldenburg"),
                "POST",
                "/ari/channels/c1/variable",
                {"variable": "TENANT", "value": "lk-oldenburg"},
            ),
            (lambda c: c.answer("c1"), "POST", "/ari/channels/c1/answer", {}),
            (lambda c: c.ring("c1"), "POST", "/ari/channels/c1/ring", {}),
            (lambda c: c.hangup("c1"), "DELETE", "/ari/channels/c1", {"reason": "normal"}),
            (
                lambda c: c.hangup("c1", reason="busy"),
                "DELETE",
                "/ari/channels/c1",
                {"reason": "busy"},
            ),
            (lambda c: c.stop_playback("pb-1"), "DELETE", "/ari/playbacks/pb-1", {}),
        ],
    )
    async def test_void_calls_use_documented_method_path_and_params(
        self,
        fake: FakeAri,
        client: AriClient,
        call: Call,
        method: str,
        raw_path: str,
        query: dict[str, str],
    ) -> None:
        assert await call(client) is None
        [request] = fake.requests
        assert (request.method, request.raw_path, request.query) == (method, raw_path, query)
        assert request.authorization == EXPECTED_AUTH

    async def test_play_sends_media_and_playback_id_and_returns_the_playback(
        self, fake: FakeAri, client: AriClient
    ) -> None:
        playback = {"id": "pb-7", "state": "queued", "target_uri": "channel:c1"}
        fake.respond("POST", "/ari/channels/c1/play", 201, playback)
        result = await client.play("c1", "sound:custom/closed", "pb-7", lang="de")
        assert result == playback
        assert fake.requests[0].query == {
            "media": "sound:custom/closed",
            "playbackId": "pb-7",
            "lang": "de",
        }

    async def test_play_without_playback_id_omits_it(
        self, fake: FakeAri, client: AriClient
    ) -> None:
        fake.respond("POST", "/ari/channels/c1/play", 201, {"id": "auto"})
        await client.play("c1", "sound:hello")
        assert fake.requests[0].query == {"media": "sound:hello"}

    async def test_reads_return_decoded_json(self, fake: FakeAri, client: AriClient) -> None:
        channel = {"id": "c1", "state": "Ring", "caller": {"number": "+494407730"}}
        fake.respond("GET", "/ari/channels/c1", 200, channel)
        fake.respond("GET", "/ari/channels", 200, [channel])
        fake.respond("GET", f"/ari/applications/{APP}", 200, {"name": APP, "channel_ids": ["c1"]})
        fake.respond("GET", "/ari/channels/c1/variable", 200, {"value": "Jörg Müller"})

        assert await client.get_channel("c1") == channel
        assert await client.list_channels() == [channel]
        assert (await client.get_application())["channel_ids"] == ["c1"]
        assert await client.get_variable("c1", "CALLERID(name)") == "Jörg Müller"
        assert [(r.method, r.raw_path) for r in fake.requests] == [
            ("GET", "/ari/channels/c1"),
            ("GET", "/ari/channels"),
            ("GET", f"/ari/applications/{APP}"),
            ("GET", "/ari/channels/c1/variable"),
        ]
        assert fake.requests[-1].query == {"variable": "CALLERID(name)"}

    async def test_hostile_values_arrive_intact_and_cannot_change_the_route(
        self, fake: FakeAri, client: AriClient
    ) -> None:
        await client.set_variable(HOSTILE, f"X{HOSTILE}", f"v{HOSTILE}&variable=evil")
        [request] = fake.requests
        assert request.segments == ["ari", "channels", HOSTILE, "variable"]
        assert request.query == {"variable": f"X{HOSTILE}", "value": f"v{HOSTILE}&variable=evil"}
        # Nothing but unreserved characters and escapes on the wire: no literal
        # "+" (Asterisk decodes it to a space), "?", "#", "&" or non-ASCII.
        assert request.raw_path.isascii()
        assert not set(request.raw_path) & set("+?#& ;,'\"")
        assert "+" not in request.raw_query

    async def test_hostile_app_name_is_encoded_in_rest_and_event_urls(self, fake: FakeAri) -> None:
        app = "tenant app&subscribeAll=true?#ä"
        fake.respond("GET", f"/ari/applications/{urllib.parse.quote(app, safe='')}", 200, {})
        async with AriClient(make_config(fake.port, app=app)) as ari:
            await ari.get_application()
            recorder = Recorder()
            task = asyncio.create_task(ari.run(recorder.handler))
            await asyncio.wait_for(ari.wait_connected(), 2)
            await ari.close()
            await task
        assert fake.requests[0].segments == ["ari", "applications", app]
        assert fake.ws_requests[0].query == {"app": app, "subscribeAll": "false"}

    @pytest.mark.parametrize("bad_id", ["", ".", "..", "c1/ring", "../asterisk/info", "c\x001"])
    async def test_unaddressable_ids_are_refused_before_sending(
        self, fake: FakeAri, client: AriClient, bad_id: str
    ) -> None:
        with pytest.raises(ValueError):
            await client.hangup(bad_id)
        assert fake.requests == []

    async def test_nul_in_a_query_value_is_refused(self, fake: FakeAri, client: AriClient) -> None:
        with pytest.raises(ValueError):
            await client.set_variable("c1", "X", "abc\x00def")
        assert fake.requests == []


_ids = st.text(
    alphabet=st.characters(exclude_characters="\x00/", exclude_categories=["Cs"]),
    min_size=1,
).filter(lambda s: s not in {".", ".."})
_values = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))


class TestUrlEncodingProperty:
    @settings(max_examples=200, deadline=None)
    @given(channel_id=_ids, name=_values, value=_values)
    def test_asterisk_style_decoding_recovers_every_value(
        self, channel_id: str, name: str, value: str
    ) -> None:
        ari = AriClient(make_config(8088))
        url = ari._transport.url(
            ("channels", channel_id, "variable"), {"variable": name, "value": value}
        )
        raw = str(url)
        assert raw.isascii()
        path, _, query = raw.partition("?")
        # Asterisk: split off the query, split on "&" and "=", then decode each
        # part ("+" as space); the path is decoded and split on "/".
        segments = [urllib.parse.unquote_plus(s) for s in path.split("/")[3:]]
        assert segments == ["ari", "channels", channel_id, "variable"]
        pairs = [part.split("=", 1) for part in query.split("&")]
        decoded = {urllib.parse.unquote_plus(k): urllib.parse.unquote_plus(v) for k, v in pairs}
        assert decoded == {"variable": name, "value": value}


class TestRestErrors:
    async def test_404_raises_not_found_with_aris_message(
        self, fake: FakeAri, client: AriClient
    ) -> None:
        fake.respond("POST", "/ari/channels/gone/answer", 404, {"message": "Channel not found"})
        with pytest.raises(AriNotFound) as info:
            await client.answer("gone")
        assert info.value.status == 404
        assert info.value.message == "Channel not found"
        assert info.value.path == "/ari/channels/gone/answer"
        assert not isinstance(info.value, AriVariableNotFound)

    async def test_unset_variable_is_distinguishable_from_a_gone_channel(
        self, fake: FakeAri, client: AriClient
    ) -> None:
        fake.respond(
            "GET", "/ari/channels/c1/variable", 404, {"message": "Provided variable was not found"}
        )
        fake.respond(
            "GET", "/ari/channels/c2/variable", 404, {"message": "Provided channel was not found"}
        )
        with pytest.raises(AriVariableNotFound):
            await client.get_variable("c1", "UNSET")
        with pytest.raises(AriNotFound) as info:
            await client.get_variable("c2", "X")
        assert not isinstance(info.value, AriVariableNotFound)

    async def test_409_raises_conflict(self, fake: FakeAri, client: AriClient) -> None:
        fake.respond(
            "POST",
            "/ari/channels/c1/continue",
            409,
            {"message": "Channel not in Stasis application"},
        )
        with pytest.raises(AriConflict) as info:
            await client.continue_in_dialplan("c1", "ctx", "s", 1)
        assert info.value.status == 409
        assert isinstance(info.value, AriError)

    async def test_500_raises_plain_ari_error_with_text_body(
        self, fake: FakeAri, client: AriClient
    ) -> None:
        fake.respond("DELETE", "/ari/channels/c1", 500, b"Internal Server Error: boom")
        with pytest.raises(AriError) as info:
            await client.hangup("c1")
        assert type(info.value) is AriError
        assert info.value.status == 500
        assert "boom" in info.value.message

    async def test_503_from_a_proxy_is_unavailable(self, fake: FakeAri, client: AriClient) -> None:
        fake.respond("GET", "/ari/channels", 503, b"")
        with pytest.raises(AriUnavailable) as info:
            await client.list_channels()
        assert info.value.status == 503

    async def test_server_down_raises_unavailable(self) -> None:
        async with AriClient(make_config(unused_port())) as ari:
            with pytest.raises(AriUnavailable) as info:
                await ari.answer("c1")
        assert info.value.status is None
        assert isinstance(info.value, AriError)

    async def test_slow_server_raises_unavailable_after_the_timeout(self, fake: FakeAri) -> None:
        fake.delay = 1.0
        async with AriClient(make_config(fake.port, request_timeout=0.1)) as ari:
            started = time.monotonic()
            with pytest.raises(AriUnavailable):
                await ari.answer("c1")
            assert time.monotonic() - started < 0.5

    async def test_malformed_success_bodies_raise_ari_error(
        self, fake: FakeAri, client: AriClient
    ) -> None:
        fake.respond("GET", "/ari/channels/c1", 200, b"{not json")
        fake.respond("GET", "/ari/channels", 200, {"not": "a list"})
        fake.respond("GET", "/ari/channels/c1/variable", 200, {"value": 42})
        with pytest.raises(AriError, match="not valid JSON"):
            await client.get_channel("c1")
        with pytest.raises(AriError, match="array"):
            await client.list_channels()
        with pytest.raises(AriError, match="value"):
            await client.get_variable("c1", "X")

    async def test_redirects_are_not_followed(self, fake: FakeAri, client: AriClient) -> None:
        fake.respond("POST", "/ari/channels/c1/answer", 302, None)
        with pytest.raises(AriError) as info:
            await client.answer("c1")
        assert info.value.status == 302


# --------------------------------------------------------------------------- events


class TestEventDelivery:
    async def test_events_arrive_in_order_after_on_connected(
        self,
        fake: FakeAri,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        sent = [event("StasisStart", "c1", seq=i) for i in range(30)]
        sent += [event("ChannelStateChange", f"c{i}", seq=100 + i) for i in range(5)]

        async def script(ws: web.WebSocketResponse) -> None:
            await send_events(ws, *sent)

        fake.on_ws = script
        recorder = Recorder(resync_delay=0.1)
        run_client(client, recorder)
        await eventually(lambda: len(recorder.events) == len(sent))
        # Events sent while on_connected was still running were held back, not lost.
        assert recorder.timeline[:2] == ["resync-start:1", "resync-done:1"]
        same_channel = [e["seq"] for e in recorder.events if e["channel"]["id"] == "c1"]
        assert same_channel[:30] == list(range(30))
        assert sorted(e["seq"] for e in recorder.events) == [e["seq"] for e in sent]

    async def test_event_socket_uses_app_subscribe_all_and_basic_auth(
        self,
        fake: FakeAri,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        async with AriClient(make_config(fake.port, subscribe_all=True)) as ari:
            run_client(ari, Recorder())
            await asyncio.wait_for(ari.wait_connected(), 2)
        [request] = fake.ws_requests
        assert request.query == {"app": APP, "subscribeAll": "true"}
        assert request.authorization == EXPECTED_AUTH
        assert PASSWORD not in urllib.parse.unquote(request.raw_query)

    async def test_bad_frames_are_logged_and_skipped(
        self,
        fake: FakeAri,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        async def script(ws: web.WebSocketResponse) -> None:
            await send_events(ws, event("StasisStart", "c1"))
            await ws.send_str("this is not JSON {")
            await ws.send_str("[1, 2, 3]")
            await ws.send_str('"a string"')
            await ws.send_bytes(b"\x00\x01")
            await send_events(ws, event("StasisEnd", "c1"))

        fake.on_ws = script
        recorder = Recorder()
        with capture_logs() as logs:
            run_client(client, recorder)
            await eventually(lambda: len(recorder.events) == 2)
            await asyncio.sleep(0.05)
        assert recorder.types() == ["StasisStart", "StasisEnd"]
        skipped = [entry["reason"] for entry in logs if entry["event"] == "ari.event_skipped"]
        assert skipped == ["not JSON", "not a JSON object", "not a JSON object", "binary frame"]
        assert fake.ws_requests and len(fake.ws_requests) == 1  # the socket survived


class TestHandlerDispatch:
    async def test_slow_handler_of_one_channel_does_not_block_others(
        self,
        fake: FakeAri,
        client: AriClient,
    ) -> None:
        release = asyncio.Event()
        seen: list[tuple[str, int]] = []

        async def handler(evt: dict[str, Any]) -> None:
            if evt["channel"]["id"] == "slow" and evt["seq"] == 0:
                await release.wait()
            seen.append((evt["channel"]["id"], evt["seq"]))

        async def script(ws: web.WebSocketResponse) -> None:
            await send_events(
                ws,
                event("StasisStart", "slow", seq=0),
                event("ChannelDtmfReceived", "slow", seq=1),
                *(event("StasisStart", f"fast{i}", seq=i) for i in range(3)),
            )

        fake.on_ws = script
        task = asyncio.create_task(client.run(handler))
        try:
            await eventually(lambda: len(seen) == 3)
            assert all(chan.startswith("fast") for chan, _ in seen)
            release.set()
            await eventually(lambda: len(seen) == 5)
            assert seen[3:] == [("slow", 0), ("slow", 1)]
        finally:
            task.cancel()

    async def test_same_channel_events_are_serialised_despite_uneven_handler_times(
        self,
        fake: FakeAri,
        client: AriClient,
    ) -> None:
        active: dict[str, int] = {}
        overlap: list[str] = []
        seen: dict[str, list[int]] = {"a": [], "b": []}
        peak = 0

        async def handler(evt: dict[str, Any]) -> None:
            nonlocal peak
            chan = evt["channel"]["id"]
            active[chan] = active.get(chan, 0) + 1
            if active[chan] > 1:
                overlap.append(chan)
            peak = max(peak, sum(active.values()))
            # Earlier events take longer: without serialisation they would finish last.
            await asyncio.sleep(0.002 * (10 - evt["seq"]))
            seen[chan].append(evt["seq"])
            active[chan] -= 1

        async def script(ws: web.WebSocketResponse) -> None:
            for seq in range(10):
                await send_events(ws, event("X", "a", seq=seq), event("X", "b", seq=seq))

        fake.on_ws = script
        task = asyncio.create_task(client.run(handler))
        try:
            await eventually(lambda: len(seen["a"]) == len(seen["b"]) == 10)
        finally:
            task.cancel()
        assert seen == {"a": list(range(10)), "b": list(range(10))}
        assert overlap == []
        assert peak == 2  # the two channels were handled concurrently

    async def test_handler_errors_are_logged_and_not_fatal(
        self,
        fake: FakeAri,
        client: AriClient,
    ) -> None:
        seen: list[int] = []

        async def handler(evt: dict[str, Any]) -> None:
            if evt["seq"] == 1:
                raise RuntimeError("handler bug")
            seen.append(evt["seq"])

        async def script(ws: web.WebSocketResponse) -> None:
            await send_events(ws, *(event("X", "c1", seq=i) for i in range(4)))

        fake.on_ws = script
        with capture_logs() as logs:
            task = asyncio.create_task(client.run(handler))
            try:
                await eventually(lambda: len(seen) == 3)
            finally:
                task.cancel()
        assert seen == [0, 2, 3]
        failures = [entry for entry in logs if entry["event"] == "ari.handler_failed"]
        assert len(failures) == 1
        assert failures[0]["log_level"] == "error"
        assert failures[0]["key"] == "c1"

    @pytest.mark.parametrize(
        ("evt", "key"),
        [
            ({"type": "StasisStart", "channel": {"id": "c1"}}, "c1"),
            ({"type": "Dial", "peer": {"id": "c2"}, "caller": {"id": "c1"}}, "c2"),
            ({"type": "PlaybackFinished", "playback": {"target_uri": "channel:c3"}}, "c3"),
            ({"type": "RecordingFinished", "recording": {"target_uri": "bridge:b1"}}, "bridge:b1"),
            ({"type": "BridgeDestroyed", "bridge": {"id": "b1"}}, "bridge:b1"),
            (
                {"type": "ChannelEnteredBridge", "bridge": {"id": "b1"}, "channel": {"id": "c4"}},
                "c4",
            ),
            ({"type": "ApplicationReplaced"}, None),
            ({"type": "StasisStart", "channel": {"id": 5}}, None),
        ],
    )
    def test_ordering_key(self, evt: dict[str, Any], key: str | None) -> None:
        assert ordering_key(evt) == key


# ------------------------------------------------------------------------ reconnect


class TestReconnect:
    async def test_server_closing_the_socket_leads_to_reconnect_and_resync(
        self,
        fake: FakeAri,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        async def script(ws: web.WebSocketResponse) -> None:
            n = len(fake.connections)
            await send_events(ws, event("StasisStart", f"call{n}"))
            if n == 1:
                await ws.close()

        fake.on_ws = script
        recorder = Recorder()
        run_client(client, recorder)
        await eventually(lambda: len(recorder.events) == 2)
        assert recorder.connects == 2
        assert [e["channel"]["id"] for e in recorder.events] == ["call1", "call2"]
        assert recorder.timeline == [
            "resync-start:1",
            "resync-done:1",
            "event:StasisStart",
            "resync-start:2",
            "resync-done:2",
            "event:StasisStart",
        ]
        assert client.connected

    async def test_failed_resync_closes_the_socket_and_retries(
        self,
        fake: FakeAri,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        attempts = 0

        async def flaky_resync() -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise AriUnavailable(None, "Asterisk still starting")

        async def script(ws: web.WebSocketResponse) -> None:
            await send_events(ws, event("StasisStart", "c1", conn=len(fake.connections)))

        fake.on_ws = script
        recorder = Recorder()
        with capture_logs() as logs:
            run_client(client, recorder, on_connected=flaky_resync)
            await asyncio.wait_for(client.wait_connected(), 2)
            await eventually(lambda: len(recorder.events) == 1)
        assert attempts == 2
        # Events of the un-synced connection were not delivered.
        assert [e["conn"] for e in recorder.events] == [2]
        assert any(entry["event"] == "ari.resync_failed" for entry in logs)

    async def test_application_replaced_is_delivered_and_triggers_reconnect(
        self,
        fake: FakeAri,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        async def script(ws: web.WebSocketResponse) -> None:
            if len(fake.connections) == 1:
                await send_events(ws, {"type": "ApplicationReplaced", "application": APP})

        fake.on_ws = script
        recorder = Recorder()
        run_client(client, recorder)
        await eventually(lambda: recorder.connects == 2)
        assert recorder.types() == ["ApplicationReplaced"]
        assert fake.connections[0].closed

    async def test_heartbeat_detects_a_silent_peer(
        self,
        fake: FakeAri,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        fake.ws_autoping = False  # the server never answers our pings
        async with AriClient(make_config(fake.port, heartbeat=0.1)) as ari:
            recorder = Recorder()
            run_client(ari, recorder)
            await eventually(lambda: recorder.connects >= 2, within=3)
            assert "PONG" in (ari.status.last_error or "")


class TestBackoff:
    def test_delay_doubles_up_to_the_cap_with_bounded_jitter(self) -> None:
        lows = [backoff_delay(n, 0.2, 5.0, rand=lambda: 0.0) for n in range(1, 9)]
        highs = [backoff_delay(n, 0.2, 5.0, rand=lambda: 1.0) for n in range(1, 9)]
        assert highs == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
        assert lows == pytest.approx([h / 2 for h in highs])
        assert backoff_delay(10**9, 0.2, 5.0) <= 5.0  # no float overflow after long outages
        assert backoff_delay(0, 0.2, 5.0, rand=lambda: 0.0) == pytest.approx(0.1)

    async def test_refused_connections_are_retried_slowly_then_recover(
        self, run_client: Callable[..., asyncio.Task[None]]
    ) -> None:
        port = unused_port()
        trace, attempts = attempt_counter()
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            ari = AriClient(
                make_config(port, backoff_initial=0.05, backoff_max=0.2), session=session
            )
            recorder = Recorder()
            run_client(ari, recorder)
            await asyncio.sleep(1.0)
            # A hot loop would make thousands of attempts per second.
            assert 3 <= len(attempts) <= 12
            gaps = [b - a for a, b in itertools.pairwise(attempts)]
            assert min(gaps) >= 0.02
            assert not ari.connected
            # Every refused attempt is counted; on a loaded machine the last one
            # may still be in flight (started, not yet refused) when we look.
            assert len(attempts) - 1 <= ari.status.consecutive_failures <= len(attempts)
            assert ari.status.consecutive_failures >= 2
            assert ari.status.last_error is not None

            server = FakeAri(port=port)
            await server.start()
            try:
                await asyncio.wait_for(ari.wait_connected(), 1.0)
                assert recorder.connects == 1
                assert ari.status.state is AriState.CONNECTED
            finally:
                await ari.close()
                await server.stop()
            assert not session.closed  # a borrowed session is left alone

    async def test_server_that_drops_every_connection_is_not_hammered(
        self,
        fake: FakeAri,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        async def drop(ws: web.WebSocketResponse) -> None:
            await ws.close()

        fake.on_ws = drop
        async with AriClient(make_config(fake.port, backoff_initial=0.05, backoff_max=0.2)) as ari:
            recorder = Recorder()
            run_client(ari, recorder)
            await asyncio.sleep(1.0)
            # Short-lived connections do not reset the backoff.
            assert 3 <= len(fake.ws_requests) <= 12
            # on_connected ran for every accepted connection (the last may be in flight).
            assert len(fake.ws_requests) - 1 <= recorder.connects <= len(fake.ws_requests)

    async def test_rejected_handshake_is_retried_with_backoff(
        self,
        fake: FakeAri,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        fake.ws_reject_status = 401
        async with AriClient(make_config(fake.port, backoff_initial=0.05, backoff_max=0.2)) as ari:
            recorder = Recorder()
            run_client(ari, recorder)
            await asyncio.sleep(0.6)
            assert 2 <= len(fake.ws_requests) <= 10
            assert recorder.connects == 0
            assert "401" in (ari.status.last_error or "")


# ---------------------------------------------------------------------- state, close


class TestConnectionState:
    async def test_state_follows_the_connection_lifecycle(
        self,
        fake: FakeAri,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        states_during_resync: list[AriState] = []

        async def on_connected() -> None:
            states_during_resync.append(client.status.state)

        assert client.status.state is AriState.IDLE
        assert not client.connected
        before = datetime.now(UTC)
        run_client(client, Recorder(), on_connected=on_connected)
        await asyncio.wait_for(client.wait_connected(), 2)
        status = client.status
        assert status.connected and client.connected
        assert status.state is AriState.CONNECTED
        assert status.since >= before
        assert status.since.tzinfo is not None
        assert states_during_resync == [AriState.RESYNCING]

        await fake.stop()
        await eventually(lambda: not client.connected)
        assert client.status.state in (AriState.DISCONNECTED, AriState.CONNECTING)
        assert client.status.since > status.since

        await client.close()
        assert client.status.state is AriState.CLOSED


class TestShutdown:
    async def test_close_while_connected_is_prompt_and_run_returns(
        self,
        fake: FakeAri,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        task = run_client(client, Recorder())
        await asyncio.wait_for(client.wait_connected(), 2)
        started = time.monotonic()
        await client.close()
        assert time.monotonic() - started < 0.5
        assert task.done() and task.result() is None
        await eventually(lambda: fake.connections[0].closed, within=1)
        with pytest.raises(RuntimeError):
            await client.answer("c1")

    async def test_close_while_backing_off_is_prompt(
        self, run_client: Callable[..., asyncio.Task[None]]
    ) -> None:
        ari = AriClient(make_config(unused_port(), backoff_initial=5.0, backoff_max=5.0))
        task = run_client(ari, Recorder())
        await eventually(lambda: ari.status.state is AriState.DISCONNECTED)
        started = time.monotonic()
        await ari.close()
        assert time.monotonic() - started < 0.5
        assert task.done() and task.result() is None

    async def test_cancelling_run_propagates_and_leaves_the_client_reusable(
        self,
        fake: FakeAri,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        task = run_client(client, Recorder())
        await asyncio.wait_for(client.wait_connected(), 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.status.state is AriState.IDLE
        await eventually(lambda: fake.connections[0].closed, within=1)
        recorder = Recorder()
        run_client(client, recorder)
        await asyncio.wait_for(client.wait_connected(), 2)
        assert recorder.connects == 1

    async def test_close_gives_handlers_a_grace_period_then_cancels(
        self,
        fake: FakeAri,
        client: AriClient,
    ) -> None:
        outcomes: list[str] = []
        started: list[str] = []

        async def handler(evt: dict[str, Any]) -> None:
            started.append(evt["channel"]["id"])
            try:
                await asyncio.sleep(0.05 if evt["channel"]["id"] == "quick" else 60)
                outcomes.append(f"done:{evt['channel']['id']}")
            except asyncio.CancelledError:
                outcomes.append(f"cancelled:{evt['channel']['id']}")
                raise

        async def script(ws: web.WebSocketResponse) -> None:
            await send_events(ws, event("X", "quick"), event("X", "stuck"))

        fake.on_ws = script
        task = asyncio.create_task(client.run(handler))
        await eventually(lambda: len(started) == 2)
        began = time.monotonic()
        await client.close(grace=0.2)
        assert time.monotonic() - began < 0.6
        assert sorted(outcomes) == ["cancelled:stuck", "done:quick"]
        assert task.done()

    async def test_run_refuses_double_start_and_start_after_close(
        self,
        client: AriClient,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        run_client(client, Recorder())
        await asyncio.wait_for(client.wait_connected(), 2)
        with pytest.raises(RuntimeError, match="already"):
            await client.run(Recorder().handler)
        await client.close()
        await client.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await client.run(Recorder().handler)


class TestNoSecretsInLogs:
    async def test_logs_and_errors_never_contain_the_password(
        self,
        fake: FakeAri,
        run_client: Callable[..., asyncio.Task[None]],
    ) -> None:
        fake.respond("POST", "/ari/channels/c1/answer", 500, {"message": "nope"})
        encoded = EXPECTED_AUTH.split()[1]

        async def drop(ws: web.WebSocketResponse) -> None:
            await send_events(ws, event("StasisStart", "c1"))
            await ws.send_str("garbage")
            await ws.close()

        fake.on_ws = drop
        with capture_logs() as logs:
            async with AriClient(make_config(fake.port)) as ari:
                with pytest.raises(AriError) as info:
                    await ari.answer("c1")
                run_client(ari, Recorder())
                await eventually(lambda: len(fake.ws_requests) >= 2)
        text = repr(logs) + str(info.value) + repr(info.value)
        assert logs
        assert PASSWORD not in text
        assert encoded not in text


# ------------------------------------------------------------- REST over WebSocket


@pytest.fixture
async def ws_client(
    fake: FakeAri, run_client: Callable[..., asyncio.Task[None]]
) -> AsyncIterator[tuple[AriClient, Recorder]]:
    """A running client whose probe has succeeded (hot-path calls use the socket)."""
    ari = AriClient(make_config(fake.port, request_timeout=0.3))
    recorder = Recorder()
    run_client(ari, recorder)
    await eventually(lambda: ari.rest_over_websocket_active)
    yield ari, recorder
    await ari.close()


class TestRestOverWebSocket:
    async def test_hot_path_calls_go_over_the_socket_with_exact_params(
        self, fake: FakeAri, ws_client: tuple[AriClient, Recorder]
    ) -> None:
        ari, _ = ws_client
        await ari.set_variable(HOSTILE, "PBXBRIDGE_DECISION", HOSTILE)
        await ari.continue_in_dialplan("c1", "pbxbridge-queue", "s", 1)
        await ari.answer("c1")  # not a hot-path call: stays on HTTP
        ws_calls = fake.ws_calls()
        assert [(r.method, r.segments) for r in ws_calls] == [
            ("POST", ["ari", "channels", HOSTILE, "variable"]),
            ("POST", ["ari", "channels", "c1", "continue"]),
        ]
        assert ws_calls[0].query == {"variable": "PBXBRIDGE_DECISION", "value": HOSTILE}
        assert ws_calls[1].query == {
            "context": "pbxbridge-queue",
            "extension": "s",
            "priority": "1",
        }
        assert [r.raw_path for r in fake.http_calls()] == ["/ari/channels/c1/answer"]

    @pytest.mark.parametrize(
        ("status", "exc_type"),
        [
            (404, AriNotFound),
            (409, AriConflict),
            (412, AriError),
            (500, AriError),
            (503, AriUnavailable),
        ],
    )
    async def test_status_codes_map_to_the_same_exceptions_as_http(
        self,
        fake: FakeAri,
        ws_client: tuple[AriClient, Recorder],
        status: int,
        exc_type: type[AriError],
    ) -> None:
        ari, _ = ws_client
        fake.respond("POST", "/ari/channels/c1/continue", status, {"message": "Channel not found"})
        with pytest.raises(AriError) as info:
            await ari.continue_in_dialplan("c1", "ctx", "s")
        assert type(info.value) is exc_type
        assert info.value.status == status
        assert "Channel not found" in str(info.value)
        # The same call over HTTP raises the very same.
        http = AriClient(make_config(fake.port))
        try:
            with pytest.raises(AriError) as via_http:
                await http.continue_in_dialplan("c1", "ctx", "s")
        finally:
            await http.close()
        assert type(via_http.value) is exc_type
        assert str(via_http.value) == str(info.value)
        assert fake.ws_calls() and len(fake.http_calls()) == 1

    async def test_event_filter_always_lets_rest_responses_through(
        self, fake: FakeAri, client: AriClient
    ) -> None:
        await client.set_event_filter(["StasisStart"])
        body = json.loads(fake.requests[-1].body)
        assert body["allowed"] == [{"type": "StasisStart"}, {"type": "RESTResponse"}]

    async def test_event_filter_is_unchanged_when_the_feature_is_off(self, fake: FakeAri) -> None:
        async with AriClient(make_config(fake.port, rest_over_websocket=False)) as ari:
            await ari.set_event_filter(["StasisStart"])
        assert json.loads(fake.requests[-1].body)["allowed"] == [{"type": "StasisStart"}]

    @pytest.mark.parametrize("probe", ["ignore", "reject"])
    async def test_asterisk_without_the_feature_gets_http(
        self,
        fake: FakeAri,
        run_client: Callable[..., asyncio.Task[None]],
        probe: WsRestMode,
    ) -> None:
        fake.ws_probe = probe
        async with AriClient(make_config(fake.port, request_timeout=0.2)) as ari:
            run_client(ari, Recorder())
            await eventually(lambda: any(r.via == "ws" for r in fake.requests))
            await asyncio.sleep(0.3)  # past the probe's timeout
            assert not ari.rest_over_websocket_active
            await ari.set_variable("c1", "V", "x")
            assert ari.connected
        assert fake.ws_calls() == []
        assert [r.raw_path for r in fake.http_calls()] == ["/ari/channels/c1/variable"]

    async def test_feature_off_sends_no_frames(
        self, fake: FakeAri, run_client: Callable[..., asyncio.Task[None]]
    ) -> None:
        async with AriClient(make_config(fake.port, rest_over_websocket=False)) as ari:
            run_client(ari, Recorder())
            await eventually(lambda: ari.connected)
            await asyncio.sleep(0.05)
            await ari.set_variable("c1", "V", "x")
        assert [r.via for r in fake.requests] == ["http"]

    async def test_calls_use_http_while_the_socket_is_down(
        self, fake: FakeAri, ws_client: tuple[AriClient, Recorder]
    ) -> None:
        ari, _ = ws_client
        fake.ws_reject_status = 503  # no reconnect for now
        await fake.connections[-1].close()
        await eventually(lambda: not ari.rest_over_websocket_active)
        await ari.continue_in_dialplan("c1", "ctx", "s")
        assert fake.ws_calls() == []
        assert [r.raw_path for r in fake.http_calls()] == ["/ari/channels/c1/continue"]
        # Back on the socket once it is up again and the probe answered.
        fake.ws_reject_status = None
        await eventually(lambda: ari.rest_over_websocket_active)
        await ari.continue_in_dialplan("c2", "ctx", "s")
        assert [r.segments[2] for r in fake.ws_calls()] == ["c2"]

    async def test_rest_responses_never_reach_the_handler(
        self, fake: FakeAri, run_client: Callable[..., asyncio.Task[None]]
    ) -> None:
        async def script(ws: web.WebSocketResponse) -> None:
            stale = {"type": "RESTResponse", "request_id": "nobody", "status_code": 204}
            await send_events(ws, event("StasisStart", "c1"), stale, event("StasisEnd", "c1"))

        fake.on_ws = script
        recorder = Recorder()
        async with AriClient(make_config(fake.port)) as ari:
            run_client(ari, recorder)
            await eventually(lambda: ari.rest_over_websocket_active)
            for n in range(5):
                await ari.set_variable(f"c{n}", "V", "x")
            await eventually(lambda: len(recorder.events) == 2)
            await asyncio.sleep(0.05)
        assert recorder.types() == ["StasisStart", "StasisEnd"]
        assert len(fake.ws_calls()) == 5

    async def test_requests_in_flight_when_the_socket_is_lost_are_sent_over_http(
        self, fake: FakeAri, ws_client: tuple[AriClient, Recorder]
    ) -> None:
        ari, _ = ws_client
        fake.ws_rest = "drop"
        await ari.set_variable("c1", "V", "x")
        assert [r.via for r in fake.requests if r.raw_path.startswith("/ari/channels")] == [
            "ws",
            "http",
        ]

    async def test_lost_continue_that_asterisk_executed_surfaces_as_conflict(
        self, fake: FakeAri, ws_client: tuple[AriClient, Recorder]
    ) -> None:
        # The frame reached Asterisk, the channel left Stasis, the answer was lost:
        # the HTTP retry gets 409, which the router counts as "gone", not "failed".
        ari, _ = ws_client
        fake.ws_rest = "drop"
        fake.respond("POST", "/ari/channels/c1/continue", 409, {"message": "not in Stasis"})
        with pytest.raises(AriConflict):
            await ari.continue_in_dialplan("c1", "ctx", "s")

    async def test_pending_requests_fail_over_when_the_socket_closes(
        self, fake: FakeAri, ws_client: tuple[AriClient, Recorder]
    ) -> None:
        ari, _ = ws_client
        fake.ws_rest = "ignore"
        calls = [asyncio.create_task(ari.set_variable(f"c{n}", "V", "x")) for n in range(3)]
        await eventually(lambda: len(fake.ws_calls()) == 3)
        started = time.monotonic()
        await fake.connections[-1].close()
        await asyncio.gather(*calls)  # retried over HTTP, long before the timeout
        assert time.monotonic() - started < 0.25
        assert sorted(r.segments[2] for r in fake.http_calls()) == ["c0", "c1", "c2"]

    async def test_timeout_raises_unavailable_and_falls_back_to_http(
        self, fake: FakeAri, ws_client: tuple[AriClient, Recorder]
    ) -> None:
        ari, _ = ws_client
        fake.ws_rest = "ignore"
        started = time.monotonic()
        with pytest.raises(AriUnavailable) as info:
            await ari.continue_in_dialplan("c1", "ctx", "s")
        assert 0.25 < time.monotonic() - started < 1.0
        assert info.value.status is None
        assert info.value.path == "/ari/channels/c1/continue"
        assert not ari.rest_over_websocket_active
        await ari.continue_in_dialplan("c2", "ctx", "s")
        assert [r.segments[2] for r in fake.http_calls()] == ["c2"]
        assert ari.connected  # a slow answer is no reason to drop the events
