"""Repeat callers' queue priority, raised over AMI after the join (fake AMI and look-up).

The real thing (app_queue moving the caller ahead): tests/integration/test_repeat_priority_real.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbxbridge.adapters.ami.errors import AmiActionFailed, AmiUnavailable
from pbxbridge.adapters.ami.repeat_priority import RepeatCallerPriority
from pbxbridge.config.loader import parse_rules
from pbxbridge.core.models import Call, Decision
from pbxbridge.core.routing import route
from pbxbridge.core.rules import Rules

RULES = """\
timezone: Europe/Berlin
calendars:
  always: {hours: {daily: ["00:00-24:00"]}}
  never: {hours: {}}
queues:
  vhold: {queue: vhold}
tenants:
  rueckruf:
    name: Gemeinde Rückruf
    dids: ["+49 4408 92-0"]
    calendar: always
    open: {queue: vhold, priority: 5}
    closed: {then: hangup}
    virtual_hold:
      enabled: true
      repeat_caller_priority: 2
  ohne:
    name: Gemeinde Ohne
    dids: ["+49 4408 93-0"]
    calendar: always
    open: {queue: vhold, priority: 5}
    closed: {then: hangup}
    virtual_hold: {enabled: true}
  zu:
    name: Gemeinde Zu
    dids: ["+49 4408 94-0"]
    calendar: never
    open: {queue: vhold, priority: 5}
    closed: {then: hangup}
    virtual_hold: {enabled: true, repeat_caller_priority: 2}
  aus:
    name: Gemeinde Aus
    dids: ["+49 4408 95-0"]
    calendar: always
    open: {queue: vhold, priority: 5}
    closed: {then: hangup}
    virtual_hold: {enabled: false, repeat_caller_priority: 3}
