"""A small typed asyncio client for the Asterisk REST Interface (ARI).

Why in-house: the published ARI libraries either do not import on Python 3, do not
reconnect, hang after the server closes the socket, or spin in a tight loop while
Asterisk restarts (see ``/work/shared/notes/dependencies.md``). This module talks
plain HTTP/WebSocket through aiohttp and uses no Swagger download at connect time.

Two halves:

* REST calls (:meth:`AriClient.answer`, :meth:`AriClient.continue_in_dialplan`, ...)
  are plain coroutines. Every failure is an :class:`~.errors.AriError`; a 404 is an
  :class:`~.errors.AriNotFound` because a caller hanging up mid-routing is normal.
  REST calls are never retried here: ``continue``/``play`` are not idempotent.
  (One exception, see "REST over the event WebSocket" below.)
* The event stream, :meth:`AriClient.run`, keeps one WebSocket to
  ``/ari/events`` open forever: it reconnects with capped exponential backoff and
  jitter, calls ``on_connected`` after every (re)connect *before* delivering that
  connection's events (ARI does not replay events missed while disconnected, so the
  application must resync), and hands each event to the handler in a task so a
  slow handler never stalls the socket.

Event delivery guarantees (see :meth:`AriClient.run` for the details):

* Events that concern the same channel reach the handler one at a time, in the
  order Asterisk sent them, also across reconnects.
* Events of different channels are handled concurrently; there is no global order.
* ``on_connected`` for a connection completes before any event received on that
  connection is handed to the handler. Handlers still running from the previous
  connection may overlap with it.

REST over the event WebSocket (:attr:`AriConfig.rest_over_websocket`):

* The two requests every routed call makes (:meth:`AriClient.set_variable` and
  :meth:`AriClient.continue_in_dialplan`) are sent as ``RESTRequest`` frames on the
  already open event socket (Asterisk 20.14/21.9/22.4 and later) instead of as HTTP
  requests: an aiohttp request/response costs the daemon several times the CPU of
  one small frame each way. Every other call stays on HTTP.
* Whether Asterisk understands the frames is probed once per connection, after
  ``on_connected``, with ``GET asterisk/ping``; until the probe has answered, and
  whenever the socket is down, the calls go over HTTP as before.
* Asterisk applies the application's event filter to ``RESTResponse`` too, so
  :meth:`AriClient.set_event_filter` always allows it.
* Results and exceptions are those of the HTTP path (same status mapping). A
  request that times out raises :class:`~.errors.AriUnavailable` and switches the
  connection back to HTTP. A request whose socket is lost before the answer is
  sent once more over HTTP: the request may never have reached Asterisk, and
  leaving the call in Stasis is worse than the alternative. For ``continue`` that
  alternative is a duplicate: when Asterisk had executed it, the HTTP retry meets a
  channel that left Stasis and gets 404/409 (:class:`~.errors.AriNotFound`,
  :class:`~.errors.AriConflict`), which callers already treat as "call gone".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, cast
from urllib.parse import quote

import aiohttp
import structlog
import yarl

from pbxbridge.adapters.connection import (
    ConnectionState,
    ConnectionStatus,
    ConnectionSupervisor,
    SessionEnd,
    backoff_delay,
    describe_error,
)
from pbxbridge.adapters.dispatch import KeyedDispatcher

from .errors import (
    AriConflict,
    AriError,
    AriNotFound,
    AriUnavailable,
    AriVariableNotFound,
)

__all__ = [
    "AriClient",
    "AriConfig",
    "AriConnectionStatus",
    "AriEvent",
    "AriState",
    "ConnectedCallback",
    "EventHandler",
    "backoff_delay",
    "ordering_key",
]

log = structlog.get_logger(__name__)

AriEvent = dict[str, Any]
"""One decoded ARI event (the JSON object Asterisk sent, unchanged)."""

EventHandler = Callable[[AriEvent], Awaitable[None]]
"""Coroutine function called once per event."""

ConnectedCallback = Callable[[], Awaitable[None]]
"""Coroutine function called after every successful (re)connect, before events flow."""

_QueryValue = str | int | bool | None
_Expect = Literal["object", "array", None]

if TYPE_CHECKING:
    _WebSocket = aiohttp.ClientWebSocketResponse[Literal[True]]

# How long to wait for the closing handshake before dropping the socket; keeps
# close() prompt when the peer is already gone.
_WS_CLOSE_TIMEOUT: Final = 1.0
# ARI events carry whole channel snapshots; 4 MiB is aiohttp's default and plenty.
_WS_MAX_MSG_SIZE: Final = 4 * 1024 * 1024
_PREVIEW_CHARS: Final = 80
_ERROR_TEXT_CHARS: Final = 200
# Event type of Asterisk's answers to RESTRequest frames (never handed to handlers).
_REST_RESPONSE: Final = "RESTResponse"


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class AriConfig:
    """Connection settings for one ARI application.

    Attributes:
        base_url: Root of Asterisk's HTTP server, without ``/ari``, e.g.
            ``http://127.0.0.1:8088``. A path prefix (reverse proxy) is kept.
            Must not contain credentials, a query or a fragment.
        username: ARI user (``ari.conf``). Must not contain ``:`` (HTTP Basic).
        password: ARI password. Never shown in ``repr()`` and never logged.
        app: Stasis application name to register on the event socket.
        subscribe_all: Ask for events of *all* channels/bridges/endpoints, not only
            those in our application (``subscribeAll=true``).
        request_timeout: Seconds a REST call, or the WebSocket handshake, may take.
        backoff_initial: First reconnect delay ceiling in seconds.
        backoff_max: Reconnect delay cap in seconds. Also the time a connection
            must stay up to count as healthy (which resets the backoff).
        heartbeat: Seconds between WebSocket pings; a peer that does not answer
            within half of that is treated as dead. ``None`` disables pings.
        rest_over_websocket: Send ``set_variable`` and ``continue_in_dialplan`` as
            ``RESTRequest`` frames on the event socket when Asterisk supports it
            (probed per connection); ``False`` keeps every call on HTTP.
    """

    base_url: str
    username: str
    password: str = field(repr=False)
    app: str
    subscribe_all: bool = False
    request_timeout: float = 5.0
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    heartbeat: float | None = 20.0
    rest_over_websocket: bool = True

    def __post_init__(self) -> None:
        """Validate the settings early, with messages that never echo secrets."""
        try:
            url = yarl.URL(self.base_url)
        except (TypeError, ValueError) as exc:
            raise ValueError("base_url is not a valid URL") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http:// or https:// URL")
        if url.user is not None or url.password is not None:
            raise ValueError("base_url must not contain credentials; use username/password")
        if url.query_string or url.fragment:
            raise ValueError("base_url must not contain a query or fragment")
        if not self.username or ":" in self.username:
            raise ValueError("username must be non-empty and must not contain ':'")
        # ARI's /events takes a comma-separated *list* of applications: a comma in
        # the name would silently register several apps on one socket.
        if not self.app or "," in self.app:
            raise ValueError("app must be non-empty and must not contain ','")
        for name in ("request_timeout", "backoff_initial", "backoff_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        if self.heartbeat is not None and not (
            math.isfinite(self.heartbeat) and self.heartbeat > 0
        ):
            raise ValueError("heartbeat must be a positive number or None")


# ---------------------------------------------------------------------- state

AriState = ConnectionState
"""Where the event connection is: the state every supervised connection has."""

AriConnectionStatus = ConnectionStatus
"""A snapshot of the event connection's health (the shape shared with AMI and MQTT)."""


