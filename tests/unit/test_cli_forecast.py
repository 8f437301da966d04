"""``pbxbridge forecast`` (pbxbridge.cli.forecast) over a real SQLite journal and the example."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

import pbxbridge.cli.base
from pbxbridge.cli import cli
from pbxbridge.cli.forecast import parse_week
from pbxbridge.config import load_rules
from pbxbridge.config.compile import state_path
from pbxbridge.journal.backend import JOURNAL_FILE
from pbxbridge.journal.entry import JournalEntry, Outcome
from pbxbridge.journal.sqlite import SqliteJournal

BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=BERLIN)  # Thursday of W49


def entry(call_id: str, tenant: str, at: datetime) -> JournalEntry:
    """An answered call: 10 s wait, 170 s talk (no wrap-up recorded)."""
    answered = at + timedelta(seconds=10)
    return JournalEntry(
        node="n1", call_id=call_id, tenant=tenant, did="", caller="+4944112345",
        via_115=False, action="queue", reasons=(), arrived_at=at, queued_at=at,
        answered_at=answered, ended_at=answered + timedelta(seconds=170),
        outcome=Outcome.ANSWERED, agent="a1", queue="servicecenter", wait_s=10.0,
        talk_s=170.0, rings=(),
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.delenv("PBXBRIDGE_CONFIG", raising=False)
    for name in ("PBXBRIDGE_DATABASE_URL", "PBXBRIDGE_DATABASE_URL_FILE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pbxbridge.cli.base, "now", lambda: NOW)
    path = tmp_path / "routing.yaml"
    shutil.copyfile(EXAMPLE, path)
    _, model = load_rules(path)
    journal = state_path(model, str(path)).with_name(JOURNAL_FILE)
    journal.parent.mkdir(parents=True, exist_ok=True)
    # Four Wednesdays of W46-W49, 10:00-10:30: 30 calls for oldenburg, 10 for wardenburg.
    rows = []
    for week in range(4):
        day = date(2026, 11, 11) + timedelta(weeks=week)
        start = datetime(day.year, day.month, day.day, 10, 0, tzinfo=BERLIN)
        for i in range(30):
            rows.append(entry(f"o{week}-{i}", "oldenburg", start + timedelta(seconds=50 * i)))
        for i in range(10):
            rows.append(entry(f"w{week}-{i}", "wardenburg", start + timedelta(seconds=170 * i)))
    # Today's calls (W49 not over) must not count.
    rows.append(replace(rows[0], call_id="today", arrived_at=NOW.astimezone(UTC)))
    with SqliteJournal(journal) as store:
        store.upsert(rows)
    return path


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["forecast", *(str(a) for a in args)])


class TestForecastCommand:
    def test_json_per_tenant_and_shared(self, config: Path) -> None:
        result = run("-c", config, "--week", "2026-W50", "--weeks", "4", "--format", "json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["week"] == "2026-W50" and data["history"]["first"] == "2026-11-11"
        slots = {(s["tenant"], s["date"], s["start"]): s for s in data["slots"]}
        # History 5 Nov - 2 Dec (today, 3 Dec, is not over), from the journal's
        # first call in it on 11 Nov. Wednesday 9 December 10:00: the mean of
        # the four Wednesdays.
        oldenburg = slots[("oldenburg", "2026-12-09", "10:00")]
        assert oldenburg["calls"] == 30 and oldenburg["aht_s"] == pytest.approx(170.0)
        shared = slots[("*", "2026-12-09", "10:00")]
        assert shared["calls"] == 40
        assert (
            shared["agents"]
            < oldenburg["agents"] + slots[("wardenburg", "2026-12-09", "10:00")]["agents"] + 1
        )
        assert slots[("oldenburg", "2026-12-10", "10:00")]["calls"] == 0
        # Every tenant of the rules is listed, with or without calls.
        assert set(data["tenants"]) == set(load_rules(config)[0].tenants)

    def test_history_before_the_journal_window(self, config: Path) -> None:
        # History 2 - 29 Nov: its first Wednesday (4 Nov) lies before the
        # journal's first call and does not count as a day without calls.
        result = run("-c", config, "--week", "2026-W49", "--weeks", "4", "--format", "json")
        data = json.loads(result.output)
        slot = next(
            s for s in data["slots"]
            if (s["tenant"], s["date"], s["start"]) == ("oldenburg", "2026-12-02", "10:00")
        )  # fmt: skip
        assert slot["calls"] == 30

    def test_csv_for_german_excel(self, config: Path, tmp_path: Path) -> None:
        out = tmp_path / "forecast.csv"
        result = run(
            "-c",
            config,
            "--week",
            "2026-W50",
            "--tenant",
            "wardenburg",
            "--format",
            "csv",
            "-o",
            out,
        )
        assert result.exit_code == 0, result.output
        raw = out.read_bytes()
        assert raw.startswith("\ufeff".encode()) and b"\r\n" in raw
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
        assert {r["tenant"] for r in rows} == {"wardenburg"}
        assert len(rows) == 7 * 48
        wed = next(r for r in rows if r["date"] == "2026-12-09" and r["start"] == "10:00")
        assert wed["calls"] == "10,00" and wed["aht_s"] == "170,0"

    def test_table(self, config: Path) -> None:
        result = run("-c", config, "--week", "2026-W50", "--tenant", "oldenburg")
        assert result.exit_code == 0, result.output
        assert "10:00" in result.output and "30.0/" in result.output

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--week", "2026-50"), "ISO week"),
            (("--week", "2025-W53"), "2025 has no week 53"),
            (("--week", "2026-W50", "--tenant", "nowhere"), "unknown tenant"),
            (("--week", "2026-W50", "--target", "80 in 20"), "PERCENT/SECONDS"),
        ],
    )
    def test_refuses(self, config: Path, args: tuple[str, ...], message: str) -> None:
        result = run("-c", config, *args)
        assert result.exit_code == 1 and message in result.output

    def test_parse_week(self) -> None:
        assert parse_week("2026-W50") == (2026, 50) and parse_week("2026w5") == (2026, 5)
