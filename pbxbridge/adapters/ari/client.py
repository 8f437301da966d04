"""A small typed asyncio client for the Asterisk REST Interface (ARI).

Why in-house: the published ARI libraries either do not import on Python 3, do not
reconnect, hang after the server closes the socket, or spin in a tight loop while
Asterisk restarts (see ``docs/dependencies.md``). This module talks
plain HTTP/WebSocket through aiohttp and uses no Swagger download at connect time.

Two halves:

* REST calls (:meth:`AriClient.answer`, :meth:`AriClient.continue_in_dialplan`, ...)
  are plain coroutines. Every failure is an :class:`~.errors.AriError`; a 404 is an
  :class:`~.errors.AriNotFound` because a caller hanging up mid-routing is normal.
  REST calls are never retried here: ``continue``/``play`` are not idempotent.
  (One exception: see "REST over the event WebSocket" below.)
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

REST over the event WebSocket (:attr:`AriConfig.rest_over_websocket`): the two
requests every routed call makes travel as ``RESTRequest`` frames on the event
socket when Asterisk supports it; see :mod:`.transport` for how and why.

Where things are: :mod:`.config` (settings), :mod:`.transport` (URL encoding, HTTP
and WebSocket requests, errors), :mod:`pbxbridge.adapters.connection` (reconnect
loop, backoff, status) and :mod:`pbxbridge.adapters.dispatch` (ordered delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, cast

import aiohttp
import structlog

from pbxbridge.adapters.connection import (
    ConnectionState,
    ConnectionStatus,
    ConnectionSupervisor,
    SessionEnd,
    backoff_delay,
    describe_error,
)
from pbxbridge.adapters.dispatch import KeyedDispatcher

from .config import AriConfig
from .errors import AriError
from .transport import REST_RESPONSE, AriTransport, QueryValue, WsRest

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

if TYPE_CHECKING:
    _WebSocket = aiohttp.ClientWebSocketResponse[Literal[True]]

# How long to wait for the closing handshake before dropping the socket; keeps
# close() prompt when the peer is already gone.
_WS_CLOSE_TIMEOUT: Final = 1.0
# ARI events carry whole channel snapshots; 4 MiB is aiohttp's default and plenty.
_WS_MAX_MSG_SIZE: Final = 4 * 1024 * 1024
_PREVIEW_CHARS: Final = 80


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


_describe = describe_error


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
        self._transport = AriTransport(config, session)
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

    def __repr__(self) -> str:
        return (
            f"AriClient(base_url={self._config.base_url!r}, app={self._config.app!r}, "
            f"state={self._supervisor.state.value!r})"
        )

    async def __aenter__(self) -> Self:
        self._transport.http()
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
        return self._transport.rest_over_websocket_active

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
        params: dict[str, QueryValue] = {"context": context, "extension": extension}
        if label is not None:
            params["label"] = label
        else:
            params["priority"] = priority
        await self._transport.request(
            "POST", ("channels", channel_id, "continue"), params, via_ws=True
        )

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
        await self._transport.request(
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
        data = await self._transport.request_object("GET", segments, {"variable": name})
        value = data.get("value")
        if not isinstance(value, str):
            path = self._transport.url(segments, {}).raw_path
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
        await self._transport.request("POST", ("channels", channel_id, "answer"))

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
        await self._transport.request("POST", ("channels", channel_id, "ring"))

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
        await self._transport.request("DELETE", ("channels", channel_id), {"reason": reason})

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
        params: dict[str, QueryValue] = {"media": media, "playbackId": playback_id, "lang": lang}
        return await self._transport.request_object(
            "POST", ("channels", channel_id, "play"), params
        )

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback (``DELETE /playbacks/{playbackId}``).

        Args:
            playback_id: Playback id.

        Raises:
            AriNotFound: The playback has already finished (usually fine).
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any other HTTP error.
        """
        await self._transport.request("DELETE", ("playbacks", playback_id))

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
        return await self._transport.request_object("GET", ("channels", channel_id))

    async def list_channels(self) -> list[dict[str, Any]]:
        """List all channels known to Asterisk (``GET /channels``).

        Returns:
            ARI Channel objects (all channels, not only those in our app).

        Raises:
            AriUnavailable: Asterisk could not be reached in time.
            AriError: Any HTTP error.
        """
        data = await self._transport.request("GET", ("channels",), expect="array")
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
        return await self._transport.request_object("GET", ("applications", self._config.app))

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
        if self._config.rest_over_websocket and REST_RESPONSE not in names:
            names.append(REST_RESPONSE)
        await self._transport.request(
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
        await self._transport.close()

    # ------------------------------------------------------------ internals

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
        url = self._transport.url(
            ("events",),
            {"app": self._config.app, "subscribeAll": self._config.subscribe_all},
        )
        log.debug("ari.events_connecting", app=self._config.app, url=str(url))
        async with asyncio.timeout(self._config.request_timeout):
            return await self._transport.http().ws_connect(
                url,
                headers=self._transport.headers,
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
        rest = WsRest(ws)
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
                probe = asyncio.create_task(self._transport.probe(rest), name="ari-rest-probe")
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
            if self._transport.ws_rest is rest:
                self._transport.ws_rest = None
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

    async def _read_frames(
        self,
        ws: _WebSocket,
        inbox: asyncio.Queue[AriEvent | None],
        close_reason: list[str],
        rest: WsRest,
    ) -> None:
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    event = self._decode_event(msg.data)
                    if event is None:
                        continue
                    if event.get("type") == REST_RESPONSE:
                        # Answers to our own requests are not events: they never
                        # reach the handler (also not unmatched ones).
                        self._transport.resolve(rest, event)
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