# -------------------------------------------------------------------- helpers


def ordering_key(event: Mapping[str, Any]) -> str | None:
    """Return the key under which an event must stay ordered, if any.

    Events with the same key are handled one after another, in arrival order.

    * Events about a channel (``channel.id``; ``peer.id`` for ``Dial``) are keyed
      by that channel id.
    * Playback and recording events are keyed by the channel they target
      (``target_uri`` ``channel:<id>``), so "PlaybackFinished" cannot overtake the
      channel's "StasisEnd" handling, or the other way round.
    * Bridge-only events are keyed by ``bridge:<id>``.
    * Everything else (e.g. ``ApplicationReplaced``, endpoint/device state) is
      unordered and gets ``None``.

    Args:
        event: A decoded ARI event.

    Returns:
        The ordering key or ``None``.
    """
    for name in ("channel", "peer"):
        obj = event.get(name)
        if isinstance(obj, Mapping) and isinstance(obj.get("id"), str):
            return str(obj["id"])
    for name in ("playback", "recording"):
        obj = event.get(name)
        if isinstance(obj, Mapping):
            target = obj.get("target_uri")
            if isinstance(target, str) and target.startswith("channel:"):
                return target.removeprefix("channel:")
            if isinstance(target, str) and target.startswith("bridge:"):
                return target
    bridge = event.get("bridge")
    if isinstance(bridge, Mapping) and isinstance(bridge.get("id"), str):
        return f"bridge:{bridge['id']}"
    return None


def _reject_nul(value: str, what: str) -> None:
    # Asterisk is C: a %00 would silently truncate the value on its side.
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")


