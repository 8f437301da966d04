"""``pbxbridge replay`` (pbxbridge.cli.replay) on a real SQLite journal and override file."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pbxbridge.cli import cli
from pbxbridge.core import OverrideState
from pbxbridge.journal.entry import JournalEntry, Outcome
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.storage.overrides import SqliteOverrideStore
from tests.unit.test_replay import RULES, WAR_DID

ROOT = Path(__file__).resolve().parents[2]


def berlin(day: int, hhmm: str) -> datetime:
    """``day`` November 2026 at ``hhmm`` Berlin time (CET, UTC+1)."""
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 11, day, tzinfo=UTC) + timedelta(hours=h - 1, minutes=m)


def entry(
    call_id: str, did: str, caller: str | None, at: datetime, **extra: object
) -> JournalEntry:
    return JournalEntry(
        node="n1",
        call_id=call_id,
        tenant=str(extra.pop("tenant", "wardenburg")),
        did=did,
        caller=caller,
        via_115=did == "115",
        action="queue",
        reasons=(),
        arrived_at=at,
        queued_at=None,
        answered_at=None,
        ended_at=at + timedelta(seconds=60),
        outcome=Outcome.ANSWERED,
        agent="agent1",
        queue="servicecenter",
        wait_s=1.0,
        talk_s=50.0,
        rings=(),
        menu_digit=extra.pop("menu_digit", None),  # type: ignore[arg-type]
    )


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Current rules, new rules (wardenburg priority 9), a journal and one cleared override."""
    state = tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    for name in ("PBXBRIDGE_DATABASE_URL", "PBXBRIDGE_DATABASE_URL_FILE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PBXBRIDGE_CONFIG", raising=False)
    current = RULES.replace("CAL", "sc")
    (tmp_path / "current.yaml").write_text(current, encoding="utf-8")
    new = current.replace(
        'dids: ["+49 4407 73-0"]\n    calendar: sc\n    open: {queue: sc, priority: 5}',
        'dids: ["+49 4407 73-0"]\n    calendar: sc\n    open: {queue: sc, priority: 9}',
    )
    assert new != current
    (tmp_path / "new.yaml").write_text(new, encoding="utf-8")
    state.mkdir()
    with SqliteJournal(state / "journal.sqlite") as journal:
        journal.upsert(
            [
                entry("open1", WAR_DID, "+494411234567", berlin(23, "10:00")),
                entry("open2", WAR_DID, "+494411234568", berlin(24, "10:00")),
                # closed at 11:00 by a storm override: stays closed, no change
                entry("storm", WAR_DID, "+494411234569", berlin(23, "11:30")),
                entry("evening", WAR_DID, "=cmd|' /C calc'!A0", berlin(23, "19:00")),
                entry("purged", "115", None, berlin(2, "10:00"), tenant="oldenburg"),
                entry("outside", WAR_DID, "+494411234567", berlin(30, "10:00") + timedelta(days=1)),
            ]
        )
    with SqliteJournal(state / "journal.sqlite") as journal:
        journal.purge(berlin(3, "00:00"), berlin(30, "00:00"))
    with SqliteOverrideStore(state / "pbxbridge.sqlite") as store:
        storm = store.set("wardenburg", OverrideState.CLOSED, "Unwetter", at=berlin(23, "11:00"))
        store.clear(at=berlin(23, "12:00"), override_id=storm.id)
    return tmp_path


def run(tmp: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        [
            "replay",
            "-c",
            str(tmp / "current.yaml"),
            "--rules",
            str(tmp / "new.yaml"),
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            *args,
        ],
    )


