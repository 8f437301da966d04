"""Screen pops from AMI queue events, checked against the published JSON Schemas."""

from __future__ import annotations

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
from pbxbridge.core.virtual_hold import VHoldState, VirtualHold
from pbxbridge.tracking.call_tracker import CallTracker, agent_id, to_call_event

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def schema(name: str) -> dict[str, Any]:
    text = resources.files("pbxbridge.schemas").joinpath(name).read_text(encoding="utf-8")
    return dict(json.loads(text))


AGENT_SCHEMA = schema("screenpop.schema.json")
WALL_SCHEMA = schema("wallboard.schema.json")
CHECKER = jsonschema.FormatChecker()


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], float | None, str]] = []

    def publish(
        self, topic: str, payload: bytes, *, expires_at: float | None = None, kind: str = ""
    ) -> None:
        message = json.loads(payload)
        self.sent.append((topic, message, expires_at, kind))

    def agent(self, agent: str) -> list[dict[str, Any]]:
        return [m for t, m, _, _ in self.sent if t == f"agents/{agent}/screenpop"]

    def wallboard(self, tenant: str) -> list[dict[str, Any]]:
        return [m for t, m, _, _ in self.sent if t == f"tenants/{tenant}/calls"]


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE)[0]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def ev(name: str, uid: str = "1.1", **fields: str) -> dict[str, str]:
    return {"Event": name, "Uniqueid": uid, **fields}


def setup(
    rules: Rules, name: str = 'Jörg "Boss" Müller ${X}'
) -> tuple[CallTracker, FakePublisher, Clock]:
    pub = FakePublisher()
    clock = Clock()
    pops = CallTracker(pub, clock=clock, ring_timeout_s=15, repeat_calls=lambda n: 2)
    decision = route(
        Call(did="04407730", caller="0441 1234567", caller_name=name),
        rules,
        datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
    )
    pops.routed("1.1", decision)
    return pops, pub, clock


class TestAgentPops:
    def test_ringing_answered_ended_only_to_that_agent(self, rules: Rules) -> None:
        pops, pub, clock = setup(rules)
        pops.ami_event(ev("QueueCallerJoin", Queue="servicecenter", Position="1"))
        clock.tick(3)
        pops.ami_event(
            ev("AgentCalled", Queue="servicecenter", Interface="PJSIP/agent1", MemberName="agent1")
        )
        clock.tick(2)
        pops.ami_event(
            ev("AgentConnect", Interface="PJSIP/agent1", MemberName="agent1", HoldTime="5")
        )
        clock.tick(60)
        pops.ami_event(ev("AgentComplete", MemberName="agent1", HoldTime="5", TalkTime="60"))
        messages = pub.agent("agent1")
        assert [m["event"] for m in messages] == ["ringing", "answered", "ended"]
        for m in messages:
            jsonschema.validate(m, AGENT_SCHEMA, format_checker=CHECKER)
        ringing = messages[0]
        assert ringing["tenant"] == {
            "id": "wardenburg",
            "name": "Gemeinde Wardenburg",
            "greeting": "Gemeinde Wardenburg, ServiceCenter, guten Tag",
        }
        assert ringing["caller"]["number"] == "+494411234567"
        assert ringing["caller"]["name"] == "Jörg Boss Müller X"
        assert ringing["waited_s"] == 3.0
        assert ringing["repeat_calls_7d"] == 2
        assert ringing["kb_url"].endswith("caller=%2B494411234567")
        assert messages[1]["waited_s"] == 5.0
        assert pub.agent("agent2") == []
        assert "1.1" not in pops.records

    def test_ringing_pop_expires_others_do_not(self, rules: Rules) -> None:
        pops, pub, _ = setup(rules)
        pops.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        pops.ami_event(ev("AgentCalled", MemberName="agent1"))
        pops.ami_event(ev("AgentConnect", MemberName="agent1"))
        kinds = [(k, e is not None) for t, _, e, k in pub.sent if t.startswith("agents/")]
        assert kinds == [("ringing", True), ("answered", False)]

    def test_no_answer_moves_pop_to_next_agent(self, rules: Rules) -> None:
        pops, pub, _ = setup(rules)
        pops.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        pops.ami_event(ev("AgentCalled", MemberName="agent1"))
        pops.ami_event(ev("AgentRingNoAnswer", MemberName="agent1", RingTime="4"))
        pops.ami_event(ev("AgentCalled", MemberName="agent2"))
        assert [m["event"] for m in pub.agent("agent1")] == ["ringing", "ended"]
        assert [m["event"] for m in pub.agent("agent2")] == ["ringing"]


class TestWallboard:
    def test_no_personal_data(self, rules: Rules) -> None:
        pops, pub, clock = setup(rules)
        pops.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        clock.tick(30)
        pops.ami_event(ev("QueueCallerAbandon", Queue="servicecenter", HoldTime="30"))
        stream = pub.wallboard("wardenburg")
        assert [m["event"] for m in stream] == ["routed", "queued", "abandoned"]
        for m in stream:
            jsonschema.validate(m, WALL_SCHEMA, format_checker=CHECKER)
            text = json.dumps(m)
            assert "1234567" not in text and "Müller" not in text
        assert stream[-1]["waited_s"] == 30.0


