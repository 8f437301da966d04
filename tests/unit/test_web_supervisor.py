"""Supervisor page over HTTP (aiohttp test server): role, headers, live board, wallboard."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from pbxbridge.tracking.agents_board import AgentBoard
from pbxbridge.tracking.call_board import CallBoard
from pbxbridge.web import WebConfig, setup_web
from pbxbridge.web.agents import parse_agents
from pbxbridge.web.passwords import verify_password
from pbxbridge.web.server import CSP
from pbxbridge.web.supervisor import SupervisorPage, setup_supervisor
from pbxbridge.web.supervisor_forecast import ForecastProvider
from pbxbridge.web.supervisor_live import SupervisorConfig, SupervisorHub
from pbxbridge.web.supervisor_view import render_board
from tests.unit.test_call_board import call
from tests.unit.test_web_desk import Bench, Clock, example_rules, local
from tests.unit.test_web_hardening import run_sh_demo_logins
from tests.unit.test_web_server import (
    PASSWORDS,
    Site,
    SseReader,
    hidden,
    sign_in,
    write_agents,
)

TOKEN = "wand-token-0123456789abcdef"


@dataclass
class SupervisorSite:
    site: Site
    page: SupervisorPage
    hub: SupervisorHub
    agents: AgentBoard
    calls: CallBoard


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(tmp_path, example_rules(), Clock(local(2026, 11, 25)))
    yield b
    b.close()


@pytest.fixture
async def sv(bench: Bench, tmp_path: Path) -> AsyncIterator[SupervisorSite]:
    app = web.Application()
    page = setup_web(app, bench.desk, WebConfig(str(write_agents(tmp_path / "agents.yaml"))))
    page.limiter.delay_base_s = 0.0
    agents = AgentBoard()
    calls = CallBoard(bench.rules.timezone)
    hub = SupervisorHub(
        lambda: bench.rules,
        lambda: bench.pops.records.values(),
        calls,
        agents,
        lambda: bench.desk.figures,
        render_board,
        SupervisorConfig(wallboard_token=TOKEN),
        names=lambda: {a.id: a.name for a in page.agents.agents().values()},
        clock=bench.clock,
        unix_clock=lambda: bench.clock().timestamp(),
    )
    supervisor = setup_supervisor(app, page, hub)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield SupervisorSite(Site(bench, page, server), supervisor, hub, agents, calls)
    hub.close()
    await bench.desk.close()
    await server.close()


def member(event: str, agent: str, **fields: str) -> dict[str, str]:
    return {"Event": event, "Queue": "servicecenter", "MemberName": agent, **fields}


class TestSupervisorPage:
    async def test_agents_get_403_supervisors_the_board(self, sv: SupervisorSite) -> None:
        site = sv.site
        async with site.browser() as http:
            async with http.get(site.url("/supervisor/"), allow_redirects=False) as resp:
                assert resp.status == 303
                assert resp.headers["Location"] == "../agent/login?next=/supervisor/"
            await sign_in(http, site, "agent1")
            async with http.get(site.url("/agent/")) as resp:
                assert "../supervisor/" not in await resp.text()  # no link for agents
            for path in ("/supervisor/", "/supervisor/events"):
                async with http.get(site.url(path)) as resp:
                    assert resp.status == 403, path
                    assert resp.headers["Content-Security-Policy"] == CSP
        async with site.browser() as http:
            await sign_in(http, site, "chefin")
            async with http.get(site.url("/agent/")) as resp:
                assert 'href="../supervisor/"' in await resp.text()
            async with http.get(site.url("/supervisor/")) as resp:
                assert resp.status == 200
                html = await resp.text()
                assert resp.headers["Content-Security-Policy"] == CSP
                assert resp.headers["Cache-Control"] == "no-store"
            assert "Leitstand" in html and "Alle (gemeinsame Warteschlange)" in html
            assert 'action="../agent/logout"' in html and 'name="csrf"' in html
            async with http.get(site.url("/supervisor/?lang=en")) as resp:
                assert "All (shared queue)" in await resp.text()
            for name in ("supervisor.js", "supervisor.css"):
                async with http.get(site.url(f"/supervisor/static/{name}")) as resp:
                    assert resp.status == 200

    async def test_sign_out_from_the_board_needs_the_csrf_token(self, sv: SupervisorSite) -> None:
        site = sv.site
        async with site.browser() as http:
            await sign_in(http, site, "chefin")
            async with http.get(site.url("/supervisor/")) as resp:
                token = hidden(await resp.text(), "csrf")
            async with http.post(
                site.url("/agent/logout"), data={"csrf": "forged"}, allow_redirects=False
            ) as resp:
                assert resp.status == 403
            async with http.get(site.url("/supervisor/"), allow_redirects=False) as resp:
                assert resp.status == 200  # still signed in
            async with http.post(
                site.url("/agent/logout"), data={"csrf": token}, allow_redirects=False
            ) as resp:
                assert resp.status == 303
            async with http.get(site.url("/supervisor/events"), allow_redirects=False) as resp:
                assert resp.status == 401

    async def test_live_board_follows_agent_events_and_escapes_reasons(
        self, sv: SupervisorSite
    ) -> None:
        site = sv.site
        async with site.browser() as http:
            await sign_in(http, site, "chefin")
            async with http.get(site.url("/supervisor/events")) as resp:
                reader = SseReader(resp)
                name, data = await reader.next()
                assert name == "board" and "Keine Warteschlangenmitglieder" in data["html"]
                at = time.time()
                sv.agents.event(member("QueueMemberAdded", "agent1", Status="1"), at)
                sv.agents.event(member("AgentCalled", "agent1"), at)
                sv.hub.changed()
                name, data = await reader.next()
                assert 'data-agent="agent1" data-state="ringing"' in data["html"]
                reason = '<img src=x onerror="alert(1)">'
                sv.agents.event(
                    member("QueueMemberPause", "agent1", Paused="1", PausedReason=reason), at
                )
                sv.hub.changed()
                name, data = await reader.next()
                assert "<img" not in data["html"]
                assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in data["html"]

    async def test_wallboard_needs_the_token_and_names_nobody(self, sv: SupervisorSite) -> None:
        site = sv.site
        sv.agents.event(member("QueueMemberAdded", "agent1", Status="1"), time.time())
        async with site.browser() as http:
            for bad in ("x" * len(TOKEN), TOKEN[:-1]):
                async with http.get(site.url(f"/supervisor/wall/{bad}/")) as resp:
                    assert resp.status == 404
            async with http.get(site.url(f"/supervisor/wall/{TOKEN}/")) as resp:
                assert resp.status == 200
                assert resp.headers["Referrer-Policy"] == "no-referrer"
                html = await resp.text()
            assert "wallboard" in html and "agent1" not in html and "Abmelden" not in html
            assert 'href="../../static/supervisor.css"' in html
            async with http.get(site.url(f"/supervisor/wall/{TOKEN}/events")) as resp:
                name, data = await SseReader(resp).next()
                assert name == "board" and "agent1" not in data["html"]

    async def test_no_token_configured_no_wallboard(self, sv: SupervisorSite) -> None:
        sv.hub.config = SupervisorConfig()
        async with sv.site.browser() as http, http.get(sv.site.url("/supervisor/wall//")) as resp:
            assert resp.status == 404

    async def test_missed_target_is_red_met_is_green(self, sv: SupervisorSite) -> None:
        now = sv.site.bench.clock()
        call(sv.calls, "slow", "wardenburg", now - timedelta(minutes=2), 60.0, True)
        html = sv.hub.board("de", True)
        assert 'data-tile="sl-day" data-grade="bad"' in html
        for i in range(9):
            call(sv.calls, f"fast{i}", "wardenburg", now - timedelta(minutes=2), 2.0, True)
        html = sv.hub.board("de", True)
        assert 'data-tile="sl-day" data-grade="ok"' in html  # 9 of 10 = 90 %


HOSTILE_NEXT = [
    "https://evil.example/",
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    "../../etc/passwd",
    "/agent/../../etc/passwd",
    "/supervisor/..",
    "/agent/%2e%2e/",
    "/supervisor//evil.example",
    "/agent/\\evil.example",
    "/agent/\r\nSet-Cookie: x=1",
    "/supervisorx/",
    "/healthz",
    "/agent/" + "a/" * 200,
]


async def sign_in_form(http: aiohttp.ClientSession, url: str) -> str:
    """The sign-in form's HTML at ``url`` (GET, a 200 expected)."""
    async with http.get(url) as resp:
        assert resp.status == 200, url
        return await resp.text()


