"""The one route-a-call procedure that every entry point (ARI Stasis, FastAGI) runs.

Steps, all inside one protection::

    facts ─▶ route() ─▶ (115 menu ─▶ route() again with the digit)
          ─▶ destination ─▶ tag ─▶ observers ─▶ proceed

Whatever goes wrong in any step - a request that fails, a bug in packing, a
rules edge case that raises in the core, a decision without destination - the
call is sent to the entry point's fallback and counted in ``stats.failed``;
it is never left waiting. Only "the caller is gone" (a hangup) is not a
failure. An observer (screen pops, journal) that raises is logged and the call
goes on to its real destination: a broken pop must not cost the call its tags.

What differs between the entry points is behind :class:`EntryPoint`: how the
facts are read, how the menu is played, how tags travel, how the call is sent
on and what the fallback is (``pbxbridge-unrouted`` for Stasis; closing the
FastAGI session without a destination, which the dialplan turns into the same
``pbxbridge-unrouted``).
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from pbxbridge.adapters.dialplan import destination
from pbxbridge.core.models import Action, Call, Decision, Menu, Override
from pbxbridge.core.numbers import shorten
from pbxbridge.core.routing import route
from pbxbridge.core.rules import Rules

log = structlog.get_logger(__name__)

RulesSource = Callable[[], Rules]
OverridesSource = Callable[[], Sequence[Override]]
Clock = Callable[[], datetime]
Observer = Callable[[str, Decision], None]
Target = tuple[str, str, int]

APPLY_RESERVE_S = 1.0
"""Time kept free at the end of the Stasis bound for tagging and continuing,
so that a menu that times out still routes by its default before the guard
sends the call on untagged."""


def menu_wait(timeout: float, seconds_left: float) -> float:
    """The digit timeout of a 115 menu, clamped to fit inside the Stasis bound.

    Args:
        timeout: The menu's own timeout from the rules (up to 30 s).
        seconds_left: Seconds until the Stasis bound ends for this call.

    Returns:
        ``timeout``, or less so that :data:`APPLY_RESERVE_S` is left before the
        bound; never negative (0: take the default at once).
    """
    return max(0.0, min(timeout, seconds_left - APPLY_RESERVE_S))


@dataclass
class RoutingStats:
    """Counters for health and metrics, the same for every entry point.

    Attributes:
        routed: Calls sent to their destination.
        failed: Calls whose routing failed and that took the fallback.
        gone: Callers who hung up before their call was routed.
        menus: 115 menus played.
        resynced: Calls found in the application after a (re)connect (Stasis).
        stasis_timeouts: Calls the Stasis guard sent to the fallback (Stasis).
        by_action: Routed calls by action.
    """

    routed: int = 0
    failed: int = 0
    gone: int = 0
    menus: int = 0
    resynced: int = 0
    stasis_timeouts: int = 0
    by_action: dict[str, int] = field(default_factory=dict)


class Outcome(enum.Enum):
    """How one run of :meth:`CallFlow.route` ended."""

    ROUTED = "routed"
    GONE = "gone"
    FAILED = "failed"


class EntryPoint(Protocol):
    """What :class:`CallFlow` needs from one call on one entry point."""

    @property
    def entry(self) -> str:
        """``ari`` or ``agi`` (logs)."""
        ...

    @property
    def call_id(self) -> str:
        """The channel id / uniqueid (logs, observers)."""
        ...

    async def facts(self) -> Call:
        """The core's Call for this channel."""
        ...

    async def run_menu(self, menu: Menu) -> str:
        """Play the menu; the digit pressed, or ``""``."""
        ...

    async def tag(self, decision: Decision, target: Target) -> None:
        """Put the decision's tags (and, over FastAGI, the destination) on the channel."""
        ...

    async def proceed(self, target: Target) -> None:
        """Send the call on to ``target`` (context, extension, priority)."""
        ...

    async def fallback(self, error: Exception | None) -> None:
        """Send the call on untagged after ``error`` (None: the Stasis guard).

        May raise; :meth:`CallFlow.fallback` logs it.
        """
        ...

    def gone(self, exc: Exception) -> bool:
        """Whether ``exc`` means the caller hung up (not a failure)."""
        ...

    def expected(self, exc: Exception) -> bool:
        """Whether ``exc`` is a known I/O failure (logged without a traceback)."""
        ...


