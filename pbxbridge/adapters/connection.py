"""One supervisor for every long-lived connection: ARI, AMI and MQTT.

Each adapter knows its protocol: how to open a connection, what to do while it is
up, and why it ended. Everything around that is the same for all of them and lives
here, once:

* **State and status**: :class:`ConnectionState` and :class:`ConnectionStatus`, the
  one shape ``/healthz``, the metrics and the watchdog read for every connection.
* **Reconnect policy**: :func:`backoff_delay` (capped exponential backoff with
  jitter) and :class:`ConnectionSupervisor`, which runs an adapter's session
  again and again: a session that stayed up ``backoff_max`` seconds counts as
  healthy and resets the backoff; one that ends sooner (or never opened) keeps
  backing off, so a server that accepts and immediately drops us is not hammered.
* **Logging**: one policy for connection failures. The 1st, 2nd, 4th, 8th, ...
  failure in a row is a warning, the others are debug lines: a long outage at a
  5 s cap would otherwise log ~720 lines an hour.

Typed shell in the style of aiomqtt: keyword-only parameters, a handful of names,
and no exception type of its own (a session reports how it ended with a
:class:`SessionEnd`; an exception escaping a session is a bug, logged and treated
like a failed attempt so that it can never end the reconnect loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import structlog

__all__ = [
    "ConnectionState",
    "ConnectionStatus",
    "ConnectionSupervisor",
    "Session",
    "SessionEnd",
    "backoff_delay",
    "describe_error",
    "is_milestone",
]

log = structlog.get_logger(__name__)

_MAX_BACKOFF_EXPONENT: Final = 30  # 2**30 * any sane initial delay is far past any cap
# Passed as "failures" to back off straight to the cap.
_AT_CAP: Final = _MAX_BACKOFF_EXPONENT + 1


def backoff_delay(
    failures: int,
    initial: float,
    maximum: float,
    *,
    rand: Callable[[], float] = random.random,
) -> float:
    """Compute the wait before the next connection attempt.

    Capped exponential backoff with "equal jitter": the ceiling doubles with every
    consecutive failure up to ``maximum`` and the result is drawn uniformly from
    ``[ceiling / 2, ceiling]``. Never drawing below half the ceiling is what keeps
    a refusing server (wrong password, ACL) from being hammered even with unlucky
    random numbers, while the jitter still spreads several clients apart after a
    restart of Asterisk or the broker.

    Args:
        failures: Consecutive failures so far (values below 1 count as 1).
        initial: Ceiling after the first failure, in seconds.
        maximum: Upper bound for the ceiling, in seconds.
        rand: Source of uniform numbers in ``[0, 1]`` (injectable for tests).

    Returns:
        The delay in seconds, within ``[initial / 2, maximum]``.
    """
    exponent = min(max(failures - 1, 0), _MAX_BACKOFF_EXPONENT)
    ceiling = min(maximum, initial * 2.0**exponent)
    return ceiling / 2.0 + (ceiling / 2.0) * rand()


def describe_error(exc: BaseException) -> str:
    """``Type: message`` (or just ``Type``) for logs and ``last_error``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_milestone(failures: int) -> bool:
    """Whether the n-th failure in a row is logged as a warning (1, 2, 4, 8, ...)."""
    return failures > 0 and failures & (failures - 1) == 0


# ---------------------------------------------------------------------- status


