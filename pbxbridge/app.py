"""The composition root: build every part in one step, run them in another.

:meth:`Daemon.build` makes every part and wires them together (nothing is
started, nothing connects) and returns them as :class:`Components`: the parts
themselves (:class:`Parts`, ``None`` where switched off) and each part's face
(:mod:`pbxbridge.components`: ``start``/``stop``, ``health``, ``problems``,
``gauges``). :meth:`Daemon.run` starts the faces in the declared order
(:attr:`Components.order`), waits for SIGTERM and stops them in reverse:

- start: rules (loaded before building: they must be valid) → overrides read →
  HTTP → … → FastAGI listening and ARI connecting (reconnects forever; Asterisk
  may come later) → READY=1;
- stop: STOPPING=1 → finish the calls being routed (ARI and FastAGI together)
  → close the ARI socket (Asterisk then sends new calls down the dialplan
  fallback) → finish what arrived meanwhile → close the rest, last in first out.

``/healthz`` and ``/metrics`` see each part through its face
(:attr:`Components.body`, in the order of the body's keys), never through its
internals. The journal backend is chosen by
:func:`pbxbridge.journal.backend.journal_opener`, the same function the command
line uses.

Adding a component:

1. write its face in :mod:`pbxbridge.components` (a :class:`~pbxbridge.components.Part`
   subclass with ``start``/``stop`` and what it reports, taking ``None`` for a
   part that is switched off; export it from the package);
2. make the part in :meth:`Daemon.build` and add it to :class:`Parts`; add
   its face as a field of :class:`Components`, made in :func:`faces`;
3. put the face in :attr:`Components.order` (where it starts; it stops in
   reverse) and, if it has ``/healthz`` keys or gauges, in
   :attr:`Components.body`.

``tests/unit/test_app_lifecycle.py`` writes the order down; extend it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from pbxbridge import __version__, components
from pbxbridge.adapters.agi import AgiRouter, AgiServer
from pbxbridge.adapters.ami.client import AmiClient, AmiConfig
from pbxbridge.adapters.ami.repeat_priority import RepeatCallerPriority
from pbxbridge.adapters.ari.client import AriClient, AriConfig
from pbxbridge.adapters.ari.router import StasisRouter
from pbxbridge.adapters.ari.sounds import SoundCheck
from pbxbridge.adapters.ari.virtual_hold import APP as VHOLD_APP
from pbxbridge.adapters.ari.virtual_hold import VirtualHoldService
from pbxbridge.adapters.http.server import HttpServer
from pbxbridge.adapters.mqtt.publisher import MqttPublisher
from pbxbridge.adapters.mqtt.settings import MqttSettings
from pbxbridge.components import Component
from pbxbridge.components.open_callbacks import OpenCallbackNotes
from pbxbridge.components.wiring import (
    ami_handlers,
    ami_subscribers,
    hold_observers,
    observers,
    on_decision,
    ticket_recorder,
)
from pbxbridge.config import ConfigError
from pbxbridge.config.compile import state_path
from pbxbridge.config.sounds import sounds_named
from pbxbridge.journal.backend import journal_opener, spool_dir
from pbxbridge.journal.open_callbacks import OpenCallbacks
from pbxbridge.journal.repeat import RepeatCallers
from pbxbridge.journal.replay import ReloadImpact
from pbxbridge.journal.store import JournalStore
from pbxbridge.journal.writer import JournalWriter
from pbxbridge.runtime.live import LiveOverrides, LiveRules
from pbxbridge.runtime.sdnotify import SystemdNotifier
from pbxbridge.runtime.settings import Settings
from pbxbridge.storage.overrides import open_override_store
from pbxbridge.storage.virtual_holds import VirtualHoldStore, open_virtual_hold_store
from pbxbridge.tracking.agents_board import AgentBoard
from pbxbridge.tracking.call_board import CallBoard
from pbxbridge.tracking.call_tracker import (
    WALLBOARD_EVERY_S,
    CallTracker,
)
from pbxbridge.tracking.metrics import CallMetrics, LiveServiceLevel, ScrapeCollector, render
from pbxbridge.tracking.virtual_holds import VirtualHoldBoard
from pbxbridge.web import AgentDesk, AgentPage, JournalLink, WebConfig, setup_web
from pbxbridge.web.supervisor import SupervisorPage, setup_supervisor
from pbxbridge.web.supervisor_forecast import ForecastProvider
from pbxbridge.web.supervisor_live import SupervisorConfig, SupervisorHub
from pbxbridge.web.supervisor_view import render_board

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 15.0
"""How long a graceful stop waits for calls being routed (a 115 menu included)."""


@dataclass(frozen=True, slots=True)
class Parts:
    """Every part :meth:`Daemon.build` makes; ``None`` where it is switched off.

    The faces in :class:`Components` read these; tests put fakes here.
    """

    rules: LiveRules
    overrides: LiveOverrides | None = None
    ari: AriClient | None = None
    router: StasisRouter | None = None
    tracker: CallTracker | None = None
    call_metrics: CallMetrics | None = None
    desk: AgentDesk | None = None
    mqtt: MqttPublisher | None = None
    ami: AmiClient | None = None
    journal: JournalWriter | None = None
    repeat: RepeatCallers | None = None
    open_callbacks: OpenCallbacks | None = None
    repeat_priority: RepeatCallerPriority | None = None
    agi: AgiServer | None = None
    agi_router: AgiRouter | None = None
    http: HttpServer | None = None
    web: AgentPage | None = None
    supervisor: SupervisorPage | None = None
    forecast: ForecastProvider | None = None
    sounds: SoundCheck | None = None
    impact: ReloadImpact | None = None
    vhold_ari: AriClient | None = None
    vhold: VirtualHoldService | None = None
    vhold_board: VirtualHoldBoard | None = None
    vhold_open_store: Callable[[], VirtualHoldStore] | None = None


@dataclass(frozen=True, slots=True)
class Components:
    """The built daemon: its parts and one face per part (see :mod:`pbxbridge.components`)."""

    parts: Parts
    rules: components.Rules
    sounds: components.Sounds
    overrides: components.Overrides
    http: components.Http
    web: components.Web
    supervisor: components.Supervisor
    journal: components.Journal
    open_callbacks: OpenCallbackNotes
    mqtt: components.Mqtt
    tracker: components.Tracker
    service_level: components.ServiceLevel
    ami: components.Ami
    agi: components.Agi
    ari: components.Ari
    calls: components.Calls
    virtual_hold: components.VirtualHoldCalls
    virtual_holds: components.VirtualHolds

    @property
    def order(self) -> tuple[tuple[Component, ...], ...]:
        """The start order, one stage after another; the stop runs it backwards.

        The faces of a stage start one after the other and stop together: the
        two entry points (FastAGI, ARI) drain their calls at the same time.
        Whatever a part hands its work to is started before it and so stopped
        after it (the journal and MQTT after the tracker, which AMI feeds).
        """
        return (
            (self.rules,),
            (self.overrides,),
            (self.http,),
            (self.web,),
            # Before AMI and ARI: today's figures are counted from the journal
            # up to its start, every later call live.
            (self.supervisor,),
            (self.journal,),
            (self.open_callbacks,),
            (self.mqtt,),
            (self.tracker,),
            (self.service_level,),
            (self.ami,),
            # Before ARI, whose connects start its checks: stopped after it.
            (self.sounds,),
            # Needs AMI (placeholders, AstDB); stops after the entry points, so
            # callers they send to the number entry still get an answer.
            (self.virtual_hold, self.virtual_holds),
            (self.agi, self.ari, self.calls),
        )

    @property
    def body(self) -> tuple[Component, ...]:
        """The faces in the order of the ``/healthz`` body's keys (a format monitors read)."""
        return (
            self.ari,
            self.ami,
            self.mqtt,
            self.tracker,
            self.service_level,
            self.journal,
            self.rules,
            self.sounds,
            self.overrides,
            self.agi,
            self.web,
            self.supervisor,
            self.calls,
            self.virtual_hold,
            self.virtual_holds,
        )

    def health(self) -> tuple[bool, dict[str, object]]:
        """Health for ``/healthz``: one verdict a monitor can read (see :func:`components.health`).

        Returns:
            ``(status == "ok", body)``.
        """
        return components.health(__version__, self.body)

    def gauges(self) -> Iterator[components.Sample]:
        """Every face's gauges, read now (``/metrics``)."""
        return components.gauges(self.body)


