"""The composition root: build the adapters, start them, stop them in order.

Start: rules (must be valid) → overrides → HTTP → ARI (reconnects forever;
Asterisk may come later) → READY=1. Stop (SIGTERM): STOPPING=1 → finish the
calls being routed → close the ARI socket (Asterisk then sends new calls down
the dialplan fallback) → finish what arrived meanwhile → close the rest.

Two steps: :meth:`Daemon.build` makes every part and wires them together
(nothing connects), :meth:`Daemon.run` starts them in the order above.
``/healthz`` and ``/metrics`` see each part through its face in
:mod:`pbxbridge.components`, never through its internals.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from pbxbridge import __version__, components
from pbxbridge.adapters.agi import AgiRouter, AgiServer
from pbxbridge.adapters.ami.client import AmiClient, AmiConfig
from pbxbridge.adapters.ami.errors import AmiActionFailed
from pbxbridge.adapters.ari.client import AriClient, AriConfig
from pbxbridge.adapters.ari.router import StasisRouter, routing_alive
from pbxbridge.adapters.http.server import HttpServer
from pbxbridge.adapters.mqtt.publisher import MqttPublisher
from pbxbridge.adapters.mqtt.settings import MqttSettings
from pbxbridge.components import Component
from pbxbridge.config import ConfigError
from pbxbridge.config.compile import state_path
from pbxbridge.core.lifecycle import CallEvent, CallRecord
from pbxbridge.core.models import Decision
from pbxbridge.journal.backend import journal_opener, spool_dir
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
        self._journal_observer: Callable[[CallRecord, CallEvent | None], None] | None = None
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
        self.registry = CollectorRegistry()
        self.call_metrics: CallMetrics | None = None
        self.notifier = SystemdNotifier()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT: build every part, start them, stop them in order.

        Returns:
            The process exit code (0 after a clean stop, 1 on invalid rules).
        """
        if not self._load_rules():
            return 1
        session = aiohttp.ClientSession()
        self.build(session)
        await self._start()
        await self._stop.wait()
        await self._shutdown(session)
        return 0

    def _load_rules(self) -> bool:
        """Load the rules file; log why not (the daemon then does not start)."""
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
            return False
        log.info(
            "daemon.starting",
            version=__version__,
            rules=str(self.rules.path),
            tenants=len(self.rules.rules.tenants),
            ari=self.settings.ari_url,
            app=self.settings.ari_app,
        )
        return True

    def build(self, session: aiohttp.ClientSession) -> None:
        """Build every part and wire them together; nothing is started, nothing connects.

        Needs the rules loaded (the state file and the time zone come from them).

        Args:
            session: The HTTP session of the ARI client (closed by the shutdown).
        """
        # Shared through PostgreSQL like the journal when a URL is configured,
        # else the node's SQLite state file (the CLI makes the same choice).
        self.overrides = LiveOverrides(
            state_path(self.rules.model, self.rules.path), self.settings.database_url
        )
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
            self._journal_observer = self.journal.observer(self.settings.node)
            self.repeat = RepeatCallers(open_journal)
            self.journal_link = JournalLink(open=open_journal, node=self.settings.node)
        self.call_metrics = CallMetrics(self.registry, LiveServiceLevel(self.rules.rules.timezone))
        self.registry.register(
            ScrapeCollector(lambda: components.gauges(self.components()), components.GAUGE_HELP)
        )
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

    async def _start(self) -> None:
        """Start what :meth:`build` built, in order, then say READY=1."""
        assert self.overrides is not None and self.ari is not None and self.router is not None
        assert self.desk is not None
        await self.overrides.poll()
        if self.http is not None:
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
                retention_loop(
                    self._journal_opener(),
                    days=self.settings.retention_days,
                    spool_dir=self.journal.spool_dir,
                ),
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
        assert self.call_metrics is not None
        self.call_metrics.observe(record, event)
        if self._journal_observer is not None:
            # The writer's own observer: a record it cannot take is logged
            # there and never breaks the tracker or the metrics.
            self._journal_observer(record, event)

    def components(self) -> list[Component]:
        """Every part's face towards ``/healthz`` and ``/metrics``, in the body's key order.

        A part not built (switched off, or before :meth:`build`) is
        listed with ``None`` and reports itself disabled.
        """
        return [
            components.Ari(self.ari, self.settings.ari_app),
            components.Ami(self.ami),
            components.Mqtt(self.mqtt),
            components.Tracker(self.tracker, self.rules),
            components.ServiceLevel(self.call_metrics),
            components.Journal(self.journal),
            components.Rules(self.rules),
            components.Overrides(self.overrides),
            components.Agi(self.agi, self.agi_router),
            components.Web(self.web, self.desk),
            components.Calls(self.router),
        ]

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
        """Health for ``/healthz``: one verdict a monitor can read (see :func:`components.health`).

        Returns:
            ``(status == "ok", body)``.
        """
        return components.health(__version__, self.components())
