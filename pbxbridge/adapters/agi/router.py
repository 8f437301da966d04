"""The ``route`` script: one FastAGI session decides one call.

Flow for one call (``AGI(agi://127.0.0.1:4573/route)`` in ``[pbxbridge-agi]``)::

    environment ─▶ GET FULL VARIABLE "${CALLERID(num-pres)}|${FROM_DID}" ─▶ Call
                ─▶ route() ─▶ (115 menu: Answer(,i), GET DATA, route() again)
                ─▶ SET VARIABLE PBXBRIDGE_DECISION (every tag, packed)
                ─▶ EXEC MSet PBXBRIDGE_DEST_EXTEN=…,…_PRIORITY=…,…_CONTEXT=…
                ─▶ observer ─▶ close

Three round trips for an ordinary call: commands cannot be pipelined (see
:meth:`AgiSession.command`), so every one saved is latency saved.

The dialplan then ``Goto``s ``PBXBRIDGE_DEST_CONTEXT,…EXTEN,…PRIORITY``. The
core is used exactly as by the Stasis router, and the tags travel exactly as on
the Stasis path: packed by :func:`pack_decision` into one variable that the
shipped dialplan's ``[pbxbridge-tags]`` unpacks on entry to the queue, closed
and reject contexts. WHY packed: commands go one at a time (see
:meth:`AgiSession.command`), and a dozen ``SET VARIABLE`` round trips were
most of the path's added latency. Should a packed value not survive quoting
unchanged (longer than the quoting limit), the tags go one by one instead;
``[pbxbridge-tags]`` leaves them alone when ``PBXBRIDGE_DECISION`` is empty.

Failure is always "close the connection without a destination": the dialplan
sees an empty ``PBXBRIDGE_DEST_CONTEXT`` (or ``AGISTATUS`` other than
``SUCCESS``) and takes ``pbxbridge-unrouted``. ``PBXBRIDGE_DEST_CONTEXT`` is
set last for that reason: a session that breaks while tagging never leaves a
destination behind.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from pbxbridge.adapters.agi.protocol import ABSENT, AgiError, AgiHangup, sanitised
from pbxbridge.adapters.agi.server import AgiSession
from pbxbridge.adapters.dialplan import (
    PACKED_VARIABLE,
    decision_variables,
    destination,
    pack_decision,
)
from pbxbridge.core.models import Action, Call, Decision, Override
from pbxbridge.core.numbers import shorten
from pbxbridge.core.routing import route
from pbxbridge.core.rules import Rules

log = structlog.get_logger(__name__)

MENU_MAX_SECONDS = 60.0
"""Cap on the 115 menu's ``GET DATA`` (prompt and wait), as on the Stasis path."""

DEST_CONTEXT = "PBXBRIDGE_DEST_CONTEXT"
DEST_EXTEN = "PBXBRIDGE_DEST_EXTEN"
DEST_PRIORITY = "PBXBRIDGE_DEST_PRIORITY"

CALL_FACTS = "${CALLERID(num-pres)}|${FROM_DID}"
"""One ``GET FULL VARIABLE`` for what the environment lacks. The presentation
(a fixed vocabulary, never ``|``) comes first, the carrier's DID - any text -
last, so splitting at the first ``|`` is exact."""

_MSET_SAFE = re.compile(r"[A-Za-z0-9_+-]{1,80}\Z")

