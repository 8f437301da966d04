"""The supervisor page's routes (``/supervisor/...``) on the agent page's sign-in.

===============================  ==================================================
``GET /supervisor/``             the live board (supervisors only; agents get 403)
``GET /supervisor/events``       server-sent events: the whole board, re-rendered
``GET /supervisor/static/*``     the agent page's static files
``GET /supervisor/wall/<token>/``        the wallboard: read-only, no personal data
``GET /supervisor/wall/<token>/events``  its server-sent events
===============================  ==================================================

Sign-in, sessions, CSRF (the sign-out form), the security headers and the
static files are the agent page's (:class:`~pbxbridge.web.server.AgentPage`):
one copy of each. Not signed in: to the agent page's sign-in form, which
returns a supervisor to the board afterwards. The wallboard needs no session:
its URL carries a secret token (credential ``wallboard-password``); a wrong or
unconfigured token is a plain 404.
"""

from __future__ import annotations

import hmac
from typing import Final

import structlog
from aiohttp import web

from pbxbridge.web import sse
from pbxbridge.web.destination import sign_in_location
from pbxbridge.web.i18n import label, script_labels
from pbxbridge.web.render import Markup, join, render, script_json, tag
from pbxbridge.web.server import AgentPage, security_headers
from pbxbridge.web.sessions import Session
from pbxbridge.web.supervisor_live import SupervisorHub
from pbxbridge.web.views import nav

log = structlog.get_logger(__name__)

PREFIX: Final = "/supervisor"
WALL: Final = PREFIX + "/wall/{token}"


