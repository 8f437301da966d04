"""Buffered, self-reconnecting MQTT publisher for screen-pop events.

The call-handling code must never wait for MQTT: a broker that is slow, down or
unreachable must not delay routing a single call. Hence the split:

* :meth:`MqttPublisher.publish` is a plain (synchronous) method. It appends the
  message to a bounded in-memory buffer and returns; it never touches the network
  and never blocks.
* :meth:`MqttPublisher.run` is a background coroutine that owns the connection. It
  connects, drains the buffer with QoS 1 (not retained), and when the connection
  fails it reconnects forever with capped exponential backoff and jitter. aiomqtt
  itself never reconnects (see ``docs/dependencies.md``).

Delivery semantics:

* **Order.** Messages are sent in ``publish()`` order over one connection, and the
  broker forwards the messages of one client in order, so subscribers see them in
  order - except for the duplicates described next.
* **At least once (QoS 1).** Up to ``max_inflight`` messages are on the wire at a
  time. When the connection is lost, every message not yet acknowledged
  (PUBACK) goes back to the *front* of the buffer and is sent again after the
  reconnect. The broker may already have forwarded some of them (the PUBACK was
  lost, not the message), so a subscriber can see a message twice, and such a
  repeat may come after messages that followed it. Events should carry an id (or
  be idempotent, like "show pop for call X") so agents' clients can ignore repeats.
* **Stale messages are dropped, not sent late.** ``expires_at`` (in
  :func:`time.monotonic` seconds) is checked whenever a message is about to be
  handed to the broker, also for a retry after a reconnect. A ``ringing`` pop
  older than the ring timeout is useless and confusing on an agent's screen. Once
  a message is on the wire it is not recalled; with MQTT 5 (the default) the
  remaining lifetime travels along as the Message Expiry Interval (rounded up to
  whole seconds), so the broker does not hand it late to a subscriber that
  reconnects with a persistent session either.
* **Overflow drops the oldest.** The buffer holds ``buffer_size`` messages; when a
  new message arrives at a full buffer, expired messages are discarded first, then
  the oldest one: the newest events are the ones an agent still needs.
* **Shutdown.** :meth:`MqttPublisher.close` sends what it can within its timeout,
  then stops; what is left is counted and reported, not persisted.

Every message given to :meth:`~MqttPublisher.publish` ends up in exactly one of
the counters of :class:`MqttStatus` (``published``, ``dropped_*``) or is still
``queued``/``inflight``.

The broker connection itself (aiomqtt glue, topic checks, error texts) and the
reading side for ``pbxbridge watch``, :func:`~.transport.subscribe`, are in
:mod:`.transport`; the reconnect loop, backoff, failure logging and the status
shape are the ones every adapter shares (:mod:`pbxbridge.adapters.connection`).
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import aiomqtt
import structlog

from pbxbridge.adapters.connection import (
    ConnectionState,
    ConnectionStatus,
    ConnectionSupervisor,
    SessionEnd,
    backoff_delay,
)

from .settings import MqttSettings
from .transport import (
    ConnectFactory,
    MqttConnection,
    connect_aiomqtt,
    subscribe,
    validate_topic,
)
from .transport import describe as _describe

__all__ = [
    "ConnectFactory",
    "MqttConnection",
    "MqttPublisher",
    "MqttStatus",
    "backoff_delay",
    "connect_aiomqtt",
    "subscribe",
]

log = structlog.get_logger(__name__)

# After close() gave up waiting for the flush and cancelled run(): how long to wait
# for run() to unwind (it may be sending a DISCONNECT) before returning anyway.
_CANCEL_GRACE: Final = 1.0
# MQTT's limit for one PUBLISH packet (remaining length) is 268,435,455 bytes; keep
# a margin for the topic and header so paho never rejects a message we accepted.
_MAX_PAYLOAD: Final = 268_435_455 - 65_535 - 16
_MAX_TOPIC_BYTES: Final = 65_535
# A message sent on this many connections that all died before its PUBACK is
# taken for the cause (e.g. larger than the broker's max_packet_size, which makes
# mosquitto drop the connection) and dropped; otherwise it would block everything
# behind it forever. A broker outage does not count: nothing is sent while down.
_MAX_SENDS: Final = 5


@dataclass(frozen=True)
class MqttStatus:
    """A snapshot of the publisher's health: its connection plus the message counters.

    Attributes:
        connection: The broker connection, in the shape every adapter reports
            (``failures``: failed attempts or short-lived connections in a row,
            0 once a connection has lasted ``backoff_max`` seconds;
            ``last_error`` is ``None`` while connected).
        published: Messages acknowledged by the broker.
        dropped_stale: Messages dropped because their ``expires_at`` had passed,
            per ``kind``.
        dropped_overflow: Messages dropped because the buffer was full.
        dropped_error: Messages the client refused outright, or that were on the
            wire each time the connection died, 5 times in a row (should stay 0).
        dropped_closed: Messages still unsent when the publisher was closed, or
            published after that.
        requeued: Unacknowledged messages sent again after a connection loss
            (each one possibly delivered twice).
        queued: Messages waiting in the buffer.
        inflight: Messages sent and awaiting acknowledgement.
        connect_attempts: Connection attempts so far.
    """

    connection: ConnectionStatus
    published: int
    dropped_stale: Mapping[str, int]
    dropped_overflow: int
    dropped_error: int
    dropped_closed: int
    requeued: int
    queued: int
    inflight: int
    connect_attempts: int

    @property
    def connected(self) -> bool:
        """Whether a broker connection is currently up."""
        return self.connection.connected

    @property
    def since(self) -> datetime:
        """When the connection's state last changed (UTC)."""
        return self.connection.since

    @property
    def consecutive_failures(self) -> int:
        """Failed attempts (or short-lived connections) in a row."""
        return self.connection.failures

    @property
    def last_error(self) -> str | None:
        """The most recent failure, ``None`` while connected."""
        return self.connection.last_error

    @property
    def dropped_stale_total(self) -> int:
        """All stale drops, whatever their kind."""
        return sum(self.dropped_stale.values())

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form for ``/healthz``.

        Returns:
            The connection's fields (``since`` as ISO 8601) with ``connected`` and
            ``consecutive_failures`` (the names ``/healthz`` has always had for
            MQTT), then the counters.
        """
        return {
            **self.connection.as_dict(),
            "connected": self.connected,
            "published": self.published,
            "dropped_stale": dict(self.dropped_stale),
            "dropped_overflow": self.dropped_overflow,
            "dropped_error": self.dropped_error,
            "dropped_closed": self.dropped_closed,
            "requeued": self.requeued,
            "queued": self.queued,
            "inflight": self.inflight,
            "connect_attempts": self.connect_attempts,
            "consecutive_failures": self.consecutive_failures,
        }


@dataclass(slots=True)
class _Message:
    topic: str  # full topic, prefix included
    payload: bytes
    expires_at: float | None
    kind: str
    sends: int = 0  # connections this message was sent on without a PUBACK


class _Phase(enum.Enum):
    """Life cycle: ``close()`` may be called in any phase."""

    OPEN = enum.auto()  # accepting messages (run() may or may not be running)
    CLOSED = enum.auto()  # close() finished; publish() only counts drops


# ------------------------------------------------------------------ publisher


class MqttPublisher:
    """Non-blocking, buffered MQTT publisher (see the module docstring).

    Typical use::

        publisher = MqttPublisher(settings)
        task = asyncio.create_task(publisher.run())   # or in a TaskGroup
        publisher.publish("agents/agent1/pop", body, expires_at=deadline, kind="ringing")
        ...
        await publisher.close(timeout=3.0)

    All methods must be called from the event loop's thread (the buffer is not
    locked; ``publish()`` is cheap precisely because it is not).

    Args:
        settings: Broker and buffer settings.
        connect: Opens one connection (default: :func:`connect_aiomqtt`).
        clock: Monotonic clock used for ``expires_at`` and connection lifetimes.
        rand: Uniform ``[0, 1]`` source for the backoff jitter.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        connect: ConnectFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._connect: ConnectFactory = connect if connect is not None else connect_aiomqtt
        self._clock = clock
        self._rand = rand
        self._buffer: deque[_Message] = deque()
        # Insertion order is send order: on a connection loss the unacknowledged
        # messages go back to the buffer in exactly this order.
        self._inflight: dict[asyncio.Future[None], _Message] = {}
        # Set on anything the pump must react to (new message, ack, loss, close).
        self._wakeup = asyncio.Event()
        self._phase = _Phase.OPEN
        self._closing = False
        self._hard_stop = False
        self._run_task: asyncio.Task[None] | None = None
        # A lower bound of the buffered messages' expiry times (inf: none expire).
        # Lets a full buffer skip the scan for expired messages when none can be.
        self._earliest_expiry = math.inf
        self._overflow_logged = False
        # Health.
        self._supervisor = ConnectionSupervisor(
            owner="MqttPublisher",
            log_prefix="mqtt.",
            log_fields={"host": settings.host, "port": settings.effective_port},
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            task_name="mqtt-publisher",
            forget_error_on_connect=True,
            rand=rand,
        )
        self._published = 0
        self._dropped_stale: Counter[str] = Counter()
        self._dropped_overflow = 0
        self._dropped_error = 0
        self._dropped_closed = 0
        self._requeued = 0
        self._connect_attempts = 0

    # ------------------------------------------------------------ public API

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        expires_at: float | None = None,
        kind: str = "",
    ) -> None:
        """Queue one message for the broker and return immediately.

        Never awaits, never touches the network: it only appends to the buffer
        (dropping the oldest message if it is full) and wakes the sender.

        Args:
            topic: Topic below :attr:`MqttSettings.topic_prefix`, e.g.
                ``agents/agent1/pop``; no wildcards, no leading ``/``.
            payload: Message body.
            expires_at: :func:`time.monotonic` time after which the message must
                not be sent any more; ``None`` for never.
            kind: Label for the per-kind stale counter (e.g. ``ringing``).

        Raises:
            ValueError: Invalid topic or oversized payload.
            TypeError: ``payload`` is not ``bytes``.
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        if len(payload) > _MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds MQTT's limit")
        validate_topic(topic, wildcards=False)
        full = self.settings.full_topic(topic)
        if len(full.encode("utf-8")) > _MAX_TOPIC_BYTES:
            raise ValueError("topic longer than 65535 bytes")
        if self._phase is _Phase.CLOSED:
            self._dropped_closed += 1
            return
        if len(self._buffer) >= self.settings.buffer_size:
            self._purge_stale()
        if len(self._buffer) >= self.settings.buffer_size:
            self._buffer.popleft()
            self._count_overflow(1)
        self._buffer.append(_Message(full, payload, expires_at, kind))
        if expires_at is not None and expires_at < self._earliest_expiry:
            self._earliest_expiry = expires_at
        self._wakeup.set()

    def status(self) -> MqttStatus:
        """A snapshot of counters and connection state for health checks.

        Returns:
            The current status.
        """
        return MqttStatus(
            connection=self._supervisor.status(),
            published=self._published,
            dropped_stale=dict(self._dropped_stale),
            dropped_overflow=self._dropped_overflow,
            dropped_error=self._dropped_error,
            dropped_closed=self._dropped_closed,
            requeued=self._requeued,
            queued=len(self._buffer),
            inflight=len(self._inflight),
            connect_attempts=self._connect_attempts,
        )

    @property
    def connected(self) -> bool:
        """Whether a broker connection is currently up."""
        return self._supervisor.connected

    async def run(self) -> None:
        """Keep a broker connection and drain the buffer until :meth:`close`.

        Reconnects forever (:class:`~pbxbridge.adapters.connection.ConnectionSupervisor`:
        capped exponential backoff with jitter, one logging policy). Returns
        when :meth:`close` has flushed the buffer or given up, and at once if
        :meth:`close` came first (a task created just before shutdown). Cancelling
        it from outside stops it too; the buffer is kept and ``run()`` may be
        called again.

        Raises:
            RuntimeError: Already running.
        """
        if self._phase is _Phase.CLOSED:
            return
        if self._run_task is not None and not self._run_task.done():
            raise RuntimeError("MqttPublisher.run() is already running")
        self._run_task = asyncio.current_task()
        try:
            await self._supervisor.run(self._attempt)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # close() cancelled us after its timeout: that is the requested way to
            # end, not an error for whoever awaits run(). Any other cancellation
            # (e.g. the daemon's TaskGroup) propagates.
            if self._hard_stop and task is not None and task.uncancel() == 0:
                return
            raise

    # The timeout bounds only the flush phase (an asyncio.timeout around the call
    # would cancel the flush instead of ending it gracefully), hence the parameter.
    async def close(self, timeout: float = 5.0) -> int:  # noqa: ASYNC109
        """Flush what can be sent within ``timeout`` seconds, then stop.

        Messages published while this waits are still sent if time allows. After
        it returns, :meth:`publish` only counts ``dropped_closed``.

        Args:
            timeout: Seconds to wait for the buffer to drain (and a graceful
                DISCONNECT). With no broker reachable, that is how long it takes.

        Returns:
            The number of messages left unsent (also added to ``dropped_closed``).
        """
        self._closing = True
        # With nothing left to send there is no reason to sit out the backoff wait
        # in progress; later waits keep the normal pace (no hammering a refusing
        # broker), the timeout bounds the total.
        self._supervisor.interrupt_backoff()
        self._wakeup.set()
        task = self._run_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            done, _ = await asyncio.wait({task}, timeout=max(timeout, 0.0))
            if not done:
                self._hard_stop = True
                task.cancel()
                await asyncio.wait({task}, timeout=_CANCEL_GRACE)
        self._phase = _Phase.CLOSED
        await self._supervisor.stop()
        unsent = len(self._buffer) + len(self._inflight)
        for pending in self._inflight:
            pending.cancel()
        self._inflight.clear()
        self._buffer.clear()
        self._dropped_closed += unsent
        if unsent:
            last_error = self._supervisor.status().last_error
            log.warning("mqtt.closed_with_unsent", unsent=unsent, last_error=last_error)
        else:
            log.info("mqtt.closed", published=self._published)
        return unsent

    def subscribe(self, topic_filter: str) -> AsyncGenerator[tuple[str, bytes], None]:
        """Read messages with a separate client (see :func:`subscribe`).

        Args:
            topic_filter: Filter below the topic prefix, wildcards allowed.

        Returns:
            An async generator of ``(full topic, payload)``.
        """
        return subscribe(self.settings, topic_filter, rand=self._rand)

    # -------------------------------------------------------------- internals

    async def _attempt(self) -> SessionEnd:
        """One connection of the supervisor's loop: drain the buffer until it fails."""
        if self._closing and not self._buffer:
            return SessionEnd("closed", final=True)
        self._connect_attempts += 1
        opened_at: float | None = None
        try:
            async with self._connect(self.settings) as connection:
                opened_at = asyncio.get_running_loop().time()
                self._set_connected(True)
                try:
                    await self._pump(connection)
                finally:
                    self._requeue_inflight()
                    self._set_connected(False)
            # _pump() only returns when closing with nothing left to send, and the
            # context exit has sent DISCONNECT: done.
            return SessionEnd("closed", final=True)
        except (aiomqtt.MqttError, OSError) as exc:
            return SessionEnd(self._failure_reason(exc, opened_at), opened_at=opened_at)
        except Exception as exc:
            # A bug here or in paho/aiomqtt must not end screen pops for good:
            # log it loudly and go on reconnecting like after any failure.
            log.exception("mqtt.unexpected_error")
            return SessionEnd(_describe(exc), opened_at=opened_at)

    async def _pump(self, connection: MqttConnection) -> None:
        """Send buffered messages over one connection until it fails or we close.

        Raises:
            aiomqtt.MqttError: The connection was lost or a publish failed.
        """
        lost = asyncio.ensure_future(connection.wait_closed())
        lost.add_done_callback(self._wake)
        try:
            while True:
                # Cleared *before* looking at the state: whatever changes it from
                # here on sets the event again, so no wake-up can be missed.
                self._wakeup.clear()
                if lost.done():
                    error = lost.exception()
                    raise error if error is not None else aiomqtt.MqttError("connection closed")
                self._settle()
                while len(self._inflight) < self.settings.max_inflight:
                    message = self._take()
                    if message is None:
                        break
                    self._send(connection, message)
                if self._closing and not self._inflight and not self._buffer:
                    return
                await self._wakeup.wait()
        finally:
            if not lost.done():
                lost.cancel()
            elif not lost.cancelled():
                lost.exception()  # retrieved: no "exception never retrieved" noise

    def _send(self, connection: MqttConnection, message: _Message) -> None:
        # Handed to the client at once (wire order is buffer order); up to
        # max_inflight futures await their PUBACKs, each waking the pump when done.
        expiry_interval = None
        if message.expires_at is not None:
            # Whole seconds, rounded up: _take() has just checked it is positive.
            expiry_interval = max(1, math.ceil(message.expires_at - self._clock()))
        sent = connection.send(message.topic, message.payload, self.settings.qos, expiry_interval)
        sent.add_done_callback(self._wake)
        self._inflight[sent] = message

    def _settle(self) -> None:
        """Account for finished publishes; raise the first connection error."""
        failure: BaseException | None = None
        for sent, message in list(self._inflight.items()):
            if not sent.done():
                continue
            error = sent.exception()
            if error is None:
                del self._inflight[sent]
                self._published += 1
            elif isinstance(error, aiomqtt.MqttError | OSError):
                # Left in flight on purpose: the teardown requeues it, in order.
                failure = failure or error
            else:
                # Not a transport problem: the client refused this very message and
                # would refuse it again after every reconnect. Drop it.
                del self._inflight[sent]
                self._dropped_error += 1
                log.error(
                    "mqtt.publish_refused",
                    topic=message.topic,
                    kind=message.kind,
                    error=_describe(error),
                )
        if failure is not None:
            raise failure

    def _requeue_inflight(self) -> None:
        """Put unacknowledged messages back at the buffer's front, in send order."""
        back: list[_Message] = []
        for sent, message in self._inflight.items():
            if sent.done() and not sent.cancelled() and sent.exception() is None:
                self._published += 1  # acknowledged just before the loss
                continue
            sent.cancel()
            message.sends += 1
            if message.sends >= _MAX_SENDS:
                self._dropped_error += 1
                log.error(
                    "mqtt.dropped_after_repeated_connection_loss",
                    topic=message.topic,
                    kind=message.kind,
                    sends=message.sends,
                    bytes=len(message.payload),
                )
                continue
            back.append(message)
        self._inflight.clear()
        if not back:
            return
        self._requeued += len(back)
        self._buffer.extendleft(reversed(back))
        for message in back:
            if message.expires_at is not None and message.expires_at < self._earliest_expiry:
                self._earliest_expiry = message.expires_at
        excess = len(self._buffer) - self.settings.buffer_size
        for _ in range(max(excess, 0)):
            self._buffer.popleft()
        if excess > 0:
            self._count_overflow(excess)
        log.info(
            "mqtt.requeued_unacknowledged",
            count=len(back),
            note="sent again after reconnect; subscribers may see duplicates",
        )

    def _take(self) -> _Message | None:
        """The next message to send, dropping expired ones on the way."""
        while self._buffer:
            message = self._buffer.popleft()
            if message.expires_at is not None and self._clock() >= message.expires_at:
                self._count_stale(message)
                continue
            return message
        self._overflow_logged = False
        return None

    def _purge_stale(self) -> None:
        """Drop expired messages from the buffer (called only when it is full)."""
        now = self._clock()
        if now < self._earliest_expiry:
            return  # nothing buffered can have expired yet: skip the O(n) scan
        kept: deque[_Message] = deque()
        earliest = math.inf
        for message in self._buffer:
            if message.expires_at is not None and now >= message.expires_at:
                self._count_stale(message)
                continue
            kept.append(message)
            if message.expires_at is not None:
                earliest = min(earliest, message.expires_at)
        self._buffer = kept
        self._earliest_expiry = earliest

    def _count_stale(self, message: _Message) -> None:
        self._dropped_stale[message.kind] += 1
        log.debug(
            "mqtt.dropped_stale",
            topic=message.topic,
            kind=message.kind,
            late_s=round(self._clock() - (message.expires_at or 0.0), 3),
        )

    def _count_overflow(self, count: int) -> None:
        self._dropped_overflow += count
        # Once per overflow episode: during an outage this would otherwise log for
        # every single new message. The counter keeps the exact number.
        if not self._overflow_logged:
            self._overflow_logged = True
            log.warning(
                "mqtt.buffer_full_dropping_oldest",
                buffer_size=self.settings.buffer_size,
                connected=self.connected,
                last_error=self._supervisor.status().last_error,
            )

    def _wake(self, _: object) -> None:
        self._wakeup.set()

    def _set_connected(self, connected: bool) -> None:
        if not connected:
            self._supervisor.set_state(ConnectionState.DISCONNECTED)
            return
        self._supervisor.set_state(ConnectionState.CONNECTED)
        log.info(
            "mqtt.connected",
            host=self.settings.host,
            port=self.settings.effective_port,
            tls=self.settings.tls,
            queued=len(self._buffer),
        )

    def _failure_reason(self, exc: BaseException, opened_at: float | None) -> str:
        if opened_at is None and isinstance(exc, aiomqtt.MqttError) and "timed out" in str(exc):
            # aiomqtt reports a broker that closes the socket before its CONNACK
            # (e.g. after refusing our TLS client certificate) only as a timeout.
            return (
                f"no CONNACK within {self.settings.connect_timeout:g} s: broker too slow, or "
                "it closed the connection (TLS client certificate refused?)"
            )
        return _describe(exc)
