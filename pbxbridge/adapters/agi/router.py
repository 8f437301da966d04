"""The ``route`` script: one FastAGI session decides one call.

Flow for one call (``AGI(agi://127.0.0.1:4574/route,<secret>)`` in ``[pbxbridge-agi]``)::

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

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog

from pbxbridge.adapters.agi.protocol import ABSENT, AgiError, AgiHangup, sanitised
from pbxbridge.adapters.agi.server import AgiSession
from pbxbridge.adapters.callflow import CallFlow, RoutingStats, Target, menu_wait
from pbxbridge.adapters.dialplan import (
    PACKED_VARIABLE,
    decision_variables,
    pack_decision,
)
from pbxbridge.core.models import Call, Decision, Menu, Override
from pbxbridge.core.rules import Rules

log = structlog.get_logger(__name__)

MENU_MAX_SECONDS = 10.0
"""Default cap on the 115 menu's ``GET DATA`` (prompt and wait): the same
bound as a channel's time in Stasis (``PBXBRIDGE_STASIS_MAX_S``)."""

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


class _AgiCall:
    """One FastAGI session, as :class:`CallFlow` drives it."""

    entry = "agi"

    def __init__(self, router: AgiRouter, session: AgiSession) -> None:
        self._router = router
        self._session = session
        self.call_id = session.env.uniqueid
        self.error: Exception | None = None

    async def facts(self) -> Call:
        return await self._router._call(self._session)

    async def run_menu(self, menu: Menu) -> str:
        cap = self._router.menu_max_s
        await self._session.answer()
        digits = await self._session.get_data(
            menu.prompt,
            # The prompt's length is unknown here: the digit timeout alone is
            # cut so that it fits inside the bound, GET DATA as a whole is capped.
            timeout_ms=max(1, round(menu_wait(menu.timeout, cap) * 1000)),
            max_digits=1,
            timeout_s=cap,
        )
        return digits

    async def tag(self, decision: Decision, target: Target) -> None:
        await self._router._apply(self._session, target, decision)

    async def proceed(self, target: Target) -> None:
        """Nothing to do: closing the session lets the dialplan go on to the destination."""

    async def fallback(self, error: Exception | None) -> None:
        # Closing without PBXBRIDGE_DEST_CONTEXT is the fallback (the dialplan
        # takes pbxbridge-unrouted). A protocol fault is re-raised afterwards
        # so that the server logs and counts it as agi.<reason>.
        self.error = error

    def gone(self, exc: Exception) -> bool:
        return isinstance(exc, AgiHangup)

    def expected(self, exc: Exception) -> bool:
        return isinstance(exc, AgiError | OSError)


class AgiRouter:
    """Routes the calls that reach the daemon over FastAGI.

    Args:
        rules: Returns the rules in force (read at each decision).
        overrides: Returns the overrides in force.
        clock: Returns "now" (tests inject a fixed time).
        on_decision: Observer called with ``(uniqueid, decision)`` once the
            call is tagged, before the dialplan continues (screen pops, journal).
        menu_max_s: Cap on the 115 menu (the Stasis bound on the other entry
            point); the menu's digit timeout is cut to fit inside it.
    """

    def __init__(
        self,
        rules: RulesSource,
        overrides: OverridesSource,
        *,
        clock: Clock = _utcnow,
        on_decision: Observer | None = None,
        menu_max_s: float = MENU_MAX_SECONDS,
    ) -> None:
        self.menu_max_s = menu_max_s
        self.stats = RoutingStats()
        self._flow = CallFlow(rules, overrides, clock, on_decision, self.stats)

    async def route(self, session: AgiSession) -> None:
        """Decide one call and tag its channel (the ``route`` script).

        Every failure ends the session without a destination (the dialplan's
        fallback), counted in ``stats.failed``; see :mod:`pbxbridge.adapters.callflow`.

        Args:
            session: The FastAGI session.

        Raises:
            AgiError: Protocol faults other than a hangup (the server logs
                them as ``agi.<reason>``); the call takes the fallback.
        """
        call = _AgiCall(self, session)
        await self._flow.route(call)
        if isinstance(call.error, AgiError):
            raise call.error

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

    async def _apply(self, session: AgiSession, target: Target, decision: Decision) -> None:
        context, exten, priority = target
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
