"""The daemon starts its components in the documented order and stops them in reverse.

Start: rules → overrides → HTTP → … → FastAGI and ARI → READY=1. Stop:
STOPPING=1 → both entry points drain together (ARI closes its socket within) →
AMI → the tracker hands its last wallboard states to MQTT → MQTT → the journal →
the agent page → HTTP → overrides → rules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiohttp

from pbxbridge.app import Daemon
from pbxbridge.components import Sample
from pbxbridge.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]

START = [
    "rules", "overrides", "http", "web", "supervisor", "journal", "open_callbacks", "mqtt",
    "tracker", "service_level", "ami", "sounds", "virtual_hold", "virtual_holds", "agi", "ari",
    "calls",
]  # fmt: skip


class Recorder:
    """A face that writes down when it starts, begins and ends stopping."""

    def __init__(self, name: str, events: list[tuple[str, str]]) -> None:
        self.name = name
        self.events = events

    async def start(self) -> None:
        self.events.append(("start", self.name))

    async def stop(self) -> None:
        self.events.append(("stopping", self.name))
        await asyncio.sleep(0.01)  # a drain: others of its stage run meanwhile
        self.events.append(("stopped", self.name))

    def health(self) -> Mapping[str, object]:
        return {}

    def problems(self) -> list[str]:
        return []

    def gauges(self) -> Iterator[Sample]:
        yield from ()


async def test_start_in_order_stop_in_reverse(tmp_path: Path) -> None:
    rules = tmp_path / "routing.yaml"
    shutil.copy(REPO / "config/routing.yaml", rules)
    d = Daemon(rules, Settings.from_env({}))
    assert d._load_rules()
    events: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as session:
        built = d.build(session)
        fakes = {name: Recorder(name, events) for name in START}
        built = dataclasses.replace(built, **fakes)  # type: ignore[arg-type]
        try:
            await d._start(built)
        finally:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        assert events == [("start", name) for name in START]
        events.clear()
        await d._shutdown(built)
        assert built.parts.overrides is not None
        built.parts.overrides.close()  # the fake did not
    # The entry points (FastAGI, ARI and its calls) drain at the same time.
    begun = {name for what, name in events[:3] if what == "stopping"}
    assert begun == {"agi", "ari", "calls"}
    stopped = [name for what, name in events[3:] if what == "stopped"]
    assert sorted(stopped[3:5]) == ["virtual_hold", "virtual_holds"]
    assert stopped[5:] == [
        "sounds", "ami", "service_level", "tracker", "mqtt", "open_callbacks", "journal",
        "supervisor", "web", "http", "overrides", "rules",
    ]  # fmt: skip
    assert sorted(stopped[:3]) == ["agi", "ari", "calls"]
