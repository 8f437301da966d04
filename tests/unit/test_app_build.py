"""Daemon.build(): every part made and wired, nothing started, nothing connected."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiohttp

from pbxbridge.app import Daemon
from pbxbridge.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]


async def test_build_starts_nothing(tmp_path: Path) -> None:
    rules = tmp_path / "routing.yaml"
    shutil.copy(REPO / "config/routing.yaml", rules)
    d = Daemon(rules, Settings.from_env({}))  # AMI, MQTT, FastAGI and HTTP on
    assert d._load_rules()
    async with aiohttp.ClientSession() as session:
        d.build(session)
        try:
            built: list[object] = [d.overrides, d.ari, d.router, d.tracker, d.desk]
            built += [d.call_metrics, d.ami, d.mqtt, d.journal, d.agi, d.agi_router, d.http]
            assert all(part is not None for part in built)
            assert d._tasks == []
            assert d.agi is not None and not d.agi.listening
            healthy, body = d.health()
            # Built, not started: the ARI socket is not up, nothing listens yet.
            assert not healthy and body["status"] == "down"
            problems = body["problems"]
            assert isinstance(problems, list) and "ari: not connected" in problems
            assert body["ari"]["state"] == "idle"  # type: ignore[index]
            assert body["overrides"] is not None  # the store is open, not read yet
            assert "agi: not listening on 127.0.0.1:4574" in problems
        finally:
            assert d.overrides is not None
            d.overrides.close()
