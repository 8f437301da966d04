"""components/wiring.py: who hears a saved virtual hold."""

from __future__ import annotations

from datetime import UTC, datetime

from pbxbridge.components.wiring import hold_observers
from pbxbridge.core.virtual_hold import VirtualHold


class _Board:
    def __init__(self) -> None:
        self.seen: list[VirtualHold] = []

    def observe(self, hold: VirtualHold) -> None:
        self.seen.append(hold)


class _OpenCallbacks:
    def __init__(self) -> None:
        self.changed: list[VirtualHold] = []

    def hold_changed(self, hold: VirtualHold) -> None:
        self.changed.append(hold)


def _hold() -> VirtualHold:
    at = datetime(2026, 12, 3, 9, 14, tzinfo=UTC)
    return VirtualHold(
        node="n1",
        call_id="1.1",
        tenant="wardenburg",
        queue="servicecenter",
        priority=0,
        arrived_at=at,
        offered_at=at,
        updated_at=at,
        caller="+494407123456",
    )


class TestHoldObservers:
    def test_each_saved_hold_reaches_the_gauges_and_the_open_callback_cache(self) -> None:
        board, notes = _Board(), _OpenCallbacks()
        on_change = hold_observers(board, notes)  # type: ignore[arg-type]
        hold = _hold()
        on_change(hold)
        assert board.seen == [hold]
        assert notes.changed == [hold]

    def test_without_a_journal_only_the_gauges_hear_it(self) -> None:
        board = _Board()
        on_change = hold_observers(board, None)  # type: ignore[arg-type]
        hold = _hold()
        on_change(hold)
        assert board.seen == [hold]