class TestReplayCommand:
    def test_table_lists_groups_samples_and_every_changed_call(self, setup: Path) -> None:
        result = run(setup)
        assert result.exit_code == 1, result.output
        out = result.output
        assert "5 calls, 4 replayed, 2 would change, 1 not replayable" in out
        assert "oldenburg 1" in out  # the purged 115 call, counted per tenant
        assert "wardenburg: priority — 2 call(s)" in out
        assert "before: wardenburg: queue servicecenter p5" in out
        assert "after:  wardenburg: queue servicecenter p9" in out
        assert "Mo 23.11.2026 10:00" in out or "Mon 23.11.2026 10:00" in out
        assert "[n1/open1]" in out and "[n1/open2]" in out
        assert "storm" not in out.split("changed calls:")[1]
        assert "+494411234567" not in out  # callers only shortened
        assert "open → queue servicecenter (priority 9)" in out

    def test_nothing_changes_exit_0(self, setup: Path) -> None:
        result = CliRunner().invoke(
            cli,
            [
                "replay",
                "-c",
                str(setup / "current.yaml"),
                "--rules",
                str(setup / "current.yaml"),
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "no call would be routed differently" in result.output

    def test_the_override_history_counts(self, setup: Path) -> None:
        # Without the storm override the 11:30 call was open: it changes too.
        result = run(setup, "--no-overrides", "--format", "json")
        assert result.exit_code == 1
        data = json.loads(result.output)
        assert [c["call_id"] for c in data["changed"]] == ["open1", "storm", "open2"]

    def test_json(self, setup: Path) -> None:
        data = json.loads(run(setup, "--format", "json").output)
        assert data["summary"] == {
            "calls": 5,
            "replayed": 4,
            "changed": 2,
            "not_replayable": 1,
            "by_kind": {"priority": 2},
            "by_tenant": {"wardenburg": 2},
        }
        (group,) = data["groups"]
        assert (group["tenant"], group["change"], group["count"]) == ("wardenburg", "priority", 2)
        assert group["before"]["priority"] == 5 and group["after"]["priority"] == 9
        assert len(group["samples"]) == 2 and group["samples"][0]["reasons_after"]
        assert data["changed"][0]["caller"] == "+4944…67"

    def test_csv(self, setup: Path) -> None:
        result = run(setup, "--format", "csv", "--tenant", "wardenburg")
        rows = list(csv.DictReader(io.StringIO(result.output), delimiter=";"))
        assert [
            (r["call_id"], r["change"], r["before_priority"], r["after_priority"]) for r in rows
        ] == [
            ("open1", "priority", "5", "9"),
            ("open2", "priority", "5", "9"),
        ]
        assert rows[0]["did"] == WAR_DID  # a number is data, not defused

    def test_tenant_filter(self, setup: Path) -> None:
        result = run(setup, "--tenant", "friesland")
        assert result.exit_code == 0
        assert "0 calls" in result.output

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--tenant", "nobody"), "no such tenant"),
            (("--from", "2026-13-01"), "expected a date"),
            (("--to", "2026-10-01"), "--to is before --from"),
        ],
    )
    def test_errors_exit_2(self, setup: Path, args: tuple[str, ...], message: str) -> None:
        result = run(setup, *args)
        assert result.exit_code == 2
        assert message in result.output

    def test_no_journal_is_an_error_and_none_is_made(self, setup: Path) -> None:
        (setup / "state" / "journal.sqlite").unlink()
        result = run(setup)
        assert result.exit_code == 2
        assert "no journal at" in result.output
        assert not (setup / "state" / "journal.sqlite").exists()

    def test_invalid_new_rules_exit_2_with_the_line(self, setup: Path) -> None:
        (setup / "new.yaml").write_text(RULES.replace("CAL", "nosuchcalendar"), encoding="utf-8")
        result = run(setup)
        assert result.exit_code == 2
        assert "new.yaml:" in result.output and "rules not loaded" in result.output

    def test_defuses_formulas_in_csv(self) -> None:
        from pbxbridge.journal.render import spreadsheet_cell as _cell

        assert _cell("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
        assert _cell("+4944…67") == "+4944…67"
        assert _cell("+x") == "'+x"


def test_the_installed_command_gates_on_its_exit_status(setup: Path) -> None:
    """The real console script, as a deployment pipeline runs it."""
    env_cmd = [
        sys.executable,
        "-m",
        "pbxbridge",
        "replay",
        "-c",
        str(setup / "current.yaml"),
        "--rules",
        str(setup / "new.yaml"),
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
        "--format",
        "json",
    ]
    import os

    env = {**os.environ, "STATE_DIRECTORY": str(setup / "state")}
    done = subprocess.run(env_cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["summary"]["changed"] == 2


def closure_ics(day: str, title: str) -> str:
    """A one-event iCalendar file closing the whole of ``day`` (YYYYMMDD)."""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//replay//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{day}@test\r\nDTSTAMP:20261101T000000Z\r\n"
        f"DTSTART;VALUE=DATE:{day}\r\nSUMMARY:{title}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def test_ics_paths_resolve_against_each_rules_files_folder(
    setup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ics:`` paths are relative to the rules file, whatever the current directory.

    --against CUR closes 23 November by its .ics, --rules NEW closes 24 November by
    another one, both named relative to rules/; run from an unrelated folder (an
    `ics:` read from the current directory would not be found, exit 2).
    """
    rules = setup / "rules"
    (rules / "closures").mkdir(parents=True)
    (rules / "closures" / "cur.ics").write_text(closure_ics("20261123", "A"), encoding="utf-8")
    (rules / "closures" / "new.ics").write_text(closure_ics("20261124", "B"), encoding="utf-8")
    base = (setup / "current.yaml").read_text(encoding="utf-8")
    marker = '    hours: {mon-fri: ["07:00-18:00"]}\n'
    assert base.count(marker) == 1  # only calendar sc has these hours
    for name, ics in (("cur.yaml", "cur.ics"), ("new.yaml", "new.ics")):
        text = base.replace(marker, f"{marker}    ics: closures/{ics}\n")
        (rules / name).write_text(text, encoding="utf-8")
    elsewhere = setup / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(
        cli,
        [
            "replay",
            *("-c", "../current.yaml"),
            *("--against", "../rules/cur.yaml"),
            *("--rules", "../rules/new.yaml"),
            *("--from", "2026-11-01", "--to", "2026-11-30", "--format", "json"),
        ],
    )
    assert result.exit_code == 1, result.output
    changed = {c["call_id"]: c for c in json.loads(result.output)["changed"]}
    # The 23rd opens again, the 24th closes; the 23rd's 11:30 call stays closed by the
    # storm override of that hour, and the evening call by the hours.
    assert set(changed) == {"open1", "open2"}
    assert changed["open1"]["before"]["action"] == "closed"
    assert changed["open1"]["after"]["action"] == "queue"
    assert changed["open2"]["before"]["action"] == "queue"
    assert changed["open2"]["after"]["action"] == "closed"
