"""plan_import and apply_entries: closures planned and added to the YAML text, layout kept."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pbxbridge.config import parse_rules
from pbxbridge.config.edit import Entry, apply_entries, plan_import
from pbxbridge.config.ical import Closure
from pbxbridge.config.schema import CalendarConfig
from pbxbridge.core.calendar import Calendar

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"

CLOSED = Entry("closed", "2026-06-12", comment="Betriebsausflug")
OPEN = Entry("open", "2026-11-25", ("07:00-12:00",), comment="Personalversammlung")

HEAD = "timezone: Europe/Berlin\ncalendars:\n"


class TestApplyEntries:
    def test_block_list_and_block_mapping_grow_at_their_end(self) -> None:
        text = HEAD + (
            "  main:   # the main one\n"
            "    closed:\n"
            '      - "12-24"   # Heiligabend\n'
            "\n"
            "      # a comment between items\n"
            '      - "12-31"\n'
            "    open:\n"
            '      "2027-03-14": ["08:00-18:00"]   # Wahl\n'
            "  other:\n"
            "    hours: {}\n"
        )
        assert apply_entries(text, "main", [CLOSED, OPEN]) == HEAD + (
            "  main:   # the main one\n"
            "    closed:\n"
            '      - "12-24"   # Heiligabend\n'
            "\n"
            "      # a comment between items\n"
            '      - "12-31"\n'
            '      - "2026-06-12"  # Betriebsausflug (ics)\n'
            "    open:\n"
            '      "2027-03-14": ["08:00-18:00"]   # Wahl\n'
            '      "2026-11-25": ["07:00-12:00"]  # Personalversammlung (ics)\n'
            "  other:\n"
            "    hours: {}\n"
        )

    def test_missing_keys_are_added_after_the_calendar(self) -> None:
        text = HEAD + '  main:\n    hours:\n      mon-fri: ["07:00-18:00"]\n\n  other: {}\n'
        assert apply_entries(text, "main", [CLOSED, OPEN]) == HEAD + (
            "  main:\n"
            "    hours:\n"
            '      mon-fri: ["07:00-18:00"]\n'
            "    closed:\n"
            '      - "2026-06-12"  # Betriebsausflug (ics)\n'
            "    open:\n"
            '      "2026-11-25": ["07:00-12:00"]  # Personalversammlung (ics)\n'
            "\n"
            "  other: {}\n"
        )

    def test_flow_and_empty_values_become_blocks(self) -> None:
        text = HEAD + "  main:\n    closed: ['12-24', \"12-31\"]   # yearly\n    open:\n"
        assert apply_entries(text, "main", [CLOSED, OPEN]) == HEAD + (
            "  main:\n"
            "    closed: # yearly\n"
            "      - '12-24'\n"
            '      - "12-31"\n'
            '      - "2026-06-12"  # Betriebsausflug (ics)\n'
            "    open:\n"
            '      "2026-11-25": ["07:00-12:00"]  # Personalversammlung (ics)\n'
        )

    def test_titles_cannot_break_the_yaml(self) -> None:
        hostile = Entry("closed", "2026-06-12", comment='a"b\n- "x": [evil]  # \\')
        text = HEAD + "  main:\n    closed: []\n"
        out = apply_entries(text, "main", [hostile])
        assert (
            out
            == HEAD + '  main:\n    closed:\n      - "2026-06-12"  # a"b - "x": [evil] # \\ (ics)\n'
        )

    def test_a_calendar_on_one_line_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"calendars\.main is written on one line"):
            apply_entries(HEAD + '  main: {hours: {mon: ["07:00-12:00"]}}\n', "main", [CLOSED])

    def test_unknown_calendar(self) -> None:
        with pytest.raises(KeyError):
            apply_entries(HEAD + "  main: {}\n", "nope", [CLOSED])


class TestPlanImport:
    def calendar(self, extra: str = "") -> tuple[Calendar, CalendarConfig]:
        text = EXAMPLE.read_text(encoding="utf-8")
        if extra:
            text = text.replace("    open: {}  ", f"    open: {extra}  ", 1)
        rules, model = parse_rules(text, "r.yaml")
        return rules.calendars["servicecenter"], model.calendars["servicecenter"]

    def test_runs_in_date_order_and_days_closed_anyway_skipped(self) -> None:
        cal, cfg = self.calendar()
        found = [
            Closure(date(2026, 7, 1), 0, 86400, "Zeta"),
            Closure(date(2026, 7, 2), 0, 86400, "Zeta"),
            Closure(date(2026, 6, 3), 0, 86400, "Alpha"),
            Closure(date(2026, 12, 25), 0, 86400, "Weihnachten"),  # a holiday anyway
        ]
        plan = plan_import(cal, cfg, found, ())
        assert plan.entries == [
            Entry("closed", "2026-06-03", comment="Alpha"),
            Entry("closed", "2026-07-01..2026-07-02", comment="Zeta"),
        ]
        assert plan.notes == ["2026-12-25 (Weihnachten): closed all day already"]

    def test_a_closure_on_a_special_opening_is_left_to_the_operator(self) -> None:
        cal, cfg = self.calendar('{"2026-07-01": ["08:00-12:00"]}')
        found = [Closure(date(2026, 7, 1), 0, 86400, "Umzug")]
        plan = plan_import(cal, cfg, found, ())
        assert plan.entries == []
        assert plan.notes == [
            "2026-07-01 (Umzug): 2026-07-01 has a special opening; change it by hand"
        ]
