"""Virtual hold core: estimate, offer, callback numbers, retries, tickets, state machine."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.core.calendar import Calendar, Interval
from pbxbridge.core.virtual_hold import (
    InvalidTransition,
    VHoldEvent,
    VHoldState,
    VirtualHold,
    VirtualHoldPolicy,
    check_callback_number,
    closing_step,
    estimate_wait,
    next_try_at,
    offer_due,
    offered,
    open_callback_note,
    repeat_priority,
    requeue_spot,
    retry_due,
    step,
    ticket_due,
)

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # Tuesday 09:00 in Berlin
ON = VirtualHoldPolicy(enabled=True, offer_after_estimate_s=120, retry_delay_s=300, max_tries=3)


class TestEstimateWait:
    def test_free_agent_left_means_no_wait(self) -> None:
        assert estimate_wait(callers_ahead=1, agents_free=2, agents_busy=3, handle_times=[]) == 0.0

    def test_callers_ahead_times_aht_over_staffed(self) -> None:
        # 4 ahead, no one free, 2 working, AHT 200 s: (4 + 1) * 200 / 2 = 500 s.
        got = estimate_wait(callers_ahead=4, agents_free=0, agents_busy=2, handle_times=[100, 300])
        assert got == 500.0

    def test_free_agents_reduce_the_callers_who_must_wait(self) -> None:
        # 3 ahead, 1 free: 3 must wait; 4 staffed, default AHT 180: 3 * 180 / 4 = 135.
        got = estimate_wait(callers_ahead=3, agents_free=1, agents_busy=3, handle_times=[])
        assert got == 135.0

    def test_only_the_last_twenty_handle_times_count(self) -> None:
        times = [1000.0] * 5 + [60.0] * 20
        got = estimate_wait(callers_ahead=0, agents_free=0, agents_busy=1, handle_times=times)
        assert got == 60.0

    def test_nobody_logged_in_is_infinite(self) -> None:
        got = estimate_wait(callers_ahead=0, agents_free=0, agents_busy=0, handle_times=[60])
        assert math.isinf(got)


class TestOfferDue:
    def test_off_by_default(self) -> None:
        got = offer_due(VirtualHoldPolicy(), waited_s=900, estimated_wait_s=900)
        assert not got.due

    def test_estimate_must_exceed_threshold(self) -> None:
        assert not offer_due(ON, waited_s=0, estimated_wait_s=120).due
        assert offer_due(ON, waited_s=0, estimated_wait_s=121).due
        assert not offer_due(ON, waited_s=0, estimated_wait_s=None).due

    def test_waited_time_reaches_threshold(self) -> None:
        policy = VirtualHoldPolicy(
            enabled=True, offer_after_estimate_s=None, offer_after_waited_s=60
        )
        assert not offer_due(policy, waited_s=59.9, estimated_wait_s=None).due
        assert offer_due(policy, waited_s=60, estimated_wait_s=None).due

    def test_any_or_all_of_both_thresholds(self) -> None:
        anyp = VirtualHoldPolicy(
            enabled=True, offer_when="any", offer_after_estimate_s=120, offer_after_waited_s=60
        )
        allp = replace(anyp, offer_when="all")
        assert offer_due(anyp, waited_s=70, estimated_wait_s=10).due
        assert not offer_due(allp, waited_s=70, estimated_wait_s=10).due
        assert offer_due(allp, waited_s=70, estimated_wait_s=200).due

    def test_repeat_interval(self) -> None:
        assert not offer_due(ON, waited_s=100, estimated_wait_s=500, last_offer_waited_s=50).due
        assert offer_due(ON, waited_s=110, estimated_wait_s=500, last_offer_waited_s=50).due

    def test_no_repeat_when_interval_is_zero(self) -> None:
        once = VirtualHoldPolicy(enabled=True, repeat_s=0)
        assert not offer_due(once, waited_s=1000, estimated_wait_s=500, last_offer_waited_s=0).due


def _offered() -> VirtualHold:
    """A hold just offered at T0 to an anonymous caller (no number to call back)."""
    return offered(
        node="n",
        call_id="c",
        tenant="t",
        queue="q",
        priority=0,
        caller=None,
        arrived_at=T0,
        at=T0,
    )


def _accepted() -> VirtualHold:
    hold = offered(
        node="n1",
        call_id="c1",
        tenant="wardenburg",
        queue="service",
        priority=5,
        caller="+494407730",
        arrived_at=T0,
        at=T0 + timedelta(seconds=90),
        waited_s=80,
    )
    number = check_callback_number("+494407730")
    return step(
        hold,
        VHoldEvent.ACCEPTED,
        at=T0 + timedelta(seconds=100),
        policy=ON,
        number=number,
        position=3,
    )


def _calling(hold: VirtualHold, at: datetime) -> VirtualHold:
    if hold.state is VHoldState.ACCEPTED:
        hold = step(hold, VHoldEvent.PLACEHOLDER_QUEUED, at=at, policy=ON)
    else:
        hold = step(hold, VHoldEvent.RETRY_QUEUED, at=at, policy=ON)
    hold = step(hold, VHoldEvent.AGENT_REACHED, at=at, policy=ON, agent="anna")
    return step(hold, VHoldEvent.CALLING, at=at, policy=ON)


class TestStateMachine:
    def test_offer_accept_connect(self) -> None:
        hold = _accepted()
        assert hold.state is VHoldState.ACCEPTED
        assert hold.number == "+494407730" and hold.dial == "04407730" and hold.position == 3
        hold = _calling(hold, T0 + timedelta(seconds=400))
        hold = step(hold, VHoldEvent.CITIZEN_ANSWERED, at=T0 + timedelta(seconds=410), policy=ON)
        assert hold.state is VHoldState.CONNECTED
        assert hold.wait_s == 410.0
        assert [e[1] for e in hold.events] == [
            "offered",
            "accepted",
            "placeholder_queued",
            "agent_reached",
            "calling",
            "citizen_answered",
        ]
        assert hold.attempts[-1].outcome == "answered" and hold.attempts[-1].agent == "anna"

    def test_accept_needs_an_accepted_number(self) -> None:
        hold = _offered()
        bad = check_callback_number("110")
        with pytest.raises(InvalidTransition):
            step(hold, VHoldEvent.ACCEPTED, at=T0, policy=ON, number=bad)

    def test_repeated_offer_counts(self) -> None:
        hold = _offered()
        hold = step(hold, VHoldEvent.OFFERED, at=T0, policy=ON, waited_s=180)
        assert hold.offers == 2 and hold.last_offer_waited_s == 180

    def test_failed_tries_retry_then_ticket(self) -> None:
        hold = _accepted()
        at = T0 + timedelta(minutes=10)
        hold = _calling(hold, at)
        hold = step(hold, VHoldEvent.CITIZEN_FAILED, at=at, policy=ON, outcome="busy")
        assert hold.state is VHoldState.RETRY_WAIT
        assert hold.next_try_at == at + timedelta(seconds=300)
        hold = _calling(hold, at)
        hold = step(hold, VHoldEvent.CITIZEN_FAILED, at=at, policy=ON, outcome="noanswer")
        assert hold.state is VHoldState.RETRY_WAIT
        hold = _calling(hold, at)
        due = datetime(2026, 12, 2, 17, 0, tzinfo=BERLIN)
        with pytest.raises(InvalidTransition):
            step(hold, VHoldEvent.CITIZEN_FAILED, at=at, policy=ON, outcome="noanswer")
        hold = step(
            hold, VHoldEvent.CITIZEN_FAILED, at=at, policy=ON, outcome="noanswer", ticket_due_at=due
        )
        assert hold.state is VHoldState.TICKET and hold.ticket_due_at == due
        assert [a.outcome for a in hold.attempts] == ["busy", "noanswer", "noanswer"]

    def test_agent_gone_is_not_a_try(self) -> None:
        hold = _calling(_accepted(), T0)
        hold = step(hold, VHoldEvent.CITIZEN_FAILED, at=T0, policy=ON, outcome="agent_gone")
        assert hold.state is VHoldState.RETRY_WAIT and hold.next_try_at == T0
        assert hold.tries_failed == 0

    def test_lost_placeholder_is_requeued_at_once_at_the_head(self) -> None:
        hold = step(_accepted(), VHoldEvent.PLACEHOLDER_QUEUED, at=T0, policy=ON)
        at = T0 + timedelta(minutes=3)
        hold = step(hold, VHoldEvent.LOST, at=at, policy=ON)
        assert hold.state is VHoldState.RETRY_WAIT and hold.next_try_at == at
        assert requeue_spot(hold) == (5, 1)

    def test_closing_turns_a_waiting_hold_into_a_ticket(self) -> None:
        hold = step(_accepted(), VHoldEvent.PLACEHOLDER_QUEUED, at=T0, policy=ON)
        due = datetime(2026, 12, 2, 17, 0, tzinfo=BERLIN)
        hold = step(hold, VHoldEvent.CLOSED, at=T0, policy=ON, ticket_due_at=due)
        assert hold.state is VHoldState.TICKET and hold.ticket_due_at == due

    def test_terminal_states_take_no_event(self) -> None:
        hold = _calling(_accepted(), T0)
        hold = step(hold, VHoldEvent.CITIZEN_ANSWERED, at=T0, policy=ON)
        for event in (VHoldEvent.CLOSED, VHoldEvent.LOST, VHoldEvent.CANCELLED, VHoldEvent.CALLING):
            with pytest.raises(InvalidTransition):
                step(hold, event, at=T0, policy=ON, ticket_due_at=T0)

    def test_call_that_went_on_declines(self) -> None:
        hold = _offered()
        hold = step(hold, VHoldEvent.ENTRY_FAILED, at=T0, policy=ON)
        assert hold.state is VHoldState.OFFERED
        hold = step(hold, VHoldEvent.CALL_ENDED, at=T0, policy=ON)
        assert hold.state is VHoldState.DECLINED


class TestRetriesAndTickets:
    def test_next_try(self) -> None:
        assert next_try_at(ON, tries_done=1, failed_at=T0) == T0 + timedelta(minutes=5)
        assert next_try_at(ON, tries_done=2, failed_at=T0) == T0 + timedelta(minutes=5)
        assert next_try_at(ON, tries_done=3, failed_at=T0) is None

    def test_ticket_due_end_of_next_working_day(self) -> None:
        # Mon-Fri 08:00-16:00; Friday evening -> Monday 16:00.
        day = (Interval(8 * 3600, 16 * 3600),)
        cal = Calendar(name="c", weekly=(day, day, day, day, day, (), ()))
        friday_evening = datetime(2026, 12, 4, 18, 30, tzinfo=BERLIN)
        got = ticket_due(cal, BERLIN, at=friday_evening, working_days=1)
        assert got == datetime(2026, 12, 7, 16, 0, tzinfo=BERLIN)
        assert got.date() == date(2026, 12, 7)


class TestRepeatCallers:
    def test_note_within_a_week_names_the_weekday(self) -> None:
        since = datetime(2026, 12, 1, 9, 14, tzinfo=BERLIN)  # a Tuesday
        now = datetime(2026, 12, 3, 11, 0, tzinfo=BERLIN)
        assert open_callback_note(since, now=now) == "offener Rückruf vom Di 09:14"

    def test_older_note_names_the_date(self) -> None:
        since = datetime(2026, 11, 24, 9, 14, tzinfo=BERLIN)
        now = datetime(2026, 12, 3, 11, 0, tzinfo=BERLIN)
        assert open_callback_note(since, now=now) == "offener Rückruf vom 24.11. 09:14"

    def test_priority_bump(self) -> None:
        policy = VirtualHoldPolicy(repeat_caller_priority=10)
        assert repeat_priority(5, policy, has_open_callback=True) == 15
        assert repeat_priority(5, policy, has_open_callback=False) == 5


class TestClosing:
    DAY = (Interval(8 * 3600, 16 * 3600),)
    CAL = Calendar(name="c", weekly=(DAY, DAY, DAY, DAY, DAY, (), ()))

    def close(self, hold: VirtualHold, *, open_now: bool, at: datetime) -> VirtualHold | None:
        return closing_step(
            hold, open_now=open_now, at=at, policy=ON, calendar=self.CAL, tz=BERLIN, working_days=1
        )

    def test_a_waiting_hold_becomes_a_ticket_due_end_of_next_working_day(self) -> None:
        hold = step(_accepted(), VHoldEvent.PLACEHOLDER_QUEUED, at=T0, policy=ON)
        friday_close = datetime(2026, 12, 4, 16, 0, tzinfo=BERLIN)
        got = self.close(hold, open_now=False, at=friday_close)
        assert got is not None and got.state is VHoldState.TICKET
        assert got.ticket_due_at == datetime(2026, 12, 7, 16, 0, tzinfo=BERLIN)
        assert got.events[-1][1:] == ("closed", "tenant closed")

    def test_open_tenant_or_agent_already_on_it_changes_nothing(self) -> None:
        waiting = step(_accepted(), VHoldEvent.PLACEHOLDER_QUEUED, at=T0, policy=ON)
        assert self.close(waiting, open_now=True, at=T0) is None
        taken = step(waiting, VHoldEvent.AGENT_REACHED, at=T0, policy=ON, agent="anna")
        assert self.close(taken, open_now=False, at=T0) is None

    def test_retry_due(self) -> None:
        hold = _calling(_accepted(), T0)
        hold = step(hold, VHoldEvent.CITIZEN_FAILED, at=T0, policy=ON, outcome="busy")
        assert not retry_due(hold, T0 + timedelta(seconds=299))
        assert retry_due(hold, T0 + timedelta(seconds=300))
        assert not retry_due(_accepted(), T0 + timedelta(days=1))