RulesSource = Callable[[], Rules]
OverridesSource = Callable[[], Sequence[Override]]
Clock = Callable[[], datetime]
Observer = Callable[[str, Decision], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def tag_variables(decision: Decision) -> dict[str, str]:
    """The variables that carry a decision's tags over FastAGI.

    Args:
        decision: A decision with a destination.

    Returns:
        ``{PBXBRIDGE_DECISION: packed}`` when the packed value passes
        :func:`quote_value` unchanged; else every variable of
        :func:`decision_variables` on its own.
    """
    packed = pack_decision(decision)
    if sanitised(packed) == packed:
        return {PACKED_VARIABLE: packed}
    return decision_variables(decision)


@dataclass
class AgiRouterStats:
    """Counters for health and metrics (same meaning as the Stasis router's)."""

    routed: int = 0
    failed: int = 0
    gone: int = 0
    menus: int = 0
    by_action: dict[str, int] = field(default_factory=dict)


class AgiRouter:
    """Routes the calls that reach the daemon over FastAGI.

    Args:
        rules: Returns the rules in force (read at each decision).
        overrides: Returns the overrides in force.
        clock: Returns "now" (tests inject a fixed time).
        on_decision: Observer called with ``(uniqueid, decision)`` once the
            call is tagged, before the dialplan continues (screen pops, journal).
    """

    def __init__(
        self,
        rules: RulesSource,
        overrides: OverridesSource,
        *,
        clock: Clock = _utcnow,
        on_decision: Observer | None = None,
    ) -> None:
        self._rules = rules
        self._overrides = overrides
        self._clock = clock
        self._on_decision = on_decision
        self.stats = AgiRouterStats()

    async def route(self, session: AgiSession) -> None:
        """Decide one call and tag its channel (the ``route`` script).

        Args:
            session: The FastAGI session.

        Raises:
            AgiError: Protocol faults other than a hangup (the server logs
                them as ``agi.<reason>``); the call takes the fallback.
        """
        call_id = session.env.uniqueid
        started = time.perf_counter()
        decision: Decision | None = None
        try:
            call = await self._call(session)
            decision = self._decide(call)
            if decision.action is Action.MENU and decision.menu is not None:
                self.stats.menus += 1
                menu = decision.menu
                await session.answer()
                digits = await session.get_data(
                    menu.prompt,
                    timeout_ms=max(1, round(menu.timeout * 1000)),
                    max_digits=1,
                    timeout_s=MENU_MAX_SECONDS,
                )
                decision = self._decide(dataclasses.replace(call, menu_digit=digits[:1]))
            await self._apply(session, call_id, decision)
        except AgiHangup:
            self.stats.gone += 1
            log.info("call.gone", call_id=call_id, entry="agi")
            return
        except AgiError:
            self.stats.failed += 1
            raise
        except Exception as exc:
            # A bug or a decision without destination: never leave the call
            # waiting; closing without PBXBRIDGE_DEST_CONTEXT is the fallback.
            self.stats.failed += 1
            log.exception("call.route_failed", call_id=call_id, entry="agi", error=str(exc),
                          tenant=decision.tenant if decision else None)
            return
        self.stats.routed += 1
        action = decision.action.value
        self.stats.by_action[action] = self.stats.by_action.get(action, 0) + 1
        log.info(
            "call.routed",
            call_id=call_id,
            entry="agi",
            tenant=decision.tenant,
            action=action,
            did=decision.did,
            caller=shorten(decision.caller),
            via_115=decision.via_115,
            ms=round((time.perf_counter() - started) * 1000, 2),
            reasons=list(decision.reasons),
        )

    def _decide(self, call: Call) -> Decision:
        return route(call, self._rules(), self._clock(), self._overrides())

    async def _call(self, session: AgiSession) -> Call:
        """The core's Call, as the Stasis router builds it.

        DID: ``FROM_DID`` (set by FreePBX's inbound routes and many trunk
        contexts) when set and non-empty, else the extension ``AGI()`` runs in.
        Presentation: ``CALLERID(num-pres)``, like the Stasis argument
        (``agi_callingpres`` merges the name's presentation into it).
        """
        env = session.env
        facts = await session.get_full_variable(CALL_FACTS) or ""
        presentation, _, from_did = facts.partition("|")
        did = from_did or env.extension
        presentation = presentation.lower()
        name = env.calleridname
        if name == ABSENT:
            # WHY: the environment says "unknown" both for "no name" and for a
            # caller really named so; only the channel knows which.
            name = await session.get_variable("CALLERID(name)") or ""
        return Call(
            did=did,
            caller=env.callerid,  # "unknown" (no number) counts as withheld in the core
            caller_name=name,
            restricted=presentation.startswith("prohib"),
        )

    async def _apply(self, session: AgiSession, call_id: str, decision: Decision) -> None:
        context, exten, priority = destination(decision)  # ValueError for a menu
        for name, value in tag_variables(decision).items():
            await session.set_variable(name, value)
        # The context last: the dialplan goes to the fallback unless it is set.
        dest = ((DEST_EXTEN, exten), (DEST_PRIORITY, str(priority)), (DEST_CONTEXT, context))
        if all(_MSET_SAFE.match(value) for _, value in dest):
            # One EXEC instead of three SET VARIABLEs. MSet splits its argument
            # at commas (and minds quotes and parentheses): safe only for these
            # validated names - the context comes from the rules' pattern
            # [A-Za-z0-9_-]+ - and checked again right here.
            await session.exec("MSet", ",".join(f"{k}={v}" for k, v in dest))
        else:
            for name, value in dest:
                await session.set_variable(name, value)
        if self._on_decision is not None:
            try:
                self._on_decision(call_id, decision)
            except Exception:
                log.exception("call.observer_failed", call_id=call_id, entry="agi")