class CallFlow:
    """Decides calls with the core and drives an :class:`EntryPoint` through them.

    Args:
        rules: Returns the rules in force (read at each decision).
        overrides: Returns the overrides in force.
        clock: Returns "now".
        on_decision: Observer called with ``(call_id, decision)`` once the call
            is tagged, before it continues (screen pops, journal).
        stats: The counters to update.
    """

    def __init__(
        self,
        rules: RulesSource,
        overrides: OverridesSource,
        clock: Clock,
        on_decision: Observer | None,
        stats: RoutingStats,
    ) -> None:
        self._rules = rules
        self._overrides = overrides
        self._clock = clock
        self._on_decision = on_decision
        self.stats = stats

    def decide(self, call: Call) -> Decision:
        """The core's decision for ``call`` under the rules and overrides in force."""
        return route(call, self._rules(), self._clock(), self._overrides())

    async def route(self, port: EntryPoint, **log_fields: object) -> Outcome:
        """Route one call; never raises for a failure of the call's own routing.

        Args:
            port: The call on its entry point.
            **log_fields: Extra fields for the ``call.routed`` log line.

        Returns:
            The outcome (already counted in :attr:`stats`).

        Raises:
            asyncio.CancelledError: When cancelled (the Stasis guard cancels a
                call it sends to the fallback itself).
        """
        started = time.perf_counter()
        decision: Decision | None = None
        try:
            call = await port.facts()
            decision = self.decide(call)
            if decision.action is Action.MENU and decision.menu is not None:
                self.stats.menus += 1
                digit = await port.run_menu(decision.menu)
                decision = self.decide(dataclasses.replace(call, menu_digit=digit[:1]))
            target = destination(decision)  # ValueError: nothing applied yet
            await port.tag(decision, target)
            self._observe(port, decision)
            await port.proceed(target)
        except Exception as exc:  # every failure, by design: see the module docstring
            if port.gone(exc):
                self.stats.gone += 1
                log.info("call.gone", call_id=port.call_id, entry=port.entry)
                return Outcome.GONE
            self.stats.failed += 1
            fields = {
                "call_id": port.call_id,
                "entry": port.entry,
                "error": f"{type(exc).__name__}: {exc}",
                "tenant": decision.tenant if decision else None,
            }
            if port.expected(exc):
                log.error("call.route_failed", **fields)
            else:
                log.exception("call.route_failed", **fields)
            await self.fallback(port, exc)
            return Outcome.FAILED
        self.stats.routed += 1
        action = decision.action.value
        self.stats.by_action[action] = self.stats.by_action.get(action, 0) + 1
        log.info(
            "call.routed",
            call_id=port.call_id,
            entry=port.entry,
            tenant=decision.tenant,
            action=action,
            did=decision.did,
            caller=shorten(decision.caller),
            via_115=decision.via_115,
            ms=round((time.perf_counter() - started) * 1000, 2),
            reasons=list(decision.reasons),
            **log_fields,
        )
        return Outcome.ROUTED

    async def fallback(self, port: EntryPoint, error: Exception | None) -> None:
        """Send the call on untagged; a failure here is logged, never raised.

        Args:
            port: The call on its entry point.
            error: Why (None: the Stasis guard's bound ran out).
        """
        try:
            await port.fallback(error)
        except Exception as exc:
            if port.gone(exc):
                return
            log.error(
                "call.unroutable",
                call_id=port.call_id,
                entry=port.entry,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _observe(self, port: EntryPoint, decision: Decision) -> None:
        if self._on_decision is None:
            return
        try:
            self._on_decision(port.call_id, decision)
        except Exception:
            log.exception("call.observer_failed", call_id=port.call_id, entry=port.entry)
