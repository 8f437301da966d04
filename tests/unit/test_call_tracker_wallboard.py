"""The wallboard stream held back to one message per call per window.

Agent pops stay immediate; a call's intermediate states within a window are
replaced by its latest one, which carries the skipped milestones in ``times``
and validates against the published schema.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pbxbridge.config import load_rules
from pbxbridge.core import Call, route
from pbxbridge.core.rules import Rules
from pbxbridge.tracking.call_tracker import CallTracker

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
WINDOW = 0.05
_TEXT = resources.files("pbxbridge.schemas").joinpath("wallboard.schema.json").read_text("utf-8")
WALL_SCHEMA = json.loads(_TEXT)


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(
        self, topic: str, payload: bytes, *, expires_at: float | None = None, kind: str = ""
    ) -> None:
        self.sent.append((topic, json.loads(payload)))

    def wallboard(self) -> list[dict[str, Any]]:
        return [m for t, m in self.sent if t == "tenants/wardenburg/calls"]

    def agent(self, agent: str) -> list[str]:
        return [str(m["event"]) for t, m in self.sent if t == f"agents/{agent}/screenpop"]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE)[0]


def ev(name: str, uid: str, **fields: str) -> dict[str, str]:
    return {"Event": name, "Uniqueid": uid, **fields}


def _pops(rules: Rules, window: float) -> tuple[CallTracker, Publisher, Clock]:
    pub, clock = Publisher(), Clock()
    pops = CallTracker(pub, clock=clock, wallboard_every_s=window)
    for uid in ("1.1", "2.2"):
        pops.routed(uid, route(Call(did="04407730", caller="0441 1234567"), rules, T0))
    return pops, pub, clock


async def test_latest_state_per_call_once_per_window(rules: Rules) -> None:
    pops, pub, clock = _pops(rules, WINDOW)
    clock.now += timedelta(seconds=2)
    pops.ami_event(ev("QueueCallerJoin", "1.1", Queue="servicecenter"))
    pops.ami_event(ev("QueueCallerJoin", "2.2", Queue="servicecenter"))
    pops.ami_event(ev("AgentCalled", "1.1", MemberName="agent1"))
    assert pub.agent("agent1") == ["ringing"]  # agent pops are never held back
    assert pub.wallboard() == []
    await asyncio.sleep(WINDOW * 3)
    first = pub.wallboard()
    assert [(m["call_id"], m["event"]) for m in first] == [("2.2", "queued"), ("1.1", "ringing")]
    for message in first:
        jsonschema.validate(message, WALL_SCHEMA, format_checker=jsonschema.FormatChecker())
        assert message["times"]["routed"] == T0.isoformat()  # the skipped milestone
        assert message["times"]["queued"] is not None

    pops.ami_event(ev("AgentConnect", "1.1", MemberName="agent1"))
    pops.ami_event(ev("Hangup", "1.1"))
    await asyncio.sleep(WINDOW * 3)
    assert [m["event"] for m in pub.wallboard()[2:]] == ["ended"]
    assert pub.agent("agent1") == ["ringing", "answered", "ended"]


async def test_flush_sends_what_is_held_back_at_once(rules: Rules) -> None:
    pops, pub, _ = _pops(rules, 60.0)
    pops.ami_event(ev("QueueCallerJoin", "1.1", Queue="servicecenter"))
    pops.ami_event(ev("QueueCallerAbandon", "1.1", Queue="servicecenter", HoldTime="3"))
    assert pub.wallboard() == []
    pops.flush_wallboard()
    assert [(m["call_id"], m["event"]) for m in pub.wallboard()] == [
        ("2.2", "routed"),
        ("1.1", "abandoned"),
    ]
    pops.flush_wallboard()  # nothing left, no timer left
    assert len(pub.wallboard()) == 2


def test_without_window_every_state_at_once(rules: Rules) -> None:
    pops, pub, _ = _pops(rules, 0.0)
    pops.ami_event(ev("QueueCallerJoin", "1.1", Queue="servicecenter"))
    assert [m["event"] for m in pub.wallboard()] == ["routed", "routed", "queued"]


async def test_each_call_has_its_own_window(rules: Rules) -> None:
    # A call over within its first window is sent once, in its final state; a
    # call whose window opened later is not sent with the first one.
    pub, clock = Publisher(), Clock()
    pops = CallTracker(pub, clock=clock, wallboard_every_s=0.2)
    pops.routed("1.1", route(Call(did="04407730", caller="0441 1234567"), rules, T0))
    pops.ami_event(ev("QueueCallerJoin", "1.1", Queue="servicecenter"))
    await asyncio.sleep(0.12)
    pops.routed("2.2", route(Call(did="04407730", caller="0441 1234567"), rules, T0))
    pops.ami_event(ev("AgentCalled", "1.1", MemberName="agent1"))
    pops.ami_event(ev("AgentConnect", "1.1", MemberName="agent1"))
    pops.ami_event(ev("Hangup", "1.1"))
    await asyncio.sleep(0.15)  # 1.1's window has closed, 2.2's not yet
    assert [(m["call_id"], m["event"]) for m in pub.wallboard()] == [("1.1", "ended")]
    assert pub.wallboard()[0]["times"]["answered"] is not None
    await asyncio.sleep(0.15)
    assert [(m["call_id"], m["event"]) for m in pub.wallboard()] == [
        ("1.1", "ended"),
        ("2.2", "routed"),
    ]
