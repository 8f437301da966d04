"""Unit tests of the MQTT publisher's buffer and retry semantics, without a broker.

A fake connection factory stands in for aiomqtt: it can be "down", hold
acknowledgements back, and lose the connection on demand. Time is a fake
monotonic clock, so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from pbxbridge.adapters.mqtt import (
    MqttConnection,
    MqttPublisher,
    MqttSettings,
    backoff_delay,
    subscribe,
)
from pbxbridge.adapters.mqtt.transport import describe as _describe

# ------------------------------------------------------------------ fakes


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeConnection:
    broker: FakeBroker
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    def send(
        self, topic: str, payload: bytes, qos: int, expiry_interval: int | None
    ) -> asyncio.Future[None]:
        # Tasks start in creation order, so the "wire" order is the call order.
        return asyncio.ensure_future(self._publish(topic, payload, qos, expiry_interval))

    async def _publish(
        self, topic: str, payload: bytes, qos: int, expiry_interval: int | None
    ) -> None:
        if self.lost.is_set():
            raise aiomqtt.MqttError("not connected")
        self.broker.wire.append((topic, payload, qos))
        self.broker.expiry[payload] = expiry_interval
        if payload == b"too big for the broker":
            self.lost.set()  # like mosquitto's max_packet_size: drop the connection
        if isinstance(self.broker.refuse, BaseException) and payload == b"poison":
            raise self.broker.refuse
        await self.broker.acks.wait()
        if self.lost.is_set():
            raise aiomqtt.MqttError("connection lost before PUBACK")
        self.broker.acked.append(payload)

    async def wait_closed(self) -> None:
        await self.lost.wait()
        raise aiomqtt.MqttError("Disconnected during message iteration")


class FakeBroker:
    """Records what reached the 'wire' and what was acknowledged."""

    def __init__(self, *, up: bool = True) -> None:
        self.up = up
        self.attempts = 0
        self.wire: list[tuple[str, bytes, int]] = []
        self.acked: list[bytes] = []
        self.expiry: dict[bytes, int | None] = {}
        self.acks = asyncio.Event()  # cleared: PUBACKs are held back
        self.acks.set()
        self.current: FakeConnection | None = None
        self.connected = asyncio.Event()
        self.refuse: BaseException | None = None

    @contextlib.asynccontextmanager
    async def connect(self, settings: MqttSettings) -> AsyncIterator[MqttConnection]:
        self.attempts += 1
        if not self.up:
            raise aiomqtt.MqttError("[Errno 111] Connection refused")
        self.current = FakeConnection(self)
        self.connected.set()
        try:
            yield self.current
        finally:
            self.current = None
            self.connected.clear()

    def drop(self, *, stay_down: bool = False) -> None:
        assert self.current is not None
        self.current.lost.set()
        self.up = not stay_down


def make_settings(**overrides: object) -> MqttSettings:
    values: dict[str, object] = {
        "client_id": "test",
        "backoff_initial": 0.001,
        "backoff_max": 0.002,
    }
    values.update(overrides)
    return MqttSettings(**values)  # type: ignore[arg-type]


def no_network(settings: MqttSettings) -> contextlib.AbstractAsyncContextManager[MqttConnection]:
    raise AssertionError("publish() must never connect")


async def until(predicate: object, within: float = 2.0) -> None:
    """Poll a condition on the objects under test (they offer no event for it)."""
    assert callable(predicate)
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(publisher.run())
    try:
        yield task
    finally:
        if not task.done():
            await publisher.close(timeout=0.5)
        await task


def queued_payloads(publisher: MqttPublisher) -> list[bytes]:
    return [m.payload for m in publisher._buffer]


# --------------------------------------------------------- publish() itself


def test_publish_is_synchronous_and_never_touches_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access from publish()")

    monkeypatch.setattr(socket, "socket", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    publisher = MqttPublisher(make_settings(buffer_size=100), connect=no_network)

    assert not inspect.iscoroutinefunction(MqttPublisher.publish)
    # No event loop is running here at all: publish() cannot be awaiting anything.
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    for i in range(10_000):
        publisher.publish("agents/a1/pop", b"%d" % i)

    status = publisher.status()
    assert status.queued == 100
    assert status.dropped_overflow == 9_900
    assert status.published == 0
    assert status.connect_attempts == 0
    assert not status.connected


def test_overflow_drops_the_oldest() -> None:
    publisher = MqttPublisher(make_settings(buffer_size=3), connect=no_network)
    for i in range(5):
        publisher.publish("t", b"%d" % i)
    assert queued_payloads(publisher) == [b"2", b"3", b"4"]
    assert publisher.status().dropped_overflow == 2


def test_full_buffer_discards_expired_messages_before_the_oldest_live_one() -> None:
    clock = FakeClock()
    publisher = MqttPublisher(make_settings(buffer_size=3), connect=no_network, clock=clock)
    publisher.publish("t", b"old-live")
    publisher.publish("t", b"ring", expires_at=clock.now + 5, kind="ringing")
    publisher.publish("t", b"answered")
    clock.now += 10
    publisher.publish("t", b"new")
    assert queued_payloads(publisher) == [b"old-live", b"answered", b"new"]
    status = publisher.status()
    assert status.dropped_stale == {"ringing": 1}
    assert status.dropped_overflow == 0


def test_topic_prefix_is_applied() -> None:
    publisher = MqttPublisher(make_settings(), connect=no_network)
    publisher.publish("agents/agent1/pop", b"x")
    assert publisher._buffer[0].topic == "pbxbridge/v1/agents/agent1/pop"
    bare = MqttPublisher(make_settings(topic_prefix=""), connect=no_network)
    bare.publish("a/b", b"x")
    assert bare._buffer[0].topic == "a/b"


@pytest.mark.parametrize("topic", ["", "/abs", "a/+/b", "a/#", "nul\0"])
def test_invalid_topics_are_refused_at_publish_time(topic: str) -> None:
    publisher = MqttPublisher(make_settings(), connect=no_network)
    with pytest.raises(ValueError):
        publisher.publish(topic, b"x")
    assert publisher.status().queued == 0


def test_payload_must_be_bytes() -> None:
    publisher = MqttPublisher(make_settings(), connect=no_network)
    with pytest.raises(TypeError):
        publisher.publish("t", "text")  # type: ignore[arg-type]


# ------------------------------------------------------------- the sender


async def test_drains_in_order_with_qos1() -> None:
    broker = FakeBroker()
    publisher = MqttPublisher(make_settings(), connect=broker.connect)
    for i in range(50):
        publisher.publish("agents/a1/pop", b"%d" % i)
    async with running(publisher):
        await until(lambda: publisher.status().published == 50)
        assert publisher.connected
    assert [p for _, p, _ in broker.wire] == [b"%d" % i for i in range(50)]
    assert {qos for _, _, qos in broker.wire} == {1}
    assert {t for t, _, _ in broker.wire} == {"pbxbridge/v1/agents/a1/pop"}


async def test_stale_messages_are_dropped_at_send_time_not_at_publish_time() -> None:
    clock = FakeClock()
    broker = FakeBroker(up=False)
    publisher = MqttPublisher(make_settings(), connect=broker.connect, clock=clock)
    publisher.publish("t", b"ring-1", expires_at=clock.now + 30, kind="ringing")
    publisher.publish("t", b"answered", kind="answered")
    publisher.publish("t", b"ring-2", expires_at=clock.now + 90, kind="ringing")
    async with running(publisher):
        await until(lambda: broker.attempts >= 3)
        assert publisher.status().queued == 3  # still fresh while waiting
        clock.now += 60  # ring-1 is now past its ring timeout, ring-2 is not
        broker.up = True
        await until(lambda: publisher.status().published == 2)
    assert broker.acked == [b"answered", b"ring-2"]
    assert publisher.status().dropped_stale == {"ringing": 1}
    # The remaining lifetime goes to the broker (MQTT 5 Message Expiry Interval).
    assert broker.expiry == {b"answered": None, b"ring-2": 30}


async def test_publish_does_not_wait_for_a_slow_broker() -> None:
    broker = FakeBroker()
    broker.acks.clear()  # the broker never acknowledges
    publisher = MqttPublisher(make_settings(max_inflight=2), connect=broker.connect)
    async with running(publisher):
        await broker.connected.wait()
        for i in range(10):
            publisher.publish("t", b"%d" % i)
        await until(lambda: len(broker.wire) == 2)
        await asyncio.sleep(0.01)
        status = publisher.status()
        # The window is respected; the rest waits in the buffer.
        assert (status.inflight, status.queued, len(broker.wire)) == (2, 8, 2)
        broker.acks.set()
        await until(lambda: publisher.status().published == 10)


async def test_unacknowledged_messages_are_resent_in_order_after_reconnect() -> None:
    broker = FakeBroker()
    broker.acks.clear()
    publisher = MqttPublisher(make_settings(max_inflight=3), connect=broker.connect)
    for i in range(5):
        publisher.publish("t", b"%d" % i)
    async with running(publisher):
        await until(lambda: len(broker.wire) == 3)
        broker.drop()  # connection lost with 0, 1, 2 on the wire, unacknowledged
        broker.acks.set()
        await until(lambda: publisher.status().published == 5)
    wire = [p for _, p, _ in broker.wire]
    # At least once: 0..2 went out twice (the first copies may have reached
    # subscribers), the order of first sends is kept, nothing is lost.
    assert wire[:3] == [b"0", b"1", b"2"]
    assert wire[3:] == [b"0", b"1", b"2", b"3", b"4"]
    assert broker.acked == [b"0", b"1", b"2", b"3", b"4"]
    status = publisher.status()
    assert status.requeued == 3
    assert status.connect_attempts == 2


async def test_a_retry_that_has_gone_stale_is_dropped() -> None:
    clock = FakeClock()
    broker = FakeBroker()
    broker.acks.clear()
    publisher = MqttPublisher(make_settings(), connect=broker.connect, clock=clock)
    publisher.publish("t", b"ring", expires_at=clock.now + 30, kind="ringing")
    publisher.publish("t", b"hangup", kind="hangup")
    async with running(publisher):
        await until(lambda: len(broker.wire) == 2)
        broker.drop(stay_down=True)
        await until(lambda: not publisher.connected and publisher.status().queued == 2)
        clock.now += 31
        broker.acks.set()
        broker.up = True
        await until(lambda: publisher.status().published == 1)
    assert broker.acked == [b"hangup"]
    assert publisher.status().dropped_stale == {"ringing": 1}


async def test_requeue_beyond_capacity_drops_the_oldest() -> None:
    broker = FakeBroker()
    broker.acks.clear()
    publisher = MqttPublisher(make_settings(buffer_size=2, max_inflight=2), connect=broker.connect)
    async with running(publisher):
        await broker.connected.wait()
        publisher.publish("t", b"0")
        publisher.publish("t", b"1")
        await until(lambda: len(broker.wire) == 2)
        publisher.publish("t", b"2")
        publisher.publish("t", b"3")
        broker.drop(stay_down=True)
        await until(lambda: not publisher.connected)
        assert queued_payloads(publisher) == [b"2", b"3"]
        assert publisher.status().dropped_overflow == 2
        broker.acks.set()
        broker.up = True
        await until(lambda: publisher.status().published == 2)


async def test_message_refused_by_the_client_is_dropped_not_retried_forever() -> None:
    broker = FakeBroker()
    broker.refuse = ValueError("payload refused")
    publisher = MqttPublisher(make_settings(), connect=broker.connect)
    publisher.publish("t", b"poison")
    publisher.publish("t", b"fine")
    async with running(publisher):
        await until(lambda: publisher.status().published == 1)
    status = publisher.status()
    assert status.dropped_error == 1
    assert broker.attempts == 1  # not a connection problem: no reconnect


async def test_a_message_that_kills_every_connection_is_eventually_dropped() -> None:
    broker = FakeBroker()
    publisher = MqttPublisher(make_settings(max_inflight=1), connect=broker.connect)
    publisher.publish("t", b"before")
    publisher.publish("t", b"too big for the broker")
    publisher.publish("t", b"after")
    async with running(publisher):
        await until(lambda: publisher.status().published == 2)
    assert broker.acked == [b"before", b"after"]
    status = publisher.status()
    assert status.dropped_error == 1
    assert broker.attempts == 6  # 5 connections died on it, the 6th delivered "after"


async def test_reconnects_forever_while_down_and_keeps_messages() -> None:
    broker = FakeBroker(up=False)
    publisher = MqttPublisher(make_settings(), connect=broker.connect)
    publisher.publish("t", b"waiting")
    async with running(publisher):
        await until(lambda: broker.attempts >= 5)
        status = publisher.status()
        assert not status.connected
        assert status.queued == 1
        assert status.consecutive_failures >= 4
        assert status.last_error is not None and "Connection refused" in status.last_error
        broker.up = True
        await until(lambda: publisher.status().published == 1)
        assert publisher.status().last_error is None


# ----------------------------------------------------------------- close()


async def test_close_flushes_the_buffer() -> None:
    broker = FakeBroker()
    publisher = MqttPublisher(make_settings(), connect=broker.connect)
    task = asyncio.create_task(publisher.run())
    await broker.connected.wait()
    for i in range(20):
        publisher.publish("t", b"%d" % i)
    assert await publisher.close(timeout=2.0) == 0
    await task  # run() ended normally
    assert len(broker.acked) == 20
    assert not publisher.connected


async def test_close_gives_up_after_timeout_when_broker_is_down() -> None:
    broker = FakeBroker(up=False)
    publisher = MqttPublisher(
        make_settings(backoff_initial=0.05, backoff_max=0.05), connect=broker.connect
    )
    task = asyncio.create_task(publisher.run())
    publisher.publish("t", b"a")
    publisher.publish("t", b"b")
    await until(lambda: broker.attempts >= 1)
    assert await publisher.close(timeout=0.1) == 2
    await task  # no CancelledError leaks out of run()
    assert broker.attempts >= 2  # it kept trying while close() waited
    publisher.publish("t", b"late")
    status = publisher.status()
    assert status.dropped_closed == 3
    assert status.queued == 0
    await publisher.run()  # after close(): returns at once


async def test_close_before_run_started() -> None:
    publisher = MqttPublisher(make_settings(), connect=no_network)
    task = asyncio.create_task(publisher.run())  # not started yet
    assert await publisher.close(timeout=0.1) == 0
    await task


async def test_close_with_empty_buffer_does_not_sit_out_the_backoff() -> None:
    broker = FakeBroker(up=False)
    publisher = MqttPublisher(
        make_settings(backoff_initial=60.0, backoff_max=60.0), connect=broker.connect
    )
    task = asyncio.create_task(publisher.run())
    await until(lambda: broker.attempts == 1)
    assert await publisher.close(timeout=30.0) == 0
    assert task.done()


async def test_close_without_run_counts_unsent() -> None:
    publisher = MqttPublisher(make_settings(), connect=no_network)
    publisher.publish("t", b"x")
    assert await publisher.close(timeout=0.1) == 1


async def test_external_cancel_propagates_and_keeps_the_buffer() -> None:
    broker = FakeBroker(up=False)
    publisher = MqttPublisher(make_settings(), connect=broker.connect)
    publisher.publish("t", b"x")
    task = asyncio.create_task(publisher.run())
    await until(lambda: broker.attempts >= 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert publisher.status().queued == 1
    broker.up = True
    async with running(publisher):  # may be started again
        await until(lambda: publisher.status().published == 1)


async def test_run_twice_concurrently_is_refused() -> None:
    broker = FakeBroker(up=False)
    publisher = MqttPublisher(make_settings(), connect=broker.connect)
    async with running(publisher):
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await publisher.run()


# ------------------------------------------------------------ accounting


@settings(max_examples=200, deadline=None)
@given(
    buffer_size=st.integers(1, 8),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.one_of(st.none(), st.integers(0, 20))),
            st.tuples(st.just("tick"), st.integers(1, 10)),
        ),
        max_size=60,
    ),
)
def test_every_message_is_accounted_for_and_order_is_kept(
    buffer_size: int, ops: list[tuple[str, int | None]]
) -> None:
    clock = FakeClock()
    publisher = MqttPublisher(
        make_settings(buffer_size=buffer_size), connect=no_network, clock=clock
    )
    published = 0
    for op, value in ops:
        if op == "tick":
            assert value is not None
            clock.now += value
            continue
        expires = None if value is None else clock.now + value
        publisher.publish("t", b"%d" % published, expires_at=expires, kind="k")
        published += 1
        # The message just published is never the one dropped.
        assert publisher._buffer[-1].payload == b"%d" % (published - 1)
    status = publisher.status()
    assert status.queued <= buffer_size
    assert status.queued + status.dropped_overflow + status.dropped_stale_total == published
    order = [int(p) for p in queued_payloads(publisher)]
    assert order == sorted(order)


# ------------------------------------------------------------- settings etc.


def test_password_is_never_shown() -> None:
    settings_ = make_settings(username="pbxbridge", password="s3cret")
    assert "s3cret" not in repr(settings_)
    assert "s3cret" not in str(settings_)
    publisher = MqttPublisher(settings_, connect=no_network)
    assert "s3cret" not in json.dumps(publisher.status().as_dict())


@pytest.mark.parametrize(
    "overrides",
    [
        {"password": "x"},  # without username
        {"ca_file": "/ca.pem"},  # without tls
        {"tls": True, "key_file": "/k.pem"},  # key without cert
        {"topic_prefix": "a/"},
        {"topic_prefix": "a/#"},
        {"qos": 2},
        {"buffer_size": 0},
        {"port": 70000},
        {"backoff_initial": 5.0, "backoff_max": 1.0},
        {"connect_timeout": 0.0},
        {"host": "unix:run/mqtt.sock"},  # relative socket path
        {"host": "unix:/run/mqtt.sock", "tls": True},
        {"host": "unix:/run/mqtt.sock", "port": 1883},
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_settings(**overrides)


def test_default_port_follows_tls() -> None:
    assert make_settings().effective_port == 1883
    assert make_settings(tls=True).effective_port == 8883
    assert make_settings(tls=True, port=18883).effective_port == 18883


def test_unix_socket_host_names_its_path() -> None:
    assert make_settings(host="unix:/run/mosquitto/mqtt.sock").unix_path == (
        "/run/mosquitto/mqtt.sock"
    )
    assert make_settings(host="broker.local").unix_path is None
    env = {"PBXBRIDGE_MQTT_HOST": "unix:/run/mosquitto/mqtt.sock"}
    assert MqttSettings.from_env(env).unix_path == "/run/mosquitto/mqtt.sock"


def test_default_client_ids_differ_per_process_and_host() -> None:
    client_id = MqttSettings().client_id
    assert client_id.startswith("pbxbridge-")
    assert client_id.endswith(f"-{os.getpid()}")


def test_settings_from_env() -> None:
    env = {
        "PBXBRIDGE_MQTT_HOST": "broker.local",
        "PBXBRIDGE_MQTT_PORT": "18883",
        "PBXBRIDGE_MQTT_USER": "pbxbridge",
        "PBXBRIDGE_MQTT_PASSWORD": "pw",
        "PBXBRIDGE_MQTT_TLS": "yes",
        "PBXBRIDGE_MQTT_CA_FILE": "/etc/ssl/ca.pem",
        "PBXBRIDGE_MQTT_TOPIC_PREFIX": "site1/pbx",
        "PBXBRIDGE_MQTT_BUFFER_SIZE": "50",
    }
    s = MqttSettings.from_env(env)
    assert (s.host, s.effective_port, s.username, s.password, s.tls) == (
        "broker.local",
        18883,
        "pbxbridge",
        "pw",
        True,
    )
    assert (s.ca_file, s.topic_prefix, s.buffer_size) == ("/etc/ssl/ca.pem", "site1/pbx", 50)
    defaults = MqttSettings.from_env({})
    assert (defaults.host, defaults.effective_port, defaults.username) == ("127.0.0.1", 1883, None)
    assert defaults.topic_prefix == "pbxbridge/v1"
    with pytest.raises(ValueError, match="PORT"):
        MqttSettings.from_env({"PBXBRIDGE_MQTT_PORT": "mqtt"})
    with pytest.raises(ValueError, match="TLS"):
        MqttSettings.from_env({"PBXBRIDGE_MQTT_TLS": "maybe"})


def test_backoff_is_capped_exponential_with_jitter() -> None:
    assert backoff_delay(1, 0.5, 10.0, rand=lambda: 0.0) == 0.25
    assert backoff_delay(1, 0.5, 10.0, rand=lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 10.0, rand=lambda: 1.0) == 2.0
    assert backoff_delay(50, 0.5, 10.0, rand=lambda: 1.0) == 10.0
    assert backoff_delay(10_000, 0.5, 10.0, rand=lambda: 0.0) == 5.0  # never below half


def test_auth_refusal_is_described_as_such() -> None:
    code = ReasonCode(PacketTypes.CONNACK, identifier=135)
    text = _describe(MqttConnectError(code))
    assert "Not authorized" in text and "password" in text
    assert "Connection refused" in _describe(aiomqtt.MqttError("[Errno 111] Connection refused"))


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "a+/b", "/x"])
async def test_subscribe_rejects_invalid_filters(topic_filter: str) -> None:
    iterator = subscribe(make_settings(), topic_filter)
    with pytest.raises(ValueError):
        await anext(iterator)
