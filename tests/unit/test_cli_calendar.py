"""``pbxbridge calendar``: --import of iCalendar files into the rules, and --format ics."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from click.testing import CliRunner, Result

import pbxbridge.cli.base
from pbxbridge.cli import cli
from pbxbridge.config import load_rules

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "routing.yaml"
ICS = ROOT / "tests" / "data" / "ics"
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN)

Run = Callable[..., Result]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setattr(pbxbridge.cli.base, "now", lambda: NOW)
    runner = CliRunner()

    def invoke(*args: str | Path) -> Result:
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=True)

    return invoke


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    shutil.copyfile(EXAMPLE, path)
    return path


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def events(cal: icalendar.Calendar) -> list[Any]:
    return list(cal.walk("VEVENT"))


def added(diff: str) -> list[str]:
    return [line[1:] for line in diff.splitlines() if line.startswith("+") and line[1:2] != "+"]


class TestImport:
    def test_outlook_export_as_a_diff(self, run: Run, config: Path) -> None:
        before = config.read_text(encoding="utf-8")
        result = ok(
            run(
                "calendar", "-c", config, "--calendar", "servicecenter",
                "--import", ICS / "outlook-schliesstage.ics",
            )
        )  # fmt: skip
        assert added(result.stdout) == [
            '      - "12-27"  # Inventur (ics)',  # FREQ=YEARLY for ever: a yearly entry
            '      - "2026-06-12"  # Betriebsausflug (ics)',
            '    open: # e.g. {"2027-03-14": ["08:00-18:00"]} for an election Sunday',
            '      "2026-11-25": ["07:00-12:00"]  # Personalversammlung (ics)',
        ]
        assert result.stdout.startswith(f"--- {config}\n+++ {config} (with outlook-schliesstage")
        assert "3 entries for calendars.servicecenter" in result.stderr
        assert config.read_text(encoding="utf-8") == before  # nothing written

    def test_write_keeps_comments_and_is_idempotent(self, run: Run, config: Path) -> None:
        args = ("calendar", "-c", config, "--calendar", "servicecenter")
        ok(run(*args, "--import", ICS / "outlook-schliesstage.ics", "--write"))
        text = config.read_text(encoding="utf-8")
        assert '      - "12-24"                                  # Heiligabend\n' in text
        assert text.startswith("# pbxbridge routing rules")
        rules, _ = load_rules(config)
        cal = rules.calendars["servicecenter"]
        assert cal.state_on(date(2030, 12, 27))[1] == "yearly closed date 12-27"
        assert cal.state_on(date(2026, 6, 12))[1] == "extra closed date 2026-06-12"
        assert [i.text for i in cal.state_on(date(2026, 11, 25))[0]] == ["07:00-12:00"]
        again = ok(run(*args, "--import", ICS / "outlook-schliesstage.ics"))
        assert again.stdout == ""
        assert "nothing to add" in again.stderr

    def test_holiday_feed_skips_what_is_closed_anyway(self, run: Run, config: Path) -> None:
        result = ok(
            run(
                "calendar", "-c", config, "--calendar", "friesland",
                "--import", ICS / "feiertage-niedersachsen.ics", "--from", "2026-01-01",
            )
        )  # fmt: skip
        # the flow list becomes a block list, its comment stays on the key's line
        assert added(result.stdout) == [
            "    closed: # every year, Christmas to New Year's Eve",
            '      - "12-24..12-31"',
            '      - "2026-12-23..2027-01-05"  # Weihnachtsferien (Betriebsruhe) (ics)',
        ]
        assert "skipped: 2026-01-01 (Neujahr): closed all day already" in result.stderr

    def test_exdate_and_recurrence_id(self, run: Run, config: Path) -> None:
        # Friesland closes at 14:00 on Fridays anyway: only the moved instance
        # (closed from 12:00) changes anything.
        result = ok(
            run(
                "calendar", "-c", config, "--calendar", "friesland",
                "--import", ICS / "exdate-recurrence-id.ics", "--write",
            )
        )  # fmt: skip
        assert '"2026-10-30": ["07:00-12:00"]' in result.stdout
        rules, _ = load_rules(config)
        assert [i.text for i in rules.calendars["friesland"].state_on(date(2026, 10, 30))[0]] == [
            "07:00-12:00"
        ]

    def test_google_export(self, run: Run, config: Path) -> None:
        result = ok(
            run(
                "calendar", "-c", config, "--calendar", "servicecenter",
                "--import", ICS / "google-export.ics",
            )
        )  # fmt: skip
        lines = added(result.stdout)
        assert '      - "2026-05-15"  # Brückentag (ics)' in lines
        # 13:00 local also after the switch to summer time (X-WR-TIMEZONE)
        assert '      "2026-04-01": ["07:00-13:00", "15:00-18:00"]  # Fortbildung (ics)' in lines
        assert not any("Umzug" in line for line in lines)  # STATUS:CANCELLED

    def test_invalid_file_names_the_line_and_writes_nothing(self, run: Run, config: Path) -> None:
        before = config.read_text(encoding="utf-8")
        result = run(
            "calendar", "-c", config, "--calendar", "servicecenter",
            "--import", ICS / "invalid-dtstart.ics", "--write",
        )  # fmt: skip
        assert result.exit_code == 1
        assert f"{ICS / 'invalid-dtstart.ics'}:13: DTSTART:" in result.stderr
        assert config.read_text(encoding="utf-8") == before

    def test_unknown_calendar(self, run: Run, config: Path) -> None:
        result = run(
            "calendar", "-c", config, "--calendar", "nope",
            "--import", ICS / "google-export.ics",
        )  # fmt: skip
        assert result.exit_code == 1
        assert "unknown calendar 'nope' (known: friesland, servicecenter)" in result.stderr


class TestFeedTimezone:
    def test_a_window_without_an_offset_switch_still_has_a_valid_vtimezone(
        self, run: Run, config: Path
    ) -> None:
        result = ok(
            run("calendar", "-c", config, "--format", "ics", "--tenant", "wardenburg",
                "--from", "2026-12-24", "--to", "2026-12-24")
        )  # fmt: skip
        cal = icalendar.Calendar.from_ical(result.stdout)
        (tz,) = cal.walk("VTIMEZONE")
        assert [c.name for c in tz.subcomponents] == ["STANDARD", "DAYLIGHT", "STANDARD"]


class TestFeed:
    def feed(self, run: Run, config: Path, *args: str) -> icalendar.Calendar:
        result = ok(run("calendar", "-c", config, "--format", "ics", *args))
        return icalendar.Calendar.from_ical(result.stdout)

    def test_opening_hours_holidays_and_closures(self, run: Run, config: Path) -> None:
        cal = self.feed(
            run, config, "--tenant", "wardenburg", "--from", "2026-12-21", "--to", "2026-12-27"
        )
        assert str(cal["X-WR-CALNAME"]) == "Öffnungszeiten Gemeinde Wardenburg"
        assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
        found = sorted((e["DTSTART"].dt.isoformat(), str(e["SUMMARY"])) for e in events(cal))
        assert found == [
            ("2026-12-21T07:00:00+01:00", "Geöffnet"),
            ("2026-12-22T07:00:00+01:00", "Geöffnet"),
            ("2026-12-23T07:00:00+01:00", "Geöffnet"),
            ("2026-12-24", "Geschlossen (jährlicher Schließtag)"),
            ("2026-12-25", "Geschlossen: Erster Weihnachtstag"),
            ("2026-12-26", "Geschlossen: Zweiter Weihnachtstag"),
        ]
        for e in events(cal):
            assert e["DTSTAMP"].dt == NOW
            assert str(e["TRANSP"]) == "TRANSPARENT"

    def test_uids_are_stable_and_unique(self, run: Run, config: Path) -> None:
        args = ("--tenant", "friesland", "--from", "2026-11-01", "--to", "2026-11-30")
        first = [str(e["UID"]) for e in events(self.feed(run, config, *args))]
        second = [str(e["UID"]) for e in events(self.feed(run, config, *args))]
        assert first == second
        assert len(set(first)) == len(first)
        assert "friesland-20261102-open-0420@pbxbridge" in first  # Monday, 07:00
        assert "friesland-20261102-open-0780@pbxbridge" in first  # Monday, 13:00

    def test_no_imported_title_reaches_the_feed(self, run: Run, config: Path) -> None:
        text = config.read_text(encoding="utf-8").replace(
            "  servicecenter:\n    holidays:",
            "  servicecenter:\n    ics: closures.ics\n    holidays:",
            1,
        )
        config.write_text(text, encoding="utf-8")
        shutil.copyfile(ICS / "outlook-schliesstage.ics", config.parent / "closures.ics")
        result = ok(
            run("calendar", "-c", config, "--format", "ics", "--tenant", "oldenburg",
                "--from", "2026-06-12", "--to", "2026-06-12")
        )  # fmt: skip
        assert "Betriebsausflug" not in result.stdout
        assert "SUMMARY:Geschlossen (Schließung)" in result.stdout
