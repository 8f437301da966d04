"""Tests for the ``pbxbridge`` command line (click's CliRunner, plus a few real runs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

import pbxbridge.cli.base
from pbxbridge.cli import cli
from pbxbridge.config import ConfigError, load_rules

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
BERLIN = ZoneInfo("Europe/Berlin")
WARDENBURG = "04407 73-0"
# Wednesday 25 November 2026, 10:00 in Berlin (CET, +01:00).
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=BERLIN)
ISSUE_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?:(?P<path>[^:\s][^:]*): )?(?P<msg>.+)$")


Run = Callable[..., Result]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The CLI's "now"; tests may replace ``clock[0]``."""
    now = [NOW]
    monkeypatch.setattr(pbxbridge.cli.base, "now", lambda: now[0])
    monkeypatch.setattr(pbxbridge.cli.base, "user", lambda: "alice")
    return now


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(path))
    monkeypatch.delenv("PBXBRIDGE_CONFIG", raising=False)
    # No shared database: overrides and journal in the state directory (the
    # PostgreSQL case is tests/integration/test_overrides_postgres.py).
    for name in ("PBXBRIDGE_DATABASE_URL", "PBXBRIDGE_DATABASE_URL_FILE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def config(tmp_path: Path, state_dir: Path) -> Path:
    """A copy of the shipped example whose state goes to ``state_dir``."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "routing.yaml"
    shutil.copyfile(EXAMPLE, path)
    return path


@pytest.fixture
def run(clock: list[datetime]) -> Run:
    runner = CliRunner()

    def invoke(*args: str | Path) -> Result:
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=True)

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def failed(result: Result, fragment: str) -> Result:
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert fragment in result.stderr, result.stderr
    return result


def explain(run: Run, config: Path, *args: str, did: str = WARDENBURG) -> dict[str, Any]:
    result = ok(run("explain", "-c", config, "--did", did, "--json", *args))
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def explain_result(run: Run, config: Path, *args: str) -> Result:
    return run("explain", "-c", config, "--did", WARDENBURG, "--json", *args)


def set_override(run: Run, config: Path, *args: str) -> Result:
    return run("override", "set", "-c", config, *args)


def overrides(run: Run, config: Path, *args: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        ok(run("override", "list", "-c", config, "--json", *args)).stdout
    )
    return items


def broken_copy(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in [
        ("timezone: Europe/Berlin", "timezone: Europe/Nowhere"),
        ('mon-fri: ["07:00-18:00"]', 'mon-fri: ["07:00-18:00", 17:30]'),
        ("calendar: friesland\n", "calendar: frisland\n"),
        ('dids: ["+49 4421 16-0"]', 'dids: ["+49 4407 73-0"]'),
        ("unknown_did: {tenant: oldenburg}", "unknown_did: {tenant: nobody}"),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestCheck:
    def test_example_is_ok(self, run: Run) -> None:
        result = ok(run("check", EXAMPLE))
        assert result.stdout == (
            f"{EXAMPLE}: OK (5 tenants, 5 numbers, 1 number blocks, 16 115 area codes)\n"
        )
        assert result.stderr == ""

    def test_quiet(self, run: Run) -> None:
        assert ok(run("check", "-q", EXAMPLE)).output == ""

    def test_config_from_environment(self, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PBXBRIDGE_CONFIG", str(EXAMPLE))
        assert "OK (5 tenants" in ok(run("check")).stdout

    def test_every_error_on_stderr(self, run: Run, tmp_path: Path) -> None:
        path = broken_copy(tmp_path)
        with pytest.raises(ConfigError) as info:
            load_rules(path)
        expected = [str(issue) for issue in info.value.issues]
        assert len(expected) == 5

        result = failed(run("check", path), "")
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert lines[:-1] == expected
        assert lines[-1] == f"{path}: 5 error(s); rules not loaded"
        parsed = [ISSUE_LINE.match(line) for line in lines[:-1]]
        assert all(m is not None and m["file"] == str(path) for m in parsed)
        numbers = [int(m["line"]) for m in parsed if m is not None]
        assert numbers == sorted(numbers)
        paths = [m["path"] for m in parsed if m is not None]
        assert paths == [
            "timezone",
            "calendars.servicecenter.hours.mon-fri.1",
            "tenants.wilhelmshaven.dids.0",
            "tenants.friesland.calendar",
            "unknown_did.tenant",
        ]

    def test_error_lines_point_at_the_right_lines(self, run: Run, tmp_path: Path) -> None:
        path = broken_copy(tmp_path)
        source = path.read_text(encoding="utf-8").splitlines()
        result = failed(run("check", path), "")
        for line in result.stderr.splitlines()[:-1]:
            m = ISSUE_LINE.match(line)
            assert m is not None, line
            text = source[int(m["line"]) - 1]
            wanted = {
                "timezone": "Europe/Nowhere",
                "calendars.servicecenter.hours.mon-fri.1": "17:30",
                "tenants.wilhelmshaven.dids.0": "+49 4407 73-0",
                "tenants.friesland.calendar": "frisland",
                "unknown_did.tenant": "nobody",
            }[m["path"]]
            assert wanted in text, (line, text)

    def test_missing_file(self, run: Run, tmp_path: Path) -> None:
        path = tmp_path / "missing.yaml"
        result = failed(run("check", path), f"{path}:0: cannot read")
        assert result.stderr.splitlines()[-1] == f"{path}: 1 error(s); rules not loaded"


class TestExplain:
    def test_open_on_a_wednesday_morning(self, run: Run, config: Path) -> None:
        data = explain(run, config, "--at", "2026-11-25T10:00")
        assert {"tenant", "action", "queue", "reasons", "at"} <= data.keys()
        assert (data["tenant"], data["action"]) == ("wardenburg", "queue")
        assert data["queue"]["queue"] == "servicecenter"
        assert data["queue"]["priority"] == 5
        assert data["did"] == "+494407730"
        assert data["closed"] is None
        assert any("inside mon-fri 07:00-18:00" in r for r in data["reasons"])
        assert data["at"] == "2026-11-25T10:00:00+01:00"

    @pytest.mark.parametrize(
        ("at", "action"),
        [
            ("2026-11-25T06:59", "closed"),
            ("2026-11-25T07:00", "queue"),
            ("2026-11-25T17:59", "queue"),
            ("2026-11-25T18:00", "closed"),
            ("2026-11-28T10:00", "closed"),  # Saturday
        ],
    )
    def test_opening_hours_are_half_open(
        self, run: Run, config: Path, at: str, action: str
    ) -> None:
        assert explain(run, config, "--at", at)["action"] == action

    def test_closed_in_the_evening(self, run: Run, config: Path) -> None:
        data = explain(run, config, "--at", "2026-11-25T18:00")
        assert (data["tenant"], data["action"]) == ("wardenburg", "closed")
        assert data["queue"] is None
        assert data["closed"]["then"] == "hangup"
        assert data["closed"]["announce"] == "custom/wardenburg-closed"
        assert any("outside mon-fri 07:00-18:00" in r for r in data["reasons"])

    def test_closed_on_a_weekday_holiday(self, run: Run, config: Path) -> None:
        # Christi Himmelfahrt 2026 is Thursday 14 May.
        data = explain(run, config, "--at", "2026-05-14T10:00")
        assert (data["tenant"], data["action"]) == ("wardenburg", "closed")
        assert any("holiday: Christi Himmelfahrt" in r for r in data["reasons"])
        assert data["at"] == "2026-05-14T10:00:00+02:00"

    def test_closed_on_a_yearly_closed_date(self, run: Run, config: Path) -> None:
        data = explain(run, config, "--at", "2026-12-24T10:00")
        assert data["action"] == "closed"
        assert any("yearly closed date 12-24" in r for r in data["reasons"])

    @pytest.mark.parametrize(
        ("at", "action", "local"),
        [
            # naive: Berlin local time
            ("2026-11-25T17:30", "queue", "Wed 25.11.2026 17:30 CET"),
            # explicit UTC: 18:30 in Berlin
            ("2026-11-25T17:30+00:00", "closed", "Wed 25.11.2026 18:30 CET"),
            ("2026-11-25T17:30Z", "closed", "Wed 25.11.2026 18:30 CET"),
            # summer time
            ("2026-07-01T17:30", "queue", "Wed 01.07.2026 17:30 CEST"),
            ("2026-07-01T16:30+00:00", "closed", "Wed 01.07.2026 18:30 CEST"),
        ],
    )
    def test_naive_at_is_berlin_local_time(
        self, run: Run, config: Path, at: str, action: str, local: str
    ) -> None:
        data = explain(run, config, "--at", at)
        assert data["action"] == action
        assert any(r.startswith(local) for r in data["reasons"]), data["reasons"]

    def test_naive_at_gets_the_berlin_offset(self, run: Run, config: Path) -> None:
        assert explain(run, config, "--at", "2026-07-01T10:00")["at"] == (
            "2026-07-01T10:00:00+02:00"
        )

    def test_default_time_is_now(self, run: Run, config: Path, clock: list[datetime]) -> None:
        clock[0] = datetime(2026, 11, 28, 10, 0, tzinfo=BERLIN)  # Saturday
        data = explain(run, config)
        assert data["action"] == "closed"
        assert data["at"] == "2026-11-28T10:00:00+01:00"

    def test_115_caller_placed_by_area_code(self, run: Run, config: Path) -> None:
        data = explain(
            run, config, "--at", "2026-11-25T10:00", "--caller", "04407 123456", did="115"
        )
        assert (data["tenant"], data["action"], data["via_115"]) == ("wardenburg", "queue", True)

    def test_115_withheld_caller_gets_the_menu(self, run: Run, config: Path) -> None:
        data = explain(run, config, "--at", "2026-11-25T10:00", did="115")
        assert (data["tenant"], data["action"]) == (None, "menu")
        assert data["menu"]["options"]["3"] == "wilhelmshaven"
        chosen = explain(run, config, "--at", "2026-11-25T10:00", "--digit", "3", did="115")
        assert (chosen["tenant"], chosen["action"]) == ("wilhelmshaven", "queue")

    def test_unknown_did_goes_to_oldenburg(self, run: Run, config: Path) -> None:
        data = explain(run, config, "--at", "2026-11-25T10:00", did="+49 30 1234567")
        assert data["tenant"] == "oldenburg"
        assert any("unknown_did.tenant" in r for r in data["reasons"])

    def test_text_output(self, run: Run, config: Path) -> None:
        out = ok(
            run("explain", "-c", config, "--did", WARDENBURG, "--at", "2026-11-25T10:00")
        ).stdout
        assert "action:     queue" in out
        assert "tenant:     wardenburg (Gemeinde Wardenburg)" in out
        assert "queue:      servicecenter via context pbxbridge-queue, priority 5" in out
        assert "reasons:\n  1. DID +494407730 matched tenant wardenburg" in out

    def test_bad_at(self, run: Run, config: Path) -> None:
        failed(
            run("explain", "-c", config, "--did", WARDENBURG, "--at", "tomorrow"),
            "error: --at 'tomorrow'",
        )

    def test_broken_config(self, run: Run, tmp_path: Path) -> None:
        result = failed(
            run("explain", "-c", broken_copy(tmp_path), "--did", WARDENBURG), "5 error(s)"
        )
        assert result.stdout == ""


def calendar_lines(run: Run, config: Path, who: str, first: str, last: str) -> dict[str, str]:
    out = ok(run("calendar", "-c", config, "--tenant", who, "--from", first, "--to", last))
    lines = out.stdout.splitlines()
    assert lines[0] == f"calendar {'servicecenter' if who != 'friesland' else who} " + (
        "(Europe/Berlin), half-open intervals"
    )
    return {line.split()[1]: line for line in lines[1:]}


class TestCalendar:
    def test_christmas_and_new_year(self, run: Run, config: Path) -> None:
        days = calendar_lines(run, config, "wardenburg", "2026-12-21", "2027-01-04")
        assert len(days) == 15
        assert re.fullmatch(r"Mon 21\.12\.2026  open   07:00-18:00 +mon-fri", days["21.12.2026"])
        assert re.fullmatch(
            r"Thu 24\.12\.2026  closed +yearly closed date 12-24", days["24.12.2026"]
        )
        assert re.fullmatch(
            r"Fri 25\.12\.2026  closed +holiday: Erster Weihnachtstag", days["25.12.2026"]
        )
        assert re.fullmatch(
            r"Sat 26\.12\.2026  closed +holiday: Zweiter Weihnachtstag", days["26.12.2026"]
        )
        assert days["27.12.2026"].startswith("Sun 27.12.2026  closed")
        assert re.fullmatch(r"Mon 28\.12\.2026  open   07:00-18:00 +mon-fri", days["28.12.2026"])
        assert "yearly closed date 12-31" in days["31.12.2026"]
        assert "holiday: Neujahr" in days["01.01.2027"]
        assert days["04.01.2027"].startswith("Mon 04.01.2027  open   07:00-18:00")

    def test_json_periods(self, run: Run, config: Path) -> None:
        out = ok(
            run(
                "calendar",
                "-c",
                config,
                "--tenant",
                "wardenburg",
                "--from",
                "2026-12-24",
                "--to",
                "2026-12-28",
                "--json",
            )
        ).stdout
        data = json.loads(out)
        assert data["calendar"] == "servicecenter"
        days = {d["date"]: d["periods"] for d in data["days"]}
        assert list(days) == ["2026-12-24", "2026-12-25", "2026-12-26", "2026-12-27", "2026-12-28"]
        assert days["2026-12-25"] == [
            {"time": "00:00-24:00", "open": False, "why": "holiday: Erster Weihnachtstag"}
        ]
        assert days["2026-12-28"] == [
            {"time": "00:00-07:00", "open": False, "why": "outside hours"},
            {"time": "07:00-18:00", "open": True, "why": "mon-fri"},
            {"time": "18:00-24:00", "open": False, "why": "outside hours"},
        ]

    def test_calendar_by_key_with_several_intervals(self, run: Run, config: Path) -> None:
        days = calendar_lines(run, config, "friesland", "2026-11-23", "2026-11-27")
        assert "open   07:00-12:30, 13:00-18:00" in days["23.11.2026"]
        assert "open   07:00-14:00" in days["27.11.2026"]

    def test_holiday_in_may(self, run: Run, config: Path) -> None:
        days = calendar_lines(run, config, "oldenburg", "2026-05-14", "2026-05-14")
        assert "holiday: Christi Himmelfahrt" in days["14.05.2026"]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ("--tenant", "nobody", "--from", "2026-01-01", "--to", "2026-01-02"),
                "unknown tenant or calendar 'nobody'",
            ),
            (
                ("--tenant", "wardenburg", "--from", "2026-01-02", "--to", "2026-01-01"),
                "--to is before --from",
            ),
            (
                ("--tenant", "wardenburg", "--from", "2026-01-01", "--to", "2029-01-01"),
                "at most two years",
            ),
        ],
    )
    def test_errors(self, run: Run, config: Path, args: tuple[str, ...], message: str) -> None:
        failed(run("calendar", "-c", config, *args), message)

    def test_bad_date_is_a_usage_error(self, run: Run, config: Path) -> None:
        result = run(
            "calendar",
            "-c",
            config,
            "--tenant",
            "wardenburg",
            "--from",
            "24.12.2026",
            "--to",
            "2026-12-31",
        )
        assert result.exit_code == 2


class TestOverrideRoundTrip:
    def test_set_list_explain_clear(self, run: Run, config: Path, state_dir: Path) -> None:
        out = ok(
            set_override(run, config, "--tenant", "wardenburg", "--closed", "--reason", "Unwetter")
        ).stdout
        assert out == "override #1: wardenburg forced closed until cleared (Unwetter)\n"
        assert (state_dir / "pbxbridge.sqlite").is_file()
        assert not (config.parent / "var").exists()

        (item,) = overrides(run, config)
        assert item == {
            "id": 1,
            "scope": "wardenburg",
            "state": "closed",
            "reason": "Unwetter",
            "set_at": "2026-11-25T10:00:00+01:00",
            "expires_at": None,
            "set_by": "alice",
            "cleared_at": None,
            "cleared_by": None,
            "in_force": True,
        }
        text = ok(run("override", "list", "-c", config)).stdout
        assert text.startswith(
            "#1 wardenburg: closed since 2026-11-25T10:00:00+01:00 until cleared"
        )
        assert "Unwetter (by alice; in force)" in text

        data = explain(run, config, "--at", "2026-11-25T10:30")
        assert (data["tenant"], data["action"]) == ("wardenburg", "closed")
        assert (
            "override #1 for wardenburg: forced closed until cleared (Unwetter)" in data["reasons"]
        )
        assert any("calendar servicecenter not consulted" in r for r in data["reasons"])
        # Other tenants and --no-overrides are not affected.
        assert (
            explain(run, config, "--at", "2026-11-25T10:30", did="+49 441 235-0")["action"]
            == "queue"
        )
        assert (
            explain(run, config, "--at", "2026-11-25T10:30", "--no-overrides")["action"] == "queue"
        )
        # Before it was set, the calendar decides.
        assert explain(run, config, "--at", "2026-11-25T09:59")["action"] == "queue"

        assert ok(run("override", "clear", "-c", config, "--tenant", "wardenburg")).stdout == (
            "cleared 1 override(s)\n"
        )
        assert explain(run, config, "--at", "2026-11-25T10:30")["action"] == "queue"
        assert ok(run("override", "list", "-c", config)).stdout == "no overrides in force\n"
        (old,) = overrides(run, config, "--history")
        assert old["cleared_at"] == "2026-11-25T10:00:00+01:00"
        assert (old["cleared_by"], old["in_force"]) == ("alice", False)

    def test_global_open_for_two_hours(self, run: Run, config: Path, clock: list[datetime]) -> None:
        clock[0] = datetime(2026, 11, 28, 10, 0, tzinfo=BERLIN)  # Saturday
        out = ok(
            set_override(run, config, "--all", "--open", "--reason", "Wahl", "--for", "2h")
        ).stdout
        assert out == (
            "override #1: all tenants forced open until Sat 28.11.2026 12:00 CET (Wahl)\n"
        )
        (item,) = overrides(run, config)
        assert (item["scope"], item["expires_at"]) == ("*", "2026-11-28T12:00:00+01:00")
        for did in (WARDENBURG, "+49 4461 919-0"):
            data = explain(run, config, "--at", "2026-11-28T11:59", did=did)
            assert data["action"] == "queue"
            assert any(
                "for all tenants: forced open until Sat 28.11.2026 12:00 CET (Wahl)" in r
                for r in data["reasons"]
            )
        assert explain(run, config, "--at", "2026-11-28T12:00")["action"] == "closed"
        clock[0] = datetime(2026, 11, 28, 12, 0, tzinfo=BERLIN)
        assert overrides(run, config) == []
        assert overrides(run, config, "--history")[0]["in_force"] is False

    def test_tenant_override_beats_global(self, run: Run, config: Path) -> None:
        ok(set_override(run, config, "--all", "--open", "--reason", "a"))
        ok(set_override(run, config, "--tenant", "wardenburg", "--closed", "--reason", "b"))
        assert (
            explain(run, config, "--at", "2026-11-25T20:00", did=WARDENBURG)["action"] == "closed"
        )
        assert (
            explain(run, config, "--at", "2026-11-25T20:00", did="+49 441 235-0")["action"]
            == "queue"
        )
        assert ok(run("override", "clear", "-c", config, "--all")).stdout == (
            "cleared 1 override(s)\n"
        )
        assert [o["scope"] for o in overrides(run, config)] == ["wardenburg"]

    def test_clear_by_id(self, run: Run, config: Path) -> None:
        ok(set_override(run, config, "--tenant", "wardenburg", "--closed", "--reason", "a"))
        ok(set_override(run, config, "--tenant", "oldenburg", "--closed", "--reason", "b"))
        assert ok(run("override", "clear", "-c", config, "--id", "1")).stdout == (
            "cleared 1 override(s)\n"
        )
        assert [o["id"] for o in overrides(run, config)] == [2]

    def test_state_path_from_the_config(self, run: Run, tmp_path: Path, state_dir: Path) -> None:
        folder = tmp_path / "other"
        folder.mkdir()
        config = folder / "rules.yaml"
        config.write_text(
            EXAMPLE.read_text(encoding="utf-8") + "state: {path: db/overrides.sqlite}\n",
            encoding="utf-8",
        )
        ok(set_override(run, config, "--all", "--closed", "--reason", "x"))
        assert (folder / "db" / "overrides.sqlite").is_file()
        assert not state_dir.exists()
        assert explain(run, config, "--at", "2026-11-25T10:00")["action"] == "closed"

    def test_without_state_directory_state_is_beside_the_config(
        self, run: Run, config: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("STATE_DIRECTORY")
        ok(set_override(run, config, "--all", "--closed", "--reason", "x"))
        assert (config.parent / "var" / "pbxbridge.sqlite").is_file()

    def test_explain_does_not_create_the_state_file(
        self, run: Run, config: Path, state_dir: Path
    ) -> None:
        assert explain(run, config, "--at", "2026-11-25T10:00")["action"] == "queue"
        assert not state_dir.exists()

    def test_unreadable_database_url_file_is_a_clean_error(
        self, run: Run, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A URL is configured but cannot be read: fail, never fall back to the
        # local file (this node would silently stop sharing overrides).
        monkeypatch.setenv("PBXBRIDGE_DATABASE_URL_FILE", str(tmp_path / "missing"))
        failed(
            set_override(run, config, "--all", "--closed", "--reason", "x"),
            "PBXBRIDGE_DATABASE_URL_FILE: cannot read",
        )
        failed(run("override", "list", "-c", config), "PBXBRIDGE_DATABASE_URL_FILE")
        failed(explain_result(run, config), "PBXBRIDGE_DATABASE_URL_FILE")
        assert not (tmp_path / "state").exists()


class TestOverrideExpiry:
    @pytest.mark.parametrize(
        ("now", "until", "expires"),
        [
            pytest.param(NOW, "12:00", "2026-11-25T12:00:00+01:00", id="later-today"),
            pytest.param(NOW.replace(hour=13), "12:00", "2026-11-26T12:00:00+01:00", id="tomorrow"),
            pytest.param(
                NOW.replace(hour=12), "12:00", "2026-11-26T12:00:00+01:00", id="exactly-now"
            ),
            pytest.param(NOW, "10:00:30", "2026-11-25T10:00:30+01:00", id="with-seconds"),
            pytest.param(
                datetime(2026, 3, 28, 13, 0, tzinfo=BERLIN),
                "12:00",
                "2026-03-29T12:00:00+02:00",
                id="across-dst-start",
            ),
            pytest.param(
                datetime(2026, 11, 25, 23, 30, tzinfo=BERLIN),
                "00:15",
                "2026-11-26T00:15:00+01:00",
                id="after-midnight",
            ),
            pytest.param(NOW, "2026-11-27T15:30", "2026-11-27T15:30:00+01:00", id="iso-naive"),
            pytest.param(
                NOW, "2026-11-27T15:30+00:00", "2026-11-27T16:30:00+01:00", id="iso-aware"
            ),
        ],
    )
    def test_until(
        self, run: Run, config: Path, clock: list[datetime], now: datetime, until: str, expires: str
    ) -> None:
        clock[0] = now
        ok(
            set_override(
                run, config, "--tenant", "wardenburg", "--closed", "--reason", "x", "--until", until
            )
        )
        (item,) = overrides(run, config)
        assert item["expires_at"] == expires

    def test_until_message(self, run: Run, config: Path, clock: list[datetime]) -> None:
        clock[0] = NOW.replace(hour=13)
        out = ok(
            set_override(
                run,
                config,
                "--tenant",
                "wardenburg",
                "--closed",
                "--reason",
                "Sturm",
                "--until",
                "12:00",
            )
        ).stdout
        assert (
            out == "override #1: wardenburg forced closed until Thu 26.11.2026 12:00 CET (Sturm)\n"
        )

    def test_until_in_utc_clock_is_berlin_local(
        self, run: Run, config: Path, clock: list[datetime]
    ) -> None:
        # The machine clock may be UTC: "12:00" still means 12:00 in Berlin.
        clock[0] = datetime(2026, 11, 25, 10, 30, tzinfo=ZoneInfo("UTC"))  # 11:30 Berlin
        ok(
            set_override(
                run,
                config,
                "--tenant",
                "wardenburg",
                "--closed",
                "--reason",
                "x",
                "--until",
                "12:00",
            )
        )
        assert overrides(run, config)[0]["expires_at"] == "2026-11-25T12:00:00+01:00"

    @pytest.mark.parametrize(
        ("duration", "delta"),
        [
            ("2h", timedelta(hours=2)),
            ("30m", timedelta(minutes=30)),
            ("1d", timedelta(days=1)),
            (" 45 m ", timedelta(minutes=45)),
        ],
    )
    def test_for(self, run: Run, config: Path, duration: str, delta: timedelta) -> None:
        ok(
            set_override(
                run,
                config,
                "--tenant",
                "wardenburg",
                "--closed",
                "--reason",
                "x",
                "--for",
                duration,
            )
        )
        (item,) = overrides(run, config)
        assert datetime.fromisoformat(item["expires_at"]) == NOW + delta


class TestOverrideErrors:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            pytest.param(
                ("--tenant", "nobody", "--closed"),
                "error: unknown tenant 'nobody'",
                id="unknown-tenant",
            ),
            pytest.param(
                ("--tenant", "wardenburg", "--all", "--closed"),
                "error: give --tenant T or --all",
                id="tenant-and-all",
            ),
            pytest.param(("--closed",), "error: give --tenant T or --all", id="no-scope"),
            pytest.param(
                ("--tenant", "wardenburg"), "error: give --open or --closed", id="no-state"
            ),
            pytest.param(
                ("--tenant", "wardenburg", "--closed", "--until", "tomorrow"),
                "error: --until 'tomorrow'",
                id="until-word",
            ),
            pytest.param(
                ("--tenant", "wardenburg", "--closed", "--until", "25:00"),
                "error: --until '25:00'",
                id="until-25h",
            ),
            pytest.param(
                ("--tenant", "wardenburg", "--closed", "--until", "2026-11-25T09:00"),
                "error: the expiry is in the past",
                id="until-past",
            ),
            pytest.param(
                ("--tenant", "wardenburg", "--closed", "--until", "12:00", "--for", "2h"),
                "error: give --until or --for, not both",
                id="until-and-for",
            ),
            pytest.param(
                ("--tenant", "wardenburg", "--closed", "--for", "2 weeks"),
                "error: --for '2 weeks'",
                id="for-unit",
            ),
            pytest.param(
                ("--tenant", "wardenburg", "--closed", "--for", "0m"),
                "error: the expiry is in the past",
                id="for-zero",
            ),
        ],
    )
    def test_set_errors(
        self, run: Run, config: Path, state_dir: Path, args: tuple[str, ...], message: str
    ) -> None:
        failed(set_override(run, config, "--reason", "x", *args), message)
        assert not (state_dir / "pbxbridge.sqlite").exists()

    def test_empty_reason(self, run: Run, config: Path) -> None:
        failed(
            set_override(run, config, "--all", "--closed", "--reason", "  "),
            "error: --reason must not be empty",
        )

    def test_missing_reason_is_a_usage_error(self, run: Run, config: Path) -> None:
        assert set_override(run, config, "--all", "--closed").exit_code == 2

    @pytest.mark.parametrize("days", ["99999999d", "9999999999d"])
    def test_huge_duration_is_a_clean_error(self, run: Run, config: Path, days: str) -> None:
        failed(
            set_override(run, config, "--all", "--closed", "--reason", "x", "--for", days),
            "error: --for",
        )

    def test_clear_nothing_exits_1(self, run: Run, config: Path) -> None:
        result = run("override", "clear", "-c", config, "--tenant", "wardenburg")
        assert result.exit_code == 1
        assert result.stdout == "cleared 0 override(s)\n"

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--id", "1", "--tenant", "wardenburg"), "error: give --id alone"),
            (("--tenant", "nobody"), "error: unknown tenant 'nobody'"),
            ((), "error: give --tenant T or --all"),
        ],
    )
    def test_clear_errors(
        self, run: Run, config: Path, args: tuple[str, ...], message: str
    ) -> None:
        ok(set_override(run, config, "--tenant", "wardenburg", "--closed", "--reason", "x"))
        failed(run("override", "clear", "-c", config, *args), message)
        assert len(overrides(run, config)) == 1


class TestSchema:
    def test_prints_json_schema(self, run: Run) -> None:
        doc = json.loads(ok(run("schema")).stdout)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["type"] == "object"
        assert "tenants" in doc["properties"]
        assert {"timezone", "calendars", "queues", "tenants", "unknown_did"} <= set(doc["required"])
        assert doc["additionalProperties"] is False


class TestCommandLine:
    """A few runs of the installed console script, as an operator would."""

    @pytest.fixture
    def exe(self) -> list[str]:
        script = Path(sys.executable).parent / "pbxbridge"
        return [str(script)] if script.exists() else [sys.executable, "-m", "pbxbridge"]

    def test_check_ok(self, exe: list[str]) -> None:
        proc = subprocess.run(
            [*exe, "check", str(EXAMPLE)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert "OK (5 tenants" in proc.stdout

    def test_check_errors(self, exe: list[str], tmp_path: Path) -> None:
        path = broken_copy(tmp_path)
        proc = subprocess.run(
            [*exe, "check", str(path)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 1
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 6
        assert all(line.startswith(f"{path}:") for line in lines)
        assert "Traceback" not in proc.stderr

    def test_explain_json(self, exe: list[str], tmp_path: Path) -> None:
        env = {"PATH": "/usr/bin:/bin", "STATE_DIRECTORY": str(tmp_path)}
        proc = subprocess.run(
            [
                *exe,
                "explain",
                "-c",
                str(EXAMPLE),
                "--did",
                WARDENBURG,
                "--at",
                "2026-11-25T10:00",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert (data["tenant"], data["action"]) == ("wardenburg", "queue")


# -- a wall-clock --at in a DST switch is one instant -------------------------

NIGHT_RULES = """\
timezone: Europe/Berlin
calendars:
  night: {hours: {daily: ["02:00-03:00"]}}
queues:
  servicecenter: {queue: servicecenter}
tenants:
  wardenburg:
    name: Gemeinde Wardenburg
    dids: ["+49 4407 73-0"]
    calendar: night
    open: {queue: servicecenter}
    closed: {then: hangup}
unknown_did: {tenant: wardenburg}
"""


@pytest.mark.parametrize(
    ("at", "action", "instant", "note"),
    [
        # spring: 02:30 does not exist; it is 01:30 UTC = 03:30 CEST, closed
        ("2026-03-29T02:30", "closed", "2026-03-29T03:30:00+02:00", "does not exist"),
        ("2026-03-29T01:30Z", "closed", "2026-03-29T01:30:00+00:00", ""),
        ("2026-03-29T02:30+01:00", "closed", "2026-03-29T02:30:00+01:00", ""),
        ("2026-03-29T01:30", "closed", "2026-03-29T01:30:00+01:00", ""),
        # autumn: 02:30 occurs twice, the first (CEST) is taken; both are open
        ("2026-10-25T02:30", "queue", "2026-10-25T02:30:00+02:00", "occurs twice"),
        ("2026-10-25T00:30Z", "queue", "2026-10-25T00:30:00+00:00", ""),
        ("2026-10-25T01:30Z", "queue", "2026-10-25T01:30:00+00:00", ""),
        ("2026-10-25T02:00Z", "closed", "2026-10-25T02:00:00+00:00", ""),
    ],
)
def test_explain_at_in_a_dst_switch_is_one_instant(
    run: Run, tmp_path: Path, state_dir: Path, at: str, action: str, instant: str, note: str
) -> None:
    config = tmp_path / "night.yaml"
    config.write_text(NIGHT_RULES, encoding="utf-8")
    data = explain(run, config, "--no-overrides", "--at", at)
    assert data["action"] == action, data["reasons"]
    assert data["at"] == instant
    assert (note in data["at_note"]) if note else "at_note" not in data
    text = ok(run("explain", "-c", config, "--did", WARDENBURG, "--no-overrides", "--at", at))
    assert ("note:       --at" in text.stdout) is bool(note)
