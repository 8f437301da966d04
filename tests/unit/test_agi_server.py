"""Bad input and faults on the FastAGI server, with fake clients over real TCP.

Every fault must end only its own connection, with one clear ``agi.<reason>``
log line, at bounded cost - and the next real call must still be routed.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbxbridge.adapters.agi import AgiLimits, AgiRouter, AgiServer, AgiSession
from pbxbridge.adapters.agi.protocol import MAX_ENV_LINES
from pbxbridge.config import load_rules
from pbxbridge.core.models import Decision
from pbxbridge.core.rules import Rules
from pbxbridge.runtime.settings import Settings, SettingsError
from tests.unit.test_agi_router import (
    WEDNESDAY_10,
    FakeAsterisk,
    Harness,
    asterisk_env,
    harness,
    render_env,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
FAST = AgiLimits(env_timeout_s=0.5, command_timeout_s=0.5, session_timeout_s=3.0)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE)[0]


@pytest.fixture
async def agi(rules: Rules) -> AsyncIterator[Harness]:
    async with harness(rules, limits=FAST) as h:
        yield h


async def send_and_wait_close(port: int, payload: bytes, wait_s: float = 3.0) -> bytes:
    """Send ``payload``, then read until the server closes; returns what it sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        received = b""
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(wait_s):
                while chunk := await reader.read(65536):
                    received += chunk
        return received
    finally:
        writer.close()


async def eventually(predicate: Callable[[], bool], wait_s: float) -> None:
    """Poll server state that has no event of its own to wait on."""
    deadline = time.monotonic() + wait_s
    while not predicate() and time.monotonic() < deadline:  # noqa: ASYNC110 - polled state
        await asyncio.sleep(0.02)