class ConnectionState(enum.StrEnum):
    """Where a supervised connection is (for health checks and metrics)."""

    IDLE = "idle"
    """run() has not been started (or was cancelled)."""
    CONNECTING = "connecting"
    """Opening the connection (and logging in)."""
    RESYNCING = "resyncing"
    """Connected; on_connected is running; events are being buffered."""
    CONNECTED = "connected"
    """Connected and resynced; events are being delivered."""
    DISCONNECTED = "disconnected"
    """Waiting (backoff) before the next connection attempt."""
    CLOSED = "closed"
    """close() was called; the client cannot be reused."""


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """A snapshot of one connection's health; the same shape for ARI, AMI and MQTT.

    Attributes:
        state: Current state.
        since: When ``state`` was entered (UTC).
        failures: Connection attempts (or short-lived connections) that failed in
            a row; 0 once a connection has proven healthy.
        last_error: The most recent failure or disconnect reason, if any.
        details: Protocol-specific extras for ``/healthz`` (e.g. AMI's ping
            round trip); plain JSON values.
    """

    state: ConnectionState
    since: datetime
    failures: int
    last_error: str | None
    details: Mapping[str, object] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        """Whether the connection is up (and, where there are events, delivering them)."""
        return self.state is ConnectionState.CONNECTED

    @property
    def consecutive_failures(self) -> int:
        """The same as :attr:`failures` (the name ``/healthz`` uses for ARI and MQTT)."""
        return self.failures

    def as_dict(self) -> dict[str, object]:
        """JSON-serialisable form for a health endpoint.

        Returns:
            ``state``, ``since`` (ISO 8601), ``failures``, ``last_error`` and the
            details.
        """
        return {
            "state": self.state.value,
            "since": self.since.isoformat(),
            "failures": self.failures,
            "last_error": self.last_error,
            **self.details,
        }


# ------------------------------------------------------------------ supervisor


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """How one connection attempt ended, as the adapter's session reports it.

    Attributes:
        reason: Why it ended (or why it could not be opened); becomes
            ``last_error`` and is logged.
        opened_at: Event loop time (``loop.time()``) from which the connection
            counts as up; ``None`` when it never opened, or when the session
            failed in a way that must not count as healthy however long it took
            (a failed resync). A session that ends ``backoff_max`` seconds or
            more after this time resets the backoff.
        replaced: Back off straight to the cap (another client took our place:
            a misconfiguration that must stay visible, not flap quickly).
        final: The work is done (MQTT: closing with nothing left to send): end
            the loop without backing off; :meth:`ConnectionSupervisor.run` returns.
    """

    reason: str
    opened_at: float | None = None
    replaced: bool = False
    final: bool = False


Session = Callable[[], Awaitable[SessionEnd]]
"""Opens one connection, serves it until it ends, closes it, and says why it ended."""