unknown_did: {tenant: rueckruf}
"""
RULES_NOW = parse_rules(RULES, "rules.yaml")[0]
AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
REPEAT = "+494407123452"
NEW = "+494407123459"
CHANNEL = "PJSIP/carrier-00000012"


def decide(
    did: str = "+494408920", caller: str = "04407123452", rules: Rules = RULES_NOW
) -> Decision:
    return route(Call(did=did, caller=caller), rules, AT)


class FakeAmi:
    """Records actions; ``refuse`` maps an action name to the error Asterisk's answer becomes."""

    def __init__(self, refuse: Mapping[str, Exception] | None = None) -> None:
        self.actions: list[dict[str, str]] = []
        self.refuse = dict(refuse or {})

    async def action(self, action: Mapping[str, str], *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        self.actions.append(dict(action))
        error = self.refuse.get(action["Action"])
        if error is not None:
            raise error
        return {"Response": "Success"}


class FakeLookup:
    """Open callbacks by number; ``delay`` seconds until a look-up finishes."""

    def __init__(self, open_numbers: set[str], delay: float = 0.0) -> None:
        self.open_numbers = open_numbers
        self.delay = delay
        self.done: set[str] = set()

    async def wait(self, caller: str) -> None:
        await asyncio.sleep(self.delay)
        self.done.add(caller)

    def since(self, caller: str | None) -> datetime | None:
        if caller in self.done and caller in self.open_numbers:
            return AT
        return None


def join(bump: RepeatCallerPriority, call_id: str = "1700000000.12") -> None:
    bump.ami_event(
        {"Event": "QueueCallerJoin", "Uniqueid": call_id, "Channel": CHANNEL, "Queue": "vhold"}
    )


async def settle(bump: RepeatCallerPriority) -> None:
    """Let the bump's tasks run to their end (they are short in these tests)."""
    await asyncio.wait_for(asyncio.gather(*list(bump._tasks)), 2)


class TestRepeatCallerPriority:
    async def test_a_repeat_caller_is_raised_once_in_the_queue(self) -> None:
        ami, lookup = FakeAmi(), FakeLookup({REPEAT})
        bump = RepeatCallerPriority(ami, lambda: RULES_NOW, lookup)
        bump.routed("1700000000.12", decide())
        await asyncio.sleep(0.02)
        assert ami.actions == []  # not before the caller joined the queue
        join(bump)
        await settle(bump)
        assert ami.actions == [
            {
                "Action": "QueueChangePriorityCaller",
                "Queue": "vhold",
                "Caller": CHANNEL,
                "Priority": "7",  # the tenant's 5, plus 2
                "Immediate": "yes",
            },
            # the dialplan's Queue() re-entries (offer, placeholder) read it
            {"Action": "Setvar", "Channel": CHANNEL, "Variable": "QUEUE_PRIO", "Value": "7"},
        ]
        assert bump.raised == 1

    async def test_an_agents_ticket_counts_without_virtual_hold_enabled(self) -> None:
        ami = FakeAmi()
        bump = RepeatCallerPriority(ami, lambda: RULES_NOW, FakeLookup({REPEAT}))
        bump.routed("1700000000.12", decide(did="+494408950"))
        join(bump)
        await settle(bump)
        assert ami.actions[0]["Priority"] == "8"  # 5 + 3

    async def test_the_join_may_come_before_the_look_up_ends(self) -> None:
        ami, lookup = FakeAmi(), FakeLookup({REPEAT}, delay=0.1)
        bump = RepeatCallerPriority(ami, lambda: RULES_NOW, lookup)
        bump.routed("1700000000.12", decide())
        join(bump)  # app_queue is faster than the database
        await asyncio.sleep(0.3)
        assert [a["Action"] for a in ami.actions] == ["QueueChangePriorityCaller", "Setvar"]
        assert ami.actions[0]["Caller"] == CHANNEL

    async def test_a_caller_without_an_open_callback_keeps_the_priority(self) -> None:
        ami = FakeAmi()
        bump = RepeatCallerPriority(ami, lambda: RULES_NOW, FakeLookup({REPEAT}))
        bump.routed("1700000000.12", decide(caller="04407123459"))
        join(bump)
        await settle(bump)
        assert ami.actions == [] and bump.raised == 0

    @pytest.mark.parametrize(
        ("did", "caller", "why"),
        [
            ("+494408930", "04407123452", "the tenant gives no bump"),
            ("+494408940", "04407123452", "closed: the call does not queue"),
            ("+494408920", "", "withheld number"),
        ],
    )
    async def test_calls_it_leaves_alone(self, did: str, caller: str, why: str) -> None:
        ami, lookup = FakeAmi(), FakeLookup({REPEAT})
        bump = RepeatCallerPriority(ami, lambda: RULES_NOW, lookup)
        bump.routed("1700000000.12", decide(did=did, caller=caller))
        join(bump)
        await settle(bump)
        assert ami.actions == [], why
        assert lookup.done == set(), why  # not even waited for

    async def test_a_late_look_up_means_no_bump(self) -> None:
        ami = FakeAmi()
        bump = RepeatCallerPriority(
            ami, lambda: RULES_NOW, FakeLookup({REPEAT}, delay=1.0), lookup_timeout_s=0.05
        )
        with capture_logs() as logs:
            bump.routed("1700000000.12", decide())
            join(bump)
            await asyncio.sleep(0.2)
        assert ami.actions == []
        assert [e["event"] for e in logs] == ["queue.repeat_caller_lookup_late"]

    async def test_a_caller_who_never_joins_is_forgotten(self) -> None:
        ami = FakeAmi()
        bump = RepeatCallerPriority(
            ami, lambda: RULES_NOW, FakeLookup({REPEAT}), join_timeout_s=0.05
        )
        with capture_logs() as logs:
            bump.routed("1700000000.12", decide())
            await asyncio.sleep(0.2)
            join(bump)  # too late: nothing left to resolve
            await settle(bump)
        assert ami.actions == []
        assert [e["event"] for e in logs] == ["queue.repeat_caller_not_joined"]
        assert bump._pending == {}

    @pytest.mark.parametrize(
        "error",
        [
            AmiActionFailed("QueueChangePriorityCaller", "Caller not in queue"),
            AmiUnavailable("QueueChangePriorityCaller: not connected to AMI"),
        ],
    )
    async def test_a_refused_action_is_logged_without_the_number(self, error: Exception) -> None:
        ami = FakeAmi({"QueueChangePriorityCaller": error})
        bump = RepeatCallerPriority(ami, lambda: RULES_NOW, FakeLookup({REPEAT}))
        with capture_logs() as logs:
            bump.routed("1700000000.12", decide())
            join(bump)
            await settle(bump)
        assert len(ami.actions) == 1 and bump.raised == 0
        (entry,) = logs
        assert entry["event"] == "queue.repeat_caller_priority_failed"
        assert entry["log_level"] == "warning"
        assert entry["tenant"] == "rueckruf" and entry["call_id"] == "1700000000.12"
        assert "4407123452" not in repr(logs)

    async def test_a_refused_setvar_still_counts_as_raised(self) -> None:
        refused = AmiActionFailed("Setvar", "No such channel")
        ami = FakeAmi({"Setvar": refused})
        bump = RepeatCallerPriority(ami, lambda: RULES_NOW, FakeLookup({REPEAT}))
        with capture_logs() as logs:
            bump.routed("1700000000.12", decide())
            join(bump)
            await settle(bump)
        assert [a["Action"] for a in ami.actions] == ["QueueChangePriorityCaller", "Setvar"]
        assert bump.raised == 1
        assert [(e["event"], e["log_level"]) for e in logs] == [
            ("queue.repeat_caller_setvar_failed", "warning"),
            ("queue.repeat_caller_priority", "info"),
        ]

    async def test_the_info_line_names_call_tenant_and_priority_not_the_number(self) -> None:
        bump = RepeatCallerPriority(FakeAmi(), lambda: RULES_NOW, FakeLookup({REPEAT}))
        with capture_logs() as logs:
            bump.routed("1700000000.12", decide())
            join(bump)
            await settle(bump)
        (entry,) = logs
        assert entry == {
            "event": "queue.repeat_caller_priority",
            "log_level": "info",
            "call_id": "1700000000.12",
            "tenant": "rueckruf",
            "queue": "vhold",
            "priority": 7,
        }

    async def test_a_join_of_another_call_is_ignored(self) -> None:
        ami = FakeAmi()
        bump = RepeatCallerPriority(
            ami, lambda: RULES_NOW, FakeLookup({REPEAT}), join_timeout_s=0.1
        )
        bump.routed("1700000000.12", decide())
        join(bump, "1700000000.99")
        await asyncio.sleep(0.25)
        assert ami.actions == []