def agi_events(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [
        e
        for e in logs
        if str(e["event"]).startswith("agi.") and e["event"] not in ("agi.listening",)
    ]


async def assert_still_routing(h: Harness) -> None:
    fake = await h.fake(env=asterisk_env(uniqueid="1764099999.9")).call()
    assert fake.destination == ("pbxbridge-queue", "s", "1")


ENV = asterisk_env()
FIRST_COMMAND = b'GET FULL VARIABLE "${CALLERID(num-pres)}|${FROM_DID}"\n'
MALFORMED: dict[str, tuple[bytes, str]] = {
    "garbage": (b"hello world\n\n", "agi.env_malformed"),
    "http": (b"GET /route HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "agi.env_malformed"),
    "binary": (b"\x00\xff\xfe\x80garbage\n\x01\x02\n\n", "agi.env_malformed"),
    "empty": (b"\n", "agi.env_malformed"),
    "no-uniqueid": (
        render_env({k: v for k, v in ENV.items() if k != "agi_uniqueid"}),
        "agi.env_malformed",
    ),
    "duplicate": (render_env(ENV).replace(b"\n\n", b"\nagi_channel: x\n\n"), "agi.env_malformed"),
    "too-many-lines": (
        b"".join(b"agi_x%d: y\n" % n for n in range(MAX_ENV_LINES + 50)) + b"\n",
        "agi.env_too_large",
    ),
    "unknown-script": (render_env(asterisk_env(script="admin")), "agi.unknown_script"),
    "line-over-8kb": (
        b"agi_network: yes\nagi_calleridname: " + b"x" * 9000 + b"\n\n",
        "agi.line_too_long",
    ),
    "half-environment": (render_env(ENV)[:200], "agi.disconnected"),
}


class TestBadEnvironment:
    @pytest.mark.parametrize("case", list(MALFORMED))
    async def test_one_log_line_closed_others_served(self, agi: Harness, case: str) -> None:
        payload, event = MALFORMED[case]
        with capture_logs() as logs:
            if case == "half-environment":
                _, writer = await asyncio.open_connection("127.0.0.1", agi.server.port)
                writer.write(payload)
                await writer.drain()
                writer.close()  # gone in the middle of its environment
                await asyncio.sleep(0.1)
            else:
                received = await send_and_wait_close(agi.server.port, payload)
                assert received == b""  # never a command for a bad environment
            await assert_still_routing(agi)
        (fault,) = agi_events(logs)
        assert fault["event"] == event
        assert fault["peer"].startswith("127.0.0.1:")
        assert fault["phase"] == "environment"
        assert fault["detail"]
        assert agi.server.connections == 0
        assert agi.router.stats.routed == 1

    async def test_endless_line_costs_bounded_memory(self, agi: Harness) -> None:
        tracemalloc.start()
        try:
            with capture_logs() as logs:
                # 4 MB without a newline: the reader refuses after its 8 KB limit.
                _, writer = await asyncio.open_connection("127.0.0.1", agi.server.port)
                writer.write(b"agi_network: yes\nagi_x: ")
                closed = False
                for _ in range(64):
                    try:
                        writer.write(b"x" * 65536)
                        await writer.drain()
                    except ConnectionError:
                        closed = True
                        break
                    await asyncio.sleep(0)
                writer.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [e["event"] for e in agi_events(logs)] == ["agi.line_too_long"]
        # Client-side write buffers included, far below the 4 MB offered.
        assert peak < 2 * 1024 * 1024, peak
        assert closed or agi.server.connections == 0

    async def test_slow_environment_times_out(self, agi: Harness) -> None:
        started = time.monotonic()
        with capture_logs() as logs:
            reader, writer = await asyncio.open_connection("127.0.0.1", agi.server.port)
            for line in render_env(ENV).split(b"\n")[:3]:  # one line at a time, slowly
                writer.write(line + b"\n")
                await asyncio.sleep(0.2)
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
        (fault,) = agi_events(logs)
        assert fault["event"] == "agi.env_timeout"
        assert 0.4 < time.monotonic() - started < 1.5


class TestBadSession:
    async def test_disconnect_mid_session(self, agi: Harness) -> None:
        with capture_logs() as logs:
            reader, writer = await asyncio.open_connection("127.0.0.1", agi.server.port)
            writer.write(render_env(ENV))
            first = await asyncio.wait_for(reader.readline(), 2)
            assert first == FIRST_COMMAND
            other = asyncio.create_task(assert_still_routing(agi))
            writer.close()  # hangs up instead of answering
            await other
            await asyncio.sleep(0.1)
        (fault,) = agi_events(logs)
        assert fault["event"] == "agi.disconnected"
        assert fault["phase"] == "session" and fault["call_id"] == "1764099000.1"
        assert agi.router.stats.failed == 1 and agi.router.stats.routed == 1
        assert [cid for cid, _ in agi.observed] == ["1764099999.9"]

    async def test_no_answer_times_out(self, agi: Harness) -> None:
        with capture_logs() as logs:
            received = await send_and_wait_close(agi.server.port, render_env(ENV))
        assert received == FIRST_COMMAND
        (fault,) = agi_events(logs)
        assert fault["event"] == "agi.timeout" and "FROM_DID" not in fault["detail"]
        assert fault["detail"] == "no response to GET FULL"

    async def test_response_line_over_8kb(self, agi: Harness) -> None:
        with capture_logs() as logs:
            reader, writer = await asyncio.open_connection("127.0.0.1", agi.server.port)
            writer.write(render_env(ENV))
            await reader.readline()
            writer.write(b"200 result=1 (" + b"9" * 10_000 + b")\n")
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
        (fault,) = agi_events(logs)
        assert fault["event"] == "agi.line_too_long" and fault["phase"] == "session"

    async def test_caller_hangs_up_with_out_of_band_hangup(self, agi: Harness) -> None:
        # Asterisk sends "HANGUP\n" with MSG_OOB: its last byte is urgent data.
        loop = asyncio.get_running_loop()
        with socket.socket() as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", agi.server.port))
            await loop.sock_sendall(sock, render_env(ENV))
            assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 2) == (FIRST_COMMAND)
            sock.send(b"HANGUP\n", socket.MSG_OOB)
            assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 2) == b""
        assert agi.router.stats.gone == 1
        assert agi.server.stats.faults == {}

    async def test_session_timeout(self, rules: Rules) -> None:
        async def stuck(session: AgiSession) -> None:
            await asyncio.sleep(60)

        server = AgiServer(
            "127.0.0.1", 0, {"route": stuck}, AgiLimits(env_timeout_s=1, session_timeout_s=0.3)
        )
        assert await server.start()
        try:
            with capture_logs() as logs:
                assert await send_and_wait_close(server.port, render_env(ENV)) == b""
            (fault,) = agi_events(logs)
            assert fault["event"] == "agi.session_timeout"
        finally:
            await server.stop(1)

    async def test_handler_crash_is_contained(self) -> None:
        calls = 0

        async def buggy(session: AgiSession) -> None:
            nonlocal calls
            calls += 1
            raise KeyError("bug")

        server = AgiServer("127.0.0.1", 0, {"route": buggy})
        assert await server.start()
        try:
            with capture_logs() as logs:
                for _ in range(3):
                    assert await send_and_wait_close(server.port, render_env(ENV)) == b""
            assert calls == 3
            assert [e["event"] for e in agi_events(logs)] == ["agi.handler_crashed"] * 3
        finally:
            await server.stop(1)