def _path_segment(value: str, what: str) -> str:
    """Percent-encode one path segment (an id supplied by a caller).

    Asterisk's HTTP server percent-decodes the *whole* path before ARI splits it
    on ``/`` and routes it, so an encoded ``%2F`` still becomes a separator on the
    server: ``hangup("abc/ring")`` would turn into "stop ringing on channel abc".
    Ids that cannot be addressed unambiguously are therefore refused here. Dot
    segments are refused too because proxies normalise them away.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if value in ("", ".", "..") or "/" in value:
        raise ValueError(f"{what} {value!r} cannot be used as an ARI path segment")
    _reject_nul(value, what)
    # safe="" encodes everything except unreserved characters; notably "+" is
    # encoded too, because Asterisk decodes "+" as a space (legacy form decoding).
    return quote(value, safe="")


def _query_string(params: Mapping[str, _QueryValue]) -> str:
    parts: list[str] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            raise TypeError(f"query parameter {key!r} must be str, int or bool")
        _reject_nul(text, f"query parameter {key!r}")
        parts.append(f"{quote(key, safe='')}={quote(text, safe='')}")
    return "&".join(parts)


_describe = describe_error


def _error_message(status: int, body: bytes) -> str:
    """Extract ARI's ``{"message": ...}`` or a short text from an error body."""
    with contextlib.suppress(ValueError, RecursionError):
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return str(data["message"])
    text = body.decode("utf-8", errors="replace").strip()
    if text:
        return text[:_ERROR_TEXT_CHARS]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def _error_for_status(
    status: int, body: bytes, *, method: str, path: str, variable_read: bool
) -> AriError:
    message = _error_message(status, body)
    cls: type[AriError]
    if status == HTTPStatus.NOT_FOUND:
        # GET .../variable answers 404 both for an unknown channel ("Provided
        # channel was not found") and for an unset variable ("Provided variable
        # was not found"); only the message tells them apart. If Asterisk ever
        # rewords it we degrade to plain AriNotFound, which callers handle anyway.
        cls = (
            AriVariableNotFound if variable_read and "variable" in message.lower() else AriNotFound
        )
    elif status == HTTPStatus.CONFLICT:
        # ARI's find_control(): the channel exists but is not in a Stasis app
        # (e.g. it was already sent back with /continue), as opposed to 404 where
        # no such channel exists at all.
        cls = AriConflict
    elif status in (
        HTTPStatus.BAD_GATEWAY,
        HTTPStatus.SERVICE_UNAVAILABLE,
        HTTPStatus.GATEWAY_TIMEOUT,
    ):
        # Only proxies in front of Asterisk say this; it means "not reachable".
        cls = AriUnavailable
    else:
        cls = AriError
    return cls(status, message, method=method, path=path)


class _WsLost(Exception):
    """The event socket went away before Asterisk answered a RESTRequest."""


class _WsRest:
    """REST-over-WebSocket state of one event connection.

    Attributes:
        ws: The event socket.
        pending: Futures of the requests sent and not yet answered, by request id;
            each resolves to ``(status_code, message_body)``.
        usable: Set once Asterisk answered the probe; cleared when a request
            times out (the connection then stays on HTTP).
        closed: Set when the socket's reader has ended; no request may wait on
            it any more.
    """

    __slots__ = ("closed", "pending", "usable", "ws")

    def __init__(self, ws: _WebSocket) -> None:
        self.ws = ws
        self.pending: dict[str, asyncio.Future[tuple[int, bytes]]] = {}
        self.usable = False
        self.closed = False

    def fail_all(self) -> None:
        """Mark the socket as gone and fail every request still waiting on it."""
        self.closed = True
        self.usable = False
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(_WsLost())


# --------------------------------------------------------------------- client


