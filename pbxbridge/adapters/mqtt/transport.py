"""The MQTT connection itself: aiomqtt glue, topic checks, error texts, the subscriber.

:class:`MqttConnection` is what the publisher needs of one established broker
connection; :func:`connect_aiomqtt` is the real one (tests substitute fakes).
:func:`subscribe` is the reading side for ``pbxbridge watch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

import aiomqtt
import paho.mqtt.client as mqtt
import structlog
from aiomqtt.exceptions import MqttCodeError, MqttConnectError
from paho.mqtt.client import DISCONNECT, PUBLISH
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pbxbridge.adapters.connection import (
    ConnectionState,
    ConnectionSupervisor,
    SessionEnd,
)

from .settings import MqttSettings, build_tls_context

__all__ = [
    "ConnectFactory",
    "MqttConnection",
    "connect_aiomqtt",
    "describe",
    "subscribe",
    "validate_topic",
]

log = structlog.get_logger(__name__)

# CONNACK codes meaning "your credentials or rights are wrong" (MQTT 3.1.1: 4, 5;
# MQTT 5 / paho reason codes: 134, 135): the error message says so explicitly.
_AUTH_CODES: Final = frozenset({4, 5, 134, 135})
# Distinct expiry intervals whose PUBLISH properties one connection keeps.
_MAX_CACHED_PROPERTIES: Final = 256
# Shortest time between two writes to the broker under load (see _DirectWrites):
# far below what a person notices on a screen pop (benchmarks/screenpop_latency.py
# allows p99 50 ms), long enough for pops of a busy minute to share a segment.
_MIN_FLUSH_GAP_S: Final = 0.003


class MqttConnection(Protocol):
    """One established broker connection, as the publisher needs it.

    The default implementation wraps :class:`aiomqtt.Client`; tests substitute fakes.
    """

    def send(
        self, topic: str, payload: bytes, qos: int, expiry_interval: int | None
    ) -> asyncio.Future[None]:
        """Hand one message to the client now; the future completes at its PUBACK.

        Messages are on the wire in the order of the calls. Any failure, also one
        of handing the message over, is delivered through the future, never
        raised here: the publisher accounts for every message in one place.

        Args:
            topic: Full topic.
            payload: Body.
            qos: 0 or 1.
            expiry_interval: Seconds the broker may keep the message for
                subscribers (MQTT 5 Message Expiry Interval); ``None``: unlimited.

        Returns:
            A future with result ``None`` once the broker has acknowledged the
            message (QoS 1), or with ``aiomqtt.MqttError`` when the connection
            failed or the acknowledgement timed out, or with any other exception
            when the client refused this very message.
        """

    async def wait_closed(self) -> None:
        """Return or raise once the connection is lost.

        Raises:
            aiomqtt.MqttError: Describing why the connection was lost.
        """


ConnectFactory = Callable[[MqttSettings], AbstractAsyncContextManager[MqttConnection]]
"""Opens a connection (entering the context) and closes it (leaving it)."""


def validate_topic(topic: str, *, wildcards: bool) -> None:
    """Reject topics the broker would refuse, here and now, with a clear message.

    A bad topic is a programming error of the caller; failing at ``publish()`` time
    points at the culprit, while failing later in the background task could only
    be logged.
    """
    if not isinstance(topic, str) or not topic:
        raise ValueError("topic must be a non-empty string")
    if topic.startswith("/") or "\0" in topic:
        raise ValueError(f"invalid topic {topic!r}: leading '/' or NUL")
    if wildcards:
        aiomqtt.Wildcard(topic)  # raises ValueError for misplaced + / #
    elif "+" in topic or "#" in topic:
        raise ValueError(f"invalid topic {topic!r}: wildcards cannot be published to")


def describe(exc: BaseException) -> str:
    """A one-line, operator-readable error description (never contains secrets)."""
    if isinstance(exc, MqttConnectError):
        code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
        if code in _AUTH_CODES:
            return (
                f"broker refused the connection: {exc} "
                "(check the MQTT user name, password and the broker's ACL)"
            )
        return f"broker refused the connection: {exc}"
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    if not isinstance(exc, aiomqtt.MqttError):
        text = f"{type(exc).__name__}: {text}"
    return text


# ---------------------------------------------------------- aiomqtt transport


async def _client(settings: MqttSettings, *, identifier: str) -> aiomqtt.Client:
    """Create (not connect) an aiomqtt client for the running loop."""
    tls_context = None
    if settings.tls:
        # Reading certificates is file I/O: off the loop. Rebuilt for every attempt
        # so renewed certificates are picked up at the next reconnect.
        tls_context = await asyncio.to_thread(build_tls_context, settings)
    v5 = settings.mqtt_version == "5"
    unix_path = settings.unix_path
    client = aiomqtt.Client(
        unix_path or settings.host,
        settings.effective_port,  # paho checks it even for a socket path
        transport="unix" if unix_path else "tcp",
        username=settings.username,
        password=settings.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        # A fresh session per connection: our own buffer is the source of truth
        # for what still has to be sent, so the broker must not replay a previous
        # session at us, nor paho re-send old packets behind our back. (MQTT 5: a
        # new Client per connection with clean_start "first only" and no session
        # expiry amounts to the same.)
        clean_session=None if v5 else True,
        keepalive=settings.keepalive,
        # aiomqtt uses this for the CONNACK wait (and the DISCONNECT on exit);
        # publishes pass their own timeout.
        timeout=settings.connect_timeout,
        tls_context=tls_context,
        # paho queues beyond its in-flight limit; matching our window means every
        # message we hand over is on the wire at once, in order.
        max_inflight_messages=settings.max_inflight,
    )
    # aiomqtt does not expose paho's TCP/TLS connect timeout (fixed 5 s otherwise);
    # a black-holed broker address would hold an executor thread that long.
    client._client.connect_timeout = settings.connect_timeout
    # aiomqtt logs a plain-text warning once more than 10 publishes are pending;
    # our window is max_inflight by design, so that is not worth a warning.
    client.pending_calls_threshold = settings.max_inflight
    return client


class _Ack:
    """Completes a publish's future when aiomqtt's PUBACK callback fires.

    aiomqtt's ``on_publish`` callback calls ``.set()`` on whatever is registered
    under the message id in ``_pending_publishes`` (an ``asyncio.Event`` for its
    own ``publish()``). Registering this instead gives one future per message,
    with no task, ``wait_for`` task and event per message as ``publish()`` costs;
    the PUBACK timeout is one timer handle.
    """

    __slots__ = ("future", "timer")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.timer: asyncio.TimerHandle | None = None

    def set(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.future.done():
            self.future.set_result(None)


class _AiomqttConnection:
    """:class:`MqttConnection` over a connected :class:`aiomqtt.Client`."""

    def __init__(self, client: aiomqtt.Client, settings: MqttSettings) -> None:
        self._client = client
        self._publish_timeout = settings.publish_timeout
        self._v5 = settings.mqtt_version == "5"
        self._loop = asyncio.get_running_loop()
        # PUBLISH properties by expiry interval: building paho's Properties costs
        # more than packing them, and the intervals repeat (whole seconds of a few
        # ring timeouts). paho only reads them (pack()), so sharing is safe.
        self._properties: dict[int, Properties] = {}

    def send(
        self, topic: str, payload: bytes, qos: int, expiry_interval: int | None
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        properties = None
        if self._v5 and expiry_interval is not None:
            properties = self._expiry_properties(expiry_interval)
        try:
            # What aiomqtt's publish() does, without its per-message task: hand the
            # message to paho (queued for the socket, in call order) and register
            # for its PUBACK under the message id.
            info = self._client._client.publish(topic, payload, qos, False, properties)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # Like aiomqtt's publish(): the reason the connection died, if known.
                lost = self._client._disconnected
                cause = lost.exception() if lost.done() and not lost.cancelled() else None
                raise MqttCodeError(info.rc, "Could not publish message") from cause
        except Exception as exc:  # delivered through the future, see MqttConnection
            future.set_exception(exc)
            return future
        if info.is_published():
            future.set_result(None)
            return future
        ack = _Ack(future)
        pending = self._client._pending_publishes
        pending[info.mid] = ack  # type: ignore[assignment]  # duck-typed: .set()
        ack.timer = self._loop.call_later(self._publish_timeout, self._expire, info.mid, ack)
        return future

    def _expiry_properties(self, expiry_interval: int) -> Properties:
        properties = self._properties.get(expiry_interval)
        if properties is None:
            if len(self._properties) >= _MAX_CACHED_PROPERTIES:
                self._properties.clear()
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.MessageExpiryInterval = expiry_interval
            self._properties[expiry_interval] = properties
        return properties

    def _expire(self, mid: int, ack: _Ack) -> None:
        pending = self._client._pending_publishes
        if pending.get(mid) is ack:  # type: ignore[comparison-overlap]
            del pending[mid]
        if not ack.future.done():
            # aiomqtt's own text for a publish whose acknowledgement timed out.
            ack.future.set_exception(aiomqtt.MqttError("Operation timed out"))

    async def wait_closed(self) -> None:
        # The publisher subscribes to nothing, so the message iterator never yields;
        # it only ends, with MqttError, when the connection is lost. That is
        # aiomqtt's one public signal for "connection gone": a pending publish
        # would otherwise only notice at its own timeout.
        async for _ in self._client.messages:
            pass


@contextlib.asynccontextmanager
async def connect_aiomqtt(settings: MqttSettings) -> AsyncIterator[MqttConnection]:
    """The default :data:`ConnectFactory`: one aiomqtt connection.

    Args:
        settings: Where and how to connect.

    Yields:
        The connection; a DISCONNECT is sent when the context is left.

    Raises:
        aiomqtt.MqttError: Connecting failed (refused, timeout, TLS, CONNACK).
        OSError: The TLS files cannot be read (``ssl.SSLError`` is one).
    """
    client = await _client(settings, identifier=settings.client_id)
    try:
        async with client:
            _DirectWrites.install(client)
            yield _AiomqttConnection(client, settings)
    finally:
        _close_socket(client)


class _DirectWrites:
    """Writes paho's queued packets from the event loop at once, with one wake-up.

    aiomqtt hands each "paho has something to write" to the loop with
    ``call_soon_threadsafe(add_writer)`` - made for the connect, which runs in
    an executor thread. Once connected, every packet is queued on the loop's
    own thread, and that path costs, per screen pop: a write and a read of the
    loop's self-pipe, registering and unregistering the socket with epoll and
    one more turn of the loop. Here the packets queued during one turn of the
    loop are written at its end (``call_soon``), straight away; only a socket
    that cannot take them all (a slow broker) is watched for writability.

    Packets queued together go out in one ``send()``: on loopback most of a
    message's CPU is that system call (the kernel delivers the segment to the
    broker in the sender's time). Under load, a flush within
    :data:`_MIN_FLUSH_GAP_S` of the previous one waits for the rest of that
    gap, so pops a few milliseconds apart share a segment; a lone pop is
    written in the same turn of the loop.

    Also switches Nagle's algorithm off (TCP): a pop queued while the previous
    one is not yet acknowledged by TCP would otherwise wait for that ACK, which
    a broker with delayed ACKs sends up to 40 ms late.
    """

    def __init__(self, client: aiomqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._paho = client._client
        self._loop = loop
        self._scheduled = False
        self._watched: int | None = None
        self._last_flush = -_MIN_FLUSH_GAP_S

    @classmethod
    def install(cls, client: aiomqtt.Client) -> None:
        """Take over paho's write callbacks of a connected client (on the loop's thread)."""
        writes = cls(client, asyncio.get_running_loop())
        paho = client._client
        sock = paho.socket()
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        paho.on_socket_register_write = writes._register
        paho.on_socket_unregister_write = writes._unregister
        if paho.want_write():  # queued before the switch (nothing, normally)
            writes._register(paho, None, sock)

    def _register(self, _paho: object, _userdata: object, _sock: object) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # another thread: never the case after the connect
            on_loop = False
        if not on_loop:
            self._loop.call_soon_threadsafe(self._flush)
            return
        due = self._last_flush + _MIN_FLUSH_GAP_S
        if due > self._loop.time():
            self._loop.call_at(due, self._flush)
        else:
            self._loop.call_soon(self._flush)

    def _unregister(self, _paho: object, _userdata: object, _sock: object) -> None:
        if self._watched is not None:
            self._loop.remove_writer(self._watched)
            self._watched = None

    def _flush(self) -> None:
        self._scheduled = False
        self._last_flush = self._loop.time()
        _merge_queued(self._paho)
        self._write()
        sock = self._paho.socket()
        if self._paho.want_write() and self._watched is None and sock is not None:
            self._watched = sock.fileno()
            self._loop.add_writer(self._watched, self._write)

    def _write(self) -> None:
        try:
            self._paho.loop_write()
        except Exception as exc:
            # As aiomqtt's own writer: a failed write is the connection's end.
            disconnected = self._client._disconnected
            if not disconnected.done():
                disconnected.set_exception(exc)


def _merge_queued(paho: mqtt.Client) -> None:
    """Join the packets paho has queued into one, so that one ``send()`` writes them.

    paho writes its queue one ``send()`` per packet (``_packet_write``). After
    writing a packet it acts only on two kinds: a QoS 0 PUBLISH (its
    ``on_publish``) and a DISCONNECT (closes the socket). Every other packet
    (QoS 1 PUBLISH, PUBACK, PINGREQ ...) is done once its bytes are out: its
    acknowledgement is tracked by message id elsewhere. So a run of such
    packets at the head of the queue is merged into one entry of the first
    one's kind; the two special kinds, and what follows them, stay as they are.
    A partly written head packet contributes only its unwritten bytes.
    """
    queue = paho._out_packet
    if len(queue) < 2:
        return
    run = []
    for packet in queue:
        kind = packet["command"] & 0xF0
        if kind == DISCONNECT or (kind == PUBLISH and packet["qos"] == 0):
            break
        run.append(packet)
    if len(run) < 2:
        return
    data = b"".join(packet["packet"][packet["pos"] :] for packet in run)
    for _ in run:
        queue.popleft()
    first = run[0]
    queue.appendleft(
        {
            "command": first["command"],
            "mid": first["mid"],
            "qos": first["qos"],
            "pos": 0,
            "to_process": len(data),
            "packet": data,
            "info": first["info"],
        }
    )


def _close_socket(client: aiomqtt.Client) -> None:
    """Make sure the client's socket is closed and unregistered from the loop.

    When the broker accepts the TCP (and TLS) connection but no CONNACK arrives in
    time, aiomqtt 2.5 raises a timeout and leaves paho's socket open, still
    registered with the event loop, and its keepalive task running. Retrying
    forever would leak one such zombie connection per attempt. paho's
    ``_sock_close`` is the routine that closes the socket *and* runs the
    callbacks aiomqtt needs to unregister it; after a normal exit it is a no-op.
    """
    client._client._sock_close()


# ----------------------------------------------------------------- subscriber


async def subscribe(
    settings: MqttSettings,
    topic_filter: str,
    *,
    identifier: str | None = None,
    rand: Callable[[], float] = random.random,
) -> AsyncGenerator[tuple[str, bytes], None]:
    """Yield ``(topic, payload)`` of messages matching a filter, reconnecting forever.

    For ``pbxbridge watch``. Uses its own client whose identifier differs from the
    publisher's (a shared identifier would make the broker drop the daemon's
    connection). The session is clean: messages published while disconnected are
    not seen, and QoS 1 may show a message twice. Close the iterator
    (``contextlib.aclosing``) to disconnect promptly.

    Args:
        settings: Broker settings (the watch user's credentials).
        topic_filter: Filter below :attr:`MqttSettings.topic_prefix`; ``+`` and
            ``#`` allowed, e.g. ``agents/+/#``.
        identifier: Client identifier (default: ``<client_id>-watch-<random>``).
        rand: Uniform ``[0, 1]`` source for the backoff jitter.

    Yields:
        The full topic (prefix included) and the payload of each message.

    Raises:
        ValueError: Invalid topic filter.
    """
    validate_topic(topic_filter, wildcards=True)
    full_filter = settings.full_topic(topic_filter)
    identifier = identifier or f"{settings.client_id}-watch-{secrets.token_hex(3)}"
    inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    # The same reconnect loop, backoff and failure logging as the publisher's;
    # it runs in a task that fills the inbox, and ends when the iterator is closed.
    supervisor = ConnectionSupervisor(
        owner="subscribe",
        log_prefix="mqtt.subscriber_",
        log_fields={"host": settings.host, "topic_filter": full_filter},
        backoff_initial=settings.backoff_initial,
        backoff_max=settings.backoff_max,
        task_name="mqtt-subscriber",
        forget_error_on_connect=True,
        rand=rand,
    )

    async def session() -> SessionEnd:
        opened_at: float | None = None
        try:
            client = await _client(settings, identifier=identifier)
            try:
                async with client:
                    opened_at = asyncio.get_running_loop().time()
                    await client.subscribe(
                        full_filter, qos=settings.qos, timeout=settings.connect_timeout
                    )
                    supervisor.set_state(ConnectionState.CONNECTED)
                    log.info("mqtt.subscribed", host=settings.host, topic_filter=full_filter)
                    async for message in client.messages:
                        inbox.put_nowait((message.topic.value, message.payload))
            finally:
                _close_socket(client)
        except (aiomqtt.MqttError, OSError) as exc:
            return SessionEnd(describe(exc), opened_at=opened_at)
        return SessionEnd("message stream ended", opened_at=opened_at)

    runner = asyncio.create_task(supervisor.run(session), name="mqtt-subscriber")
    try:
        while True:
            yield await inbox.get()
    finally:
        await supervisor.stop()
        await asyncio.wait([runner])
