"""The shared connection supervisor and keyed dispatcher (pbxbridge.adapters.connection/.dispatch).

The ARI, AMI and MQTT client tests exercise both through real (fake-server)
connections; these pin the policy itself, without any network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from pbxbridge.adapters.connection import (
    ConnectionState,
    ConnectionStatus,
    ConnectionSupervisor,
    SessionEnd,
    backoff_delay,
    is_milestone,
)
from pbxbridge.adapters.dispatch import KeyedDispatcher


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition on the object under test (it offers no event for it)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def supervisor(**kw: object) -> ConnectionSupervisor:
    options: dict[str, object] = {
        "owner": "TestClient",
        "log_prefix": "test.",
        "log_fields": {"host": "h"},
        "backoff_initial": 0.002,
        "backoff_max": 0.05,
        "task_name": "test-loop",
        "rand": lambda: 0.0,
    }
    options.update(kw)
    return ConnectionSupervisor(**options)  # type: ignore[arg-type]


def scripted(
    ends: list[Callable[[], SessionEnd]], sup: ConnectionSupervisor, seen: list[ConnectionStatus]
) -> Callable[[], asyncio.Future[SessionEnd]]:
    """A session that plays back ``ends`` and records the status at each start."""

    async def session() -> SessionEnd:
        seen.append(sup.status())
        if len(seen) > len(ends):
            await asyncio.Event().wait()  # park: the test is done
        return ends[len(seen) - 1]()

    return session  # type: ignore[return-value]


async def test_failures_count_up_reset_after_a_healthy_connection_and_log_by_milestones() -> None:
    sup = supervisor()
    seen: list[ConnectionStatus] = []
    loop = asyncio.get_running_loop()
    ends: list[Callable[[], SessionEnd]] = [
        lambda: SessionEnd("refused"),
        lambda: SessionEnd("refused"),
        lambda: SessionEnd("refused"),
        lambda: SessionEnd("refused"),
        lambda: SessionEnd("dropped after a long time", opened_at=loop.time() - 10),
        lambda: SessionEnd("dropped at once", opened_at=loop.time()),
    ]
    with capture_logs() as logs:
        task = asyncio.create_task(sup.run(scripted(ends, sup, seen)))
        await until(lambda: len(seen) >= 7)
        await sup.stop()
        await task
    assert [s.failures for s in seen] == [0, 1, 2, 3, 4, 0, 1]
    assert seen[6].last_error == "dropped at once"
    assert all(s.state is ConnectionState.CONNECTING for s in seen)
    failed = [
        (e["log_level"], e["failures"]) for e in logs if e["event"] == "test.connection_failed"
    ]
    assert failed == [("warning", 1), ("warning", 2), ("debug", 3), ("warning", 4), ("warning", 1)]
    disconnected = [e for e in logs if e["event"] == "test.disconnected"]
    assert len(disconnected) == 1 and disconnected[0]["host"] == "h"
    assert disconnected[0]["reason"] == "dropped after a long time"
    assert sup.status().state is ConnectionState.CLOSED


async def test_replaced_backs_off_to_the_cap_and_a_crash_does_not_end_the_loop() -> None:
    sup = supervisor(backoff_initial=0.001, backoff_max=0.2, rand=lambda: 1.0)
    seen: list[ConnectionStatus] = []
    stamps: list[float] = []

    def crash() -> SessionEnd:
        raise ZeroDivisionError("bug")

    def replaced() -> SessionEnd:
        stamps.append(time.monotonic())
        return SessionEnd("replaced", opened_at=0.0, replaced=True)

    with capture_logs() as logs:
        task = asyncio.create_task(sup.run(scripted([crash, replaced], sup, seen)))
        await until(lambda: len(seen) >= 3)
        waited = time.monotonic() - stamps[0]
        await sup.stop()
        await task
    assert [e["event"] for e in logs if e["event"] == "test.session_crashed"] == [
        "test.session_crashed"
    ]
    assert seen[1].last_error == "ZeroDivisionError: bug"
    assert waited >= 0.19  # straight to the 0.2 s cap, not 0.002 s for failure 2


async def test_final_end_returns_and_forget_error_on_connect() -> None:
    sup = supervisor(forget_error_on_connect=True)
    calls = 0

    async def session() -> SessionEnd:
        nonlocal calls
        calls += 1
        if calls == 1:
            return SessionEnd("refused")
        assert sup.status().last_error == "refused"
        sup.set_state(ConnectionState.CONNECTED)
        assert sup.connected and sup.status().last_error is None
        return SessionEnd("done", final=True)

    async with asyncio.timeout(5):
        await sup.run(session)
    assert calls == 2
    assert sup.status().state is ConnectionState.IDLE  # ended by itself, not stopped


async def test_interrupt_backoff_ends_only_the_wait_in_progress() -> None:
    sup = supervisor(backoff_initial=10.0, backoff_max=10.0)
    seen: list[ConnectionStatus] = []
    task = asyncio.create_task(
        sup.run(scripted([lambda: SessionEnd("refused"), lambda: SessionEnd("refused")], sup, seen))
    )
    await until(lambda: sup.state is ConnectionState.DISCONNECTED)
    sup.interrupt_backoff()
    await until(lambda: len(seen) >= 2 and sup.state is ConnectionState.DISCONNECTED)
    await asyncio.sleep(0.05)
    assert len(seen) == 2  # the second wait keeps its full 5-10 s
    await sup.stop()
    await task


async def test_run_twice_or_after_stop_is_refused_and_since_moves_with_the_state() -> None:
    sup = supervisor()
    first = sup.status()
    sup.set_state(ConnectionState.IDLE)
    assert sup.status().since == first.since
    task = asyncio.create_task(sup.run(lambda: asyncio.Event().wait()))  # type: ignore[arg-type,return-value]
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match=r"TestClient.run\(\) is already active"):
        await sup.run(lambda: asyncio.Event().wait())  # type: ignore[arg-type,return-value]
    assert sup.status().since >= first.since
    await sup.stop()
    await task
    with pytest.raises(RuntimeError, match="TestClient is closed"):
        await sup.run(lambda: asyncio.Event().wait())  # type: ignore[arg-type,return-value]


async def test_a_cancel_from_outside_propagates() -> None:
    sup = supervisor()
    task = asyncio.create_task(sup.run(lambda: asyncio.Event().wait()))  # type: ignore[arg-type,return-value]
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sup.status().state is ConnectionState.IDLE


def test_status_shape_is_the_same_for_every_connection() -> None:
    sup = supervisor()
    status = sup.status(ami_version="9.0.0")
    body = status.as_dict()
    assert list(body) == ["state", "since", "failures", "last_error", "ami_version"]
    assert body["state"] == "idle" and body["failures"] == 0
    assert status.consecutive_failures == status.failures and not status.connected


def test_backoff_and_milestones() -> None:
    assert backoff_delay(1, 0.5, 10.0, rand=lambda: 0.0) == 0.25
    assert backoff_delay(4, 0.5, 10.0, rand=lambda: 1.0) == 4.0
    assert backoff_delay(10**9, 0.5, 10.0, rand=lambda: 1.0) == 10.0
    assert [n for n in range(0, 20) if is_milestone(n)] == [1, 2, 4, 8, 16]


# ---------------------------------------------------------------- dispatcher


async def test_dispatcher_keeps_order_per_key_and_runs_keys_concurrently() -> None:
    dispatcher: KeyedDispatcher[tuple[str | None, int]] = KeyedDispatcher(
        key=lambda event: event[0],
        failure_event="test.handler_failed",
        describe=lambda event: {"n": event[1]},
    )
    gate = asyncio.Event()
    done: list[tuple[str | None, int]] = []

    async def handler(event: tuple[str | None, int]) -> None:
        if event == ("a", 1):
            await gate.wait()  # holds lane "a" only
        if event == ("b", 2):
            raise ValueError("boom")
        done.append(event)

    with capture_logs() as logs:
        for event in [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 3), (None, 1), ("a", 3)]:
            dispatcher.dispatch(event, handler)
        await until(lambda: len(done) >= 3)
        assert sorted(done, key=str) == sorted([("b", 1), ("b", 3), (None, 1)], key=str)
        gate.set()
        await dispatcher.finish(grace=5)
    assert [e for e in done if e[0] == "a"] == [("a", 1), ("a", 2), ("a", 3)]
    assert [(e["event"], e["n"], e["key"]) for e in logs] == [("test.handler_failed", 2, "b")]
    assert dispatcher.pending == 0


async def test_dispatcher_finish_cancels_after_the_grace() -> None:
    dispatcher: KeyedDispatcher[str] = KeyedDispatcher(
        key=lambda event: event, failure_event="x", describe=lambda event: {}
    )
    cancelled = asyncio.Event()

    async def stuck(_: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    dispatcher.dispatch("k", stuck)
    await asyncio.sleep(0)
    started = time.monotonic()
    await dispatcher.finish(grace=0.05)
    assert cancelled.is_set() and time.monotonic() - started < 1.0
