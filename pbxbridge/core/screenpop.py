"""Screen-pop and wallboard messages: what agents and wallboards are told.

Pure functions from a call record and a pop to a JSON-ready dict. The MQTT
adapter serialises and publishes them; the schema in ``docs/screenpop.schema.json``
describes them (every test checks published messages against it).

Two audiences, two topics:

* ``{prefix}/agents/{agent}/screenpop``: the agent whose phone rings gets
  everything needed to greet and help the caller, including the caller's number
  and name (personal data: the broker's ACL lets each agent read only its own
  topic).
* ``{prefix}/tenants/{tenant}/calls``: a stream per tenant for wallboards, with
  no personal data at all (no number, no name).
"""

from __future__ import annotations

import re
from datetime import datetime

from pbxbridge.core.lifecycle import CallRecord, Pop, State

SCHEMA_VERSION = 1
_TOPIC_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def topic_segment(value: str) -> str:
    """Make a value safe as one MQTT topic level.

    ``+``, ``#`` and ``/`` have meaning in MQTT topics; an agent id is ours
    (from app_queue's member name) but must still never widen a topic.

    Args:
        value: An agent or tenant id.

    Returns:
        The value with anything outside ``[A-Za-z0-9_.-]`` replaced by ``_``.
    """
    return _TOPIC_SAFE.sub("_", value)[:64] or "_"


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
    record: CallRecord, pop: Pop, *, repeat_calls_7d: int | None = None
) -> dict[str, object]:
    """The screen pop for one agent.

    Args:
        record: The call record after the event.
        pop: The pop to send.
        repeat_calls_7d: How often this number called in the last 7 days, when known.

    Returns:
        A JSON-ready dict (see ``docs/screenpop.schema.json``).
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
            "withheld": d.caller is None,
            "name": d.caller_name,
        },
        "via_115": d.via_115,
        "queue": record.queue,
        "waited_s": round(record.waited_s(pop.at), 1),
        "repeat_calls_7d": repeat_calls_7d,
        "kb_url": d.screen_pop_url or None,
        "times": _times(record),
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
