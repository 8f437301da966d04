"""Agent page over HTTP (aiohttp test server, no browser): sign-in, CSRF, headers,
live pops per agent, wrap-up with an injected clock, callbacks, refusals."""

from __future__ import annotations

import asyncio
import json
import re
import string
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pbxbridge.core.rules import Rules
from pbxbridge.web import WebConfig, setup_web
from pbxbridge.web.agents import agents_file_line
from pbxbridge.web.i18n import LABELS
from pbxbridge.web.passwords import hash_password
from pbxbridge.web.server import CSP, AgentPage
from tests.unit.test_web_desk import NODE, Bench, Clock, example_rules, local

FAST = 10
PASSWORDS = {"agent1": "eins-Passwort", "agent2": "zwei-Passwort", "chefin": "chef-Passwort"}


def write_agents(path: Path) -> Path:
    lines = [
        agents_file_line(a, hash_password(p, ln=FAST))
        for a, p in PASSWORDS.items()
        if a != "chefin"
    ]
    lines.append(
        f"chefin:\n  password: {hash_password(PASSWORDS['chefin'], ln=FAST)}\n"
        "  name: Chefin vom Dienst\n  supervisor: true"
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@dataclass
class Site:
    bench: Bench
    page: AgentPage
    server: TestServer

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def browser(self) -> aiohttp.ClientSession:
        # unsafe=True: keep cookies for an IP address host (127.0.0.1).
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture(scope="module")
def rules() -> Rules:
    return example_rules()


@pytest.fixture
def bench(tmp_path: Path, rules: Rules) -> Iterator[Bench]:
    b = Bench(tmp_path, rules, Clock(local(2026, 11, 25)))
    yield b
    b.close()


async def start_site(bench: Bench, tmp_path: Path, **config: Any) -> Site:
    app = web.Application()
    agents = write_agents(tmp_path / "agents.yaml")
    page = setup_web(app, bench.desk, WebConfig(str(agents), **config))
    page.limiter.delay_base_s = 0.0  # the growing delay has its own tests
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return Site(bench, page, server)


@pytest.fixture
async def site(bench: Bench, tmp_path: Path) -> AsyncIterator[Site]:
    s = await start_site(bench, tmp_path)
    yield s
    await bench.desk.close()
    await s.server.close()


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)


