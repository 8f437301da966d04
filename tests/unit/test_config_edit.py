"""apply_entries: closures added to the YAML text, comments and layout kept."""

from __future__ import annotations

import pytest

from pbxbridge.config.edit import Entry, apply_entries

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

    def test_unknown_calendar(self) -> None:
        with pytest.raises(KeyError):
            apply_entries(HEAD + "  main: {}\n", "nope", [CLOSED])
