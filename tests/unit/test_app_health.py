"""The daemon's one health verdict: ok / degraded (with problems) / down, and its HTTP code."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from pbxbridge import app
from pbxbridge.adapters.ari.client import AriConnectionStatus, AriState
from pbxbridge.adapters.http.server import HttpServer
from pbxbridge.runtime.live import LiveRules
from pbxbridge.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _ari(connected: bool) -> SimpleNamespace:
    state = AriState.CONNECTED if connected else AriState.DISCONNECTED
    status = AriConnectionStatus(state, datetime.now(UTC), 0, None)
    return SimpleNamespace(status=status, connected=connected)


class Daemon:
    """The daemon's faces (app.faces) over the parts a test sets; nothing started."""

    def __init__(self, rules: LiveRules) -> None:
        self.rules = rules
        self.parts: dict[str, Any] = {}

    def health(self) -> tuple[bool, dict[str, object]]:
        return app.faces(app.Parts(self.rules, **self.parts), Settings.from_env({})).health()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with its rules loaded and every part healthy (fakes), nothing started."""
    rules = tmp_path / "routing.yaml"
    shutil.copy(REPO / "config/routing.yaml", rules)
    d = Daemon(LiveRules(rules))
    d.rules.load_initial()
    d.parts["ari"] = _ari(True)
    yield d


def _set(d: Daemon, name: str, value: Any) -> None:
    d.parts[name] = value


def test_all_well_is_ok(daemon: Daemon) -> None:
    healthy, body = daemon.health()
    assert healthy and body["status"] == "ok" and body["problems"] == []


def test_ari_down_is_down(daemon: Daemon) -> None:
    daemon.parts["ari"] = _ari(False)
    healthy, body = daemon.health()
    assert not healthy and body["status"] == "down"
    assert body["problems"] == ["ari: not connected"]


@pytest.mark.parametrize(
    ("part", "value", "word"),
    [
        ("agi", SimpleNamespace(listening=False, host="127.0.0.1", port=4574), "agi:"),
        ("overrides", SimpleNamespace(error="database unreachable", health=dict), "overrides:"),
        (
            "web",
            SimpleNamespace(health=lambda: {"agents": 0, "error": "agents.yaml:3: bad value"}),
            "web:",
        ),
        (
            "web",
            SimpleNamespace(health=lambda: {"agents": 0, "agents_file_error": "cannot read"}),
            "web:",
        ),
        (
            "ami",
            SimpleNamespace(connected=False, status=SimpleNamespace(as_dict=dict)),
            "ami:",
        ),
        (
            "mqtt",
            SimpleNamespace(status=lambda: SimpleNamespace(connected=False, as_dict=dict)),
            "mqtt:",
        ),
        (
            "journal",
            SimpleNamespace(stats=SimpleNamespace(last_error="OperationalError", as_dict=dict)),
            "journal:",
        ),
    ],
)
def test_each_problem_degrades(daemon: Daemon, part: str, value: Any, word: str) -> None:
    _set(daemon, part, value)
    healthy, body = daemon.health()
    assert not healthy and body["status"] == "degraded"
    problems = body["problems"]
    assert isinstance(problems, list)
    (problem,) = problems
    assert problem.startswith(word)


def test_healthy_parts_do_not_degrade(daemon: Daemon) -> None:
    _set(daemon, "agi", SimpleNamespace(listening=True, host="127.0.0.1", port=4574))
    _set(daemon, "web", SimpleNamespace(health=lambda: {"agents": 2, "error": None}))
    _set(daemon, "ami", SimpleNamespace(connected=True, status=SimpleNamespace(as_dict=dict)))
    _set(
        daemon,
        "mqtt",
        SimpleNamespace(status=lambda: SimpleNamespace(connected=True, as_dict=dict)),
    )
    _set(daemon, "journal", SimpleNamespace(stats=SimpleNamespace(last_error=None, as_dict=dict)))
    daemon.parts["agi_router"] = (
        None  # the Agi face reports it disabled; its problem reads the server
    )
    healthy, body = daemon.health()
    assert healthy and body["status"] == "ok", body["problems"]


async def test_rejected_reload_degrades_until_a_good_file(daemon: Daemon) -> None:
    good = daemon.rules.path.read_text(encoding="utf-8")
    daemon.rules.path.write_text(good + "\nnot_a_key: 1\n", encoding="utf-8")
    assert not await daemon.rules.reload("test")
    healthy, body = daemon.health()
    assert not healthy and body["status"] == "degraded"
    problems = body["problems"]
    assert isinstance(problems, list)
    (problem,) = problems
    assert problem.startswith("rules: last reload rejected") and "generation 1" in problem
    daemon.rules.path.write_text(good.replace("priority: 5", "priority: 6", 1), encoding="utf-8")
    assert await daemon.rules.reload("test")
    healthy, body = daemon.health()
    assert healthy and body["status"] == "ok"


async def test_http_codes_follow_the_verdict() -> None:
    verdicts: dict[str, tuple[bool, dict[str, object]]] = {
        "ok": (True, {"status": "ok", "problems": []}),
        "degraded": (False, {"status": "degraded", "problems": ["rules: x"]}),
        "down": (False, {"status": "down", "problems": ["ari: not connected"]}),
    }
    current = ["ok"]
    server = HttpServer("127.0.0.1", 0, lambda: verdicts[current[0]])
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            for word, code in (("ok", 200), ("degraded", 503), ("down", 503)):
                current[0] = word
                async with http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
                    body = await resp.json()
                    assert (resp.status, body["status"]) == (code, word)
    finally:
        await server.stop()


async def test_http_source_without_a_status_word() -> None:
    server = HttpServer("127.0.0.1", 0, lambda: (False, {}))
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.port}/healthz") as resp,
        ):
            assert resp.status == 503 and (await resp.json())["status"] == "down"
    finally:
        await server.stop()