class AriClient:
    """Asyncio client for one ARI application: REST calls plus a resilient event loop.

    Use it as an async context manager; it then owns (creates and closes) its
    aiohttp session unless one is passed in. A passed-in session is never closed
    by the client and must not carry its own ``auth``.

    Example::

        async with AriClient(config) as ari:
            await ari.run(handle_event, on_connected=resync)   # until ari.close()
    """

    def __init__(self, config: AriConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        self._config = config
        self._session = session
        self._owns_session = session is None
        base = yarl.URL(config.base_url)
        self._ari_path = f"{base.raw_path.rstrip('/')}/ari"
        self._ari_root = f"{base.origin()}{self._ari_path}"
        # Basic auth header rather than ?api_key=user:pass: query strings end up
        # in access logs and exception texts, headers do not. ARI accepts both,
        # also on the WebSocket upgrade request.
        # (Built by hand: aiohttp.BasicAuth is deprecated in newer aiohttp and its
        # namedtuple repr would show the password in tracebacks with locals.)
        credentials = f"{config.username}:{config.password}".encode()
        self._headers: Final = {
            "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
            "Accept": "application/json",
        }
        self._closed = False
        self._supervisor = ConnectionSupervisor(
            owner="AriClient",
            log_prefix="ari.events_",
            log_fields={"app": config.app},
            backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max,
            task_name=f"ari-events:{config.app}",
        )
        self._dispatcher: KeyedDispatcher[AriEvent] = KeyedDispatcher(
            key=ordering_key,
            failure_event="ari.handler_failed",
            describe=lambda event: {"event_type": event.get("type")},
        )
        # The current connection's REST-over-WebSocket state, once the probe
        # succeeded; None means "use HTTP".
        self._ws_rest: _WsRest | None = None
        self._request_ids = itertools.count(1)

    def __repr__(self) -> str:
        return (
            f"AriClient(base_url={self._config.base_url!r}, app={self._config.app!r}, "
            f"state={self._supervisor.state.value!r})"
        )

    async def __aenter__(self) -> Self:
        self._http()
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
    def config(self) -> AriConfig:
        """The configuration this client was built with."""
        return self._config

    @property
    def status(self) -> ConnectionStatus:
        """A snapshot of the event connection's state, for health endpoints."""
        return self._supervisor.status()

    @property
    def connected(self) -> bool:
        """Whether the event socket is up, resynced, and delivering events."""
        return self._supervisor.connected

    @property
    def rest_over_websocket_active(self) -> bool:
        """Whether hot-path REST calls currently go over the event WebSocket."""
        rest = self._ws_rest
        return rest is not None and rest.usable and not rest.closed

    async def wait_connected(self) -> None:
        """Wait until the event connection is in state ``CONNECTED``.

        Returns at once if already connected; never returns once the client is
        closed. Wrap it in ``asyncio.timeout()`` when waiting for a bounded time,
        e.g. before reporting readiness to systemd.
        """
        await self._supervisor.wait_connected()

    # ----------------------------------------------------------- REST calls

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str,
        extension: str,
        priority: int = 1,
        label: str | None = None,
    ) -> None:
        """Let a channel leave Stasis and continue in the dialplan.

        ``POST /channels/{channelId}/continue``. Asterisk answers 204 at once; the
        channel leaves asynchronously and a ``StasisEnd`` event follows. Asterisk
        does not check that the target exists: a wrong context/extension makes
        the channel fall off the dialplan (and hang up) after the 204.

        Args:
            channel_id: Channel id (``channel.id`` of the events).
            context: Dialplan context to continue in.
            extension: Extension to continue at.
            priority: Priority to continue at (ignored when ``label`` is given).
            label: Priority label; ARI lets it supersede ``priority``, so only the
                label is sent when given.

        Raises:
            AriNotFound: The channel no longer exists (caller hung up).
            AriConflict: The channel exists but has already left our Stasis app
                (e.g. a second ``continue`` for the same channel).
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error.
        """
        params: dict[str, _QueryValue] = {"context": context, "extension": extension}
        if label is not None:
            params["label"] = label
        else:
            params["priority"] = priority
        await self._request("POST", ("channels", channel_id, "continue"), params, via_ws=True)

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        """Set a channel variable or dialplan function.

        ``POST /channels/{channelId}/variable?variable=...&value=...``.

        Args:
            channel_id: Channel id.
            name: Variable name, or a function such as ``CALLERID(name)``.
            value: Value to set (any string; it is percent-encoded).

        Raises:
            AriNotFound: The channel no longer exists.
            AriConflict: The channel is not in our Stasis app.
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error (e.g. 400 for an empty name).
        """
        await self._request(
            "POST",
            ("channels", channel_id, "variable"),
            {"variable": name, "value": value},
            via_ws=True,
        )

    async def get_variable(self, channel_id: str, name: str) -> str:
        """Read a channel variable or dialplan function.

        ``GET /channels/{channelId}/variable?variable=...``.

        Args:
            channel_id: Channel id.
            name: Variable name, or a function such as ``CALLERID(num)``.

        Returns:
            The value (``""`` for a variable that is set but empty).

        Raises:
            AriVariableNotFound: The channel exists but the variable is not set
                (a subclass of AriNotFound; catch it first to use a default).
            AriNotFound: The channel no longer exists.
            AriConflict: The channel is not in our Stasis app.
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error (500 when a function cannot be read).
        """
        segments = ("channels", channel_id, "variable")
        data = await self._request_object("GET", segments, {"variable": name})
        value = data.get("value")
        if not isinstance(value, str):
            path = self._url(segments, {}).raw_path
            raise AriError(200, "variable response has no string 'value'", method="GET", path=path)
        return value

    async def answer(self, channel_id: str) -> None:
        """Answer a channel (``POST /channels/{channelId}/answer``).

        Args:
            channel_id: Channel id.

        Raises:
            AriNotFound: The channel no longer exists.
            AriConflict: The channel is not in our Stasis app.
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error.
        """
        await self._request("POST", ("channels", channel_id, "answer"))

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing to a channel (``POST /channels/{channelId}/ring``).

        Args:
            channel_id: Channel id.

        Raises:
            AriNotFound: The channel no longer exists.
            AriConflict: The channel is not in our Stasis app.
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error.
        """
        await self._request("POST", ("channels", channel_id, "ring"))

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        """Hang up a channel (``DELETE /channels/{channelId}?reason=...``).

        Works for any channel, not only channels in our Stasis app.

        Args:
            channel_id: Channel id.
            reason: ARI hangup reason, e.g. ``normal``, ``busy``, ``congestion``,
                ``no_answer``, ``rejected``.

        Raises:
            AriNotFound: The channel is already gone (usually fine to ignore).
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error (400 for an unknown reason).
        """
        await self._request("DELETE", ("channels", channel_id), {"reason": reason})

    async def play(
        self,
        channel_id: str,
        media: str,
        playback_id: str | None = None,
        *,
        lang: str | None = None,
    ) -> dict[str, Any]:
        """Start playing media to a channel (``POST /channels/{channelId}/play``).

        Args:
            channel_id: Channel id.
            media: Media URI, e.g. ``sound:custom/closed``. ARI treats a comma as
                a separator of several URIs played one after another.
            playback_id: Id for the new playback (lets the caller correlate
                ``PlaybackFinished`` without a race); Asterisk picks one if omitted.
            lang: Language for ``sound:`` URIs, e.g. ``de``.

        Returns:
            ARI's Playback object (``id``, ``state``, ``target_uri``, ...).

        Raises:
            AriNotFound: The channel no longer exists.
            AriConflict: The channel is not in our Stasis app.
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error.
        """
        params: dict[str, _QueryValue] = {"media": media, "playbackId": playback_id, "lang": lang}
        return await self._request_object("POST", ("channels", channel_id, "play"), params)

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback (``DELETE /playbacks/{playbackId}``).

        Args:
            playback_id: Playback id.

        Raises:
            AriNotFound: The playback has already finished (usually fine).
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error.
        """
        await self._request("DELETE", ("playbacks", playback_id))

    async def get_channel(self, channel_id: str) -> dict[str, Any]:
        """Fetch a channel snapshot (``GET /channels/{channelId}``).

        Args:
            channel_id: Channel id.

        Returns:
            ARI's Channel object.

        Raises:
            AriNotFound: The channel no longer exists.
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error.
        """
        return await self._request_object("GET", ("channels", channel_id))

    async def list_channels(self) -> list[dict[str, Any]]:
        """List all channels known to Asterisk (``GET /channels``).

        Returns:
            ARI Channel objects (all channels, not only those in our app).

        Raises:
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any HTTP error.
        """
        data = await self._request("GET", ("channels",), expect="array")
        return cast(list[dict[str, Any]], data)

    async def get_application(self) -> dict[str, Any]:
        """Fetch our Stasis application (``GET /applications/{app}``).

        ``channel_ids`` lists the channels currently in the application; after a
        reconnect this is how to find calls that arrived (or were left hanging)
        while the event socket was down.

        Returns:
            ARI's Application object (``name``, ``channel_ids``, ``bridge_ids``, ...).

        Raises:
            AriNotFound: The application is not registered (no event socket open).
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error.
        """
        return await self._request_object("GET", ("applications", self._config.app))

    async def set_event_filter(self, allowed: Sequence[str]) -> None:
        """Ask Asterisk to send this application only these event types.

        Every event costs the daemon a websocket frame and a JSON decode; a
        routed call otherwise brings variable, dialplan and caller-ID events the
        router never reads. (``PUT /applications/{app}/eventFilter``, Asterisk 16.7+.)

        With :attr:`AriConfig.rest_over_websocket`, ``RESTResponse`` is always
        allowed as well: Asterisk filters its answers to WebSocket requests like
        events, and a filter without it would make every such request time out.

        Args:
            allowed: Event type names, e.g. ``["StasisStart", "StasisEnd"]``.

        Raises:
            AriError: If Asterisk refused the filter (older versions: 404/405).
        """
        names = list(allowed)
        if self._config.rest_over_websocket and _REST_RESPONSE not in names:
            names.append(_REST_RESPONSE)
        await self._request(
            "PUT",
            ("applications", self._config.app, "eventFilter"),
            body={"allowed": [{"type": name} for name in names], "disallowed": []},
        )

    # ---------------------------------------------------------- event stream

    async def run(
        self, handler: EventHandler, on_connected: ConnectedCallback | None = None
    ) -> None:
        """Receive events until :meth:`close` is called; reconnect forever.

        For every connection: open ``/ari/events?app=<app>&subscribeAll=<bool>``,
        await ``on_connected()`` (events arriving meanwhile are buffered, not lost),
        then hand every event to ``handler``. When the socket closes, the peer
        stops answering pings, or Asterisk is down, wait (capped exponential
        backoff with jitter) and connect again. A connection that closes within
        ``backoff_max`` seconds does not reset the backoff, so a server that
        accepts and immediately drops us is not hammered either.

        Handler semantics:

        * The handler is **not** awaited by the reader: each event is handed to a
          task (the client keeps strong references). A slow handler therefore
          never delays reading, which matters because Asterisk drops a WebSocket
          whose writes block.
        * Events with the same :func:`ordering_key` (same channel) are handled
          strictly one after another in arrival order; different channels run
          concurrently. Concurrency is not bounded.
        * An exception in the handler is logged and otherwise ignored.
        * Frames that are not JSON objects are logged and skipped.
        * Events received during ``on_connected`` are delivered after it, so the
          handler may see ``StasisStart`` for a channel the resync already
          handled: handlers must be idempotent.

        ``on_connected`` semantics: awaited after every successful (re)connect.
        Use it to resync (``get_application()['channel_ids']``, ``list_channels()``)
        because ARI does not replay events missed while disconnected. If it raises,
        the error is logged, the socket is closed and the client reconnects after
        a backoff, so state is never left un-synced while events flow.

        ``ApplicationReplaced`` (another client registered the same app name; this
        socket gets no further events) is delivered to the handler, logged as an
        error, and answered by reconnecting after the maximum backoff.

        Args:
            handler: Coroutine function called with each event dict.
            on_connected: Optional coroutine function called after each connect.

        Raises:
            RuntimeError: If the client is closed or ``run()`` is already active.
            asyncio.CancelledError: If the task running ``run()`` is cancelled.
                Returns normally when stopped by :meth:`close`.
        """
        await self._supervisor.run(lambda: self._attempt(handler, on_connected))

    async def close(self, *, grace: float = 1.0) -> None:
        """Stop the event loop, finish or cancel handlers, release the session.

        Idempotent. The WebSocket is closed at once (no new events are delivered);
        handler tasks still running get up to ``grace`` seconds to finish (they may
        still use the REST methods meanwhile) and are cancelled after that.

        Args:
            grace: Seconds to let running handler tasks finish before cancelling.
        """
        await self._supervisor.stop()
        await self._dispatcher.finish(grace)
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._closed = True

    # ------------------------------------------------------------ internals

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("AriClient is closed")
        if self._session is None:
            # Created lazily so the client can be constructed outside a running loop.
            self._session = aiohttp.ClientSession()
        return self._session

    def _relative_uri(
        self, segments: tuple[str, ...], params: Mapping[str, _QueryValue]
    ) -> tuple[str, str]:
        """Percent-encoded path below ``/ari`` (no leading ``/``) and query string."""
        names = ("resource", "id", "sub-resource")
        path = "/".join(
            _path_segment(seg, names[min(i, len(names) - 1)]) for i, seg in enumerate(segments)
        )
        return path, _query_string(params)

    def _url(self, segments: tuple[str, ...], params: Mapping[str, _QueryValue]) -> yarl.URL:
        path, query = self._relative_uri(segments, params)
        text = f"{self._ari_root}/{path}" + (f"?{query}" if query else "")
        # encoded=True: we did the percent-encoding ourselves and want exactly
        # these bytes on the wire, no re-quoting or normalisation by yarl.
        return yarl.URL(text, encoded=True)

    async def _request(
        self,
        method: str,
        segments: tuple[str, ...],
        params: Mapping[str, _QueryValue] | None = None,
        *,
        expect: _Expect = None,
        body: Any = None,
        via_ws: bool = False,
    ) -> Any:
        params = params or {}
        rest = self._ws_rest if via_ws and body is None else None
        if rest is not None and rest.usable and not rest.closed:
            relative, query = self._relative_uri(segments, params)
            uri = f"{relative}?{query}" if query else relative
            # The same path as on HTTP, for identical error texts and logs.
            path = f"{self._ari_path}/{relative}"
            try:
                status, data = await self._ws_request(rest, method, uri, path)
            except _WsLost:
                # The socket went away with the request in flight: it may never
                # have reached Asterisk, so send it once more over HTTP (see the
                # module docstring for why this is acceptable for "continue").
                log.warning("ari.ws_request_lost", method=method, path=path, retry="http")
            else:
                return self._response_data(method, segments, path, status, data, expect)
        status, data, path = await self._http_request(method, segments, params, body)
        return self._response_data(method, segments, path, status, data, expect)

    async def _ws_request(
        self, rest: _WsRest, method: str, uri: str, path: str
    ) -> tuple[int, bytes]:
        """Send one RESTRequest frame and wait for its RESTResponse.

        Returns:
            Status code and ``message_body`` (as bytes, ``b""`` when absent).

        Raises:
            _WsLost: The socket closed before the answer arrived (or before sending).
            AriUnavailable: No answer within the request timeout.
        """
        if rest.closed:
            raise _WsLost
        request_id = str(next(self._request_ids))
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        rest.pending[request_id] = future
        timeout = self._config.request_timeout
        frame = json.dumps(
            {"type": "RESTRequest", "request_id": request_id, "method": method, "uri": uri}
        )
        try:
            try:
                await rest.ws.send_str(frame)
            except (aiohttp.ClientError, OSError, RuntimeError) as exc:
                # aiohttp raises ClientConnectionResetError (an OSError too) when
                # the transport is closing: nothing reached Asterisk.
                raise _WsLost from exc
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError as exc:
                # Asterisk handles a socket's requests one after another; if one
                # hangs, the next would too. Stay on HTTP for this connection.
                rest.usable = False
                log.warning("ari.rest_over_websocket_disabled", reason="timeout", path=path)
                raise AriUnavailable(
                    None, f"no answer within {timeout:g} s (websocket)", method=method, path=path
                ) from exc
        finally:
            rest.pending.pop(request_id, None)

    async def _http_request(
        self,
        method: str,
        segments: tuple[str, ...],
        params: Mapping[str, _QueryValue],
        body: Any,
    ) -> tuple[int, bytes, str]:
        url = self._url(segments, params)
        path = url.raw_path
        timeout = self._config.request_timeout
        session = self._http()
        try:
            async with session.request(
                method,
                url,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,  # never replay credentials elsewhere
                json=body,
            ) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError as exc:
            raise AriUnavailable(
                None, f"no answer within {timeout:g} s", method=method, path=path
            ) from exc
        except aiohttp.ClientError as exc:
            raise AriUnavailable(None, _describe(exc), method=method, path=path) from exc
        return status, raw, path

    def _response_data(
        self,
        method: str,
        segments: tuple[str, ...],
        path: str,
        status: int,
        body: bytes,
        expect: _Expect,
    ) -> Any:
        """Map one answer (HTTP or RESTResponse) to data or the matching AriError."""
        log.debug("ari.request", method=method, path=path, status=status)
        if status >= HTTPStatus.MULTIPLE_CHOICES:
            variable_read = method == "GET" and segments[-1] == "variable"
            raise _error_for_status(
                status, body, method=method, path=path, variable_read=variable_read
            )
        if status == HTTPStatus.NO_CONTENT or not body.strip():
            data: Any = None
        else:
            try:
                data = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise AriError(
                    status, "response is not valid JSON", method=method, path=path
                ) from exc
        if expect == "object":
            valid = isinstance(data, dict)
        elif expect == "array":
            valid = isinstance(data, list) and all(isinstance(item, dict) for item in data)
        else:
            valid = True
        if not valid:
            raise AriError(
                status,
                f"expected a JSON {expect} in the response, got {type(data).__name__}",
                method=method,
                path=path,
            )
        return data

    async def _request_object(
        self,
        method: str,
        segments: tuple[str, ...],
        params: Mapping[str, _QueryValue] | None = None,
    ) -> dict[str, Any]:
        data = await self._request(method, segments, params, expect="object")
        return cast(dict[str, Any], data)

    async def _attempt(
        self, handler: EventHandler, on_connected: ConnectedCallback | None
    ) -> SessionEnd:
        """One connection of the supervisor's loop: open, serve, say how it ended."""
        try:
            ws = await self._connect()
        except aiohttp.WSServerHandshakeError as exc:
            # e.g. 401 (wrong credentials) or 400 (bad app name): keep retrying at
            # the backoff pace; ari.conf may be fixed and reloaded without
            # restarting us.
            return SessionEnd(f"handshake rejected: HTTP {exc.status} {exc.message}")
        except TimeoutError:  # before OSError: TimeoutError is an OSError
            return SessionEnd(f"no handshake within {self._config.request_timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return SessionEnd(_describe(exc))
        return await self._serve(ws, handler, on_connected)

    async def _connect(self) -> _WebSocket:
        url = self._url(
            ("events",),
            {"app": self._config.app, "subscribeAll": self._config.subscribe_all},
        )
        log.debug("ari.events_connecting", app=self._config.app, url=str(url))
        async with asyncio.timeout(self._config.request_timeout):
            return await self._http().ws_connect(
                url,
                headers=self._headers,
                heartbeat=self._config.heartbeat,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_WS_CLOSE_TIMEOUT),
                max_msg_size=_WS_MAX_MSG_SIZE,
            )

    async def _serve(
        self,
        ws: _WebSocket,
        handler: EventHandler,
        on_connected: ConnectedCallback | None,
    ) -> SessionEnd:
        loop = asyncio.get_running_loop()
        opened_at = loop.time()
        inbox: asyncio.Queue[AriEvent | None] = asyncio.Queue()
        close_reason: list[str] = []
        rest = _WsRest(ws)
        probe: asyncio.Task[None] | None = None
        # The reader runs from the first moment on, also while on_connected is
        # resyncing: it keeps the socket drained (Asterisk gives up on a client
        # whose socket stops accepting writes), answers pings, and buffers events
        # in order until we are ready to deliver them.
        reader = asyncio.create_task(
            self._read_frames(ws, inbox, close_reason, rest), name="ari-events-reader"
        )
        try:
            if on_connected is not None:
                self._supervisor.set_state(AriState.RESYNCING)
                try:
                    await on_connected()
                except Exception as exc:
                    log.exception("ari.resync_failed", app=self._config.app)
                    # Never healthy, however long the resync took.
                    return SessionEnd(f"on_connected failed: {_describe(exc)}")
            self._supervisor.set_state(AriState.CONNECTED)
            log.info(
                "ari.events_connected",
                app=self._config.app,
                subscribe_all=self._config.subscribe_all,
            )
            if self._config.rest_over_websocket:
                # After on_connected: it installs the event filter, which must let
                # RESTResponse through. Not awaited: events flow meanwhile and REST
                # calls use HTTP until the probe has answered.
                probe = asyncio.create_task(self._probe_rest(rest), name="ari-rest-probe")
            while (event := await inbox.get()) is not None:
                self._dispatcher.dispatch(event, handler)
                if event.get("type") == "ApplicationReplaced":
                    # Asterisk allows one socket per app; the newer one wins and we
                    # silently stop receiving events. Staying "connected" would be a
                    # lie for the health check, so reconnect (and take the app back)
                    # at the slowest pace: two instances sharing an app name is a
                    # misconfiguration that must stay visible, not flap quickly.
                    log.error("ari.application_replaced", app=self._config.app)
                    return SessionEnd(
                        "application replaced by another WebSocket",
                        opened_at=opened_at,
                        replaced=True,
                    )
        finally:
            # New requests go over HTTP from here on; those in flight are failed
            # (and retried over HTTP) by fail_all.
            if self._ws_rest is rest:
                self._ws_rest = None
            rest.fail_all()
            reader.cancel()
            tasks = [reader] if probe is None else [reader, probe]
            if probe is not None:
                probe.cancel()
            try:
                await asyncio.wait(tasks)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_WS_CLOSE_TIMEOUT):
                        await ws.close()
        reason = close_reason[0] if close_reason else "socket closed"
        return SessionEnd(reason, opened_at=opened_at)

    async def _probe_rest(self, rest: _WsRest) -> None:
        """Find out whether Asterisk answers RESTRequest frames on this socket."""
        try:
            status, _ = await self._ws_request(
                rest, "GET", "asterisk/ping", f"{self._ari_path}/asterisk/ping"
            )
        except _WsLost:
            return
        except AriUnavailable:
            # Asterisk before 20.14/21.9/22.4 ignores the frame; or an event
            # filter set elsewhere drops RESTResponse. Either way: HTTP.
            log.info("ari.rest_over_websocket", enabled=False, reason="no answer to the probe")
            return
        if status != HTTPStatus.OK:
            log.info("ari.rest_over_websocket", enabled=False, reason=f"probe got {status}")
            return
        if not rest.closed:
            rest.usable = True
            self._ws_rest = rest
            log.info("ari.rest_over_websocket", enabled=True)

    def _resolve_rest(self, rest: _WsRest, message: AriEvent) -> None:
        """Hand a RESTResponse to the request waiting for it."""
        request_id = message.get("request_id")
        future = rest.pending.pop(request_id, None) if isinstance(request_id, str) else None
        if future is None or future.done():
            # Its request timed out (or was cancelled) meanwhile.
            log.debug("ari.rest_response_unmatched", request_id=request_id)
            return
        status = message.get("status_code")
        if not isinstance(status, int) or isinstance(status, bool):
            future.set_exception(
                AriError(None, "RESTResponse without a status_code", path=str(message.get("uri")))
            )
            return
        body = message.get("message_body")
        future.set_result((status, body.encode() if isinstance(body, str) else b""))

    async def _read_frames(
        self,
        ws: _WebSocket,
        inbox: asyncio.Queue[AriEvent | None],
        close_reason: list[str],
        rest: _WsRest,
    ) -> None:
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    event = self._decode_event(msg.data)
                    if event is None:
                        continue
                    if event.get("type") == _REST_RESPONSE:
                        # Answers to our own requests are not events: they never
                        # reach the handler (also not unmatched ones).
                        self._resolve_rest(rest, event)
                    else:
                        inbox.put_nowait(event)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    log.warning("ari.event_skipped", reason="binary frame", size=len(msg.data))
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    # Includes the heartbeat: "No PONG received after ... seconds".
                    close_reason.append(f"socket error: {_describe(ws.exception() or msg.data)}")
                    return
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    close_reason.append(f"closed by peer (code {ws.close_code})")
                    return
        except Exception as exc:
            log.exception("ari.events_reader_failed", app=self._config.app)
            close_reason.append(f"reader failed: {_describe(exc)}")
        finally:
            # Nothing will answer the requests in flight any more.
            rest.fail_all()
            inbox.put_nowait(None)

    def _decode_event(self, data: str) -> AriEvent | None:
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            log.warning(
                "ari.event_skipped",
                reason="not JSON",
                size=len(data),
                preview=data[:_PREVIEW_CHARS],
            )
            return None
        if not isinstance(value, dict):
            log.warning("ari.event_skipped", reason="not a JSON object", size=len(data))
            return None
        return value
