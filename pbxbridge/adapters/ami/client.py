"""Asyncio AMI client: follows app_queue for screen pops, built on panoramisk 1.4.

panoramisk does the AMI bookkeeping (action/``ActionID`` matching, multi-message
responses, event dispatch). Everything around it that panoramisk 1.4 gets wrong
for a long-running daemon is done here (see ``docs/dependencies.md``):

* **Decoding**: :class:`~.protocol.Utf8AmiProtocol` replaces panoramisk's
  protocol class (``protocol_factory``); it decodes the byte stream with an
  incremental UTF-8 decoder, so a character split across TCP packets survives.
* **Originate**: panoramisk raises ``KeyError: 'async'`` inside ``data_received``
  (and so loses the connection) when an ``Originate`` response arrives for an
  action without an ``Async`` header (gawel/panoramisk#90).
  :meth:`AmiClient.originate` always sends ``Async: true``.
* **Liveness**: panoramisk's keepalive sends ``Ping`` and never looks at the
  answer (#6), so a hung Asterisk or a silently dead TCP path (NAT/firewall state
  loss, no FIN/RST) goes unnoticed forever. We send our own ``Ping`` every
  ``ping_interval`` seconds and drop the connection when no answer arrives
  within ``ping_timeout``: a dead peer is noticed after at most
  ``ping_interval + ping_timeout`` seconds.
* **Reconnect**: panoramisk reconnects on its own at a fixed 2 s pace, forever
  and without jitter, and re-sends actions that were in flight when the
  connection dropped once the new one reports ``FullyBooted`` (a retried
  ``Originate`` would ring a phone twice). Both are disabled: this client
  reconnects with capped exponential backoff and jitter, and fails in-flight
  actions with :class:`~.errors.AmiUnavailable` instead of replaying them.

Event delivery (:meth:`AmiClient.run`):

* Events are handed to the handler in tasks; the socket reader never waits for a
  handler.
* Events with the same :func:`~.events.ordering_key` (same ``Linkedid``, i.e. the
  same call including its agent legs) are handled one at a time, in the order
  Asterisk sent them; different calls are handled concurrently.
* ``on_connected`` runs after every (re)login; events received meanwhile are
  buffered and delivered after it returns, so a handler never sees an event
  before the resync snapshot that precedes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import structlog
from panoramisk import actions as pm_actions

from pbxbridge.adapters.connection import (
    ConnectionState,
    ConnectionStatus,
    ConnectionSupervisor,
    SessionEnd,
    backoff_delay,
    describe_error,
)
from pbxbridge.adapters.dispatch import KeyedDispatcher

from . import filter as ami_filter
from .errors import AmiActionFailed, AmiError, AmiUnavailable
from .events import AmiEvent, normalize_event, ordering_key
from .manager import AttachedManager, action_name, check_header
from .protocol import Utf8AmiProtocol
from .queue import QueueSnapshot, parse_queue_status

__all__ = [
    "AmiClient",
    "AmiConfig",
    "AmiState",
    "AmiStatus",
    "ConnectedCallback",
    "EventHandler",
    "backoff_delay",
]

log = structlog.get_logger(__name__)

EventHandler = Callable[[AmiEvent], Awaitable[None]]
"""Coroutine function called once per event."""

ConnectedCallback = Callable[[], Awaitable[None]]
"""Coroutine function called after every successful (re)login, before events flow."""

ActionFields = Mapping[str, str | Sequence[str]]
"""An action's headers; a sequence value is sent as a repeated header."""