class SupervisorPage:
    """The routes, bound to the agent page (sessions) and the hub (live board).

    Args:
        page: The agent page whose sign-in and sessions are used.
        hub: The live board.
    """

    def __init__(self, page: AgentPage, hub: SupervisorHub) -> None:
        self.page = page
        self.hub = hub
        self.refused = 0

    def install(self, app: web.Application) -> None:
        """Add the routes and the header hook (before the application starts).

        Args:
            app: The daemon's aiohttp application.
        """
        app.on_response_prepare.append(security_headers(PREFIX))
        r = app.router
        if self.page.config_error is not None:
            # Same refusal as the agent page: sessions could be forged.
            r.add_route("*", PREFIX + "{tail:.*}", self.page._disabled)
            return
        r.add_get(PREFIX, self._to_board)
        r.add_get(PREFIX + "/", self.board_page)
        r.add_get(PREFIX + "/events", self.events)
        r.add_get(PREFIX + "/static/{name}", self.page.static)
        r.add_get(WALL + "/", self.wall_page)
        r.add_get(WALL + "/events", self.wall_events)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, app: web.Application) -> None:
        self.hub.close()

    async def _to_board(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(PREFIX.lstrip("/") + "/")

    def _supervisor(self, request: web.Request) -> tuple[Session | None, web.Response | None]:
        """The session if it is a supervisor's, else the answer to give instead."""
        session = self.page._session(request)
        if session is None:
            # The sign-in comes back here (supervisors; agents go to the desk).
            where = sign_in_location("../agent/login", request.path, request.query_string)
            return None, self.page._redirect(request, where)
        if not session.agent.supervisor:
            self.refused += 1
            log.warning("supervisor.refused", agent=session.agent.id, path=request.path)
            lang = self.page._lang(request)
            main = tag("p", label(lang, "sv_forbidden"), class_="msg error", role="alert")
            return None, self.page._page(
                request, title=label(lang, "sv_title"), main=main, status=403
            )
        return session, None

    def _head(self, lang: str, static: str = "static/") -> Markup:
        labels = script_json({k: v for k, v in script_labels(lang).items() if k.startswith("sv_")})
        return join(
            [
                tag("link", rel="stylesheet", href=static + "supervisor.css"),
                tag("script", src=static + "supervisor.js", defer=True),
                Markup(f'<script type="application/json" id="sv-labels">{labels}</script>'),
            ]
        )

    def _nav(self, request: web.Request, session: Session) -> Markup:
        return nav(self.page._lang(request), session, current="supervisor", base="../agent/")

    def _main(self, board: str) -> Markup:
        return join(
            [
                tag(
                    "div",
                    tag("span", "", id="sv-status", class_="status", role="status"),
                    class_="statusbar",
                ),
                tag("div", Markup(board), id="board", data_events="events", aria_live="off"),
            ]
        )

    async def board_page(self, request: web.Request) -> web.StreamResponse:
        """The live board, rendered in full (then kept live by :meth:`events`)."""
        session, refusal = self._supervisor(request)
        if session is None:
            assert refusal is not None
            return refusal
        lang = self.page._lang(request)
        board = self.hub.board(lang, personal=True)
        return self.page._page(
            request,
            title=label(lang, "sv_title"),
            main=self._main(board),
            nav=self._nav(request, session),
            head=self._head(lang),
            body_class="supervisor",
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``board`` with the whole board's HTML, on every change."""
        session = self.page._session(request)
        if session is None:
            return self.page._refusal(request, "not_signed_in", 401)
        if not session.agent.supervisor:
            self.refused += 1
            return self.page._refusal(request, "sv_forbidden", 403)
        viewer = self.hub.subscribe(self.page._lang(request), True, session.nonce)

        def allowed() -> bool:
            again = self.page._session(request)
            return again is not None and again.agent.supervisor

        try:
            return await sse.serve(request, viewer.queue, allowed=allowed)
        finally:
            self.hub.unsubscribe(viewer)

    # -- wallboard ---------------------------------------------------------------------

    def _token_ok(self, request: web.Request) -> bool:
        configured = self.hub.config.wallboard_token
        given = request.match_info.get("token", "")
        return bool(configured) and hmac.compare_digest(
            given.encode("utf-8"), configured.encode("utf-8")
        )

    async def wall_page(self, request: web.Request) -> web.StreamResponse:
        """The wallboard: large type, counts only, no sign-in."""
        if not self._token_ok(request):
            raise web.HTTPNotFound()
        lang = self.page._lang(request)
        body = render(
            "base.html",
            lang=lang,
            title=label(lang, "sv_wall_title"),
            static="../../static/",
            head=self._head(lang, "../../static/"),
            nav=Markup(""),
            main=self._main(self.hub.board(lang, personal=False)),
            body_class="supervisor wallboard",
        )
        return web.Response(text=body, content_type="text/html")

    async def wall_events(self, request: web.Request) -> web.StreamResponse:
        """The wallboard's server-sent events (no personal data)."""
        if not self._token_ok(request):
            raise web.HTTPNotFound()
        viewer = self.hub.subscribe(self.page._lang(request), False)
        try:
            return await sse.serve(request, viewer.queue, allowed=lambda: self._token_ok(request))
        finally:
            self.hub.unsubscribe(viewer)

    def health(self) -> dict[str, object]:
        """The page's part of ``/healthz``."""
        return {**self.hub.health(), "refused": self.refused}


def setup_supervisor(app: web.Application, page: AgentPage, hub: SupervisorHub) -> SupervisorPage:
    """Serve the supervisor page beside the agent page (before the application starts).

    Args:
        app: The HttpServer's ``app``.
        page: The agent page (sign-in and sessions).
        hub: The live board; feed it with :meth:`SupervisorHub.changed`.

    Returns:
        The page.
    """
    supervisor = SupervisorPage(page, hub)
    supervisor.install(app)
    log.info(
        "supervisor.enabled",
        path=PREFIX + "/",
        wallboard=bool(hub.config.wallboard_token),
        target=f"{hub.config.target_percent:g}/{hub.config.threshold_s:g}",
    )
    return supervisor


__all__ = ["SupervisorPage", "setup_supervisor"]
