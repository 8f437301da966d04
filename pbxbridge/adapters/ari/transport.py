"""How the ARI client's REST calls reach Asterisk: over HTTP, or on the event socket.

Percent-encoding of ids and query values, the mapping of status codes to
:class:`~.errors.AriError` subclasses, and the two ways a request travels.

REST over the event WebSocket (:attr:`~.config.AriConfig.rest_over_websocket`):

* The two requests every routed call makes (``set_variable`` and
  ``continue_in_dialplan``) are sent as ``RESTRequest`` frames on the already open
  event socket (Asterisk 20.14/21.9/22.4 and later) instead of as HTTP requests: an
  aiohttp request/response costs the daemon several times the CPU of one small
  frame each way. Every other call stays on HTTP.
* Whether Asterisk understands the frames is probed once per connection, after
  ``on_connected``, with ``GET asterisk/ping``; until the probe has answered, and
  whenever the socket is down, the calls go over HTTP as before.
* Asterisk applies the application's event filter to ``RESTResponse`` too, so
  ``AriClient.set_event_filter`` always allows it.
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
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, Literal, cast
from urllib.parse import quote

import aiohttp
import structlog
import yarl

from pbxbridge.adapters.connection import describe_error

from .config import AriConfig
from .errors import (
    AriConflict,
    AriError,
    AriNotFound,
    AriUnavailable,
    AriVariableNotFound,
)

__all__ = ["REST_RESPONSE", "AriTransport", "QueryValue", "WsLost", "WsRest"]

log = structlog.get_logger(__name__)

QueryValue = str | int | bool | None
"""A query parameter's value (``None``: leave the parameter out)."""
_QueryValue = QueryValue
_Expect = Literal["object", "array", None]

if TYPE_CHECKING:
    _WebSocket = aiohttp.ClientWebSocketResponse[Literal[True]]

_ERROR_TEXT_CHARS: Final = 200
REST_RESPONSE: Final = "RESTResponse"
"""Event type of Asterisk's answers to RESTRequest frames (never handed to handlers)."""

_describe = describe_error


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


class WsLost(Exception):
    """The event socket went away before Asterisk answered a RESTRequest."""


class WsRest:
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
                future.set_exception(WsLost())


# ------------------------------------------------------------------ transport


