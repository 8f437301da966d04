"""Loopback HTTP: ``/healthz`` (JSON) for monitoring and the operator.

Also ``/metrics`` (Prometheus) and, when the composition root passes the rules,
``/calendar/{tenant}.ics`` (see :mod:`pbxbridge.adapters.http.calendar_feed`;
off unless ``PBXBRIDGE_CALENDAR_FEED`` turns it on).

Bound to 127.0.0.1 by default: it tells connection states and rule errors,
which is nobody else's business; put a reverse proxy in front for more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from pbxbridge.adapters.http.calendar_feed import (
    FeedAccess,
    FeedSettingsError,
    mount_calendar_feed,
)
from pbxbridge.core.rules import Rules

log = structlog.get_logger(__name__)

HealthSource = Callable[[], tuple[bool, dict[str, object]]]
MetricsSource = Callable[[], bytes]


class HttpServer:
    """The daemon's HTTP endpoint.

    Args:
        host: Bind address.
        port: Port (0 picks a free one; see :attr:`port` after start).
        health: Returns ``(healthy, body)`` for ``/healthz``: HTTP 200 when
            healthy, else 503; a ``status`` in the body is kept.
        metrics: Returns the Prometheus exposition for ``/metrics``.
        calendar: Returns the rules in force, for ``/calendar/{tenant}.ics``.
        calendar_access: Who may read the feed (default: from the environment,
            :meth:`FeedAccess.from_env`; a bad setting turns the feed off with an
            error in the log: a calendar feed never keeps calls from being routed).
    """

    def __init__(
        self,
        host: str,
        port: int,
        health: HealthSource,
        metrics: MetricsSource | None = None,
        *,
        calendar: Callable[[], Rules] | None = None,
        calendar_access: FeedAccess | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._health = health
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        if metrics is not None:
            self.app.router.add_get("/metrics", self._metrics_handler)
        if calendar is not None:
            mount_calendar_feed(self.app, calendar, calendar_access or _feed_access())

    async def start(self) -> None:
        """Start listening."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            # The only way to learn an ephemeral port is the site's server.
            server: Any = site._server
            self.port = int(server.sockets[0].getsockname()[1])
        log.info("http.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, body = self._health()
        # The source's own verdict (ok/degraded/down, see Daemon.health) wins;
        # a source that gives none is ok or down by its flag.
        body = {"status": "ok" if healthy else "down", **body}
        return web.json_response(body, status=200 if healthy else 503)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        return web.Response(
            body=self._metrics(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )


def _feed_access() -> FeedAccess:
    try:
        return FeedAccess.from_env()
    except FeedSettingsError as exc:
        log.error("calendar_feed.disabled", error=str(exc))  # the message never holds the token
        return FeedAccess("off")
