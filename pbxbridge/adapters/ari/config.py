"""Connection settings of the ARI client."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import yarl

__all__ = ["AriConfig"]


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