def faces(
    parts: Parts,
    settings: Settings,
    *,
    notifier: SystemdNotifier | None = None,
    open_journal: Callable[[], JournalStore] | None = None,
) -> Components:
    """Put a face on every part: what :meth:`Daemon.build` returns.

    Args:
        parts: The parts (fakes in tests).
        settings: Intervals and names the faces need.
        notifier: systemd's side (reloads, the watchdog); ``None`` in tests.
        open_journal: Opens a journal store for the retention job.
    """
    ami, tracker = parts.ami, parts.tracker
    hub = parts.supervisor.hub if parts.supervisor is not None else None
    on_event = on_connected = None
    if ami is not None and tracker is not None:
        on_event, on_connected = ami_handlers(ami, tracker, hub, parts.vhold, parts.repeat_priority)
    live = parts.rules
    sounds = components.Sounds(parts.sounds, lambda: sounds_named(live.model))
    return Components(
        parts=parts,
        rules=components.Rules(
            parts.rules,
            notifier=notifier,
            poll_s=settings.rules_poll_s,
            impact=parts.impact,
            reloaded=lambda: sounds.recheck("rules reloaded"),
        ),
        sounds=sounds,
        overrides=components.Overrides(parts.overrides, poll_s=settings.overrides_poll_s),
        http=components.Http(parts.http),
        web=components.Web(parts.web, parts.desk),
        supervisor=components.Supervisor(
            parts.supervisor,
            forecast=parts.forecast,
            journal=(
                JournalLink(open_journal, settings.node)
                if open_journal is not None and parts.journal is not None
                else None
            ),
        ),
        journal=components.Journal(
            parts.journal,
            repeat=parts.repeat,
            open_store=open_journal,
            retention_days=settings.retention_days,
            open_holds=parts.vhold_open_store,
        ),
        open_callbacks=OpenCallbackNotes(parts.open_callbacks),
        mqtt=components.Mqtt(parts.mqtt),
        tracker=components.Tracker(tracker, parts.rules),
        service_level=components.ServiceLevel(parts.call_metrics),
        ami=components.Ami(ami, on_event=on_event, on_connected=on_connected),
        agi=components.Agi(parts.agi, parts.agi_router, drain_s=DRAIN_SECONDS),
        ari=components.Ari(
            parts.ari,
            settings.ari_app,
            router=parts.router,
            notifier=notifier,
            drain_s=DRAIN_SECONDS,
            connected=lambda: sounds.recheck("ARI connected"),
        ),
        calls=components.Calls(parts.router),
        virtual_hold=components.VirtualHoldCalls(parts.vhold_ari, parts.vhold),
        virtual_holds=components.VirtualHolds(parts.vhold_board),
    )


