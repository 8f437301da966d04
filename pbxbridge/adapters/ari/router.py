"""Stasis routing: every channel that enters our application gets a decision.

Flow for one call::

    StasisStart ─▶ Call (DID from the Stasis argument or the extension, caller ID)
                ─▶ route() ─▶ set tag variables (concurrently) ─▶ continue to the
                   queue / closed / reject context of the shipped dialplan

A 115 caller we cannot place hears the menu first: answer, play the prompt,
collect one DTMF digit (barge-in allowed) or time out, then route again with
the digit. Nothing else keeps a call in Stasis: the queue is app_queue's job.

The steps are :class:`~pbxbridge.adapters.callflow.CallFlow`'s, shared with
the FastAGI entry point: whatever fails, the call is continued to
``pbxbridge-unrouted`` and counted. Independently of that code, a guard timer
per channel (the Stasis bound, ``PBXBRIDGE_STASIS_MAX_S``) cancels whatever
is still going on for a channel that has been in the application too long and
continues it to ``pbxbridge-unrouted``: no bug has to be understood first for
a caller to get out of the silence.

After every (re)connect :meth:`StasisRouter.resync` routes channels that
entered the application while we were away (ARI does not replay events), so
calls are never left hanging after a daemon restart or an Asterisk hiccup -
whatever their state: ringing, answered by an earlier process's menu, its
prompt still playing.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from pbxbridge.adapters.ari.errors import (
    AriConflict,
    AriError,
    AriNotFound,
    AriVariableNotFound,
)
from pbxbridge.adapters.callflow import CallFlow, RoutingStats, Target, menu_wait
from pbxbridge.adapters.connection import ConnectionState, ConnectionStatus
from pbxbridge.adapters.dialplan import PACKED_VARIABLE, pack_decision
from pbxbridge.core.models import Call, Decision, Menu, Override
from pbxbridge.core.rules import Rules

log = structlog.get_logger(__name__)

EVENTS_USED = (
    "StasisStart",
    "StasisEnd",
    "ChannelDtmfReceived",
    "PlaybackFinished",
    "ApplicationReplaced",
)
"""The only ARI events the router reads; everything else is filtered in Asterisk."""

STASIS_MAX_SECONDS = 10.0
"""Default bound on a channel's time in the application (see ``stasis_max_s``)."""

UNROUTED = ("pbxbridge-unrouted", "s", 1)
"""The fallback: queued untagged by the shipped dialplan."""

MENU_PLAYBACK_VARIABLE = "PBXBRIDGE_MENU_PLAYBACK"
"""Channel variable naming the menu prompt's playback, so that a process that
resyncs the channel after a restart can stop a prompt an earlier one started."""

RulesSource = Callable[[], Rules]
OverridesSource = Callable[[], Sequence[Override]]
Clock = Callable[[], datetime]


class StasisAri(Protocol):
    """What the router needs of ARI.

    Whether the event connection is up, and the channel and application
    requests the router makes. :class:`~pbxbridge.adapters.ari.client.AriClient`
    is the one implementation; tests use a recording fake. Failures are the
    client's errors (:mod:`pbxbridge.adapters.ari.errors`): ``AriNotFound`` or
    ``AriConflict`` when the channel is gone, ``AriVariableNotFound`` for an
    unset variable.
    """

    @property
    def connected(self) -> bool:
        """Whether the event connection is up and delivering events."""
        ...

    async def set_event_filter(self, allowed: Sequence[str]) -> None:
        """Ask Asterisk to send the application only these event types."""
        ...

    async def get_application(self) -> dict[str, Any]:
        """The application, with ``channel_ids`` of the channels in it."""
        ...

    async def get_channel(self, channel_id: str) -> dict[str, Any]:
        """A channel snapshot."""
        ...

    async def get_variable(self, channel_id: str, name: str) -> str:
        """A channel variable."""
        ...

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        """Set a channel variable."""
        ...

    async def answer(self, channel_id: str) -> None:
        """Answer a channel."""
        ...

    async def play(
        self, channel_id: str, media: str, playback_id: str | None = None
    ) -> dict[str, Any]:
        """Start playing media to a channel, under the given playback id."""
        ...

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback."""
        ...

    async def continue_in_dialplan(
        self, channel_id: str, context: str, extension: str, priority: int = 1
    ) -> None:
        """Let a channel leave the application for the dialplan."""
        ...


class SupervisedConnection(Protocol):
    """What :func:`routing_alive` reads of the ARI client: its connection status."""

    @property
    def status(self) -> ConnectionStatus:
        """A snapshot of the event connection's state."""
        ...


