"""MQTT adapter: the buffered screen-pop publisher and a subscriber for ``watch``.

See :mod:`pbxbridge.adapters.mqtt.publisher` for delivery semantics (order,
at-least-once, stale and overflow drops).
"""

from .publisher import (
    ConnectFactory,
    MqttConnection,
    MqttPublisher,
    MqttStatus,
    backoff_delay,
    connect_aiomqtt,
    subscribe,
)
from .settings import DEFAULT_TOPIC_PREFIX, MqttSettings, build_tls_context

__all__ = [
    "DEFAULT_TOPIC_PREFIX",
    "ConnectFactory",
    "MqttConnection",
    "MqttPublisher",
    "MqttSettings",
    "MqttStatus",
    "backoff_delay",
    "build_tls_context",
    "connect_aiomqtt",
    "subscribe",
]