class Daemon:
    """pbxbridge as a service.

    Args:
        config: Path of the rules file.
        settings: Connection settings.
    """

    def __init__(self, config: str | Path, settings: Settings) -> None:
        self.settings = settings
        self.rules = LiveRules(config)
        self.notifier = SystemdNotifier()
        self.registry = CollectorRegistry()
        # The agent page's clock (tests move it).
        self.web_clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # What run() built (None before).
        self.components: Components | None = None
        self._stop = asyncio.Event()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT: build every part, start them, stop them in order.

        Returns:
            The process exit code (0 after a clean stop, 1 on invalid rules).
        """
        if not self._load_rules():
            return 1
        async with aiohttp.ClientSession() as session:
            self.components = built = self.build(session)
            await self._start(built)
            await self._stop.wait()
            await self._shutdown(built)
        return 0

    def stop(self) -> None:
        """Ask the daemon to stop gracefully (SIGTERM)."""
        if not self._stop.is_set():
            log.info("daemon.stopping")
            self._stop.set()

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

    def build(self, session: aiohttp.ClientSession) -> Components:
        """Build every part and wire them together; nothing is started, nothing connects.

        Needs the rules loaded (the state file and the time zone come from them).

        Args:
            session: The HTTP session of the ARI client (closed by :meth:`run`).

        Returns:
            The parts and their faces.
        """
        settings, rules = self.settings, self.rules
        state_file = state_path(rules.model, rules.path)
        # Shared through PostgreSQL like the journal when a URL is configured,
        # else the node's SQLite state file (the CLI makes the same choice).
        overrides = LiveOverrides(state_file, settings.database_url)
        ari = AriClient(
            AriConfig(
                base_url=settings.ari_url,
                username=settings.ari_user,
                password=settings.ari_password,
                app=settings.ari_app,
                backoff_max=settings.ari_backoff_max_s,
            ),
            session=session,
        )
        mqtt = MqttPublisher(MqttSettings.from_env()) if settings.mqtt_enabled else None
        # Call journal: SQLite beside the state, or a shared PostgreSQL. It is fed
        # by the AMI call tracking, so without AMI there is nothing to write.
        open_journal = journal_opener(settings.database_url, state_file)
        journal: JournalWriter | None = None
        repeat: RepeatCallers | None = None
        open_callbacks: OpenCallbacks | None = None
        journal_link: JournalLink | None = None
        if settings.ami_enabled:
            journal = JournalWriter(open_journal, spool_dir(state_file))
            repeat = RepeatCallers(open_journal)
            # "offener Rückruf vom Di 09:14" in the pop of a caller with an
            # open callback ticket (journal) or a pending virtual hold (its store).
            open_callbacks = OpenCallbacks(
                open_journal,
                lambda: open_virtual_hold_store(settings.database_url, state_file),
                rules.rules.timezone,
            )
            journal_link = JournalLink(open=open_journal, node=settings.node)
        call_metrics = CallMetrics(self.registry, LiveServiceLevel(rules.rules.timezone))
        # Agent page: fed by the call tracker's local sink.
        desk = AgentDesk(
            lambda: rules.rules,
            lambda: journal_link,
            clock=self.web_clock,
            # A callback ticket shows on the caller's next call, not a minute later.
            on_callback=open_callbacks.forget if open_callbacks is not None else None,
        )
        web_on = bool(settings.web_agents_file and settings.http_port)
        # Supervisor page (beside the agent page, on its sign-in): fed by the
        # tracker's records, the AMI member events and the desk's wrap-ups.
        hub: SupervisorHub | None = None
        if web_on:
            sv_config = SupervisorConfig.from_env()
            hub = SupervisorHub(
                lambda: rules.rules,
                lambda: tracker.records.values(),
                CallBoard(rules.rules.timezone, threshold_s=sv_config.threshold_s),
                AgentBoard(),
                lambda: desk.figures,
                render_board,
                sv_config,
            )
        on_record = observers(call_metrics, journal, settings.node, hub)
        tracker = CallTracker(
            mqtt,
            ring_timeout_s=settings.ring_timeout_s,
            on_record=on_record,
            repeat_calls=repeat.count if repeat is not None else None,
            open_callback=open_callbacks.note if open_callbacks is not None else None,
            local=desk.deliver if web_on else None,
            wallboard_every_s=WALLBOARD_EVERY_S,
        )
        ami: AmiClient | None = None
        if settings.ami_enabled:
            ami = AmiClient(
                AmiConfig(
                    host=settings.ami_host,
                    port=settings.ami_port,
                    username=settings.ami_user,
                    password=settings.ami_password,
                    events=ami_subscribers(tracker, hub, vhold_on=True).names,
                    backoff_max=2.0,
                )
            )
        # Repeat callers with an open callback: a higher queue priority,
        # set over AMI once they wait in the queue (routing never waits for it).
        bump: RepeatCallerPriority | None = None
        if ami is not None and open_callbacks is not None:
            bump = RepeatCallerPriority(ami, lambda: rules.rules, open_callbacks)
        routed = on_decision(tracker, repeat, open_callbacks, bump)
        router = StasisRouter(
            ari,
            lambda: rules.rules,
            lambda: overrides.items,
            on_decision=routed,
            stasis_max_s=settings.stasis_max_s,
        )
        # FastAGI entry point: the same core, rules, overrides and observer as ARI.
        agi: AgiServer | None = None
        agi_router: AgiRouter | None = None
        if settings.agi_enabled:
            agi_router = AgiRouter(
                lambda: rules.rules,
                lambda: overrides.items,
                on_decision=routed,
                menu_max_s=settings.stasis_max_s,
            )
            agi = AgiServer(
                settings.agi_host,
                settings.agi_port,
                {"route": agi_router.route},
                secret=settings.agi_secret,
            )
        http: HttpServer | None = None
        web: AgentPage | None = None
        supervisor: SupervisorPage | None = None
        forecast: ForecastProvider | None = None
        if settings.http_port:
            # The server asks the faces, made below, at request time.
            http = HttpServer(
                settings.http_host,
                settings.http_port,
                lambda: built.health(),
                lambda: render(self.registry),
                calendar=lambda: rules.rules,  # /calendar/{tenant}.ics, if PBXBRIDGE_CALENDAR_FEED
            )
            # Agent page: its routes must be added before the server starts.
            if web_on:
                web = setup_web(
                    http.app,
                    desk,
                    WebConfig(
                        agents_file=settings.web_agents_file,
                        secure_cookies=settings.web_secure_cookies,
                        session_secret=settings.web_session_secret,
                        trusted_proxies=settings.web_trusted_proxies,
                        # Sign-outs are kept there across restarts.
                        state_dir=str(state_file.parent),
                    ),
                )
                if hub is not None:
                    agents_file = web.agents
                    hub.names = lambda: {a.id: a.name for a in agents_file.agents().values()}
                    web.on_wrapped_up = hub.wrapped_up
                    supervisor = setup_supervisor(http.app, web, hub)
                    if journal_link is not None:
                        forecast = ForecastProvider(
                            lambda: rules.rules, lambda: journal_link, hub.config
                        )
                        hub.forecast = forecast.arrivals
                        hub.agents_needed = forecast.needed
        # Virtual hold (Asterisk side): its own Stasis application for the
        # offer and the number, AMI for placeholders and AstDB, the durable
        # store beside the overrides (or PostgreSQL), tickets into the journal.
        vhold_ari: AriClient | None = None
        vhold: VirtualHoldService | None = None
        vhold_board: VirtualHoldBoard | None = None

        def open_holds() -> VirtualHoldStore:
            return open_virtual_hold_store(settings.database_url, state_file)

        if ami is not None:
            vhold_ari = AriClient(
                AriConfig(
                    base_url=settings.ari_url,
                    username=settings.ari_user,
                    password=settings.ari_password,
                    # "pbxbridge-vhold" by default (the name the dialplan's
                    # Stasis() uses); a second node on the same Asterisk with
                    # its own application name gets its own, never takes ours.
                    app=f"{settings.ari_app}{VHOLD_APP.removeprefix('pbxbridge')}",
                    backoff_max=settings.ari_backoff_max_s,
                ),
                session=session,
            )
            vhold_board = VirtualHoldBoard(rules.rules.timezone, tenants=rules.rules.tenants)
            vhold = VirtualHoldService(
                vhold_ari,
                ami,
                lambda: rules.rules,
                lambda: overrides.items,
                open_holds,
                node=settings.node,
                record_ticket=ticket_recorder(open_journal),
                on_change=hold_observers(vhold_board, open_callbacks),
                # The placeholder reaching an agent pops the callback leg
                # (agent page and MQTT) without becoming a call of its own.
                on_leg=tracker.callback_leg,
            )
        parts = Parts(
            rules=rules,
            overrides=overrides,
            ari=ari,
            router=router,
            tracker=tracker,
            call_metrics=call_metrics,
            desk=desk,
            mqtt=mqtt,
            ami=ami,
            journal=journal,
            repeat=repeat,
            open_callbacks=open_callbacks,
            repeat_priority=bump,
            agi=agi,
            agi_router=agi_router,
            http=http,
            web=web,
            supervisor=supervisor,
            forecast=forecast,
            # The rules' sounds, checked against Asterisk on each ARI connect and reload.
            sounds=SoundCheck(ari.config),
            # What a reload changes over the last week of the journal.
            impact=(
                ReloadImpact(
                    open_journal,
                    lambda: open_override_store(settings.database_url, state_file),
                )
                if journal is not None
                else None
            ),
            vhold_ari=vhold_ari,
            vhold=vhold,
            vhold_board=vhold_board,
            vhold_open_store=open_holds if vhold is not None else None,
        )
        built = faces(parts, settings, notifier=self.notifier, open_journal=open_journal)
        self.registry.register(ScrapeCollector(built.gauges, components.GAUGE_HELP))
        return built

    async def _start(self, built: Components) -> None:
        """Start the faces in :attr:`Components.order`, then say READY=1."""
        for stage in built.order:
            for face in stage:
                await face.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: built.rules.reload("SIGHUP"))
        self.notifier.ready(status=f"routing with rules generation {self.rules.generation}")
        http = built.parts.http
        log.info("daemon.ready", http_port=http.port if http else None)

    async def _shutdown(self, built: Components) -> None:
        """Say STOPPING=1, then stop the stages in reverse (a stage's faces together)."""
        self.notifier.stopping(status="finishing calls being routed")
        for stage in reversed(built.order):
            await asyncio.gather(*(face.stop() for face in stage))
        router = built.parts.router
        log.info("daemon.stopped", routed=router.stats.routed if router else 0)
