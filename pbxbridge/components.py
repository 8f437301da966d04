"""What each part of the daemon shows on ``/healthz`` and ``/metrics``.

Every part the composition root builds (:mod:`pbxbridge.app`) is seen here
through one small face, :class:`Component`: its piece of the ``/healthz`` body,
what keeps the verdict from ``ok``, and the gauges read at scrape time. The
root lists its components; :func:`health` and :func:`gauges` iterate over them.
A part that is switched off is still listed, with ``None``: it then reports
``{"state": "disabled"}`` (or its own "off" shape) and no problem, so the body
keeps the same keys whatever is configured.

Each face reads the public attributes of the one object it faces, and nothing
else: adding a part means adding one face here and one line in the root.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Protocol

from pbxbridge.adapters.agi import AgiRouter, AgiServer
from pbxbridge.adapters.ami.client import AmiClient
from pbxbridge.adapters.ari.client import AriClient
from pbxbridge.adapters.ari.router import StasisRouter
from pbxbridge.adapters.mqtt.publisher import MqttPublisher
from pbxbridge.core.lifecycle import State
from pbxbridge.journal.writer import JournalWriter
from pbxbridge.runtime.live import LiveOverrides, LiveRules
from pbxbridge.tracking.call_tracker import CallTracker
from pbxbridge.tracking.metrics import CallMetrics
from pbxbridge.web import AgentDesk, AgentPage

Sample = tuple[str, dict[str, str], float]
"""One gauge value: family name, labels, value."""

GAUGE_HELP = {
    "pbxbridge_calls_waiting": "Callers waiting in a queue now (queued or ringing).",
    "pbxbridge_service_level_ratio": (
        "Answered within 20 s: as a share of answered calls (definition=answered) or of "
        "offered calls without short abandons (definition=offered), over the last 15 "
        "minutes or the current local day."
    ),
    "pbxbridge_up": "1 when the connection to the component is up.",
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
}
"""Help text of every gauge family :func:`gauges` yields."""

PROBLEM_ORDER = ("ari", "rules", "agi", "overrides", "web", "ami", "mqtt", "journal")
"""The order of ``problems`` on ``/healthz``: routing first, then what it loses."""

DISABLED: dict[str, object] = {"state": "disabled"}


class Component(Protocol):
    """The face every part of the daemon shows to ``/healthz`` and ``/metrics``."""

    def health(self) -> Mapping[str, object]:
        """Its keys of the ``/healthz`` body (none for a part that has no key)."""

    def problems(self) -> list[str]:
        """What it needs an operator for, ``"part: text"``; empty when well."""

    def gauges(self) -> Iterator[Sample]:
        """Its gauges, read now from the state it owns."""


def _up(component: str, ok: bool) -> Sample:
    return "pbxbridge_up", {"component": component}, 1.0 if ok else 0.0


class Ari:
    """The ARI socket: the one part whose loss means ``down``.

    Args:
        client: The ARI client (``None`` before it is built).
        app: The Stasis application name, shown on ``/healthz``.
    """

    def __init__(self, client: AriClient | None, app: str) -> None:
        self._client = client
        self._app = app

    @property
    def connected(self) -> bool:
        """Whether the ARI socket is up (what makes the verdict ``down``)."""
        return bool(self._client is not None and self._client.status.connected)

    def health(self) -> Mapping[str, object]:
        """``ari``: the connection status."""
        status = self._client.status if self._client is not None else None
        never_connected = {"state": "idle", "since": None, "failures": 0, "last_error": None}
        return {
            "ari": {
                **(status.as_dict() if status else never_connected),
                # The name this key has always had for ARI (same number as "failures").
                "consecutive_failures": status.failures if status else 0,
                "app": self._app,
            }
        }

    def problems(self) -> list[str]:
        """Not connected."""
        return [] if self.connected else ["ari: not connected"]

    def gauges(self) -> Iterator[Sample]:
        """``pbxbridge_up{component="ari"}``."""
        yield _up("ari", bool(self._client and self._client.connected))


class Ami:
    """The AMI session that feeds the call tracker.

    Args:
        client: The AMI client, ``None`` when AMI is off.
    """

    def __init__(self, client: AmiClient | None) -> None:
        self._client = client

    def health(self) -> Mapping[str, object]:
        """``ami``: the connection status."""
        return {"ami": self._client.status.as_dict() if self._client else DISABLED}

    def problems(self) -> list[str]:
        """Not connected: queue events (pops, journal, wallboards) are lost meanwhile."""
        if self._client is not None and not self._client.connected:
            return ["ami: not connected"]
        return []

    def gauges(self) -> Iterator[Sample]:
        """``pbxbridge_up{component="ami"}`` (0 when off)."""
        yield _up("ami", bool(self._client and self._client.connected))


class Mqtt:
    """The MQTT publisher of screen pops and wallboard messages.

    Args:
        publisher: The publisher, ``None`` when MQTT is off.
    """

    def __init__(self, publisher: MqttPublisher | None) -> None:
        self._publisher = publisher

    def health(self) -> Mapping[str, object]:
        """``mqtt``: connection and counters."""
        return {"mqtt": self._publisher.status().as_dict() if self._publisher else DISABLED}

    def problems(self) -> list[str]:
        """Not connected: pops are held back, then dropped."""
        if self._publisher is not None and not self._publisher.status().connected:
            return ["mqtt: not connected"]
        return []

    def gauges(self) -> Iterator[Sample]:
        """Up (0 when off), pops dropped by reason and waiting for the broker."""
        yield _up("mqtt", bool(self._publisher and self._publisher.status().connected))
        if self._publisher is None:
            return
        status = self._publisher.status()
        for kind, count in status.dropped_stale.items():
            yield "pbxbridge_screenpops_dropped", {"reason": f"stale_{kind}"}, float(count)
        yield "pbxbridge_screenpops_dropped", {"reason": "overflow"}, float(status.dropped_overflow)
        yield "pbxbridge_screenpops_queued", {}, float(status.queued)


class Tracker:
    """The call tracker: calls followed, and callers waiting per tenant.

    Args:
        tracker: The call tracker (``None`` before it is built).
        rules: The rules in force: every tenant gets a ``calls_waiting`` gauge, 0 included.
    """

    def __init__(self, tracker: CallTracker | None, rules: LiveRules) -> None:
        self._tracker = tracker
        self._rules = rules

    def health(self) -> Mapping[str, object]:
        """``screen_pops``: calls followed and the tracker's counters."""
        tracker = self._tracker
        return {
            "screen_pops": {
                "following": len(tracker.records) if tracker else 0,
                **(vars(tracker.stats) if tracker else {}),
            }
        }

    def problems(self) -> list[str]:
        """None of its own (AMI's and MQTT's are theirs)."""
        return []

    def gauges(self) -> Iterator[Sample]:
        """``pbxbridge_calls_waiting`` per tenant (queued or ringing)."""
        waiting: dict[str, int] = {}
        if self._tracker is not None:
            for record in self._tracker.records.values():
                if record.state in (State.QUEUED, State.RINGING):
                    tenant = record.decision.tenant or "unknown"
                    waiting[tenant] = waiting.get(tenant, 0) + 1
        for tenant in self._rules.rules.tenants:
            yield "pbxbridge_calls_waiting", {"tenant": tenant}, float(waiting.get(tenant, 0))


