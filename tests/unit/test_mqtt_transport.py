"""Unit tests of the aiomqtt connection's send(): futures, PUBACKs and timeouts.

A stand-in for the aiomqtt client records what reaches paho and lets the test
fire the PUBACK callback the way aiomqtt does (``_pending_publishes.pop(mid).set()``).
The real broker path is covered by tests/integration/test_mqtt_broker.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

import aiomqtt
import paho.mqtt.client as mqtt
import pytest

from pbxbridge.adapters.mqtt import MqttSettings
from pbxbridge.adapters.mqtt.transport import _AiomqttConnection, _merge_queued


@dataclass
class FakeInfo:
    mid: int
    rc: int = mqtt.MQTT_ERR_SUCCESS
    published: bool = False

    def is_published(self) -> bool:
        return self.published


@dataclass
class FakePaho:
    sent: list[tuple[str, bytes, int, bool, Any]] = field(default_factory=list)
    rc: int = mqtt.MQTT_ERR_SUCCESS
    refuse: Exception | None = None
    published_at_once: bool = False

    def publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Any
    ) -> FakeInfo:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append((topic, payload, qos, retain, properties))
        return FakeInfo(len(self.sent), self.rc, self.published_at_once)


class FakeAiomqttClient:
    def __init__(self) -> None:
        self._client = FakePaho()
        self._pending_publishes: dict[int, Any] = {}
        self._disconnected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def puback(self, mid: int) -> None:
        """What aiomqtt's on_publish callback does."""
        self._pending_publishes.pop(mid).set()


def connection(
    *, publish_timeout: float = 10.0, mqtt_version: Literal["3.1.1", "5"] = "5"
) -> tuple[_AiomqttConnection, FakeAiomqttClient]:
    client = FakeAiomqttClient()
    settings = MqttSettings(
        client_id="test", publish_timeout=publish_timeout, mqtt_version=mqtt_version
    )
    return _AiomqttConnection(client, settings), client  # type: ignore[arg-type]


class TestAiomqttConnection:
    async def test_future_completes_at_the_puback_in_send_order(self) -> None:
        conn, client = connection()
        first = conn.send("p/a", b"1", 1, None)
        second = conn.send("p/a", b"2", 1, 30)
        assert [s[:4] for s in client._client.sent] == [
            ("p/a", b"1", 1, False),
            ("p/a", b"2", 1, False),
        ]
        assert not first.done() and not second.done()
        client.puback(2)
        assert second.done() and second.result() is None
        assert not first.done()
        client.puback(1)
        assert first.result() is None
        assert client._pending_publishes == {}

    async def test_expiry_interval_travels_as_mqtt5_property(self) -> None:
        conn, client = connection()
        conn.send("p/a", b"1", 1, 30)
        conn.send("p/a", b"2", 1, 30)
        conn.send("p/a", b"3", 1, 7)
        conn.send("p/a", b"4", 1, None)
        props = [s[4] for s in client._client.sent]
        assert props[0].MessageExpiryInterval == 30
        assert props[1].MessageExpiryInterval == 30
        assert props[2].MessageExpiryInterval == 7
        assert props[3] is None

    async def test_mqtt311_sends_no_properties(self) -> None:
        conn, client = connection(mqtt_version="3.1.1")
        conn.send("p/a", b"1", 1, 30)
        assert client._client.sent[0][4] is None

    async def test_missing_puback_fails_the_future_after_the_timeout(self) -> None:
        conn, client = connection(publish_timeout=0.05)
        sent = conn.send("p/a", b"1", 1, None)
        with pytest.raises(aiomqtt.MqttError, match="timed out"):
            await asyncio.wait_for(sent, 1.0)
        assert client._pending_publishes == {}

    async def test_puback_in_time_cancels_the_timeout(self) -> None:
        conn, client = connection(publish_timeout=0.05)
        sent = conn.send("p/a", b"1", 1, None)
        client.puback(1)
        await asyncio.sleep(0.1)
        assert sent.result() is None

    async def test_client_error_code_fails_the_future_not_the_call(self) -> None:
        conn, client = connection()
        client._client.rc = mqtt.MQTT_ERR_NO_CONN
        sent = conn.send("p/a", b"1", 1, None)
        with pytest.raises(aiomqtt.MqttError):
            sent.result()
        assert client._pending_publishes == {}

    async def test_client_error_code_after_a_loss_names_the_loss(self) -> None:
        conn, client = connection()
        client._client.rc = mqtt.MQTT_ERR_NO_CONN
        client._disconnected.set_exception(aiomqtt.MqttError("broker went away"))
        sent = conn.send("p/a", b"1", 1, None)
        error = sent.exception()
        assert isinstance(error, aiomqtt.MqttError)
        assert str(error.__cause__) == "broker went away"

    async def test_refused_message_fails_the_future_with_the_clients_error(self) -> None:
        conn, client = connection()
        client._client.refuse = ValueError("payload too large")
        sent = conn.send("p/a", b"1", 1, None)
        with pytest.raises(ValueError, match="payload too large"):
            sent.result()

    async def test_published_at_once_needs_no_puback(self) -> None:
        conn, client = connection()
        client._client.published_at_once = True
        sent = conn.send("p/a", b"1", 0, None)
        assert sent.result() is None
        assert client._pending_publishes == {}


