"""The faces of what follows the calls: AMI, tracker, MQTT, service level, journal, agent page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime

import structlog

from pbxbridge.adapters.ami.client import AmiClient
from pbxbridge.adapters.ami.events import AmiEvent
from pbxbridge.adapters.mqtt.publisher import MqttPublisher
from pbxbridge.components.base import DISABLED, Part, Sample, up
from pbxbridge.core.lifecycle import State
from pbxbridge.journal.repeat import RepeatCallers
from pbxbridge.journal.retention import retention_loop
from pbxbridge.journal.store import JournalStore
from pbxbridge.journal.writer import JournalWriter
from pbxbridge.runtime.live import LiveRules
from pbxbridge.storage.virtual_holds import VirtualHoldStore
from pbxbridge.tracking.call_tracker import CallTracker
from pbxbridge.tracking.metrics import CallMetrics
from pbxbridge.web import AgentDesk, AgentPage

log = structlog.get_logger(__name__)


class Ami(Part):
    """The AMI session that feeds the call tracker.

    Args:
        client: The AMI client, ``None`` when AMI is off.
        on_event: Where its events go (``None``: nothing to start).
        on_connected: Awaited after every login (the resync of waiting callers).
    """

    def __init__(
        self,
        client: AmiClient | None,
        *,
        on_event: Callable[[AmiEvent], Awaitable[None]] | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self._on_event = on_event
        self._on_connected = on_connected

    async def start(self) -> None:
        """Spawn the session (it reconnects forever)."""
        if self._client is not None and self._on_event is not None:
            self._spawn(self._client.run(self._on_event, on_connected=self._on_connected), "ami")

    async def stop(self) -> None:
        """Log off and close."""
        if self._client is not None:
            await self._client.close()
        await self._cancel()

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
        yield up("ami", bool(self._client and self._client.connected))


class Mqtt(Part):
    """The MQTT publisher of screen pops and wallboard messages.

    Args:
        publisher: The publisher, ``None`` when MQTT is off.
    """

    def __init__(self, publisher: MqttPublisher | None) -> None:
        super().__init__()
        self._publisher = publisher

    async def start(self) -> None:
        """Spawn the publisher (it reconnects forever)."""
        if self._publisher is not None:
            self._spawn(self._publisher.run(), "mqtt")

    async def stop(self) -> None:
        """Send what is queued for up to 2 s; log how many messages are left."""
        if self._publisher is not None:
            left = await self._publisher.close(timeout=2.0)
            if left:
                log.warning("mqtt.unsent_at_stop", messages=left)
        await self._cancel()

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
        yield up("mqtt", bool(self._publisher and self._publisher.status().connected))
        if self._publisher is None:
            return
        status = self._publisher.status()
        for kind, count in status.dropped_stale.items():
            yield "pbxbridge_screenpops_dropped", {"reason": f"stale_{kind}"}, float(count)
        yield "pbxbridge_screenpops_dropped", {"reason": "overflow"}, float(status.dropped_overflow)
        yield "pbxbridge_screenpops_queued", {}, float(status.queued)


class Tracker(Part):
    """The call tracker: calls followed, and callers waiting per tenant.

    Args:
        tracker: The call tracker (``None`` before it is built).
        rules: The rules in force: every tenant gets a ``calls_waiting`` gauge, 0 included.
    """

    def __init__(self, tracker: CallTracker | None, rules: LiveRules) -> None:
        super().__init__()
        self._tracker = tracker
        self._rules = rules

    async def stop(self) -> None:
        """Hand the last held-back wallboard states to MQTT (stopped after this)."""
        if self._tracker is not None:
            self._tracker.flush_wallboard()

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


class ServiceLevel(Part):
    """The live service level (no ``/healthz`` key).

    Args:
        metrics: The call metrics (``None`` before they are built).
    """

    def __init__(self, metrics: CallMetrics | None) -> None:
        super().__init__()
        self._metrics = metrics

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


class Journal(Part):
    """The journal writer, the repeat-caller look-up and the retention job.

    Args:
        writer: The writer, ``None`` without AMI (nothing to write).
        repeat: The repeat-caller look-up on the same journal (closed at stop).
        open_store: Opens a store of the journal for the retention job
            (``None``: no retention job).
        retention_days: Caller numbers are removed from the journal after this.
        open_holds: Opens the virtual-hold store, purged with the journal
            (``None``: no virtual holds to purge).
    """

    def __init__(
        self,
        writer: JournalWriter | None,
        *,
        repeat: RepeatCallers | None = None,
        open_store: Callable[[], JournalStore] | None = None,
        retention_days: int = 90,
        open_holds: Callable[[], VirtualHoldStore] | None = None,
    ) -> None:
        super().__init__()
        self._writer = writer
        self._repeat = repeat
        self._open_store = open_store
        self._retention_days = retention_days
        self._open_holds = open_holds

    async def start(self) -> None:
        """Spawn the writer and the retention job."""
        if self._writer is None:
            return
        self._spawn(self._writer.run(), "journal")
        if self._open_store is not None:
            retention = retention_loop(
                self._open_store,
                days=self._retention_days,
                spool_dir=self._writer.spool_dir,
                holds_factory=self._open_holds,
            )
            self._spawn(retention, "retention")

    async def stop(self) -> None:
        """Write what is pending for up to 5 s; the rest goes to the spool on disk."""
        if self._writer is not None:
            await self._writer.close(timeout=5.0)
        if self._repeat is not None:
            self._repeat.close()
        await self._cancel()

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
        yield up("journal", stats.db_available)


class Web(Part):
    """The agent page and its desk.

    Args:
        page: The page, ``None`` when it is off.
        desk: The desk behind it (its callback figures are counted in the background).
    """

    def __init__(self, page: AgentPage | None, desk: AgentDesk | None) -> None:
        super().__init__()
        self._page = page
        self._desk = desk

    async def start(self) -> None:
        """Spawn the background count of the callback figures."""
        if self._desk is not None:
            self._spawn(self._desk.run(), "callback-figures")

    async def stop(self) -> None:
        """End the count and the agent page's event streams."""
        await self._cancel()
        if self._desk is not None:
            await self._desk.close()

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
