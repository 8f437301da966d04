"""Translate a routing decision into Asterisk channel variables and a dialplan target.

Shared by every entry point (ARI Stasis, FastAGI), so a call is tagged the same
way whichever path it took. The contract with the shipped dialplan snippets in
``dialplans/`` is the list of variables below: change both together.

Every value is made dialplan-safe here. ARI and AGI set variables verbatim
(nothing is evaluated), but the dialplan later passes some of them as
application arguments (``Queue(${PBXBRIDGE_QUEUE},t,,${PBXBRIDGE_WHISPER})``),
where a comma would start a new argument and a ``|`` or ``)`` could confuse
older parsers. Values from the rules are validated at load time; values that
come from the caller (name, number, DID) are sanitised again here.
"""

from __future__ import annotations

import re

from pbxbridge.core.models import Action, Decision

_UNSAFE = re.compile(r"[^\w +*#@.:/'&()-]", re.UNICODE)

UNKNOWN_TENANT = "unknown"
"""Tag for rejected calls that belong to no tenant."""
NO_NUMBER = "anonymous"
"""``CALLERID(num)`` for a caller without a usable number (withheld, absent or
not a phone number): the word Asterisk and SIP phones use, never caller data."""
INVALID_NUMBER = "ungültige Nummer"
"""Appended to the caller-ID name when the caller sent a "number" that is none,
so the agent knows the missing number is not a withheld one."""


def dialplan_safe(value: str, limit: int = 80) -> str:
    """Strip characters that could split or escape a dialplan argument.

    Args:
        value: Any text.
        limit: Maximum length.

    Returns:
        ``value`` without commas, semicolons, quotes, ``$``, braces, brackets,
        pipes, backslashes and control characters, cut to ``limit``.
    """
    return _UNSAFE.sub("", value)[:limit]


def decision_variables(decision: Decision) -> dict[str, str]:
    """The channel variables that tag a call with its decision.

    Args:
        decision: The routing decision.

    Returns:
        Variable name (or dialplan function) to value. Empty values are kept on
        purpose where the dialplan tests them (``PBXBRIDGE_WHISPER``), and
        ``CALLERID(name)`` and ``CALLERID(num)`` are always set so the caller's
        original (possibly hostile) name and number never reach an agent's
        phone: the number becomes the normalised E.164 one, or
        :data:`NO_NUMBER` when there is none (withheld, absent, or not a phone
        number, e.g. ``<script>`` or ``$(reboot)``; then the name ends in
        :data:`INVALID_NUMBER`: "WAR ungültige Nummer").
    """
    tenant = decision.tenant or UNKNOWN_TENANT
    variables = {
        "PBXBRIDGE_TENANT": tenant,
        "PBXBRIDGE_TENANT_NAME": dialplan_safe(decision.tenant_name),
        "PBXBRIDGE_DID": dialplan_safe(decision.did, 32),
        "PBXBRIDGE_VIA_115": "1" if decision.via_115 else "0",
        "PBXBRIDGE_CALLER": decision.caller or "",
        # CHANNEL(accountcode) feeds the CDR's accountcode; writing
        # CDR(accountcode) does the same but logs a deprecation warning per call.
        "CHANNEL(accountcode)": tenant,
        "CALLERID(name)": _shown_name(decision),
        "CALLERID(num)": decision.caller or NO_NUMBER,
    }
    queue = decision.queue
    if queue is not None:
        variables["PBXBRIDGE_QUEUE"] = queue.queue
        variables["QUEUE_PRIO"] = str(queue.priority)
        variables["PBXBRIDGE_WHISPER"] = queue.whisper
        variables["PBXBRIDGE_QUEUE_TIMEOUT"] = str(queue.timeout) if queue.timeout else ""
    closed = decision.closed
    if closed is not None:
        variables["PBXBRIDGE_CLOSED_ANNOUNCE"] = closed.announce
        variables["PBXBRIDGE_CLOSED_THEN"] = closed.then.value
        variables["PBXBRIDGE_CLOSED_TARGET"] = dialplan_safe(closed.target)
    if decision.reject is not None:
        variables["PBXBRIDGE_REJECT_ANNOUNCE"] = decision.reject.announce
    return variables


def _shown_name(decision: Decision) -> str:
    if not decision.caller_invalid:
        return dialplan_safe(decision.callerid_name)
    # Cut the name, never the marker.
    name = dialplan_safe(decision.callerid_name, 80 - len(INVALID_NUMBER) - 1)
    return f"{name} {INVALID_NUMBER}".lstrip()


PACKED_VARIABLE = "PBXBRIDGE_DECISION"
"""The one channel variable that carries a whole decision (see :func:`pack_decision`)."""

PACKED_VERSION = "1"
PACKED_FIELDS = (
    "PBXBRIDGE_TENANT",
    "PBXBRIDGE_TENANT_NAME",
    "PBXBRIDGE_DID",
    "PBXBRIDGE_VIA_115",
    "PBXBRIDGE_CALLER",
    "CHANNEL(accountcode)",
    "CALLERID(name)",
    "PBXBRIDGE_QUEUE",
    "QUEUE_PRIO",
    "PBXBRIDGE_WHISPER",
    "PBXBRIDGE_QUEUE_TIMEOUT",
    "PBXBRIDGE_CLOSED_ANNOUNCE",
    "PBXBRIDGE_CLOSED_THEN",
    "PBXBRIDGE_CLOSED_TARGET",
    "PBXBRIDGE_REJECT_ANNOUNCE",
    "CALLERID(num)",
)
"""Field order after the version: field n+2 of the packed value is ``PACKED_FIELDS[n]``.

``[pbxbridge-tags]`` in ``dialplans/pbxbridge.conf`` unpacks in this order. New
fields go at the end: a dialplan that knows fewer fields ignores them."""


def pack_decision(decision: Decision) -> str:
    """All tag variables of a decision in one ``|``-separated value.

    Every ARI request costs a round trip and CPU on both sides; setting fifteen
    variables one by one made routing take ~4 ms and ~3 ms of daemon CPU per
    call. One variable and one ``continue`` do the same job: the shipped
    dialplan's ``[pbxbridge-tags]`` splits it with ``CUT()`` into the usual
    variables. ``|`` cannot occur inside a field: values from callers pass
    :func:`dialplan_safe`, values from the rules are validated at load time.

    Args:
        decision: The routing decision.

    Returns:
        ``1|tenant|tenant name|did|…`` (see :data:`PACKED_FIELDS`).
    """
    values = decision_variables(decision)
    fields = [values.get(name, "").replace("|", "") for name in PACKED_FIELDS]
    return "|".join((PACKED_VERSION, *fields))


def destination(decision: Decision) -> tuple[str, str, int]:
    """Where the call continues in the dialplan after the decision.

    Args:
        decision: A decision with action ``queue``, ``closed`` or ``reject``.

    Returns:
        ``(context, extension, priority)``.

    Raises:
        ValueError: For ``menu`` decisions (the menu must be played first).
    """
    if decision.action is Action.QUEUE and decision.queue is not None:
        return decision.queue.context, "s", 1
    if decision.action is Action.CLOSED and decision.closed is not None:
        return decision.closed.context, "s", 1
    if decision.action is Action.REJECT:
        context = decision.reject.context if decision.reject else "pbxbridge-reject"
        return context, "s", 1
    raise ValueError(f"no dialplan destination for action {decision.action.value}")
