"""Turning panoramisk messages into plain dicts, and what to key them by.

Handlers of the AMI adapter never see panoramisk objects: every event (and every
action response) is a ``dict[str, str]`` with the header names exactly as Asterisk
sent them (``Event``, ``Uniqueid``, ``Linkedid``, ``CallerIDName``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "MULTI_VALUE_SEPARATOR",
    "AmiEvent",
    "chan_variables",
    "normalize_event",
    "ordering_key",
]

AmiEvent = dict[str, str]
"""One AMI event or response: header name (as Asterisk spells it) to value."""

#: Headers that Asterisk sends more than once in one message (``ChanVariable`` for
#: each ``channelvars`` entry, ``Output`` lines of ``Command``) are joined with this.
#: AMI values cannot contain a line break (it would end the header), so joining with
#: one is unambiguous.
MULTI_VALUE_SEPARATOR: Final = "\n"

# Message attributes panoramisk keeps outside the header mapping.
CONTENT_KEY: Final = "content"


def normalize_event(raw: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> AmiEvent:
    """Convert a panoramisk ``Message`` (or any header mapping) to a plain dict.

    * Keys keep Asterisk's spelling. panoramisk's ``CaseInsensitiveDict`` iterates
      over the original keys, so nothing is lower-cased.
    * Repeated headers (a list in panoramisk) are joined with
      :data:`MULTI_VALUE_SEPARATOR`; see :func:`chan_variables` to split
      ``ChanVariable`` values again.
    * Values are ``str``; ``None`` becomes ``""``.
    * The body of old-style ``Response: Follows`` messages, if any, is kept under
      ``"content"``; panoramisk's always-present empty ``content`` is dropped.

    Args:
        raw: A panoramisk ``Message``, a mapping, or ``(key, value)`` pairs.

    Returns:
        A new ``dict[str, str]``.
    """
    items = raw.items() if isinstance(raw, Mapping) else raw
    event: AmiEvent = {}
    for key, value in items:
        text = _text(value)
        if key == CONTENT_KEY and not text:
            # QUIRK: panoramisk's Message stores its body as an ordinary *key*
            # "content" (its constructor passes content=... to dict.update), so
            # every message has one, normally empty. Keep it only with a body.
            continue
        event[str(key)] = text
    return event


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return MULTI_VALUE_SEPARATOR.join(_text(v) for v in value)
    return str(value)


def chan_variables(event: Mapping[str, str], prefix: str = "") -> dict[str, str]:
    """Channel variables that Asterisk attached to an event (``channelvars``).

    With ``channelvars = PBXBRIDGE_TENANT`` in ``manager.conf``, every event that
    describes a channel carries ``ChanVariable: PBXBRIDGE_TENANT=t1``; events about
    two channels (``AgentCalled``, ``AgentConnect``, ...) carry the second
    channel's as ``DestChanVariable``. Each variable is one header, so several
    variables arrive as a repeated header (joined by :func:`normalize_event`).

    Args:
        event: A normalised event.
        prefix: ``""`` for the (caller) channel, ``"Dest"`` for the second one.

    Returns:
        Variable name to value; empty when the event carries none.
    """
    raw = event.get(f"{prefix}ChanVariable", "")
    variables: dict[str, str] = {}
    for item in raw.split(MULTI_VALUE_SEPARATOR):
        name, sep, value = item.partition("=")
        if sep and name:
            variables[name] = value
    return variables


def ordering_key(event: Mapping[str, str]) -> str:
    """The lane an event is delivered in: events of one lane stay in order.

    * ``Linkedid`` first: app_queue's events of one call involve the caller
      channel and one channel per rung agent, each with its own ``Uniqueid``,
      but all share the caller's ``Linkedid``. Keying by it keeps
      ``QueueCallerJoin`` → ``AgentCalled`` → ``AgentConnect`` → agent
      ``Hangup`` → ``AgentComplete`` of one call strictly ordered.
    * ``Uniqueid`` when there is no ``Linkedid``.
    * ``""`` (one shared lane) for events about no channel at all
      (``QueueMemberStatus``, ``DeviceStateChange``, ``FullyBooted``, ...): they
      are comparatively rare, and for member/device state the order matters.

    Args:
        event: A normalised event.

    Returns:
        The lane key.
    """
    return event.get("Linkedid") or event.get("Uniqueid") or ""
