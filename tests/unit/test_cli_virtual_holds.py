"""``pbxbridge virtual-holds``: pending holds from the node's state file, numbers shortened."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from pbxbridge.config import load_rules
from pbxbridge.config.compile import state_path
from pbxbridge.core.virtual_hold import (
    VHoldEvent,
    VirtualHoldPolicy,
    check_callback_number,
    offered,
    step,
)
from pbxbridge.storage.virtual_holds import SqliteVirtualHoldStore
from tests.unit.test_cli import NOW, Run, clock, config, failed, ok, run, state_dir

__all__ = ["clock", "config", "run", "state_dir"]  # fixtures used by name

POLICY = VirtualHoldPolicy(enabled=True)
NUMBER = "+4915112345678"


def seed(config: Path) -> None:
    model = load_rules(config)[1]
    at = NOW - timedelta(minutes=30)
    with SqliteVirtualHoldStore(state_path(model, config)) as store:
        for call_id, accept in (("pending", True), ("declined", False)):
            hold = offered(
                node="n1", call_id=call_id, tenant="wardenburg", queue="servicecenter",
                priority=5, caller=None, arrived_at=at, at=at,
            )  # fmt: skip
            if accept:
                number = check_callback_number(NUMBER)
                hold = step(hold, VHoldEvent.ACCEPTED, at=at, policy=POLICY, number=number)
            else:
                hold = step(hold, VHoldEvent.CALL_ENDED, at=at, policy=POLICY)
            store.save(hold)


class TestVirtualHoldsCommand:
    def test_lists_pending_holds_with_shortened_numbers(self, run: Run, config: Path) -> None:
        seed(config)
        out = ok(run("virtual-holds", "-c", config)).output
        assert "wardenburg" in out and "accepted" in out and "n1/pending" in out
        assert "+4915…78" in out and "12345678" not in out
        assert "declined" not in out

    def test_days_lists_finished_ones_too_as_json(self, run: Run, config: Path) -> None:
        seed(config)
        data = json.loads(ok(run("virtual-holds", "-c", config, "--days", "1", "--json")).output)
        assert sorted(h["state"] for h in data) == ["accepted", "declined"]
        accepted = next(h for h in data if h["state"] == "accepted")
        assert accepted["number"] == "+4915…78"
        assert [e[1] for e in accepted["events"]] == ["offered", "accepted"]

    def test_nothing_pending(self, run: Run, config: Path) -> None:
        assert "no virtual holds pending" in ok(run("virtual-holds", "-c", config)).output

    def test_unknown_tenant(self, run: Run, config: Path) -> None:
        failed(run("virtual-holds", "-c", config, "--tenant", "nowhere"), "unknown tenant")