RESYNC_STUCK_S = 10.0
"""A resync (``on_connected``) running longer than this counts as stuck: its
requests time out after a few seconds each, so only a bug keeps it going."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _MenuSession:
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    prompt_done: asyncio.Event = field(default_factory=asyncio.Event)
    playback_id: str = ""


class _StasisCall:
    """One channel in the application, as :class:`CallFlow` drives it."""

    entry = "ari"

    def __init__(
        self,
        router: StasisRouter,
        channel: dict[str, Any],
        args: list[str],
        deadline: float,
        *,
        resynced: bool,
    ) -> None:
        self._router = router
        self._channel = channel
        self._args = args
        self.deadline = deadline
        self.resynced = resynced
        self.call_id = str(channel.get("id", ""))

    async def facts(self) -> Call:
        if self.resynced:
            await self._router._stop_stale_prompt(self.call_id)
        return _call_from_channel(self._channel, self._args)

    async def run_menu(self, menu: Menu) -> str:
        return await self._router._run_menu(self.call_id, menu, self.deadline)

    async def tag(self, decision: Decision, target: Target) -> None:
        # One request carries every tag; the dialplan unpacks it (see
        # pack_decision): a dozen separate set_variable requests cost ~4 ms of
        # latency and most of the daemon's CPU per call.
        await self._router._ari.set_variable(self.call_id, PACKED_VARIABLE, pack_decision(decision))

    async def proceed(self, target: Target) -> None:
        # Observers ran before this (CallFlow), so the queue's first AMI event
        # cannot overtake the screen pop.
        await self._router._ari.continue_in_dialplan(self.call_id, *target)

    async def fallback(self, error: Exception | None) -> None:
        await self._router._ari.continue_in_dialplan(self.call_id, *UNROUTED)

    def gone(self, exc: Exception) -> bool:
        # 404: the caller hung up meanwhile; 409: the channel already left our
        # application. Nothing left to route either way.
        return isinstance(exc, AriNotFound | AriConflict)

    def expected(self, exc: Exception) -> bool:
        return isinstance(exc, AriError | OSError)


class StasisRouter:
    """Routes the channels of one Stasis application.

    Args:
        ari: The ARI client (its ``run`` loop feeds :meth:`handle`).
        rules: Returns the rules in force (read at each decision).
        overrides: Returns the overrides in force.
        clock: Returns "now" (tests inject a fixed time).
        on_decision: Optional observer called with every applied decision
            (the journal and screen pops hang off this later).
        stasis_max_s: Longest time a channel may spend in the application:
            then the guard continues it to ``pbxbridge-unrouted``, whatever
            the router is doing with it, and counts it in
            ``stats.stasis_timeouts``. The 115 menu's digit timeout is
            clamped to end before it (:func:`menu_wait`).
    """

    def __init__(
        self,
        ari: StasisAri,
        rules: RulesSource,
        overrides: OverridesSource,
        *,
        clock: Clock = _utcnow,
        on_decision: Callable[[str, Decision], None] | None = None,
        stasis_max_s: float = STASIS_MAX_SECONDS,
    ) -> None:
        self._ari = ari
        self._stasis_max_s = stasis_max_s
        self._active: dict[str, asyncio.Task[None]] = {}
        self._guards: dict[str, asyncio.TimerHandle] = {}
        self._menus: dict[str, _MenuSession] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = RoutingStats()
        self._flow = CallFlow(rules, overrides, clock, on_decision, self.stats)

    # -- event entry points -------------------------------------------------

    async def handle(self, event: dict[str, Any]) -> None:
        """Handle one ARI event (called by the client, per channel in order).

        Args:
            event: The decoded ARI event.
        """
        kind = event.get("type")
        if kind == "StasisStart":
            channel = event.get("channel") or {}
            args = event.get("args") or []
            self._start(channel, [str(a) for a in args], age=0.0, resynced=False)
        elif kind == "ChannelDtmfReceived":
            session = self._menus.get(_channel_id(event))
            if session is not None:
                session.digits.put_nowait(str(event.get("digit", "")))
        elif kind == "PlaybackFinished":
            playback = event.get("playback") or {}
            target = str(playback.get("target_uri", ""))
            session = self._menus.get(target.removeprefix("channel:"))
            # Only our own prompt: a prompt an earlier process started (before
            # a restart) may end while ours has just begun.
            if session is not None and playback.get("id") == session.playback_id:
                session.prompt_done.set()
        elif kind == "StasisEnd":
            # The routing task ends by itself (its next request finds the
            # channel gone); only a menu must stop waiting for digits.
            session = self._menus.pop(_channel_id(event), None)
            if session is not None:
                session.digits.put_nowait("")

    async def resync(self) -> None:
        """Route channels that are in our application but unknown to us.

        Called after every (re)connect, before events flow. Also (re)installs
        the event filter: Asterisk forgets it with the application.

        Every channel is routed from the start whatever its state: one that an
        earlier process answered for the 115 menu hears the prompt again and
        may press its digit (a prompt still playing is stopped first). The
        Stasis arguments come back from the channel's ``dialplan.app_data``
        (``pbxbridge,<presentation>,<did>``), so a withheld caller stays
        withheld; the Stasis bound counts from the channel's creation.
        """
        try:
            await self._ari.set_event_filter(EVENTS_USED)
        except AriError as exc:
            log.warning("ari.event_filter_unavailable", error=str(exc))
        app = await self._ari.get_application()
        waiting = [str(c) for c in app.get("channel_ids", []) if str(c) not in self._active]
        if not waiting:
            log.info("ari.resync", waiting=0)
            return
        log.warning("ari.resync", waiting=len(waiting))
        for channel_id in waiting:
            await self._adopt(channel_id)

    async def sweep(self) -> None:
        """Adopt channels that sit in the application unknown to the router.

        The per-channel guard covers every channel the router has seen (its
        ``StasisStart`` or a resync). This loop covers the rest - a
        ``StasisStart`` lost to a bug or a full buffer: every half bound it
        lists the application's channels, and one that is not being routed in
        two lists in a row is routed like a resynced one (counted in
        ``stats.resynced``; older than the bound, straight to the fallback).
        Runs until cancelled; skips rounds while ARI is not connected.
        """
        interval = self._stasis_max_s / 2
        previous: set[str] = set()
        while True:
            await asyncio.sleep(interval)
            if not self._ari.connected:
                previous = set()
                continue
            try:
                app = await self._ari.get_application()
                unknown = {str(c) for c in app.get("channel_ids", [])} - set(self._active)
                for channel_id in sorted(unknown & previous):
                    log.warning("call.unknown_in_stasis", call_id=channel_id)
                    await self._adopt(channel_id)
                previous = unknown - previous
            except Exception as exc:  # the sweep must outlive any one failure
                log.warning("ari.sweep_failed", error=f"{type(exc).__name__}: {exc}")

    async def _adopt(self, channel_id: str) -> None:
        """Route a channel found in the application (resync, sweep)."""
        if channel_id in self._active:
            return
        try:
            channel = await self._ari.get_channel(channel_id)
            args = _stasis_args(channel)
            if args is None:
                did = await self._variable(channel_id, "PBXBRIDGE_DID")
                args = ["", did] if did else []
        except AriNotFound:
            return
        self.stats.resynced += 1
        # Not awaited one by one: a 115 menu must not hold up the others.
        self._start(channel, args, age=_age(channel), resynced=True)

    async def drain(self, seconds: float) -> bool:
        """Wait until no call is being routed (graceful stop).

        Args:
            seconds: How long to wait at most.

        Returns:
            True when idle, False when time ran out.
        """
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    @property
    def in_progress(self) -> int:
        """Channels being routed right now."""
        return len(self._active)

    # -- routing ------------------------------------------------------------

    def _start(
        self, channel: dict[str, Any], args: list[str], *, age: float, resynced: bool
    ) -> None:
        channel_id = str(channel.get("id", ""))
        if not channel_id or channel_id in self._active:
            return  # seen already (resync and StasisStart both reported it)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, self._stasis_max_s - age)
        call = _StasisCall(self, channel, args, deadline, resynced=resynced)
        # Routed in its own task, not in the event handler: the client delivers
        # a channel's events one after another, and the 115 menu waits for this
        # channel's DTMF events, which would otherwise queue up behind it.
        self._spawn(channel_id, self._route(call))
        self._guards[channel_id] = loop.call_at(deadline, self._expire, call)

    async def _route(self, call: _StasisCall) -> None:
        await self._flow.route(call, resynced=call.resynced)

    async def _stop_stale_prompt(self, channel_id: str) -> None:
        """Stop the menu prompt an earlier process may have left playing.

        WHY: Asterisk runs a channel's ARI commands one after another, so
        while that prompt plays, our own prompt - and even the ``continue`` to
        the call's destination - waits behind it (a 6 s prompt held a resynced
        call ~10 s). Older releases used a fixed id, tried when the variable is
        not set.
        """
        previous = await self._variable(channel_id, MENU_PLAYBACK_VARIABLE)
        await self._stop_playback(previous or f"pbxbridge-menu-{channel_id}")

    def _spawn(self, channel_id: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"route:{channel_id}")
        self._active[channel_id] = task
        self._idle.clear()

        def done(finished: asyncio.Task[None]) -> None:
            if self._active.get(channel_id) is not finished:
                return  # replaced by the guard's fallback task
            del self._active[channel_id]
            guard = self._guards.pop(channel_id, None)
            if guard is not None:
                guard.cancel()
            self._menus.pop(channel_id, None)
            if not self._active:
                self._idle.set()

        task.add_done_callback(done)

    def _expire(self, call: _StasisCall) -> None:
        """The Stasis bound ran out: stop what runs for the call, send it on."""
        channel_id = call.call_id
        self._guards.pop(channel_id, None)
        task = self._active.get(channel_id)
        if task is None or task.done():
            return
        session = self._menus.pop(channel_id, None)
        task.cancel()
        self.stats.stasis_timeouts += 1
        log.warning(
            "call.stasis_timeout",
            call_id=channel_id,
            bound_s=self._stasis_max_s,
            in_menu=session is not None,
        )
        self._spawn(channel_id, self._guard_fallback(call, session))

    async def _guard_fallback(self, call: _StasisCall, session: _MenuSession | None) -> None:
        if session is not None:
            # A playing prompt would hold the continue back until it ends.
            await self._stop_playback(session.playback_id)
        await self._flow.fallback(call, None)

    async def _run_menu(self, channel_id: str, menu: Menu, deadline: float) -> str:
        # A fresh id per menu, written on the channel before the prompt starts:
        # after a restart, the new process stops this prompt by that id, and its
        # PlaybackFinished cannot be taken for the end of the new prompt.
        session = _MenuSession(playback_id=f"pbxbridge-menu-{channel_id}-{secrets.token_hex(4)}")
        self._menus[channel_id] = session
        try:
            await self._ari.answer(channel_id)
            await self._ari.set_variable(channel_id, MENU_PLAYBACK_VARIABLE, session.playback_id)
            await self._ari.play(channel_id, f"sound:{menu.prompt}", session.playback_id)
            return await self._collect_digit(session, menu, deadline)
        finally:
            self._menus.pop(channel_id, None)

    async def _collect_digit(self, session: _MenuSession, menu: Menu, deadline: float) -> str:
        loop = asyncio.get_running_loop()
        digit_task = asyncio.ensure_future(session.digits.get())
        prompt_task = asyncio.ensure_future(session.prompt_done.wait())
        try:
            # While the prompt plays, a digit may interrupt it (barge-in). No
            # timeout of our own: a prompt longer than the bound is the
            # guard's to end.
            done, _ = await asyncio.wait(
                {digit_task, prompt_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if digit_task in done:
                await self._stop_playback(session.playback_id)
                return digit_task.result()
            # The prompt ended: the caller has menu.timeout seconds to press,
            # cut so that the call is routed by the default before the bound.
            try:
                return await asyncio.wait_for(
                    digit_task, menu_wait(menu.timeout, deadline - loop.time())
                )
            except TimeoutError:
                return ""
        finally:
            for task in (digit_task, prompt_task):
                task.cancel()

    async def _stop_playback(self, playback_id: str) -> None:
        with contextlib.suppress(AriError):  # it may have finished already
            await self._ari.stop_playback(playback_id)

    async def _variable(self, channel_id: str, name: str) -> str:
        try:
            return await self._ari.get_variable(channel_id, name)
        except AriVariableNotFound:
            return ""


def routing_alive(
    ari: SupervisedConnection,
    supervisor: asyncio.Task[Any] | None,
    *,
    now: Callable[[], datetime] = _utcnow,
) -> bool:
    """Whether the Stasis routing machinery is alive (what feeds the watchdog).

    Alive means: the task running :meth:`AriClient.run` (the connection
    supervisor) has not ended, and the client is either connected or busy
    getting connected (connecting, backing off between attempts, or resyncing
    for less than :data:`RESYNC_STUCK_S`). Asterisk being down therefore
    counts as alive: the supervisor keeps trying, and a restart of pbxbridge
    would not bring Asterisk back. Dead: the supervisor task ended (crashed or
    cancelled), the client is idle or closed, or a resync hangs.

    Args:
        ari: The ARI client.
        supervisor: The task running ``ari.run(...)``.
        now: Returns the current UTC time (tests).

    Returns:
        True while routing can go on or come back by itself.
    """
    if supervisor is None or supervisor.done():
        return False
    status = ari.status
    if status.state in (ConnectionState.IDLE, ConnectionState.CLOSED):
        return False
    if status.state is ConnectionState.RESYNCING:
        return (now() - status.since).total_seconds() < RESYNC_STUCK_S
    return True


def _channel_id(event: dict[str, Any]) -> str:
    return str((event.get("channel") or {}).get("id", ""))


def _stasis_args(channel: dict[str, Any]) -> list[str] | None:
    """The Stasis arguments of a channel in the application, from its snapshot.

    ARI does not hand the arguments out again after a reconnect, but the
    channel's dialplan location names the application it runs: ``app_name``
    ``Stasis`` with ``app_data`` ``pbxbridge,<presentation>,<did>``. Split at
    commas like Asterisk does (the DID may contain more; the caller joins them).

    Returns:
        The arguments after the application name, or None when the snapshot
        does not say (then the caller reads ``PBXBRIDGE_DID``).
    """
    dialplan = channel.get("dialplan") or {}
    if str(dialplan.get("app_name", "")).lower() != "stasis":
        return None
    _, *args = str(dialplan.get("app_data", "")).split(",")
    return args


def _age(channel: dict[str, Any]) -> float:
    """Seconds since the channel was created (0 when the snapshot does not say).

    Used as its time in the application after a resync: the shipped dialplan
    enters Stasis within milliseconds of the channel's creation, and counting
    too much only sends a call on sooner, never later.
    """
    text = str(channel.get("creationtime", ""))
    try:
        created = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(UTC) - created).total_seconds())


def _call_from_channel(channel: dict[str, Any], args: list[str]) -> Call:
    """Build the core's Call from an ARI channel object and the Stasis arguments.

    The shipped dialplan calls ``Stasis(pbxbridge,${CALLERID(num-pres)},${PBXBRIDGE_DID})``:
    the presentation first (a fixed vocabulary), then the DID it resolved
    (``FROM_DID`` on FreePBX, else the extension). The DID comes last because
    it may contain commas, which Asterisk uses to split the arguments: we join
    the rest back together. A resync reads the same arguments back from the
    channel's ``dialplan.app_data`` (:func:`_stasis_args`). Without arguments (a
    hand-written ``Stasis(pbxbridge)``) the extension is the DID.
    """
    dialplan = channel.get("dialplan") or {}
    caller = channel.get("caller") or {}
    presentation = args[0].lower() if args else ""
    did = ",".join(args[1:]) if len(args) > 1 else str(dialplan.get("exten", ""))
    return Call(
        did=did,
        caller=str(caller.get("number", "")),
        caller_name=str(caller.get("name", "")),
        restricted=presentation.startswith("prohib"),
    )