# Responses that mean "Asterisk refused the action".
_FAILED_RESPONSES: Final = frozenset({"Error", "Failure", "Fail"})
# Event name patterns: AMI event names are letters/digits/underscore; the glob
# characters * and ? are allowed. Anything else could smuggle regex syntax into
# the server-side Filter.
_EVENT_PATTERN: Final = re.compile(r"^[A-Za-z0-9_*?]+$")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class AmiConfig:
    """Connection settings for one AMI session.

    Attributes:
        host: Asterisk host.
        port: AMI port.
        username: Manager user (``manager.conf`` section).
        password: Its secret. Never shown in ``repr()`` and never logged.
        ping_interval: Seconds between liveness ``Ping`` actions.
        ping_timeout: Seconds to wait for the ``Pong``; then the connection is
            considered dead, closed, and re-established.
        connect_timeout: Seconds for the TCP connect and the login.
        action_timeout: Default seconds to wait for an action's (complete) answer.
        backoff_initial: Reconnect delay ceiling after the first failure.
        backoff_max: Cap of the reconnect delay. A connection that stayed up at
            least this long counts as healthy and resets the backoff.
        events: Event name patterns (``fnmatch`` globs, case-insensitive) to
            deliver, e.g. ``("Queue*", "Agent*", "Hangup")``. Empty: all events.
        server_side_filter: Also ask Asterisk to send only matching events (the
            narrowest event classes at login and one ``Filter`` action per event
            after it, see :mod:`.filter`; the filters need the ``system`` write
            permission). Saves bandwidth and CPU on busy systems; the
            client-side filter applies either way.
        ssl: Use TLS (AMI over TLS, usually port 5039).
    """

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = ""
    password: str = field(default="", repr=False)
    ping_interval: float = 5.0
    ping_timeout: float = 3.0
    connect_timeout: float = 5.0
    action_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    events: tuple[str, ...] = ()
    server_side_filter: bool = True
    ssl: bool = False

    def __post_init__(self) -> None:
        """Validate early, with messages that never echo the secret."""
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError("port must be within 1..65535")
        if not self.username:
            raise ValueError("username must not be empty")
        for name, value in (("username", self.username), ("password", self.password)):
            # A line break would end the header and let the rest be read as
            # further headers (or a second action) by Asterisk.
            if "\r" in value or "\n" in value:
                raise ValueError(f"{name} must not contain line breaks")
        for name in (
            "ping_interval",
            "ping_timeout",
            "connect_timeout",
            "action_timeout",
            "backoff_initial",
            "backoff_max",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        if isinstance(self.events, str):
            raise TypeError("events must be a tuple of patterns, not a str")
        for pattern in self.events:
            if not _EVENT_PATTERN.match(pattern):
                raise ValueError(f"invalid event pattern {pattern!r}")


# ---------------------------------------------------------------------- state

AmiState = ConnectionState
"""Where the AMI session is: the state every supervised connection has."""

AmiStatus = ConnectionStatus
"""A snapshot of the session's health (the shape shared with ARI and MQTT).

Its ``details`` carry ``last_ping_rtt_ms`` (round trip of the last answered
``Ping``, ``None`` before the first) and ``ami_version`` (from the banner,
``9.0.0`` on Asterisk 22; ``None`` before the first connection).
"""


# -------------------------------------------------------------------- helpers


_describe = describe_error


async def _as_coroutine(callback: ConnectedCallback) -> None:
    # create_task() needs a coroutine; the callback may return any awaitable.
    await callback()


# --------------------------------------------------------------------- client


class AmiClient:
    """One resilient AMI session: events to a handler, actions on demand.

    Example::

        async with AmiClient(config) as ami:
            task = asyncio.create_task(ami.run(handle_event, on_connected=resync))
            ...
            snapshot = await ami.queue_status("servicecenter")
    """

    def __init__(self, config: AmiConfig) -> None:
        """Create the client; nothing is opened until :meth:`run`.

        Args:
            config: Connection settings.
        """
        self._config = config
        # panoramisk's Manager binds to an event loop, so it is created inside the
        # running loop on the first connection, never here.
        self._manager: AttachedManager | None = None
        self._protocol: Utf8AmiProtocol | None = None
        self._logged_in = False
        self._lost: asyncio.Future[str] | None = None
        self._inflight: set[asyncio.Future[Any]] = set()
        self._handler: EventHandler | None = None
        self._gate_open = False
        self._held_events: list[AmiEvent] = []
        self._last_rtt_ms: float | None = None
        self._ami_version: str | None = None
        self._supervisor = ConnectionSupervisor(
            owner="AmiClient",
            log_prefix="ami.",
            log_fields={"host": config.host, "port": config.port},
            backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max,
            task_name=f"ami:{config.host}:{config.port}",
        )
        self._dispatcher: KeyedDispatcher[AmiEvent] = KeyedDispatcher(
            key=ordering_key,
            failure_event="ami.handler_failed",
            describe=lambda event: {"event_name": event.get("Event")},
        )
        self._event_filter = (
            re.compile("|".join(fnmatch.translate(p) for p in config.events), re.IGNORECASE)
            if config.events
            else None
        )

    def __repr__(self) -> str:
        return (
            f"AmiClient(host={self._config.host!r}, port={self._config.port}, "
            f"username={self._config.username!r}, state={self._supervisor.state.value!r})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------- properties

    @property
    def config(self) -> AmiConfig:
        """The configuration this client was built with."""
        return self._config

    @property
    def status(self) -> AmiStatus:
        """A snapshot of the session's state, for health endpoints."""
        return self._supervisor.status(
            last_ping_rtt_ms=self._last_rtt_ms, ami_version=self._ami_version
        )

    @property
    def connected(self) -> bool:
        """Whether the session is logged in, resynced and delivering events."""
        return self._supervisor.connected

    async def wait_connected(self) -> None:
        """Wait until the state is ``CONNECTED`` (returns at once if it is).

        Wrap it in ``asyncio.timeout()`` to wait for a bounded time.
        """
        await self._supervisor.wait_connected()

    # ---------------------------------------------------------------- actions

    async def action(
        self,
        action: ActionFields,
        *,
        # A parameter rather than asyncio.timeout() around the call: a timeout
        # here raises AmiUnavailable and removes the action from panoramisk's
        # response table.
        timeout: float | None = None,  # noqa: ASYNC109
        as_list: bool | None = None,
    ) -> AmiEvent | list[AmiEvent]:
        """Send an action and wait for its complete answer.

        Single-response actions (``Ping``, ``Getvar``, ``Command``, ...) return the
        response dict. Actions that answer with an event list (``QueueStatus``,
        ``CoreShowChannels``, ...; recognised by panoramisk from ``EventList:
        start``) return every message: the initial response first, the closing
        ``...Complete`` event last.

        Args:
            action: Headers, including ``Action``. A sequence value becomes a
                repeated header (e.g. several ``Variable``). ``ActionID`` is
                generated unless given.
            timeout: Seconds to wait (default ``config.action_timeout``).
            as_list: Force (True) or forbid (False) list handling; ``None`` lets
                panoramisk decide from the response.

        Returns:
            The response, or the list of messages.

        Raises:
            AmiUnavailable: Not logged in, the connection dropped, or no complete
                answer in time.
            AmiActionFailed: Asterisk answered ``Response: Error``.
            ValueError: A header name or value is not allowed (line breaks).
        """
        return await self._action(action, limit=timeout, as_list=as_list)

    async def ping(self) -> float:
        """Send ``Ping`` and measure the round trip (waits ``config.ping_timeout``).

        Returns:
            The round-trip time in milliseconds (also kept in :attr:`status`).

        Raises:
            AmiUnavailable: Not connected or no answer in time.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._action(
            {"Action": "Ping"},
            limit=self._config.ping_timeout,
            as_list=False,
        )
        rtt_ms = round((loop.time() - started) * 1000.0, 3)
        self._last_rtt_ms = rtt_ms
        return rtt_ms

    async def queue_status(
        self, queue: str | None = None, *, member: str | None = None
    ) -> QueueSnapshot:
        """Ask app_queue for its state (``QueueStatus``).

        Args:
            queue: Only this queue (default: all queues).
            member: Only this member interface, e.g. ``PJSIP/agent1``.

        Returns:
            The parsed snapshot (an unknown queue gives an empty one).

        Raises:
            AmiUnavailable: Not connected or no complete answer in time.
            AmiActionFailed: Asterisk refused the action.
        """
        fields: dict[str, str] = {"Action": "QueueStatus"}
        if queue:
            fields["Queue"] = queue
        if member:
            fields["Member"] = member
        answer = await self._action(fields, as_list=None)
        return parse_queue_status(answer if isinstance(answer, list) else [answer])

    async def originate(
        self,
        *,
        wait: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109  (see action())
        **fields: str,
    ) -> AmiEvent:
        """Originate a call; ``Async: true`` is always sent.

        QUIRK (panoramisk#90): without ``Async`` panoramisk's response matching
        raises ``KeyError: 'async'`` inside the protocol and the connection is
        lost. An ``Async`` given by the caller is therefore overridden.

        Args:
            wait: False: return as soon as Asterisk has queued the call; its
                ``OriginateResponse`` event later reaches the event handler.
                True: wait for the ``OriginateResponse`` and return it.
            timeout: Seconds to wait. Default: ``action_timeout``, plus the
                originate ``Timeout`` (milliseconds) when ``wait`` is True.
            **fields: Originate headers (``Channel``, ``Context``, ``Exten``,
                ``Priority``, ``Application``, ``Data``, ``CallerID``,
                ``Timeout``, ``Variable``, ...).

        Returns:
            The ``Response: Success`` answer (``wait=False``) or the
            ``OriginateResponse`` event (``wait=True``).

        Raises:
            AmiActionFailed: Refused, or (``wait=True``) the call failed
                (``Response: Failure``; see ``Reason`` in ``response``).
            AmiUnavailable: Not connected or no answer in time.
        """
        headers: dict[str, str] = {k: v for k, v in fields.items() if k.lower() != "async"}
        headers["Action"] = "Originate"
        headers["Async"] = "true"
        if timeout is None:
            timeout = self._config.action_timeout
            if wait:
                with contextlib.suppress(ValueError):
                    timeout += max(0, int(headers.get("Timeout", "30000"))) / 1000.0
        # as_list=False makes panoramisk resolve on the first response; None lets
        # its multi-response logic wait for OriginateResponse (needs Async=true).
        answer = await self._action(headers, limit=timeout, as_list=None if wait else False)
        if not wait:
            return answer[0] if isinstance(answer, list) else answer
        result = answer[-1] if isinstance(answer, list) else answer
        if result.get("Response") in _FAILED_RESPONSES:
            raise AmiActionFailed(
                "Originate", f"call failed (Reason {result.get('Reason', '?')})", result
            )
        return result

    # ---------------------------------------------------------- event stream

    async def run(
        self, handler: EventHandler, on_connected: ConnectedCallback | None = None
    ) -> None:
        """Receive events until :meth:`close` is called; reconnect forever.

        Per connection: TCP connect, ``Login`` (``Events: on``), optionally the
        server-side ``Filter``, then ``on_connected()``, then event delivery while
        the liveness ``Ping`` runs in the background. When the connection drops,
        the login is refused, or a ``Ping`` goes unanswered, wait (capped
        exponential backoff with jitter) and start over.

        Handler semantics: see the module docstring. In short: not awaited by
        the reader (tasks, strong references kept), ordered per ``Linkedid``,
        exceptions logged and otherwise ignored, unbounded concurrency across
        calls. Only events matching ``config.events`` are delivered. Events
        carrying an ``ActionID`` belong to an action (list items of a
        ``QueueStatus`` that timed out, ...) and are not delivered, except
        ``OriginateResponse`` of ``originate(wait=False)``.

        ``on_connected`` is awaited after every login; use it to resync with
        :meth:`queue_status` (AMI does not replay events missed while
        disconnected). Events received meanwhile are held back and delivered
        after it; if it raises, the error is logged, the connection is closed and
        re-established after a backoff. Handlers must be idempotent: an event may
        describe a change the snapshot already showed.

        Args:
            handler: Coroutine function called with each event dict.
            on_connected: Optional coroutine function called after each login.

        Raises:
            RuntimeError: The client is closed or ``run()`` is already active.
            asyncio.CancelledError: The task running ``run()`` was cancelled.
                Returns normally when stopped by :meth:`close`.
        """
        await self._supervisor.run(lambda: self._attempt(handler, on_connected))

    def reconnect(self, reason: str = "reconnect requested") -> None:
        """Drop the current connection; :meth:`run` logs in again after a backoff.

        For operators (e.g. after changing ``manager.conf``) and tests. In-flight
        actions fail with :class:`~.errors.AmiUnavailable`; ``on_connected``
        runs again after the new login. Does nothing while not connected.

        Args:
            reason: Recorded as ``status.last_error``.
        """
        if self._protocol is not None and not self._supervisor.closing:
            log.info("ami.reconnect_requested", reason=reason)
            self._drop_connection(reason)

    async def close(self, *, grace: float = 1.0) -> None:
        """Log off, close the connection, stop :meth:`run`, finish handlers.

        Idempotent and prompt: the connection is closed at once; handler tasks
        still running get up to ``grace`` seconds and are cancelled after that.

        Args:
            grace: Seconds to let running handler tasks finish.
        """
        self._supervisor.request_stop()
        protocol = self._protocol
        if protocol is not None and not protocol.closed and self._logged_in:
            # Best effort, not awaited: a polite Logoff keeps Asterisk's log quiet
            # ("hung up" vs. "logged off"); the socket is closed right after.
            with contextlib.suppress(Exception):
                protocol.transport.write(b"Action: Logoff\r\n\r\n")
        await self._supervisor.stop()
        self._teardown("client closed")
        await self._dispatcher.finish(grace)

    # ------------------------------------------------------------ internals

    async def _attempt(
        self, handler: EventHandler, on_connected: ConnectedCallback | None
    ) -> SessionEnd:
        """One connection of the supervisor's loop: log in, serve, say how it ended."""
        loop = asyncio.get_running_loop()
        self._handler = handler
        try:
            try:
                lost = await self._open()
            except AmiActionFailed as exc:
                # Wrong credentials or missing permissions: keep retrying at the
                # backoff pace; manager.conf may be fixed and reloaded.
                return SessionEnd(f"login refused: {exc.message or 'no message'}")
            except TimeoutError:  # before OSError: TimeoutError is an OSError
                return SessionEnd(f"no connection/login within {self._config.connect_timeout:g} s")
            except (AmiError, OSError) as exc:
                return SessionEnd(_describe(exc))
            opened_at = loop.time()
            return SessionEnd(await self._serve(lost, on_connected), opened_at=opened_at)
        finally:
            self._teardown("connection closed")

    def _manager_for(self, loop: asyncio.AbstractEventLoop) -> AttachedManager:
        if self._manager is None or self._manager.loop is not loop:
            self._manager = AttachedManager(
                on_lost=self._on_connection_lost,
                loop=loop,
                host=self._config.host,
                port=self._config.port,
                ssl=self._config.ssl,
                encoding="utf8",
                events="on",
                protocol_factory=Utf8AmiProtocol,
            )
            self._manager.register_event("*", self._on_message)
        return self._manager

    async def _open(self) -> asyncio.Future[str]:
        """Connect, log in, install the filter; return the "lost" future."""
        loop = asyncio.get_running_loop()
        manager = self._manager_for(loop)
        lost: asyncio.Future[str] = loop.create_future()
        self._lost = lost
        async with asyncio.timeout(self._config.connect_timeout):
            transport, protocol = await loop.create_connection(
                Utf8AmiProtocol,
                self._config.host,
                self._config.port,
                ssl=self._config.ssl or None,
            )
        manager.attach(transport, protocol)
        # Events that answer no action skip panoramisk (see protocol.py).
        protocol.on_event = self._on_event
        self._protocol = protocol
        # Raises AmiActionFailed on "Response: Error" (wrong secret, ACL).
        await self._action(
            {
                "Action": "Login",
                "Username": self._config.username,
                "Secret": self._config.password,
                "Events": self._login_events(),
            },
            limit=self._config.connect_timeout,
            as_list=False,
            require_login=False,
        )
        self._ami_version = protocol.version or self._ami_version
        self._logged_in = True
        await self._install_filter()
        return lost

    def _login_events(self) -> str:
        # The narrowest event classes: see filter.py for why this matters.
        if not self._config.server_side_filter:
            return "on"
        return ami_filter.login_events(self._config.events)

    async def _install_filter(self) -> None:
        # Filters are per session: every (re)login installs them again.
        if self._config.events and self._config.server_side_filter:
            await ami_filter.install(self._action, self._config.events)

    async def _serve(
        self, lost: asyncio.Future[str], on_connected: ConnectedCallback | None
    ) -> str:
        """Run one logged-in session until it is lost; return the reason."""
        pinger = asyncio.create_task(self._ping_loop(lost), name="ami-ping")
        resync: asyncio.Task[None] | None = None
        try:
            if on_connected is not None:
                self._supervisor.set_state(AmiState.RESYNCING)
                resync = asyncio.create_task(_as_coroutine(on_connected), name="ami-resync")
                waiters: list[asyncio.Future[Any]] = [resync, lost]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if not resync.done():
                    # Connection lost mid-resync: the next login resyncs again.
                    return lost.result()
                exc = resync.exception() if not resync.cancelled() else None
                if resync.cancelled() or exc is not None:
                    log.error(
                        "ami.resync_failed",
                        error=_describe(exc) if exc else "cancelled",
                        exc_info=exc,
                    )
                    return f"on_connected failed: {_describe(exc) if exc else 'cancelled'}"
            self._supervisor.set_state(AmiState.CONNECTED)
            self._open_gate()
            log.info(
                "ami.connected",
                host=self._config.host,
                port=self._config.port,
                ami_version=self._ami_version,
            )
            return await lost
        finally:
            tasks = [t for t in (pinger, resync) if t is not None and not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

    async def _ping_loop(self, lost: asyncio.Future[str]) -> None:
        interval = self._config.ping_interval
        timeout = self._config.ping_timeout
        while not lost.done():
            await asyncio.sleep(interval)
            try:
                await self.ping()
            except AmiError as exc:
                if lost.done():
                    return
                reason = f"liveness check failed: {_describe(exc)}"
                log.warning("ami.ping_failed", error=_describe(exc), timeout=timeout)
                self._drop_connection(reason)
                return

    def _drop_connection(self, reason: str) -> None:
        """Declare the current connection dead and close it hard."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
        self._fail_inflight(reason)
        protocol = self._protocol
        if protocol is not None:
            # abort(), not close(): close() first flushes the write buffer, which
            # never happens when the peer has stopped reading.
            protocol.transport.abort()

    def _on_connection_lost(self, exc: object) -> None:
        # Called by AttachedManager.connection_lost (EOF, socket error, Shutdown event).
        if isinstance(exc, Mapping):
            reason = "Asterisk shut down"
            restart = exc.get("Restart")
            if restart:
                reason += f" (restart: {restart})"
        elif isinstance(exc, BaseException):
            reason = f"connection lost: {_describe(exc)}"
        else:
            reason = "connection closed by Asterisk"
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
        # Fail waiting actions now, not at their timeout: a Login or QueueStatus
        # on a connection that just died will never be answered.
        self._fail_inflight(reason)

    def _fail_inflight(self, reason: str) -> None:
        protocol = self._protocol
        if protocol is not None:
            # Empty panoramisk's response table: its close() would otherwise queue
            # those actions for replay and log them (with their headers).
            protocol.responses.clear()
        for future in list(self._inflight):
            if not future.done():
                future.set_exception(AmiUnavailable(f"AMI connection lost ({reason})"))

    def _teardown(self, reason: str) -> None:
        """Close the current connection (if any) and fail everything waiting on it."""
        self._logged_in = False
        self._gate_open = False
        if self._held_events:
            log.debug("ami.events_discarded", count=len(self._held_events), reason=reason)
            self._held_events.clear()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
        self._fail_inflight(reason)
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            with contextlib.suppress(Exception):
                protocol.close()
            protocol.transport.abort()
        if self._manager is not None:
            self._manager.awaiting_actions.clear()

    async def _action(
        self,
        fields: ActionFields,
        *,
        limit: float | None = None,
        as_list: bool | None = None,
        require_login: bool = True,
    ) -> AmiEvent | list[AmiEvent]:
        name = action_name(fields)
        headers: dict[str, str | list[str]] = {}
        for key, value in fields.items():
            values = [value] if isinstance(value, str) else list(value)
            for item in values:
                check_header(key, item)
            headers[key] = value if isinstance(value, str) else values
        protocol = self._protocol
        manager = self._manager
        if (
            protocol is None
            or manager is None
            or protocol.closed
            or (require_login and not self._logged_in)
        ):
            raise AmiUnavailable(f"{name}: not connected to AMI")
        timeout = self._config.action_timeout if limit is None else limit
        action = pm_actions.Action(headers, as_list=as_list)
        future: asyncio.Future[Any] = manager.send_action(action, as_list=as_list)
        self._inflight.add(future)
        try:
            async with asyncio.timeout(timeout):
                result = await future
        except TimeoutError as exc:
            raise AmiUnavailable(f"{name}: no complete answer within {timeout:g} s") from exc
        finally:
            self._inflight.discard(future)
            # On timeout/cancel panoramisk would keep the entry forever.
            for key in {action.id, action.action_id}:
                if key and protocol.responses.get(key) is action:
                    del protocol.responses[key]
        if isinstance(result, list):
            messages = [normalize_event(m) for m in result]
            first = messages[0] if messages else {}
        else:
            messages = []
            first = normalize_event(result)
        if first.get("Response") in _FAILED_RESPONSES:
            raise AmiActionFailed(name, first.get("Message", ""), first)
        return messages if isinstance(result, list) else first

    # ------------------------------------------------------------- events

    def _on_message(self, _manager: Any, message: Any) -> None:
        # Events panoramisk dispatches: those carrying an ActionID, Shutdown.
        self._on_event(normalize_event(message))

    def _on_event(self, event: AmiEvent) -> None:
        # Every event from the wire, called synchronously from the protocol's
        # data_received: never block.
        name = event.get("Event", "")
        if event.get("ActionID") and name != "OriginateResponse":
            log.debug("ami.orphan_action_event", event_name=name)
            return
        if self._event_filter is not None and not self._event_filter.match(name):
            return
        if not self._gate_open:
            self._held_events.append(event)
            return
        self._dispatch(event)

    def _open_gate(self) -> None:
        self._gate_open = True
        held, self._held_events = self._held_events, []
        for event in held:
            self._dispatch(event)

    def _dispatch(self, event: AmiEvent) -> None:
        if self._handler is not None:
            self._dispatcher.dispatch(event, self._handler)
