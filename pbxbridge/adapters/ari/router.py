"""Stasis routing: every channel that enters our application gets a decision.

Flow for one call::

    StasisStart ─▶ Call (DID from the Stasis argument or the extension, caller ID)
                ─▶ route() ─▶ set tag variables (concurrently) ─▶ continue to the
                   queue / closed / reject context of the shipped dialplan

A 115 caller we cannot place hears the menu first: answer, play the prompt,
collect one DTMF digit (barge-in allowed) or time out, then route again with
the digit. Nothing else keeps a call in Stasis: the queue is app_queue's job.

After every (re)connect :meth:`StasisRouter.resync` routes channels that
entered the application while we were away (ARI does not replay events), so
calls are never left hanging after a daemon restart or an Asterisk hiccup.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from pbxbridge.adapters.ari.client import AriClient
from pbxbridge.adapters.ari.errors import (
    AriConflict,
    AriError,
    AriNotFound,
    AriVariableNotFound,
)
from pbxbridge.adapters.dialplan import PACKED_VARIABLE, destination, pack_decision
from pbxbridge.core.models import Action, Call, Decision, Menu, Override
from pbxbridge.core.numbers import shorten
from pbxbridge.core.routing import route
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

MENU_MAX_SECONDS = 60.0
"""Hard cap on a 115 menu, whatever the prompt's length."""

RulesSource = Callable[[], Rules]
OverridesSource = Callable[[], Sequence[Override]]
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RouterStats:
    """Counters for health and metrics."""

    routed: int = 0
    failed: int = 0
    gone: int = 0
    menus: int = 0
    resynced: int = 0
    by_action: dict[str, int] = field(default_factory=dict)


@dataclass
class _MenuSession:
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    prompt_done: asyncio.Event = field(default_factory=asyncio.Event)
    playback_id: str = ""


