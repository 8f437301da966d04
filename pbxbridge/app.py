"""The composition root: build the adapters, start them, stop them in order.

Start: rules (must be valid) → overrides → HTTP → ARI (reconnects forever;
Asterisk may come later) → READY=1. Stop (SIGTERM): STOPPING=1 → finish the
calls being routed → close the ARI socket (Asterisk then sends new calls down
the dialplan fallback) → finish what arrived meanwhile → close the rest.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from pbxbridge import __version__
from pbxbridge.adapters.agi import AgiRouter, AgiServer
from pbxbridge.adapters.ami.client import AmiClient, AmiConfig
from pbxbridge.adapters.ami.errors import AmiActionFailed
from pbxbridge.adapters.ari.client import AriClient, AriConfig
from pbxbridge.adapters.ari.router import StasisRouter, routing_alive
from pbxbridge.adapters.http.server import HttpServer
from pbxbridge.adapters.mqtt.publisher import MqttPublisher
from pbxbridge.adapters.mqtt.settings import MqttSettings
from pbxbridge.config import ConfigError
from pbxbridge.config.compile import state_path
from pbxbridge.core.lifecycle import CallEvent, CallRecord, State
from pbxbridge.core.models import Decision
from pbxbridge.journal.backend import journal_opener, spool_dir
from pbxbridge.journal.entry import entry_from_record
from pbxbridge.journal.repeat import RepeatCallers
from pbxbridge.journal.retention import retention_loop
from pbxbridge.journal.store import JournalStore
from pbxbridge.journal.writer import JournalWriter
from pbxbridge.runtime.live import LiveOverrides, LiveRules
from pbxbridge.runtime.sdnotify import SystemdNotifier, watchdog_loop
from pbxbridge.runtime.settings import Settings
from pbxbridge.tracking.call_tracker import FOLLOWED_EVENTS, WALLBOARD_EVERY_S, CallTracker
from pbxbridge.tracking.metrics import CallMetrics, LiveServiceLevel, ScrapeCollector, render
from pbxbridge.web import AgentDesk, AgentPage, JournalLink, WebConfig, setup_web

log = structlog.get_logger(__name__)

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

DRAIN_SECONDS = 15.0
"""How long a graceful stop waits for calls being routed (a 115 menu included)."""
RESYNC_TRIES = 6
RESYNC_BACKOFF_S = 0.25
"""AMI resync refused (app_queue still loading): retry after 0.25, 0.5 … 4 s (~7.75 s)."""


class Daemon:
    """pbxbridge as a service.

    Args:
        config: Path of the rules file.
        settings: Connection settings.
    """

    def __init__(self, config: str | Path, settings: Settings) -> None:
        self.settings = settings
        self.rules = LiveRules(config)
        self.overrides: LiveOverrides | None = None
        self.router: StasisRouter | None = None
        self.ari: AriClient | None = None
        self.http: HttpServer | None = None
        self.ami: AmiClient | None = None
        self.mqtt: MqttPublisher | None = None
        self.tracker: CallTracker | None = None
        self.journal: JournalWriter | None = None
        self.repeat: RepeatCallers | None = None
        self.agi: AgiServer | None = None
        self.agi_router: AgiRouter | None = None
        self.desk: AgentDesk | None = None
        self.web: AgentPage | None = None
        # Set by the journal wiring: how the page opens a journal store of its
        # own, and this node's name. Until then the page shows pops and says
        # that wrap-up is unavailable.
        self.journal_link: JournalLink | None = None
        self.web_clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.notifier = SystemdNotifier()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT.

        Returns:
            The process exit code (0 after a clean stop, 1 on invalid rules).
        """
        try:
            self.rules.load_initial()
        except ConfigError as exc:
            for issue in exc.issues:
                log.error(
                    "rules.invalid",
                    file=issue.file,
                    line=issue.line,
                    path=issue.path,
                    message=issue.message,
                )
            log.error("daemon.not_started", reason="invalid rules", errors=len(exc.issues))
            return 1
        log.info(
            "daemon.starting",
            version=__version__,
            rules=str(self.rules.path),
            tenants=len(self.rules.rules.tenants),
            ari=self.settings.ari_url,
            app=self.settings.ari_app,
        )
        # Shared through PostgreSQL like the journal when a URL is configured,
        # else the node's SQLite state file (the CLI makes the same choice).
        self.overrides = LiveOverrides(
            state_path(self.rules.model, self.rules.path), self.settings.database_url
        )
        await self.overrides.poll()

        session = aiohttp.ClientSession()
        self.ari = AriClient(
            AriConfig(
                base_url=self.settings.ari_url,
                username=self.settings.ari_user,
                password=self.settings.ari_password,
                app=self.settings.ari_app,
                backoff_max=self.settings.ari_backoff_max_s,
            ),
            session=session,
        )
        if self.settings.mqtt_enabled:
            self.mqtt = MqttPublisher(MqttSettings.from_env())
        # Call journal: SQLite beside the state, or a shared PostgreSQL. It is fed
        # by the AMI call tracking, so without AMI there is nothing to write.
        if self.settings.ami_enabled:
            open_journal = self._journal_opener()
            state_file = state_path(self.rules.model, self.rules.path)
            self.journal = JournalWriter(open_journal, spool_dir(state_file))
            self.repeat = RepeatCallers(open_journal)
            self.journal_link = JournalLink(open=open_journal, node=self.settings.node)
        self.registry = CollectorRegistry()
        self.call_metrics = CallMetrics(self.registry, LiveServiceLevel(self.rules.rules.timezone))
        self.registry.register(ScrapeCollector(self._gauges, GAUGE_HELP))
        # Agent page: fed by the call tracker's local sink.
        self.desk = AgentDesk(
            lambda: self.rules.rules, lambda: self.journal_link, clock=self.web_clock
        )
        web_on = bool(self.settings.web_agents_file and self.settings.http_port)
        self.tracker = CallTracker(
            self.mqtt,
            ring_timeout_s=self.settings.ring_timeout_s,
            on_record=self._on_record,
            repeat_calls=self.repeat.count if self.repeat is not None else None,
            local=self.desk.deliver if web_on else None,
            wallboard_every_s=WALLBOARD_EVERY_S,
        )
        overrides = self.overrides
        self.router = StasisRouter(
            self.ari,
            lambda: self.rules.rules,
            lambda: overrides.items,
            on_decision=self._routed,
            stasis_max_s=self.settings.stasis_max_s,
        )
        # FastAGI entry point: the same core, rules, overrides and observer as ARI.
        if self.settings.agi_enabled:
            self.agi_router = AgiRouter(
                lambda: self.rules.rules,
                lambda: overrides.items,
                on_decision=self._routed,
                menu_max_s=self.settings.stasis_max_s,
            )
            self.agi = AgiServer(
                self.settings.agi_host,
                self.settings.agi_port,
                {"route": self.agi_router.route},
                secret=self.settings.agi_secret,
            )
        if self.settings.ami_enabled:
            self.ami = AmiClient(
                AmiConfig(
                    host=self.settings.ami_host,
                    port=self.settings.ami_port,
                    username=self.settings.ami_user,
                    password=self.settings.ami_password,
                    events=FOLLOWED_EVENTS,
                    backoff_max=2.0,
                )
            )
        if self.settings.http_port:
            self.http = HttpServer(
                self.settings.http_host,
                self.settings.http_port,
                self.health,
                lambda: render(self.registry),
            )
            # Agent page: its routes must be added before the server starts.
            if web_on:
                self.web = setup_web(
                    self.http.app,
                    self.desk,
                    WebConfig(
                        agents_file=self.settings.web_agents_file,
                        secure_cookies=self.settings.web_secure_cookies,
                        session_secret=self.settings.web_session_secret,
                        trusted_proxies=self.settings.web_trusted_proxies,
                        # Sign-outs are kept there across restarts.
                        state_dir=str(state_path(self.rules.model, self.rules.path).parent),
                    ),
                )
            await self.http.start()
        # FastAGI listens before READY=1; a taken port is
        # logged and retried in the background, ARI routing goes on meanwhile.
        if self.agi is not None:
            await self.agi.start()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

        self._spawn(self.ari.run(self.router.handle, on_connected=self.router.resync), "ari")
        ari, ari_task = self.ari, self._tasks[-1]
        # Routes channels in the application that the router never heard of.
        self._spawn(self.router.sweep(), "stasis-sweep")
        if self.ami is not None:
            self._spawn(self.ami.run(self._ami_event, on_connected=self._ami_resync), "ami")
        if self.mqtt is not None:
            self._spawn(self.mqtt.run(), "mqtt")
        if self.journal is not None:
            self._spawn(self.journal.run(), "journal")
            self._spawn(
                retention_loop(self._journal_opener(), days=self.settings.retention_days,
                               spool_dir=self.journal.spool_dir),
                "retention",
            )
        self._spawn(self._watch_rules(), "rules-watch")
        self._spawn(self._watch_overrides(), "overrides-watch")
        self._spawn(self.desk.run(), "callback-figures")
        # Fed only while the loop turns and the ARI supervisor is alive (see
        # routing_alive; Asterisk down still counts as alive).
        self._spawn(watchdog_loop(self.notifier, lambda: routing_alive(ari, ari_task)), "watchdog")
        self.notifier.ready(status=f"routing with rules generation {self.rules.generation}")
        log.info("daemon.ready", http_port=self.http.port if self.http else None)

        await self._stop.wait()
        await self._shutdown(session)
        return 0

    def stop(self) -> None:
        """Ask the daemon to stop gracefully (SIGTERM)."""
        if not self._stop.is_set():
            log.info("daemon.stopping")
            self._stop.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    def _journal_opener(self) -> Callable[[], JournalStore]:
        state_file = state_path(self.rules.model, self.rules.path)
        return journal_opener(self.settings.database_url, state_file)

    def _routed(self, call_id: str, decision: Decision) -> None:
        """A call was decided (any entry point): follow it, look its caller up."""
        assert self.tracker is not None
        if self.repeat is not None:
            self.repeat.prefetch(decision.caller)
        self.tracker.routed(call_id, decision)

    def _on_record(self, record: CallRecord, event: CallEvent | None) -> None:
        """Every change of a call's life: metrics and the journal."""
        self.call_metrics.observe(record, event)
        if self.journal is not None:
            self.journal.submit(entry_from_record(record, self.settings.node))

    def _gauges(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Gauges read at scrape time from the objects that own the state."""
        waiting: dict[str, int] = {}
        if self.tracker is not None:
            for record in self.tracker.records.values():
                if record.state in (State.QUEUED, State.RINGING):
                    tenant = record.decision.tenant or "unknown"
                    waiting[tenant] = waiting.get(tenant, 0) + 1
        for tenant in self.rules.rules.tenants:
            yield "pbxbridge_calls_waiting", {"tenant": tenant}, float(waiting.get(tenant, 0))
        now = datetime.now(UTC)
        for (tenant, window), pair in self.call_metrics.live.figures(now).items():
            for definition, value in zip(("answered", "offered"), pair, strict=True):
                if value is not None:
                    labels = {"tenant": tenant or "all", "window": window, "definition": definition}
                    yield "pbxbridge_service_level_ratio", labels, value
        up = {
            "ari": bool(self.ari and self.ari.connected),
            "ami": bool(self.ami and self.ami.connected),
            "mqtt": bool(self.mqtt and self.mqtt.status().connected),
        }
        for component, ok in up.items():
            yield "pbxbridge_up", {"component": component}, 1.0 if ok else 0.0
        yield "pbxbridge_rules_generation", {}, float(self.rules.generation)
        # Callback figures: counted in the background, never at scrape time.
        if self.desk is not None:
            for tenant, counts in self.desk.figures.items():
                labels = {"tenant": tenant}
                yield "pbxbridge_callbacks_open", labels, float(counts.open)
                yield "pbxbridge_callbacks_overdue", labels, float(counts.overdue)
                yield "pbxbridge_callbacks_due_today", labels, float(counts.due_today)
        yield "pbxbridge_rules_reload_failures", {}, float(self.rules.reload_failures)
        if self.router is not None:
            entry = {"entry": "ari"}
            yield "pbxbridge_calls_in_routing", entry, float(self.router.in_progress)
            yield "pbxbridge_routing_failures", entry, float(self.router.stats.failed)
            yield "pbxbridge_stasis_timeouts", {}, float(self.router.stats.stasis_timeouts)
        # FastAGI: the same families with entry="agi", plus the server's own.
        if self.agi is not None and self.agi_router is not None:
            entry = {"entry": "agi"}
            yield "pbxbridge_up", {"component": "agi"}, 1.0 if self.agi.listening else 0.0
            yield "pbxbridge_calls_in_routing", entry, float(self.agi.in_progress)
            yield "pbxbridge_routing_failures", entry, float(self.agi_router.stats.failed)
            yield "pbxbridge_agi_connections", {}, float(self.agi.connections)
            agi = self.agi.stats
            refused = {"over_capacity": agi.over_capacity, "evicted_idle": agi.evicted}
            for reason, count in (*refused.items(), *agi.faults.items()):
                yield "pbxbridge_agi_faults", {"reason": reason}, float(count)
        if self.overrides is not None:
            # 0 while the override store (SQLite file or shared PostgreSQL) cannot
            # be read: routing goes on with the overrides read last.
            readable = 0.0 if self.overrides.error else 1.0
            yield "pbxbridge_up", {"component": "overrides"}, readable
        if self.mqtt is not None:
            status = self.mqtt.status()
            for kind, count in status.dropped_stale.items():
                yield "pbxbridge_screenpops_dropped", {"reason": f"stale_{kind}"}, float(count)
            yield (
                "pbxbridge_screenpops_dropped",
                {"reason": "overflow"},
                float(status.dropped_overflow),
            )
            yield "pbxbridge_screenpops_queued", {}, float(status.queued)
        if self.journal is not None:
            stats = self.journal.stats
            yield "pbxbridge_journal_backlog", {}, float(stats.backlog)
            yield "pbxbridge_up", {"component": "journal"}, 1.0 if stats.db_available else 0.0

    async def _ami_event(self, event: dict[str, str]) -> None:
        assert self.tracker is not None
        self.tracker.ami_event(event)

    async def _ami_resync(self) -> None:
        # AMI does not replay what happened while we were away: ask app_queue
        # which callers wait now, so their records are queued, not stuck routed.
        assert self.ami is not None and self.tracker is not None
        for attempt in range(1, RESYNC_TRIES + 1):
            try:
                snapshot = await self.ami.queue_status()
            except AmiActionFailed as exc:
                # Right after an Asterisk restart the manager accepts logins
                # before app_queue is loaded ("QueueStatus: unknown command"):
                # wait for it quietly instead of failing the session.
                log.debug("ami.resync_refused", attempt=attempt, error=exc.message)
                if attempt == RESYNC_TRIES:
                    # Without app_queue nobody waits in a queue: nothing to
                    # resync. Events flow; the next login resyncs again.
                    log.warning("ami.resync_skipped", tries=attempt, error=exc.message)
                    return
                await asyncio.sleep(RESYNC_BACKOFF_S * 2 ** (attempt - 1))
                continue
            if attempt > 1:
                log.warning("ami.resync_retried", tries=attempt)
            self.tracker.resync({e.uniqueid: e.queue for e in snapshot.entries})
            return

    def _on_sighup(self) -> None:
        self._spawn(self._reload("SIGHUP"), "reload")

    async def _reload(self, why: str) -> None:
        self.notifier.reloading(status=f"reloading rules ({why})")
        await self.rules.reload(why)
        status = f"routing with rules generation {self.rules.generation}"
        if self.rules.last_error:
            status += f"; last reload rejected ({len(self.rules.last_error)} errors)"
        self.notifier.ready(status=status)

    async def _watch_rules(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rules_poll_s)
            if self.rules.changed_on_disk():
                await self._reload("file changed")

    async def _watch_overrides(self) -> None:
        assert self.overrides is not None
        while True:
            await asyncio.sleep(self.settings.overrides_poll_s)
            await self.overrides.poll()

    async def _shutdown(self, session: aiohttp.ClientSession) -> None:
        self.notifier.stopping(status="finishing calls being routed")
        assert self.router is not None and self.ari is not None
        # FastAGI: stop listening now (new AGI calls take the
        # dialplan fallback at once) and let sessions finish, alongside ARI.
        agi_stop = (
            asyncio.ensure_future(self.agi.stop(DRAIN_SECONDS)) if self.agi is not None else None
        )
        if not await self.router.drain(DRAIN_SECONDS):
            log.warning("daemon.drain_timeout", in_progress=self.router.in_progress)
        # Closing the socket unregisters the application: from here on the
        # dialplan's Stasis() fails over to the static queue.
        await self.ari.close(grace=2.0)
        await self.router.drain(5.0)  # calls that arrived just before the close
        if agi_stop is not None and not await agi_stop:
            log.warning("daemon.agi_drain_timeout")
        if self.ami is not None:
            await self.ami.close()
        if self.tracker is not None:
            self.tracker.flush_wallboard()  # the last held-back states, before MQTT closes
        if self.mqtt is not None:
            left = await self.mqtt.close(timeout=2.0)
            if left:
                log.warning("mqtt.unsent_at_stop", messages=left)
        if self.journal is not None:
            # Whatever is not written by now goes to the spool on disk.
            await self.journal.close(timeout=5.0)
        if self.repeat is not None:
            self.repeat.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await session.close()
        if self.desk is not None:  # ends the agent page's event streams
            await self.desk.close()
        if self.http is not None:
            await self.http.stop()
        if self.overrides is not None:
            self.overrides.close()
        log.info("daemon.stopped", routed=self.router.stats.routed)

    def health(self) -> tuple[bool, dict[str, object]]:
        """Health for ``/healthz``: one verdict a monitor can read.

        ``status`` is ``ok`` (HTTP 200) only when the ARI socket is up and no
        configured part has a problem; ``degraded`` (HTTP 503) while calls are
        routed but something needs an operator (listed in ``problems``, see
        :meth:`_problems`); ``down`` (HTTP 503) while the ARI socket is down
        (calls take the dialplan fallback, untagged).

        Returns:
            ``(status == "ok", body)``.
        """
        ari = self.ari.status if self.ari is not None else None
        never_connected = {"state": "idle", "since": None, "failures": 0, "last_error": None}
        router = self.router
        body: dict[str, object] = {
            "version": __version__,
            "ari": {
                **(ari.as_dict() if ari else never_connected),
                # The name this key has always had for ARI (same number as "failures").
                "consecutive_failures": ari.failures if ari else 0,
                "app": self.settings.ari_app,
            },
            "ami": self.ami.status.as_dict() if self.ami else {"state": "disabled"},
            "mqtt": self.mqtt.status().as_dict() if self.mqtt else {"state": "disabled"},
            "screen_pops": {
                "following": len(self.tracker.records) if self.tracker else 0,
                **(vars(self.tracker.stats) if self.tracker else {}),
            },
            "journal": self.journal.stats.as_dict() if self.journal else {"state": "disabled"},
            "rules": self.rules.health(),
            "overrides": self.overrides.health() if self.overrides else None,
            "agi": self._agi_health(),
            "web": self.web.health() if self.web else {"state": "disabled"},
            "calls": {
                "routed": router.stats.routed if router else 0,
                "failed": router.stats.failed if router else 0,
                "gone": router.stats.gone if router else 0,
                "menus": router.stats.menus if router else 0,
                "resynced": router.stats.resynced if router else 0,
                "stasis_timeouts": router.stats.stasis_timeouts if router else 0,
                "in_progress": router.in_progress if router else 0,
                "by_action": dict(router.stats.by_action) if router else {},
            },
        }
        connected = bool(ari and ari.connected)
        problems = self._problems(connected)
        status = "down" if not connected else "degraded" if problems else "ok"
        return status == "ok", {"status": status, "problems": problems, **body}

    def _problems(self, ari_connected: bool) -> list[str]:
        """What keeps ``/healthz`` from saying ``ok``: short texts, details in the body.

        AMI and MQTT down count as degraded, not down: calls are still routed
        and tagged, but queue events (screen pops, journal, wallboards) or pop
        delivery are lost until they return, which an operator must see. A
        journal that cannot write spools to disk: degraded until it catches up.

        Args:
            ari_connected: Whether the ARI socket is up.

        Returns:
            One entry per problem, empty when all is well.
        """
        problems: list[str] = []
        if not ari_connected:
            problems.append("ari: not connected")
        if self.rules.last_error:
            problems.append(
                f"rules: last reload rejected ({len(self.rules.last_error)} errors), "
                f"generation {self.rules.generation} still routing"
            )
        if self.agi is not None and not self.agi.listening:
            problems.append(f"agi: not listening on {self.agi.host}:{self.agi.port}")
        if self.overrides is not None and self.overrides.error:
            problems.append("overrides: store unreadable, last overrides read stay in force")
        if self.web is not None:
            web = self.web.health()
            if web.get("error") or web.get("agents_file_error"):
                problems.append("web: agents file rejected, last good agents stay in force")
        if self.ami is not None and not self.ami.connected:
            problems.append("ami: not connected")
        if self.mqtt is not None and not self.mqtt.status().connected:
            problems.append("mqtt: not connected")
        if self.journal is not None and self.journal.stats.last_error:
            problems.append("journal: database unavailable, spooling to disk")
        return problems

    def _agi_health(self) -> dict[str, object]:
        """The FastAGI part of ``/healthz``.

        Not part of the healthy verdict: while it is down, AGI calls take the
        dialplan fallback.

        Returns:
            State, bind address and counters.
        """
        server, router = self.agi, self.agi_router
        if server is None or router is None:
            return {"state": "disabled"}
        return {
            "state": "listening" if server.listening else "down",
            "bind": f"{server.host}:{server.port}",
            "last_error": server.last_error,
            # Shown, not a problem of its own: FreePBX set-ups without the
            # secret keep routing; the start-up log warns once.
            "authentication": "shared secret" if server.authenticated
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
