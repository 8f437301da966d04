"""Today's call figures for the supervisor page, fed with lifecycle changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pbxbridge.core.lifecycle import CallEvent, CallRecord, EventKind, advance, start
from pbxbridge.core.models import Action, Decision
from pbxbridge.core.servicelevel import Fraction
from pbxbridge.tracking.call_board import ALL, CallBoard, Outcomes, waiting
from pbxbridge.tracking.metrics import LiveServiceLevel

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 10, 8, 5, tzinfo=UTC)  # 09:05 in Berlin: half hour 18


def call(
    board: CallBoard, call_id: str, tenant: str, joined: datetime, wait_s: float, answered: bool
) -> CallRecord:
    record = start(call_id, Decision(action=Action.QUEUE, tenant=tenant), joined)
    events = [CallEvent(EventKind.JOIN, joined, queue="servicecenter")]
    end = joined + timedelta(seconds=wait_s)
    if answered:
        events += [
            CallEvent(EventKind.RING, end - timedelta(seconds=1), agent="agent1"),
            CallEvent(EventKind.CONNECT, end, agent="agent1", hold_s=wait_s),
        ]
    else:
        events.append(CallEvent(EventKind.ABANDON, end, hold_s=wait_s))
    for event in events:
        step = advance(record, event)
        record = step.record
        board.observe(record, event)
    return record


class TestCallBoard:
    def test_counts_per_tenant_and_the_shared_queue(self) -> None:
        board = CallBoard(BERLIN)
        call(board, "a", "wardenburg", T0, 10.0, True)
        call(board, "b", "wardenburg", T0, 30.0, True)
        call(board, "c", "oldenburg", T0, 3.0, False)  # short abandon
        call(board, "d", "oldenburg", T0, 50.0, False)
        today = board.today(T0 + timedelta(minutes=2))
        w, o, total = today["wardenburg"], today["oldenburg"], today[ALL]
        assert (w.offered, w.answered, w.within, w.abandoned) == (2, 2, 1, 0)
        assert (o.offered, o.answered, o.abandoned, o.short) == (2, 0, 2, 1)
        assert (total.offered, total.answered, total.abandoned) == (4, 2, 2)
        assert total.sl_answered() == Fraction(1, 2)
        # of offered: 1 within of (4 answered or abandoned - 1 short)
        assert total.sl_offered() == Fraction(1, 3)

    def test_half_hours_are_local(self) -> None:
        board = CallBoard(BERLIN)
        call(board, "a", "t", T0, 5.0, True)  # 09:05 local
        call(board, "b", "t", T0 + timedelta(minutes=30), 5.0, True)  # 09:35 local
        slots = board.half_hours(T0 + timedelta(hours=1))[ALL]
        assert len(slots) == 48
        assert [(i, s.offered) for i, s in enumerate(slots) if s.offered] == [(18, 1), (19, 1)]

    def test_recent_is_the_last_fifteen_minutes(self) -> None:
        board = CallBoard(BERLIN)
        call(board, "old", "t", T0, 40.0, True)
        call(board, "new", "t", T0 + timedelta(minutes=20), 5.0, True)
        recent = board.recent(T0 + timedelta(minutes=25))
        assert (recent[ALL].answered, recent[ALL].within) == (1, 1)
        assert board.today(T0 + timedelta(minutes=25))[ALL].answered == 2

    def test_a_new_day_starts_empty(self) -> None:
        board = CallBoard(BERLIN)
        call(board, "a", "t", T0, 5.0, True)
        assert board.today(T0 + timedelta(days=1))[ALL].offered == 0
        assert board.today(T0 + timedelta(days=1)).keys() == {ALL}

    def test_agrees_with_the_metrics_gauge(self) -> None:
        board = CallBoard(BERLIN)
        live = LiveServiceLevel(BERLIN)
        for i, (wait, answered) in enumerate(
            [(0, True), (20, True), (25, True), (3, False), (40, False)]
        ):
            record = call(board, str(i), "t", T0, wait, answered)
            live.add(record.answered_at or record.ended_at or T0, "t", answered, float(wait))
        now = T0 + timedelta(minutes=1)
        figures = live.figures(now)
        assert figures[("t", "day")] == (
            board.today(now)["t"].sl_answered().ratio(),
            board.today(now)["t"].sl_offered().ratio(),
        )
        assert figures[("t", "15m")] == (
            board.recent(now)["t"].sl_answered().ratio(),
            board.recent(now)["t"].sl_offered().ratio(),
        )

    def test_the_window_stays_bounded_without_readers(self) -> None:
        board = CallBoard(BERLIN)
        for i in range(200):
            call(board, str(i), "t", T0 + timedelta(minutes=i), 5.0, True)
        # 200 minutes of calls, one a minute: only the last 15 minutes are kept.
        assert len(board._recent) <= 16
        assert board.today(T0 + timedelta(minutes=200))[ALL].answered == 200

    def test_recent_includes_its_start_but_not_outcomes_stamped_after_now(self) -> None:
        board = CallBoard(BERLIN)
        board.outcome("t", T0 - timedelta(minutes=15), answered=True, wait_s=1.0)
        assert board.recent(T0)["t"].answered == 1
        board.outcome("t", T0 + timedelta(seconds=3), answered=False, wait_s=40.0)
        # Not yet the one stamped ahead (a PBX clock a little fast), and the
        # first is forgotten: the board keeps 15 minutes behind its newest outcome.
        assert "t" not in board.recent(T0)
        # The gauge counts both.
        live = LiveServiceLevel(BERLIN)
        live.add(T0 - timedelta(minutes=15), "t", True, 1.0)
        live.add(T0 + timedelta(seconds=3), "t", False, 40.0)
        assert live.figures(T0)[("t", "15m")] == (1.0, 0.5)
        assert board.recent(T0 + timedelta(seconds=3))["t"].sl_offered() == Fraction(0, 1)


class TestOutcomes:
    def test_classifies_by_the_service_level_rules(self) -> None:
        outcomes = Outcomes(threshold_s=20.0, short_abandon_s=5.0)
        kept = [
            outcomes.add("a", T0, answered=True, wait_s=20.0),
            outcomes.add("a", T0, answered=True, wait_s=20.01),
            outcomes.add("a", T0, answered=False, wait_s=4.99),
            outcomes.add("a", T0, answered=False, wait_s=5.0),
            outcomes.add("a", T0, answered=True, wait_s=None),  # unknown: late
            outcomes.add("a", T0, answered=False, wait_s=None),  # unknown: not short
        ]
        assert [(o.within, o.short) for o in kept] == [
            (True, False),
            (False, False),
            (False, True),
            (False, False),
            (False, False),
            (False, False),
        ]

    def test_tally_counts_between_inclusive_ends_per_tenant_and_all(self) -> None:
        outcomes = Outcomes(threshold_s=20.0, short_abandon_s=5.0)
        outcomes.add("a", T0 + timedelta(minutes=1), answered=True, wait_s=3.0)
        outcomes.add("a", T0 - timedelta(seconds=1), answered=True, wait_s=3.0)  # before
        outcomes.add("b", T0, answered=False, wait_s=2.0)  # at the start
        outcomes.add("b", T0 + timedelta(minutes=2), answered=False, wait_s=30.0)  # at the end
        outcomes.add("c", T0 + timedelta(minutes=3), answered=True, wait_s=1.0)  # after
        window = outcomes.tally(T0, T0 + timedelta(minutes=2))
        assert window.keys() == {"a", "b", ALL}
        assert (window["a"].answered, window["a"].within) == (1, 1)
        assert (window["b"].abandoned, window["b"].short) == (2, 1)
        assert (window[ALL].answered, window[ALL].abandoned, window[ALL].offered) == (1, 2, 0)
        assert window[ALL].sl_offered() == Fraction(1, 2)
        assert outcomes.tally(T0 + timedelta(minutes=2)).keys() == {"b", "c", ALL}
        assert outcomes.tally(T0 + timedelta(hours=1)) == {}

    def test_forgets_the_oldest_arrivals_only(self) -> None:
        outcomes = Outcomes(threshold_s=20.0, short_abandon_s=5.0)
        outcomes.add("a", T0, answered=True, wait_s=1.0)
        outcomes.add("a", T0 + timedelta(minutes=10), answered=True, wait_s=1.0)
        outcomes.add("a", T0 - timedelta(minutes=10), answered=True, wait_s=1.0)  # late arrival
        outcomes.forget_before(T0 + timedelta(minutes=5))
        # The late arrival waits behind a newer one; windows skip it by time.
        assert len(outcomes) == 2
        assert outcomes.tally(T0 + timedelta(minutes=5))[ALL].answered == 1


class TestWaiting:
    def test_counts_queued_and_ringing_callers_with_the_longest_wait(self) -> None:
        queued = start("q", Decision(action=Action.QUEUE, tenant="a"), T0)
        queued = advance(queued, CallEvent(EventKind.JOIN, T0, queue="s")).record
        ringing = start("r", Decision(action=Action.QUEUE, tenant="b"), T0)
        ringing = advance(
            ringing, CallEvent(EventKind.JOIN, T0 + timedelta(seconds=10), queue="s")
        ).record
        ringing = advance(
            ringing, CallEvent(EventKind.RING, T0 + timedelta(seconds=11), agent="x")
        ).record
        routed = start("n", Decision(action=Action.QUEUE, tenant="a"), T0)
        out = waiting([queued, ringing, routed], T0 + timedelta(seconds=30))
        assert (out[ALL].calls, out[ALL].longest_s) == (2, 30.0)
        assert (out["b"].calls, out["b"].longest_s) == (1, 20.0)
        assert waiting([], T0)[ALL].calls == 0
