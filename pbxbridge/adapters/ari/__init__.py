"""In-house asyncio client for the Asterisk REST Interface (ARI).

See :mod:`pbxbridge.adapters.ari.client` for the design and the delivery guarantees.
"""

from .client import (
    AriClient,
    AriConfig,
    AriConnectionStatus,
    AriEvent,
    AriState,
    ConnectedCallback,
    EventHandler,
    backoff_delay,
    ordering_key,
)
from .errors import (
    AriConflict,
    AriError,
    AriNotFound,
    AriUnavailable,
    AriVariableNotFound,
)

__all__ = [
    "AriClient",
    "AriConfig",
    "AriConflict",
    "AriConnectionStatus",
    "AriError",
    "AriEvent",
    "AriNotFound",
    "AriState",
    "AriUnavailable",
    "AriVariableNotFound",
    "ConnectedCallback",
    "EventHandler",
    "backoff_delay",
    "ordering_key",
]
