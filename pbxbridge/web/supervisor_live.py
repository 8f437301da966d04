"""The supervisor page's live state: one snapshot of everything, pushed to every open page.

The hub reads (never copies) what other parts own: the call tracker's live
records (calls waiting), :class:`~pbxbridge.tracking.call_board.CallBoard`
(today's counts), :class:`~pbxbridge.tracking.agents_board.AgentBoard`
(agent states), the agent desk's callback figures, and two optional providers
(virtual holds; the staffing forecast). :meth:`SupervisorHub.changed` is
called after every AMI event and call change; it renders at most once per
:data:`COALESCE_S` for all open pages together (a burst of events is one
update), and once every :data:`REFRESH_S` anyway (the 15-minute window moves,
wrap-ups run out). Times in state and waits tick in the browser from the
``data-since`` stamps, so a quiet board costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final

import structlog

from pbxbridge.core import erlang, servicelevel
from pbxbridge.core.lifecycle import CallEvent, CallRecord
from pbxbridge.core.rules import Rules
from pbxbridge.journal.entry import Outcome
from pbxbridge.journal.store import CallRow
from pbxbridge.runtime.settings import read_secret
from pbxbridge.tracking.agents_board import AgentBoard, AgentView, MemberStatus
from pbxbridge.tracking.call_board import ALL, CallBoard, Tally, Waiting, waiting
from pbxbridge.web import sse
from pbxbridge.web.desk import CallbackCounts, JournalLink

log = structlog.get_logger(__name__)

COALESCE_S: Final = 0.05
"""Events within this long of the first are rendered together."""
REFRESH_S: Final = 15.0
"""A page is re-rendered at least this often (windows move without events)."""
STREAM_QUEUE: Final = 8
MAX_STREAMS: Final = 50
MIN_WALLBOARD_TOKEN_CHARS: Final = 16
WARN_POINTS: Final = 5.0
"""A service level below the target by less than this many points is amber, further red."""

VirtualHolds = Callable[[], Mapping[str, int]]
"""Pending virtual holds (callers who chose to be called back instead of waiting)
per tenant id; the shared-queue total under ``""``. None: the tile is hidden."""
Forecast = Callable[[date], Mapping[str, list[float]]]
"""Expected arrivals per tenant id (``""``: shared queue) and half hour of a day."""
AgentsNeeded = Callable[[datetime], int | None]
"""Agents needed for the shared queue in the half hour of an instant."""


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """The supervisor page's settings.

    Attributes:
        target_percent: Promised service level in percent.
        threshold_s: Seconds within which a call counts as answered in time.
        warn_points: Amber band below the target, in percentage points.
        wallboard_token: Secret of the wallboard URL; empty: no wallboard.
    """

    target_percent: float = servicelevel.TARGET_PERCENT
    threshold_s: float = servicelevel.THRESHOLD_S
    warn_points: float = WARN_POINTS
    wallboard_token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SupervisorConfig:
        """Read ``PBXBRIDGE_SL_TARGET`` (``80/20``) and the wallboard token.

        The target is read by :func:`pbxbridge.core.erlang.parse_target` (the
        staffing commands' reader, so that plan and page share one promise).
        The token is the credential ``wallboard-password`` (systemd
        ``LoadCredential=``), or ``PBXBRIDGE_WALLBOARD_PASSWORD(_FILE)``; never
        the routing YAML (the rules are readable by more people than the TV).

        Args:
            env: The environment (default ``os.environ``).

        Returns:
            The settings. A malformed target is logged
            (``supervisor.target_invalid`` with the reason) and the default
            ``80/20`` is used: the page still shows every figure, coloured by
            the default promise, rather than not starting.
        """
        env = os.environ if env is None else env
        target, threshold = servicelevel.TARGET_PERCENT, servicelevel.THRESHOLD_S
        raw = env.get("PBXBRIDGE_SL_TARGET", "")
        if raw.strip():
            try:
                level, threshold = erlang.parse_target(raw)
            except ValueError as exc:
                log.error(
                    "supervisor.target_invalid",
                    value=raw,
                    error=str(exc),
                    using=erlang.DEFAULT_TARGET,
                )
            else:
                # The fraction back to percent without 0.07 * 100 = 7.000000000000001.
                target = round(level * 100, 9)
        token = read_secret("wallboard", env)
        if token and len(token) < MIN_WALLBOARD_TOKEN_CHARS:
            log.error(
                "supervisor.wallboard_disabled",
                reason=f"token shorter than {MIN_WALLBOARD_TOKEN_CHARS} characters",
            )
            token = ""
        return cls(target_percent=target, threshold_s=threshold, wallboard_token=token)


@dataclass(frozen=True, slots=True)
class TenantFigures:
    """One row of figures (a tenant, or the shared queue under ``""``).

    Attributes:
        tenant: Tenant id (``""``: all).
        name: Display name.
        waiting: Callers waiting now.
        longest_since: Unix time the longest waiting caller started waiting.
        today: Today's counts.
        recent: The last 15 minutes' answers and abandons.
        callbacks: Open callbacks (due today, overdue).
        virtual_holds: Pending virtual holds, ``None`` without the feature.
    """

    tenant: str
    name: str
    waiting: Waiting
    longest_since: float | None
    today: Tally
    recent: Tally
    callbacks: CallbackCounts
    virtual_holds: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the page shows at one instant.

    Attributes:
        now: The instant (aware).
        local: The same in the rules' time zone.
        unix: The same as Unix time (the browser's time base for ticking).
        rows: Shared queue first, then every tenant by name.
        agents: Every queue member.
        names: Agent id to display name (from the agents file).
        half_hours: Today's tallies per half hour of the shared queue.
        forecast: Expected arrivals per half hour (shared queue), if known.
        agents_needed: Agents needed for the current half hour, if known.
        signed_in: Agents not paused and not unavailable.
        config: Target and thresholds.
        slot: The current half hour (0..47).
    """

    now: datetime
    local: datetime
    unix: float
    rows: list[TenantFigures]
    agents: list[AgentView]
    names: Mapping[str, str]
    half_hours: list[Tally]
    forecast: list[float] | None
    agents_needed: int | None
    signed_in: int
    config: SupervisorConfig
    slot: int


@dataclass(slots=True)
class Viewer:
    """One open page (a browser tab or the wallboard TV)."""

    lang: str
    personal: bool
    session: str = ""
    queue: asyncio.Queue[tuple[str, str] | None] = field(
        default_factory=lambda: asyncio.Queue(STREAM_QUEUE)
    )


class SupervisorHub:
    """Builds snapshots and pushes rendered boards to the open pages.

    Args:
        rules: The routing rules in force (tenant names, time zone).
        records: The call tracker's live records.
        calls: Today's call counts.
        agents: The agent board.
        callbacks: Open callback counts per tenant (the desk's figures).
        render: Renders a snapshot for a language; ``personal`` False for the wallboard.
        config: Target and wallboard token.
        names: Agent id to display name.
        clock: "now" (aware).
        unix_clock: Unix time for the board's time base.
    """

    def __init__(
        self,
        rules: Callable[[], Rules],
        records: Callable[[], Iterable[CallRecord]],
        calls: CallBoard,
        agents: AgentBoard,
        callbacks: Callable[[], Mapping[str, CallbackCounts]],
        render: Callable[[Snapshot, str, bool], str],
        config: SupervisorConfig,
        *,
        names: Callable[[], Mapping[str, str]] = dict,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        unix_clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._records = records
        self.calls = calls
        self.agents = agents
        self._callbacks = callbacks
        self._render = render
        self.config = config
        self.names = names
        """Agent id to display name (the agents file)."""
        self.clock = clock
        self.unix_clock = unix_clock
        self.virtual_holds: VirtualHolds | None = None
        """Hook for the virtual-hold feature: set it to show the tile."""
        self.forecast: Forecast | None = None
        """Hook for the staffing forecast (arrivals chart)."""
        self.agents_needed: AgentsNeeded | None = None
        """Hook for the staffing figure of the current half hour."""
        self.viewers: list[Viewer] = []
        self._pending: asyncio.TimerHandle | None = None
        self.pushes = 0
        self.render_failures = 0
        self.closed = False

    # -- snapshot ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Everything the page shows, now."""
        now = self.clock()
        unix = self.unix_clock()
        rules = self._rules()
        tz = rules.timezone
        waits = waiting(self._records(), now)
        today = self.calls.today(now)
        recent = self.calls.recent(now)
        callbacks = dict(self._callbacks())
        holds = self._holds()
        tenants = sorted(rules.tenants.values(), key=lambda t: t.name)
        rows = [self._row(ALL, "", waits, today, recent, callbacks, holds, unix)]
        rows += [
            self._row(t.id, t.name, waits, today, recent, callbacks, holds, unix) for t in tenants
        ]
        local = now.astimezone(tz)
        forecast = None
        if self.forecast is not None:
            try:
                forecast = list(self.forecast(local.date()).get(ALL, [])) or None
            except Exception:
                log.exception("supervisor.forecast_failed")
        needed = None
        if self.agents_needed is not None:
            try:
                needed = self.agents_needed(now)
            except Exception:
                log.exception("supervisor.staffing_failed")
        return Snapshot(
            now=now,
            local=local,
            unix=unix,
            rows=rows,
            agents=self.agents.agents(unix),
            names=self.names(),
            half_hours=self.calls.half_hours(now).get(ALL, []),
            forecast=forecast,
            agents_needed=needed,
            signed_in=self.agents.signed_in(unix),
            config=self.config,
            slot=CallBoard.slot_of(local),
        )

    def _holds(self) -> Mapping[str, int] | None:
        if self.virtual_holds is None:
            return None
        try:
            return self.virtual_holds()
        except Exception:
            log.exception("supervisor.virtual_holds_failed")
            return None

    @staticmethod
    def _row(
        tenant: str,
        name: str,
        waits: Mapping[str, Waiting],
        today: Mapping[str, Tally],
        recent: Mapping[str, Tally],
        callbacks: Mapping[str, CallbackCounts],
        holds: Mapping[str, int] | None,
        unix: float,
    ) -> TenantFigures:
        wait = waits.get(tenant, Waiting())
        if tenant == ALL:
            due, overdue = (
                sum(c.due_today for c in callbacks.values()),
                sum(c.overdue for c in callbacks.values()),
            )
            cb = CallbackCounts(sum(c.open for c in callbacks.values()), due, overdue)
        else:
            cb = callbacks.get(tenant, CallbackCounts())
        return TenantFigures(
            tenant=tenant,
            name=name,
            waiting=wait,
            longest_since=unix - wait.longest_s if wait.calls else None,
            today=today.get(tenant, Tally()),
            recent=recent.get(tenant, Tally()),
            callbacks=cb,
            virtual_holds=None if holds is None else int(holds.get(tenant, 0)),
        )

    # -- feeding -----------------------------------------------------------------------

    def ami_event(self, event: Mapping[str, str]) -> None:
        """An AMI event for the agent board (the daemon's AMI handler; never raises)."""
        try:
            if self.agents.event(event, self.unix_clock()):
                self.changed()
        except Exception:
            log.exception("supervisor.event_failed", event=event.get("Event"))

    def observe(self, record: CallRecord, event: CallEvent | None) -> None:
        """A call changed (the call tracker's ``on_record`` observer; never raises)."""
        try:
            self.calls.observe(record, event)
        except Exception:
            log.exception("supervisor.observe_failed", call_id=record.call_id)
        self.changed()

    def rebuild(self, members: Iterable[MemberStatus]) -> None:
        """Replace the agent board with a ``QueueStatus`` answer (after every AMI login)."""
        self.agents.rebuild(members, self.unix_clock())
        self.changed()

    def wrapped_up(self, agent: str) -> None:
        """The agent recorded a wrap-up on the agent page."""
        if self.agents.wrapped_up(agent, self.unix_clock()):
            self.changed()

    async def seed(self, link: JournalLink, *, before: datetime) -> int:
        """Count today's calls this node journalled before ``before`` (a restart keeps the day).

        Calls routed since are counted live, so the two never overlap. A
        journal that cannot be read leaves the figures as they are (logged).

        Args:
            link: The journal.
            before: The daemon's start.

        Returns:
            Rows counted.
        """
        tz = self._rules().timezone
        start = datetime.combine(before.astimezone(tz).date(), datetime.min.time(), tz)

        def read() -> list[CallRow]:
            store = link.open()
            try:
                return [r for r in store.calls_between(start, before) if r.node == link.node]
            finally:
                store.close()

        try:
            rows = await asyncio.to_thread(read)
        except Exception as exc:
            log.warning("supervisor.seed_failed", error=f"{type(exc).__name__}: {exc}"[:200])
            return 0
        for row in rows:
            self._seed_row(row)
        log.info("supervisor.seeded", calls=len(rows), since=start.isoformat())
        self.changed()
        return len(rows)

    def _seed_row(self, row: CallRow) -> None:
        queued = row.queued_at
        if queued is None or row.action == "closed":
            return  # never offered to a queue (the report's "not queued")
        tenant = row.tenant or "unknown"
        self.calls.offered(tenant, queued)
        if row.answered_at is not None:
            wait = row.wait_s
            if wait is None:
                wait = max(0.0, (row.answered_at - queued).total_seconds())
            self.calls.outcome(tenant, row.answered_at, answered=True, wait_s=wait)
        elif row.outcome == Outcome.ABANDONED and row.ended_at is not None:
            wait = row.wait_s
            if wait is None:
                wait = (row.ended_at - queued).total_seconds()
            self.calls.outcome(tenant, row.ended_at, answered=False, wait_s=wait)

    # -- pages -------------------------------------------------------------------------

    def board(self, lang: str, personal: bool) -> str:
        """The rendered board for a first page load.

        Args:
            lang: Language.
            personal: False for the wallboard (no names, no numbers).

        Returns:
            HTML.
        """
        return self._render(self.snapshot(), lang, personal)

    def subscribe(self, lang: str, personal: bool, session: str = "") -> Viewer:
        """Open a stream; it starts with the board as it is now.

        Args:
            lang: Language of the rendered board.
            personal: False for the wallboard.
            session: The session's id ("" for the wallboard).

        Returns:
            The viewer; read :attr:`Viewer.queue` until ``None``.
        """
        viewer = Viewer(lang, personal, session)
        snap = self.snapshot()
        viewer.queue.put_nowait(self._event(snap, self._render(snap, lang, personal)))
        self.viewers.append(viewer)
        while len(self.viewers) > MAX_STREAMS:
            self._end(self.viewers.pop(0))
        return viewer

    def unsubscribe(self, viewer: Viewer) -> None:
        """Forget a closed stream."""
        if viewer in self.viewers:
            self.viewers.remove(viewer)

    def end_session(self, session: str) -> None:
        """Close the streams of a signed-out session."""
        for viewer in [v for v in self.viewers if v.session == session and session]:
            self.viewers.remove(viewer)
            self._end(viewer)

    def close(self) -> None:
        """End every stream (shutdown)."""
        self.closed = True
        if self._pending is not None:
            self._pending.cancel()
        for viewer in self.viewers:
            self._end(viewer)
        self.viewers.clear()

    @staticmethod
    def _end(viewer: Viewer) -> None:
        while not viewer.queue.empty():
            viewer.queue.get_nowait()
        viewer.queue.put_nowait(None)

    @staticmethod
    def _event(snap: Snapshot, html: str) -> tuple[str, str]:
        return sse.event("board", {"html": html, "now": round(snap.unix * 1000)})

    # -- updates -----------------------------------------------------------------------

    def changed(self) -> None:
        """Something moved: render and push soon (coalesced; never raises)."""
        if self._pending is not None or not self.viewers or self.closed:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nobody to push to
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(COALESCE_S, self.push)

    def push(self) -> None:
        """Render once per language and kind, and queue it for every open page."""
        self._pending = None
        if not self.viewers:
            return
        try:
            snap = self.snapshot()
            rendered: dict[tuple[str, bool], tuple[str, str]] = {}
            for viewer in list(self.viewers):
                key = (viewer.lang, viewer.personal)
                if key not in rendered:
                    rendered[key] = self._event(snap, self._render(snap, *key))
                self._offer(viewer, rendered[key])
        except Exception:
            self.render_failures += 1
            log.exception("supervisor.push_failed")
            return
        self.pushes += 1

    @staticmethod
    def _offer(viewer: Viewer, item: tuple[str, str]) -> None:
        # Each board replaces the previous one: a slow page only needs the latest.
        while viewer.queue.full():
            viewer.queue.get_nowait()
        viewer.queue.put_nowait(item)

    async def run(self, interval: float = REFRESH_S) -> None:
        """Re-render every ``interval`` seconds while pages are open (until cancelled)."""
        while not self.closed:
            await asyncio.sleep(interval)
            if self.viewers:
                self.push()

    def health(self) -> dict[str, object]:
        """Counters for ``/healthz``."""
        return {
            "viewers": len(self.viewers),
            "pushes": self.pushes,
            "render_failures": self.render_failures,
            "wallboard": bool(self.config.wallboard_token),
        }


__all__ = [
    "AgentsNeeded",
    "Forecast",
    "Snapshot",
    "SupervisorConfig",
    "SupervisorHub",
    "TenantFigures",
    "Viewer",
    "VirtualHolds",
]
