"""The MQTT publisher against real mosquitto brokers (private ones, free ports).

Subscribers here play the agents' desktop clients: their own aiomqtt clients
with a reconnect loop and, where a test restarts the broker, a persistent session
(``clean_session=False`` plus broker persistence), so that what the publisher
sends while they are still reconnecting is queued for them as it would be in
production.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from pbxbridge.adapters.mqtt import MqttPublisher, MqttSettings, subscribe
from tests.mosquitto import MosquittoBroker, mosquitto_available

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

ACL_EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "mosquitto-acl.example"


# ------------------------------------------------------------------ helpers


async def until(predicate: Callable[[], bool], within: float = 5.0, what: str = "") -> None:
    """Poll a condition on the objects under test (they offer no event for it)."""
    try:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or predicate}") from None


class Collector:
    """A subscribing client with its own reconnect loop.

    Args:
        broker: The broker.
        topic_filter: Full topic filter to subscribe to.
        username: User name (``None``: anonymous).
        password: Password.
        persistent: Keep the session (and queued QoS 1 messages) across
            disconnects, like an agent's desktop client.
        tls_context: For TLS brokers.
    """

    def __init__(
        self,
        broker: MosquittoBroker,
        topic_filter: str,
        *,
        username: str | None = None,
        password: str | None = None,
        persistent: bool = False,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.broker = broker
        self.topic_filter = topic_filter
        self.username = username
        self.password = password
        self.persistent = persistent
        self.tls_context = tls_context
        self.identifier = f"collector-{uuid.uuid4().hex[:8]}"
        self.messages: list[aiomqtt.Message] = []
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]

    def start(self) -> None:
        self.subscribed.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.username,
                    password=self.password,
                    identifier=self.identifier,
                    clean_session=not self.persistent,
                    tls_context=self.tls_context,
                    timeout=2,
                ) as client:
                    await client.subscribe(self.topic_filter, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self.messages.append(message)
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(0.05)


def publisher_settings(broker: MosquittoBroker, **overrides: object) -> MqttSettings:
    values: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": f"pbxbridge-test-{uuid.uuid4().hex[:8]}",
        "keepalive": 5,
        "connect_timeout": 2.0,
        "publish_timeout": 5.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
    }
    values.update(overrides)
    return MqttSettings(**values)  # type: ignore[arg-type]


def client_tls_context(ca_file: Path, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


# ----------------------------------------------------------------- fixtures


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    brokers: list[MosquittoBroker] = []

    def factory(*, start: bool = True, **kwargs: object) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"broker{len(brokers)}", **kwargs)  # type: ignore[arg-type]
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield factory
    for broker in brokers:
        broker.close()


@pytest.fixture
async def make_publisher() -> AsyncIterator[Callable[[MqttSettings], MqttPublisher]]:
    running: list[tuple[MqttPublisher, asyncio.Task[None]]] = []

    def factory(settings: MqttSettings) -> MqttPublisher:
        publisher = MqttPublisher(settings)
        running.append((publisher, asyncio.create_task(publisher.run())))
        return publisher

    yield factory
    await asyncio.gather(*(publisher.close(timeout=0.5) for publisher, _ in running))
    await asyncio.gather(*(task for _, task in running))


@pytest.fixture
async def collectors() -> AsyncIterator[list[Collector]]:
    started: list[Collector] = []
    yield started
    for collector in started:
        await collector.stop()


async def started(collector: Collector, registry: list[Collector]) -> Collector:
    registry.append(collector)
    collector.start()
    async with asyncio.timeout(5):
        await collector.subscribed.wait()
    return collector


# -------------------------------------------------------------------- tests


@pytest.mark.parametrize("mqtt_version", ["5", "3.1.1"])
async def test_subscriber_receives_exactly_the_payload_with_qos1(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
    collectors: list[Collector],
    mqtt_version: str,
) -> None:
    broker = make_broker()
    agent = await started(Collector(broker, "pbxbridge/v1/#"), collectors)
    publisher = make_publisher(publisher_settings(broker, mqtt_version=mqtt_version))
    payload = '{"call":"1700000000.42","caller":"+49 4407 73-0","name":"Jörg Müller"}'.encode()
    payload += bytes(range(256))  # binary-safe, not only UTF-8

    publisher.publish("agents/agent1/pop", payload, kind="ringing")

    await until(lambda: len(agent.messages) == 1, what="the message")
    await until(lambda: publisher.status().published == 1, what="the PUBACK")
    message = agent.messages[0]
    assert message.topic.value == "pbxbridge/v1/agents/agent1/pop"
    assert message.payload == payload
    assert message.qos == 1
    assert message.retain is False
    status = publisher.status()
    assert (status.connected, status.published, status.queued, status.inflight) == (True, 1, 0, 0)


async def test_messages_wait_for_the_broker_and_stale_ones_are_dropped(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
    collectors: list[Collector],
) -> None:
    broker = make_broker(persistence=True)
    # The agent's persistent subscription exists before the broker goes down.
    agent = await started(Collector(broker, "pbxbridge/v1/#", persistent=True), collectors)
    broker.stop()

    publisher = make_publisher(publisher_settings(broker))
    now = time.monotonic()
    publisher.publish("agents/a1/pop", b"m0", kind="answered")
    publisher.publish("agents/a1/pop", b"m1", expires_at=now + 0.3, kind="ringing")
    publisher.publish("agents/a1/pop", b"m2", kind="hangup")
    publisher.publish("agents/a1/pop", b"m3", expires_at=now + 0.3, kind="ringing")
    publisher.publish("agents/a1/pop", b"m4", expires_at=now + 60, kind="ringing")
    await until(lambda: publisher.status().connect_attempts >= 2, what="retries")
    await asyncio.sleep(max(0.0, now + 0.5 - time.monotonic()))
    status = publisher.status()
    assert not status.connected
    assert status.queued == 5
    assert status.last_error is not None and "refused" in status.last_error.lower()

    broker.start()

    await until(lambda: len(agent.messages) >= 3, what="the three live messages")
    assert agent.payloads == [b"m0", b"m2", b"m4"]
    # The subscriber may see a message before the publisher has processed its PUBACK.
    await until(lambda: publisher.status().published == 3, what="the last PUBACK")
    status = publisher.status()
    assert status.dropped_stale == {"ringing": 2}
    assert (status.published, status.queued, status.dropped_overflow) == (3, 0, 0)


async def test_delivery_resumes_after_a_broker_restart(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
    collectors: list[Collector],
) -> None:
    broker = make_broker(persistence=True)
    agent = await started(Collector(broker, "pbxbridge/v1/#", persistent=True), collectors)
    publisher = make_publisher(publisher_settings(broker))
    total = 120

    async def produce() -> None:
        for i in range(total):
            publisher.publish("agents/a1/pop", b"%d" % i)
            await asyncio.sleep(0.025)  # ~3 s of traffic

    producer = asyncio.create_task(produce())
    await until(lambda: len(agent.messages) >= 20, what="traffic before the outage")
    broker.stop()
    await until(lambda: not publisher.connected, what="the publisher to notice")
    await asyncio.sleep(2.0)
    assert publisher.status().queued > 0  # published meanwhile, waiting
    broker.start()
    await producer

    expected = [b"%d" % i for i in range(total)]
    await until(lambda: set(agent.payloads) >= set(expected), within=10, what="all messages")
    # At least once, in order: after removing repeats, the sequence is exact.
    first_seen = list(dict.fromkeys(agent.payloads))
    assert first_seen == expected
    await until(lambda: publisher.status().published == total, what="the last PUBACK")
    status = publisher.status()
    assert status.connected
    assert status.published == total
    assert status.connect_attempts >= 2
    assert status.dropped_overflow == status.dropped_stale_total == 0


async def test_wrong_password_is_reported_without_hammering_the_broker(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
) -> None:
    broker = make_broker(users={"pbxbridge": "correct horse"})
    wrong = make_publisher(
        publisher_settings(
            broker,
            username="pbxbridge",
            password="battery staple",
            backoff_initial=0.2,
            backoff_max=1.0,
        )
    )
    wrong.publish("agents/a1/pop", b"x")
    right = make_publisher(
        publisher_settings(broker, username="pbxbridge", password="correct horse")
    )
    right.publish("agents/a1/pop", b"x")

    await asyncio.sleep(1.5)

    status = wrong.status()
    assert not status.connected
    assert status.last_error is not None
    assert "refused" in status.last_error and "password" in status.last_error
    assert "battery" not in status.last_error
    # Backoff: 0.1-0.2 s, then 0.2-0.4, 0.4-0.8, 0.5-1.0 ... → at most 6 in 1.5 s.
    assert 2 <= status.connect_attempts <= 6
    assert status.queued == 1
    await until(lambda: right.status().published == 1, what="the right password to work")


async def test_tls_with_a_client_certificate(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
    collectors: list[Collector],
) -> None:
    broker = make_broker(tls=True)
    pki = broker.tls_files
    assert pki is not None
    agent = await started(
        Collector(
            broker,
            "pbxbridge/v1/#",
            tls_context=client_tls_context(pki.ca_file, pki.client_cert, pki.client_key),
        ),
        collectors,
    )
    good = make_publisher(
        publisher_settings(
            broker,
            tls=True,
            ca_file=str(pki.ca_file),
            cert_file=str(pki.client_cert),
            key_file=str(pki.client_key),
        )
    )
    untrusted = make_publisher(
        publisher_settings(
            broker,
            tls=True,
            ca_file=str(pki.other_ca_file),
            cert_file=str(pki.client_cert),
            key_file=str(pki.client_key),
        )
    )
    no_client_cert = make_publisher(publisher_settings(broker, tls=True, ca_file=str(pki.ca_file)))
    for publisher in (good, untrusted, no_client_cert):
        publisher.publish("agents/a1/pop", b"over TLS")

    await until(lambda: agent.payloads == [b"over TLS"], what="the TLS message")
    await until(
        lambda: (
            untrusted.status().consecutive_failures >= 1
            and no_client_cert.status().consecutive_failures >= 1
        ),
        what="failed attempts",
    )
    bad = untrusted.status()
    assert not bad.connected and bad.queued == 1
    assert bad.last_error is not None and "certificate verify failed" in bad.last_error
    refused = no_client_cert.status()
    assert not refused.connected and refused.queued == 1
    assert refused.last_error is not None and "no CONNACK" in refused.last_error
    assert agent.payloads == [b"over TLS"]


async def test_acl_example_keeps_agents_apart(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
    collectors: list[Collector],
) -> None:
    users = {"pbxbridge": "d", "agent1": "a1", "agent2": "a2", "pbxbridge-watch": "w"}
    broker = make_broker(users=users, acl_file=ACL_EXAMPLE)
    # agent1 tries to read every agent's pops; the ACL must narrow that down.
    agent1 = await started(
        Collector(broker, "pbxbridge/v1/agents/#", username="agent1", password="a1"), collectors
    )
    agent2 = await started(
        Collector(broker, "pbxbridge/v1/agents/agent2/#", username="agent2", password="a2"),
        collectors,
    )
    watch_settings = publisher_settings(broker, username="pbxbridge-watch", password="w")
    watched: list[tuple[str, bytes]] = []

    async def watch() -> None:
        async with contextlib.aclosing(subscribe(watch_settings, "agents/#")) as stream:
            async for item in stream:
                watched.append(item)

    watcher = asyncio.create_task(watch())
    daemon = make_publisher(publisher_settings(broker, username="pbxbridge", password="d"))
    # subscribe() offers no "subscribed" event: publish a warm-up message until the
    # watcher sees one. (Outside every agent's subtree: no agent may see it.)
    async with asyncio.timeout(5):
        while not watched:
            daemon.publish("agents/warm-up/pop", b"warm-up")
            await asyncio.sleep(0.05)
    watched.clear()

    # agent1 must not be able to fake a pop for agent2 either.
    async with aiomqtt.Client(
        broker.host, broker.port, username="agent1", password="a1", identifier="agent1-forger"
    ) as forger:
        await forger.publish("pbxbridge/v1/agents/agent2/pop", b"forged", qos=1)

    daemon.publish("agents/agent2/pop", b"for agent2")
    daemon.publish("agents/agent1/pop", b"for agent1")
    daemon.publish("agents/agent2/pop", b"end agent2")
    daemon.publish("agents/agent1/pop", b"end agent1")

    # Same publisher, same broker: once the last message is in, earlier ones are too.
    await until(lambda: b"end agent1" in agent1.payloads, what="agent1's messages")
    await until(lambda: b"end agent2" in agent2.payloads, what="agent2's messages")
    await until(lambda: len(watched) == 4, what="the watcher")
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher

    assert agent1.payloads == [b"for agent1", b"end agent1"]
    assert agent2.payloads == [b"for agent2", b"end agent2"]
    assert [t for t, _ in watched] == [
        "pbxbridge/v1/agents/agent2/pop",
        "pbxbridge/v1/agents/agent1/pop",
    ] * 2
    await until(lambda: daemon.status().inflight == 0, what="the last PUBACK")
    assert daemon.status().published >= 5


async def test_broker_drops_expired_pops_for_offline_agents(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
    collectors: list[Collector],
) -> None:
    # pbxbridge sent the pop in time, but the agent's client was offline; with
    # MQTT 5 the broker must not hand it over late when the client comes back.
    broker = make_broker()
    agent = await started(Collector(broker, "pbxbridge/v1/#", persistent=True), collectors)
    await agent.stop()  # offline, session kept
    publisher = make_publisher(publisher_settings(broker))
    publisher.publish(
        "agents/a1/pop", b"ringing", expires_at=time.monotonic() + 1.0, kind="ringing"
    )
    publisher.publish("agents/a1/pop", b"answered")
    await until(lambda: publisher.status().published == 2, what="the broker's acks")
    # mosquitto counts expiry in whole seconds and expires only once its clock
    # is strictly past the deadline: a 1 s interval can take almost 2 s.
    await asyncio.sleep(2.1)

    agent.start()
    await until(lambda: len(agent.messages) >= 1, what="the queued message")
    await asyncio.sleep(0.2)
    assert agent.payloads == [b"answered"]
    assert publisher.status().dropped_stale == {}


async def test_a_broker_that_never_answers_leaves_no_connections_behind() -> None:
    # Accepts TCP connections and then says nothing (an overloaded or wedged
    # broker). Every timed-out attempt must close its socket: a daemon retrying
    # for days must not pile up half-open connections.
    open_connections: set[asyncio.StreamWriter] = set()
    accepted = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        open_connections.add(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):
                pass
        open_connections.discard(writer)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = MqttSettings(
        host="127.0.0.1",
        port=port,
        client_id="never-answered",
        connect_timeout=0.3,
        backoff_initial=0.05,
        backoff_max=0.1,
    )
    publisher = MqttPublisher(settings)
    publisher.publish("t", b"x")
    task = asyncio.create_task(publisher.run())
    try:
        await until(lambda: accepted >= 3, what="several attempts")
        await asyncio.sleep(0.2)
        status = publisher.status()
        assert not status.connected
        assert status.last_error is not None and "no CONNACK" in status.last_error
        # At most the attempt in progress is still open.
        assert len(open_connections) <= 1, f"{len(open_connections)} of {accepted} left open"
    finally:
        await publisher.close(timeout=0.1)
        await task
        server.close()


async def test_acl_example_keeps_escaped_agent_ids_apart(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
    collectors: list[Collector],
) -> None:
    # Both became J_rg_M_ller (one topic) before topic_segment was injective.
    from pbxbridge.core.screenpop import topic_segment
    from pbxbridge.tracking.call_tracker import agent_topic_relative

    mueller, moeller = topic_segment("Jörg Müller"), topic_segment("Jörg Möller")
    assert mueller != moeller
    users = {"pbxbridge": "d", mueller: "m1", moeller: "m2"}
    broker = make_broker(users=users, acl_file=ACL_EXAMPLE)
    one = await started(
        Collector(broker, "pbxbridge/v1/agents/#", username=mueller, password="m1"), collectors
    )
    two = await started(
        Collector(broker, "pbxbridge/v1/agents/#", username=moeller, password="m2"), collectors
    )
    daemon = make_publisher(publisher_settings(broker, username="pbxbridge", password="d"))
    daemon.publish(agent_topic_relative("Jörg Müller"), b"for Mueller")
    daemon.publish(agent_topic_relative("Jörg Möller"), b"for Moeller")
    daemon.publish(agent_topic_relative("Jörg Müller"), b"end Mueller")
    daemon.publish(agent_topic_relative("Jörg Möller"), b"end Moeller")
    await until(lambda: b"end Mueller" in one.payloads, what="Müller's pops")
    await until(lambda: b"end Moeller" in two.payloads, what="Möller's pops")
    assert one.payloads == [b"for Mueller", b"end Mueller"]
    assert two.payloads == [b"for Moeller", b"end Moeller"]
    assert {m.topic.value for m in one.messages} == {
        "pbxbridge/v1/agents/J%C3%B6rg%20M%C3%BCller/screenpop"
    }


async def test_watch_subscriber_resumes_after_a_broker_restart_and_closes_cleanly(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
) -> None:
    """subscribe() (pbxbridge watch) runs on the shared connection supervisor."""
    broker = make_broker()
    publisher = make_publisher(publisher_settings(broker))
    settings = publisher_settings(broker, backoff_initial=0.1, backoff_max=0.5)
    received: list[bytes] = []

    async def watch() -> None:
        async with contextlib.aclosing(subscribe(settings, "agents/#")) as messages:
            async for _, payload in messages:
                received.append(payload)

    watcher = asyncio.create_task(watch())
    for _ in range(100):  # until the subscription is in place
        publisher.publish("agents/a1/pop", b"before")
        if received:
            break
        await asyncio.sleep(0.05)
    assert received
    broker.stop()
    await until(lambda: not publisher.connected, what="the publisher to notice")
    broker.start()
    for _ in range(200):
        publisher.publish("agents/a1/pop", b"after")
        if b"after" in received:
            break
        await asyncio.sleep(0.05)
    assert b"after" in received
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    # Closing the iterator stopped its reconnect loop: no task is left behind.
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "mqtt-subscriber"]


async def test_a_burst_goes_out_in_order_without_nagle_and_leaves_no_writer(
    make_broker: Callable[..., MosquittoBroker],
    collectors: list[Collector],
) -> None:
    """The connection writes paho's packets itself (transport._DirectWrites).

    500 pops handed over in one turn of the loop all reach a subscriber in
    order and are acknowledged, written with a few ``send()`` calls (one per
    merged run, not one per pop); the socket has Nagle's algorithm off; and once
    everything is written the socket is not left registered for writing (a
    registered, always-writable socket would spin the loop).
    """
    import socket

    from pbxbridge.adapters.mqtt.transport import connect_aiomqtt

    broker = make_broker()
    agent = await started(Collector(broker, "pbxbridge/v1/#"), collectors)
    settings = publisher_settings(broker)
    async with connect_aiomqtt(settings) as connection:
        client = connection._client  # type: ignore[attr-defined]
        sock = client._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writes: list[int] = []
        send = client._client._sock_send

        def counted(buf: bytes) -> int:
            writes.append(len(buf))
            return int(send(buf))

        client._client._sock_send = counted
        sent = [
            connection.send(f"pbxbridge/v1/agents/a/{i}", str(i).encode(), 1, None)
            for i in range(500)
        ]
        async with asyncio.timeout(10):
            await asyncio.gather(*sent)
        await until(lambda: len(agent.messages) == 500, what="all 500 messages")
        assert [m.payload for m in agent.messages] == [str(i).encode() for i in range(500)]
        # Written in merged runs, not one send() per pop: paho holds back what is
        # beyond its in-flight window (20 here) until PUBACKs free it, so runs
        # follow the acknowledgements (63 sends here; 500 without merging).
        assert 1 <= len(writes) <= 100, writes
        loop = asyncio.get_running_loop()
        assert not loop.remove_writer(sock.fileno())  # nothing was left registered


async def test_publisher_over_the_brokers_unix_socket(
    make_broker: Callable[..., MosquittoBroker],
    make_publisher: Callable[[MqttSettings], MqttPublisher],
    collectors: list[Collector],
) -> None:
    """``host: unix:/path``: the pops go over the Unix socket, subscribers see them over TCP."""
    broker = make_broker(unix_socket=True)
    assert broker.socket_path is not None
    agent = await started(Collector(broker, "pbxbridge/v1/#"), collectors)
    settings = publisher_settings(broker, host=f"unix:{broker.socket_path}", port=None)
    publisher = make_publisher(settings)

    for i in range(3):
        publisher.publish("agents/agent1/pop", f"pop {i}".encode(), kind="ringing")

    await until(lambda: len(agent.messages) == 3, what="three pops")
    await until(lambda: publisher.status().published == 3, what="their PUBACKs")
    assert [m.payload for m in agent.messages] == [b"pop 0", b"pop 1", b"pop 2"]
    assert publisher.status().connected
