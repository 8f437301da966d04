"""The agent's screen pop message built by core/screenpop.py: what the caller looks like."""

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
from pbxbridge.core.lifecycle import CallRecord, Pop, PopKind, State
from pbxbridge.core.rules import Rules
from pbxbridge.core.screenpop import agent_message, callback_message
from pbxbridge.core.virtual_hold import VHoldState, VirtualHold

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday, open


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE)[0]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    text = resources.files("pbxbridge.schemas").joinpath("screenpop.schema.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def caller_of(rules: Rules, call: Call) -> dict[str, Any]:
    decision = route(call, rules, T0)
    record = CallRecord(call_id="1.1", decision=decision, state=State.RINGING, routed_at=T0)
    message = agent_message(record, Pop(PopKind.RINGING, "agent1", T0))
    caller = message["caller"]
    assert isinstance(caller, dict)
    return caller


class TestCaller:
    def test_a_number(self, rules: Rules) -> None:
        caller = caller_of(rules, Call(did="04407730", caller="0441 1234567"))
        assert caller["number"] == "+494411234567"
        assert (caller["withheld"], caller["invalid"]) == (False, False)

    def test_withheld(self, rules: Rules) -> None:
        caller = caller_of(rules, Call(did="04407730", caller="04411234567", restricted=True))
        assert caller["number"] is None
        assert (caller["withheld"], caller["invalid"]) == (True, False)

    @pytest.mark.parametrize("raw", ["<script>alert(1)</script>", "$(reboot)", "9" * 300])
    def test_a_number_that_is_none_is_invalid_not_withheld(self, rules: Rules, raw: str) -> None:
        # The agent's phone says "ungültige Nummer" for these; the page must
        # not claim the caller withheld the number.
        caller = caller_of(rules, Call(did="04407730", caller=raw))
        assert caller["number"] is None
        assert (caller["withheld"], caller["invalid"]) == (False, True)

    def test_every_kind_is_valid_against_the_schema(
        self, rules: Rules, validator: jsonschema.Draft202012Validator
    ) -> None:
        for call in (
            Call(did="04407730", caller="04411234567"),
            Call(did="04407730", caller="", restricted=True),
            Call(did="04407730", caller="<script>"),
        ):
            decision = route(call, rules, T0)
            record = CallRecord(call_id="1.1", decision=decision, state=State.RINGING, routed_at=T0)
            validator.validate(agent_message(record, Pop(PopKind.RINGING, "agent1", T0)))


class TestOpenCallback:
    def test_the_note_goes_into_the_pop_and_fits_the_schema(
        self, rules: Rules, validator: jsonschema.Draft202012Validator
    ) -> None:
        decision = route(Call(did="04407730", caller="04411234567"), rules, T0)
        record = CallRecord(call_id="1.1", decision=decision, state=State.RINGING, routed_at=T0)
        pop = Pop(PopKind.RINGING, "agent1", T0)
        with_note = agent_message(record, pop, open_callback="offener Rückruf vom Di 09:14")
        assert with_note["open_callback"] == "offener Rückruf vom Di 09:14"
        validator.validate(with_note)
        plain = agent_message(record, pop)
        assert plain["open_callback"] is None
        validator.validate(plain)


class TestCallbackMessage:
    """The callback leg of a virtual hold: same fields, marked, the number to call."""

    def hold(self) -> VirtualHold:
        return VirtualHold(
            node="n1",
            call_id="1764756000.7",
            tenant="wardenburg",
            queue="servicecenter",
            priority=5,
            arrived_at=T0 - timedelta(minutes=10),
            offered_at=T0 - timedelta(minutes=9),
            accepted_at=T0 - timedelta(minutes=8),
            updated_at=T0 - timedelta(minutes=8),
            state=VHoldState.WAITING,
            caller="+494407123452",
            number="+494411234567",
            dial="04411234567",
        )

    def test_marked_with_the_number_and_how_long_ago_it_was_asked_for(
        self, validator: jsonschema.Draft202012Validator
    ) -> None:
        at = T0 + timedelta(seconds=30)
        for kind in PopKind:
            message = callback_message(
                self.hold(),
                Pop(kind, "agent1", at),
                tenant_name="Gemeinde Wardenburg",
                greeting="Gemeinde Wardenburg, guten Tag",
            )
            validator.validate(message)
        assert message["call_id"] == "1764756000.7"  # the original call's journal row
        assert message["caller"] == {
            "number": "+494411234567",
            "withheld": False,
            "invalid": False,
            "name": "",
        }
        assert message["tenant"] == {
            "id": "wardenburg",
            "name": "Gemeinde Wardenburg",
            "greeting": "Gemeinde Wardenburg, guten Tag",
        }
        assert message["waited_s"] == 510.0  # 8 min 30 s since the acceptance
        assert message["virtual_hold"] == {
            "number": "+494411234567",
            "requested_at": "2026-11-25T08:52:00+00:00",
            "waited_s": 510.0,
            "try": 1,
        }

    def test_ordinary_pops_have_no_marker(self, rules: Rules) -> None:
        decision = route(Call(did="04407730", caller="04411234567"), rules, T0)
        record = CallRecord(call_id="1.1", decision=decision, state=State.RINGING, routed_at=T0)
        assert "virtual_hold" not in agent_message(record, Pop(PopKind.RINGING, "agent1", T0))
