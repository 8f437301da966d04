"""Replay: route journalled calls by two rule sets and report what would change (pure).

``pbxbridge replay`` and the daemon's reload summary feed the calls of a period
(as the journal stored them) through :func:`~pbxbridge.core.routing.route`
twice, once with the rules in force (*before*) and once with the new ones
(*after*), and compare what matters to a caller and to the centre: the tenant,
the action, the queue, its priority and the closed handling. Calls whose
decision differs are grouped by tenant and kind of change and counted; for a
few calls of each group the reasons of both sides are kept.

What a call is routed with: its DID, its caller (E.164, or ``None`` when
withheld or purged), its arrival instant, the 115 menu digit it pressed, and
the manual overrides that were in force at that instant (built from the
override store's history by :func:`override_timeline`: a cleared override
applied until it was cleared).

Calls purged by retention have lost their caller. Their decision does not
depend on it unless they came in on a 115 number (placed by area code), so a
purged call on a 115 number of either rule set is *not replayable*: it is
counted per tenant and left out, never guessed. Every other purged call is
replayed exactly.

Speed: a month of the centre's traffic is some 42,000 calls, a year about half
a million, and :func:`route` takes some 15 µs. Within a stretch of time in
which no calendar of either rule set changes state and no override starts or
ends, two calls to numbers that reach the same tenant (or, on 115, with the
same menu digit and area-code match) route to the same tenant, action, queue,
priority and closed handling, so the pair of decisions is computed once per
such key (:class:`Replayer`) and the full route with its reasons is run again
only for the sampled calls. The key names every
input :func:`route` reads for those fields; tests compare the keyed replay
with routing every call.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Final, Protocol

from pbxbridge.core.calendar import Calendar
from pbxbridge.core.models import Action, Call, Decision, Override
from pbxbridge.core.numbers import normalize, shorten
from pbxbridge.core.routing import route
from pbxbridge.core.rules import Rules

SAMPLES_PER_GROUP: Final = 3
"""Calls of each group whose reasons (both sides) the report keeps."""

_DAY: Final = timedelta(days=1)
_ANY_TIME: Final = datetime(2000, 1, 3, 12, tzinfo=UTC)
"""An instant for questions whose answer does not depend on the time."""

FIELDS: Final = ("tenant", "action", "queue", "priority", "closed")
"""What is compared, in this order (a change's ``kind`` lists the differing ones)."""


class JournalledCall(Protocol):
    """What the replay reads of a journalled call (the journal's row has it all)."""

    @property
    def node(self) -> str: ...  # noqa: D102 - see the journal's row
    @property
    def call_id(self) -> str: ...  # noqa: D102
    @property
    def tenant(self) -> str: ...  # noqa: D102
    @property
    def did(self) -> str: ...  # noqa: D102
    @property
    def caller(self) -> str | None: ...  # noqa: D102
    @property
    def arrived_at(self) -> datetime: ...  # noqa: D102
    @property
    def menu_digit(self) -> str | None: ...  # noqa: D102
    @property
    def purged_at(self) -> datetime | None: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class Routed:
    """The part of a decision a replay compares.

    Attributes:
        tenant: Tenant id, ``""`` for none (rejected, menu).
        action: ``queue``, ``closed``, ``menu`` or ``reject``.
        queue: The app_queue queue the call joins (``""`` for none).
        priority: Its priority in that queue (``None`` without queue).
        closed: The closed handling (``then``, target, announcement), ``""`` when open.
    """

    tenant: str
    action: str
    queue: str
    priority: int | None
    closed: str

    @classmethod
    def of(cls, decision: Decision) -> Routed:
        """The compared part of ``decision``."""
        q = decision.queue
        c = decision.closed
        closed = ""
        if c is not None:
            closed = " ".join(x for x in (c.then.value, c.target) if x)
            if c.announce:
                closed += f" (announce {c.announce})"
        return cls(
            tenant=decision.tenant or "",
            action=decision.action.value,
            queue=q.queue if q is not None else "",
            priority=q.priority if q is not None else None,
            closed=closed,
        )

    def text(self) -> str:
        """One short line: ``queue servicecenter p5``, ``closed voicemail 100``."""
        if self.closed:
            out = f"closed → {self.closed}"
            if self.queue:
                out += f" via queue {self.queue} p{self.priority}"
        elif self.queue:
            out = f"queue {self.queue} p{self.priority}"
        else:
            out = self.action
        return f"{self.tenant or '-'}: {out}"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view."""
        return {
            "tenant": self.tenant,
            "action": self.action,
            "queue": self.queue,
            "priority": self.priority,
            "closed": self.closed,
        }


def kind_of(before: Routed, after: Routed) -> str:
    """The differing fields joined by ``+`` (``""`` when nothing differs)."""
    return "+".join(name for name in FIELDS if getattr(before, name) != getattr(after, name))


@dataclass(frozen=True, slots=True)
class ChangedCall:
    """One call the new rules would route differently.

    Attributes:
        node: The journal's node.
        call_id: The call's id in the journal.
        arrived_at: When it arrived (aware).
        did: The dialled number as journalled.
        caller: The caller shortened (``+4944…67``; personal data), ``withheld``.
        menu_digit: The 115 menu digit it pressed, if any.
        before: Its routing by the current rules.
        after: Its routing by the new rules.
        kind: The differing fields (:func:`kind_of`).
    """

    node: str
    call_id: str
    arrived_at: datetime
    did: str
    caller: str
    menu_digit: str | None
    before: Routed
    after: Routed
    kind: str

    @property
    def tenant(self) -> str:
        """The tenant the change is counted for: the current one, else the new one."""
        return self.before.tenant or self.after.tenant


@dataclass(frozen=True, slots=True)
class Sample:
    """A changed call with the reasons of both decisions."""

    call: ChangedCall
    reasons_before: tuple[str, ...]
    reasons_after: tuple[str, ...]


@dataclass(slots=True)
class ChangeGroup:
    """Calls of one tenant changing the same way.

    Attributes:
        tenant: See :attr:`ChangedCall.tenant`.
        kind: The differing fields.
        before: The routing by the current rules.
        after: The routing by the new rules.
        count: How many calls.
        samples: The first few calls, with their reasons.
    """

    tenant: str
    kind: str
    before: Routed
    after: Routed
    count: int = 0
    samples: list[Sample] = field(default_factory=list)


@dataclass(slots=True)
class ReplayReport:
    """What a replay found.

    Attributes:
        calls: Calls read (in the period and, with a tenant filter, of it).
        replayed: Calls routed by both rule sets.
        changed: Every changed call, oldest first.
        groups: The changes grouped, the largest group first.
        not_replayable: Per tenant (as journalled), purged 115 calls.
    """

    calls: int = 0
    replayed: int = 0
    changed: list[ChangedCall] = field(default_factory=list)
    groups: list[ChangeGroup] = field(default_factory=list)
    not_replayable: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, object]:
        """Counts only (no numbers, no call ids): for the log line and ``/healthz``."""
        by_kind: Counter[str] = Counter()
        by_tenant: Counter[str] = Counter()
        for group in self.groups:
            by_kind[group.kind] += group.count
            by_tenant[group.tenant] += group.count
        return {
            "calls": self.calls,
            "replayed": self.replayed,
            "changed": len(self.changed),
            "not_replayable": sum(self.not_replayable.values()),
            "by_kind": dict(sorted(by_kind.items())),
            "by_tenant": dict(sorted(by_tenant.items())),
        }


class OverrideTimeline:
    """The overrides in force at any instant, from the store's history.

    Args:
        history: ``(override, cleared_at)`` pairs, cleared or not.
    """

    def __init__(self, history: Iterable[tuple[Override, datetime | None]] = ()) -> None:
        effective: list[Override] = []
        for override, cleared_at in history:
            end = override.expires_at
            if cleared_at is not None and (end is None or cleared_at < end):
                end = cleared_at
            if end is not None and end <= override.set_at:
                continue  # cleared before it started: never in force
            effective.append(replace(override, expires_at=end))
        self.overrides: tuple[Override, ...] = tuple(effective)
        points = {o.set_at for o in effective}
        points.update(o.expires_at for o in effective if o.expires_at is not None)
        self._points = sorted(points)
        # The overrides in force in each stretch between two change points
        # (stretch i starts at _points[i - 1]; stretch 0 is before the first).
        self._sets: list[tuple[Override, ...]] = [()]
        for point in self._points:
            self._sets.append(tuple(o for o in effective if o.active_at(point)))

    def at(self, instant: datetime) -> tuple[int, tuple[Override, ...]]:
        """The stretch ``instant`` falls in, and the overrides in force then."""
        points = self._points
        if not points:
            return 0, ()
        index = bisect.bisect_right(points, instant)
        return index, self._sets[index]


class _Side:
    """One rule set, with what the replay key needs of it cached."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._dids: dict[str, Hashable] = {}
        self._days: dict[date, list[int]] = {}
        self._lo = self._hi = 0.0
        self._last: tuple[date, int] = (date.min, 0)
        calendars: dict[int, Calendar] = {id(c): c for c in rules.calendars.values()}
        calendars.update((id(t.calendar), t.calendar) for t in rules.tenants.values())
        self._calendars = tuple(calendars.values())

    def did_class(self, did: str) -> Hashable:
        """What of the DID a decision reads: ``"115"``, or the tenant it names (or reject).

        Asked of :func:`route` itself, once per DID: outside 115 the tenant a
        number reaches does not depend on the time, and two numbers of one
        tenant (or two unknown ones) route alike in everything compared.
        """
        found = self._dids.get(did)
        if found is None:
            decision = route(Call(did=did), self.rules, _ANY_TIME)
            if decision.via_115:
                found = "115"
            elif decision.action is Action.REJECT:
                found = ("reject",)
            else:
                found = ("tenant", decision.tenant)
            self._dids[did] = found
        return found

    def area(self, caller: str | None) -> Hashable:
        """What of the caller a 115 decision reads: withheld, or the matching area code."""
        if caller is None:
            return None
        # The journal keeps callers as route() normalised them: E.164 needs
        # no second normalisation (the common case, and most of the cost).
        e164 = caller if caller.startswith("+") else normalize(caller, self.rules.region).e164
        if e164 is None:
            return None
        service = self.rules.service_115
        hit = service.by_area_code.longest(e164) if service is not None else None
        return "" if hit is None else hit[0]

    def stretch(self, at: datetime, stamp: float) -> tuple[date, int]:
        """The local day and the stretch of it in which no calendar changes state.

        Args:
            at: The instant.
            stamp: The same as Unix seconds.
        """
        # Calls come oldest first and a stretch lasts hours: the last one
        # found usually holds the next call too.
        if self._lo <= stamp < self._hi:
            return self._last
        tz = self.rules.timezone
        local = at.astimezone(tz)
        day = local.date()
        bounds = self._days.get(day)
        if bounds is None:
            edges: set[int] = {0, 86_400}
            for calendar in self._calendars:
                for interval in calendar.state_on(day)[0]:
                    edges.add(interval.start)
                    edges.add(interval.end)
            bounds = self._days[day] = sorted(edges)
        second = local.hour * 3600 + local.minute * 60 + local.second
        index = bisect.bisect_right(bounds, second)
        self._last = (day, index)
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        if midnight.utcoffset() == (midnight + _DAY).utcoffset():
            # Wall-clock seconds map to instants one to one on this day.
            self._lo = (midnight + timedelta(seconds=bounds[index - 1])).timestamp()
            self._hi = (midnight + timedelta(seconds=bounds[index])).timestamp()
        else:
            # A day the clocks change: no shortcut, every call is looked up.
            self._lo = self._hi = 0.0
        return self._last


class Replayer:
    """Replays calls one by one (feed them oldest first with :meth:`add`).

    Args:
        before: The rules in force.
        after: The new rules.
        overrides: The overrides over the period.
        tenant: Only changes where either side routes to this tenant (and
            unreplayable calls journalled for it).
        samples: Calls per group whose reasons are kept.
    """

    def __init__(
        self,
        before: Rules,
        after: Rules,
        overrides: OverrideTimeline | None = None,
        *,
        tenant: str | None = None,
        samples: int = SAMPLES_PER_GROUP,
    ) -> None:
        self._before = _Side(before)
        self._after = _Side(after)
        self._overrides = overrides or OverrideTimeline()
        self._tenant = tenant
        self._samples = samples
        self._memo: dict[Hashable, tuple[Routed, Routed]] = {}
        self._groups: dict[tuple[str, str, Routed, Routed], ChangeGroup] = {}
        self.report = ReplayReport()

    def add(self, row: JournalledCall) -> ChangedCall | None:
        """Replay one call.

        Returns:
            The change, or ``None`` when it routes the same (or is filtered out
            or not replayable).
        """
        b, a = self._before, self._after
        did = row.did
        did_b, did_a = b.did_class(did), a.did_class(did)
        via_115 = did_b == "115" or did_a == "115"
        if via_115 and row.caller is None and row.purged_at is not None:
            if self._tenant is None or row.tenant == self._tenant:
                self.report.calls += 1
                self.report.not_replayable[row.tenant] += 1
            return None
        at = row.arrived_at
        stamp = at.timestamp()
        stretch, overrides = self._overrides.at(at)
        caller = row.caller
        key = (
            did_b,
            did_a,
            # Only 115 calls read the caller and the menu digit.
            (row.menu_digit, b.area(caller), a.area(caller)) if via_115 else None,
            b.stretch(at, stamp),
            a.stretch(at, stamp),
            stretch,
        )
        pair = self._memo.get(key)
        call: Call | None = None
        decisions: tuple[Decision, Decision] | None = None
        if pair is None:
            call = _call(row)
            decisions = (
                route(call, b.rules, at, overrides),
                route(call, a.rules, at, overrides),
            )
            pair = self._memo[key] = (Routed.of(decisions[0]), Routed.of(decisions[1]))
        before, after = pair
        if self._tenant is not None and self._tenant not in (before.tenant, after.tenant):
            return None
        self.report.calls += 1
        self.report.replayed += 1
        if before == after:
            return None
        change = ChangedCall(
            node=row.node,
            call_id=row.call_id,
            arrived_at=at,
            did=did,
            caller=shorten(caller),
            menu_digit=row.menu_digit,
            before=before,
            after=after,
            kind=kind_of(before, after),
        )
        self.report.changed.append(change)
        group_key = (change.tenant, change.kind, before, after)
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = ChangeGroup(change.tenant, change.kind, before, after)
        group.count += 1
        if len(group.samples) < self._samples:
            if decisions is None:
                # The memo answered for another call: its reasons name that
                # call's time and caller, so route this one for its own.
                call = _call(row)
                decisions = (
                    route(call, b.rules, at, overrides),
                    route(call, a.rules, at, overrides),
                )
            group.samples.append(Sample(change, decisions[0].reasons, decisions[1].reasons))
        return change

    def finish(self) -> ReplayReport:
        """The report, groups ordered by tenant, then the largest first."""
        self.report.groups = sorted(
            self._groups.values(), key=lambda g: (g.tenant, -g.count, g.kind, g.before.text())
        )
        return self.report


def _call(row: JournalledCall) -> Call:
    # The journal keeps the caller in E.164 or nothing: withheld callers and
    # numbers that were none both replay as withheld.
    return Call(did=row.did, caller=row.caller or "", menu_digit=row.menu_digit)


def replay(
    calls: Iterable[JournalledCall],
    before: Rules,
    after: Rules,
    overrides: OverrideTimeline | None = None,
    *,
    tenant: str | None = None,
    samples: int = SAMPLES_PER_GROUP,
) -> ReplayReport:
    """Replay ``calls`` (oldest first) by both rule sets: see :class:`Replayer`."""
    replayer = Replayer(before, after, overrides, tenant=tenant, samples=samples)
    for row in calls:
        replayer.add(row)
    return replayer.finish()


__all__: Sequence[str] = (
    "FIELDS",
    "SAMPLES_PER_GROUP",
    "ChangeGroup",
    "ChangedCall",
    "JournalledCall",
    "OverrideTimeline",
    "ReplayReport",
    "Replayer",
    "Routed",
    "Sample",
    "kind_of",
    "replay",
)
