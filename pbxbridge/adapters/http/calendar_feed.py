"""``GET /calendar/{tenant}.ics``: a tenant's opening hours as a subscribable iCalendar feed.

Off unless ``PBXBRIDGE_CALENDAR_FEED`` says otherwise:

- ``off`` (default): the route answers 404, like any unknown path;
- ``open``: anyone who reaches the endpoint gets the feed (it holds no personal
  data, but tells when the office is staffed: put it behind the reverse proxy
  you choose);
- ``token``: the subscription URL carries ``?token=...`` (calendar programs
  cannot send headers; ``Authorization: Bearer`` works too). The token comes
  from the systemd credential ``calendar-feed-token``, the file named in
  ``PBXBRIDGE_CALENDAR_FEED_TOKEN_FILE`` or ``PBXBRIDGE_CALENDAR_FEED_TOKEN``,
  never from the routing YAML, which operators edit and pass around.

The feed covers a month back to about a year ahead of today (``?from=`` and
``?to=``, ``YYYY-MM-DD``, narrow or move it, two years at most) and is made
from the rules in force at request time, so a reload shows at the next refresh.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

import structlog
from aiohttp import web

from pbxbridge.config.feed import CONTENT_TYPE, FeedError, build_feed, default_window
from pbxbridge.core.rules import Rules
from pbxbridge.runtime.settings import SettingsError, read_credential

log = structlog.get_logger(__name__)

FEED_ENV = "PBXBRIDGE_CALENDAR_FEED"
MODES = ("off", "open", "token")
MIN_TOKEN_LENGTH = 16


class FeedSettingsError(ValueError):
    """``PBXBRIDGE_CALENDAR_FEED`` or its token is unusable (the message never shows the token)."""


@dataclass(frozen=True, slots=True)
class FeedAccess:
    """Who may read the feed.

    Attributes:
        mode: ``off``, ``open`` or ``token``.
        token: The token (``token`` mode only).
    """

    mode: str = "off"
    token: str = ""

    def __repr__(self) -> str:  # never show the token in a log or traceback
        return f"FeedAccess(mode={self.mode!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FeedAccess:
        """Read the access mode and the token from the environment and systemd credentials.

        Args:
            env: The environment (default ``os.environ``).

        Returns:
            The access settings.

        Raises:
            FeedSettingsError: On an unknown mode, or token mode without a usable token.
        """
        env = os.environ if env is None else env
        mode = env.get(FEED_ENV, "off").strip().lower() or "off"
        if mode not in MODES:
            raise FeedSettingsError(f"{FEED_ENV}={mode!r}: use one of {', '.join(MODES)}")
        if mode != "token":
            return cls(mode)
        token = _read_token(env)
        if len(token) < MIN_TOKEN_LENGTH:
            raise FeedSettingsError(
                f"{FEED_ENV}=token needs a token of at least {MIN_TOKEN_LENGTH} characters "
                "(credential calendar-feed-token, PBXBRIDGE_CALENDAR_FEED_TOKEN_FILE or "
                "PBXBRIDGE_CALENDAR_FEED_TOKEN)"
            )
        return cls(mode, token)

    def allows(self, request: web.Request) -> bool:
        """Whether a request may read the feed."""
        if self.mode == "open":
            return True
        if self.mode != "token":
            return False
        given = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())


def _read_token(env: Mapping[str, str]) -> str:
    try:
        return read_credential(
            env, credential="calendar-feed-token", variable="PBXBRIDGE_CALENDAR_FEED_TOKEN"
        )
    except SettingsError as exc:
        raise FeedSettingsError(str(exc)) from None


def mount_calendar_feed(
    app: web.Application,
    rules: Callable[[], Rules],
    access: FeedAccess,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Add ``GET /calendar/{tenant}.ics`` to an application (before it starts).

    Args:
        app: The daemon's HTTP application.
        rules: Returns the rules in force (read at each request).
        access: Who may read it.
        clock: The current instant (tests fix it).
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        if not access.allows(request):
            # off: as if there were no such route; token: refused, without a hint
            # whether the tenant exists.
            if access.mode == "off":
                raise web.HTTPNotFound()
            raise web.HTTPForbidden(text="calendar feed: token missing or wrong\n")
        current = rules()
        name = request.match_info["tenant"]
        now = clock()
        first, last = default_window(now.astimezone(current.timezone).date())
        try:
            first = _day(request, "from", first)
            last = _day(request, "to", last)
            body = build_feed(current, name, first, last, stamp=now)
        except FeedError as exc:
            status = web.HTTPNotFound if "unknown" in str(exc) else web.HTTPBadRequest
            raise status(text=f"calendar feed: {exc}\n") from None
        etag = '"' + hashlib.sha256(_without_stamps(body)).hexdigest()[:32] + '"'
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Content-Disposition": f'inline; filename="{name}.ics"',
            "Cache-Control": "private, max-age=900",
            "ETag": etag,
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        log.info("calendar_feed.served", tenant=name, bytes=len(body))
        return web.Response(body=body, headers=headers)

    app.router.add_get("/calendar/{tenant}.ics", handler)


def _day(request: web.Request, key: str, default: date) -> date:
    text = request.query.get(key)
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FeedError(f"{key}={text[:20]!r}: expected YYYY-MM-DD") from None


def _without_stamps(body: bytes) -> bytes:
    """The feed less its DTSTAMP lines: same content, same ETag, on every request."""
    return b"\r\n".join(line for line in body.split(b"\r\n") if not line.startswith(b"DTSTAMP"))
