"""Screen-pop and wallboard messages: what agents and wallboards are told.

Pure functions from a call record and a pop to a JSON-ready dict. The MQTT
adapter serialises and publishes them; the JSON Schemas in ``pbxbridge/schemas/``
(``screenpop.schema.json``, ``wallboard.schema.json``) describe them (every test
checks published messages against them).

Two audiences, two topics:

* ``{prefix}/agents/{agent}/screenpop``: the agent whose phone rings gets
  everything needed to greet and help the caller, including the caller's number
  and name (personal data: the broker's ACL lets each agent read only its own
  topic).
* ``{prefix}/tenants/{tenant}/calls``: a stream per tenant for wallboards, with
  no personal data at all (no number, no name).
"""

from __future__ import annotations

import hashlib
import string
from datetime import datetime

from pbxbridge.core.lifecycle import CallRecord, Pop, PopKind, State
from pbxbridge.core.virtual_hold import VirtualHold

SCHEMA_VERSION = 1
_TOPIC_KEEP = frozenset(string.ascii_letters + string.digits + "_.-")
SEGMENT_LIMIT = 64 * 12
"""Longest escaped segment kept whole: any id of up to 64 characters (the agents
file's limit) fits, even with every character escaped (4 UTF-8 bytes x ``%XX``)."""
_DIGEST_HEX = 32


def topic_segment(value: str) -> str:
    """Make an id one MQTT topic level, injectively.

    ``+``, ``#`` and ``/`` have meaning in MQTT topics, and the broker's ACL
    gives each agent its own level (``%u``): two ids must never share one, or
    one agent reads another's pops. Letters, digits and ``_.-`` stay as they
    are (``agent1`` stays ``agent1``); every other character becomes ``%XX``
    per UTF-8 byte (``Jörg Müller`` → ``J%C3%B6rg%20M%C3%BCller``), which
    decodes back to exactly one id. A segment longer than
    :data:`SEGMENT_LIMIT` (only ids of more than 64 characters, which the
    agents file refuses) is cut at an escape boundary and ends with ``~`` and
    128 bits of the id's SHA-256; ``~`` itself is always escaped, so such a
    segment cannot equal a whole one.

    Args:
        value: An agent or tenant id.

    Returns:
        The topic level.

    Raises:
        ValueError: For an empty id (it has no topic of its own).
    """
    if not value:
        raise ValueError("an empty id has no topic level")
    # surrogatepass: a lone surrogate (from a mis-decoded AMI field) still
    # gets bytes of its own instead of an exception.
    raw = value.encode("utf-8", "surrogatepass")
    encoded = "".join(c if c in _TOPIC_KEEP else _escape(c) for c in value)
    if len(encoded) <= SEGMENT_LIMIT:
        return encoded
    head = encoded[: SEGMENT_LIMIT - 1 - _DIGEST_HEX]
    escape = head.rfind("%", len(head) - 2)
    if escape != -1:  # do not cut inside a %XX escape
        head = head[:escape]
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:_DIGEST_HEX]}"


def _escape(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))


def agent_topic(prefix: str, agent: str) -> str:
    """The screen-pop topic of one agent.

    Args:
        prefix: Topic prefix (``pbxbridge/v1``).
        agent: Agent id.

    Returns:
        ``{prefix}/agents/{agent}/screenpop``.
    """
    return f"{prefix}/agents/{topic_segment(agent)}/screenpop"


def tenant_topic(prefix: str, tenant: str) -> str:
    """The wallboard topic of one tenant.

    Args:
        prefix: Topic prefix.
        tenant: Tenant id.

    Returns:
        ``{prefix}/tenants/{tenant}/calls``.
    """
    return f"{prefix}/tenants/{topic_segment(tenant)}/calls"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _times(record: CallRecord) -> dict[str, str | None]:
    return {
        "routed": _iso(record.routed_at),
        "queued": _iso(record.queued_at),
        "answered": _iso(record.answered_at),
        "ended": _iso(record.ended_at),
    }


