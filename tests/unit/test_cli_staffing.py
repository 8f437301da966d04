"""``pbxbridge staffing`` (pbxbridge.cli.staffing): options, text and JSON output."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pbxbridge.cli import cli
from pbxbridge.cli.staffing import parse_interval


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["staffing", *args])
    return result.exit_code, result.output


class TestStaffingCommand:
    def test_textbook_example_as_json(self) -> None:
        # 91 calls per 30 minutes at 180 s, 80/20: 13 agents (the Erlang C tables).
        code, out = run("--calls", "91", "--interval", "30m", "--aht", "180", "--json")
        assert code == 0, out
        data = json.loads(out)
        assert data["agents"] == 13 and data["model"] == "erlang-c"
        assert data["traffic_erlangs"] == pytest.approx(9.1)
        assert data["occupancy_pct"] == pytest.approx(70.0)
        assert data["service_level_pct"] >= 80 and data["abandon_pct"] == 0

    def test_75_30_needs_12(self) -> None:
        code, out = run("--calls", "91", "--aht", "180", "--target", "75/30")
        assert code == 0
        assert "agents           12" in out and "target 75 %" in out

    def test_erlang_a_with_patience(self) -> None:
        code, out = run(
            "--calls", "91", "--aht", "180", "--model", "erlang-a", "--patience", "60", "--json"
        )
        data = json.loads(out)
        assert code == 0 and data["model"] == "erlang-a"
        assert data["agents"] < 13 and data["abandon_pct"] > 0

    def test_evaluate_an_unstable_staffing(self) -> None:
        code, out = run("--calls", "91", "--aht", "180", "--agents", "9", "--json")
        data = json.loads(out)
        assert code == 0 and data["agents"] == 9
        assert data["asa_s"] is None and data["service_level_pct"] == 0

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--model", "erlang-a"), "patience"),
            (("--patience", "60"), "--patience is for --model erlang-a"),
            (("--target", "80 in 20"), "PERCENT/SECONDS"),
            (("--interval", "0m"), "interval"),
        ],
    )
    def test_refuses(self, args: tuple[str, ...], message: str) -> None:
        code, out = run("--calls", "91", "--aht", "180", *args)
        assert code == 1 and message in out

    @pytest.mark.parametrize(
        ("text", "seconds"), [("30m", 1800), ("1h", 3600), ("900s", 900), ("15", 900)]
    )
    def test_parse_interval(self, text: str, seconds: float) -> None:
        assert parse_interval(text) == seconds
