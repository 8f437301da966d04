"""The agent desk's state: pops per agent, live streams, wrap-up and callbacks.

:meth:`AgentDesk.deliver` is the :class:`~pbxbridge.tracking.call_tracker.CallTracker`
``local`` sink: it receives exactly the messages published over MQTT, for every
agent, in the event loop. Per agent the desk keeps the calls on screen (bounded)
and pushes each message to that agent's open event streams only: one agent's
streams never see another agent's pops.

Wrap-up: a call the agent answered stays on the desk until the agent records
how it ended ("resolved" or "callback"). The record goes to the call journal
(:meth:`~pbxbridge.journal.store.JournalStore.set_disposition`), in a worker
thread. A callback's deadline is the end of the tenant's
``callback_working_days``-th working day after the local date on which the call
was answered (weekends, holidays and extra closed dates of the tenant's
calendar skipped).

Without a journal (none configured, or the link not yet given) the desk still
shows pops; wrap-up and callbacks answer "unavailable".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import structlog

from pbxbridge.core.numbers import normalize
from pbxbridge.core.rules import Rules
from pbxbridge.journal.store import (
    MAX_NOTE_CHARS,
    CallRow,
    Disposition,
    JournalStore,
)
from pbxbridge.web import sse

log = structlog.get_logger(__name__)

STREAM_QUEUE: Final = 64
"""Messages buffered per event stream; a stream that falls behind gets a fresh snapshot."""
MAX_STREAMS_PER_AGENT: Final = 5
MAX_CARDS_PER_AGENT: Final = 20
MAX_AGENTS: Final = 2000
RINGING_MAX_AGE_S: Final = 600.0
CARD_MAX_AGE_S: Final = 12 * 3600.0
MAX_NUMBER_CHARS: Final = 40
FIGURES_INTERVAL_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class JournalLink:
    """How the desk reaches the call journal.

    Attributes:
        open: Opens a store of the desk's own (called in a worker thread; again
            after a connection failure).
        node: This node's name: the first half of the journal's key, the same
            the journal writer uses.
    """

    open: Callable[[], JournalStore]
    node: str


class DeskError(Exception):
    """A refused request: HTTP status, label key and label values.

    Args:
        status: HTTP status.
        key: Label key in :mod:`pbxbridge.web.i18n`.
        **values: Label placeholder values.
    """

    def __init__(self, status: int, key: str, **values: object) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.values = values


@dataclass(slots=True)
class Card:
    """One call on an agent's desk.

    Attributes:
        message: The latest pop for it (as published).
        state: ``ringing``, ``answered`` or ``wrapup`` (ended after answer).
        received: Monotonic time the latest pop arrived.
        answered_on: Local date the agent answered (the callback deadline's base).
    """

    message: dict[str, object]
    state: str
    received: float
    answered_on: date | None = None


@dataclass(slots=True)
class Stream:
    """One open event stream (a browser tab)."""

    agent: str
    session: str = ""
    queue: asyncio.Queue[tuple[str, str] | None] = field(
        default_factory=lambda: asyncio.Queue(STREAM_QUEUE)
    )
    resyncs: int = 0


@dataclass(slots=True)
class _AgentState:
    cards: OrderedDict[str, Card] = field(default_factory=OrderedDict)
    streams: list[Stream] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CallbackCounts:
    """Open callbacks of one tenant.

    Attributes:
        open: Not done yet (including the two below).
        due_today: Due later today.
        overdue: Past their deadline.
    """

    open: int = 0
    due_today: int = 0
    overdue: int = 0


@dataclass(frozen=True, slots=True)
class CallbackItem:
    """One open callback as the page lists it.

    Attributes:
        row: The journal row.
        bucket: ``overdue``, ``due_today`` or ``open_later``.
        due_local: Deadline in the rules' time zone.
        recorded_local: When the agent asked for it, in the rules' time zone.
        mine: Recorded by the viewing agent.
    """

    row: CallRow
    bucket: str
    due_local: datetime
    recorded_local: datetime
    mine: bool


@dataclass(frozen=True, slots=True)
class CallbacksView:
    """What the callbacks page shows.

    Attributes:
        items: The callbacks the agent may see, most urgent first.
        counts: Team figures per tenant (all agents, no personal data).
    """

    items: list[CallbackItem]
    counts: dict[str, CallbackCounts]


@dataclass(frozen=True, slots=True)
class Saved:
    """A recorded disposition.

    Attributes:
        call_id: The call.
        disposition: ``resolved`` or ``callback``.
        due_local: The callback deadline (rules' time zone), or ``None``.
    """

    call_id: str
    disposition: str
    due_local: datetime | None


def callback_due(rules: Rules, tenant: str, local_day: date) -> datetime:
    """The deadline of a callback for a call on ``local_day``.

    Args:
        rules: The routing rules in force.
        tenant: Tenant id.
        local_day: The call's local date (rules' time zone).

    Returns:
        End of the tenant's ``callback_working_days``-th working day after it,
        in the rules' time zone.

    Raises:
        DeskError: If the tenant is not in the rules (any more).
    """
    spec = rules.tenants.get(tenant)
    if spec is None:
        raise DeskError(400, "err_tenant_unknown")
    return spec.calendar.end_of_working_day(local_day, spec.callback_working_days, rules.timezone)


class AgentDesk:
    """Pops, wrap-up and callbacks for every agent.

    Args:
        rules: The routing rules in force (tenants, calendars, time zone).
        journal: The journal link, or ``None`` while there is none (asked anew
            each time, so a journal wired later is picked up).
        clock: "now" as an aware datetime (tests inject one; it decides the
            call's date for callback deadlines and what is due or overdue).
        not_journalled_wait_s: How long a wrap-up waits for the journal writer
            to store a just-ended call before telling the agent to retry.
        on_callback: Told the caller's number and the number to call back
            (E.164 or ``None``) of each callback ticket written (the open-callback
            look-up forgets what it knew of them).
    """

    def __init__(
        self,
        rules: Callable[[], Rules],
        journal: Callable[[], JournalLink | None] = lambda: None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        not_journalled_wait_s: float = 3.0,
        on_callback: Callable[[str | None, str | None], None] | None = None,
    ) -> None:
        self._rules = rules
        self._journal = journal
        self.clock = clock
        self._wait_s = not_journalled_wait_s
        self._on_callback = on_callback
        self._agents: dict[str, _AgentState] = {}
        self._store: JournalStore | None = None
        self._store_link: JournalLink | None = None
        self._store_lock = asyncio.Lock()
        self.figures: dict[str, CallbackCounts] = {}
        self.figures_error: str | None = None
        self.delivered = 0
        self.closed = False
        self._tasks: set[asyncio.Task[None]] = set()  # fire-and-forget recounts

    # -- pops ------------------------------------------------------------------

    def deliver(self, agent: str, message: dict[str, object]) -> None:
        """Take one agent pop (the CallTracker ``local`` sink; never raises).

        Args:
            agent: The agent it is for.
            message: The pop, as published over MQTT.
        """
        try:
            self._deliver(agent, message)
        except Exception:
            log.exception("web.deliver_failed", agent=agent)

    def _deliver(self, agent: str, message: dict[str, object]) -> None:
        call_id = message.get("call_id")
        event = message.get("event")
        if not isinstance(call_id, str) or not call_id or not agent:
            return
        state = self._agents.get(agent)
        if state is None:
            if len(self._agents) >= MAX_AGENTS:
                self._prune_agents()
            state = self._agents[agent] = _AgentState()
        now = time.monotonic()
        card = state.cards.get(call_id)
        if event == "ringing":
            if card is not None and card.state != "ringing":
                return  # a duplicate or late ringing after the answer: keep the call
            state.cards[call_id] = Card(message, "ringing", now)
        elif event == "answered":
            day = self.clock().astimezone(self._rules().timezone).date()
            answered_on = card.answered_on if card and card.answered_on else day
            state.cards[call_id] = Card(message, "answered", now, answered_on)
        elif event == "ended":
            if card is not None and card.state in ("answered", "wrapup"):
                card.state = "wrapup"
                card.received = now
                card.message = {**card.message, "times": message.get("times")}
            else:
                state.cards.pop(call_id, None)
        else:
            return
        if call_id in state.cards:  # an ended ringing card is gone: nothing to move
            state.cards.move_to_end(call_id)
        self._bound(state, now)
        self.delivered += 1
        for stream in list(state.streams):
            self._push(stream, sse.event("pop", message))

    def _bound(self, state: _AgentState, now: float) -> None:
        for call_id, card in list(state.cards.items()):
            limit = RINGING_MAX_AGE_S if card.state == "ringing" else CARD_MAX_AGE_S
            if now - card.received > limit:
                del state.cards[call_id]
        while len(state.cards) > MAX_CARDS_PER_AGENT:
            state.cards.popitem(last=False)

    def _prune_agents(self) -> None:
        for agent, state in list(self._agents.items()):
            if not state.cards and not state.streams:
                del self._agents[agent]

    def _push(self, stream: Stream, item: tuple[str, str]) -> None:
        try:
            stream.queue.put_nowait(item)
        except asyncio.QueueFull:
            # The browser does not keep up (or is gone): replace its backlog
            # with one fresh snapshot instead of growing without bound.
            while not stream.queue.empty():
                stream.queue.get_nowait()
            stream.resyncs += 1
            stream.queue.put_nowait(sse.event("snapshot", self.snapshot(stream.agent)))

    def snapshot(self, agent: str) -> dict[str, object]:
        """Everything on an agent's desk now.

        Args:
            agent: The agent.

        Returns:
            ``{"cards": [...], "journal": bool}``; each card has the latest pop,
            its state and ``age_s`` (seconds since that pop arrived).
        """
        state = self._agents.get(agent)
        now = time.monotonic()
        cards: list[dict[str, object]] = []
        if state is not None:
            self._bound(state, now)
            cards = [
                {"state": c.state, "age_s": round(now - c.received, 3), "pop": c.message}
                for c in state.cards.values()
            ]
        return {"cards": cards, "journal": self.journal_available}

    def subscribe(self, agent: str, session: str = "") -> Stream:
        """Open an event stream for an agent (starts with a snapshot).

        Args:
            agent: The signed-in agent.
            session: The session's id (to end its streams at sign-out).

        Returns:
            The stream; read :attr:`Stream.queue` until ``None``.
        """
        state = self._agents.get(agent)
        if state is None:
            if len(self._agents) >= MAX_AGENTS:
                self._prune_agents()
            state = self._agents[agent] = _AgentState()
        stream = Stream(agent, session)
        stream.queue.put_nowait(sse.event("snapshot", self.snapshot(agent)))
        state.streams.append(stream)
        while len(state.streams) > MAX_STREAMS_PER_AGENT:
            self._end(state.streams.pop(0))
        return stream

    def unsubscribe(self, stream: Stream) -> None:
        """Forget a closed stream.

        Args:
            stream: The stream.
        """
        state = self._agents.get(stream.agent)
        if state is not None and stream in state.streams:
            state.streams.remove(stream)

    def _end(self, stream: Stream) -> None:
        while not stream.queue.empty():
            stream.queue.get_nowait()
        stream.queue.put_nowait(None)

    def end_streams(self, agent: str | None = None) -> None:
        """Close event streams (one agent's at sign-out, all at shutdown).

        Args:
            agent: Only this agent's; ``None``: everyone's.
        """
        for name, state in self._agents.items():
            if agent is None or name == agent:
                for stream in state.streams:
                    self._end(stream)
                state.streams.clear()

    def end_session_streams(self, session: str) -> None:
        """Close the event streams of one session (sign-out).

        Args:
            session: The session's id.
        """
        for state in self._agents.values():
            for stream in [s for s in state.streams if s.session == session]:
                state.streams.remove(stream)
                self._end(stream)

    @property
    def stream_count(self) -> int:
        """Open event streams."""
        return sum(len(s.streams) for s in self._agents.values())

    def rules(self) -> Rules:
        """The routing rules in force."""
        return self._rules()

    # -- journal ---------------------------------------------------------------

    @property
    def journal_available(self) -> bool:
        """Whether a journal is configured (it may still be unreachable)."""
        return self._journal() is not None

    async def _with_store(self, work: Callable[[JournalStore, str], Any]) -> Any:
        link = self._journal()
        if link is None:
            raise DeskError(503, "journal_missing")
        async with self._store_lock:
            if self._store is None or self._store_link is not link:
                await self._drop_store()
                try:
                    self._store = await asyncio.to_thread(link.open)
                except Exception as exc:
                    log.warning("web.journal_unavailable", error=f"{type(exc).__name__}: {exc}")
                    raise DeskError(503, "err_journal_down") from None
                self._store_link = link
            store = self._store
        try:
            return await asyncio.to_thread(work, store, link.node)
        except DeskError:
            raise
        except Exception as exc:
            if store.is_transient(exc):
                log.warning("web.journal_unavailable", error=f"{type(exc).__name__}: {exc}")
                async with self._store_lock:
                    if self._store is store:
                        await self._drop_store()
                raise DeskError(503, "err_journal_down") from None
            raise

    async def _drop_store(self) -> None:
        store, self._store = self._store, None
        self._store_link = None
        if store is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.close)

    async def close(self) -> None:
        """End every stream and close the desk's journal store."""
        self.closed = True
        self.end_streams()
        async with self._store_lock:
            await self._drop_store()

    # -- wrap-up -----------------------------------------------------------------

    def wrapup_card(self, agent: str, call_id: str) -> Card | None:
        """A call the agent answered and has not wrapped up yet.

        Args:
            agent: The agent.
            call_id: The call.

        Returns:
            The card, or ``None`` (not this agent's answered call).
        """
        state = self._agents.get(agent)
        card = state.cards.get(call_id) if state else None
        if card is None or card.state not in ("answered", "wrapup"):
            return None
        return card

    async def dispose(
        self, agent: str, call_id: str, disposition: str, note: str, number: str
    ) -> Saved:
        """Record how an answered call ended.

        Checks everything before writing: nothing is stored on any error.

        Args:
            agent: The signed-in agent.
            call_id: The call (must be one the agent answered).
            disposition: ``resolved`` or ``callback``.
            note: Short note (at most 500 characters).
            number: Callback number (``callback`` only; any usual notation).

        Returns:
            What was saved.

        Raises:
            DeskError: With the reason the request was refused.
        """
        if not self.journal_available:
            raise DeskError(503, "journal_missing")
        if disposition not in (Disposition.RESOLVED, Disposition.CALLBACK):
            raise DeskError(400, "err_disposition")
        note = "".join(ch for ch in note.replace("\r\n", "\n") if ch.isprintable() or ch == "\n")
        note = note.strip()
        if len(note) > MAX_NOTE_CHARS:
            raise DeskError(400, "err_note_long", max=MAX_NOTE_CHARS, count=len(note))
        card = self.wrapup_card(agent, call_id)
        if card is None:
            raise DeskError(404, "err_unknown_call")
        rules = self._rules()
        callback_number: str | None = None
        due_local: datetime | None = None
        number = number.strip()
        if disposition == Disposition.CALLBACK:
            if not number:
                raise DeskError(400, "err_number_missing")
            if len(number) > MAX_NUMBER_CHARS:
                raise DeskError(400, "err_number_invalid")
            callback_number = normalize(number, rules.region).e164
            if callback_number is None:
                raise DeskError(400, "err_number_invalid")
            tenant = _pop_field(card.message, "tenant", "id")
            day = card.answered_on or self.clock().astimezone(rules.timezone).date()
            due_local = callback_due(rules, tenant, day)
        at = self.clock()
        due_utc = due_local.astimezone(UTC) if due_local else None

        def write(store: JournalStore, node: str) -> bool:
            return store.set_disposition(
                node, call_id, disposition, agent, note, callback_number, due_utc, at
            )

        deadline = time.monotonic() + self._wait_s
        while True:
            if await self._with_store(write):
                break
            # The journal writer flushes every half second: a call that just
            # ended may not be stored yet.
            if time.monotonic() >= deadline:
                raise DeskError(409, "err_not_journalled")
            await asyncio.sleep(0.2)
        log.info(
            "web.disposition",
            agent=agent,
            call_id=call_id,
            disposition=disposition,
            due=due_local.isoformat() if due_local else None,
        )
        if callback_number is not None and self._on_callback is not None:
            try:
                caller = _pop_field(card.message, "caller", "number") or None
                self._on_callback(caller, callback_number)
            except Exception:  # the ticket is written; a hook's fault must not undo that
                log.exception("web.on_callback_failed", call_id=call_id)
        state = self._agents.get(agent)
        if state is not None:
            state.cards.pop(call_id, None)
            for stream in list(state.streams):
                self._push(stream, sse.event("done", {"call_id": call_id}))
        self._refresh_soon()
        return Saved(call_id, disposition, due_local)

    # -- callbacks ---------------------------------------------------------------

    def _classify(self, due: datetime, now: datetime, tz: Any) -> str:
        if due <= now:
            return "overdue"
        if due.astimezone(tz).date() == now.astimezone(tz).date():
            return "due_today"
        return "open_later"

    async def callbacks(self, agent: str, supervisor: bool, tenant: str | None) -> CallbacksView:
        """Open callbacks for the callbacks page.

        Args:
            agent: The signed-in agent.
            supervisor: Sees every agent's callbacks.
            tenant: Only this tenant; ``None``: all.

        Returns:
            The agent's own callbacks (a supervisor's: all), and team counts.

        Raises:
            DeskError: When the journal is missing or unreachable.
        """
        rows: list[CallRow] = await self._with_store(
            lambda store, node: store.open_callbacks(tenant)
        )
        rules = self._rules()
        tz = rules.timezone
        now = self.clock()
        counts = _count(rows, now, tz, self._classify)
        items = [
            CallbackItem(
                row,
                self._classify(row.callback_due_at, now, tz),
                row.callback_due_at.astimezone(tz),
                (row.disposition_at or row.arrived_at).astimezone(tz),
                row.disposition_by == agent,
            )
            for row in rows
            if row.callback_due_at is not None and (supervisor or row.disposition_by == agent)
        ]
        return CallbacksView(items, counts)

    async def mark_done(self, agent: str, supervisor: bool, node: str, call_id: str) -> CallRow:
        """Mark an open callback as done.

        Args:
            agent: The signed-in agent.
            supervisor: May close any agent's callback.
            node: The callback's node.
            call_id: The callback's call.

        Returns:
            The callback's row as it was before.

        Raises:
            DeskError: Unknown, done already, another agent's, or no journal.
        """
        if not node or not call_id or len(node) > 200 or len(call_id) > 200:
            raise DeskError(404, "err_callback_unknown")
        at = self.clock()

        def find_and_close(store: JournalStore, _node: str) -> CallRow:
            row = next(
                (r for r in store.open_callbacks() if r.node == node and r.call_id == call_id),
                None,
            )
            if row is None:
                raise DeskError(404, "err_callback_unknown")
            if not supervisor and row.disposition_by != agent:
                raise DeskError(403, "err_callback_foreign")
            if not store.mark_callback_done(node, call_id, at):
                raise DeskError(404, "err_callback_unknown")
            return row

        row: CallRow = await self._with_store(find_and_close)
        log.info("web.callback_done", agent=agent, call_id=call_id, node=node)
        self._refresh_soon()
        return row

    # -- figures for /metrics ------------------------------------------------------

    async def refresh_figures(self) -> None:
        """Recount open, due-today and overdue callbacks per tenant (all agents)."""
        if not self.journal_available:
            self.figures = {}
            return
        try:
            rows: list[CallRow] = await self._with_store(
                lambda store, node: store.open_callbacks(None)
            )
        except DeskError as exc:
            self.figures_error = exc.key
            return
        except Exception as exc:
            self.figures_error = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("web.figures_failed", error=self.figures_error)
            return
        tz = self._rules().timezone
        counts = _count(rows, self.clock(), tz, self._classify)
        for tenant in self._rules().tenants:
            counts.setdefault(tenant, CallbackCounts())
        self.figures = counts
        self.figures_error = None

    def _refresh_soon(self) -> None:
        with contextlib.suppress(RuntimeError):
            task = asyncio.get_running_loop().create_task(self.refresh_figures())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def run(self, interval: float = FIGURES_INTERVAL_S) -> None:
        """Keep the callback figures fresh (until cancelled).

        Args:
            interval: Seconds between recounts.
        """
        while not self.closed:
            await self.refresh_figures()
            await asyncio.sleep(interval)

    def health(self) -> dict[str, object]:
        """The desk's part of ``/healthz``.

        Returns:
            Counters and the journal state.
        """
        return {
            "agents_with_calls": sum(1 for s in self._agents.values() if s.cards),
            "streams": self.stream_count,
            "delivered": self.delivered,
            "journal": "configured" if self.journal_available else "none",
            "figures_error": self.figures_error,
        }


def _pop_field(message: Mapping[str, object], part: str, name: str) -> str:
    """A string inside a pop's part (``tenant.id``, ``caller.number``), else ``""``."""
    inner = message.get(part)
    if isinstance(inner, Mapping):
        value = inner.get(name)
        if isinstance(value, str):
            return value
    return ""


def _count(
    rows: list[CallRow], now: datetime, tz: Any, classify: Callable[[datetime, datetime, Any], str]
) -> dict[str, CallbackCounts]:
    raw: dict[str, list[int]] = {}
    for row in rows:
        if row.callback_due_at is None:
            continue
        entry = raw.setdefault(row.tenant, [0, 0, 0])
        entry[0] += 1
        bucket = classify(row.callback_due_at, now, tz)
        if bucket == "due_today":
            entry[1] += 1
        elif bucket == "overdue":
            entry[2] += 1
    return {t: CallbackCounts(*v) for t, v in raw.items()}


__all__ = [
    "AgentDesk",
    "CallbackCounts",
    "CallbackItem",
    "CallbacksView",
    "Card",
    "DeskError",
    "JournalLink",
    "Saved",
    "Stream",
    "callback_due",
]