class TestRobustness:
    def test_unknown_and_out_of_order_events(self, rules: Rules) -> None:
        pops, pub, _ = setup(rules)
        pops.ami_event(ev("AgentConnect", uid="9.9", MemberName="agent1"))
        pops.ami_event(ev("AgentComplete", MemberName="agent1"))  # before join
        pops.ami_event({"Event": "Hangup"})  # no Uniqueid
        pops.ami_event({"Event": "Newchannel", "Uniqueid": "1.1"})
        assert pops.stats.unknown_calls == 1
        assert pops.stats.ignored_events == 1
        assert pub.agent("agent1") == []

    def test_without_publisher_calls_are_still_followed(self, rules: Rules) -> None:
        pops = CallTracker(None)
        decision = route(Call(did="04407730"), rules, T0)
        pops.routed("2.2", decision)
        pops.ami_event(ev("QueueCallerJoin", uid="2.2", Queue="servicecenter"))
        assert pops.records["2.2"].state.value == "queued"

    def test_hostile_name_is_valid_json(self, rules: Rules) -> None:
        pops, pub, _ = setup(rules, name='"\\}{\x00\n</script><b>x' + "€" * 200)
        pops.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        pops.ami_event(ev("AgentCalled", MemberName="agent1"))
        (ringing,) = pub.agent("agent1")
        jsonschema.validate(ringing, AGENT_SCHEMA, format_checker=CHECKER)
        assert "<" not in ringing["caller"]["name"] and "\x00" not in ringing["caller"]["name"]

    def test_second_routed_for_a_live_call_is_ignored(self, rules: Rules) -> None:
        # An injected FastAGI session naming a live call's unique id must not
        # replace its record: pop, tenant and callback number stay the caller's.
        observed: list[str] = []
        pub = FakePublisher()
        pops = CallTracker(
            pub, on_record=lambda rec, _ev: observed.append(rec.decision.tenant or "")
        )
        real = route(Call(did="04407730", caller="0441 1234567"), rules, T0)
        fake = route(Call(did="0441 2350", caller="0171 6666666"), rules, T0)
        pops.routed("1.1", real)
        pops.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        pops.routed("1.1", fake)
        assert pops.records["1.1"].decision is real
        assert pops.records["1.1"].state.value == "queued"
        assert pops.stats.duplicate_routed == 1 and pops.stats.followed == 1
        pops.ami_event(ev("AgentCalled", MemberName="agent1"))
        (ringing,) = pub.agent("agent1")
        assert ringing["caller"]["number"] == "+494411234567"
        assert ringing["tenant"]["id"] == real.tenant
        assert real.tenant not in ("", fake.tenant)
        assert fake.tenant not in observed  # the journal never saw the fake either

    def test_withheld_caller_named_by_freepbx_shows_no_number(self, rules: Rules) -> None:
        # FreePBX's inbound route copies the number into an empty name before
        # pbxbridge sees the call: a withheld caller's name is the number.
        pub = FakePublisher()
        pops = CallTracker(pub, clock=Clock())
        decision = route(
            Call(did="04407730", caller="04411234567", caller_name="04411234567", restricted=True),
            rules,
            T0,
        )
        assert "1234567" not in decision.callerid_name  # the agent's phone display
        assert "1234567" not in decision.screen_pop_url
        pops.routed("1.1", decision)
        pops.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        pops.ami_event(ev("AgentCalled", MemberName="agent1"))
        (ringing,) = pub.agent("agent1")
        assert ringing["caller"] == {"number": None, "withheld": True, "invalid": False, "name": ""}
        assert "1234567" not in json.dumps(pub.sent)

    def test_agent_topic_cannot_widen(self, rules: Rules) -> None:
        pops, pub, _ = setup(rules)
        pops.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        pops.ami_event(ev("AgentCalled", MemberName="a+#b"))
        topics = [t for t, _, _, _ in pub.sent if t.startswith("agents/")]
        assert topics == ["agents/a%2B%23b/screenpop"]  # escaped, one level


class TestPruning:
    def test_bounded_without_hangups(self, rules: Rules, monkeypatch: pytest.MonkeyPatch) -> None:
        import pbxbridge.tracking.call_tracker as sp

        monkeypatch.setattr(sp, "MAX_RECORDS", 50)
        clock = Clock()
        pops = CallTracker(None, clock=clock)
        decision = route(Call(did="04407730"), rules, T0)
        for n in range(120):
            pops.routed(f"c{n}", decision)
        assert len(pops.records) == 50
        assert next(iter(pops.records)) == "c70"  # the oldest went first
        clock.tick(7 * 3600)  # older than MAX_CALL_AGE
        pops.routed("late", decision)
        assert list(pops.records) == ["late"]