def agent_message(
    record: CallRecord,
    pop: Pop,
    *,
    repeat_calls_7d: int | None = None,
    open_callback: str | None = None,
) -> dict[str, object]:
    """The screen pop for one agent.

    Args:
        record: The call record after the event.
        pop: The pop to send.
        repeat_calls_7d: How often this number called in the last 7 days, when known.
        open_callback: The caller has an open callback ticket or a pending
            virtual hold: the note to show
            (:func:`~pbxbridge.core.virtual_hold.open_callback_note`,
            "offener Rückruf vom Di 09:14"); ``None`` when not (or not known).

    Returns:
        A JSON-ready dict (see ``pbxbridge/schemas/screenpop.schema.json``).
    """
    d = record.decision
    return {
        "v": SCHEMA_VERSION,
        "event": pop.kind.value,
        "call_id": record.call_id,
        "agent": pop.agent,
        "at": pop.at.isoformat(),
        "tenant": {"id": d.tenant or "", "name": d.tenant_name, "greeting": d.greeting},
        "did": d.did,
        "caller": {
            "number": d.caller,
            # A "number" that is none (<script>, 300 digits) was not withheld:
            # the agent sees "invalid number", as on the phone's display.
            "withheld": d.caller is None and not d.caller_invalid,
            "invalid": d.caller_invalid,
            "name": d.caller_name,
        },
        "via_115": d.via_115,
        "queue": record.queue,
        "waited_s": round(record.waited_s(pop.at), 1),
        "repeat_calls_7d": repeat_calls_7d,
        "open_callback": open_callback,
        "kb_url": d.screen_pop_url or None,
        "times": _times(record),
    }


def callback_message(
    hold: VirtualHold,
    pop: Pop,
    *,
    tenant_name: str,
    greeting: str,
    open_callback: str | None = None,
) -> dict[str, object]:
    """The screen pop of a virtual hold's callback leg (the placeholder reached an agent).

    Same fields and meaning as :func:`agent_message`, so a consumer that knows
    only those still shows a sensible card; ``virtual_hold`` marks the leg:
    ``caller.number`` is the number to be called back, ``waited_s`` how long
    ago the caller asked for the callback (acceptance to ``pop.at``), and
    ``call_id`` the original call's id (its journal row: a wrap-up of the
    callback is that call's outcome, one row per citizen's call).

    Args:
        hold: The hold whose placeholder rings or reached the agent.
        pop: The pop to send.
        tenant_name: The tenant's display name (``Gemeinde Wardenburg``).
        greeting: What the agent says when picking up.
        open_callback: As for :func:`agent_message`.

    Returns:
        A JSON-ready dict (see ``pbxbridge/schemas/screenpop.schema.json``).
    """
    requested = hold.accepted_at or hold.offered_at
    waited = max(0.0, (pop.at - requested).total_seconds())
    return {
        "v": SCHEMA_VERSION,
        "event": pop.kind.value,
        "call_id": hold.call_id,
        "agent": pop.agent,
        "at": pop.at.isoformat(),
        "tenant": {"id": hold.tenant, "name": tenant_name, "greeting": greeting},
        "did": "",
        "caller": {
            "number": hold.number,
            "withheld": hold.number is None,
            "invalid": False,
            "name": "",
        },
        "via_115": False,
        "queue": hold.queue,
        "waited_s": round(waited, 1),
        "repeat_calls_7d": None,
        "open_callback": open_callback,
        "kb_url": None,
        "virtual_hold": {
            "number": hold.number,
            "requested_at": requested.isoformat(),
            "waited_s": round(waited, 1),
            "try": hold.tries_failed + 1,
        },
        "times": {
            "routed": None,
            "queued": _iso(requested),
            "answered": _iso(pop.at) if pop.kind is not PopKind.RINGING else None,
            "ended": _iso(pop.at) if pop.kind is PopKind.ENDED else None,
        },
    }


def wallboard_message(record: CallRecord, at: datetime) -> dict[str, object]:
    """A tenant stream message: the call's state, without personal data.

    Args:
        record: The call record after the event.
        at: When the event happened.

    Returns:
        A JSON-ready dict without caller number or name.
    """
    d = record.decision
    return {
        "v": SCHEMA_VERSION,
        "event": record.state.value,
        "call_id": record.call_id,
        "at": at.isoformat(),
        "tenant": d.tenant or "",
        "via_115": d.via_115,
        "queue": record.queue,
        "agent": record.agent if record.state in (State.RINGING, State.ANSWERED) else "",
        "waited_s": round(record.waited_s(at), 1),
        "times": _times(record),
    }
