"""``pbxbridge watch`` end to end: the real CLI process, a real broker, the default prefix.

The pops are made the way the daemon makes them (CallTracker fed with app_queue
events, published by MqttPublisher with the default topic prefix), so the test
fails if ``watch`` subscribes to anything but the topics the daemon publishes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pbxbridge.adapters.mqtt import DEFAULT_TOPIC_PREFIX, MqttPublisher, MqttSettings
from pbxbridge.config import load_rules
from pbxbridge.core import Call, route
from pbxbridge.tracking.call_tracker import CallTracker
from tests.mosquitto import MosquittoBroker, mosquitto_available

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "routing.yaml"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.close()


def start_watch(broker: MosquittoBroker, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBXBRIDGE_MQTT_")}
    env.update(PBXBRIDGE_MQTT_HOST="127.0.0.1", PBXBRIDGE_MQTT_PORT=str(broker.port))
    return subprocess.Popen(
        [sys.executable, "-m", "pbxbridge", "watch", "--count", "1", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def pop_until_printed(
    broker: MosquittoBroker, watcher: subprocess.Popen[str], agent: str
) -> tuple[str, str]:
    """Ring ``agent`` with a Wardenburg call, once a second, until ``watch`` exits."""
    settings = MqttSettings(host="127.0.0.1", port=broker.port)
    assert settings.topic_prefix == DEFAULT_TOPIC_PREFIX == "pbxbridge/v1"
    publisher = MqttPublisher(settings)
    runner = asyncio.create_task(publisher.run())
    pops = CallTracker(publisher, ring_timeout_s=15)
    rules = load_rules(EXAMPLE)[0]
    decision = route(
        Call(did="04407730", caller="0441 1234567", caller_name="Jörg Müller"),
        rules,
        datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
    )
    try:
        for n in itertools.count():
            if watcher.poll() is not None or n >= 20:
                break
            uid = f"1700000000.{n}"
            pops.routed(uid, decision)
            pops.ami_event({"Event": "QueueCallerJoin", "Uniqueid": uid, "Queue": "servicecenter"})
            pops.ami_event(
                {
                    "Event": "AgentCalled",
                    "Uniqueid": uid,
                    "Queue": "servicecenter",
                    "MemberName": agent,
                    "Interface": f"PJSIP/{agent}",
                }
            )
            await asyncio.sleep(1.0)
    finally:
        await publisher.close(timeout=2.0)
        runner.cancel()
        if watcher.poll() is None:
            watcher.kill()
    out, err = watcher.communicate(timeout=10)
    return out, err


async def test_watch_agent_prints_the_daemons_pop(broker: MosquittoBroker) -> None:
    watcher = start_watch(broker, "--agent", "agent1")
    out, err = await pop_until_printed(broker, watcher, "agent1")
    assert watcher.returncode == 0, err
    assert "watching pbxbridge/v1/agents/agent1/screenpop " in err
    assert "pbxbridge/v1/pbxbridge/v1" not in err
    assert "agent1" in out and "Gemeinde Wardenburg" in out and "RINGING" in out, out


async def test_watch_tenant_prints_the_wallboard(broker: MosquittoBroker) -> None:
    watcher = start_watch(broker, "--tenant", "wardenburg", "--json")
    out, err = await pop_until_printed(broker, watcher, "agent2")
    assert watcher.returncode == 0, err
    assert "watching pbxbridge/v1/tenants/wardenburg/calls " in err
    assert '"tenant":"wardenburg"' in out, out


async def test_watch_every_agent(broker: MosquittoBroker) -> None:
    watcher = start_watch(broker)
    out, err = await pop_until_printed(broker, watcher, "agent3")
    assert watcher.returncode == 0, err
    assert "watching pbxbridge/v1/agents/+/screenpop " in err
    assert "agent3" in out, out