class TestMapping:
    def test_agent_id(self) -> None:
        assert agent_id({"MemberName": "Anna"}) == "Anna"
        assert agent_id({"Interface": "PJSIP/agent3"}) == "agent3"
        assert agent_id({"MemberName": "PJSIP/agent3", "Interface": "PJSIP/agent3"}) == "agent3"

    def test_timestamp_is_used(self) -> None:
        mapped = to_call_event(
            {"Event": "QueueCallerJoin", "Uniqueid": "1", "Timestamp": "1795634208.5"}, T0
        )
        assert mapped is not None
        assert mapped[1].at == datetime.fromtimestamp(1795634208.5, UTC)


class TestCallbackLeg:
    """A virtual hold's placeholder reaching an agent: pops, but no call of its own."""

    HOLD = VirtualHold(
        node="n1",
        call_id="1.1",
        tenant="wardenburg",
        queue="servicecenter",
        priority=5,
        arrived_at=T0 - timedelta(minutes=6),
        offered_at=T0 - timedelta(minutes=5),
        accepted_at=T0 - timedelta(minutes=5),
        updated_at=T0 - timedelta(minutes=5),
        state=VHoldState.WAITING,
        number="+494411234567",
        dial="04411234567",
    )
    PLACEHOLDER = "Local/1.1@pbxbridge-vhold-place-00000003;2"

    def test_pops_to_page_and_topic_without_a_record_or_observer_call(self) -> None:
        pub, clock = FakePublisher(), Clock()
        page: list[tuple[str, dict[str, object]]] = []
        observed: list[object] = []
        tracker = CallTracker(
            pub,
            clock=clock,
            local=lambda agent, message: page.append((agent, message)),
            on_record=lambda record, event: observed.append(record),
        )
        for name in ("AgentCalled", "AgentConnect", "AgentComplete"):
            sent = tracker.callback_leg(
                ev(name, uid="1.9", Channel=self.PLACEHOLDER, MemberName="agent1"),
                self.HOLD,
                tenant_name="Gemeinde Wardenburg",
                greeting="Guten Tag",
            )
            assert sent
        messages = pub.agent("agent1")
        assert [m["event"] for m in messages] == ["ringing", "answered", "ended"]
        for m in messages:
            jsonschema.validate(m, AGENT_SCHEMA, format_checker=CHECKER)
            assert m["call_id"] == "1.1"
            assert m["virtual_hold"]["number"] == "+494411234567"
            assert m["virtual_hold"]["waited_s"] == 300.0
        assert [m for _, m in page] == messages
        assert pub.sent[0][2] is not None  # the ringing pop expires like a call's
        assert tracker.records == {} and observed == []  # no journal row, no metrics
        assert tracker.stats.followed == 0 and tracker.stats.callback_pops == 3

    def test_an_event_without_an_agent_or_of_another_kind_pops_nothing(self) -> None:
        pub = FakePublisher()
        tracker = CallTracker(pub, clock=Clock())
        assert not tracker.callback_leg(
            ev("AgentCalled", Channel=self.PLACEHOLDER),
            self.HOLD,
            tenant_name="x",
            greeting="",
        )
        assert not tracker.callback_leg(
            ev("QueueCallerJoin", Channel=self.PLACEHOLDER, MemberName="agent1"),
            self.HOLD,
            tenant_name="x",
            greeting="",
        )
        assert pub.sent == []


class TestOpenCallbackNote:
    def test_the_callers_open_callback_goes_into_the_pop(self, rules: Rules) -> None:
        pub = FakePublisher()
        asked: list[str] = []

        def note(number: str) -> str | None:
            asked.append(number)
            return "offener Rückruf vom Di 09:14"

        tracker = CallTracker(pub, clock=Clock(), open_callback=note)
        decision = route(Call(did="04407730", caller="0441 1234567"), rules, T0)
        tracker.routed("1.1", decision)
        tracker.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        tracker.ami_event(ev("AgentCalled", Queue="servicecenter", MemberName="agent1"))
        (pop,) = pub.agent("agent1")
        assert pop["open_callback"] == "offener Rückruf vom Di 09:14"
        jsonschema.validate(pop, AGENT_SCHEMA, format_checker=CHECKER)
        assert asked == ["+494411234567"]

    def test_withheld_callers_are_not_looked_up(self, rules: Rules) -> None:
        pub = FakePublisher()
        tracker = CallTracker(pub, clock=Clock(), open_callback=lambda n: "x")
        decision = route(Call(did="04407730", caller="", restricted=True), rules, T0)
        tracker.routed("1.1", decision)
        tracker.ami_event(ev("QueueCallerJoin", Queue="servicecenter"))
        tracker.ami_event(ev("AgentCalled", Queue="servicecenter", MemberName="agent1"))
        assert pub.agent("agent1")[0]["open_callback"] is None
