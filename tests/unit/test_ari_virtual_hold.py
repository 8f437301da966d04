"""The virtual hold's Asterisk side with fake ARI and AMI (the real flow: integration tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pbxbridge.adapters.ami.queue import QueueEntry, QueueMember, QueueSnapshot
from pbxbridge.adapters.ari.virtual_hold import (
    AstdbRecord,
    CallbackLegSink,
    VirtualHoldService,
    placeholder_call_id,
    read_back,
)
from pbxbridge.config.loader import parse_rules
from pbxbridge.core.models import Override, OverrideState
from pbxbridge.core.rules import Rules
from pbxbridge.core.virtual_hold import VHoldState, VirtualHold
from pbxbridge.storage.virtual_holds import open_virtual_hold_store

RULES = """\
timezone: Europe/Berlin
calendars:
  always: {hours: {daily: ["00:00-24:00"]}}
queues:
  vhold: {queue: vhold}
tenants:
  rueckruf:
    name: Gemeinde Rückruf
    dids: ["+49 4408 92-0"]
    calendar: always
    open: {queue: vhold, priority: 5, whisper: custom/t, callerid_prefix: "RR"}
    closed: {then: hangup}
    virtual_hold:
      enabled: true
      offer_after_waiting: 0
      retry_after: 60
      max_tries: 2
      outbound_context: out-trunk
unknown_did: {tenant: rueckruf}
"""
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)  # a Thursday, 11:00 in Berlin


def _entry(uniqueid: str, position: int, priority: int = 5) -> QueueEntry:
    return QueueEntry(
        "vhold", position, f"PJSIP/trunk-{uniqueid}", uniqueid, "", "", 10, priority, {}
    )


def _member(n: int) -> QueueMember:
    return QueueMember(
        "vhold", f"a{n}", f"PJSIP/agent{n}", "", "static", 0, 0, 0, True, 2, False, "", {}
    )


class FakeAri:
    def __init__(self) -> None:
        self.variables: dict[str, dict[str, str]] = {}
        self.continued: list[tuple[str, str, str, int]] = []

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        self.variables.setdefault(channel_id, {})[name] = value

    async def continue_in_dialplan(
        self, channel_id: str, context: str, exten: str, prio: int
    ) -> None:
        self.continued.append((channel_id, context, exten, prio))


class FakeAmi:
    connected = True

    def __init__(self) -> None:
        self.entries: list[QueueEntry] = []
        self.originated: list[dict[str, str]] = []
        self.actions: list[dict[str, str]] = []
        self.astdb: dict[str, str] = {}
        self.channels: list[str] = []

    async def queue_status(self, queue: str) -> QueueSnapshot:
        return QueueSnapshot({}, (_member(1), _member(2)), tuple(self.entries))

    async def originate(self, **fields: str) -> dict[str, str]:
        self.originated.append(fields)
        return {"Response": "Success"}

    async def action(self, fields: dict[str, str], **_: Any) -> Any:
        self.actions.append(fields)
        if fields["Action"] == "DBGetTree":
            prefix = f"/{fields['Family']}/"
            return [
                {"Event": "DBGetTreeResponse", "Key": prefix + k, "Val": v}
                for k, v in self.astdb.items()
            ]
        if fields["Action"] == "CoreShowChannels":
            return [{"Event": "CoreShowChannel", "Channel": c} for c in self.channels]
        if fields["Action"] == "DBDel":
            self.astdb.pop(fields["Key"], None)
        return {"Response": "Success"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def rules() -> Rules:
    return parse_rules(RULES, "rules.yaml")[0]


@pytest.fixture
def overrides() -> list[Override]:
    return []


def _service(
    rules: Rules,
    tmp_path: Path,
    overrides: list[Override],
    clock: Clock,
    on_leg: CallbackLegSink | None = None,
) -> tuple[VirtualHoldService, FakeAri, FakeAmi]:
    """The service on node n1 over fakes, its holds in ``tmp_path``'s state database."""
    ari, ami = FakeAri(), FakeAmi()
    service = VirtualHoldService(
        ari,  # type: ignore[arg-type]
        ami,  # type: ignore[arg-type]
        lambda: rules,
        lambda: overrides,
        lambda: open_virtual_hold_store("", tmp_path / "state.sqlite"),
        node="n1",
        clock=clock,
        on_leg=on_leg,
    )
    return service, ari, ami


