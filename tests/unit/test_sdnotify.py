"""Tests for pbxbridge.runtime.sdnotify against real AF_UNIX datagram sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pbxbridge.adapters.ari.client import AriClient, AriConfig, AriConnectionStatus, AriState
from pbxbridge.adapters.ari.router import routing_alive
from pbxbridge.runtime.sdnotify import SystemdNotifier, watchdog_loop

RECV_TIMEOUT = 2.0


class Receiver:
    """The service manager's side: a bound SOCK_DGRAM socket."""

    def __init__(self, sock: socket.socket, env_value: str, path: Path | None) -> None:
        self.sock = sock
        self.env_value = env_value
        self.path = path

    def recv(self, timeout: float = RECV_TIMEOUT) -> bytes:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096)

    def drain(self) -> list[bytes]:
        """Returns every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        out: list[bytes] = []
        try:
            while True:
                out.append(self.sock.recv(4096))
        except BlockingIOError:
            return out


@pytest.fixture
def path_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    # Not pytest's tmp_path: sun_path is limited to 108 bytes and tmp_path embeds
    # the (long) test name.
    with tempfile.TemporaryDirectory(prefix="sdn-") as tmp:
        path = Path(tmp) / "notify"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        try:
            yield Receiver(sock, str(path), path)
        finally:
            sock.close()


@pytest.fixture
def abstract_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    name = f"pbxbridge-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield Receiver(sock, "@" + name, None)
    finally:
        sock.close()


@pytest.fixture
def notifier(path_receiver: Receiver) -> Iterator[SystemdNotifier]:
    with SystemdNotifier() as n:
        yield n


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class TestNotUnderSystemd:
    def test_every_method_is_a_noop_returning_false(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        n = SystemdNotifier()
        assert not n.enabled
        assert n.address is None
        assert n.ready("x") is False
        assert n.reloading() is False
        assert n.stopping() is False
        assert n.status("x") is False
        assert n.watchdog() is False
        assert n.notify(READY=1) is False
        assert n.send("READY=1") is False
        # No socket to ping -> no watchdog, even though WATCHDOG_USEC is set.
        assert n.watchdog_interval() is None

    def test_empty_notify_socket_is_disabled(self) -> None:
        assert not SystemdNotifier({"NOTIFY_SOCKET": ""}).enabled

    def test_unsupported_address_family_is_disabled_with_one_warning(self) -> None:
        with capture_logs() as logs:
            n = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})
        assert not n.enabled
        assert n.ready() is False
        assert [e["log_level"] for e in logs] == ["warning"]
        assert logs[0]["notify_socket"] == "vsock:2:1234"

    def test_lone_at_sign_is_disabled(self) -> None:
        with capture_logs():
            assert not SystemdNotifier({"NOTIFY_SOCKET": "@"}).enabled

    def test_explicit_environ_mapping_is_used(self, path_receiver: Receiver) -> None:
        assert SystemdNotifier({"NOTIFY_SOCKET": path_receiver.env_value}).enabled


class TestReady:
    def test_ready(self, notifier: SystemdNotifier, path_receiver: Receiver) -> None:
        assert notifier.ready() is True
        assert path_receiver.recv() == b"READY=1"

    def test_ready_with_status(self, notifier: SystemdNotifier, path_receiver: Receiver) -> None:
        assert notifier.ready("routing 3 tenants") is True
        assert path_receiver.recv() == b"READY=1\nSTATUS=routing 3 tenants"


class TestReloading:
    def test_reloading_sends_monotonic_usec(
        self, notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        before = _monotonic_usec()
        assert notifier.reloading() is True
        after = _monotonic_usec()
        lines = path_receiver.recv().decode().split("\n")
        assert lines[0] == "RELOADING=1"
        assert len(lines) == 2
        key, _, value = lines[1].partition("=")
        assert key == "MONOTONIC_USEC"
        assert value.isdigit()
        assert before <= int(value) <= after

    def test_reloading_with_status(
        self, notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        assert notifier.reloading("reloading routing.yaml") is True
        lines = path_receiver.recv().decode().split("\n")
        assert lines[0] == "RELOADING=1"
        assert lines[1].startswith("MONOTONIC_USEC=")
        assert lines[2] == "STATUS=reloading routing.yaml"


class TestStopping:
    def test_stopping(self, notifier: SystemdNotifier, path_receiver: Receiver) -> None:
        assert notifier.stopping() is True
        assert path_receiver.recv() == b"STOPPING=1"

    def test_stopping_with_status(self, notifier: SystemdNotifier, path_receiver: Receiver) -> None:
        assert notifier.stopping("draining 2 calls") is True
        assert path_receiver.recv() == b"STOPPING=1\nSTATUS=draining 2 calls"


class TestStatus:
    def test_status(self, notifier: SystemdNotifier, path_receiver: Receiver) -> None:
        assert notifier.status("ARI connected") is True
        assert path_receiver.recv() == b"STATUS=ARI connected"

    def test_status_is_utf8(self, notifier: SystemdNotifier, path_receiver: Receiver) -> None:
        text = "Bürgeramt Köln: Störung – 3 Anrufe ☎"
        assert notifier.status(text) is True
        data = path_receiver.recv()
        assert data == ("STATUS=" + text).encode("utf-8")
        assert "Störung".encode() in data

    def test_status_with_newlines_is_flattened(
        self, notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        assert notifier.status("ARI down:\nConnection refused\r\n") is True
        assert path_receiver.recv() == b"STATUS=ARI down: Connection refused"


class TestWatchdog:
    def test_watchdog(self, notifier: SystemdNotifier, path_receiver: Receiver) -> None:
        assert notifier.watchdog() is True
        assert path_receiver.recv() == b"WATCHDOG=1"


class TestNotifyAndSend:
    def test_notify_fields_in_order(
        self, notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        assert notifier.notify(EXTEND_TIMEOUT_USEC=5_000_000, STATUS="migrating") is True
        assert path_receiver.recv() == b"EXTEND_TIMEOUT_USEC=5000000\nSTATUS=migrating"

    def test_send_raw(self, notifier: SystemdNotifier, path_receiver: Receiver) -> None:
        assert notifier.send("ERRNO=2\nSTATUS=fäil") is True
        assert path_receiver.recv() == "ERRNO=2\nSTATUS=fäil".encode()

    def test_lowercase_field_name_is_rejected(self, notifier: SystemdNotifier) -> None:
        with pytest.raises(ValueError, match="field name"):
            notifier.notify(ready=1)

    def test_newline_in_value_is_rejected(self, notifier: SystemdNotifier) -> None:
        with pytest.raises(ValueError, match="newline"):
            notifier.notify(STATUS="a\nREADY=1")

    def test_close_then_send_reopens(
        self, notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        assert notifier.ready() is True
        notifier.close()
        notifier.close()  # idempotent
        assert notifier.watchdog() is True
        assert path_receiver.recv() == b"READY=1"
        assert path_receiver.recv() == b"WATCHDOG=1"


class TestAbstractSocket:
    def test_address_gets_nul_prefix(self, abstract_receiver: Receiver) -> None:
        n = SystemdNotifier()
        assert n.address == "\0" + abstract_receiver.env_value[1:]

    def test_messages_reach_abstract_socket(self, abstract_receiver: Receiver) -> None:
        with SystemdNotifier() as n:
            assert n.ready("grüß Gott") is True
            assert n.watchdog() is True
            assert n.stopping() is True
        assert abstract_receiver.recv() == "READY=1\nSTATUS=grüß Gott".encode()
        assert abstract_receiver.recv() == b"WATCHDOG=1"
        assert abstract_receiver.recv() == b"STOPPING=1"

    def test_reloading_on_abstract_socket(self, abstract_receiver: Receiver) -> None:
        with SystemdNotifier() as n:
            assert n.reloading() is True
        assert abstract_receiver.recv().startswith(b"RELOADING=1\nMONOTONIC_USEC=")


class TestSendFailure:
    def test_socket_removed_returns_false_and_logs_once(
        self, notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        assert notifier.ready() is True
        assert path_receiver.path is not None
        path_receiver.sock.close()
        path_receiver.path.unlink()
        with capture_logs() as logs:
            assert notifier.watchdog() is False
            assert notifier.watchdog() is False
            assert notifier.status("still failing") is False
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert len(warnings) == 1
        assert warnings[0]["event"] == "sd_notify failed"
        assert warnings[0]["notify_socket"] == str(path_receiver.path)
        assert warnings[0]["first_field"] == "WATCHDOG=1"

    def test_recovers_and_warns_again_on_next_outage(
        self, notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        path = path_receiver.path
        assert path is not None
        path_receiver.sock.close()
        path.unlink()
        with capture_logs() as logs:
            assert notifier.watchdog() is False
            # systemd re-creates its socket (e.g. after daemon-reexec).
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as new:
                new.bind(str(path))
                assert notifier.watchdog() is True
                new.settimeout(RECV_TIMEOUT)
                assert new.recv(4096) == b"WATCHDOG=1"
            path.unlink()
            assert notifier.watchdog() is False
        levels = [e["log_level"] for e in logs]
        assert levels == ["warning", "info", "warning"]

    def test_stale_socket_file_without_listener(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The socket file exists but nobody is bound to it (ECONNREFUSED).
        with tempfile.TemporaryDirectory(prefix="sdn-") as tmp:
            path = os.path.join(tmp, "notify")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(path)
            s.close()
            with capture_logs(), SystemdNotifier({"NOTIFY_SOCKET": path}) as n:
                assert n.ready() is False

    def test_abstract_socket_gone(self) -> None:
        name = f"@pbxbridge-test-missing-{uuid.uuid4().hex}"
        with capture_logs() as logs, SystemdNotifier({"NOTIFY_SOCKET": name}) as n:
            assert n.stopping() is False
        assert logs[0]["notify_socket"] == name

    def test_path_too_long_does_not_raise(self) -> None:
        with capture_logs() as logs:
            n = SystemdNotifier({"NOTIFY_SOCKET": "/" + "x" * 200})
            assert n.ready() is False
        assert len(logs) == 1


class TestWatchdogInterval:
    def test_half_of_watchdog_usec(self, path_receiver: Receiver) -> None:
        n = SystemdNotifier({"NOTIFY_SOCKET": path_receiver.env_value, "WATCHDOG_USEC": "30000000"})
        assert n.watchdog_interval() == 15.0

    def test_sub_second(self, path_receiver: Receiver) -> None:
        n = SystemdNotifier({"NOTIFY_SOCKET": path_receiver.env_value, "WATCHDOG_USEC": "100000"})
        assert n.watchdog_interval() == pytest.approx(0.05)

    def test_from_process_environment(
        self, path_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        assert SystemdNotifier().watchdog_interval() == 1.0

    def test_matching_pid(self, path_receiver: Receiver) -> None:
        env = {
            "NOTIFY_SOCKET": path_receiver.env_value,
            "WATCHDOG_USEC": "30000000",
            "WATCHDOG_PID": str(os.getpid()),
        }
        assert SystemdNotifier(env).watchdog_interval() == 15.0

    def test_other_pid_means_no_watchdog(self, path_receiver: Receiver) -> None:
        env = {
            "NOTIFY_SOCKET": path_receiver.env_value,
            "WATCHDOG_USEC": "30000000",
            "WATCHDOG_PID": str(os.getpid() + 1),
        }
        assert SystemdNotifier(env).watchdog_interval() is None

    @pytest.mark.parametrize("value", [None, "", "0", "-5", "abc", "1.5"])
    def test_unset_or_invalid_usec(self, path_receiver: Receiver, value: str | None) -> None:
        env = {"NOTIFY_SOCKET": path_receiver.env_value}
        if value is not None:
            env["WATCHDOG_USEC"] = value
        assert SystemdNotifier(env).watchdog_interval() is None

    def test_no_socket_means_no_watchdog(self) -> None:
        assert SystemdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None


class TestWatchdogLoop:
    # WATCHDOG_USEC=100000 -> one ping every 50 ms.
    INTERVAL = 0.05

    @pytest.fixture
    def wd_notifier(
        self, path_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[SystemdNotifier]:
        monkeypatch.setenv("WATCHDOG_USEC", "100000")
        with SystemdNotifier() as n:
            assert n.watchdog_interval() == pytest.approx(self.INTERVAL)
            yield n

    async def test_pings_only_while_healthy(
        self, wd_notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        state = {"healthy": True}
        task = asyncio.create_task(watchdog_loop(wd_notifier, lambda: state["healthy"]))
        try:
            await asyncio.sleep(self.INTERVAL * 5)
            pings = path_receiver.drain()
            assert len(pings) >= 3
            assert set(pings) == {b"WATCHDOG=1"}

            state["healthy"] = False
            await asyncio.sleep(self.INTERVAL * 1.5)  # let an in-flight ping land
            path_receiver.drain()
            await asyncio.sleep(self.INTERVAL * 5)
            assert path_receiver.drain() == []

            state["healthy"] = True
            await asyncio.sleep(self.INTERVAL * 3)
            assert path_receiver.drain()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    async def test_first_ping_is_immediate(
        self, wd_notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        task = asyncio.create_task(watchdog_loop(wd_notifier, lambda: True, interval=3600))
        try:
            await asyncio.sleep(0.01)
            assert path_receiver.drain() == [b"WATCHDOG=1"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    async def test_unhealthy_logs_once(
        self, wd_notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        with capture_logs() as logs:
            task = asyncio.create_task(watchdog_loop(wd_notifier, lambda: False))
            await asyncio.sleep(self.INTERVAL * 4)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert path_receiver.drain() == []
        assert [e["log_level"] for e in logs] == ["warning"]

    async def test_raising_health_check_counts_as_unhealthy(
        self, wd_notifier: SystemdNotifier, path_receiver: Receiver
    ) -> None:
        def broken() -> bool:
            raise RuntimeError("boom")

        with capture_logs() as logs:
            task = asyncio.create_task(watchdog_loop(wd_notifier, broken))
            await asyncio.sleep(self.INTERVAL * 3)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert path_receiver.drain() == []
        assert any(e["log_level"] == "error" for e in logs)

    async def test_returns_immediately_without_watchdog(self, path_receiver: Receiver) -> None:
        n = SystemdNotifier({"NOTIFY_SOCKET": path_receiver.env_value})
        await asyncio.wait_for(watchdog_loop(n, lambda: True), timeout=1)
        assert path_receiver.drain() == []

    async def test_returns_immediately_when_not_under_systemd(self) -> None:
        await asyncio.wait_for(watchdog_loop(SystemdNotifier({}), lambda: True), timeout=1)


# -- what feeds the watchdog -------------------------------------------------


class Pings:
    """Collects WATCHDOG=1 datagrams with their arrival time, in a thread (so a
    blocked event loop does not block the collecting)."""

    def __init__(self, receiver: Receiver) -> None:
        self.times: list[float] = []
        self._sock = receiver.sock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._sock.settimeout(0.02)
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            if b"WATCHDOG=1" in data.split(b"\n"):
                self.times.append(time.monotonic())

    def __enter__(self) -> Pings:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> int:
        return sum(1 for t in self.times if start <= t <= end)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def ari_down() -> AsyncIterator[AriClient]:
    """A real ARI client whose Asterisk is down (nothing listens on the port)."""
    client = AriClient(
        AriConfig(
            base_url=f"http://127.0.0.1:{closed_port()}",
            username="u",
            password="p",
            app="pbxbridge",
            backoff_initial=0.05,
            backoff_max=0.1,
        )
    )
    yield client
    await client.close()


async def nothing(event: dict[str, object]) -> None:
    del event


class TestWatchdogFedWhileRoutingAlive:
    """The daemon feeds the watchdog with routing_alive(ari, ari_task)."""

    async def test_asterisk_down_keeps_feeding_then_a_dead_ari_task_stops_it(
        self, path_receiver: Receiver, ari_down: AriClient
    ) -> None:
        ari_task = asyncio.create_task(ari_down.run(nothing))
        notifier = SystemdNotifier(
            {"NOTIFY_SOCKET": path_receiver.env_value, "WATCHDOG_USEC": "100000"}
        )
        with Pings(path_receiver) as pings:
            watchdog = asyncio.create_task(
                watchdog_loop(notifier, lambda: routing_alive(ari_down, ari_task))
            )
            await asyncio.sleep(0.5)
            assert ari_down.status.state in (AriState.CONNECTING, AriState.DISCONNECTED)
            # Asterisk down: reconnecting, pings go on (a restart would not help).
            assert len(pings.times) >= 5
            ari_task.cancel()  # the supervisor dies
            await asyncio.gather(ari_task, return_exceptions=True)
            died = time.monotonic()
            await asyncio.sleep(0.5)
            assert pings.between(died + 0.06, time.monotonic()) == 0
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def test_blocked_loop_sends_no_ping(
        self, path_receiver: Receiver, ari_down: AriClient
    ) -> None:
        ari_task = asyncio.create_task(ari_down.run(nothing))
        notifier = SystemdNotifier(
            {"NOTIFY_SOCKET": path_receiver.env_value, "WATCHDOG_USEC": "100000"}
        )
        with Pings(path_receiver) as pings:
            watchdog = asyncio.create_task(
                watchdog_loop(notifier, lambda: routing_alive(ari_down, ari_task))
            )
            await asyncio.sleep(0.3)
            blocked = time.monotonic()
            time.sleep(0.6)  # noqa: ASYNC251 - the point: the event loop is blocked
            unblocked = time.monotonic()
            await asyncio.sleep(0.3)
            assert pings.between(blocked + 0.01, unblocked - 0.01) == 0
            assert pings.between(unblocked, time.monotonic()) >= 2  # fed again
            watchdog.cancel()
            ari_task.cancel()
            await asyncio.gather(watchdog, ari_task, return_exceptions=True)


class FakeStatusAri:
    def __init__(self, state: AriState, since: datetime) -> None:
        self.status = AriConnectionStatus(state, since, 0, None)


class TestRoutingAlive:
    NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)

    @pytest.fixture
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        async def forever() -> None:
            await asyncio.Event().wait()

        task = asyncio.create_task(forever())
        yield task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def alive(
        self, state: AriState, seconds_in_state: float, task: asyncio.Task[None] | None
    ) -> bool:
        ari = FakeStatusAri(state, self.NOW - timedelta(seconds=seconds_in_state))
        return routing_alive(ari, task, now=lambda: self.NOW)

    @pytest.mark.parametrize(
        "state", [AriState.CONNECTED, AriState.CONNECTING, AriState.DISCONNECTED]
    )
    async def test_connected_or_getting_connected(
        self, running: asyncio.Task[None], state: AriState
    ) -> None:
        assert self.alive(state, 3600, running)

    async def test_no_supervisor_task(self) -> None:
        assert not self.alive(AriState.CONNECTED, 0, None)

    @pytest.mark.parametrize("state", [AriState.IDLE, AriState.CLOSED])
    async def test_idle_or_closed(self, running: asyncio.Task[None], state: AriState) -> None:
        assert not self.alive(state, 0, running)

    async def test_resync_hanging(self, running: asyncio.Task[None]) -> None:
        assert self.alive(AriState.RESYNCING, 2, running)
        assert not self.alive(AriState.RESYNCING, 11, running)
