"""The agent page in real headless Chromium, fed by real calls through the real Asterisk.

* A ``pbxbridge run`` process (agents file from ``PBXBRIDGE_AGENTS_FILE``): a
  sipp call to Gemeinde Wardenburg pops on agent1's page while the phone
  rings, with tenant, greeting and caller, turns into the active call on
  answer, and never appears on agent2's page, signed in beside it; clicking
  "Erledigt im Erstkontakt" records the disposition in the daemon's journal.
* The daemon in-process (its own SQLite journal) with an injected clock for
  the page: after real calls on a Friday, before Christi Himmelfahrt and on
  30.12., clicking "Rückruf nötig" stores callbacks due Monday 18:00,
  Friday 15.05. 18:00 and Monday 04.01.2027 18:00; the callbacks view sorts
  them into overdue / due today and an agent marks one done; ``/metrics``
  counts the overdue ones.

Screenshots of the page go to ``docs/screenshots/`` (login, ringing pop,
wrap-up, callbacks view). Chromium is Debian's, driven over the DevTools
protocol (``tests/browser.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pbxbridge.app import Daemon
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import CallRow
from pbxbridge.runtime.settings import Settings
from tests.browser import Chromium, Page
from tests.integration.daemon import TEST_RULES, DaemonProcess
from tests.testbed.fixtures import AgentFactory
from tests.testbed.sipp import CallResult, place_calls
from tests.testbed.testbed import Testbed
from tests.unit.test_web_desk import BERLIN, Clock, local
from tests.unit.test_web_server import PASSWORDS, write_agents

pytestmark = [pytest.mark.asterisk]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
WARDENBURG = "+494407730"
CALLER = "04407123456"
NODE = "web-test-node"
BASE_ENV = {"PBXBRIDGE_MQTT_ENABLED": "no", "PBXBRIDGE_AGI_ENABLED": "no", "PBXBRIDGE_NODE": NODE}

LIVE = "!!document.querySelector('#status.live')"


def card(state: str) -> str:
    return f"!!document.querySelector('article.call[data-state=\"{state}\"]')"


async def sign_in(page: Page, base: str, agent: str) -> None:
    await page.sign_in(base + "login", agent, PASSWORDS[agent])
    assert await page.url() == base
    await page.wait_for(LIVE)


async def watch_for_cards(page: Page) -> None:
    """Count every call card ever added to the page (to prove none ever was)."""
    await page.eval("""(() => {
        window.__cardsSeen = 0;
        new MutationObserver((records) => {
            for (const r of records) for (const n of r.addedNodes)
                if (n.matches && n.matches('article.call')) window.__cardsSeen += 1;
        }).observe(document.getElementById('calls'), {childList: true});
    })()""")


def call_in_background(**kw: Any) -> asyncio.Future[CallResult]:
    args: dict[str, Any] = {"hold_ms": 1500, "caller": CALLER, "display": "Jörg Müller"}
    args.update(kw)
    return asyncio.ensure_future(asyncio.to_thread(place_calls, WARDENBURG, **args))


# ------------------------------------------------------------------ the daemon process


class TestDaemonProcess:
    async def test_pop_on_the_ringing_agents_page_only(
        self,
        tmp_path: Path,
        agents: AgentFactory,
        browser: Chromium,
        web_daemon: Callable[[dict[str, str]], Awaitable[DaemonProcess]],
    ) -> None:
        daemon = await web_daemon(BASE_ENV)
        base = f"http://127.0.0.1:{daemon.port}/agent/"
        one, two = await browser.new_page(), await browser.new_page()

        # A wrong password is refused on the page itself.
        await two.goto(base + "login")
        await two.screenshot(SCREENSHOTS / "agent-login.png")
        await two.type("#agent", "agent2")
        await two.type("#password", "falsch")
        loads = two.loads
        await two.click("#sign-in")
        await two.wait_for_load(loads)
        assert "Agenten-ID oder Kennwort ist falsch" in await two.text(".msg.error")
        assert any("status of 401" in e for e in two.errors)  # the refusal, as logged
        two.errors.clear()

        await sign_in(one, base, "agent1")
        await sign_in(two, base, "agent2")
        await watch_for_cards(two)

        agents(1, "answer", ring_delay_ms=3000)
        call = call_in_background()
        await one.wait_for(card("ringing"), timeout=10)
        # Shown while agent1's phone rings (it rings 3 s before the answer).
        assert not call.done()
        assert await one.text("article.call .tenant-name") == "Gemeinde Wardenburg"
        assert await one.text("article.call .greeting-text") == (
            "„Gemeinde Wardenburg, ServiceCenter, guten Tag“"
        )
        assert await one.text("article.call .caller-number") == "+494407123456"
        assert await one.text("article.call .caller-name") == "Jörg Müller"
        assert await one.text("article.call .call-state") == "Es klingelt"
        href = await one.eval("document.querySelector('article.call a.kb').href")
        assert href.endswith("tenant=wardenburg&caller=%2B494407123456")
        assert await one.eval("document.querySelector('article.call a.kb').rel") == (
            "noopener noreferrer"
        )
        await asyncio.sleep(1.3)  # let the waited-time counter move for the picture
        await one.screenshot(SCREENSHOTS / "agent-ringing.png")

        await one.wait_for(card("answered"), timeout=10)
        assert await one.text("article.call .call-state") == "Im Gespräch"
        result = await call
        assert result.ok, result.describe()
        await one.wait_for(card("wrapup"), timeout=10)
        assert await one.text("article.call .call-state") == (
            "Gespräch beendet – bitte abschließen"
        )
        call_id = await one.eval(
            "document.querySelector('article.call').getAttribute('data-call-id')"
        )
        await one.type("article.call textarea.note", "Öffnungszeiten Bürgerbüro erfragt")
        await one.click("article.call button.resolved")
        flash = await one.wait_for(
            "document.querySelector('#flash.ok') && document.querySelector('#flash').textContent",
            timeout=10,
        )
        assert flash == "Gespeichert: erledigt im Erstkontakt."
        assert await one.count("article.call") == 0
        row = journal_row(tmp_path / "journal.sqlite", call_id)
        assert (row.disposition, row.disposition_by) == ("resolved", "agent1")
        assert row.disposition_note == "Öffnungszeiten Bürgerbüro erfragt"
        assert row.callback_due_at is None and row.outcome == "answered"

        assert await two.eval("window.__cardsSeen") == 0
        assert await two.count("article.call") == 0
        state = await two.eval("fetch('state').then(r => r.json())")
        assert state["agent"] == "agent2" and state["cards"] == []
        assert one.errors == [] and two.errors == []  # no CSP refusals, no script errors

        web = daemon.health()["web"]
        assert web["agents"] == 3 and web["journal"] == "configured"
        assert web["sign_ins"] == 2
        assert web["failed_sign_ins"] == 1 and web["streams"] == 2

    async def test_bad_agents_file_at_start_routing_goes_on(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory
    ) -> None:
        """A malformed agents file at start-up used to stop the daemon before
        ARI connected. Now it starts, routes real calls, shows the error in
        /healthz and lets agents sign in as soon as a good file is written."""
        agents_file = tmp_path / "agents.yaml"
        agents_file.write_text("agent1: !!int zz\n", encoding="utf-8")
        daemon = DaemonProcess(
            tb, tmp_path, extra_env={**BASE_ENV, "PBXBRIDGE_AGENTS_FILE": str(agents_file)}
        )
        await asyncio.to_thread(daemon.start)  # waits for ARI: the daemon is up
        try:
            health = daemon.health()
            assert health["status"] == "degraded"
            assert "invalid literal for int()" in health["web"]["error"]
            base = f"http://127.0.0.1:{daemon.port}/agent/"
            async with aiohttp.ClientSession() as http, http.get(base + "login") as resp:
                assert resp.status == 503
            agents(1, "answer")
            result = await call_in_background(hold_ms=300)
            assert result.ok, result.describe()
            routed = 'pbxbridge_calls_routed_total{action="queue",tenant="wardenburg"}'
            assert daemon.metrics()[routed] == 1
            write_agents(agents_file)
            await asyncio.to_thread(daemon.wait_health, lambda h: "error" not in h["web"], 5)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get(base + "login") as resp:
                    assert resp.status == 200
                    token = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
                assert token is not None
                async with http.post(
                    base + "login",
                    allow_redirects=False,
                    data={
                        "agent": "agent1",
                        "password": PASSWORDS["agent1"],
                        "csrf": token.group(1),
                    },
                ) as resp:
                    assert resp.status == 303
        finally:
            await asyncio.to_thread(daemon.stop)


# ------------------------------------------------------------------ in-process, with a journal


def rules_with_calendar(today: date) -> str:
    """TEST_RULES, Wardenburg on a Lower Saxony calendar like the example's.

    Open all day today and tomorrow (special openings) so the real calls are
    queued whatever the real time; the callback deadlines for the injected
    dates follow the weekdays, holidays and closed days.
    """
    calendar = (
        "  nds:\n"
        "    holidays: {country: DE, subdivision: NI}\n"
        '    hours: {mon-fri: ["07:00-18:00"]}\n'
        '    closed: ["2026-12-24", "2026-12-31"]\n'
        f'    open: {{"{today}": ["00:00-24:00"],'
        f' "{today + timedelta(days=1)}": ["00:00-24:00"]}}\n'
    )
    text = TEST_RULES.replace("calendars:\n", "calendars:\n" + calendar, 1)
    old = '    dids: ["+49 4407 73-0"]\n    calendar: always\n'
    assert old in text
    return text.replace(old, '    dids: ["+49 4407 73-0"]\n    calendar: nds\n', 1)


SCENARIOS = [
    # (answered at, due, the page's text)
    (local(2026, 5, 8, 16, 40), local(2026, 5, 11, 18), "Mo 11.05.2026 18:00"),  # Friday
    (local(2026, 5, 13, 9, 5), local(2026, 5, 15, 18), "Fr 15.05.2026 18:00"),  # Himmelfahrt
    (local(2026, 12, 30, 17, 50), local(2027, 1, 4, 18), "Mo 04.01.2027 18:00"),  # year end
]


@contextlib.asynccontextmanager
async def daemon_in_process(
    tb: Testbed, workdir: Path, clock: Callable[[], datetime]
) -> AsyncIterator[tuple[Daemon, str]]:
    """The real Daemon in this event loop, with the page's clock injected.

    Its journal is the SQLite file beside the state (``workdir/journal.sqlite``).
    """
    agents_file = write_agents(workdir / "agents.yaml")
    proc = DaemonProcess(
        tb,
        workdir,
        rules=rules_with_calendar(datetime.now(BERLIN).date()),
        extra_env={
            **BASE_ENV,
            "PBXBRIDGE_AGENTS_FILE": str(agents_file),
            "PBXBRIDGE_LOG_LEVEL": "warning",
        },
    )
    settings = Settings.from_env(proc.env())
    daemon = Daemon(proc.rules_path, settings)
    daemon.web_clock = clock
    task = asyncio.ensure_future(daemon.run())
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if task.done():
                    task.result()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(base + "/healthz") as resp:
                        health = await resp.json()
                        if (
                            health["ari"]["state"] == "connected"
                            and health["ami"]["state"] == "connected"
                        ):
                            break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the in-process daemon did not connect")
        yield daemon, base
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 60)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def journal_row(db: Path, call_id: str) -> CallRow:
    with SqliteJournal(db) as store:
        rows = store.calls_between(
            datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        )
        return next(r for r in rows if r.call_id == call_id)


class TestWrapUpAndCallbacks:
    async def test_callback_deadlines_through_the_page(
        self, tb: Testbed, tmp_path: Path, agents: AgentFactory, browser: Chromium
    ) -> None:
        today = datetime.now(BERLIN).date()
        for answered, due, _ in SCENARIOS:
            if (
                answered.date() < today + timedelta(days=1) <= due.date()
                or answered.date() < today <= due.date()
            ):
                pytest.skip(f"today ({today}) is inside a scenario's working-day count")
        clock = Clock(SCENARIOS[0][0])
        db = tmp_path / "journal.sqlite"
        async with daemon_in_process(tb, tmp_path, clock) as (daemon, base):
            page = await browser.new_page()
            other = await browser.new_page()
            await sign_in(page, base + "/agent/", "agent1")
            await sign_in(other, base + "/agent/", "agent2")
            await watch_for_cards(other)
            agents(1, "answer", ring_delay_ms=800)
            call_ids: list[str] = []
            for n, (answered, due, due_text) in enumerate(SCENARIOS):
                clock.set(answered)
                call = call_in_background(hold_ms=800)
                await page.wait_for(card("ringing"), timeout=10)
                call_id = await page.eval(
                    "document.querySelector('article.call').getAttribute('data-call-id')"
                )
                result = await call
                assert result.ok, result.describe()
                await page.wait_for(card("wrapup"), timeout=10)
                await page.type("article.call textarea.note", f"Rückfrage {n + 1}: Wohngeld")
                number = await page.eval(
                    "document.querySelector('article.call input.callback-number').value"
                )
                assert number == "+494407123456"  # prefilled with the caller's number
                if n == 0:
                    await page.screenshot(SCREENSHOTS / "agent-wrapup.png")
                await page.click("article.call button.callback")
                flash = await page.wait_for(
                    "document.querySelector('#flash.ok') && "
                    "document.querySelector('#flash').textContent",
                    timeout=10,
                )
                assert flash == f"Rückruf angelegt – fällig bis {due_text}."
                assert await page.count("article.call") == 0
                row = journal_row(db, call_id)
                assert row.disposition == "callback" and row.disposition_by == "agent1"
                assert row.callback_due_at == due
                assert row.callback_number == "+494407123456"
                assert row.disposition_note == f"Rückfrage {n + 1}: Wohngeld"
                assert row.tenant == "wardenburg" and row.agent == "agent1"
                call_ids.append(call_id)
            assert await other.eval("window.__cardsSeen") == 0

            # Monday 04.01.2027 09:00: two overdue, the year-end one due today.
            clock.set(local(2027, 1, 4, 9))
            await page.goto(base + "/agent/callbacks?tenant=wardenburg")
            overdue = await page.eval(
                "[...document.querySelectorAll('#overdue tr[data-call-id]')]"
                ".map(r => r.getAttribute('data-call-id'))"
            )
            today_ids = await page.eval(
                "[...document.querySelectorAll('#due_today tr[data-call-id]')]"
                ".map(r => r.getAttribute('data-call-id'))"
            )
            assert overdue == call_ids[:2] and today_ids == call_ids[2:]
            assert "Mo 04.01.2027 18:00" in await page.text("#due_today")
            await page.screenshot(SCREENSHOTS / "agent-callbacks.png", full_page=True)
            # agent2 sees the team figures but not agent1's callbacks.
            await other.goto(base + "/agent/callbacks")
            assert await other.count("tr[data-call-id]") == 0
            assert "2 überfällig" in await other.text(".team")

            # agent1 marks the Friday callback done.
            loads = page.loads
            await page.click(f'#overdue tr[data-call-id="{call_ids[0]}"] button')
            await page.wait_for_load(loads)
            assert "Rückruf als erledigt markiert." in await page.text(".msg.info")
            assert await page.count(f'tr[data-call-id="{call_ids[0]}"]') == 0
            assert journal_row(db, call_ids[0]).callback_done_at == clock.now
            assert journal_row(db, call_ids[1]).callback_done_at is None

            # The overdue callbacks in /metrics (recounted right after the change).
            assert daemon.components is not None and daemon.components.parts.desk is not None
            await daemon.components.parts.desk.refresh_figures()
            async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
                text = await resp.text()
            assert re.search(r'pbxbridge_callbacks_overdue\{tenant="wardenburg"\} 1\.0', text)
            assert re.search(r'pbxbridge_callbacks_due_today\{tenant="wardenburg"\} 1\.0', text)
            assert re.search(r'pbxbridge_callbacks_open\{tenant="wardenburg"\} 2\.0', text)
            assert page.errors == [] and other.errors == []
