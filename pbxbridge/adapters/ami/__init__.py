"""AMI adapter: follows app_queue over the Asterisk Manager Interface (panoramisk 1.4).

See :mod:`pbxbridge.adapters.ami.client` for the design, the panoramisk defects it
works around, and the event delivery guarantees.
"""

from .client import (
    AmiClient,
    AmiConfig,
    AmiState,
    AmiStatus,
    ConnectedCallback,
    EventHandler,
    backoff_delay,
)
from .errors import AmiActionFailed, AmiError, AmiUnavailable
from .events import AmiEvent, chan_variables, normalize_event, ordering_key
from .protocol import Utf8AmiProtocol, parse_message, plain_event, split_message
from .queue import QueueEntry, QueueMember, QueueParams, QueueSnapshot, parse_queue_status
from .subscribers import AmiSubscribers, Consumer

__all__ = [
    "AmiActionFailed",
    "AmiClient",
    "AmiConfig",
    "AmiError",
    "AmiEvent",
    "AmiState",
    "AmiStatus",
    "AmiSubscribers",
    "AmiUnavailable",
    "ConnectedCallback",
    "Consumer",
    "EventHandler",
    "QueueEntry",
    "QueueMember",
    "QueueParams",
    "QueueSnapshot",
    "Utf8AmiProtocol",
    "backoff_delay",
    "chan_variables",
    "normalize_event",
    "ordering_key",
    "parse_message",
    "parse_queue_status",
    "plain_event",
    "split_message",
]