@pytest.fixture
def setup(
    rules: Rules, tmp_path: Path, overrides: list[Override]
) -> tuple[VirtualHoldService, FakeAri, FakeAmi, Clock]:
    clock = Clock()
    return (*_service(rules, tmp_path, overrides, clock), clock)


def _start(call_id: str, *args: str, caller: str = "+494407123452") -> dict[str, Any]:
    return {
        "type": "StasisStart",
        "args": list(args),
        "channel": {
            "id": call_id,
            "caller": {"number": caller},
            "creationtime": "2026-12-03T09:59:00.000+0000",
            "dialplan": {"context": "pbxbridge-vhold-offer", "exten": "1", "priority": 5},
        },
    }


def _accept_own_number(service: VirtualHoldService, position: str = "1") -> None:
    """Call 1.2, offered at ``position``, takes the callback on its own number (key 1)."""
    asyncio.run(service.handle(_start("1.2", "offer", position, "rueckruf", "vhold", "5")))
    asyncio.run(service.handle(_start("1.2", "number", "1", "1")))


class TestVirtualHoldService:
    def test_astdb_record_and_read_back(self) -> None:
        record = AstdbRecord.parse("failed:1764756000:BUSY")
        assert record is not None and record.state == "failed" and record.detail == "BUSY"
        assert record.at == datetime(2025, 12, 3, 10, 0, tzinfo=UTC)
        assert AstdbRecord.parse("garbage") is None
        assert read_back("0441 2") == "digits/0&digits/4&digits/4&digits/1&digits/2"

    def test_confirmed_own_number_places_a_placeholder_behind_those_still_ahead(
        self, setup: tuple[VirtualHoldService, FakeAri, FakeAmi, Clock]
    ) -> None:
        service, ari, ami, _ = setup
        # A (1.0) and X (1.5) were ahead of the caller at position 3; C is behind.
        ami.entries = [_entry("1.0", 1), _entry("1.5", 2), _entry("1.3", 3)]
        asyncio.run(service.handle(_start("1.2", "offer", "3", "rueckruf", "vhold", "5")))
        assert ari.variables["1.2"]["PBXBRIDGE_VH_VERDICT"] == "enter"
        assert (
            "digits/0&digits/4&digits/4&digits/0&digits/7"
            in ari.variables["1.2"]["PBXBRIDGE_VH_ASK"]
        )
        assert ari.continued[-1] == ("1.2", "pbxbridge-vhold-offer", "1", 6)
        # meanwhile A was served; a higher-priority caller H joined at the head
        ami.entries = [_entry("1.9", 1, priority=9), _entry("1.5", 2), _entry("1.3", 3)]
        asyncio.run(service.handle(_start("1.2", "number", "1", "1")))
        assert ari.variables["1.2"]["PBXBRIDGE_VH_VERDICT"] == "accepted"
        (placeholder,) = ami.originated
        assert placeholder["Channel"] == "Local/1.2@pbxbridge-vhold-place/n"
        variables = dict(v.split("=", 1) for v in placeholder["Variable"].split(","))
        assert variables["PBXBRIDGE_VH_POS"] == "3"  # behind H and X, ahead of C
        assert variables["PBXBRIDGE_VH_NUMBER"] == "04407123452"
        assert variables["PBXBRIDGE_VH_OUT"] == "out-trunk"
        assert variables["QUEUE_PRIO"] == "5"
        assert placeholder["Account"] == "rueckruf"
        assert placeholder["CallerID"] == '"RR: Rückruf" <04407123452>'
        # "Rückruf für", then the tenant's own whisper
        assert variables["PBXBRIDGE_VH_WHISPER"] == "pbxbridge/vhold-callback-for&custom/t"

    @pytest.mark.parametrize(
        "rules",
        [
            parse_rules(
                RULES.replace(
                    "      max_tries: 2\n",
                    "      max_tries: 2\n      sounds: {agent_whisper: custom/rr-fuer}\n",
                ),
                "rules.yaml",
            )[0]
        ],
    )
    def test_the_tenants_agent_whisper_is_played_to_the_agent(
        self, setup: tuple[VirtualHoldService, FakeAri, FakeAmi, Clock]
    ) -> None:
        service, _, ami, _ = setup
        ami.entries = [_entry("1.2", 1)]
        _accept_own_number(service)
        (placeholder,) = ami.originated
        variables = dict(v.split("=", 1) for v in placeholder["Variable"].split(","))
        assert variables["PBXBRIDGE_VH_WHISPER"] == "custom/rr-fuer&custom/t"

    def test_wrong_number_asked_again_once_then_back_to_the_place(
        self, setup: tuple[VirtualHoldService, FakeAri, FakeAmi, Clock]
    ) -> None:
        service, ari, ami, _ = setup
        ami.entries = [_entry("1.0", 1)]
        asyncio.run(
            service.handle(
                _start("1.2", "offer", "2", "rueckruf", "vhold", "5", caller="anonymous")
            )
        )
        assert ari.variables["1.2"]["PBXBRIDGE_VH_ASK"] == "pbxbridge/vhold-enter-number"
        asyncio.run(service.handle(_start("1.2", "number", "1", "09001234567")))
        assert ari.variables["1.2"]["PBXBRIDGE_VH_VERDICT"] == "again"
        assert ari.variables["1.2"]["PBXBRIDGE_VH_SAY"] == "pbxbridge/vhold-premium-number"
        asyncio.run(service.handle(_start("1.2", "number", "2", "110")))
        assert ari.variables["1.2"]["PBXBRIDGE_VH_VERDICT"] == "back"
        assert ari.variables["1.2"]["PBXBRIDGE_VH_POS"] == "2"
        assert ami.originated == []

    def test_failed_tries_retry_at_the_head_then_become_a_ticket(
        self, setup: tuple[VirtualHoldService, FakeAri, FakeAmi, Clock]
    ) -> None:
        service, _, ami, clock = setup
        _accept_own_number(service)
        epoch = int(NOW.timestamp())
        ami.astdb["1.2"] = f"failed:{epoch}:BUSY"
        asyncio.run(service.reconcile())
        (hold,) = asyncio.run(service._db()).pending("n1")
        assert hold.state is VHoldState.RETRY_WAIT
        assert hold.next_try_at == NOW + timedelta(seconds=60)
        assert "1.2" not in ami.astdb  # consumed
        clock.now = NOW + timedelta(seconds=61)
        asyncio.run(service.reconcile())
        retry = ami.originated[-1]
        assert "PBXBRIDGE_VH_POS=1" in retry["Variable"]  # the head of the queue
        ami.astdb["1.2"] = f"failed:{epoch + 70}:NOANSWER"
        ami.channels = ["Local/1.2@pbxbridge-vhold-place-00000001;1"]
        asyncio.run(service.reconcile())
        ticket = asyncio.run(service._db()).get("n1", "1.2")
        assert ticket is not None and ticket.state is VHoldState.TICKET
        # Thursday: due the end of the next working day (Friday), local time
        assert ticket.ticket_due_at is not None
        assert ticket.ticket_due_at.astimezone(UTC).date() == datetime(2026, 12, 4).date()

    def test_placeholder_lost_with_asterisk_is_queued_again_at_the_head(
        self, setup: tuple[VirtualHoldService, FakeAri, FakeAmi, Clock]
    ) -> None:
        service, _, ami, clock = setup
        _accept_own_number(service, "4")
        clock.now = NOW + timedelta(seconds=30)
        asyncio.run(service.reconcile())  # no channel, no AstDB record: lost
        assert len(ami.originated) == 2
        assert "PBXBRIDGE_VH_POS=1" in ami.originated[-1]["Variable"]

    def test_closing_time_withdraws_the_waiting_placeholder_as_a_ticket(
        self,
        setup: tuple[VirtualHoldService, FakeAri, FakeAmi, Clock],
        overrides: list[Override],
    ) -> None:
        service, _, ami, clock = setup
        _accept_own_number(service, "2")
        ami.astdb["1.2"] = f"waiting:{int(NOW.timestamp())}"
        ami.channels = [
            "Local/1.2@pbxbridge-vhold-place-00000003;1",
            "Local/1.2@pbxbridge-vhold-place-00000003;2",
            "Local/9.9@pbxbridge-vhold-place-00000004;2",
        ]
        asyncio.run(service.reconcile())  # open: nothing happens
        assert not [a for a in ami.actions if a["Action"] == "Hangup"]
        clock.now = NOW + timedelta(minutes=5)
        overrides.append(Override("rueckruf", OverrideState.CLOSED, "Sturm", set_at=clock.now))
        asyncio.run(service.reconcile())
        hangups = [a["Channel"] for a in ami.actions if a["Action"] == "Hangup"]
        assert hangups == ["Local/1.2@pbxbridge-vhold-place-00000003;2"]
        hold = asyncio.run(service._db()).get("n1", "1.2")
        assert hold is not None and hold.state is VHoldState.TICKET
        assert [e[1] for e in hold.events][-1] == "closed"

    def test_member_events_of_the_placeholder_go_to_the_leg_sink_with_hold_and_tenant(
        self, rules: Rules, tmp_path: Path
    ) -> None:
        legs: list[tuple[str, str, str, str]] = []

        def leg(
            event: Mapping[str, str], hold: VirtualHold, *, tenant_name: str, greeting: str
        ) -> None:
            legs.append((event["Event"], hold.call_id, tenant_name, hold.number or ""))

        service, _, _ = _service(rules, tmp_path, [], Clock(), on_leg=leg)
        _accept_own_number(service)
        placeholder = "Local/1.2@pbxbridge-vhold-place-00000003;2"
        service.ami_event({"Event": "AgentCalled", "Channel": placeholder, "MemberName": "a1"})
        service.ami_event({"Event": "AgentConnect", "Channel": placeholder, "MemberName": "a1"})
        # a real caller's member event, and a placeholder of no pending hold: not ours
        service.ami_event({"Event": "AgentCalled", "Channel": "PJSIP/carrier-1", "Uniqueid": "1.2"})
        service.ami_event(
            {"Event": "AgentCalled", "Channel": "Local/9.9@pbxbridge-vhold-place-1;2"}
        )
        assert legs == [
            ("AgentCalled", "1.2", "Gemeinde Rückruf", "+494407123452"),
            ("AgentConnect", "1.2", "Gemeinde Rückruf", "+494407123452"),
        ]
        assert placeholder_call_id(placeholder) == "1.2"
        assert placeholder_call_id("Local/x;y@pbxbridge-vhold-place-1;2") is None

    def test_the_agent_done_event_still_reaches_the_sink_after_the_hold_connected(
        self, rules: Rules, tmp_path: Path
    ) -> None:
        legs: list[str] = []

        def leg(
            event: Mapping[str, str], hold: VirtualHold, *, tenant_name: str, greeting: str
        ) -> None:
            legs.append(event["Event"])

        service, _, ami = _service(rules, tmp_path, [], Clock(), on_leg=leg)
        _accept_own_number(service)
        placeholder = "Local/1.2@pbxbridge-vhold-place-00000003;2"
        service.ami_event({"Event": "AgentConnect", "Channel": placeholder, "MemberName": "a1"})
        ami.astdb["1.2"] = f"connected:{int(NOW.timestamp())}"
        ami.channels = ["Local/1.2@pbxbridge-vhold-place-00000003;1"]
        asyncio.run(service.reconcile())
        hold = asyncio.run(service._db()).get("n1", "1.2")
        assert hold is not None and hold.state is VHoldState.CONNECTED
        service.ami_event({"Event": "AgentComplete", "Channel": placeholder, "MemberName": "a1"})
        service.ami_event({"Event": "AgentComplete", "Channel": placeholder, "MemberName": "a1"})
        assert legs == ["AgentConnect", "AgentComplete"]  # forgotten after the agent is done