def _raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} open files, hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class TestCapacity:
    async def test_two_thousand_idle_connections(self, rules: Rules) -> None:
        _raise_nofile(4096)
        limits = AgiLimits(env_timeout_s=2.0, command_timeout_s=2.0)  # default max_sessions
        async with harness(rules, limits=limits) as h:
            capacity = h.server.capacity
            assert capacity == 1000
            tracemalloc.start()
            try:
                with capture_logs() as logs:
                    idle = await asyncio.gather(
                        *(asyncio.open_connection("127.0.0.1", h.server.port) for _ in range(2000))
                    )
                    await asyncio.sleep(0.3)  # all accepted (and half of them evicted)
                    assert h.server.connections <= capacity
                    assert len(asyncio.all_tasks()) <= capacity + 20
                    started = time.perf_counter()
                    fakes = await asyncio.gather(
                        *(
                            h.fake(env=asterisk_env(uniqueid=f"1764099100.{n}")).call()
                            for n in range(20)
                        )
                    )
                    served_in = time.perf_counter() - started
                    _, peak = tracemalloc.get_traced_memory()
                    # The idle ones left are closed when their environment times out.
                    await eventually(lambda: not h.server.connections, 5)
                    eofs = sum([await asyncio.wait_for(r.read(), 1) == b"" for r, _ in idle])
            finally:
                tracemalloc.stop()
                for _, writer in idle:
                    writer.close()
        assert all(f.destination == ("pbxbridge-queue", "s", "1") for f in fakes)
        assert served_in < 1.0, served_in
        assert h.router.stats.routed == 20
        assert h.server.connections == 0
        assert eofs == 2000
        events = agi_events(logs)
        kinds = {e["event"] for e in events}
        assert kinds <= {"agi.evicted", "agi.env_timeout"}, kinds
        assert len(events) == 2000  # one line per idle connection
        assert sum(e["event"] == "agi.evicted" for e in events) >= 1000 + 20
        # Both ends of 2000 connections (client objects included).
        print(f"peak traced memory for 2000 idle connections: {peak / 1e6:.1f} MB")
        assert peak < 48 * 1024 * 1024, peak

    async def test_full_of_real_calls_turns_newcomers_away(self) -> None:
        release = asyncio.Event()
        both_in = asyncio.Event()
        entered = 0

        async def waiting(session: AgiSession) -> None:
            nonlocal entered
            entered += 1
            if entered == 2:
                both_in.set()
            await release.wait()

        server = AgiServer("127.0.0.1", 0, {"route": waiting}, AgiLimits(max_sessions=2))
        assert await server.start()
        try:
            with capture_logs() as logs:
                held = [
                    asyncio.create_task(send_and_wait_close(server.port, render_env(ENV)))
                    for _ in range(2)
                ]
                await asyncio.wait_for(both_in.wait(), 2)
                started = time.monotonic()
                assert await send_and_wait_close(server.port, render_env(ENV)) == b""
                assert time.monotonic() - started < 0.5  # turned away at once
                release.set()
                await asyncio.gather(*held)
            assert [e["event"] for e in agi_events(logs)] == ["agi.over_capacity"]
            assert server.stats.over_capacity == 1 and server.stats.sessions == 2
        finally:
            await server.stop(1)


class TestLifecycle:
    async def test_stop_finishes_sessions_then_refuses(self, rules: Rules) -> None:
        gate = asyncio.Event()
        done: list[str] = []

        async def slow(session: AgiSession) -> None:
            await gate.wait()
            await session.set_variable("X", "1")
            done.append(session.env.uniqueid)

        server = AgiServer("127.0.0.1", 0, {"route": slow})
        assert await server.start()
        port = server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(render_env(ENV))
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(server.stop(5))
        await asyncio.sleep(0.1)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        gate.set()
        assert await reader.readline() == b'SET VARIABLE X "1"\n'
        writer.write(b"200 result=1\n")
        assert await stopping is True
        assert done == ["1764099000.1"]
        writer.close()

    async def test_stop_gives_up_after_drain_time(self) -> None:
        async def forever(session: AgiSession) -> None:
            await asyncio.sleep(3600)

        server = AgiServer("127.0.0.1", 0, {"route": forever})
        assert await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(render_env(ENV))
        await asyncio.sleep(0.1)
        assert server.in_progress == 1
        assert await server.stop(0.2) is False
        assert await asyncio.wait_for(reader.read(), 1) == b""
        writer.close()

    async def test_port_taken_is_retried(self, rules: Rules) -> None:
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            port = blocker.getsockname()[1]
            async with harness(rules) as h:
                pass  # the harness itself binds a free port; here the real case:
            server = AgiServer("127.0.0.1", port, {"route": h.router.route}, retry_s=0.1)
            with capture_logs() as logs:
                assert await server.start() is False
            assert not server.listening
            assert server.last_error
            assert [e["event"] for e in logs if e["log_level"] == "error"] == ["agi.bind_failed"]
        try:
            await eventually(lambda: server.listening, 3)
            assert server.listening and server.port == port
            assert server.last_error is None
        finally:
            await server.stop(1)


SECRET = "s3cret-0123456789abcdef"


