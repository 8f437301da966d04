"""GET /calendar/{tenant}.ics on the daemon's HTTP server: access modes, headers, content."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
from multidict import CIMultiDict

from pbxbridge.adapters.http.calendar_feed import FeedAccess, FeedSettingsError
from pbxbridge.adapters.http.server import HttpServer
from pbxbridge.config import load_rules
from pbxbridge.core.rules import Rules

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
TOKEN = "s3cret-calendar-token-0123"
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE)[0]


async def serve(rules: Rules, access: FeedAccess) -> HttpServer:
    server = HttpServer(
        "127.0.0.1", 0, lambda: (True, {}), calendar=lambda: rules, calendar_access=access
    )
    await server.start()
    return server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(
    http: aiohttp.ClientSession, server: HttpServer, path: str, **kw: Any
) -> tuple[int, Mapping[str, str], bytes]:
    async with http.get(f"http://127.0.0.1:{server.port}{path}", **kw) as resp:
        # a case-insensitive copy: HTTP header names have no case
        return resp.status, CIMultiDict(resp.headers), await resp.read()


class TestFeedRoute:
    async def test_off_by_default_answers_404(
        self, rules: Rules, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("PBXBRIDGE_CALENDAR_FEED", raising=False)
        server = HttpServer("127.0.0.1", 0, lambda: (True, {}), calendar=lambda: rules)
        await server.start()
        try:
            status, _, _ = await get(http, server, "/calendar/wardenburg.ics")
            assert status == 404
        finally:
            await server.stop()

    async def test_open_serves_a_subscribable_feed(
        self, rules: Rules, http: aiohttp.ClientSession
    ) -> None:
        server = await serve(rules, FeedAccess("open"))
        try:
            status, headers, body = await get(
                http, server, "/calendar/wardenburg.ics?from=2026-12-23&to=2026-12-25"
            )
            assert status == 200
            assert headers["Content-Type"] == "text/calendar; charset=utf-8"
            assert headers["Content-Disposition"] == 'inline; filename="wardenburg.ics"'
            assert body.startswith(b"BEGIN:VCALENDAR\r\n")
            cal = icalendar.Calendar.from_ical(body)
            events: list[Any] = list(cal.walk("VEVENT"))
            assert [(str(e["SUMMARY"]), str(e["UID"])) for e in events] == [
                ("Geöffnet", "servicecenter-20261223-open-0420@pbxbridge"),
                ("Geschlossen (jährlicher Schließtag)", "servicecenter-20261224-closed@pbxbridge"),
                ("Geschlossen: Erster Weihnachtstag", "servicecenter-20261225-closed@pbxbridge"),
            ]
            opened = events[0]
            assert opened["DTSTART"].dt == datetime(2026, 12, 23, 7, tzinfo=BERLIN)
            assert opened["DTSTART"].params["TZID"] == "Europe/Berlin"
            assert b"+49" not in body and b"1000@" not in body  # no numbers, no mailboxes

            # Same content: same ETag (DTSTAMP differs), and 304 for a client that has it.
            status2, headers2, _ = await get(
                http,
                server,
                "/calendar/wardenburg.ics?from=2026-12-23&to=2026-12-25",
                headers={"If-None-Match": headers["ETag"]},
            )
            assert (status2, headers2["ETag"]) == (304, headers["ETag"])
        finally:
            await server.stop()

    async def test_default_window_and_errors(
        self, rules: Rules, http: aiohttp.ClientSession
    ) -> None:
        server = await serve(rules, FeedAccess("open"))
        try:
            status, _, body = await get(http, server, "/calendar/friesland.ics")
            assert status == 200
            events: list[Any] = list(icalendar.Calendar.from_ical(body).walk("VEVENT"))
            days = {e["DTSTART"].dt.strftime("%Y-%m-%d") for e in events}
            assert len(days) > 200  # about a year of working days
            assert (await get(http, server, "/calendar/nope.ics"))[0] == 404
            assert (await get(http, server, "/calendar/friesland.ics?from=2026-13-01"))[0] == 400
            status, _, body = await get(
                http, server, "/calendar/friesland.ics?from=2026-01-01&to=2029-01-01"
            )
            assert (status, body) == (400, b"calendar feed: at most two years at a time\n")
        finally:
            await server.stop()

    async def test_token_mode(self, rules: Rules, http: aiohttp.ClientSession) -> None:
        server = await serve(rules, FeedAccess("token", TOKEN))
        try:
            path = "/calendar/oldenburg.ics?from=2026-12-01&to=2026-12-02"
            assert (await get(http, server, path))[0] == 403
            assert (await get(http, server, path + "&token=wrong"))[0] == 403
            assert (await get(http, server, "/calendar/nope.ics?token=wrong"))[0] == 403
            assert (await get(http, server, path + f"&token={TOKEN}"))[0] == 200
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert (await get(http, server, path, headers=bearer))[0] == 200
        finally:
            await server.stop()


class TestMisconfiguredFeed:
    async def test_a_bad_setting_turns_the_feed_off_but_the_server_runs(
        self, rules: Rules, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PBXBRIDGE_CALENDAR_FEED", "token")  # and no token anywhere
        monkeypatch.delenv("PBXBRIDGE_CALENDAR_FEED_TOKEN", raising=False)
        monkeypatch.delenv("PBXBRIDGE_CALENDAR_FEED_TOKEN_FILE", raising=False)
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
        server = HttpServer("127.0.0.1", 0, lambda: (True, {}), calendar=lambda: rules)
        await server.start()
        try:
            assert (await get(http, server, "/calendar/wardenburg.ics"))[0] == 404
            assert (await get(http, server, "/healthz"))[0] == 200
        finally:
            await server.stop()


class TestFeedAccess:
    def test_modes(self) -> None:
        assert FeedAccess.from_env({}).mode == "off"
        assert FeedAccess.from_env({"PBXBRIDGE_CALENDAR_FEED": "open"}).mode == "open"
        with pytest.raises(FeedSettingsError, match="use one of off, open, token"):
            FeedAccess.from_env({"PBXBRIDGE_CALENDAR_FEED": "public"})

    def test_token_from_a_systemd_credential_first(self, tmp_path: Path) -> None:
        (tmp_path / "calendar-feed-token").write_text(TOKEN + "\n")
        env = {
            "PBXBRIDGE_CALENDAR_FEED": "token",
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "PBXBRIDGE_CALENDAR_FEED_TOKEN": "from-the-environment-0123456",
        }
        access = FeedAccess.from_env(env)
        assert access.token == TOKEN
        assert TOKEN not in repr(access)

    def test_token_from_the_environment(self) -> None:
        env = {"PBXBRIDGE_CALENDAR_FEED": "token", "PBXBRIDGE_CALENDAR_FEED_TOKEN": TOKEN}
        assert FeedAccess.from_env(env).token == TOKEN

    def test_short_or_missing_token_is_refused_without_showing_it(self) -> None:
        env = {"PBXBRIDGE_CALENDAR_FEED": "token", "PBXBRIDGE_CALENDAR_FEED_TOKEN": "short"}
        with pytest.raises(FeedSettingsError) as info:
            FeedAccess.from_env(env)
        assert "short" not in str(info.value)
        with pytest.raises(FeedSettingsError, match="at least 16"):
            FeedAccess.from_env({"PBXBRIDGE_CALENDAR_FEED": "token"})