class AriTransport:
    """One client's way to Asterisk: the HTTP session, credentials and the socket path.

    Owns (creates lazily and closes) its aiohttp session unless one is passed in.

    Args:
        config: The client's settings.
        session: A session to use instead of an own one (never closed here; it
            must not carry its own ``auth``).
    """

    def __init__(self, config: AriConfig, session: aiohttp.ClientSession | None) -> None:
        self._config = config
        self._session = session
        self._owns_session = session is None
        self._closed = False
        base = yarl.URL(config.base_url)
        self.ari_path: Final = f"{base.raw_path.rstrip('/')}/ari"
        self._ari_root = f"{base.origin()}{self.ari_path}"
        # Basic auth header rather than ?api_key=user:pass: query strings end up
        # in access logs and exception texts, headers do not. ARI accepts both,
        # also on the WebSocket upgrade request.
        # (Built by hand: aiohttp.BasicAuth is deprecated in newer aiohttp and its
        # namedtuple repr would show the password in tracebacks with locals.)
        credentials = f"{config.username}:{config.password}".encode()
        self.headers: Final = {
            "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
            "Accept": "application/json",
        }
        # The current connection's REST-over-WebSocket state, once the probe
        # succeeded; None means "use HTTP".
        self.ws_rest: WsRest | None = None
        self._request_ids = itertools.count(1)

    @property
    def rest_over_websocket_active(self) -> bool:
        """Whether hot-path REST calls currently go over the event WebSocket."""
        rest = self.ws_rest
        return rest is not None and rest.usable and not rest.closed

    async def close(self) -> None:
        """Close an own session; no request may be made afterwards."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._closed = True

    def http(self) -> aiohttp.ClientSession:
        """The aiohttp session, created on first use (inside the running loop)."""
        if self._closed:
            raise RuntimeError("AriClient is closed")
        if self._session is None:
            # Created lazily so the client can be constructed outside a running loop.
            self._session = aiohttp.ClientSession()
        return self._session

    def relative_uri(
        self, segments: tuple[str, ...], params: Mapping[str, _QueryValue]
    ) -> tuple[str, str]:
        """Percent-encoded path below ``/ari`` (no leading ``/``) and query string."""
        names = ("resource", "id", "sub-resource")
        path = "/".join(
            _path_segment(seg, names[min(i, len(names) - 1)]) for i, seg in enumerate(segments)
        )
        return path, _query_string(params)

    def url(self, segments: tuple[str, ...], params: Mapping[str, _QueryValue]) -> yarl.URL:
        """The full, percent-encoded URL of an ARI resource."""
        path, query = self.relative_uri(segments, params)
        text = f"{self._ari_root}/{path}" + (f"?{query}" if query else "")
        # encoded=True: we did the percent-encoding ourselves and want exactly
        # these bytes on the wire, no re-quoting or normalisation by yarl.
        return yarl.URL(text, encoded=True)

    async def request(
        self,
        method: str,
        segments: tuple[str, ...],
        params: Mapping[str, _QueryValue] | None = None,
        *,
        expect: _Expect = None,
        body: Any = None,
        via_ws: bool = False,
    ) -> Any:
        """Send one request (on the event socket with ``via_ws`` when it can) and map the answer.

        Raises:
            AriError: The matching subclass for the status, or AriUnavailable.
        """
        params = params or {}
        rest = self.ws_rest if via_ws and body is None else None
        if rest is not None and rest.usable and not rest.closed:
            relative, query = self.relative_uri(segments, params)
            uri = f"{relative}?{query}" if query else relative
            # The same path as on HTTP, for identical error texts and logs.
            path = f"{self.ari_path}/{relative}"
            try:
                status, data = await self.ws_request(rest, method, uri, path)
            except WsLost:
                # The socket went away with the request in flight: it may never
                # have reached Asterisk, so send it once more over HTTP (see the
                # module docstring for why this is acceptable for "continue").
                log.warning("ari.ws_request_lost", method=method, path=path, retry="http")
            else:
                return self.response_data(method, segments, path, status, data, expect)
        status, data, path = await self.http_request(method, segments, params, body)
        return self.response_data(method, segments, path, status, data, expect)

    async def ws_request(self, rest: WsRest, method: str, uri: str, path: str) -> tuple[int, bytes]:
        """Send one RESTRequest frame and wait for its RESTResponse.

        Returns:
            Status code and ``message_body`` (as bytes, ``b""`` when absent).

        Raises:
            WsLost: The socket closed before the answer arrived (or before sending).
            AriUnavailable: No answer within the request timeout.
        """
        if rest.closed:
            raise WsLost
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
                raise WsLost from exc
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

    async def http_request(
        self,
        method: str,
        segments: tuple[str, ...],
        params: Mapping[str, _QueryValue],
        body: Any,
    ) -> tuple[int, bytes, str]:
        """Send one request over HTTP; return status, body and the request path."""
        url = self.url(segments, params)
        path = url.raw_path
        timeout = self._config.request_timeout
        session = self.http()
        try:
            async with session.request(
                method,
                url,
                headers=self.headers,
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

    def response_data(
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

    async def request_object(
        self,
        method: str,
        segments: tuple[str, ...],
        params: Mapping[str, _QueryValue] | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`request`, for calls that answer with one JSON object."""
        data = await self.request(method, segments, params, expect="object")
        return cast(dict[str, Any], data)

    async def probe(self, rest: WsRest) -> None:
        """Find out whether Asterisk answers RESTRequest frames on this socket."""
        try:
            status, _ = await self.ws_request(
                rest, "GET", "asterisk/ping", f"{self.ari_path}/asterisk/ping"
            )
        except WsLost:
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
            self.ws_rest = rest
            log.info("ari.rest_over_websocket", enabled=True)

    def resolve(self, rest: WsRest, message: Mapping[str, Any]) -> None:
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
