"""Screen pops from real calls: Asterisk 22 + sipp agents + AMI + a real mosquitto.

Each test runs the daemon as a process with its own MQTT topic prefix and
subscribes to it with a plain MQTT client. Every message received is checked
against the published JSON Schema.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.daemon import DaemonProcess
from tests.mosquitto import MosquittoBroker
from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import ABANDON_SCENARIO, CallResult, place_calls
from tests.testbed.testbed import Testbed

pytestmark = [pytest.mark.asterisk, pytest.mark.mosquitto]

WARDENBURG = "+494407730"
CALLER = "04407123456"


def _schema(name: str) -> dict[str, Any]:
    text = resources.files("pbxbridge.schemas").joinpath(name).read_text(encoding="utf-8")
    return dict(json.loads(text))


AGENT_SCHEMA = _schema("screenpop.schema.json")
WALL_SCHEMA = _schema("wallboard.schema.json")
CHECKER = jsonschema.FormatChecker()


class Subscriber:
    """Collects messages below a topic prefix, with their arrival times."""

    def __init__(self, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._ready = threading.Event()
        self._client.on_subscribe = lambda *a: self._ready.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(f"{prefix}/#", qos=1)
        self._client.loop_start()
        assert self._ready.wait(5), "subscription not acknowledged"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)  # must be valid JSON, whatever the caller sent
        with self._lock:
            self.messages.append((time.monotonic(), msg.topic, payload))

    def agent(self, agent: str) -> list[dict[str, Any]]:
        topic = f"{self.prefix}/agents/{agent}/screenpop"
        with self._lock:
            return [m for _, t, m in self.messages if t == topic]

    def agent_topics(self) -> set[str]:
        with self._lock:
            return {t for _, t, _ in self.messages if "/agents/" in t}

    def wallboard(self, tenant: str) -> list[dict[str, Any]]:
        topic = f"{self.prefix}/tenants/{tenant}/calls"
        with self._lock:
            return [m for _, t, m in self.messages if t == topic]

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        with self._lock:
            seen = [(t, m.get("event")) for _, t, m in self.messages]
        raise AssertionError(f"condition not met in {timeout}s; messages: {seen}")

    def validate_all(self) -> None:
        with self._lock:
            for _, topic, message in self.messages:
                schema = AGENT_SCHEMA if "/agents/" in topic else WALL_SCHEMA
                jsonschema.validate(message, schema, format_checker=CHECKER)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def setup(tb: Testbed, tmp_path: Path) -> Iterator[tuple[DaemonProcess, Subscriber]]:
    daemon = DaemonProcess(tb, tmp_path)
    daemon.start()
    daemon.wait_health(
        lambda h: h["ami"]["state"] == "connected" and h["mqtt"]["connected"], timeout=15
    )
    sub = Subscriber(1883, daemon.topic_prefix)
    try:
        yield daemon, sub
    finally:
        sub.close()
        daemon.stop()


def in_thread(fn: Callable[[], CallResult]) -> tuple[threading.Thread, list[CallResult]]:
    out: list[CallResult] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


class TestAnsweredCall:
    def test_ringing_before_answer_then_answered_then_ended(
        self, setup: tuple[DaemonProcess, Subscriber], agents: AgentFactory
    ) -> None:
        daemon, sub = setup
        agents(1, "answer", ring_delay_ms=1500)
        started = time.monotonic()
        thread, results = in_thread(
            lambda: place_calls(WARDENBURG, hold_ms=1000, caller=CALLER, display="Jörg Müller")
        )
        sub.wait(lambda: len(sub.agent("agent1")) >= 1)
        ringing_at = time.monotonic()
        # The agent's phone rings for 1.5 s: the pop is there well before the answer.
        assert ringing_at - started < 1.2
        thread.join(30)
        assert results[0].ok, results[0].describe()
        sub.wait(lambda: len(sub.agent("agent1")) >= 3)
        pops = sub.agent("agent1")
        assert [p["event"] for p in pops] == ["ringing", "answered", "ended"]
        ringing = pops[0]
        assert ringing["tenant"]["id"] == "wardenburg"
        assert ringing["tenant"]["greeting"] == "Gemeinde Wardenburg, ServiceCenter, guten Tag"
        assert ringing["caller"] == {
            "number": "+494407123456",
            "withheld": False,
            "invalid": False,
            "name": "Jörg Müller",
        }
        assert ringing["kb_url"].endswith("tenant=wardenburg&caller=%2B494407123456")
        assert ringing["did"] == WARDENBURG and ringing["via_115"] is False
        assert ringing["queue"] == "servicecenter"
        assert pops[1]["waited_s"] >= 1.0  # rang 1.5 s before the answer
        assert len({p["call_id"] for p in pops}) == 1
        # Only agent1 was rung: nobody else's topic saw anything.
        assert sub.agent_topics() == {f"{daemon.topic_prefix}/agents/agent1/screenpop"}
        sub.wait(lambda: any(m["event"] == "ended" for m in sub.wallboard("wardenburg")))
        sub.validate_all()
        for m in sub.wallboard("wardenburg"):
            assert "4407123456" not in json.dumps(m)
        # The same call in the Prometheus metrics.
        metrics = daemon.metrics()
        assert metrics['pbxbridge_calls_answered_total{tenant="wardenburg"}'] == 1
        assert metrics['pbxbridge_calls_offered_total{tenant="wardenburg"}'] == 1
        assert metrics['pbxbridge_up{component="ami"}'] == 1
        assert metrics['pbxbridge_wait_seconds_count{outcome="answered",tenant="wardenburg"}'] == 1


class TestAbandonedCall:
    def test_caller_hangs_up_while_queued(
        self, setup: tuple[DaemonProcess, Subscriber], agents: AgentFactory
    ) -> None:
        daemon, sub = setup
        agents(1, "noanswer")
        result = place_calls(
            WARDENBURG,
            caller=CALLER,
            scenario=ABANDON_SCENARIO,
            extra_args=["-key", "wait_ms", "3000"],
        )
        assert result.ok, result.describe()
        sub.wait(lambda: any(m["event"] == "abandoned" for m in sub.wallboard("wardenburg")))
        abandoned = next(m for m in sub.wallboard("wardenburg") if m["event"] == "abandoned")
        assert 2.5 <= abandoned["waited_s"] <= 4.0
        # agent1's phone rang while the caller waited; its screen was cleared.
        sub.wait(lambda: [p["event"] for p in sub.agent("agent1")][-1:] == ["ended"])
        sub.validate_all()
        assert daemon.health()["screen_pops"]["by_outcome"]["abandoned"] == 1


class TestNoAnswer:
    def test_pop_moves_to_the_next_agent(
        self, setup: tuple[DaemonProcess, Subscriber], agents: AgentFactory
    ) -> None:
        _, sub = setup
        agents(1, "noanswer")
        agents(2, "answer", ring_delay_ms=200)
        result = place_calls(WARDENBURG, hold_ms=500, caller=CALLER, timeout_s=40)
        assert result.ok, result.describe()
        sub.wait(lambda: len(sub.agent("agent2")) >= 3, timeout=15)
        assert [p["event"] for p in sub.agent("agent1")] == ["ringing", "ended"]
        assert [p["event"] for p in sub.agent("agent2")] == ["ringing", "answered", "ended"]
        assert sub.agent("agent2")[1]["waited_s"] >= 4.0  # agent1 rang 4 s first
        sub.validate_all()


class TestHostileNames:
    @pytest.mark.parametrize("name", ['Evil\\" <b>x</b> ${X};,', "J\udcf6rg \\\\n" + "x" * 300])
    def test_escaped_in_valid_json(
        self, setup: tuple[DaemonProcess, Subscriber], agents: AgentFactory, name: str
    ) -> None:
        _, sub = setup
        agents(1, "answer")
        result = place_calls(WARDENBURG, hold_ms=300, caller=CALLER, display=name)
        assert result.ok, result.describe()
        sub.wait(lambda: len(sub.agent("agent1")) >= 3)
        sub.validate_all()  # parsed as JSON and valid against the schema
        shown = sub.agent("agent1")[0]["caller"]["name"]
        assert not set(shown) & set('"<>${};,\\')


class _Proxy:
    """A TCP proxy to AMI whose connections the test can cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.writers: list[asyncio.StreamWriter] = []
        self.accepted = 0
        ready = threading.Event()
        self.port = 0

        async def main() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(main(),), daemon=True
        )
        self.thread.start()
        ready.wait(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def close_all() -> None:
            for w in self.writers:
                transport = w.transport
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
            self.writers.clear()

        self.loop.call_soon_threadsafe(close_all)


class TestAmiCut:
    def test_reconnects_and_calls_keep_routing(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory
    ) -> None:
        proxy = _Proxy(tb.ami_port)
        daemon = DaemonProcess(tb, tmp_path, extra_env={"PBXBRIDGE_AMI_PORT": str(proxy.port)})
        daemon.start()
        sub = Subscriber(1883, daemon.topic_prefix)
        try:
            daemon.wait_health(lambda h: h["ami"]["state"] == "connected", timeout=15)
            agents(1, "answer", ring_delay_ms=300)
            proxy.cut()
            # ARI does not depend on AMI: the call is routed while AMI is away.
            result = place_calls(WARDENBURG, hold_ms=500, caller=CALLER)
            assert result.ok, result.describe()
            assert daemon.health()["calls"]["routed"] == 1
            daemon.wait_health(lambda h: h["ami"]["state"] == "connected", timeout=10)
            assert proxy.accepted >= 2
            result = place_calls(WARDENBURG, hold_ms=500, caller=CALLER)
            assert result.ok, result.describe()
            sub.wait(
                lambda: (
                    [p["event"] for p in sub.agent("agent1")][-3:]
                    == ["ringing", "answered", "ended"]
                )
            )
            sub.validate_all()
        finally:
            sub.close()
            daemon.stop()


class TestBrokerDown:
    def test_calls_unaffected_pops_resume_stale_dropped(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory
    ) -> None:
        broker = MosquittoBroker(tmp_path / "broker")
        broker.start()
        port = broker.port
        daemon = DaemonProcess(
            tb, tmp_path, mqtt_port=port, extra_env={"PBXBRIDGE_RING_TIMEOUT": "3"}
        )
        daemon.start()
        try:
            daemon.wait_health(
                lambda h: h["mqtt"]["connected"] and h["ami"]["state"] == "connected", timeout=15
            )
            for n in (1, 2):
                agents(n, "answer", ring_delay_ms=200)
            broker.stop()
            daemon.wait_health(lambda h: not h["mqtt"]["connected"], timeout=10)
            down_at = time.monotonic()
            result = place_calls(WARDENBURG, count=5, rate=1, hold_ms=500, caller=CALLER)
            assert result.successful == 5 and result.failed == 0, result.describe()
            # Every call reached an agent without waiting for the broker.
            assert max(result.invite_to_200_ms) < 2000
            time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
            broker.start()
            sub = Subscriber(port, daemon.topic_prefix)
            try:
                daemon.wait_health(lambda h: h["mqtt"]["connected"], timeout=15)
                result = place_calls(WARDENBURG, hold_ms=300, caller=CALLER)
                assert result.ok, result.describe()
                sub.wait(
                    lambda: any(
                        p["event"] == "ringing" for a in ("agent1", "agent2") for p in sub.agent(a)
                    ),
                    timeout=10,
                )
                sub.validate_all()
            finally:
                sub.close()
            mqtt_health = daemon.health()["mqtt"]
            # The five ringing pops of the outage were older than the ring
            # timeout when the broker came back: dropped, not shown late.
            assert mqtt_health["dropped_stale"].get("ringing", 0) >= 5, mqtt_health
        finally:
            daemon.stop()
            broker.stop()
