"""The supervisor page in the composition root: built beside the agent page, fed by AMI."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import aiohttp

from pbxbridge.app import Daemon
from pbxbridge.components import wiring
from pbxbridge.runtime.settings import Settings
from pbxbridge.tracking.agents_board import BOARD_EVENTS, AgentState
from pbxbridge.tracking.call_tracker import FOLLOWED_EVENTS
from tests.unit.test_web_server import write_agents

REPO = Path(__file__).resolve().parents[2]

# A QueueStatus answer as Asterisk 22 sends it (fields trimmed to what is read).
QUEUE_STATUS = [
    {"Event": "QueueParams", "Queue": "servicecenter", "Calls": "1"},
    {"Event": "QueueMember", "Queue": "servicecenter", "Name": "agent1",
     "Location": "PJSIP/agent1", "Status": "2", "Paused": "0", "InCall": "1"},
    {"Event": "QueueMember", "Queue": "servicecenter", "Name": "PJSIP/agent2",
     "Location": "PJSIP/agent2", "Status": "1", "Paused": "1", "PausedReason": "Mittag",
     "InCall": "0"},
    {"Event": "QueueEntry", "Queue": "servicecenter", "Position": "1",
     "Uniqueid": "1700000000.1", "Wait": "12"},
]  # fmt: skip


class FakeAmi:
    async def queue_status(self) -> Any:
        from pbxbridge.adapters.ami.queue import parse_queue_status

        return parse_queue_status(QUEUE_STATUS)


class TestSupervisorWiring:
    async def test_built_with_the_agent_page_and_fed_by_ami(self, tmp_path: Path) -> None:
        rules = tmp_path / "routing.yaml"
        shutil.copy(REPO / "config/routing.yaml", rules)
        agents = write_agents(tmp_path / "agents.yaml")
        d = Daemon(rules, Settings.from_env({"PBXBRIDGE_AGENTS_FILE": str(agents)}))
        assert d._load_rules()
        async with aiohttp.ClientSession() as session:
            built = d.build(session)
            p = built.parts
            try:
                assert p.supervisor is not None and p.forecast is not None
                assert p.web is not None and p.web.on_wrapped_up == p.supervisor.hub.wrapped_up
                assert p.ami is not None
                events = p.ami.config.events
                assert set(BOARD_EVENTS) <= set(events) and set(FOLLOWED_EVENTS) <= set(events)
                assert len(events) == len(set(events))
                _, body = built.health()
                assert body["supervisor"]["viewers"] == 0  # type: ignore[index]
                assert p.supervisor.hub.names()["chefin"] == "Chefin vom Dienst"

                hub = p.supervisor.hub
                assert p.tracker is not None
                await wiring.ami_resync(FakeAmi(), p.tracker, hub)  # type: ignore[arg-type]
                views = {v.agent: (v.state, v.reason) for v in hub.agents.agents(0.0)}
                assert views == {
                    "agent1": (AgentState.TALKING, ""),
                    "agent2": (AgentState.PAUSED, "Mittag"),
                }
            finally:
                assert p.overrides is not None
                p.overrides.close()

    async def test_off_without_the_agent_page(self, tmp_path: Path) -> None:
        rules = tmp_path / "routing.yaml"
        shutil.copy(REPO / "config/routing.yaml", rules)
        d = Daemon(rules, Settings.from_env({}))
        assert d._load_rules()
        async with aiohttp.ClientSession() as session:
            built = d.build(session)
            try:
                assert built.parts.supervisor is None
                assert built.parts.ami is not None
                events = set(built.parts.ami.config.events)
                # The tracker's events (and virtual hold's, on in the example
                # rules), but none that only the agent board reads.
                assert set(FOLLOWED_EVENTS) <= events
                assert not events & {"QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded"}
                assert built.health()[1]["supervisor"] == {"state": "disabled"}
            finally:
                assert built.parts.overrides is not None
                built.parts.overrides.close()
