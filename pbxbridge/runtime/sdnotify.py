"""Minimal, dependency-free implementation of the systemd notification protocol.

pbxbridge runs as a ``Type=notify`` service (``systemd/pbxbridge.service``). This
module tells the service manager when the daemon is ready, reloading or stopping,
publishes a one-line status for ``systemctl status`` and feeds the watchdog.

The protocol (see ``sd_notify(3)``) is a single ``AF_UNIX``/``SOCK_DGRAM`` datagram
of newline-separated ``KEY=VALUE`` assignments sent to the socket named by
``$NOTIFY_SOCKET``. A path starting with ``@`` names a socket in the Linux abstract
namespace. We do not use the ``sdnotify`` package: it swallows every error silently
and encodes as latin-1, so a UTF-8 status text could not be sent at all.

Typical use in the daemon::

    notifier = SystemdNotifier()
    ...  # connect to ARI, load routing table
    notifier.ready("routing 12 tenants")
    watchdog = asyncio.create_task(watchdog_loop(notifier, lambda: routing_alive(ari, task)))
    ...  # on SIGHUP
    notifier.reloading()
    ...  # reload
    notifier.ready()
    ...  # on SIGTERM
    notifier.stopping()

Every method is a cheap no-op returning ``False`` when the process was not started
by systemd (no ``$NOTIFY_SOCKET``), so the daemon calls them unconditionally.

What the watchdog promises. pbxbridge is fed to the watchdog (``WATCHDOG=1``) only
while both hold:

* the event loop turns - the pings come from a coroutine on it, so a frozen
  process (``SIGSTOP``, a blocked loop, a deadlock) sends none;
* the routing machinery is alive - the daemon passes
  :func:`pbxbridge.adapters.ari.router.routing_alive`: the ARI connection
  supervisor task is running and the client is connected or actively getting
  connected (connecting, backing off, or resyncing for less than 10 s).

A dead ARI task, a closed client or a resync that hangs stops the pings and
systemd restarts the daemon after ``WatchdogSec=``; the new process resyncs the
calls waiting in Stasis. **Asterisk itself down keeps the pings going**: the
supervisor is reconnecting, calls take the dialplan fallback meanwhile, and
restarting pbxbridge cannot bring Asterisk back - it would only add restarts
(and ``StartLimitBurst=`` could end with pbxbridge stopped for good when
Asterisk returns). Calls stuck in Stasis while the loop turns are the Stasis
guard's job (``PBXBRIDGE_STASIS_MAX_S``), not the watchdog's.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from types import TracebackType

import structlog

__all__ = ["SystemdNotifier", "watchdog_loop"]

_log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

# sd_notify(3) field names are upper-case ASCII; rejecting anything else catches
# typos such as notify(ready=1), which systemd would silently ignore.
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")


class SystemdNotifier:
    """Sends ``sd_notify`` messages to the service manager, if there is one.

    The configuration is read once, at construction, from ``$NOTIFY_SOCKET``,
    ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``. Sending never raises: a failure (the
    socket vanished, e.g. during ``systemctl daemon-reexec``, or the queue is full)
    is logged once at warning level per run of consecutive failures and reported
    as ``False``, because losing a status message must never take call routing
    down with it.

    Attributes:
        address: The socket address datagrams are sent to (NUL-prefixed for
            abstract sockets), or ``None`` when not running under systemd.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """Reads the notification settings from the environment.

        Args:
            environ: The environment to read; defaults to ``os.environ``. Tests
                pass a plain dict.
        """
        env = os.environ if environ is None else environ
        self.address: str | None = _parse_socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _parse_positive_int(env.get("WATCHDOG_USEC"))
        self._watchdog_pid = _parse_positive_int(env.get("WATCHDOG_PID"))
        self._sock: socket.socket | None = None
        # True while we are in a streak of failed sends; the warning is emitted on
        # the first failure only, otherwise a dead socket would log every 15 s
        # (each watchdog ping) until the restart.
        self._failing = False

    @property
    def enabled(self) -> bool:
        """Whether a notification socket is configured (i.e. we run under systemd)."""
        return self.address is not None

    # -- high-level messages ---------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """Reports that start-up or a reload has finished (``READY=1``).

        Args:
            status: Optional human-readable status shown by ``systemctl status``.

        Returns:
            True if the message was handed to the service manager.
        """
        return self._send_fields({"READY": "1"}, status)

    def reloading(self, status: str | None = None) -> bool:
        """Reports that a configuration reload has begun (``RELOADING=1``).

        ``MONOTONIC_USEC`` is sent along because systemd >= 253 requires it for
        ``Type=notify-reload`` (it uses the timestamp to match this message to the
        reload request); older versions and ``Type=notify`` ignore it. Call
        :meth:`ready` when the reload is complete.

        Args:
            status: Optional human-readable status shown by ``systemctl status``.

        Returns:
            True if the message was handed to the service manager.
        """
        fields = {"RELOADING": "1", "MONOTONIC_USEC": str(_monotonic_usec())}
        return self._send_fields(fields, status)

    def stopping(self, status: str | None = None) -> bool:
        """Reports that the daemon has begun shutting down (``STOPPING=1``).

        Args:
            status: Optional human-readable status shown by ``systemctl status``.

        Returns:
            True if the message was handed to the service manager.
        """
        return self._send_fields({"STOPPING": "1"}, status)

    def status(self, text: str) -> bool:
        """Publishes a one-line status text (``STATUS=...``) for ``systemctl status``.

        Args:
            text: Free-form UTF-8 text; line breaks are replaced by spaces because
                a newline would end the field.

        Returns:
            True if the message was handed to the service manager.
        """
        return self._send_fields({}, text)

    def watchdog(self) -> bool:
        """Feeds the service watchdog (``WATCHDOG=1``).

        Returns:
            True if the message was handed to the service manager.
        """
        return self._send_fields({"WATCHDOG": "1"}, None)

    def watchdog_interval(self) -> float | None:
        """Returns how often to call :meth:`watchdog`, in seconds.

        That is half of ``$WATCHDOG_USEC``, the interval ``sd_watchdog_enabled(3)``
        recommends so that one late ping does not trigger a restart.

        Returns:
            The interval in seconds, or ``None`` if no watchdog is configured, if
            there is no notification socket to ping, or if ``$WATCHDOG_PID`` names
            another process (the variables were inherited from a parent that is
            the one being watched, so pinging on its behalf would be wrong).
        """
        if not self.enabled or self._watchdog_usec is None:
            return None
        # Compared at call time, not at construction: after a fork() the child must
        # see the watchdog as not meant for it.
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2 / 1_000_000

    # -- low-level interface ---------------------------------------------------------

    def notify(self, **fields: str | int) -> bool:
        """Sends arbitrary ``sd_notify`` fields, e.g. ``notify(EXTEND_TIMEOUT_USEC=5000000)``.

        Args:
            **fields: Field names (upper-case, as in ``sd_notify(3)``) and values,
                sent in the given order.

        Returns:
            True if the message was handed to the service manager.

        Raises:
            ValueError: A field name is not upper-case or a value contains a line
                break. These are programming errors, so unlike send failures they
                are not swallowed.
        """
        lines = []
        for name, value in fields.items():
            text = str(value)
            if not _FIELD_NAME.match(name):
                raise ValueError(f"invalid sd_notify field name: {name!r}")
            if "\n" in text:
                raise ValueError(f"sd_notify field {name} must not contain a newline")
            lines.append(f"{name}={text}")
        return self.send("\n".join(lines))

    def send(self, message: str) -> bool:
        """Sends a raw, already formatted notification message.

        Args:
            message: Newline-separated ``KEY=VALUE`` assignments. Encoded as UTF-8,
                which is what systemd expects (``STATUS=`` is shown verbatim).

        Returns:
            True if the datagram was sent; False when not running under systemd or
            when sending failed (logged, never raised).
        """
        if self.address is None:
            return False
        try:
            sock = self._socket()
            sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            # Covers ENOENT/ECONNREFUSED (socket removed, e.g. PID 1 re-executing),
            # EAGAIN (queue full; the socket is non-blocking so that a stuck service
            # manager can never stall our event loop) and path-length errors.
            if not self._failing:
                _log.warning(
                    "sd_notify failed",
                    notify_socket=_printable_address(self.address),
                    first_field=message.split("\n", 1)[0],
                    error=str(exc),
                )
            self._failing = True
            return False
        if self._failing:
            _log.info("sd_notify working again", notify_socket=_printable_address(self.address))
            self._failing = False
        return True

    def close(self) -> None:
        """Closes the sending socket; a later send transparently reopens it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _send_fields(self, fields: dict[str, str], status: str | None) -> bool:
        if status is not None:
            # A status often embeds an exception message, which may span lines; a
            # raw newline would end the STATUS= field and turn the rest into
            # garbage assignments, so flatten it instead of failing.
            fields = {**fields, "STATUS": " ".join(status.splitlines())}
        return self.notify(**fields)

    def _socket(self) -> socket.socket:
        # One unconnected socket for the life of the process: sendto() resolves the
        # path on every call, so if systemd re-creates its socket (daemon-reexec)
        # the next message reaches the new one.
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sock = sock
        return self._sock