class ConnectionSupervisor:
    """Keep one connection: run a session, back off, log, report the status.

    The adapter owns a supervisor, runs its session with :meth:`run` and moves the
    state with :meth:`set_state` while the session goes through its phases
    (``RESYNCING``, ``CONNECTED``); the supervisor does the rest.

    Args:
        owner: Name of the client class, for error messages (``AriClient``).
        log_prefix: Prefix of the log events, e.g. ``ami.`` gives
            ``ami.connection_failed``, ``ami.disconnected``, ``ami.session_crashed``.
        log_fields: Fields added to every log line (never secrets).
        backoff_initial: Reconnect delay ceiling after the first failure.
        backoff_max: Cap of the reconnect delay, and how long a connection must
            stay up to count as healthy.
        task_name: Name of the task running the reconnect loop.
        forget_error_on_connect: ``last_error`` becomes ``None`` when a
            connection is up (MQTT's status always said so); otherwise it keeps
            the last reason until the next one.
        rand: Uniform ``[0, 1]`` source for the backoff jitter (tests).
    """

    def __init__(
        self,
        *,
        owner: str,
        log_prefix: str,
        log_fields: Mapping[str, object] | None = None,
        backoff_initial: float,
        backoff_max: float,
        task_name: str,
        forget_error_on_connect: bool = False,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._owner = owner
        self._prefix = log_prefix
        self._fields = dict(log_fields or {})
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._task_name = task_name
        self._forget_error = forget_error_on_connect
        self._rand = rand
        self._state = ConnectionState.IDLE
        self._since = datetime.now(UTC)
        self._failures = 0
        self._last_error: str | None = None
        self._connected_event = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Set by interrupt_backoff(): ends the backoff wait in progress.
        self._interrupt = asyncio.Event()

    # ------------------------------------------------------------- reading

    @property
    def state(self) -> ConnectionState:
        """The current state."""
        return self._state

    @property
    def closing(self) -> bool:
        """Whether :meth:`stop` (or :meth:`request_stop`) was called."""
        return self._closing

    @property
    def connected(self) -> bool:
        """Whether the state is ``CONNECTED``."""
        return self._state is ConnectionState.CONNECTED

    def status(self, **details: object) -> ConnectionStatus:
        """A snapshot of the connection, with the adapter's extras.

        Args:
            **details: Protocol-specific fields for ``/healthz``.

        Returns:
            The status.
        """
        return ConnectionStatus(
            state=self._state,
            since=self._since,
            failures=self._failures,
            last_error=self._last_error,
            details=details,
        )

    async def wait_connected(self) -> None:
        """Wait until the state is ``CONNECTED`` (returns at once if it is)."""
        await self._connected_event.wait()

    # ------------------------------------------------------------- driving

    def set_state(self, state: ConnectionState) -> None:
        """Enter a state (``since`` only changes when the state does).

        Args:
            state: The new state.
        """
        if state is self._state:
            return
        self._state = state
        self._since = datetime.now(UTC)
        if state is ConnectionState.CONNECTED:
            if self._forget_error:
                self._last_error = None
            self._connected_event.set()
        else:
            self._connected_event.clear()

    async def run(self, session: Session) -> None:
        """Run ``session`` again and again until :meth:`stop`; back off in between.

        Args:
            session: Opens, serves and closes one connection.

        Raises:
            RuntimeError: The supervisor is stopped or ``run()`` is already active.
            asyncio.CancelledError: The task running ``run()`` was cancelled.
                Returns normally when ended by :meth:`stop`.
        """
        if self._closing:
            raise RuntimeError(f"{self._owner} is closed")
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self._owner}.run() is already active")
        task = asyncio.create_task(self._loop(session), name=self._task_name)
        self._task = task
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            stopped = self._closing and task.cancelled()
            # Our own cancel (stop()) ends run() quietly; a cancel of the caller's
            # task (e.g. a TaskGroup shutting down) must propagate.
            if stopped and (current is None or current.cancelling() == 0):
                return
            raise

    def interrupt_backoff(self) -> None:
        """End the backoff wait in progress now; later ones keep their full length.

        For a client that is asked to close: it no longer needs to sit out the
        delay, but it must not hammer a refusing server while it tries to flush.
        """
        self._interrupt.set()

    def request_stop(self) -> None:
        """Mark the supervisor as stopping (no new run(); the loop ends as CLOSED)."""
        self._closing = True

    async def stop(self) -> None:
        """End the reconnect loop (idempotent); the state becomes ``CLOSED``."""
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        self.set_state(ConnectionState.CLOSED)

    async def _loop(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while True:
                self.set_state(ConnectionState.CONNECTING)
                try:
                    end = await session()
                except Exception as exc:  # a bug must not end the loop
                    log.exception(f"{self._prefix}session_crashed", **self._fields)
                    end = SessionEnd(describe_error(exc))
                if end.final:
                    return
                healthy = (
                    end.opened_at is not None
                    and not end.replaced
                    and loop.time() - end.opened_at >= self._backoff_max
                )
                if healthy:
                    failures = 0
                    level = 1  # a short pause even after a healthy connection
                else:
                    failures += 1
                    level = _AT_CAP if end.replaced else failures
                delay = backoff_delay(
                    level, self._backoff_initial, self._backoff_max, rand=self._rand
                )
                self.set_state(ConnectionState.DISCONNECTED)
                self._failures = failures
                self._last_error = end.reason
                if healthy:
                    log.warning(
                        f"{self._prefix}disconnected",
                        **self._fields,
                        reason=end.reason,
                        retry_in=round(delay, 3),
                    )
                else:
                    emit = log.warning if is_milestone(failures) else log.debug
                    emit(
                        f"{self._prefix}connection_failed",
                        **self._fields,
                        error=end.reason,
                        failures=failures,
                        retry_in=round(delay, 3),
                    )
                await self._wait(delay)
        finally:
            self.set_state(ConnectionState.CLOSED if self._closing else ConnectionState.IDLE)

    async def _wait(self, delay: float) -> None:
        if self._interrupt.is_set():
            await asyncio.sleep(delay)  # interrupted once already: keep the pace
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._interrupt.wait()
