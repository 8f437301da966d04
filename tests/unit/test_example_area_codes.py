"""The example's 115 area codes belong to the partner they are mapped to.

The table of places is written by hand (from the Bundesnetzagentur's list of
local networks, as the phonenumbers geocoder names them), not computed by the
code under test; the geocoder then confirms each area code's place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pbxbridge.config import load_rules
from pbxbridge.core import Call, route

geocoder = pytest.importorskip(
    "phonenumbers.geocoder", reason="needs phonenumbers with its geocoder data (dev extra)"
)
import phonenumbers  # noqa: E402  (after the skip: phonenumberslite has no geocoder)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"

# area code -> (place as the geocoder names it, partner it belongs to)
PARTNER_AREA_CODES = {
    "+49 441": ("Oldenburg", "oldenburg"),
    "+49 4407": ("Wardenburg", "wardenburg"),
    "+49 4421": ("Wilhelmshaven", "wilhelmshaven"),
    "+49 4423": ("Fedderwarden", "wilhelmshaven"),  # a district of Wilhelmshaven
    "+49 4222": ("Ganderkesee", "ganderkesee"),
    "+49 4223": ("Ganderkesee-Bookholzberg", "ganderkesee"),
    "+49 4461": ("Jever", "friesland"),  # also Schortens
    "+49 4451": ("Varel Jadebusen", "friesland"),
    "+49 4456": ("Varel-Altjührden", "friesland"),
    "+49 4422": ("Sande Kreis Friesl", "friesland"),
    "+49 4453": ("Zetel", "friesland"),  # also Bockhorn
    "+49 4452": ("Zetel-Neuenburg", "friesland"),
    "+49 4463": ("Wangerland", "friesland"),
    "+49 4425": ("Wangerland-Hooksiel", "friesland"),
    "+49 4426": ("Wangerland-Horumersiel", "friesland"),
    "+49 4469": ("Wangerooge", "friesland"),
}

# Neighbours that are no partner: their 115 callers must get the menu.
NOT_PARTNERS = {
    "+49 4221": "Delmenhorst",
    "+49 4454": "Jade",  # Landkreis Wesermarsch
    "+49 4455": "Jade-Schweiburg",  # Landkreis Wesermarsch
    "+49 4462": "Wittmund",  # Landkreis Wittmund
    "+49 4402": "Rastede",  # Landkreis Ammerland
    "+49 4408": "Hude Oldenburg",  # Landkreis Oldenburg, not a partner
}


def place(area_code: str) -> str:
    number = phonenumbers.parse(area_code.replace(" ", "") + "123456", None)
    assert phonenumbers.is_valid_number(number), area_code
    return str(geocoder.description_for_number(number, "de"))


def test_the_example_maps_exactly_the_partners_area_codes() -> None:
    _, model = load_rules(EXAMPLE)
    assert model.service_115 is not None
    mapped = dict(model.service_115.by_area_code)
    assert mapped == {code: tenant for code, (_, tenant) in PARTNER_AREA_CODES.items()}


@pytest.mark.parametrize(("area_code", "expected"), sorted(PARTNER_AREA_CODES.items()))
def test_each_area_code_is_the_place_of_its_partner(
    area_code: str, expected: tuple[str, str]
) -> None:
    assert place(area_code) == expected[0]


@pytest.mark.parametrize(("area_code", "name"), sorted(NOT_PARTNERS.items()))
def test_neighbours_that_are_no_partner_get_the_menu(area_code: str, name: str) -> None:
    assert place(area_code) == name
    rules, _ = load_rules(EXAMPLE)
    caller = area_code.replace("+49 ", "0") + " 123456"
    decision = route(
        Call(did="115", caller=caller), rules, datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    )
    assert decision.menu is not None and decision.tenant is None, decision.reasons
