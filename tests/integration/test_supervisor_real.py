"""The supervisor page and the wallboard in real headless Chromium, fed by real calls.

A ``pbxbridge run`` process against the real Asterisk test bed, with the agents
file of the agent page tests (``chefin`` is a supervisor) and the promise set
to 80 % within 2 s (``PBXBRIDGE_SL_TARGET=80/2``) so that a sipp agent that
rings 3 s misses it:

* a supervisor's board shows agent1 from ``QueueStatus`` right after start;
* a call answered after 0.3 s turns the service-level tile green;
* a call that rings agent1 for 3 s shows as waiting within a second of being
  routed, agent1's row goes ringing → talking → wrap-up in that order, and the
  service-level tile turns red (1 of 2 in time);
* the wallboard (token URL) shows the same figures and names nobody;
* agent1 (no supervisor) gets 403;
* after a restart (agent2 paused meanwhile, no daemon listening) the board is
  rebuilt from ``QueueStatus`` (agent2 paused, reason shown) and today's counts
  come back from the journal;
* a pause while the daemon runs shows live (``QueueMemberPause``), with its reason.

Screenshots go to ``docs/screenshots/`` (supervisor-de.png, supervisor-en.png,
wallboard.png).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Chromium, Page
from tests.integration.daemon import DaemonProcess
from tests.testbed.sipp import SippAgent, place_calls
from tests.testbed.testbed import Testbed
from tests.unit.test_web_server import PASSWORDS

pytestmark = [pytest.mark.asterisk]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
WARDENBURG = "+494407730"
CALLER = "04407123456"
TOKEN = "wallboard-test-token-0123456789"
ENV = {
    "PBXBRIDGE_MQTT_ENABLED": "no",
    "PBXBRIDGE_AGI_ENABLED": "no",
    "PBXBRIDGE_SL_TARGET": "80/2",
    "PBXBRIDGE_WALLBOARD_PASSWORD": TOKEN,
}
LIVE = "!!document.querySelector('#sv-status.live')"

WATCH = """(() => {
    window.__seen = {states: [], waiting: []};
    const board = document.getElementById('board');
    new MutationObserver(() => {
        const at = performance.timeOrigin + performance.now();
        const row = board.querySelector('li[data-agent="agent1"]');
        const state = row ? row.getAttribute('data-state') : null;
        const s = window.__seen.states;
        if (state && (s.length === 0 || s[s.length - 1][0] !== state)) s.push([state, at]);
        const w = board.querySelector('[data-tile="waiting"] .tile-value');
        const waiting = w ? w.textContent : null;
        const ws = window.__seen.waiting;
        if (ws.length === 0 || ws[ws.length - 1][0] !== waiting) ws.push([waiting, at]);
    }).observe(board, {childList: true, subtree: true, attributes: true});
    return true;
})()"""


def tile_grade(name: str) -> str:
    return f"(document.querySelector('[data-tile=\"{name}\"]') || {{}}).dataset?.grade"


async def sign_in(page: Page, base: str, agent: str) -> None:
    await page.sign_in(base + "agent/login", agent, PASSWORDS[agent])


def queues_of(tb: Testbed, member: str) -> list[str]:
    """The queues ``member`` is in, from ``queue show``."""
    queues: list[str] = []
    current = ""
    for line in tb.cli("queue show").splitlines():
        if line and not line[0].isspace():
            current = line.split()[0]
        elif member + " " in line and current:
            queues.append(current)
    return queues


async def call(tb: Testbed, ring_delay_ms: int) -> Any:
    agent = SippAgent.for_agent(1, "answer", ring_delay_ms, tb.config).start()
    try:
        return await asyncio.to_thread(
            place_calls, WARDENBURG, count=1, rate=1.0, hold_ms=1500, caller=CALLER
        )
    finally:
        agent.stop()


class TestSupervisorPage:
    async def test_live_board_agents_service_level_wallboard_and_refusal(
        self,
        tb: Testbed,
        browser: Chromium,
        web_daemon: Callable[[dict[str, str]], Awaitable[DaemonProcess]],
    ) -> None:
        daemon = await web_daemon(ENV)
        paused = False
        try:
            base = f"http://127.0.0.1:{daemon.port}/"
            page = await browser.new_page(1400, 1000)
            await sign_in(page, base, "chefin")
            await page.goto(base + "supervisor/")
            await page.wait_for(LIVE)
            # Rebuilt from QueueStatus at the AMI login: the test bed's members.
            await page.wait_for("!!document.querySelector('li[data-agent=\"agent1\"]')", 10)
            assert await page.text("h1, .target") != ""
            assert await page.eval(tile_grade("sl-day")) == "none"
            await page.eval(WATCH)

            # In time: answered after 0.3 s of ringing (target 2 s).
            first = await call(tb, 300)
            assert first.ok, first.describe()
            await page.wait_for(f"{tile_grade('sl-day')} === 'ok'", 10)
            await page.wait_for(
                "document.querySelector('li[data-agent=\"agent1\"]').dataset.state === 'wrapup'", 10
            )

            # Late: agent1 rings 3 s. The first call's wrap-up ends when agent1 is
            # offered this one.
            await page.eval("window.__seen = {states: [], waiting: []}")
            second = asyncio.ensure_future(call(tb, 3000))
            await page.wait_for(
                "document.querySelector('li[data-agent=\"agent1\"]').dataset.state === 'talking'",
                15,
            )
            await page.screenshot(SCREENSHOTS / "supervisor-de.png", full_page=True)
            result = await second
            assert result.ok, result.describe()
            await page.wait_for(f"{tile_grade('sl-day')} === 'bad'", 10)
            await page.wait_for(
                "document.querySelector('li[data-agent=\"agent1\"]').dataset.state === 'wrapup'",
                10,
            )
            seen: dict[str, list[list[Any]]] = await page.eval("window.__seen")
            states = [s for s, _ in seen["states"]]
            while states and states[0] == "wrapup":  # the first call's wrap-up, still shown
                states.pop(0)
            assert states == ["ringing", "talking", "wrapup"], seen["states"]
            routed = daemon.routed()[-1]
            routed_ms = datetime.fromisoformat(routed["timestamp"]).timestamp() * 1000
            shown = next(at for value, at in seen["waiting"] if value == "1")
            assert 0 < shown - routed_ms <= 1000, (shown - routed_ms, seen["waiting"])
            # 1 of 2 answered within 2 s, none abandoned.
            assert await page.text('tr.shared td[data-sl="day-offered"]') == "50,0 %"
            assert await page.text('tr[data-tenant="wardenburg"] td[data-fig="answered"]') == "2"
            assert page.errors == []  # no CSP refusals, no script errors

            await page.goto(base + "supervisor/?lang=en")
            await page.wait_for(LIVE)
            await page.screenshot(SCREENSHOTS / "supervisor-en.png", full_page=True)
            assert "All (shared queue)" in await page.text("tr.shared th")

            # The wallboard: the same figures, nobody named.
            wall = await browser.new_page(1920, 1080)
            await wall.goto(base + f"supervisor/wall/{TOKEN}/")
            await wall.wait_for(LIVE)
            assert await wall.eval(tile_grade("sl-day")) == "bad"
            text = await wall.text("body")
            assert "agent1" not in text and "Chefin" not in text and "4407123456" not in text
            await wall.screenshot(SCREENSHOTS / "wallboard.png")
            assert wall.errors == []

            # An agent is refused.
            other = await browser.new_page()
            await sign_in(other, base, "agent1")
            await other.goto(base + "supervisor/")
            assert "Kein Zugriff" in await other.text(".msg.error")
            assert any("status of 403" in e for e in other.errors)

            health = daemon.health()["supervisor"]
            assert health["refused"] == 1 and health["wallboard"] is True

            # A restart: agent2 pauses while no daemon listens. The new daemon's
            # board comes from QueueStatus, today's counts from the journal.
            await asyncio.to_thread(daemon.stop)
            paused = True
            # A reason needs a queue: pause in each of agent2's queues.
            for queue in await asyncio.to_thread(queues_of, tb, "PJSIP/agent2"):
                await asyncio.to_thread(
                    tb.cli, f"queue pause member PJSIP/agent2 queue {queue} reason Schulung"
                )
            await asyncio.to_thread(daemon.start)
            await asyncio.to_thread(
                daemon.wait_health, lambda h: h["ami"]["state"] == "connected", 15
            )
            await sign_in(page, base, "chefin")
            await page.goto(base + "supervisor/")
            await page.wait_for(LIVE)
            agent2 = "document.querySelector('li[data-agent=\"agent2\"]')"
            await page.wait_for(f"{agent2} && {agent2}.dataset.state === 'paused'", 10)
            assert await page.text('li[data-agent="agent2"] .reason') == "Schulung"
            await page.wait_for(
                'document.querySelector(\'tr[data-tenant="wardenburg"] td[data-fig="offered"]\')'
                ".textContent === '2'",
                10,
            )

            # Live: a pause while the daemon listens arrives as QueueMemberPause
            # (through the session's event filter).
            for queue in await asyncio.to_thread(queues_of, tb, "PJSIP/agent3"):
                await asyncio.to_thread(
                    tb.cli, f"queue pause member PJSIP/agent3 queue {queue} reason Telefonat"
                )
            agent3 = "document.querySelector('li[data-agent=\"agent3\"]')"
            await page.wait_for(f"{agent3}.dataset.state === 'paused'", 5)
            assert await page.text('li[data-agent="agent3"] .reason') == "Telefonat"
        finally:
            # The test bed's members as they were, before web_daemon stops the daemon.
            if paused:
                await asyncio.to_thread(tb.cli, "queue unpause member PJSIP/agent3")
                await asyncio.to_thread(tb.cli, "queue unpause member PJSIP/agent2")
