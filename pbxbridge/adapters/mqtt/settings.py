"""Connection and buffering settings for the MQTT publisher.

The password is held here (it has to reach the client) but is excluded from
``repr()`` and never logged; in production it comes from the systemd credential
``mqtt-password`` via :func:`pbxbridge.runtime.settings.read_secret`.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["DEFAULT_TOPIC_PREFIX", "UNIX_PREFIX", "MqttSettings", "build_tls_context"]

DEFAULT_TOPIC_PREFIX: Final = "pbxbridge/v1"

_ENV_PREFIX: Final = "PBXBRIDGE_MQTT_"
_TRUE: Final = frozenset({"1", "yes", "true", "on"})
_FALSE: Final = frozenset({"0", "no", "false", "off", ""})


UNIX_PREFIX: Final = "unix:"
"""``host`` of a broker reached over a Unix domain socket: ``unix:/path``."""


def _default_client_id() -> str:
    # Unique per process: two daemons (or a stray test run) sharing one client id
    # would make the broker disconnect each of them whenever the other connects,
    # an endless take-over loop. Host and PID also make broker logs readable.
    return f"pbxbridge-{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class MqttSettings:
    """How to reach the broker and how much to buffer while it is unreachable.

    Attributes:
        host: Broker host name or address, or ``unix:/path/to/socket`` for a
            broker on the same machine listening on a Unix domain socket
            (mosquitto: ``listener 0 /run/mosquitto/mqtt.sock``): no TCP
            listener needed, the file's permissions decide who may connect;
            no TLS and no port with it.
        port: Broker port; ``None`` means 8883 with TLS, otherwise 1883.
        username: User name, or ``None`` for anonymous access.
        password: Password (only with ``username``). Never in ``repr()`` or logs.
        tls: Connect with TLS. The server certificate and host name are verified
            against ``ca_file`` (or the system trust store when it is ``None``).
        ca_file: PEM file of the CA(s) to trust (TLS only).
        cert_file: PEM client certificate, for brokers requiring one (TLS only).
        key_file: PEM key of ``cert_file``; ``None`` if the key is inside it.
        client_id: MQTT client identifier. Must be unique among the broker's
            clients; the default (``pbxbridge-<host>-<pid>``) is.
        topic_prefix: Prepended (with ``/``) to every topic given to ``publish``
            and ``subscribe``; ``""`` for none.
        qos: QoS of published messages (1 = at least once; 0 = at most once).
        mqtt_version: ``"5"`` (default) or ``"3.1.1"``. With MQTT 5 a message's
            ``expires_at`` is also sent as its Message Expiry Interval, so the
            broker does not deliver it late to a subscriber that was offline
            with a persistent session; MQTT 3.1.1 cannot express that.
        buffer_size: Messages held while the broker is slow or unreachable. When
            full, the oldest message is dropped.
        max_inflight: Messages sent but not yet acknowledged, at most. Bounds the
            duplicates a connection loss can cause.
        keepalive: MQTT keepalive in seconds; a silent broker is detected as gone
            after about 1.5 times this.
        connect_timeout: Seconds allowed for TCP+TLS set-up and for the broker's
            CONNACK.
        publish_timeout: Seconds to wait for a PUBACK before the connection is
            treated as broken (and rebuilt).
        backoff_initial: Reconnect delay ceiling after the first failure, seconds.
        backoff_max: Reconnect delay cap in seconds. A connection that stayed up
            this long resets the backoff.
    """

    host: str = "127.0.0.1"
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_id: str = field(default_factory=_default_client_id)
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    qos: int = 1
    mqtt_version: Literal["3.1.1", "5"] = "5"
    buffer_size: int = 1000
    max_inflight: int = 16
    keepalive: int = 30
    connect_timeout: float = 5.0
    publish_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0

    def __post_init__(self) -> None:
        """Validate early, with messages that never echo the password."""
        if not self.host:
            raise ValueError("host must not be empty")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")
        if self.host.startswith(UNIX_PREFIX):
            if not self.host.removeprefix(UNIX_PREFIX).startswith("/"):
                raise ValueError("a unix socket must be an absolute path: unix:/path/to/socket")
            if self.tls:
                raise ValueError("TLS over a unix socket is not supported: use one or the other")
            if self.port is not None:
                raise ValueError("a port has no meaning with a unix socket")
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            # Almost certainly a forgotten tls=True: refuse rather than silently
            # sending the password in clear text.
            raise ValueError("ca_file/cert_file/key_file need tls=True")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file given without cert_file")
        if not self.client_id:
            raise ValueError("client_id must not be empty")
        if self.topic_prefix and (
            self.topic_prefix.startswith("/")
            or self.topic_prefix.endswith("/")
            or any(c in self.topic_prefix for c in "+#\0")
        ):
            raise ValueError("topic_prefix must not start/end with '/' or contain + # NUL")
        if self.qos not in (0, 1):
            # QoS 2 would buy exactly-once from the broker, but our own retry after a
            # reconnect re-sends with a new packet id, so it could not keep that promise.
            raise ValueError("qos must be 0 or 1")
        if self.mqtt_version not in ("3.1.1", "5"):
            raise ValueError('mqtt_version must be "3.1.1" or "5"')
        if self.buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        if not 1 <= self.max_inflight <= 65535:
            raise ValueError("max_inflight must be between 1 and 65535")
        if not 0 <= self.keepalive <= 65535:
            raise ValueError("keepalive must be between 0 and 65535")
        for name in ("connect_timeout", "publish_timeout", "backoff_initial", "backoff_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must not be below backoff_initial")

    @property
    def unix_path(self) -> str | None:
        """The broker's Unix socket path (``host`` ``unix:/path``), else ``None``."""
        if self.host.startswith(UNIX_PREFIX):
            return self.host.removeprefix(UNIX_PREFIX)
        return None

    @property
    def effective_port(self) -> int:
        """The port actually used (the protocol default when ``port`` is ``None``)."""
        if self.port is not None:
            return self.port
        return 8883 if self.tls else 1883

    def full_topic(self, topic: str) -> str:
        """Prefix a topic (or topic filter) with :attr:`topic_prefix`.

        Args:
            topic: Topic relative to the prefix.

        Returns:
            The topic as seen on the broker.
        """
        return f"{self.topic_prefix}/{topic}" if self.topic_prefix else topic

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MqttSettings:
        """Read ``PBXBRIDGE_MQTT_*`` variables; the password via ``read_secret``.

        Variables (all optional): ``HOST``, ``PORT``, ``USER``, ``TLS`` (yes/no),
        ``CA_FILE``, ``CERT_FILE``, ``KEY_FILE``, ``CLIENT_ID``, ``TOPIC_PREFIX``,
        ``VERSION`` (5 or 3.1.1), ``BUFFER_SIZE``, ``KEEPALIVE``,
        ``CONNECT_TIMEOUT``.

        Args:
            env: The environment (default ``os.environ``).

        Returns:
            The settings.

        Raises:
            ValueError: On malformed values (``SettingsError`` is one).
        """
        # Imported here: the adapter must stay usable without the daemon's runtime.
        from pbxbridge.runtime.settings import read_secret

        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(_ENV_PREFIX + name, "").strip()
            return value or None

        def number(name: str, kind: type[int] | type[float]) -> dict[str, float]:
            text = get(name)
            if text is None:
                return {}
            try:
                return {name.lower(): kind(text)}
            except ValueError:
                raise ValueError(f"{_ENV_PREFIX}{name}={text!r} is not a number") from None

        tls_text = (get("TLS") or "").lower()
        if tls_text not in _TRUE | _FALSE:
            raise ValueError(f"{_ENV_PREFIX}TLS={tls_text!r}: use yes or no")
        username = get("USER")
        password = read_secret("mqtt", env) or None
        kwargs: dict[str, object] = {
            "host": get("HOST") or cls.host,
            "username": username,
            # A password without a user is a leftover credential file; ignore it
            # rather than refusing to start.
            "password": password if username else None,
            "tls": tls_text in _TRUE,
            "ca_file": get("CA_FILE"),
            "cert_file": get("CERT_FILE"),
            "key_file": get("KEY_FILE"),
        }
        if (client_id := get("CLIENT_ID")) is not None:
            kwargs["client_id"] = client_id
        if (version := get("VERSION")) is not None:
            kwargs["mqtt_version"] = version
        if (prefix := env.get(_ENV_PREFIX + "TOPIC_PREFIX")) is not None:
            kwargs["topic_prefix"] = prefix.strip()
        kwargs |= number("PORT", int)
        kwargs |= number("BUFFER_SIZE", int)
        kwargs |= number("KEEPALIVE", int)
        kwargs |= number("CONNECT_TIMEOUT", float)
        return cls(**kwargs)  # type: ignore[arg-type]


def build_tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """Create the client-side TLS context (reads files: call off the event loop).

    Certificate and host name verification stay on: the screen pops carry caller
    numbers and names, and a broker impersonator must not receive them.

    Args:
        settings: The settings (``tls`` should be true).

    Returns:
        A context verifying the broker against ``ca_file`` (or the system store),
        presenting the client certificate if one is configured.

    Raises:
        OSError: A file cannot be read.
        ssl.SSLError: A file is not valid PEM or the key does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    return context