class ServiceLevel:
    """The live service level (no ``/healthz`` key).

    Args:
        metrics: The call metrics (``None`` before they are built).
    """

    def __init__(self, metrics: CallMetrics | None) -> None:
        self._metrics = metrics

    def health(self) -> Mapping[str, object]:
        """No key of its own."""
        return {}

    def problems(self) -> list[str]:
        """None."""
        return []

    def gauges(self) -> Iterator[Sample]:
        """``pbxbridge_service_level_ratio`` per tenant, window and definition."""
        if self._metrics is None:
            return
        now = datetime.now(UTC)
        for (tenant, window), pair in self._metrics.live.figures(now).items():
            for definition, value in zip(("answered", "offered"), pair, strict=True):
                if value is not None:
                    labels = {"tenant": tenant or "all", "window": window, "definition": definition}
                    yield "pbxbridge_service_level_ratio", labels, value


class Journal:
    """The journal writer.

    Args:
        writer: The writer, ``None`` without AMI (nothing to write).
    """

    def __init__(self, writer: JournalWriter | None) -> None:
        self._writer = writer

    def health(self) -> Mapping[str, object]:
        """``journal``: the writer's counters."""
        return {"journal": self._writer.stats.as_dict() if self._writer else DISABLED}

    def problems(self) -> list[str]:
        """Database unavailable: entries go to the spool until it returns."""
        if self._writer is not None and self._writer.stats.last_error:
            return ["journal: database unavailable, spooling to disk"]
        return []

    def gauges(self) -> Iterator[Sample]:
        """Backlog and ``pbxbridge_up{component="journal"}``."""
        if self._writer is None:
            return
        stats = self._writer.stats
        yield "pbxbridge_journal_backlog", {}, float(stats.backlog)
        yield _up("journal", stats.db_available)