async def watchdog_loop(
    notifier: SystemdNotifier,
    healthy: Callable[[], bool],
    *,
    interval: float | None = None,
) -> None:
    """Pings the systemd watchdog for as long as the daemon reports itself healthy.

    The ping is skipped whenever ``healthy()`` returns false (or raises): then
    systemd sees no ``WATCHDOG=1`` for ``WatchdogSec=`` and restarts the service.
    That is the point - a daemon whose event loop still runs but which can no
    longer route calls (the ARI supervisor task dead, a resync hanging; see the
    module docstring for what counts) gets restarted, and one whose event loop is
    blocked cannot run this coroutine at all. Run it as a background task and cancel
    it on shutdown.

    Args:
        notifier: Where to send the pings.
        healthy: Cheap, non-blocking health predicate, called once per interval.
        interval: Seconds between pings; defaults to
            :meth:`SystemdNotifier.watchdog_interval`.

    Returns:
        Immediately if no watchdog is configured; otherwise only by cancellation.
    """
    period = notifier.watchdog_interval() if interval is None else interval
    if period is None:
        return
    withholding = False
    while True:
        try:
            ok = healthy()
        except Exception:
            # A broken health check counts as unhealthy; letting it escape would
            # end the task with an unretrieved exception and the same restart,
            # but without this log line explaining why.
            _log.exception("watchdog health check raised")
            ok = False
        if ok:
            if withholding:
                _log.info("daemon healthy again, resuming watchdog pings")
                withholding = False
            notifier.watchdog()
        elif not withholding:
            _log.warning(
                "daemon unhealthy, withholding watchdog pings; systemd will restart it",
                interval=period,
            )
            withholding = True
        await asyncio.sleep(period)


def _parse_socket_address(value: str) -> str | None:
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # Abstract namespace: the kernel address starts with a NUL byte instead.
        return "\0" + value[1:]
    if value:
        # e.g. "vsock:CID:PORT" (systemd >= 254 in VMs), which we do not implement;
        # say so once instead of failing every message.
        _log.warning("unsupported NOTIFY_SOCKET, notifications disabled", notify_socket=value)
    return None


def _parse_positive_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None


def _printable_address(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address


def _monotonic_usec() -> int:
    # CLOCK_MONOTONIC explicitly (not time.monotonic(), whose clock is an
    # implementation detail): systemd compares against its own CLOCK_MONOTONIC.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