async def post_sign_in(
    http: aiohttp.ClientSession, site: Site, agent: str, csrf: str, next_page: str | None
) -> aiohttp.ClientResponse:
    data = {"agent": agent, "password": PASSWORDS[agent], "csrf": csrf}
    if next_page is not None:
        data["next"] = next_page
    async with http.post(site.url("/agent/login"), data=data, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        return resp


def resolved(resp: aiohttp.ClientResponse) -> str:
    """The path a browser goes to: ``Location`` resolved against the answer's URL."""
    return resp.url.join(URL(resp.headers["Location"])).path_qs


class TestBackToThePageAskedFor:
    @pytest.mark.parametrize(
        ("agent", "lands_on", "text"),
        [("chefin", "/supervisor/", "Alle (gemeinsame Warteschlange)"), ("agent1", "/agent/", "")],
    )
    async def test_from_the_board_through_the_sign_in(
        self, sv: SupervisorSite, agent: str, lands_on: str, text: str
    ) -> None:
        site = sv.site
        async with site.browser() as http:
            async with http.get(site.url("/supervisor/"), allow_redirects=False) as resp:
                assert resp.status == 303
                form_url = site.url(resolved(resp))
            html = await sign_in_form(http, form_url)
            assert hidden(html, "next") == "/supervisor/"
            resp = await post_sign_in(http, site, agent, hidden(html, "csrf"), "/supervisor/")
            # Relative like every other Location here (a proxy's path prefix is kept).
            assert resp.headers["Location"] in ("../supervisor/", "./")
            assert resolved(resp) == lands_on
            async with http.get(site.url(lands_on)) as page:
                assert page.status == 200
                assert text in await page.text()
            # The session cookie is the usual one; the sign-in nonce is gone.
            assert {c.key for c in http.cookie_jar} >= {"pbx_session"}
            assert "pbx_login" not in {c.key for c in http.cookie_jar}

    async def test_a_failed_attempt_and_the_language_switch_keep_the_destination(
        self, sv: SupervisorSite
    ) -> None:
        site = sv.site
        async with site.browser() as http:
            html = await sign_in_form(http, site.url("/agent/login?next=/supervisor/"))
            assert 'href="?lang=en&amp;next=/supervisor/"' in html
            english = await sign_in_form(http, site.url("/agent/login?lang=en&next=/supervisor/"))
            assert "Agent desk sign-in" in english and hidden(english, "next") == "/supervisor/"
            async with http.post(
                site.url("/agent/login"),
                data={
                    "agent": "chefin",
                    "password": "falsch",
                    "csrf": hidden(english, "csrf"),
                    "next": "/supervisor/",
                },
            ) as resp:
                assert resp.status == 401
                again = await resp.text()
            assert hidden(again, "next") == "/supervisor/"
            resp = await post_sign_in(http, site, "chefin", hidden(again, "csrf"), "/supervisor/")
            assert resolved(resp) == "/supervisor/"
            # Already signed in: the form itself leads on to the destination.
            async with http.get(
                site.url("/agent/login?next=/supervisor/"), allow_redirects=False
            ) as resp:
                assert resp.status == 303 and resolved(resp) == "/supervisor/"

    async def test_callbacks_of_a_tenant_after_the_sign_in(self, sv: SupervisorSite) -> None:
        site = sv.site
        async with site.browser() as http:
            async with http.get(
                site.url("/agent/callbacks?tenant=oldenburg"), allow_redirects=False
            ) as resp:
                assert resp.status == 303
                form_url = site.url(resolved(resp))
            html = await sign_in_form(http, form_url)
            assert hidden(html, "next") == "/agent/callbacks?tenant=oldenburg"
            resp = await post_sign_in(
                http, site, "agent1", hidden(html, "csrf"), hidden(html, "next")
            )
            assert resp.headers["Location"] == "./callbacks?tenant=oldenburg"
            assert resolved(resp) == "/agent/callbacks?tenant=oldenburg"

    @pytest.mark.parametrize("value", HOSTILE_NEXT)
    @pytest.mark.parametrize("agent", ["chefin", "agent1"])
    async def test_anything_else_leads_to_the_desk(
        self, sv: SupervisorSite, agent: str, value: str
    ) -> None:
        site = sv.site
        async with site.browser() as http:
            async with http.get(
                site.url("/agent/login"), params={"next": value}, allow_redirects=False
            ) as resp:
                assert resp.status == 200
                html = await resp.text()
            # Not carried on: neither in the form nor in the language link.
            assert 'name="next"' not in html and "next=" not in html
            # Sent anyway (a hand-made form): checked again, the desk.
            resp = await post_sign_in(http, site, agent, hidden(html, "csrf"), value)
            assert resp.headers["Location"] == "./"
            assert resolved(resp) == "/agent/"


class TestSupervisorConfig:
    def test_target_and_token_from_the_environment(self, tmp_path: Path) -> None:
        (tmp_path / "wallboard-password").write_text(TOKEN + "\n")
        cfg = SupervisorConfig.from_env(
            {"PBXBRIDGE_SL_TARGET": "75/30", "CREDENTIALS_DIRECTORY": str(tmp_path)}
        )
        assert (cfg.target_percent, cfg.threshold_s, cfg.wallboard_token) == (75.0, 30.0, TOKEN)

    def test_bad_values_fall_back(self) -> None:
        cfg = SupervisorConfig.from_env(
            {"PBXBRIDGE_SL_TARGET": "lots", "PBXBRIDGE_WALLBOARD_PASSWORD": "short"}
        )
        assert (cfg.target_percent, cfg.threshold_s, cfg.wallboard_token) == (80.0, 20.0, "")


class TestDemoLogin:
    def test_run_sh_prints_a_working_supervisor_login(self, tmp_path: Path) -> None:
        result = run_sh_demo_logins(tmp_path)
        assert result.returncode == 0, result.stderr
        match = re.search(
            r"^  leitung\s+(\S+)   supervisor page: http://127.0.0.1:8090/supervisor/$",
            result.stdout,
            re.M,
        )
        assert match, result.stdout
        agents = parse_agents((tmp_path / "var" / "agents.yaml").read_text(encoding="utf-8"))
        assert agents["leitung"].supervisor and not agents["agent1"].supervisor
        assert verify_password(match.group(1), agents["leitung"].password)
        assert match.group(1) not in (tmp_path / "var" / "agents.yaml").read_text()


class TestSeedFromJournal:
    async def test_a_restart_keeps_todays_figures(self, sv: SupervisorSite) -> None:
        bench = sv.site.bench
        bench.answered_call("c1")
        bench.ring("c2", "agent2")
        bench.clock.tick(38)
        bench.ev("QueueCallerAbandon", "c2", HoldTime="40")
        assert "wardenburg" not in sv.calls.today(bench.clock())  # fed nothing live
        assert bench.link is not None
        assert await sv.hub.seed(bench.link, before=bench.clock()) == 2
        tally = sv.calls.today(bench.clock())["wardenburg"]
        assert (tally.offered, tally.answered, tally.within, tally.abandoned) == (2, 1, 1, 1)
        # Calls journalled after the start are counted live, not again.
        assert await sv.hub.seed(bench.link, before=bench.clock() - timedelta(hours=1)) == 0


class TestForecastProvider:
    async def test_arrivals_and_agents_needed_from_last_weeks_calls(
        self, bench: Bench, tmp_path: Path
    ) -> None:
        bench.clock.now = local(2026, 11, 18, 10, 0).astimezone(UTC)  # Wednesday a week ago
        for i in range(10):
            bench.answered_call(f"h{i}")  # 10:00-10:06 local
        bench.clock.now = local(2026, 11, 25, 10, 5).astimezone(UTC)
        provider = ForecastProvider(
            lambda: bench.rules, lambda: bench.link, SupervisorConfig(), clock=bench.clock
        )
        assert provider.needed(bench.clock()) is None
        await provider.refresh()
        assert provider.error is None
        expected = provider.arrivals(date(2026, 11, 25))[""]
        assert len(expected) == 48
        # The only history Wednesday had ten calls between 10:00 and 10:30.
        assert expected[20] == pytest.approx(10.0)
        assert sum(expected) == pytest.approx(10.0)
        assert (provider.needed(bench.clock()) or 0) >= 1
        assert provider.arrivals(date(2026, 12, 25)) == {}
        assert provider.needed(local(2026, 12, 25, 10, 5)) is None

    async def test_no_history_no_forecast(self, bench: Bench) -> None:
        provider = ForecastProvider(
            lambda: bench.rules, lambda: bench.link, SupervisorConfig(), clock=bench.clock
        )
        await provider.refresh()
        assert provider.error is None and provider.forecast is not None
        # A flat zero would read as "nobody needed": nothing is shown instead.
        assert provider.arrivals(bench.clock().date()) == {}
        assert provider.needed(bench.clock()) is None
