"""pbxbridge check's warnings: valid rules that are probably not what was meant."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import pbxbridge.cli.base
from pbxbridge.cli import cli
from pbxbridge.config import parse_rules
from pbxbridge.config.lint import format_warning, lint_rules, place_of

pytest.importorskip("phonenumbers.geocoder", reason="needs the geocoder data (dev extra)")

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
NAME = "routing.yaml"
TODAY = date(2026, 12, 3)


def mutate(*pairs: tuple[str, str]) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def line_of(text: str, needle: str) -> int:
    (line,) = [n for n, t in enumerate(text.splitlines(), 1) if needle in t]
    return line


def warnings(text: str) -> list[str]:
    rules, model = parse_rules(text, NAME)
    return [format_warning(w) for w in lint_rules(text, NAME, rules, model, today=TODAY)]


SILVESTER = '      - "12-31"                                  # Silvester\n'


class TestLint:
    def test_the_shipped_example_has_no_warnings(self) -> None:
        assert warnings(EXAMPLE.read_text(encoding="utf-8")) == []

    def test_yearly_closure_on_a_public_holiday(self) -> None:
        text = mutate((SILVESTER, SILVESTER + '      - "12-25"\n      - "12-24..12-26"\n'))
        line = line_of(text, '- "12-25"')
        assert warnings(text) == [
            f"{NAME}:{line}: calendars.servicecenter.closed.2: warning: "
            "12-25 is a public holiday every year from 2026 to 2030 (Erster Weihnachtstag): "
            "closed anyway, the entry adds nothing"
        ]

    def test_dated_closure_on_public_holidays(self) -> None:
        text = mutate((SILVESTER, SILVESTER + '      - "2026-12-25..2026-12-26"\n'))
        assert warnings(text) == [
            f"{NAME}:{line_of(text, '2026-12-25..')}: calendars.servicecenter.closed.2: warning: "
            "2026-12-25..2026-12-26 is public holidays (Erster Weihnachtstag, Zweiter "
            "Weihnachtstag): closed anyway, the entry adds nothing"
        ]

    def test_special_opening_on_a_day_that_is_not_closed(self) -> None:
        text = mutate(
            (
                "    open: {}  ",
                '    open: {"2026-03-11": ["08:00-12:00"], "2026-03-08": ["08:00-18:00"], '
                '"2026-10-03": ["10:00-12:00"], "03-08": ["08:00-12:00"]}  ',
            )
        )
        assert warnings(text) == [
            f"{NAME}:{line_of(text, '2026-03-11')}: calendars.servicecenter.open.2026-03-11: "
            "warning: special opening on a day that is not closed: wed 2026-03-11 has its "
            "opening hours 07:00-18:00; the special opening replaces them (meant another day?)"
        ]

    def test_area_code_of_another_place(self) -> None:
        text = mutate(
            (
                '    "+49 4222": ganderkesee ',
                '    "+49 4221": ganderkesee                       # Delmenhorst (wrong)\n'
                '    "+49 4222": ganderkesee ',
            )
        )
        assert warnings(text) == [
            f"{NAME}:{line_of(text, '+49 4221')}: service_115.by_area_code.+49 4221: warning: "
            "+49 4221 is Delmenhorst, not a place of Gemeinde Ganderkesee (Ganderkesee); "
            "if it belongs to ganderkesee, add 'Delmenhorst' to tenants.ganderkesee.places"
        ]

    def test_places_default_to_the_words_of_the_name(self) -> None:
        # without the example's places, Jever is no place of "Landkreis Friesland"
        text = mutate(("    places: [Jever, Varel, Sande, Zetel, Wangerland, Wangerooge]\n", ""))
        found = warnings(text)
        assert len(found) == 10  # the ten area codes of Friesland
        assert "+49 4461 is Jever, not a place of Landkreis Friesland (Friesland)" in found[0]
        assert "add 'Varel' to tenants.friesland.places" in found[1]

    @pytest.mark.parametrize(
        ("code", "place"),
        [("+49 4221", "Delmenhorst"), ("04222", "Ganderkesee"), ("+49 441", "Oldenburg")],
    )
    def test_place_of(self, code: str, place: str) -> None:
        assert place_of(code) == place


class TestCheckCommand:
    def test_warnings_keep_exit_status_zero(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(
            pbxbridge.cli.base, "now", lambda: datetime(2026, 12, 3, 10, tzinfo=UTC)
        )
        path = tmp_path / "routing.yaml"
        path.write_text(mutate((SILVESTER, SILVESTER + '      - "01-01"\n')), encoding="utf-8")
        result = CliRunner().invoke(cli, ["check", str(path)])
        assert result.exit_code == 0, result.output
        line = line_of(path.read_text(encoding="utf-8"), '- "01-01"')
        assert result.stderr == (
            f"{path}:{line}: calendars.servicecenter.closed.2: warning: 01-01 is a public "
            "holiday every year from 2026 to 2030 (Neujahr): closed anyway, the entry adds "
            "nothing\n"
        )
        assert result.stdout.endswith("115 area codes), 1 warning(s)\n")
