"""Decision → channel variables, and the packed form the dialplan unpacks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxbridge.adapters.dialplan import (
    INVALID_NUMBER,
    NO_NUMBER,
    PACKED_FIELDS,
    decision_variables,
    destination,
    pack_decision,
)
from pbxbridge.config import load_rules
from pbxbridge.core import Call, route

RULES = load_rules(Path(__file__).resolve().parents[2] / "config" / "routing.yaml")[0]
WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


class TestPackDecision:
    def test_fields_in_dialplan_order(self) -> None:
        d = route(
            Call(did="04407730", caller="0441 1234567", caller_name="Jörg Müller"), RULES, WEDNESDAY
        )
        version, *fields = pack_decision(d).split("|")
        assert version == "1"
        unpacked = dict(zip(PACKED_FIELDS, fields, strict=True))
        assert unpacked == {name: decision_variables(d).get(name, "") for name in PACKED_FIELDS}
        assert unpacked["CALLERID(name)"] == "WAR: Jörg Müller"
        assert destination(d) == ("pbxbridge-queue", "s", 1)

    def test_dialplan_unpacks_every_field(self) -> None:
        text = (Path(__file__).resolve().parents[2] / "dialplans" / "pbxbridge.conf").read_text()
        for n, name in enumerate(PACKED_FIELDS, start=2):
            if name == "CALLERID(num)":  # kept when an older daemon sends no such field
                assert f"Set(PBXBRIDGE_CALLERID_NUM=${{CUT(PBXBRIDGE_DECISION,|,{n})}})" in text
                assert "?Set(CALLERID(num)=${PBXBRIDGE_CALLERID_NUM})" in text
                continue
            assert f"Set({name}=${{CUT(PBXBRIDGE_DECISION,|,{n})}})" in text, name

    @settings(max_examples=300, deadline=None)
    @given(did=st.text(max_size=40), caller=st.text(max_size=40), name=st.text(max_size=200))
    def test_hostile_input_cannot_add_fields(self, did: str, caller: str, name: str) -> None:
        d = route(Call(did=did, caller=caller, caller_name=name), RULES, WEDNESDAY)
        packed = pack_decision(d)
        assert len(packed.split("|")) == len(PACKED_FIELDS) + 1
        assert not set(packed) & set(',;"$\\{}\n\r\x00')


class TestCallerShownToAgents:
    """What the agent's phone shows: the E.164 number, or none and a word why."""

    def test_valid_number_is_shown_normalised(self) -> None:
        d = route(
            Call(did="04407730", caller="0441 1234567", caller_name="Jörg Müller"), RULES, WEDNESDAY
        )
        shown = decision_variables(d)
        assert (shown["CALLERID(num)"], shown["CALLERID(name)"]) == (
            "+494411234567",
            "WAR: Jörg Müller",
        )

    @pytest.mark.parametrize(
        ("caller", "name", "expected_name"),
        [
            ("<script>", "", "WAR ungültige Nummer"),
            ("$(reboot)", "", "WAR ungültige Nummer"),
            ("1" * 300, "", "WAR ungültige Nummer"),
            ("tel:+494411234567", "", "WAR ungültige Nummer"),
            ("0441/1234567;cpc=x", "Jörg", "WAR: Jörg ungültige Nummer"),
            ("$(reboot)", "x" * 300, None),  # a long name is cut, the marker stays
        ],
    )
    def test_invalid_number_is_replaced_and_named(
        self, caller: str, name: str, expected_name: str | None
    ) -> None:
        d = route(Call(did="04407730", caller=caller, caller_name=name), RULES, WEDNESDAY)
        assert d.caller is None and d.caller_invalid
        shown = decision_variables(d)
        assert shown["CALLERID(num)"] == NO_NUMBER
        if expected_name is not None:
            assert shown["CALLERID(name)"] == expected_name
        assert shown["CALLERID(name)"].endswith(INVALID_NUMBER)
        assert len(shown["CALLERID(name)"]) <= 80
        packed = dict(zip(PACKED_FIELDS, pack_decision(d).split("|")[1:], strict=True))
        assert packed["CALLERID(num)"] == NO_NUMBER
        assert packed["CALLERID(name)"] == shown["CALLERID(name)"]

    @pytest.mark.parametrize(
        ("caller", "restricted"), [("anonymous", False), ("", False), ("04411234567", True)]
    )
    def test_withheld_shows_no_number_and_no_marker(self, caller: str, restricted: bool) -> None:
        d = route(Call(did="04407730", caller=caller, restricted=restricted), RULES, WEDNESDAY)
        assert not d.caller_invalid
        shown = decision_variables(d)
        assert (shown["CALLERID(num)"], shown["CALLERID(name)"]) == (NO_NUMBER, "WAR")

    @settings(max_examples=300, deadline=None)
    @given(caller=st.text(max_size=300))
    def test_the_phone_never_gets_the_callers_text(self, caller: str) -> None:
        d = route(Call(did="04407730", caller=caller), RULES, WEDNESDAY)
        number = decision_variables(d)["CALLERID(num)"]
        assert number == NO_NUMBER or (number.startswith("+") and number[1:].isdigit())