class Rules:
    """The routing rules in force.

    Args:
        rules: The live rules.
    """

    def __init__(self, rules: LiveRules) -> None:
        self._rules = rules

    def health(self) -> Mapping[str, object]:
        """``rules``: file, generation, last reload."""
        return {"rules": self._rules.health()}

    def problems(self) -> list[str]:
        """A rejected reload: the previous generation still routes."""
        if not self._rules.last_error:
            return []
        return [
            f"rules: last reload rejected ({len(self._rules.last_error)} errors), "
            f"generation {self._rules.generation} still routing"
        ]

    def gauges(self) -> Iterator[Sample]:
        """Generation and rejected reloads."""
        yield "pbxbridge_rules_generation", {}, float(self._rules.generation)
        yield "pbxbridge_rules_reload_failures", {}, float(self._rules.reload_failures)


class Overrides:
    """The manual overrides store.

    Args:
        overrides: The live overrides (``None`` before they are opened).
    """

    def __init__(self, overrides: LiveOverrides | None) -> None:
        self._overrides = overrides

    def health(self) -> Mapping[str, object]:
        """``overrides``: the store and what was read last (``None`` before it is opened)."""
        return {"overrides": self._overrides.health() if self._overrides else None}

    def problems(self) -> list[str]:
        """Store unreadable: the overrides read last stay in force."""
        if self._overrides is not None and self._overrides.error:
            return ["overrides: store unreadable, last overrides read stay in force"]
        return []

    def gauges(self) -> Iterator[Sample]:
        """``pbxbridge_up{component="overrides"}``."""
        if self._overrides is not None:
            # 0 while the override store (SQLite file or shared PostgreSQL) cannot
            # be read: routing goes on with the overrides read last.
            yield _up("overrides", not self._overrides.error)


