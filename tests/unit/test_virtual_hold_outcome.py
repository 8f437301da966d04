"""One classification of a virtual hold's outcome for the live gauges and the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pbxbridge.core.virtual_hold import (
    VHoldEvent,
    VirtualHold,
    VirtualHoldPolicy,
    check_callback_number,
    offered,
    step,
)
from pbxbridge.core.virtual_hold_outcome import HoldOutcome, VHoldOutcome, hold_outcome
from pbxbridge.journal.report import count_holds
from pbxbridge.tracking.virtual_holds import VirtualHoldBoard

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=BERLIN).astimezone(UTC)
POLICY = VirtualHoldPolicy(enabled=True, max_tries=1)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def offer(call_id: str) -> VirtualHold:
    return offered(
        node="n1", call_id=call_id, tenant="wardenburg", queue="q", priority=0, caller=None,
        arrived_at=T0, at=T0,
    )  # fmt: skip


def accepted(call_id: str) -> VirtualHold:
    h = step(
        offer(call_id), VHoldEvent.ACCEPTED, at=minutes(1), policy=POLICY,
        number=check_callback_number("04407730"),
    )  # fmt: skip
    return step(h, VHoldEvent.PLACEHOLDER_QUEUED, at=minutes(1), policy=POLICY)


def calling(call_id: str) -> VirtualHold:
    h = step(accepted(call_id), VHoldEvent.AGENT_REACHED, at=minutes(3), policy=POLICY, agent="a")
    return step(h, VHoldEvent.CALLING, at=minutes(3), policy=POLICY)


def every_kind() -> dict[str, VirtualHold]:
    ticket = step(
        calling("t"), VHoldEvent.CITIZEN_FAILED, at=minutes(4), policy=POLICY,
        outcome="busy", ticket_due_at=T0 + timedelta(days=1),
    )  # fmt: skip
    return {
        "offered": offer("o"),
        "ended": step(offer("e"), VHoldEvent.CALL_ENDED, at=minutes(2), policy=POLICY),
        "pending": accepted("p"),
        "connected": step(calling("c"), VHoldEvent.CITIZEN_ANSWERED, at=minutes(5), policy=POLICY),
        "ticket": ticket,
        "cancelled": step(accepted("x"), VHoldEvent.CANCELLED, at=minutes(2), policy=POLICY),
    }


class TestHoldOutcome:
    def test_each_kind_with_its_dates(self) -> None:
        got = {name: hold_outcome(h) for name, h in every_kind().items()}
        assert got == {
            "offered": HoldOutcome(VHoldOutcome.NOT_ACCEPTED),
            "ended": HoldOutcome(VHoldOutcome.NOT_ACCEPTED),
            "pending": HoldOutcome(VHoldOutcome.PENDING, minutes(1)),
            "connected": HoldOutcome(VHoldOutcome.CONNECTED, minutes(1), minutes(5)),
            "ticket": HoldOutcome(VHoldOutcome.FAILED, minutes(1), minutes(4)),
            "cancelled": HoldOutcome(VHoldOutcome.ACCEPTED_ONLY, minutes(1)),
        }
        assert got["connected"].to_connect_s == 240.0
        assert got["ticket"].to_connect_s is None
        assert got["pending"].to_connect_s is None

    def test_the_report_and_the_gauges_count_alike(self) -> None:
        holds = list(every_kind().values())
        figures = count_holds(holds)
        board = VirtualHoldBoard(BERLIN, clock=lambda: minutes(10))
        for h in holds:
            board.observe(h)
        gauges = {family: value for family, _, value in board.gauges()}
        assert (figures.virtual_hold_offered, figures.virtual_hold_accepted) == (6, 4)
        assert gauges["pbxbridge_virtual_holds_accepted"] == 4
        assert figures.virtual_hold_connected == gauges["pbxbridge_virtual_holds_connected"] == 1
        assert figures.virtual_hold_failed == gauges["pbxbridge_virtual_holds_failed"] == 1
        assert figures.virtual_hold_pending == gauges["pbxbridge_virtual_holds_waiting"] == 1
        assert figures.virtual_hold_mean_to_connect_s == 240.0