class _Queue:
    """paho's send queue as _merge_queued reads it (``_out_packet``)."""

    def __init__(self, *packets: dict[str, Any]) -> None:
        import collections

        self._out_packet: collections.deque[dict[str, Any]] = collections.deque(packets)


def _packet(
    command: int, data: bytes, *, qos: int = 1, pos: int = 0, mid: int = 1
) -> dict[str, Any]:
    return {
        "command": command,
        "mid": mid,
        "qos": qos,
        "pos": pos,
        "to_process": len(data) - pos,
        "packet": data,
        "info": None,
    }


class TestMergeQueued:
    PUBLISH = mqtt.PUBLISH | 0x02  # QoS 1 flags, as paho builds the command byte

    def test_qos1_publishes_become_one_packet_in_order(self) -> None:
        queue = _Queue(_packet(self.PUBLISH, b"aa", mid=1), _packet(self.PUBLISH, b"bbb", mid=2))
        _merge_queued(queue)  # type: ignore[arg-type]
        assert len(queue._out_packet) == 1
        merged = queue._out_packet[0]
        assert (merged["packet"], merged["pos"], merged["to_process"]) == (b"aabbb", 0, 5)
        assert (merged["command"] & 0xF0, merged["qos"]) == (mqtt.PUBLISH, 1)

    def test_a_partly_written_head_adds_only_its_rest(self) -> None:
        queue = _Queue(_packet(self.PUBLISH, b"xxyy", pos=2), _packet(mqtt.PINGREQ, b"p", qos=0))
        _merge_queued(queue)  # type: ignore[arg-type]
        assert [p["packet"] for p in queue._out_packet] == [b"yyp"]

    def test_qos0_publish_and_disconnect_end_the_run(self) -> None:
        qos0 = _packet(mqtt.PUBLISH, b"q0", qos=0)
        disconnect = _packet(mqtt.DISCONNECT, b"d", qos=0)
        queue = _Queue(_packet(self.PUBLISH, b"a"), _packet(self.PUBLISH, b"b"), qos0, disconnect)
        _merge_queued(queue)  # type: ignore[arg-type]
        assert [p["packet"] for p in queue._out_packet] == [b"ab", b"q0", b"d"]
        assert queue._out_packet[1] is qos0 and queue._out_packet[2] is disconnect

    def test_nothing_to_merge_leaves_the_queue_alone(self) -> None:
        lone = _packet(self.PUBLISH, b"a")
        first_special = _Queue(_packet(mqtt.DISCONNECT, b"d", qos=0), _packet(self.PUBLISH, b"b"))
        queue = _Queue(lone)
        _merge_queued(queue)  # type: ignore[arg-type]
        _merge_queued(first_special)  # type: ignore[arg-type]
        assert list(queue._out_packet) == [lone]
        assert [p["packet"] for p in first_special._out_packet] == [b"d", b"b"]