@contextlib.asynccontextmanager
async def secured(
    rules: Rules, secret: str = SECRET
) -> AsyncIterator[tuple[AgiServer, AgiRouter, list[tuple[str, Decision]]]]:
    observed: list[tuple[str, Decision]] = []
    router = AgiRouter(
        lambda: rules,
        list,
        clock=lambda: WEDNESDAY_10,
        on_decision=lambda cid, d: observed.append((cid, d)),
    )
    server = AgiServer("127.0.0.1", 0, {"route": router.route}, FAST, secret=secret)
    assert await server.start()
    try:
        yield server, router, observed
    finally:
        await server.stop(1)


class TestSharedSecret:
    async def test_right_secret_is_routed(self, rules: Rules) -> None:
        async with secured(rules) as (server, router, observed):
            fake = await FakeAsterisk(server.port, env=asterisk_env(agi_arg_1=SECRET)).call()
        assert fake.destination == ("pbxbridge-queue", "s", "1")
        assert router.stats.routed == 1 and len(observed) == 1
        assert server.authenticated and not server.stats.faults

    @pytest.mark.parametrize(
        "given",
        [None, "", SECRET[:-1], SECRET + "x", SECRET.upper(), "ü" * 20],
        ids=["none", "empty", "short", "long", "case", "non-ascii"],
    )
    async def test_wrong_secret_is_refused_before_any_command(
        self, rules: Rules, given: str | None
    ) -> None:
        env = asterisk_env() if given is None else asterisk_env(agi_arg_1=given)
        async with secured(rules) as (server, _, observed):
            with capture_logs() as logs:
                fake = await FakeAsterisk(server.port, env=env).call()
                # The refusal ends only that session: the next real call is routed.
                good = await FakeAsterisk(
                    server.port, env=asterisk_env(uniqueid="1.2", agi_arg_1=SECRET)
                ).call()
        assert fake.commands == [] and fake.closed_by_server  # AGI() ends: fallback
        assert fake.destination is None
        assert good.destination == ("pbxbridge-queue", "s", "1")
        assert server.stats.faults == {"bad_secret": 1}
        assert [cid for cid, _ in observed] == ["1.2"]  # nothing recorded for the intruder
        (fault,) = agi_events(logs)
        assert fault["event"] == "agi.bad_secret" and fault["call_id"] == "1764099000.1"
        assert SECRET not in repr(logs) and (not given or given not in repr(logs))

    async def test_unknown_script_is_not_revealed_without_secret(self, rules: Rules) -> None:
        async with secured(rules) as (server, _, _):
            with capture_logs() as logs:
                await FakeAsterisk(server.port, env=asterisk_env(script="nosuch")).call()
        assert server.stats.faults == {"bad_secret": 1}
        assert "route" not in repr(agi_events(logs))

    async def test_no_secret_warns_at_start_and_still_routes(self, rules: Rules) -> None:
        with capture_logs() as logs:
            async with secured(rules, secret="") as (server, router, _):
                await FakeAsterisk(server.port).call()
        assert not server.authenticated
        assert "agi.no_secret" in [e["event"] for e in logs if e["log_level"] == "warning"]
        assert router.stats.routed == 1


class TestSecretSettings:
    def test_default_bind_leaves_4573_to_freepbx(self) -> None:
        settings = Settings.from_env({})
        assert (settings.agi_host, settings.agi_port) == ("127.0.0.1", 4574)
        assert settings.agi_secret == ""

    def test_credential_then_file_then_variable(self, tmp_path: Path) -> None:
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "agi-secret").write_text("from-credential-0123456789\n")
        named = tmp_path / "secret"
        named.write_text("from-file-0123456789abc\n")
        env = {
            "CREDENTIALS_DIRECTORY": str(creds),
            "PBXBRIDGE_AGI_SECRET_FILE": str(named),
            "PBXBRIDGE_AGI_SECRET": "from-variable-0123456789",
        }
        assert Settings.from_env(env).agi_secret == "from-credential-0123456789"
        (creds / "agi-secret").write_text("")  # the unit's empty placeholder
        assert Settings.from_env(env).agi_secret == "from-file-0123456789abc"
        del env["PBXBRIDGE_AGI_SECRET_FILE"]
        assert Settings.from_env(env).agi_secret == "from-variable-0123456789"
        assert "from-variable" not in repr(Settings.from_env(env))

    @pytest.mark.parametrize(
        "bad", ["short", "has,comma-0123456789", 'quote"0123456789ab', "${GLOBAL(X)}-0123456789"]
    )
    def test_unusable_secret_is_refused_without_echo(self, bad: str) -> None:
        with pytest.raises(SettingsError) as err:
            Settings.from_env({"PBXBRIDGE_AGI_SECRET": bad})
        assert bad not in str(err.value)