class Agi:
    """The FastAGI entry point: its server and its router.

    Not part of the ``down`` verdict: while it is down, AGI calls take the
    dialplan fallback.

    Args:
        server: The FastAGI server, ``None`` when FastAGI is off.
        router: Its router, ``None`` when FastAGI is off.
    """

    def __init__(self, server: AgiServer | None, router: AgiRouter | None) -> None:
        self._server = server
        self._router = router

    def health(self) -> Mapping[str, object]:
        """``agi``: state, bind address and counters."""
        server, router = self._server, self._router
        if server is None or router is None:
            return {"agi": DISABLED}
        return {
            "agi": {
                "state": "listening" if server.listening else "down",
                "bind": f"{server.host}:{server.port}",
                "last_error": server.last_error,
                # Shown, not a problem of its own: FreePBX set-ups without the
                # secret keep routing; the start-up log warns once.
                "authentication": "shared secret"
                if server.authenticated
                else "none: set credential agi-secret (any local process can inject calls)",
                "connections": server.connections,
                "in_progress": server.in_progress,
                "capacity": server.capacity,
                "routed": router.stats.routed,
                "failed": router.stats.failed,
                "gone": router.stats.gone,
                "menus": router.stats.menus,
                "by_action": dict(router.stats.by_action),
                "evicted": server.stats.evicted,
                "over_capacity": server.stats.over_capacity,
                "faults": dict(server.stats.faults),
            }
        }

    def problems(self) -> list[str]:
        """Not listening (the port taken, say)."""
        server = self._server
        if server is not None and not server.listening:
            return [f"agi: not listening on {server.host}:{server.port}"]
        return []

    def gauges(self) -> Iterator[Sample]:
        """The routing families with ``entry="agi"``, plus the server's own."""
        server, router = self._server, self._router
        if server is None or router is None:
            return
        entry = {"entry": "agi"}
        yield _up("agi", server.listening)
        yield "pbxbridge_calls_in_routing", entry, float(server.in_progress)
        yield "pbxbridge_routing_failures", entry, float(router.stats.failed)
        yield "pbxbridge_agi_connections", {}, float(server.connections)
        stats = server.stats
        refused = {"over_capacity": stats.over_capacity, "evicted_idle": stats.evicted}
        for reason, count in (*refused.items(), *stats.faults.items()):
            yield "pbxbridge_agi_faults", {"reason": reason}, float(count)


class Web:
    """The agent page and its desk.

    Args:
        page: The page, ``None`` when it is off.
        desk: The desk behind it (its callback figures are counted in the background).
    """

    def __init__(self, page: AgentPage | None, desk: AgentDesk | None) -> None:
        self._page = page
        self._desk = desk

    def health(self) -> Mapping[str, object]:
        """``web``: agents, sessions, the agents file."""
        return {"web": self._page.health() if self._page else DISABLED}

    def problems(self) -> list[str]:
        """Agents file rejected: the last good agents stay in force."""
        if self._page is not None:
            web = self._page.health()
            if web.get("error") or web.get("agents_file_error"):
                return ["web: agents file rejected, last good agents stay in force"]
        return []

    def gauges(self) -> Iterator[Sample]:
        """Callback figures per tenant (counted in the background, never at scrape time)."""
        if self._desk is None:
            return
        for tenant, counts in self._desk.figures.items():
            labels = {"tenant": tenant}
            yield "pbxbridge_callbacks_open", labels, float(counts.open)
            yield "pbxbridge_callbacks_overdue", labels, float(counts.overdue)
            yield "pbxbridge_callbacks_due_today", labels, float(counts.due_today)


class Calls:
    """The Stasis router's calls.

    Args:
        router: The router (``None`` before it is built).
    """

    def __init__(self, router: StasisRouter | None) -> None:
        self._router = router

    def health(self) -> Mapping[str, object]:
        """``calls``: the router's counters."""
        router = self._router
        return {
            "calls": {
                "routed": router.stats.routed if router else 0,
                "failed": router.stats.failed if router else 0,
                "gone": router.stats.gone if router else 0,
                "menus": router.stats.menus if router else 0,
                "resynced": router.stats.resynced if router else 0,
                "stasis_timeouts": router.stats.stasis_timeouts if router else 0,
                "in_progress": router.in_progress if router else 0,
                "by_action": dict(router.stats.by_action) if router else {},
            }
        }

    def problems(self) -> list[str]:
        """None of its own (ARI's is the socket's)."""
        return []

    def gauges(self) -> Iterator[Sample]:
        """The routing families with ``entry="ari"`` and the Stasis guard's timeouts."""
        if self._router is None:
            return
        entry = {"entry": "ari"}
        yield "pbxbridge_calls_in_routing", entry, float(self._router.in_progress)
        yield "pbxbridge_routing_failures", entry, float(self._router.stats.failed)
        yield "pbxbridge_stasis_timeouts", {}, float(self._router.stats.stasis_timeouts)


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
