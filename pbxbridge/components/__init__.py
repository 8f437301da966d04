"""The one face every part of the daemon shows: start, stop, ``/healthz``, ``/metrics``.

Every part the composition root builds (:mod:`pbxbridge.app`) is seen here
through one small face, :class:`Component`: ``start()`` and ``stop()`` (the
background tasks it runs, the sockets it opens and closes), its piece of the
``/healthz`` body, what keeps the verdict from ``ok``, and the gauges read at
scrape time. The root starts its components in a declared order and stops
them in reverse; :func:`health` and :func:`gauges` iterate over them. A part
that is switched off is still listed, with ``None``: it then starts nothing,
reports ``{"state": "disabled"}`` (or its own "off" shape) and no problem, so
the body keeps the same keys whatever is configured.

Each face reads the public attributes of the objects it faces, and nothing
else; what it needs from the rest of the daemon (a callback, an interval) it is
given by the root. :class:`Part` is the base with nothing to start, stop or
report, and the bookkeeping of the tasks a face runs.

Modules: :mod:`~pbxbridge.components.base` (the face and its base),
:mod:`~pbxbridge.components.entry` (routing: ARI, FastAGI, calls, rules,
overrides, HTTP), :mod:`~pbxbridge.components.feeds` (what follows the calls:
AMI, tracker, MQTT, service level, journal, agent page). A new face goes in
the module of its kind, or a new one, and is exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pbxbridge.components import sounds as _sounds
from pbxbridge.components.base import DISABLED, Component, Part, Sample
from pbxbridge.components.entry import Agi, Ari, Calls, Http, Overrides, Rules
from pbxbridge.components.feeds import Ami, Journal, Mqtt, ServiceLevel, Tracker, Web
from pbxbridge.components.sounds import Sounds
from pbxbridge.components.supervisor import Supervisor
from pbxbridge.components.virtual_hold_calls import VirtualHoldCalls
from pbxbridge.components.virtual_holds import VirtualHolds
from pbxbridge.core import servicelevel
from pbxbridge.tracking import virtual_holds as _virtual_holds

__all__ = [
    "DISABLED",
    "GAUGE_HELP",
    "PROBLEM_ORDER",
    "Agi",
    "Ami",
    "Ari",
    "Calls",
    "Component",
    "Http",
    "Journal",
    "Mqtt",
    "Overrides",
    "Part",
    "Rules",
    "Sample",
    "ServiceLevel",
    "Sounds",
    "Supervisor",
    "Tracker",
    "VirtualHoldCalls",
    "VirtualHolds",
    "Web",
    "gauges",
    "health",
]

GAUGE_HELP = {
    "pbxbridge_calls_waiting": "Callers waiting in a queue now (queued or ringing).",
    "pbxbridge_service_level_ratio": (
        f"Answered within {servicelevel.THRESHOLD_S:g} s: as a share of answered calls "
        "(definition=answered) or of offered calls without short abandons "
        "(definition=offered), over the last 15 minutes or the current local day."
    ),
    "pbxbridge_up": "1 when the connection to the component is up.",
    "pbxbridge_supervisor_viewers": "Open supervisor pages and wallboards (event streams).",
    "pbxbridge_rules_generation": "Generation of the routing rules in force.",
    "pbxbridge_rules_reload_failures": "Rejected rule reloads since start.",
    "pbxbridge_calls_in_routing": (
        "Calls being routed right now (decision or 115 menu), by entry point."
    ),
    "pbxbridge_routing_failures": (
        "Calls whose routing failed and took the fallback, by entry point."
    ),
    "pbxbridge_stasis_timeouts": (
        "Calls the Stasis guard continued to pbxbridge-unrouted because they were in "
        "the application longer than PBXBRIDGE_STASIS_MAX_S (counter since start)."
    ),
    "pbxbridge_agi_connections": "Open FastAGI connections (routing or idle).",
    "pbxbridge_agi_faults": (
        "FastAGI connections ended by the server: protocol faults (overlong line, "
        "malformed or slow environment ...), over capacity, idle ones evicted."
    ),
    "pbxbridge_screenpops_dropped": "Screen pops dropped (stale or buffer overflow).",
    "pbxbridge_screenpops_queued": "Screen pops waiting for the broker.",
    "pbxbridge_journal_backlog": "Journal entries not yet in the database (pending + spooled).",
    # Agent page: callbacks per tenant, counted from the journal.
    "pbxbridge_callbacks_open": "Callbacks recorded by agents and not done yet (journal).",
    "pbxbridge_callbacks_overdue": "Open callbacks past their deadline (journal).",
    "pbxbridge_callbacks_due_today": "Open callbacks due later today (journal).",
    # Virtual holds per tenant, from the board the orchestration feeds.
    **_virtual_holds.HELP,
    # The rules' sounds Asterisk lacks.
    **_sounds.HELP,
}
"""Help text of every gauge family :func:`gauges` yields."""

PROBLEM_ORDER = (
    "ari", "rules", "sounds", "agi", "overrides", "web", "ami", "mqtt", "journal", "virtual_hold",
)  # fmt: skip
"""The order of ``problems`` on ``/healthz``: routing first, then what it loses."""


def health(version: str, components: Iterable[Component]) -> tuple[bool, dict[str, object]]:
    """The ``/healthz`` verdict and body from the components.

    ``status`` is ``ok`` (HTTP 200) only when the ARI socket is up and no
    component has a problem; ``degraded`` (HTTP 503) while calls are routed but
    something needs an operator (listed in ``problems``); ``down`` (HTTP 503)
    while the ARI socket is down (calls take the dialplan fallback, untagged).

    AMI and MQTT down count as degraded, not down: calls are still routed and
    tagged, but queue events (screen pops, journal, wallboards) or pop delivery
    are lost until they return, which an operator must see. A journal that
    cannot write spools to disk: degraded until it catches up.

    Args:
        version: The daemon's version, the body's first key.
        components: Every component, in the order of the body's keys; the
            :class:`Ari` one among them decides ``down``.

    Returns:
        ``(status == "ok", body)``.
    """
    body: dict[str, object] = {"version": version}
    problems: list[str] = []
    ari_connected = False
    for component in components:
        if isinstance(component, Ari):
            ari_connected = component.connected
        body.update(component.health())
        problems.extend(component.problems())
    problems.sort(key=lambda p: PROBLEM_ORDER.index(p.split(":", 1)[0]))
    status = "down" if not ari_connected else "degraded" if problems else "ok"
    return status == "ok", {"status": status, "problems": problems, **body}


def gauges(components: Iterable[Component]) -> Iterator[Sample]:
    """Every component's gauges, read at scrape time.

    Args:
        components: Every component.

    Yields:
        ``(family, labels, value)``.
    """
    for component in components:
        yield from component.gauges()