class StasisRouter:
    """Routes the channels of one Stasis application.

    Args:
        ari: The ARI client (its ``run`` loop feeds :meth:`handle`).
        rules: Returns the rules in force (read at each decision).
        overrides: Returns the overrides in force.
        clock: Returns "now" (tests inject a fixed time).
        on_decision: Optional observer called with every applied decision
            (the journal and screen pops hang off this later).
    """

    def __init__(
        self,
        ari: AriClient,
        rules: RulesSource,
        overrides: OverridesSource,
        *,
        clock: Clock = _utcnow,
        on_decision: Callable[[str, Decision], None] | None = None,
    ) -> None:
        self._ari = ari
        self._rules = rules
        self._overrides = overrides
        self._clock = clock
        self._on_decision = on_decision
        self._active: dict[str, asyncio.Task[None]] = {}
        self._menus: dict[str, _MenuSession] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = RouterStats()

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
            await self._start(channel, [str(a) for a in args])
        elif kind == "ChannelDtmfReceived":
            session = self._menus.get(_channel_id(event))
            if session is not None:
                session.digits.put_nowait(str(event.get("digit", "")))
        elif kind == "PlaybackFinished":
            target = str((event.get("playback") or {}).get("target_uri", ""))
            session = self._menus.get(target.removeprefix("channel:"))
            if session is not None:
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
            try:
                channel = await self._ari.get_channel(channel_id)
                did = await self._variable(channel_id, "PBXBRIDGE_DID")
            except AriNotFound:
                continue
            self.stats.resynced += 1
            args = ["", did] if did else []
            # Not awaited one by one: a 115 menu must not hold up the others.
            self._spawn(channel_id, self._route_channel(channel, args, resynced=True))

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

    async def _start(self, channel: dict[str, Any], args: list[str]) -> None:
        channel_id = str(channel.get("id", ""))
        if not channel_id or channel_id in self._active:
            return  # seen already (resync and StasisStart both reported it)
        # Routed in its own task, not in the event handler: the client delivers
        # a channel's events one after another, and the 115 menu waits for this
        # channel's DTMF events, which would otherwise queue up behind it.
        self._spawn(channel_id, self._route_channel(channel, args, resynced=False))

    def _spawn(self, channel_id: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"route:{channel_id}")
        self._active[channel_id] = task
        self._idle.clear()

        def done(finished: asyncio.Task[None]) -> None:
            if self._active.get(channel_id) is finished:
                del self._active[channel_id]
            self._menus.pop(channel_id, None)
            if not self._active:
                self._idle.set()

        task.add_done_callback(done)

    async def _route_channel(
        self, channel: dict[str, Any], args: list[str], *, resynced: bool
    ) -> None:
        channel_id = str(channel.get("id", ""))
        started = time.perf_counter()
        call = _call_from_channel(channel, args)
        decision = self._decide(call)
        try:
            if decision.action is Action.MENU and decision.menu is not None:
                self.stats.menus += 1
                digit = await self._run_menu(channel_id, decision.menu)
                call = Call(
                    did=call.did,
                    caller=call.caller,
                    caller_name=call.caller_name,
                    restricted=call.restricted,
                    menu_digit=digit,
                )
                decision = self._decide(call)
            await self._apply(channel_id, decision)
        except (AriNotFound, AriConflict):
            # The caller hung up meanwhile (404), or the channel already left
            # our application (409): nothing left to route.
            self.stats.gone += 1
            log.info("call.gone", call_id=channel_id)
            return
        except (AriError, OSError) as exc:
            self.stats.failed += 1
            log.error("call.route_failed", call_id=channel_id, error=str(exc),
                      tenant=decision.tenant)
            await self._last_resort(channel_id)
            return
        self.stats.routed += 1
        action = decision.action.value
        self.stats.by_action[action] = self.stats.by_action.get(action, 0) + 1
        log.info(
            "call.routed",
            call_id=channel_id,
            tenant=decision.tenant,
            action=action,
            did=decision.did,
            caller=shorten(decision.caller),
            via_115=decision.via_115,
            resynced=resynced,
            ms=round((time.perf_counter() - started) * 1000, 2),
            reasons=list(decision.reasons),
        )

    def _decide(self, call: Call) -> Decision:
        return route(call, self._rules(), self._clock(), self._overrides())

    async def _apply(self, channel_id: str, decision: Decision) -> None:
        # One request carries every tag; the dialplan unpacks it (see
        # pack_decision): a dozen separate set_variable requests cost ~4 ms of
        # latency and most of the daemon's CPU per call.
        await self._ari.set_variable(channel_id, PACKED_VARIABLE, pack_decision(decision))
        # Observers (screen pops, journal) learn of the call before it leaves
        # Stasis, so the queue's first AMI event cannot overtake them.
        if self._on_decision is not None:
            try:
                self._on_decision(channel_id, decision)
            except Exception:
                log.exception("call.observer_failed", call_id=channel_id)
        context, exten, priority = destination(decision)
        await self._ari.continue_in_dialplan(channel_id, context, exten, priority)

    async def _last_resort(self, channel_id: str) -> None:
        """Send the call on without tags rather than leave it in Stasis."""
        try:
            await self._ari.continue_in_dialplan(channel_id, "pbxbridge-unrouted", "s", 1)
        except AriError as exc:
            log.error("call.unroutable", call_id=channel_id, error=str(exc))

    async def _run_menu(self, channel_id: str, menu: Menu) -> str:
        session = _MenuSession(playback_id=f"pbxbridge-menu-{channel_id}")
        self._menus[channel_id] = session
        try:
            await self._ari.answer(channel_id)
            await self._ari.play(channel_id, f"sound:{menu.prompt}", session.playback_id)
            return await self._collect_digit(session, menu)
        finally:
            self._menus.pop(channel_id, None)

    async def _collect_digit(self, session: _MenuSession, menu: Menu) -> str:
        deadline = asyncio.get_running_loop().time() + MENU_MAX_SECONDS
        loop = asyncio.get_running_loop()
        digit_task = asyncio.ensure_future(session.digits.get())
        prompt_task = asyncio.ensure_future(session.prompt_done.wait())
        try:
            # While the prompt plays, a digit may interrupt it (barge-in).
            done, _ = await asyncio.wait(
                {digit_task, prompt_task},
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if digit_task in done:
                await self._stop_prompt(session)
                return digit_task.result()
            # The prompt ended: the caller has menu.timeout seconds to press.
            try:
                return await asyncio.wait_for(
                    digit_task, min(menu.timeout, max(0.0, deadline - loop.time()))
                )
            except TimeoutError:
                return ""
        finally:
            for task in (digit_task, prompt_task):
                task.cancel()

    async def _stop_prompt(self, session: _MenuSession) -> None:
        with contextlib.suppress(AriError):  # it may have finished already
            await self._ari.stop_playback(session.playback_id)

    async def _variable(self, channel_id: str, name: str) -> str:
        try:
            return await self._ari.get_variable(channel_id, name)
        except AriVariableNotFound:
            return ""


def _channel_id(event: dict[str, Any]) -> str:
    return str((event.get("channel") or {}).get("id", ""))


def _call_from_channel(channel: dict[str, Any], args: list[str]) -> Call:
    """Build the core's Call from an ARI channel object and the Stasis arguments.

    The shipped dialplan calls ``Stasis(pbxbridge,${CALLERID(num-pres)},${PBXBRIDGE_DID})``:
    the presentation first (a fixed vocabulary), then the DID it resolved
    (``FROM_DID`` on FreePBX, else the extension). The DID comes last because
    it may contain commas, which Asterisk uses to split the arguments: we join
    the rest back together. Without arguments (a hand-written ``Stasis(pbxbridge)``,
    or a resync) the extension is the DID.
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
