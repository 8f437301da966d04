"""Daemon.build(): every part made and wired, nothing started, nothing connected."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import fields
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
        tasks_before = asyncio.all_tasks()
        built = d.build(session)
        p = built.parts
        try:
            made: list[object] = [p.overrides, p.ari, p.router, p.tracker, p.desk]
            made += [p.call_metrics, p.ami, p.mqtt, p.journal, p.repeat, p.agi, p.agi_router]
            made += [p.http, p.open_callbacks, p.repeat_priority]
            assert all(part is not None for part in made)
            assert asyncio.all_tasks() == tasks_before
            assert p.agi is not None and not p.agi.listening
            # Every face is in the start order, each once.
            in_order = [face for stage in built.order for face in stage]
            assert len(in_order) == len(set(map(id, in_order))) == len(fields(built)) - 1
            healthy, body = built.health()
            # Built, not started: the ARI socket is not up, nothing listens yet.
            assert not healthy and body["status"] == "down"
            problems = body["problems"]
            assert isinstance(problems, list) and "ari: not connected" in problems
            assert body["ari"]["state"] == "idle"  # type: ignore[index]
            assert body["overrides"] is not None  # the store is open, not read yet
            assert "agi: not listening on 127.0.0.1:4574" in problems
        finally:
            assert p.overrides is not None
            p.overrides.close()
