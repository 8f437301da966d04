"""The call lifecycle state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxbridge.core.lifecycle import (
    CallEvent,
    CallRecord,
    EventKind,
    PopKind,
    State,
    advance,
    start,
)
from pbxbridge.core.models import Action, Decision

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
OPEN = Decision(action=Action.QUEUE, tenant="wardenburg")
CLOSED = Decision(action=Action.CLOSED, tenant="wardenburg")


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(record: CallRecord, *events: CallEvent) -> tuple[CallRecord, list[tuple[str, str]]]:
    pops: list[tuple[str, str]] = []
    for event in events:
        step = advance(record, event)
        record = step.record
        pops.extend((p.kind.value, p.agent) for p in step.pops)
    return record, pops


JOIN = CallEvent(EventKind.JOIN, t(0.1), queue="servicecenter")


class TestHappyPath:
    def test_routed_queued_ringing_answered_ended(self) -> None:
        record, pops = run(
            start("c1", OPEN, T0),
            JOIN,
            CallEvent(EventKind.RING, t(0.2), agent="agent1"),
            CallEvent(EventKind.CONNECT, t(3.2), agent="agent1", hold_s=3.0),
            CallEvent(EventKind.LEAVE, t(3.2)),
            CallEvent(EventKind.COMPLETE, t(63.2), agent="agent1", talk_s=60.0),
            CallEvent(EventKind.HANGUP, t(63.3)),
        )
        assert record.state is State.ENDED
        assert pops == [("ringing", "agent1"), ("answered", "agent1"), ("ended", "agent1")]
        assert record.hold_s == 3.0 and record.talk_s == 60.0
        assert [(r.agent, r.outcome) for r in record.rings] == [("agent1", "answered")]


class TestNoAnswerMovesThePop:
    def test_next_agent(self) -> None:
        record, pops = run(
            start("c1", OPEN, T0),
            JOIN,
            CallEvent(EventKind.RING, t(0.2), agent="agent1"),
            CallEvent(EventKind.NO_ANSWER, t(4.2), agent="agent1"),
            CallEvent(EventKind.RING, t(5.2), agent="agent2"),
            CallEvent(EventKind.CONNECT, t(6.0), agent="agent2", hold_s=5.9),
        )
        assert record.state is State.ANSWERED and record.agent == "agent2"
        assert pops == [
            ("ringing", "agent1"),
            ("ended", "agent1"),
            ("ringing", "agent2"),
            ("answered", "agent2"),
        ]
        assert [r.outcome for r in record.rings] == ["no_answer", "answered"]


class TestRingAll:
    def test_other_ringing_agents_are_cleared(self) -> None:
        record, pops = run(
            start("c1", OPEN, T0),
            JOIN,
            CallEvent(EventKind.RING, t(0.2), agent="agent1"),
            CallEvent(EventKind.RING, t(0.2), agent="agent2"),
            CallEvent(EventKind.CONNECT, t(2.0), agent="agent2"),
        )
        assert pops[-2:] == [("ended", "agent1"), ("answered", "agent2")]
        assert {r.agent: r.outcome for r in record.rings} == {
            "agent1": "other_answered",
            "agent2": "answered",
        }


class TestAbandon:
    def test_while_queued(self) -> None:
        record, pops = run(
            start("c1", OPEN, T0), JOIN, CallEvent(EventKind.ABANDON, t(12), hold_s=11.9)
        )
        assert record.state is State.ABANDONED
        assert record.waited_s(t(100)) == 11.9
        assert pops == []

    def test_while_ringing_clears_the_pop(self) -> None:
        record, pops = run(
            start("c1", OPEN, T0),
            JOIN,
            CallEvent(EventKind.RING, t(0.2), agent="agent3"),
            CallEvent(EventKind.HANGUP, t(2)),
        )
        assert record.state is State.ABANDONED
        assert pops == [("ringing", "agent3"), ("ended", "agent3")]
        assert record.waited_s(t(50)) == pytest.approx(1.9)


class TestClosed:
    def test_closed_then_hangup(self) -> None:
        record, pops = run(start("c1", CLOSED, T0), CallEvent(EventKind.HANGUP, t(8)))
        assert record.state is State.ENDED
        assert pops == []

    def test_closed_then_other_queue(self) -> None:
        record, _ = run(start("c1", CLOSED, T0), JOIN)
        assert record.state is State.QUEUED


class TestOutOfOrder:
    @pytest.mark.parametrize(
        "event",
        [
            CallEvent(EventKind.RING, t(1), agent="a"),
            CallEvent(EventKind.COMPLETE, t(1), agent="a"),
            CallEvent(EventKind.NO_ANSWER, t(1), agent="a"),
            CallEvent(EventKind.ABANDON, t(1)),
        ],
    )
    def test_ignored_before_join(self, event: CallEvent) -> None:
        step = advance(start("c1", OPEN, T0), event)
        assert step.ignored
        assert step.record.state is State.ROUTED
        assert step.pops == ()

    def test_duplicate_join_ignored(self) -> None:
        record, _ = run(start("c1", OPEN, T0), JOIN)
        assert advance(record, JOIN).ignored

    def test_connect_without_ring_is_recorded(self) -> None:
        record, pops = run(
            start("c1", OPEN, T0), JOIN, CallEvent(EventKind.CONNECT, t(2), agent="agent1")
        )
        assert record.state is State.ANSWERED
        assert pops == [("answered", "agent1")]

    def test_hangup_after_answer_without_complete_ends(self) -> None:
        record, pops = run(
            start("c1", OPEN, T0),
            JOIN,
            CallEvent(EventKind.CONNECT, t(2), agent="agent1"),
            CallEvent(EventKind.HANGUP, t(30)),
        )
        assert record.state is State.ENDED
        assert pops[-1] == ("ended", "agent1")

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(st.sampled_from(list(EventKind)), st.sampled_from(["a1", "a2", ""])),
            max_size=20,
        )
    )
    def test_any_sequence_is_safe(self, seq: list[tuple[EventKind, str]]) -> None:
        record = start("c1", OPEN, T0)
        ringing: set[str] = set()
        for i, (kind, agent) in enumerate(seq):
            step = advance(record, CallEvent(kind, t(i), agent=agent))
            for pop in step.pops:
                if pop.kind is PopKind.ENDED:
                    # "ended" only ever clears a screen that showed the call.
                    assert pop.agent in ringing
                else:
                    ringing.add(pop.agent)
            record = step.record
            if record.state in (State.ENDED, State.ABANDONED):
                assert record.ended_at is not None
