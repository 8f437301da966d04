"""panoramisk's Manager tamed for a long-running client, and the action-header checks.

panoramisk 1.4 reconnects on its own at a fixed pace, pings without looking at the
answer (#6) and replays in-flight actions after a reconnect (a second
``Originate``). :class:`AttachedManager` switches all three off; the AMI client
opens connections itself and hands them over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from panoramisk.manager import Manager

from .protocol import Utf8AmiProtocol

__all__ = ["AttachedManager", "action_name", "check_header"]


def check_header(key: str, value: str) -> None:
    """Refuse a header name or value that could end the action early.

    Raises:
        ValueError: The name or value is not allowed.
    """
    # Header injection guard: a caller-controlled value such as a calling name
    # containing "\r\n\r\nAction: Originate ..." would otherwise be read by
    # Asterisk as a second action.
    if not key or ":" in key or any(c in key for c in "\r\n "):
        raise ValueError(f"invalid AMI header name {key!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"value of AMI header {key!r} contains a line break")


def action_name(fields: Mapping[str, Any]) -> str:
    """The value of the ``Action`` header (any case).

    Raises:
        ValueError: There is none.
    """
    for key, value in fields.items():
        if key.lower() == "action":
            return str(value)
    raise ValueError("the action has no 'Action' header")


class AttachedManager(Manager):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's Manager with its own reconnect, keepalive and replay disabled.

    The client opens connections itself and hands them over with :meth:`attach`;
    Manager keeps doing what it is good at: sending actions, matching responses by
    ``ActionID`` and dispatching events.
    """

    def __init__(self, *, on_lost: Callable[[object], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def attach(self, transport: asyncio.BaseTransport, protocol: Utf8AmiProtocol) -> None:
        """Adopt an open connection (as if panoramisk had opened it itself).

        Args:
            transport: The connection's transport.
            protocol: Its protocol instance.
        """
        done: asyncio.Future[tuple[asyncio.BaseTransport, Utf8AmiProtocol]]
        done = self.loop.create_future()
        done.set_result((transport, protocol))
        # Manager.connection_made() wires protocol <-> manager (factory, encoding,
        # response table). No "username" in our config, so it does not log in.
        self.connection_made(done)

    def ping(self) -> None:
        """Do nothing.

        QUIRK (panoramisk#6): the built-in pinger sends ``Ping`` without ever
        checking for an answer, so it detects nothing. AmiClient runs its own.
        """

    def connection_lost(self, exc: object) -> None:
        """Report the loss to the client instead of scheduling panoramisk's reconnect.

        Args:
            exc: The exception, ``None`` for a clean EOF, or the ``Shutdown`` event.
        """
        self._connected = False
        self._on_lost(exc)

    async def send_awaiting_actions(self, *_: Any) -> None:
        """Drop, instead of replaying, actions that were in flight at a disconnect.

        QUIRK: panoramisk re-sends them after the next ``FullyBooted``; for
        ``Originate`` that means a second call. AmiClient has already failed
        their futures with AmiUnavailable; the caller decides about retrying.
        """
        self.awaiting_actions.clear()
