"""Virtual hold on Asterisk: the offer and the number (ARI), the placeholder (AMI), AstDB.

The flow lives mostly in the dialplan (``dialplans/pbxbridge.conf``,
``[pbxbridge-vhold-*]``) so that Asterisk carries every call while the daemon
is away; the daemon decides and records:

* A caller who presses the offer digit in ``Queue()`` (the queue's ``context``
  option) enters ``Stasis(pbxbridge-vhold,offer,...)``: :meth:`VirtualHoldService.handle`
  checks the tenant's policy and the core's offer rule, remembers who was
  ahead of the caller, and continues the channel with the prompt for the
  number entry (the caller's own number read back as digits, or "type one").
* After ``Read()``, ``Stasis(pbxbridge-vhold,number,...)``: the core checks the
  number; a good one becomes a *placeholder* (``Local/<call id>@pbxbridge-vhold-place``
  originated over AMI into the same queue, at the caller's priority and
  position, corrected for the callers ahead who were served meanwhile); a bad
  one is asked again once, then the caller goes back to their place.
* The placeholder's outcome is written by the dialplan into AstDB (family
  ``pbxbridge-vhold``, key = the call id): ``waiting``, ``dialing``,
  ``connected`` or ``failed:<epoch>:<DIALSTATUS>``.
  :meth:`VirtualHoldService.reconcile` (every ``poll_s``, on each
  ``PbxbridgeVirtualHold`` UserEvent, after every AMI login) turns those into
  the core's events, queues retries at the head of the queue, turns what cannot
  complete into callback tickets, re-queues placeholders Asterisk lost, and at
  closing time withdraws waiting placeholders as tickets.

Every step is saved in the durable store (SQLite or PostgreSQL) before the
next one: a restarted daemon reads the pending holds and AstDB and carries on.
Channels left in the ``pbxbridge-vhold`` application by a dead daemon are
continued without a verdict on reconnect, which the dialplan reads as "back
to your place in the queue".
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import structlog

from pbxbridge.adapters.ami.client import AmiClient
from pbxbridge.adapters.ami.errors import AmiActionFailed, AmiUnavailable
from pbxbridge.adapters.ari.client import AriClient
from pbxbridge.adapters.ari.errors import AriError
from pbxbridge.adapters.dialplan import dialplan_safe
from pbxbridge.core.models import Override
from pbxbridge.core.routing import tenant_open
from pbxbridge.core.rules import Rules, Tenant
from pbxbridge.core.virtual_hold import (
    OFF,
    PENDING,
    InvalidTransition,
    NumberCheck,
    VHoldEvent,
    VHoldState,
    VirtualHold,
    VirtualHoldPolicy,
    check_callback_number,
    estimate_wait,
    next_try_at,
    offer_due,
    offered,
    requeue_spot,
    step,
    ticket_due,
)

log = structlog.get_logger(__name__)

APP: Final = "pbxbridge-vhold"
"""The Stasis application of the offer and the number entry."""
ASTDB_FAMILY: Final = "pbxbridge-vhold"
"""AstDB family of the placeholders' outcomes (key: the original call's id)."""
TENANT_FAMILY: Final = "pbxbridge-vhold-tenant"
"""AstDB family listing the tenants that offer virtual hold (the dialplan answers their calls)."""
PLACE_CONTEXT: Final = "pbxbridge-vhold-place"
CALL_CONTEXT: Final = "pbxbridge-vhold-call"
ORIGINATE_TIMEOUT_MS: Final = 12 * 3600 * 1000
"""How long a placeholder may wait for an agent (the originate's answer timeout)."""
SETTLE_S: Final = 5.0
"""A placeholder younger than this is not declared lost (its channel may still be coming up)."""
LEG_EVENTS: Final = ("AgentCalled", "AgentConnect", "AgentRingNoAnswer", "AgentComplete")
"""app_queue's member events that, about a placeholder, are news of the callback leg."""
MAX_WITH_AGENT: Final = 1000
"""At most this many placeholders remembered as being with an agent (far above any team)."""
EVENTS: Final = ("UserEvent", *LEG_EVENTS)
"""AMI events this adapter reads (``PbxbridgeVirtualHold`` wakes the reconciliation;
the member events of a placeholder become the callback leg's screen pops)."""

_CALL_ID = re.compile(r"^[0-9]+\.[0-9]+$")
_DIAL_OUTCOME: Final = {
    "BUSY": "busy",
    "NOANSWER": "noanswer",
    "CONGESTION": "congestion",
}


class HoldStore(Protocol):
    """What the service needs of the durable store (:mod:`pbxbridge.storage.virtual_holds`).

    Called from worker threads; the root passes the store, the adapters never
    import storage.
    """

    def save(self, hold: VirtualHold) -> bool: ...  # noqa: D102
    def get(self, node: str, call_id: str) -> VirtualHold | None: ...  # noqa: D102
    def pending(self, node: str | None = None) -> list[VirtualHold]: ...  # noqa: D102
    def close(self) -> None: ...  # noqa: D102


class CallbackLegSink(Protocol):
    """Who turns a placeholder's member event into the agent's screen pop."""

    def __call__(
        self, event: Mapping[str, str], hold: VirtualHold, *, tenant_name: str, greeting: str
    ) -> object:
        """Handle one ``AgentCalled``/``AgentConnect``/... about the hold's placeholder."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AstdbRecord:
    """One placeholder outcome as the dialplan wrote it (``state:epoch[:detail]``)."""

    state: str
    at: datetime
    detail: str = ""

    @classmethod
    def parse(cls, value: str) -> AstdbRecord | None:
        """Read ``waiting:1764769000`` / ``failed:1764769000:BUSY``; ``None`` if malformed."""
        parts = value.strip().split(":", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        at = datetime.fromtimestamp(int(parts[1]), UTC)
        return cls(parts[0], at, parts[2] if len(parts) > 2 else "")


def read_back(dial: str) -> str:
    """The sound list that reads a dial string digit by digit (``digits/0&digits/4``)."""
    return "&".join(f"digits/{d}" for d in dial if d.isdigit())


@dataclass(slots=True)
class _Offer:
    """What the daemon remembers between the offer and the number of one caller."""

    position: int
    priority: int
    queue: str
    ahead: frozenset[str]
    own: NumberCheck | None


@dataclass(slots=True)
class VirtualHoldStats:
    """Counters for ``/healthz``."""

    offers: int = 0
    accepted: int = 0
    placeholders: int = 0
    connected: int = 0
    retries: int = 0
    tickets: int = 0
    lost: int = 0
    errors: int = 0
    pending: int = 0
    last_error: str = ""
    seen: dict[str, str] = field(default_factory=dict)


class VirtualHoldService:
    """The Asterisk side of virtual hold (see the module docstring).

    Args:
        ari: ARI client registered as :data:`APP`.
        ami: The daemon's AMI session (actions only; events come via :meth:`ami_event`).
        rules: The current rules.
        overrides: The current overrides (closing time).
        open_store: Opens the durable hold store (called once, in a worker thread).
        node: This node's name (the holds' key with the call id).
        record_ticket: Puts a hold that became a ticket on the agent page's
            callback list (called in a worker thread; ``False``: the call is not
            in the journal yet, asked again on the next round). ``None``: no
            list; the hold still becomes ``ticket``.
        on_change: Called with every saved hold (metrics board).
        on_leg: Told of app_queue's member events about a placeholder, with
            its hold and tenant (the call tracker's
            :meth:`~pbxbridge.tracking.call_tracker.CallTracker.callback_leg`
            makes them the agent's screen pops); ``None``: no pops.
        clock: Now (aware); tests pass their own.
        poll_s: Seconds between reconciliations.
    """

    def __init__(
        self,
        ari: AriClient,
        ami: AmiClient,
        rules: Callable[[], Rules],
        overrides: Callable[[], Sequence[Override]],
        open_store: Callable[[], HoldStore],
        *,
        node: str,
        record_ticket: Callable[[VirtualHold], bool] | None = None,
        on_change: Callable[[VirtualHold], None] | None = None,
        on_leg: CallbackLegSink | None = None,
        clock: Callable[[], datetime] = _now,
        poll_s: float = 2.0,
    ) -> None:
        self._ari = ari
        self._ami = ami
        self._rules = rules
        self._overrides = overrides
        self._open_store = open_store
        self._record_ticket = record_ticket
        self._store: HoldStore | None = None
        self._node = node
        self._on_change = on_change
        self._on_leg = on_leg
        # Pending holds by call id, as last saved or read: the placeholder's
        # AMI events need theirs at once (no store round trip on the event path).
        self._pending: dict[str, VirtualHold] = {}
        # Holds whose placeholder is with an agent, until app_queue says the
        # agent is done (AgentComplete): the hold may be connected or a ticket
        # by then, and the agent's card must still end.
        self._with_agent: dict[str, VirtualHold] = {}
        self._clock = clock
        self._poll_s = poll_s
        self._offers: dict[str, _Offer] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tickets_unrecorded: dict[str, VirtualHold] = {}
        self._published: str | None = None  # digest of the rules last published to AstDB
        self.stats = VirtualHoldStats()

    # ------------------------------------------------------------ store access

    async def _db(self) -> HoldStore:
        if self._store is None:
            self._store = await asyncio.to_thread(self._open_store)
        return self._store

    async def _get(self, call_id: str) -> VirtualHold | None:
        store = await self._db()
        return await asyncio.to_thread(store.get, self._node, call_id)

    async def _save(self, hold: VirtualHold) -> None:
        store = await self._db()
        if not await asyncio.to_thread(store.save, hold):
            log.warning("vhold.stale_save", call_id=hold.call_id, state=hold.state)
            return
        self._remember(hold)
        if self._on_change is not None:
            self._on_change(hold)

    def _remember(self, hold: VirtualHold) -> None:
        if hold.state in PENDING:
            self._pending[hold.call_id] = hold
        else:
            self._pending.pop(hold.call_id, None)

    def close(self) -> None:
        """Close the store (after the tasks stopped)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    # ------------------------------------------------------------------- ARI

    async def handle(self, event: Mapping[str, Any]) -> None:
        """ARI event of :data:`APP`: decide an offer or a number, then continue the channel."""
        if event.get("type") != "StasisStart":
            return
        channel = event.get("channel") or {}
        args = [str(a) for a in event.get("args") or []]
        await self._decide(channel, args)

    async def resync(self) -> None:
        """After a (re)connect: channels a dead daemon left in the application go back.

        Continued without a verdict, the dialplan sends each caller back to
        their place in the queue: never dropped, never stuck.
        """
        app = await self._ari.get_application()
        for channel_id in app.get("channel_ids", []):
            try:
                channel = await self._ari.get_channel(str(channel_id))
                await self._continue(channel)
                log.warning("vhold.resync_returned", call_id=str(channel_id))
            except AriError as exc:
                log.info("vhold.resync_gone", call_id=str(channel_id), error=str(exc))

    async def _decide(self, channel: Mapping[str, Any], args: list[str]) -> None:
        variables: dict[str, str] = {}
        try:
            if args and args[0] == "offer":
                variables = await self._offer(channel, args[1:])
            elif args and args[0] == "number":
                variables = await self._number(channel, args[1:])
        except Exception as exc:  # a broken decision sends the caller back, never drops them
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("vhold.decision_failed", call_id=channel.get("id"))
            variables = {"PBXBRIDGE_VH_VERDICT": "back"}
        try:
            for name, value in variables.items():
                await self._ari.set_variable(str(channel.get("id")), name, value)
        except AriError as exc:
            log.warning("vhold.set_variable_failed", call_id=channel.get("id"), error=str(exc))
        try:
            await self._continue(channel)
        except AriError as exc:
            log.info("vhold.continue_failed", call_id=channel.get("id"), error=str(exc))

    async def _continue(self, channel: Mapping[str, Any]) -> None:
        # The line after Stasis(): the dialplan reads the verdict there.
        where = channel.get("dialplan") or {}
        await self._ari.continue_in_dialplan(
            str(channel.get("id")),
            str(where.get("context", "")),
            str(where.get("exten", "")),
            int(where.get("priority", 0)) + 1,
        )

    def _tenant(self, tenant_id: str) -> tuple[Tenant | None, VirtualHoldPolicy]:
        tenant = self._rules().tenants.get(tenant_id)
        return tenant, (tenant.virtual_hold if tenant is not None else OFF)

    async def _offer(self, channel: Mapping[str, Any], args: list[str]) -> dict[str, str]:
        """The caller pressed the digit: may they have a callback, and what do they hear."""
        call_id = str(channel.get("id", ""))
        position = int(args[0]) if args and args[0].isdigit() else 0
        tenant_id = args[1] if len(args) > 1 else ""
        queue = args[2] if len(args) > 2 else ""
        priority = int(args[3]) if len(args) > 3 and args[3].lstrip("-").isdigit() else 0
        tenant, policy = self._tenant(tenant_id)
        back = {"PBXBRIDGE_VH_VERDICT": "back", "PBXBRIDGE_VH_POS": str(position)}
        if tenant is None or not policy.enabled or not queue or not _CALL_ID.match(call_id):
            return back
        now = self._clock()
        snapshot = await self._ami.queue_status(queue)
        members = snapshot.members_of(queue)
        entries = snapshot.entries_of(queue)
        free = sum(1 for m in members if not m.paused and not m.in_call and m.status == 1)
        busy = sum(1 for m in members if m.in_call or m.status in (2, 6))
        estimate = estimate_wait(
            callers_ahead=max(0, position - 1),
            agents_free=free,
            agents_busy=busy,
            handle_times=(),
        )
        arrived = _created(channel) or now
        waited = max(0.0, (now - arrived).total_seconds())
        verdict = offer_due(policy, waited_s=waited, estimated_wait_s=estimate)
        self.stats.offers += 1
        hold = await self._get(call_id)
        if hold is None or hold.state is not VHoldState.OFFERED:
            caller = str((channel.get("caller") or {}).get("number", ""))
            own = check_callback_number(
                caller, region=self._rules().region, allow_international=policy.allow_international
            )
            hold = offered(
                node=self._node,
                call_id=call_id,
                tenant=tenant.id,
                queue=queue,
                priority=priority,
                caller=own.e164,
                arrived_at=arrived,
                at=now,
                waited_s=waited,
            )
        else:
            hold = step(hold, VHoldEvent.OFFERED, at=now, policy=policy, waited_s=waited)
        await self._save(hold)
        if not verdict.due:
            log.info("vhold.not_offered", call_id=call_id, reason=verdict.reason)
            return back
        own_check = check_callback_number(
            hold.caller or "",
            region=self._rules().region,
            allow_international=policy.allow_international,
        )
        self._offers[call_id] = _Offer(
            position=position,
            priority=priority,
            queue=queue,
            ahead=frozenset(e.uniqueid for e in entries if e.position < position),
            own=own_check if own_check.ok else None,
        )
        sounds = policy.sounds
        if own_check.ok:
            ask = f"{sounds.read_back}&{read_back(own_check.dial)}&{sounds.confirm_or_enter}"
        else:
            ask = sounds.enter_number
        log.info("vhold.offer", call_id=call_id, tenant=tenant.id, position=position)
        return {"PBXBRIDGE_VH_VERDICT": "enter", "PBXBRIDGE_VH_ASK": ask}

    async def _number(self, channel: Mapping[str, Any], args: list[str]) -> dict[str, str]:
        """The caller typed (or confirmed) a number: accept it, ask again, or send them back."""
        call_id = str(channel.get("id", ""))
        try_no = int(args[0]) if args and args[0].isdigit() else 1
        typed = args[1] if len(args) > 1 else ""
        offer = self._offers.get(call_id)
        hold = await self._get(call_id)
        if offer is None or hold is None or hold.state is not VHoldState.OFFERED:
            # A restarted daemon lost the offer: back to the place, offer again later.
            return {"PBXBRIDGE_VH_VERDICT": "back"}
        tenant, policy = self._tenant(hold.tenant)
        if tenant is None:
            return {"PBXBRIDGE_VH_VERDICT": "back", "PBXBRIDGE_VH_POS": str(offer.position)}
        now = self._clock()
        if typed == policy.digit and offer.own is not None:
            check = offer.own
        else:
            check = check_callback_number(
                typed, region=self._rules().region, allow_international=policy.allow_international
            )
        if not check.ok:
            assert check.problem is not None
            say = policy.sounds.prompt_for(check.problem)
            log.info("vhold.number_refused", call_id=call_id, reason=check.reason, attempt=try_no)
            if try_no < policy.entry_attempts:
                return {"PBXBRIDGE_VH_VERDICT": "again", "PBXBRIDGE_VH_SAY": say}
            hold = step(hold, VHoldEvent.ENTRY_FAILED, at=now, policy=policy, detail=check.reason)
            await self._save(hold)
            self._offers.pop(call_id, None)
            position = await self._position(offer.queue, offer.ahead, offer.priority)
            return {
                "PBXBRIDGE_VH_VERDICT": "back",
                "PBXBRIDGE_VH_SAY": say,
                "PBXBRIDGE_VH_POS": str(position or offer.position),
            }
        position = await self._position(offer.queue, offer.ahead, offer.priority)
        hold = step(
            hold, VHoldEvent.ACCEPTED, at=now, policy=policy, number=check, position=position
        )
        await self._save(hold)
        self.stats.accepted += 1
        self._offers.pop(call_id, None)
        await self._place(hold, tenant, policy, position=position)
        return {"PBXBRIDGE_VH_VERDICT": "accepted", "PBXBRIDGE_VH_SAY": policy.sounds.confirmed}

    async def _position(self, queue: str, ahead: frozenset[str], priority: int) -> int:
        """Where the caller stands now: behind those who were ahead and still wait.

        Callers ahead at the offer who were served meanwhile no longer count;
        callers of a higher priority are ahead anyway (app_queue places them so).
        """
        snapshot = await self._ami.queue_status(queue)
        before = sum(
            1 for e in snapshot.entries_of(queue) if e.uniqueid in ahead or e.priority > priority
        )
        return before + 1

    async def _place(
        self, hold: VirtualHold, tenant: Tenant, policy: VirtualHoldPolicy, *, position: int
    ) -> None:
        """Originate the placeholder into the hold's queue and record it."""
        prefix = tenant.open.callerid_prefix
        name = dialplan_safe(f"{prefix}: Rückruf" if prefix else "Rückruf")
        # "Rückruf für" + the tenant's "Gemeinde ...": the agent knows it is a callback.
        whisper = "&".join(w for w in (policy.sounds.agent_whisper, tenant.open.whisper) if w)
        accepted = hold.accepted_at or hold.updated_at
        variables = {
            "PBXBRIDGE_VH_ID": hold.call_id,
            "PBXBRIDGE_QUEUE": hold.queue,
            "QUEUE_PRIO": str(hold.priority),
            "PBXBRIDGE_VH_POS": str(max(1, position)),
            "PBXBRIDGE_VH_WHISPER": whisper,
            "PBXBRIDGE_VH_NUMBER": hold.dial,
            "PBXBRIDGE_VH_RING_S": str(policy.answer_timeout_s),
            "PBXBRIDGE_VH_OUT": policy.outbound_context,
            "PBXBRIDGE_VH_ASKED": str(int(accepted.timestamp())),
            "PBXBRIDGE_TENANT": tenant.id,
            "PBXBRIDGE_VIRTUAL_HOLD": "1",
        }
        await self._ami.originate(
            Channel=f"Local/{hold.call_id}@{PLACE_CONTEXT}/n",
            Context=CALL_CONTEXT,
            Exten="s",
            Priority="1",
            Timeout=str(ORIGINATE_TIMEOUT_MS),
            CallerID=f'"{name}" <{hold.dial}>',
            Account=tenant.id,
            Variable=",".join(f"{k}={v}" for k, v in variables.items()),
        )
        now = self._clock()
        event = (
            VHoldEvent.RETRY_QUEUED
            if hold.state is VHoldState.RETRY_WAIT
            else VHoldEvent.PLACEHOLDER_QUEUED
        )
        hold = step(hold, event, at=now, policy=policy, detail=f"position {position}")
        await self._save(hold)
        self.stats.placeholders += 1
        log.info(
            "vhold.placeholder_queued",
            call_id=hold.call_id,
            tenant=tenant.id,
            queue=hold.queue,
            position=position,
            priority=hold.priority,
            retry=event is VHoldEvent.RETRY_QUEUED,
        )

    # ------------------------------------------------------------------- AMI

    def ami_event(self, event: Mapping[str, str]) -> None:
        """An AMI event from the daemon's session (never raises).

        A placeholder's news (``PbxbridgeVirtualHold``) wakes the
        reconciliation; app_queue's member events about a placeholder (the
        queue half ``Local/<call id>@pbxbridge-vhold-place-...;2`` ringing or
        reaching an agent) become the callback leg's screen pop. The call
        tracker does not follow the placeholder: it is no call of its own
        (no journal row, no count in the metrics).
        """
        name = event.get("Event", "")
        if name == "UserEvent":
            if event.get("UserEvent") == "PbxbridgeVirtualHold":
                self._wake.set()
            return
        if name not in LEG_EVENTS or self._on_leg is None:
            return
        call_id = placeholder_call_id(event.get("Channel", ""))
        if call_id is None:
            return  # a real caller's event (the tracker's)
        hold = self._pending.get(call_id) or self._with_agent.get(call_id)
        if hold is None:
            return  # a hold already finished
        if name == "AgentComplete":
            self._with_agent.pop(call_id, None)
        elif name == "AgentConnect":
            self._with_agent[call_id] = hold
            while len(self._with_agent) > MAX_WITH_AGENT:  # AgentComplete lost with AMI
                del self._with_agent[next(iter(self._with_agent))]
        try:
            tenant, _ = self._tenant(hold.tenant)
            self._on_leg(
                event,
                hold,
                tenant_name=tenant.name if tenant is not None else hold.tenant,
                greeting=tenant.greeting if tenant is not None else "",
            )
        except Exception:  # a pop must never break the AMI session's dispatch
            log.exception("vhold.leg_failed", call_id=call_id)

    async def on_ami_connected(self) -> None:
        """After each AMI login: publish the tenants that offer virtual hold, then reconcile."""
        await self.publish_tenants()
        self._wake.set()

    async def publish_tenants(self) -> None:
        """Write the tenants with virtual hold into AstDB (the dialplan answers their callers)."""
        rules = self._rules()
        wanted = {t.id for t in rules.tenants.values() if t.virtual_hold.enabled}
        present = set((await self._astdb_tree(TENANT_FAMILY)).keys())
        for tenant_id in sorted(present - wanted):
            await self._ami.action({"Action": "DBDel", "Family": TENANT_FAMILY, "Key": tenant_id})
        for tenant_id in sorted(wanted - present):
            await self._ami.action(
                {"Action": "DBPut", "Family": TENANT_FAMILY, "Key": tenant_id, "Val": "1"}
            )
        self._published = rules.digest

    async def _astdb_tree(self, family: str) -> dict[str, str]:
        try:
            answer = await self._ami.action({"Action": "DBGetTree", "Family": family}, as_list=True)
        except AmiActionFailed:
            return {}  # an empty family answers "Database entry not found"
        out: dict[str, str] = {}
        for message in answer if isinstance(answer, list) else [answer]:
            key = message.get("Key", "")
            if message.get("Event") == "DBGetTreeResponse" and key:
                out[key.rsplit("/", 1)[-1]] = message.get("Val", "")
        return out

    async def _live_placeholders(self) -> set[str]:
        answer = await self._ami.action({"Action": "CoreShowChannels"}, as_list=True)
        live: set[str] = set()
        marker = f"@{PLACE_CONTEXT}-"
        for message in answer if isinstance(answer, list) else [answer]:
            name = message.get("Channel", "")
            if name.startswith("Local/") and marker in name:
                live.add(name[len("Local/") : name.index(marker)])
        return live

    async def run(self) -> None:
        """Reconcile every ``poll_s`` (or when woken) until cancelled; survive any one failure."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            self._wake.clear()
            if not self._ami.connected:
                continue
            try:
                if self._rules().digest != self._published:
                    await self.publish_tenants()  # a reload switched a tenant on or off
                await self.reconcile()
            except (AmiUnavailable, AmiActionFailed) as exc:
                log.info("vhold.reconcile_deferred", error=str(exc))
            except Exception as exc:  # the loop must outlive any one failure
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("vhold.reconcile_failed")

    async def reconcile(self) -> None:
        """Bring every pending hold in line with what Asterisk did (see the module docstring)."""
        async with self._lock:
            store = await self._db()
            holds = await asyncio.to_thread(store.pending, self._node)
            self.stats.pending = len(holds)
            self._pending = {hold.call_id: hold for hold in holds}
            await self._record_tickets()
            if not holds:
                return
            records = await self._astdb_tree(ASTDB_FAMILY)
            live = await self._live_placeholders()
            for hold in holds:
                try:
                    await self._advance(hold, records.get(hold.call_id), hold.call_id in live)
                except InvalidTransition as exc:
                    log.warning("vhold.out_of_step", call_id=hold.call_id, error=str(exc))
                    await self._forget(hold.call_id)

    async def _forget(self, call_id: str) -> None:
        with contextlib.suppress(AmiActionFailed):  # already gone
            await self._ami.action({"Action": "DBDel", "Family": ASTDB_FAMILY, "Key": call_id})

    async def _advance(self, hold: VirtualHold, raw: str | None, live: bool) -> None:
        tenant, policy = self._tenant(hold.tenant)
        now = self._clock()
        record = AstdbRecord.parse(raw) if raw else None
        if record is not None and record.at < hold.updated_at:
            # AstDB has whole seconds: never step a hold back in time.
            record = AstdbRecord(record.state, hold.updated_at, record.detail)
        s = VHoldState
        if record is not None and record.state in ("dialing", "connected", "failed"):
            if hold.state is s.WAITING:
                hold = step(hold, VHoldEvent.AGENT_REACHED, at=record.at, policy=policy)
            if hold.state is s.AGENT_REACHED:
                hold = step(hold, VHoldEvent.CALLING, at=record.at, policy=policy)
        if record is not None and record.state == "connected" and hold.state is s.CALLING:
            hold = step(hold, VHoldEvent.CITIZEN_ANSWERED, at=record.at, policy=policy)
            await self._save(hold)
            await self._forget(hold.call_id)
            self.stats.connected += 1
            log.info("vhold.connected", call_id=hold.call_id, wait_s=hold.wait_s)
            return
        if record is not None and record.state == "failed" and hold.state is s.CALLING:
            outcome = _DIAL_OUTCOME.get(record.detail, "failed")
            if record.detail == "CANCEL":
                outcome = "agent_gone"  # the agent hung up while the citizen's phone rang
            due = None
            if outcome != "agent_gone" and tenant is not None:
                after_tries = hold.tries_failed + 1
                if next_try_at(policy, tries_done=after_tries, failed_at=record.at) is None:
                    due = self._ticket_due(tenant, record.at)
            hold = step(
                hold,
                VHoldEvent.CITIZEN_FAILED,
                at=record.at,
                policy=policy,
                outcome=outcome,
                ticket_due_at=due,
            )
            await self._save(hold)
            await self._forget(hold.call_id)
            log.info("vhold.try_failed", call_id=hold.call_id, outcome=outcome, state=hold.state)
            if hold.state is s.TICKET:
                await self._ticket(hold)
                return
        elif hold.state in (s.WAITING, s.AGENT_REACHED, s.CALLING) and not live:
            settled = (now - hold.updated_at).total_seconds() > SETTLE_S
            if settled and (record is None or record.state in ("waiting", "dialing", "left")):
                # Asterisk lost the placeholder (restart) or it left the queue
                # without an agent: queue it again at the head.
                hold = step(hold, VHoldEvent.LOST, at=now, policy=policy)
                await self._save(hold)
                await self._forget(hold.call_id)
                self.stats.lost += 1
                log.warning("vhold.placeholder_lost", call_id=hold.call_id)
        elif record is not None and hold.state is not s.WAITING:
            await self._save(hold)  # progress seen (agent reached, calling)
        if tenant is None:
            return
        if hold.state in (s.ACCEPTED, s.WAITING, s.RETRY_WAIT) and not self._open(tenant, now):
            await self._close(hold, tenant, policy, live=live)
            return
        if hold.state is s.RETRY_WAIT and hold.next_try_at is not None and hold.next_try_at <= now:
            _, position = requeue_spot(hold)
            self.stats.retries += 1
            await self._place(hold, tenant, policy, position=position)
        elif hold.state is s.ACCEPTED and (now - hold.updated_at).total_seconds() > SETTLE_S:
            # Accepted, but the daemon died before the placeholder was queued.
            await self._place(hold, tenant, policy, position=max(1, hold.position))

    def _open(self, tenant: Tenant, at: datetime) -> bool:
        return tenant_open(tenant, self._rules(), at, self._overrides())

    def _ticket_due(self, tenant: Tenant, at: datetime) -> datetime:
        return ticket_due(
            tenant.calendar,
            self._rules().timezone,
            at=at,
            working_days=tenant.callback_working_days,
        )

    async def _close(
        self, hold: VirtualHold, tenant: Tenant, policy: VirtualHoldPolicy, *, live: bool
    ) -> None:
        """Closing time: the waiting placeholder leaves the queue, the hold becomes a ticket."""
        now = self._clock()
        if live:
            await self._hangup_placeholder(hold.call_id)
        hold = step(
            hold,
            VHoldEvent.CLOSED,
            at=now,
            policy=policy,
            ticket_due_at=self._ticket_due(tenant, now),
        )
        await self._save(hold)
        await self._forget(hold.call_id)
        log.info("vhold.closed_to_ticket", call_id=hold.call_id, tenant=tenant.id)
        await self._ticket(hold)

    async def _hangup_placeholder(self, call_id: str) -> None:
        answer = await self._ami.action({"Action": "CoreShowChannels"}, as_list=True)
        prefix = f"Local/{call_id}@{PLACE_CONTEXT}-"
        for message in answer if isinstance(answer, list) else [answer]:
            name = message.get("Channel", "")
            if name.startswith(prefix) and name.endswith(";2"):
                with contextlib.suppress(AmiActionFailed):  # it left by itself
                    await self._ami.action({"Action": "Hangup", "Channel": name})

    async def _ticket(self, hold: VirtualHold) -> None:
        self.stats.tickets += 1
        self._tickets_unrecorded[hold.call_id] = hold
        await self._record_tickets()

    async def _record_tickets(self) -> None:
        """Put tickets on the agent page's callback list; retried while the call row is missing."""
        record = self._record_ticket
        if not self._tickets_unrecorded or record is None:
            return
        for call_id, hold in list(self._tickets_unrecorded.items()):
            if await asyncio.to_thread(record, hold):
                del self._tickets_unrecorded[call_id]


def placeholder_call_id(channel: str) -> str | None:
    """The original call's id in a placeholder's channel name, ``None`` for any other channel.

    ``Local/1764769000.12@pbxbridge-vhold-place-00000003;2`` → ``1764769000.12``.
    """
    marker = f"@{PLACE_CONTEXT}-"
    if not channel.startswith("Local/") or marker not in channel:
        return None
    call_id = channel[len("Local/") : channel.index(marker)]
    return call_id if _CALL_ID.match(call_id) else None


def _created(channel: Mapping[str, Any]) -> datetime | None:
    text = str(channel.get("creationtime", ""))
    try:
        # ARI: 2026-12-03T13:08:02.077+0000
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    except ValueError:
        return None
