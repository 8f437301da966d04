"""Live virtual-hold gauges for /metrics: waiting now, accepted/connected/failed today."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pbxbridge import components
from pbxbridge.components import VirtualHolds
from pbxbridge.core.virtual_hold import (
    VHoldEvent,
    VirtualHold,
    VirtualHoldPolicy,
    check_callback_number,
    offered,
    step,
)
from pbxbridge.tracking.virtual_holds import HELP, VirtualHoldBoard

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=BERLIN).astimezone(UTC)
POLICY = VirtualHoldPolicy(enabled=True, max_tries=1)


def hold(call_id: str, tenant: str = "wardenburg") -> VirtualHold:
    h = offered(
        node="n1", call_id=call_id, tenant=tenant, queue="q", priority=0, caller=None,
        arrived_at=T0, at=T0,
    )  # fmt: skip
    number = check_callback_number("04407730")
    h = step(h, VHoldEvent.ACCEPTED, at=T0, policy=POLICY, number=number)
    return step(h, VHoldEvent.PLACEHOLDER_QUEUED, at=T0, policy=POLICY)


def calling(h: VirtualHold) -> VirtualHold:
    h = step(h, VHoldEvent.AGENT_REACHED, at=T0, policy=POLICY, agent="a")
    return step(h, VHoldEvent.CALLING, at=T0, policy=POLICY)


def as_dict(board: VirtualHoldBoard) -> dict[tuple[str, str], float]:
    return {(family, labels["tenant"]): value for family, labels, value in board.gauges()}


class TestVirtualHoldBoard:
    def test_counts_per_tenant(self) -> None:
        now = [T0 + timedelta(hours=1)]
        board = VirtualHoldBoard(BERLIN, tenants=["oldenburg"], clock=lambda: now[0])
        a, b, c = hold("a"), hold("b"), hold("c", tenant="friesland")
        for h in (a, b, c):
            board.observe(h)
        connected = step(calling(a), VHoldEvent.CITIZEN_ANSWERED, at=T0, policy=POLICY)
        due = T0 + timedelta(days=1)
        ticket = step(
            calling(b), VHoldEvent.CITIZEN_FAILED, at=T0, policy=POLICY, outcome="busy",
            ticket_due_at=due,
        )  # fmt: skip
        board.observe(connected)
        board.observe(ticket)
        board.observe(ticket)  # idempotent
        got = as_dict(board)
        assert got[("pbxbridge_virtual_holds_waiting", "wardenburg")] == 0
        assert got[("pbxbridge_virtual_holds_waiting", "friesland")] == 1
        assert got[("pbxbridge_virtual_holds_accepted", "wardenburg")] == 2
        assert got[("pbxbridge_virtual_holds_connected", "wardenburg")] == 1
        assert got[("pbxbridge_virtual_holds_failed", "wardenburg")] == 1
        assert got[("pbxbridge_virtual_holds_accepted", "oldenburg")] == 0
        assert {family for family, _ in got} == set(HELP)

    def test_day_counts_start_again_the_next_local_day(self) -> None:
        now = [T0]
        board = VirtualHoldBoard(BERLIN, clock=lambda: now[0])
        board.observe(hold("a"))
        assert as_dict(board)[("pbxbridge_virtual_holds_accepted", "wardenburg")] == 1
        now[0] = datetime(2026, 12, 2, 0, 0, 1, tzinfo=BERLIN)
        got = as_dict(board)
        assert got[("pbxbridge_virtual_holds_accepted", "wardenburg")] == 0
        assert got[("pbxbridge_virtual_holds_waiting", "wardenburg")] == 1  # still owed

    def test_face(self) -> None:
        board = VirtualHoldBoard(BERLIN, tenants=["t"], clock=lambda: T0)
        face = VirtualHolds(board)
        asyncio.run(face.start())
        assert face.health() == {} and face.problems() == []
        assert len(list(face.gauges())) == 4
        assert list(VirtualHolds(None).gauges()) == []
        asyncio.run(face.stop())
        assert set(HELP) <= set(components.GAUGE_HELP)