def meta_csrf(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match
    return match.group(1)


async def login_form(http: aiohttp.ClientSession, site: Site) -> str:
    async with http.get(site.url("/agent/login")) as resp:
        assert resp.status == 200
        return hidden(await resp.text(), "csrf")


async def sign_in(http: aiohttp.ClientSession, site: Site, agent: str) -> str:
    """Sign in; returns the session's CSRF token from the desk page."""
    token = await login_form(http, site)
    async with http.post(
        site.url("/agent/login"),
        allow_redirects=False,
        data={"agent": agent, "password": PASSWORDS[agent], "csrf": token},
    ) as r:
        assert r.status == 303, await r.text()
        assert r.headers["Location"] == "./"
    async with http.get(site.url("/agent/")) as resp:
        assert resp.status == 200
        return meta_csrf(await resp.text())


class SseReader:
    """Reads server-sent events from a response."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, wait: float = 2.0) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(wait):
            name, data = "", ""
            while True:
                line = (await self.resp.content.readline()).decode()
                if not line:
                    raise EOFError
                line = line.rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and name:
                    return name, json.loads(data)


# ------------------------------------------------------------------ headers and assets


class TestHeadersAndAssets:
    async def test_security_headers_everywhere(self, site: Site) -> None:
        async with site.browser() as http:
            for path in ("/agent/login", "/agent/static/agent.js", "/agent/events", "/agent/nope"):
                async with http.get(site.url(path), allow_redirects=False) as resp:
                    assert resp.headers["Content-Security-Policy"] == CSP, path
                    assert "default-src 'self'" in CSP and "'unsafe-inline'" not in CSP
                    assert resp.headers["X-Frame-Options"] == "DENY"
                    assert resp.headers["Referrer-Policy"] == "no-referrer"
                    assert resp.headers["X-Content-Type-Options"] == "nosniff"
            async with http.get(site.url("/agent/login")) as resp:
                assert resp.headers["Cache-Control"] == "no-store"

    async def test_other_routes_untouched(self, bench: Bench, tmp_path: Path) -> None:
        app = web.Application()

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app.router.add_get("/healthz", healthz)
        setup_web(app, bench.desk, WebConfig(str(write_agents(tmp_path / "a.yaml"))))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(str(server.make_url("/healthz"))) as resp,
            ):
                assert resp.status == 200
                assert "Content-Security-Policy" not in resp.headers
        finally:
            await server.close()

    async def test_static_with_etag(self, site: Site) -> None:
        async with site.browser() as http:
            async with http.get(site.url("/agent/static/agent.js")) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/javascript")
                etag = resp.headers["ETag"]
            async with http.get(
                site.url("/agent/static/agent.js"), headers={"If-None-Match": etag}
            ) as resp:
                assert resp.status == 304
            for name in ("agent.css", "favicon.svg"):
                async with http.get(site.url(f"/agent/static/{name}")) as resp:
                    assert resp.status == 200
            async with http.get(site.url("/agent/static/..%2Fserver.py")) as resp:
                assert resp.status == 404

    def test_no_external_assets_and_no_inline_script(self) -> None:
        root = resources.files("pbxbridge.web")
        for folder in ("static", "templates"):
            for entry in root.joinpath(folder).iterdir():
                text = entry.read_text(encoding="utf-8")
                # No CDN, no web fonts, no external anything (the SVG namespace
                # is an identifier, not a fetch).
                urls = re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text)
                urls = [u for u in urls if "www.w3.org" not in u]
                assert urls == [], (entry.name, urls)
                assert "@import" not in text and "url(" not in text, entry.name
                if entry.name.endswith(".html"):
                    for script in re.findall(r"<script[^>]*>", text):
                        assert 'type="application/json"' in script, script
                    assert not re.search(r"\son[a-z]+\s*=", text), entry.name

    def test_labels_complete_in_both_languages(self) -> None:
        assert set(LABELS["de"]) == set(LABELS["en"])
        fields = string.Formatter()
        for key in LABELS["de"]:
            de = {f for _, f, _, _ in fields.parse(LABELS["de"][key]) if f}
            en = {f for _, f, _, _ in fields.parse(LABELS["en"][key]) if f}
            assert de == en, key

    def test_package_data_lists_the_page(self) -> None:
        text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text("utf-8")
        assert '"web/static/*"' in text and '"web/templates/*"' in text


# ------------------------------------------------------------------ sign-in


class TestSignIn:
    async def test_not_signed_in(self, site: Site) -> None:
        async with site.browser() as http:
            async with http.get(site.url("/agent/"), allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "login"
            async with http.get(site.url("/agent"), allow_redirects=False) as resp:
                assert resp.status == 308 and resp.headers["Location"] == "agent/"
            for path in ("/agent/events", "/agent/state"):
                async with http.get(site.url(path)) as resp:
                    assert resp.status == 401
                    assert "bitte neu anmelden" in (await resp.json())["error"]
            async with http.post(site.url("/agent/disposition"), data={"call_id": "x"}) as resp:
                assert resp.status == 401

    async def test_success_sets_a_strict_http_only_cookie(self, site: Site) -> None:
        async with site.browser() as http:
            token = await login_form(http, site)
            async with http.post(
                site.url("/agent/login"),
                allow_redirects=False,
                data={"agent": "agent1", "password": PASSWORDS["agent1"], "csrf": token},
            ) as resp:
                assert resp.status == 303
                cookie = resp.headers.getall("Set-Cookie")
                session = next(c for c in cookie if c.startswith("pbx_session="))
                assert "HttpOnly" in session and "SameSite=Strict" in session
                assert "Path=/" in session and "Secure" not in session
            async with http.get(site.url("/agent/")) as resp:
                html = await resp.text()
                assert 'id="agent-name">agent1<' in html
                assert "Abmelden" in html
        assert site.page.sign_ins == 1

    async def test_secure_cookie_behind_tls(self, bench: Bench, tmp_path: Path) -> None:
        s = await start_site(bench, tmp_path, secure_cookies=True)
        try:
            # A client keeps Secure cookies for https only: carry them by hand here.
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
                async with http.get(s.url("/agent/login")) as resp:
                    token = hidden(await resp.text(), "csrf")
                    login = next(
                        c for c in resp.headers.getall("Set-Cookie") if c.startswith("pbx_login=")
                    )
                    assert "Secure" in login and "HttpOnly" in login
                async with http.post(
                    s.url("/agent/login"),
                    allow_redirects=False,
                    headers={"Cookie": login.split(";")[0]},
                    data={"agent": "agent1", "password": PASSWORDS["agent1"], "csrf": token},
                ) as resp:
                    assert resp.status == 303
                    cookies = resp.headers.getall("Set-Cookie")
                    session = next(c for c in cookies if c.startswith("__Host-pbx_session="))
                    assert "Secure" in session and "HttpOnly" in session
        finally:
            await s.server.close()

    @pytest.mark.parametrize("agent", ["agent1", "niemand"])
    async def test_wrong_password_refused_clearly(self, site: Site, agent: str) -> None:
        async with site.browser() as http:
            token = await login_form(http, site)
            async with http.post(
                site.url("/agent/login"),
                allow_redirects=False,
                data={"agent": agent, "password": "falsch", "csrf": token},
            ) as r:
                assert r.status == 401
                html = await r.text()
                assert "Anmeldung fehlgeschlagen: Agenten-ID oder Kennwort ist falsch." in html
                assert not any(
                    c.startswith("pbx_session=") for c in r.headers.getall("Set-Cookie", [])
                )
            async with http.get(site.url("/agent/state")) as resp:
                assert resp.status == 401

    @pytest.mark.parametrize("csrf", [None, "", "forged-token"])
    async def test_sign_in_without_valid_csrf(self, site: Site, csrf: str | None) -> None:
        async with site.browser() as http:
            await login_form(http, site)  # has the login cookie, but not the token
            data = {"agent": "agent1", "password": PASSWORDS["agent1"]}
            if csrf is not None:
                data["csrf"] = csrf
            async with http.post(
                site.url("/agent/login"), data=data, allow_redirects=False
            ) as resp:
                assert resp.status == 403
                assert "CSRF-Token fehlt oder ist ungültig" in await resp.text()
            async with http.get(site.url("/agent/state")) as resp:
                assert resp.status == 401

    async def test_lockout_after_repeated_failures(self, site: Site) -> None:
        async with site.browser() as http:
            for _ in range(5):
                token = await login_form(http, site)
                async with http.post(
                    site.url("/agent/login"),
                    data={"agent": "agent1", "password": "falsch", "csrf": token},
                ) as resp:
                    assert resp.status == 401
            token = await login_form(http, site)
            async with http.post(
                site.url("/agent/login"),
                data={"agent": "agent1", "password": PASSWORDS["agent1"], "csrf": token},
            ) as resp:
                assert resp.status == 429
                assert int(resp.headers["Retry-After"]) > 0
                assert "Zu viele Fehlversuche" in await resp.text()
            async with http.get(site.url("/agent/state")) as resp:
                assert resp.status == 401
            # Another agent from the same address is not locked out (yet).
            await sign_in(http, site, "agent2")

    async def test_english(self, site: Site) -> None:
        async with site.browser() as http:
            async with http.get(site.url("/agent/login?lang=en")) as resp:
                html = await resp.text()
                assert "Agent desk sign-in" in html and 'lang="en"' in html
            async with http.get(site.url("/agent/login")) as resp:
                assert "Agent desk sign-in" in await resp.text()  # remembered
            token = await login_form(http, site)
            async with http.post(
                site.url("/agent/login"),
                data={"agent": "agent1", "password": "wrong", "csrf": token},
            ) as resp:
                assert "Sign-in failed: wrong agent id or password." in await resp.text()

    async def test_logout(self, site: Site) -> None:
        async with site.browser() as http:
            csrf = await sign_in(http, site, "agent1")
            async with http.post(site.url("/agent/logout"), allow_redirects=False) as resp:
                assert resp.status == 403  # no CSRF token: still signed in
            async with http.get(site.url("/agent/state")) as resp:
                assert resp.status == 200
            old = {c.key: c.value for c in http.cookie_jar}["pbx_session"]
            async with http.post(
                site.url("/agent/logout"), data={"csrf": csrf}, allow_redirects=False
            ) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "login?bye=1"
            async with http.get(site.url("/agent/state")) as resp:
                assert resp.status == 401
        async with site.browser() as http:
            http.cookie_jar.update_cookies({"pbx_session": old}, site.server.make_url("/"))
            async with http.get(site.url("/agent/state")) as resp:
                assert resp.status == 401  # the old cookie was revoked

    async def test_desk_page_has_no_inline_script(self, site: Site) -> None:
        async with site.browser() as http:
            await sign_in(http, site, "agent1")
            async with http.get(site.url("/agent/")) as resp:
                html = await resp.text()
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        assert len(scripts) == 2
        for attrs, body in scripts:
            assert (
                'src="static/agent.js"' in attrs and not body
            ) or 'type="application/json"' in attrs
        labels = json.loads(next(b for a, b in scripts if "json" in a))
        assert labels["withheld"] == "unterdrückt"
        assert not re.search(r"https?://", html)


# ------------------------------------------------------------------ live pops


class TestLivePops:
    async def test_each_agent_sees_only_own_pops(self, site: Site) -> None:
        async with site.browser() as one, site.browser() as two:
            await sign_in(one, site, "agent1")
            await sign_in(two, site, "agent2")
            async with (
                one.get(site.url("/agent/events")) as r1,
                two.get(site.url("/agent/events")) as r2,
            ):
                assert r1.headers["Content-Type"] == "text/event-stream; charset=utf-8"
                assert r1.headers["Cache-Control"] == "no-store"
                s1, s2 = SseReader(r1), SseReader(r2)
                assert (await s1.next())[0] == "snapshot"
                assert (await s2.next())[0] == "snapshot"
                site.bench.ring("1.1", "agent1", name='<img src=x onerror="alert(1)">')
                name, pop = await s1.next()
                assert name == "pop" and pop["event"] == "ringing"
                assert pop["tenant"]["name"] == "Gemeinde Wardenburg"
                assert pop["caller"]["number"] == "+494411234567"
                with pytest.raises(TimeoutError):
                    await s2.next(wait=0.3)
                site.bench.answer("1.1", "agent1")
                assert (await s1.next())[1]["event"] == "answered"
            async with two.get(site.url("/agent/state")) as resp:
                assert (await resp.json())["cards"] == []
            async with one.get(site.url("/agent/state")) as resp:
                state = await resp.json()
                assert state["agent"] == "agent1"
                assert [c["state"] for c in state["cards"]] == ["answered"]

    async def test_streams_end_at_shutdown(self, bench: Bench, tmp_path: Path) -> None:
        s = await start_site(bench, tmp_path)
        async with s.browser() as http:
            await sign_in(http, s, "agent1")
            async with http.get(s.url("/agent/events")) as resp:
                reader = SseReader(resp)
                assert (await reader.next())[0] == "snapshot"
                started = asyncio.get_running_loop().time()
                await s.server.close()  # runs on_shutdown: the stream ends at once
                with pytest.raises((EOFError, aiohttp.ClientError)):
                    await reader.next(wait=5)
                assert asyncio.get_running_loop().time() - started < 3


# ------------------------------------------------------------------ wrap-up


async def post_disposition(
    http: aiohttp.ClientSession, site: Site, csrf: str | None, **fields: str
) -> tuple[int, dict[str, Any]]:
    headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
    async with http.post(site.url("/agent/disposition"), data=fields, headers=headers) as resp:
        return resp.status, await resp.json()


class TestWrapUp:
    @pytest.mark.parametrize(
        ("when", "due_text", "due"),
        [
            (local(2026, 5, 8, 16, 30), "Mo 11.05.2026 18:00", local(2026, 5, 11, 18)),
            (local(2026, 5, 13, 9, 15), "Fr 15.05.2026 18:00", local(2026, 5, 15, 18)),
            (local(2026, 12, 30, 17, 55), "Mo 04.01.2027 18:00", local(2027, 1, 4, 18)),
        ],
        ids=["friday", "before-holiday", "year-end"],
    )
    async def test_callback_due_time(self, site: Site, when: Any, due_text: str, due: Any) -> None:
        site.bench.clock.set(when)
        site.bench.answered_call("2.1")
        async with site.browser() as http:
            csrf = await sign_in(http, site, "agent1")
            status, body = await post_disposition(
                http,
                site,
                csrf,
                call_id="2.1",
                disposition="callback",
                note="Rückfrage Gewerbeanmeldung",
                callback_number="0441 98765",
            )
        assert status == 200, body
        assert body["message"] == f"Rückruf angelegt – fällig bis {due_text}."
        assert body["due_at"] == due.isoformat()
        row = site.bench.row("2.1")
        assert row.callback_due_at == due and row.callback_number == "+4944198765"
        assert row.disposition_by == "agent1"

    async def test_resolved_and_card_gone(self, site: Site) -> None:
        site.bench.answered_call("2.2")
        async with site.browser() as http:
            csrf = await sign_in(http, site, "agent1")
            status, body = await post_disposition(
                http, site, csrf, call_id="2.2", disposition="resolved", note=""
            )
            assert status == 200 and body["message"] == "Gespeichert: erledigt im Erstkontakt."
            async with http.get(site.url("/agent/state")) as resp:
                assert (await resp.json())["cards"] == []
            status, body = await post_disposition(
                http, site, csrf, call_id="2.2", disposition="resolved"
            )
            assert status == 404  # wrapped up already

    @pytest.mark.parametrize(
        ("fields", "csrf_kind", "status", "text"),
        [
            ({}, "missing", 403, "CSRF-Token fehlt oder ist ungültig"),
            ({}, "forged", 403, "CSRF-Token fehlt oder ist ungültig"),
            ({}, "other-session", 403, "CSRF-Token fehlt oder ist ungültig"),
            (
                {"note": "x" * 501},
                "ok",
                400,
                "Notiz zu lang: höchstens 500 Zeichen erlaubt (501 eingegeben)",
            ),
            ({"note": "x" * 20000}, "ok", 400, "Notiz zu lang"),
            ({"callback_number": ""}, "ok", 400, "Rückrufnummer fehlt"),
            ({"callback_number": "<script>"}, "ok", 400, "Rückrufnummer ungültig"),
            ({"disposition": "vielleicht"}, "ok", 400, "Unbekannter Abschluss"),
            ({"call_id": "9.9"}, "ok", 404, "nur eigene angenommene Anrufe"),
        ],
    )
    async def test_refused_with_message_and_nothing_changed(
        self, site: Site, fields: dict[str, str], csrf_kind: str, status: int, text: str
    ) -> None:
        site.bench.answered_call("2.3")
        async with site.browser() as http, site.browser() as other:
            csrf = await sign_in(http, site, "agent1")
            other_csrf = await sign_in(other, site, "agent1")
            token = {"missing": None, "forged": "A" * 43, "other-session": other_csrf, "ok": csrf}[
                csrf_kind
            ]
            data = {
                "call_id": "2.3",
                "disposition": "callback",
                "note": "n",
                "callback_number": "0441 1",
                **fields,
            }
            got, body = await post_disposition(http, site, token, **data)
            assert got == status and text in body["error"] and body["ok"] is False
            async with http.get(site.url("/agent/state")) as resp:
                assert len((await resp.json())["cards"]) == 1
        row = site.bench.row("2.3")
        assert row.disposition is None and row.callback_due_at is None

    async def test_another_agents_call_refused(self, site: Site) -> None:
        site.bench.answered_call("2.4", agent="agent1")
        async with site.browser() as http:
            csrf = await sign_in(http, site, "agent2")
            status, body = await post_disposition(
                http, site, csrf, call_id="2.4", disposition="resolved"
            )
        assert status == 404 and "nur eigene angenommene Anrufe" in body["error"]
        assert site.bench.row("2.4").disposition is None

    async def test_oversized_request(self, site: Site) -> None:
        site.bench.answered_call("2.5")
        async with site.browser() as http:
            csrf = await sign_in(http, site, "agent1")
            status, body = await post_disposition(
                http, site, csrf, call_id="2.5", disposition="resolved", note="x" * 70000
            )
        assert status == 413 and "Anfrage zu groß" in body["error"]
        assert site.bench.row("2.5").disposition is None

    async def test_without_journal_pops_still_work(self, tmp_path: Path, rules: Rules) -> None:
        b = Bench(tmp_path, rules, Clock(local(2026, 11, 25)), journal=False)
        s = await start_site(b, tmp_path)
        try:
            b.answered_call("2.6")
            async with s.browser() as http:
                csrf = await sign_in(http, s, "agent1")
                async with http.get(s.url("/agent/")) as resp:
                    html = await resp.text()
                    assert 'data-journal="0"' in html
                    assert "kein Anrufjournal konfiguriert" in html
                async with http.get(s.url("/agent/state")) as resp:
                    state = await resp.json()
                    assert state["journal"] is False and len(state["cards"]) == 1
                status, body = await post_disposition(
                    http, s, csrf, call_id="2.6", disposition="resolved"
                )
                assert status == 503 and "kein Anrufjournal konfiguriert" in body["error"]
                async with http.get(s.url("/agent/callbacks")) as resp:
                    assert resp.status == 503
                    assert "kein Anrufjournal konfiguriert" in await resp.text()
        finally:
            await s.server.close()
            b.close()


# ------------------------------------------------------------------ callbacks


class TestCallbacksPage:
    async def make_callbacks(self, site: Site) -> None:
        bench = site.bench
        bench.clock.set(local(2026, 5, 6, 10))
        bench.answered_call("3.1", agent="agent1")
        await bench.desk.dispose(
            "agent1",
            "3.1",
            "callback",
            '<img src=x onerror="alert(1)"> bitte zurückrufen',
            "0441 111",
        )
        bench.answered_call("3.2", agent="agent2")
        await bench.desk.dispose("agent2", "3.2", "callback", "agent2s Fall", "0441 222")
        bench.clock.set(local(2026, 5, 7, 10))
        bench.answered_call("3.3", agent="agent1", did="0441 2350")
        await bench.desk.dispose("agent1", "3.3", "callback", "", "0441 333")
        bench.clock.set(local(2026, 5, 8, 9))  # 3.1/3.2 overdue, 3.3 due today

    async def test_view(self, site: Site) -> None:
        await self.make_callbacks(site)
        async with site.browser() as http:
            await sign_in(http, site, "agent1")
            async with http.get(site.url("/agent/callbacks")) as resp:
                assert resp.status == 200
                html = await resp.text()
        overdue = html[html.index('id="overdue"') : html.index('id="due_today"')]
        today = html[html.index('id="due_today"') : html.index('id="open_later"')]
        assert "Überfällig (1)" in overdue and 'data-call-id="3.1"' in overdue
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in overdue
        assert "<img src=x" not in html
        assert "Heute fällig (1)" in today and "+49441333" in today
        assert "agent2s Fall" not in html  # another agent's callback: counted, not shown
        assert "Team Gemeinde Wardenburg: 2 offen, 0 heute fällig, 2 überfällig" in html
        assert "Team Stadt Oldenburg: 1 offen, 1 heute fällig, 0 überfällig" in html
        async with site.browser() as http:
            await sign_in(http, site, "agent1")
            async with http.get(site.url("/agent/callbacks?tenant=oldenburg")) as resp:
                html = await resp.text()
                assert 'data-call-id="3.3"' in html and 'data-call-id="3.1"' not in html
            async with http.get(site.url("/agent/callbacks?tenant=atlantis")) as resp:
                assert resp.status == 404 and "Unbekannte Behörde" in await resp.text()

    async def test_supervisor_sees_all(self, site: Site) -> None:
        await self.make_callbacks(site)
        async with site.browser() as http:
            await sign_in(http, site, "chefin")
            async with http.get(site.url("/agent/callbacks")) as resp:
                html = await resp.text()
        assert all(f'data-call-id="3.{i}"' in html for i in (1, 2, 3))
        assert "Chefin vom Dienst" in html

    async def test_mark_done(self, site: Site) -> None:
        await self.make_callbacks(site)
        async with site.browser() as http:
            await sign_in(http, site, "agent1")
            async with http.get(site.url("/agent/callbacks")) as resp:
                html = await resp.text()
            csrf = hidden(html, "csrf")
            async with http.post(
                site.url("/agent/callbacks"),
                allow_redirects=False,
                data={"csrf": csrf, "node": NODE, "call_id": "3.1", "tenant": ""},
            ) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "callbacks?done=1"
            async with http.get(site.url("/agent/callbacks?done=1")) as resp:
                html = await resp.text()
                assert "Rückruf als erledigt markiert." in html
                assert 'data-call-id="3.1"' not in html
        assert site.bench.row("3.1").callback_done_at == site.bench.clock.now

    @pytest.mark.parametrize(
        ("call_id", "csrf_kind", "status", "text"),
        [
            ("3.2", "ok", 403, "gehört einem anderen Agenten"),
            ("3.99", "ok", 404, "Rückruf nicht gefunden oder bereits erledigt"),
            ("3.1", "missing", 403, "CSRF-Token fehlt oder ist ungültig"),
            ("3.1", "forged", 403, "CSRF-Token fehlt oder ist ungültig"),
        ],
    )
    async def test_refused(
        self, site: Site, call_id: str, csrf_kind: str, status: int, text: str
    ) -> None:
        await self.make_callbacks(site)
        async with site.browser() as http:
            csrf = await sign_in(http, site, "agent1")
            data = {"node": NODE, "call_id": call_id}
            if csrf_kind != "missing":
                data["csrf"] = csrf if csrf_kind == "ok" else "B" * 43
            async with http.post(site.url("/agent/callbacks"), data=data) as resp:
                assert resp.status == status
                html = await resp.text()
                assert text in html and 'class="msg error"' in html
            async with http.post(
                site.url("/agent/callbacks"), data=data, headers={"Accept": "application/json"}
            ) as resp:
                assert resp.status == status and text in (await resp.json())["error"]
        for cid in ("3.1", "3.2", "3.3"):
            assert site.bench.row(cid).callback_done_at is None

    async def test_health(self, site: Site) -> None:
        await self.make_callbacks(site)
        await site.bench.desk.refresh_figures()
        health = site.page.health()
        assert health["agents"] == 3 and health["journal"] == "configured"
        assert site.bench.desk.figures["wardenburg"].overdue == 2
