"""The agent page's routes on the daemon's aiohttp application (``/agent/...``).

========================  =====================================================
``GET  /agent/``          the desk (live pops, wrap-up); sign-in page if needed
``GET  /agent/login``     sign-in form; ``POST`` signs in
``POST /agent/logout``    signs out
``GET  /agent/events``    server-sent events: the agent's own pops only
``GET  /agent/state``     the same snapshot as JSON
``POST /agent/disposition``  wrap-up of an answered call (JSON answer)
``GET  /agent/callbacks``    open callbacks per tenant; ``?tenant=<id>``
``POST /agent/callbacks``    mark one of the agent's callbacks done
``GET  /agent/static/*``  CSS, script, icon (from the package; nothing external)
========================  =====================================================

Every POST needs the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``). Every ``/agent`` response carries a strict
Content-Security-Policy (``default-src 'self'``, no inline script), ``X-Frame-
Options: DENY``, ``Referrer-Policy: no-referrer`` and ``nosniff``; pages and
data are ``Cache-Control: no-store`` (they hold personal data). Links are
relative, so the page also works behind a reverse proxy under a path prefix.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import web

from pbxbridge.journal.store import MAX_NOTE_CHARS
from pbxbridge.web import sse, views
from pbxbridge.web.agents import AgentsFile
from pbxbridge.web.config import MIN_SESSION_SECRET_CHARS, WebConfig, client_address, networks
from pbxbridge.web.desk import AgentDesk, DeskError
from pbxbridge.web.destination import after_sign_in, checked, next_query, sign_in_location
from pbxbridge.web.i18n import format_local, label, language, script_labels
from pbxbridge.web.passwords import ScryptHash, dummy_hash, verify_password
from pbxbridge.web.render import EMPTY, Markup, join, render, script_json, tag
from pbxbridge.web.sessions import Attempt, LoginLimiter, Session, SessionManager
from pbxbridge.web.static import load_static
from pbxbridge.web.views import callback_section

log = structlog.get_logger(__name__)

PREFIX: Final = "/agent"
SESSION_COOKIE: Final = "pbx_session"
SECURE_SESSION_COOKIE: Final = "__Host-pbx_session"
LOGIN_COOKIE: Final = "pbx_login"
LANG_COOKIE: Final = "pbx_lang"
MAX_FORM_BYTES: Final = 64 * 1024
MAX_PARALLEL_VERIFY: Final = 2
"""scrypt needs 32 MiB and ~0.1 s each: bound the parallel sign-ins."""
MAX_WAITING_VERIFY: Final = 4
"""Sign-ins allowed to queue for a hashing slot; more are refused with 503
(the PBX host's CPU belongs to Asterisk's audio first)."""
BUSY_RETRY_S: Final = 5
REVOCATIONS_FILE: Final = "web-revoked.json"

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def security_headers(
    prefix: str,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """A response hook (``on_response_prepare``) for the pages under ``prefix``.

    Adds :data:`SECURITY_HEADERS` (unless a handler set its own) and, but for
    static files, ``Cache-Control: no-store``: the pages and their data hold
    personal data.

    Args:
        prefix: The pages' path (``/agent``, ``/supervisor``).

    Returns:
        The hook.
    """

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == prefix or request.path.startswith(prefix + "/"):
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            if not request.path.startswith(prefix + "/static/"):
                response.headers["Cache-Control"] = "no-store"

    return hook


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


class AgentPage:
    """The routes, bound to a desk, the agents file and a session manager.

    Args:
        desk: Pops, wrap-up and callbacks.
        agents: The agents file.
        config: Page settings.
        unix_clock: Unix time for sessions (tests inject one).
    """

    def __init__(
        self,
        desk: AgentDesk,
        agents: AgentsFile,
        config: WebConfig,
        *,
        unix_clock: Callable[[], float] = time.time,
    ) -> None:
        self.desk = desk
        self.agents = agents
        self.config = config
        self.config_error: str | None = None
        if config.session_secret and len(config.session_secret) < MIN_SESSION_SECRET_CHARS:
            self.config_error = (
                f"the session secret (credential web-session-password) has "
                f"{len(config.session_secret)} characters, at least "
                f"{MIN_SESSION_SECRET_CHARS} are needed (e.g. `head -c 32 /dev/urandom | base64`)"
            )
        secret = (
            hashlib.sha256(config.session_secret.encode("utf-8")).digest()
            if config.session_secret
            else secrets.token_bytes(32)
        )
        # Sign-outs only need to outlive a restart when sessions do.
        revocations = (
            Path(config.state_dir) / REVOCATIONS_FILE
            if config.session_secret and config.state_dir
            else None
        )
        self.sessions = SessionManager(secret, clock=unix_clock, revocations=revocations)
        self.limiter = LoginLimiter()
        self.trusted = networks(config.trusted_proxies)
        self._verify_slots = asyncio.Semaphore(MAX_PARALLEL_VERIFY)
        self._verifying = 0
        self.busy_refusals = 0
        self._dummy = dummy_hash()
        self._static = load_static()
        self.cookie_name = SECURE_SESSION_COOKIE if config.secure_cookies else SESSION_COOKIE
        self.sign_ins = 0
        self.failed_sign_ins = 0
        self.on_wrapped_up: Callable[[str], None] | None = None
        """Told the agent id after a wrap-up is recorded (the supervisor board)."""

    # -- plumbing ----------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        """Add the routes and the header hook to an application (before it starts).

        Args:
            app: The daemon's aiohttp application.
        """
        r = app.router
        app.on_response_prepare.append(security_headers(PREFIX))
        if self.config_error is not None:
            # Refuse to serve a page whose sessions could be forged by guessing
            # the key; the rest of the daemon (routing) goes on.
            r.add_route("*", PREFIX + "{tail:.*}", self._disabled)
            return
        r.add_get(PREFIX, self._to_desk)
        r.add_get(PREFIX + "/", self.desk_page)
        r.add_get(PREFIX + "/login", self.login_page)
        r.add_post(PREFIX + "/login", self.login)
        r.add_post(PREFIX + "/logout", self.logout)
        r.add_get(PREFIX + "/events", self.events)
        r.add_get(PREFIX + "/state", self.state)
        r.add_post(PREFIX + "/disposition", self.disposition)
        r.add_get(PREFIX + "/callbacks", self.callbacks_page)
        r.add_post(PREFIX + "/callbacks", self.callback_done)
        r.add_get(PREFIX + "/static/{name}", self.static)
        app.on_shutdown.append(self._on_shutdown)

    async def _disabled(self, request: web.Request) -> web.StreamResponse:
        text = label(self._lang(request), "page_disabled")
        return web.Response(text=text, status=503, headers={"Retry-After": "3600"})

    async def _on_shutdown(self, app: web.Application) -> None:
        self.desk.end_streams()

    def _lang(self, request: web.Request) -> str:
        return language(request.query.get("lang") or request.cookies.get(LANG_COOKIE))

    def _remember_lang(self, request: web.Request, response: web.StreamResponse) -> None:
        wanted = request.query.get("lang")
        if wanted and language(wanted) == wanted:
            self._cookie(response, LANG_COOKIE, wanted, max_age=365 * 86400, http_only=False)

    def _cookie(
        self,
        response: web.StreamResponse,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        http_only: bool = True,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.config.secure_cookies,
            httponly=http_only,
            samesite="Strict",
        )

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.check(request.cookies.get(self.cookie_name), self.agents.get)

    def _dummy_hash(self) -> ScryptHash:
        """A hash with the cost of the configured ones, matching no password."""
        model = next(iter(self.agents.agents().values()), None)
        if model is None:
            return self._dummy
        if (self._dummy.ln, self._dummy.r, self._dummy.p) != (
            model.password.ln,
            model.password.r,
            model.password.p,
        ):
            self._dummy = ScryptHash(
                model.password.ln,
                model.password.r,
                model.password.p,
                self._dummy.salt,
                self._dummy.key,
            )
        return self._dummy

    def _address(self, request: web.Request) -> str:
        return client_address(
            request.remote, request.headers.getall("X-Forwarded-For", []), self.trusted
        )

    def _page(
        self,
        request: web.Request,
        *,
        title: str,
        main: Markup,
        nav: Markup = EMPTY,
        head: Markup = EMPTY,
        status: int = 200,
        body_class: str = "",
    ) -> web.Response:
        lang = self._lang(request)
        body = render(
            "base.html",
            lang=lang,
            title=title,
            static="static/",
            head=head,
            nav=nav,
            main=main,
            body_class=body_class,
        )
        response = web.Response(text=body, status=status, content_type="text/html")
        self._remember_lang(request, response)
        return response

    def _nav(self, request: web.Request, session: Session, current: str) -> Markup:
        return views.nav(self._lang(request), session, current=current)

    def _json(self, data: Mapping[str, object], status: int = 200) -> web.Response:
        return web.json_response(
            data,
            status=status,
            dumps=lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":")),
        )

    def _refusal(
        self, request: web.Request, key: str, status: int, **values: object
    ) -> web.Response:
        text = label(self._lang(request), key, **values)
        return self._json({"ok": False, "error": text, "code": key}, status)

    async def _form(self, request: web.Request) -> Mapping[str, Any] | None:
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            return None
        try:
            return await request.post()
        except (ValueError, web.HTTPRequestEntityTooLarge):
            return None

    def _csrf_ok(self, request: web.Request, session: Session, form: Mapping[str, Any]) -> bool:
        token = request.headers.get("X-CSRF-Token") or _field(form, "csrf")
        return self.sessions.csrf_ok(session, token)

    # -- pages -----------------------------------------------------------------------

    async def _to_desk(self, request: web.Request) -> web.StreamResponse:
        # Relative, so that a path prefix added by a reverse proxy is kept.
        raise web.HTTPPermanentRedirect(PREFIX.lstrip("/") + "/")

    async def desk_page(self, request: web.Request) -> web.StreamResponse:
        """The desk: live pops and wrap-up."""
        session = self._session(request)
        if session is None:
            return self._redirect(request, "login")
        lang = self._lang(request)
        head = join(
            [
                tag("meta", name="csrf-token", content=session.csrf),
                tag("script", src="static/agent.js", defer=True),
            ]
        )
        main = Markup(
            render(
                "desk.html",
                journal="1" if self.desk.journal_available else "0",
                journal_missing=label(lang, "journal_missing"),
                idle=label(lang, "js_idle"),
                recent=label(lang, "js_recent"),
                labels_json=script_json(script_labels(lang)),
                agent=session.agent.id,
                max_note=MAX_NOTE_CHARS,
            )
        )
        return self._page(
            request,
            title=label(lang, "title"),
            main=main,
            nav=self._nav(request, session, "desk"),
            head=head,
            body_class="desk",
        )

    def _redirect(self, request: web.Request, where: str) -> web.Response:
        response = web.Response(status=303, headers={"Location": where})
        self._remember_lang(request, response)
        return response

    def _login_form(
        self,
        request: web.Request,
        *,
        message: str = "",
        kind: str = "error",
        status: int = 200,
        agent: str = "",
        retry_after: int | None = None,
        next_page: str | None = None,
    ) -> web.Response:
        lang = self._lang(request)
        nonce = self.sessions.new_login_nonce()
        other = "en" if lang == "de" else "de"
        # The page asked for before signing in (already checked) survives a
        # failed attempt and the language switch.
        carry = f"&{next_query(next_page)}" if next_page else ""
        main = Markup(
            render(
                "login.html",
                heading=label(lang, "sign_in_title"),
                message=tag("p", message, class_=f"msg {kind}", role="alert") if message else EMPTY,
                agent_label=label(lang, "agent_id"),
                password_label=label(lang, "password"),
                submit=label(lang, "sign_in"),
                csrf=self.sessions.login_token(nonce),
                next=tag("input", type="hidden", name="next", value=next_page)
                if next_page
                else EMPTY,
                agent=agent,
                other_lang=other,
                other_href=f"?lang={other}{carry}",
                other_label=label(lang, "lang_other"),
            )
        )
        response = self._page(
            request,
            title=label(lang, "sign_in_title"),
            main=main,
            status=status,
            body_class="login",
        )
        self._cookie(response, LOGIN_COOKIE, nonce, max_age=3600)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        """The sign-in form (``?next=`` names the page to return to afterwards)."""
        next_page = checked(request.query.get("next"))
        session = self._session(request)
        if session is not None:
            return self._redirect(
                request, after_sign_in(next_page, supervisor=session.agent.supervisor)
            )
        lang = self._lang(request)
        form = functools.partial(self._login_form, request, next_page=next_page)
        note = ""
        if request.query.get("bye"):
            note = label(lang, "signed_out")
        elif self.agents.error and not self.agents.loaded:
            return form(message=label(lang, "login_unavailable"), status=503)
        return form(message=note, kind="info")

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Check the sign-in form; set the session cookie."""
        lang = self._lang(request)
        form = await self._form(request)
        if form is None:
            return self._login_form(request, message=label(lang, "err_too_large"), status=413)
        agent_id = _field(form, "agent").strip()[:64]
        password = _field(form, "password")
        next_page = checked(_field(form, "next"))
        again = functools.partial(self._login_form, request, agent=agent_id, next_page=next_page)
        if not self.sessions.login_ok(request.cookies.get(LOGIN_COOKIE), _field(form, "csrf")):
            log.warning("web.csrf_refused", path=request.path, address=self._address(request))
            return again(message=label(lang, "csrf_failed"), status=403)
        if not agent_id or not password:
            return again(message=label(lang, "login_missing"), status=400)
        address = self._address(request)
        # Counted before any await: concurrent attempts see each other.
        attempt = self.limiter.begin(agent_id, address)
        if attempt is None:
            wait = self.limiter.retry_after(agent_id, address)
            minutes = max(1, int(wait // 60 + (1 if wait % 60 else 0)))
            log.warning("web.sign_in_locked", agent=agent_id, address=address)
            return again(
                message=label(lang, "login_locked", minutes=minutes),
                status=429,
                retry_after=int(wait) + 1,
            )
        if self._verifying >= MAX_PARALLEL_VERIFY + MAX_WAITING_VERIFY:
            self.limiter.cancel(attempt)  # not judged: not a failure
            self.busy_refusals += 1
            log.warning("web.sign_in_busy", agent=agent_id, address=address)
            return again(message=label(lang, "login_busy"), status=503, retry_after=BUSY_RETRY_S)
        return await self._verify(request, attempt, password, next_page)

    async def _verify(
        self, request: web.Request, attempt: Attempt, password: str, next_page: str | None
    ) -> web.StreamResponse:
        lang = self._lang(request)
        agent_id, address = attempt.agent, attempt.address
        agent = self.agents.get(agent_id)
        self._verifying += 1
        try:
            async with self._verify_slots:
                # Unknown ids cost the same time as known ones (no id probing).
                ok = await asyncio.to_thread(
                    verify_password, password, agent.password if agent else self._dummy_hash()
                )
        finally:
            self._verifying -= 1
        if agent is None or not ok:
            self.failed_sign_ins += 1
            log.warning("web.sign_in_failed", agent=agent_id, address=address)
            delay = self.limiter.delay(attempt)
            if delay > 0:
                await asyncio.sleep(delay)
            return self._login_form(
                request,
                message=label(lang, "login_failed"),
                status=401,
                agent=agent_id,
                next_page=next_page,
            )
        self.limiter.succeeded(attempt)
        session = self.sessions.issue(agent)
        self.sign_ins += 1
        log.info("web.signed_in", agent=agent.id, address=address)
        response = self._redirect(request, after_sign_in(next_page, supervisor=agent.supervisor))
        self._cookie(response, self.cookie_name, session.token)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """Sign out (revoke the session, drop the cookie)."""
        session = self._session(request)
        if session is None:
            return self._redirect(request, "login")
        form = await self._form(request) or {}
        if not self._csrf_ok(request, session, form):
            lang = self._lang(request)
            return self._page(
                request,
                title=label(lang, "title"),
                main=tag("p", label(lang, "csrf_failed"), class_="msg error", role="alert"),
                status=403,
            )
        self.sessions.revoke(session)
        self.desk.end_session_streams(session.nonce)
        log.info("web.signed_out", agent=session.agent.id)
        response = self._redirect(request, "login?bye=1")
        response.del_cookie(self.cookie_name, path="/")
        return response

    # -- live pops ---------------------------------------------------------------------

    async def state(self, request: web.Request) -> web.StreamResponse:
        """The agent's desk as JSON."""
        session = self._session(request)
        if session is None:
            return self._refusal(request, "not_signed_in", 401)
        return self._json({"agent": session.agent.id, **self.desk.snapshot(session.agent.id)})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``snapshot``, then ``pop`` and ``done`` as they happen."""
        session = self._session(request)
        if session is None:
            return self._refusal(request, "not_signed_in", 401)
        stream = self.desk.subscribe(session.agent.id, session.nonce)
        try:
            # Ends when signed out elsewhere, expired, agent removed, new password.
            return await sse.serve(
                request, stream.queue, allowed=lambda: self._session(request) is not None
            )
        finally:
            self.desk.unsubscribe(stream)

    # -- wrap-up -----------------------------------------------------------------------

    async def disposition(self, request: web.Request) -> web.StreamResponse:
        """Record "resolved" or "callback" for an answered call (JSON)."""
        session = self._session(request)
        if session is None:
            return self._refusal(request, "not_signed_in", 401)
        form = await self._form(request)
        if form is None:
            return self._refusal(request, "err_too_large", 413)
        if not self._csrf_ok(request, session, form):
            log.warning("web.csrf_refused", path=request.path, agent=session.agent.id)
            return self._refusal(request, "csrf_failed", 403)
        lang = self._lang(request)
        try:
            saved = await self.desk.dispose(
                session.agent.id,
                _field(form, "call_id"),
                _field(form, "disposition"),
                _field(form, "note"),
                _field(form, "callback_number"),
            )
        except DeskError as exc:
            return self._refusal(request, exc.key, exc.status, **exc.values)
        if self.on_wrapped_up is not None:
            try:
                self.on_wrapped_up(session.agent.id)
            except Exception:
                log.exception("web.wrapped_up_observer_failed", agent=session.agent.id)
        if saved.due_local is not None:
            due_text = format_local(saved.due_local, lang)
            message = label(lang, "saved_callback", due=due_text)
        else:
            due_text = None
            message = label(lang, "saved_resolved")
        return self._json(
            {
                "ok": True,
                "message": message,
                "call_id": saved.call_id,
                "disposition": saved.disposition,
                "due_at": saved.due_local.isoformat() if saved.due_local else None,
                "due_text": due_text,
            }
        )

    # -- callbacks ---------------------------------------------------------------------

    async def callbacks_page(self, request: web.Request) -> web.StreamResponse:
        """Open callbacks of a tenant (or all): overdue, due today, later."""
        session = self._session(request)
        if session is None:
            return self._redirect(
                request, sign_in_location("login", request.path, request.query_string)
            )
        message = label(self._lang(request), "done_ok") if request.query.get("done") else ""
        return await self._callbacks(request, session, message=message, kind="info")

    async def _callbacks(
        self,
        request: web.Request,
        session: Session,
        *,
        message: str = "",
        kind: str = "error",
        status: int = 200,
    ) -> web.Response:
        lang = self._lang(request)
        rules_tenants = self.desk.rules().tenants
        tenant = request.query.get("tenant") or None
        if tenant is not None and tenant not in rules_tenants:
            tenant = None
            message, kind, status = label(lang, "err_tenant_unknown"), "error", 404
        tabs = [
            tag(
                "a",
                label(lang, "all_tenants"),
                href="callbacks",
                aria_current="page" if tenant is None else None,
            )
        ]
        tabs += [
            tag(
                "a",
                spec.name,
                href=f"callbacks?tenant={tid}",
                aria_current="page" if tenant == tid else None,
            )
            for tid, spec in rules_tenants.items()
        ]
        parts: list[Markup] = [tag("nav", join(tabs), class_="tabs")]
        if message:
            parts.append(tag("p", message, class_=f"msg {kind}", role="alert"))
        if not self.desk.journal_available:
            parts.append(tag("p", label(lang, "journal_missing"), class_="msg notice"))
            if status == 200:
                status = 503
        else:
            try:
                view = await self.desk.callbacks(session.agent.id, session.agent.supervisor, tenant)
            except DeskError as exc:
                parts.append(
                    tag("p", label(lang, exc.key, **exc.values), class_="msg error", role="alert")
                )
                status = exc.status
            else:
                counts = [
                    tag(
                        "li",
                        label(
                            lang,
                            "team_counts",
                            tenant=rules_tenants[t].name if t in rules_tenants else t,
                            open=c.open,
                            today=c.due_today,
                            overdue=c.overdue,
                        ),
                        data_tenant=t,
                    )
                    for t, c in sorted(view.counts.items())
                ]
                if counts:
                    parts.append(tag("ul", join(counts), class_="team"))
                for bucket in ("overdue", "due_today", "open_later"):
                    items = [i for i in view.items if i.bucket == bucket]
                    tenants = self.desk.rules().tenants
                    parts.append(callback_section(tenants, lang, session, bucket, items, tenant))
        main = join([tag("h1", label(lang, "callbacks_title")), *parts])
        return self._page(
            request,
            title=label(lang, "callbacks_title"),
            main=main,
            nav=self._nav(request, session, "callbacks"),
            status=status,
            body_class="callbacks",
        )

    async def callback_done(self, request: web.Request) -> web.StreamResponse:
        """Mark one of the agent's open callbacks done."""
        session = self._session(request)
        wants_json = "application/json" in request.headers.get("Accept", "")
        if session is None:
            if wants_json:
                return self._refusal(request, "not_signed_in", 401)
            return self._redirect(request, "login")
        form = await self._form(request)
        if form is None:
            return await self._done_refused(request, session, "err_too_large", 413, wants_json)
        if not self._csrf_ok(request, session, form):
            log.warning("web.csrf_refused", path=request.path, agent=session.agent.id)
            return await self._done_refused(request, session, "csrf_failed", 403, wants_json)
        try:
            await self.desk.mark_done(
                session.agent.id,
                session.agent.supervisor,
                _field(form, "node"),
                _field(form, "call_id"),
            )
        except DeskError as exc:
            return await self._done_refused(request, session, exc.key, exc.status, wants_json)
        if wants_json:
            return self._json({"ok": True, "message": label(self._lang(request), "done_ok")})
        tenant = _field(form, "tenant")
        where = "callbacks?done=1"
        if tenant in self.desk.rules().tenants:
            where += f"&tenant={tenant}"
        return self._redirect(request, where)

    async def _done_refused(
        self, request: web.Request, session: Session, key: str, status: int, wants_json: bool
    ) -> web.Response:
        if wants_json:
            return self._refusal(request, key, status)
        lang = self._lang(request)
        return await self._callbacks(request, session, message=label(lang, key), status=status)

    # -- static ------------------------------------------------------------------------

    async def static(self, request: web.Request) -> web.StreamResponse:
        """A packaged asset (ETag, revalidated after five minutes)."""
        item = self._static.get(request.match_info["name"])
        if item is None:
            raise web.HTTPNotFound()
        headers = {"ETag": item.etag, "Cache-Control": "max-age=300, must-revalidate"}
        if request.headers.get("If-None-Match") == item.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=item.body, headers={**headers, "Content-Type": item.content_type})

    def health(self) -> dict[str, object]:
        """The page's part of ``/healthz``.

        Returns:
            Agents file state, sign-ins and the desk's counters; ``error``
            (only when something is wrong: ``/healthz`` then says degraded)
            names a page that cannot serve or an agents file that was refused.
        """
        out: dict[str, object] = {
            "agents_file": str(self.agents.path),
            "agents": len(self.agents.agents()),
            "agents_file_error": self.agents.error,
            "sign_ins": self.sign_ins,
            "failed_sign_ins": self.failed_sign_ins,
            "busy_refusals": self.busy_refusals,
            **self.desk.health(),
        }
        error = self.config_error or self.agents.error
        if error:
            out["error"] = error
        return out


def setup_web(
    app: web.Application,
    desk: AgentDesk,
    config: WebConfig,
    *,
    unix_clock: Callable[[], float] = time.time,
) -> AgentPage:
    """Serve the agent page from the daemon's HTTP application.

    Call before the application starts; feed the desk from CallTracker
    (``local=desk.deliver``).

    Args:
        app: The HttpServer's ``app``.
        desk: The desk (pops, wrap-up, callbacks).
        config: Page settings.
        unix_clock: Unix time for sessions (tests).

    Returns:
        The page (its :meth:`AgentPage.health` belongs in ``/healthz``).
    """
    page = AgentPage(desk, AgentsFile(config.agents_file), config, unix_clock=unix_clock)
    page.install(app)
    if page.config_error is not None:
        log.error(
            "web.disabled",
            error=page.config_error,
            hint="/agent/ answers 503 until fixed; call routing is not affected",
        )
    log.info(
        "web.enabled",
        path=PREFIX + "/",
        agents_file=config.agents_file,
        secure_cookies=config.secure_cookies,
        persistent_secret=bool(config.session_secret),
        trusted_proxies=list(config.trusted_proxies),
    )
    return page
