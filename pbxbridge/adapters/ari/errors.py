"""Exceptions raised by the ARI client.

Every failure of a REST call surfaces as an :class:`AriError` (or a subclass), so
callers can write one ``except AriError`` for "Asterisk said no / is not there"
and pick out the cases that are part of normal call handling:

* :class:`AriNotFound` (HTTP 404): the channel (playback, application, ...) does
  not exist. A caller who hung up while we were routing is *normal* in a call
  centre, so routing code usually catches this and moves on.
* :class:`AriVariableNotFound` (HTTP 404 from ``GET /channels/{id}/variable``):
  the channel exists but the variable is not set. A subclass of
  :class:`AriNotFound`, so code that only cares about "nothing there" still works.
* :class:`AriConflict` (HTTP 409): the channel exists but is not (or no longer) in
  our Stasis application, e.g. it was already continued into the dialplan.
* :class:`AriUnavailable`: no usable answer from Asterisk at all (connection
  refused or reset, timeout, or a 502/503/504 from a proxy in front of it).
  ``status`` is ``None`` unless an HTTP status was received. Safe to retry later
  for idempotent operations.
"""

from __future__ import annotations

__all__ = [
    "AriConflict",
    "AriError",
    "AriNotFound",
    "AriUnavailable",
    "AriVariableNotFound",
]


class AriError(Exception):
    """An ARI REST request failed.

    Attributes:
        status: HTTP status code, or ``None`` when no HTTP response was received.
        message: Human-readable reason; ARI's own ``message`` field when present.
        method: HTTP method of the failed request.
        path: URL path of the failed request (never contains credentials; the
            query string is left out because it may carry caller data).
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        super().__init__(status, message)

    def __str__(self) -> str:
        where = f"{self.method} {self.path}".strip()
        status = "no response" if self.status is None else f"HTTP {self.status}"
        return f"{where}: {status}: {self.message}" if where else f"{status}: {self.message}"


class AriNotFound(AriError):
    """HTTP 404: the addressed resource (usually a channel) does not exist (any more)."""


class AriVariableNotFound(AriNotFound):
    """HTTP 404 from a variable read: the channel exists, the variable is not set."""


class AriConflict(AriError):
    """HTTP 409: the channel exists but is not in our Stasis application."""


class AriUnavailable(AriError):
    """Asterisk could not be reached or did not answer in time."""
