"""Decision → channel variables, and the packed form the dialplan unpacks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pbxbridge.adapters.dialplan import (
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
        d = route(Call(did="04407730", caller="0441 1234567", caller_name="Jörg Müller"),
                  RULES, WEDNESDAY)
        version, *fields = pack_decision(d).split("|")
        assert version == "1"
        unpacked = dict(zip(PACKED_FIELDS, fields, strict=True))
        assert unpacked == {name: decision_variables(d).get(name, "") for name in PACKED_FIELDS}
        assert unpacked["CALLERID(name)"] == "WAR: Jörg Müller"
        assert destination(d) == ("pbxbridge-queue", "s", 1)

    def test_dialplan_unpacks_every_field(self) -> None:
        text = (Path(__file__).resolve().parents[2] / "dialplans" / "pbxbridge.conf").read_text()
        for n, name in enumerate(PACKED_FIELDS, start=2):
            assert f"Set({name}=${{CUT(PBXBRIDGE_DECISION,|,{n})}})" in text, name

    @settings(max_examples=300, deadline=None)
    @given(did=st.text(max_size=40), caller=st.text(max_size=40), name=st.text(max_size=200))
    def test_hostile_input_cannot_add_fields(self, did: str, caller: str, name: str) -> None:
        d = route(Call(did=did, caller=caller, caller_name=name), RULES, WEDNESDAY)
        packed = pack_decision(d)
        assert len(packed.split("|")) == len(PACKED_FIELDS) + 1
        assert not set(packed) & set(',;"$\\{}\n\r\x00')
