"""Service-level reports from the call journal: the aggregation (pure).

The partner municipalities are promised three things: more than 80 % of calls
answered within 20 s, more than 75 % resolved at first contact, and callbacks by
the end of the next working day. :func:`build_report` turns journal rows into
those figures per tenant and per local hour, day or month;
:mod:`pbxbridge.journal.render` turns a :class:`Report` into a table, CSV, JSON
or the monthly invoice, and ``pbxbridge report`` (:mod:`pbxbridge.cli`) ties the
two together. Nothing here touches a database: rows come in as any iterable of the
journal's :class:`~pbxbridge.journal.store.CallRow` (from a :class:`RowSource`).

Definitions (each call is attributed to the bucket of its *arrival*, in local
time, except the callback deadlines, which go by their due time):

``calls``
    Every call that arrived for the tenant in the bucket.
``rejected``
    Routing refused it (``action == "reject"`` or ``outcome == "rejected"``).
``closed_hours``
    It arrived while the tenant was closed (``action == "closed"``), whatever the
    closed-hours handling did with it (announcement, voicemail, forward, or an
    after-hours queue). These calls are *not* offered: the answering promise is
    for opening hours, and keeping the two sets disjoint makes
    ``calls = offered + closed_hours + rejected + not_queued``.
``offered``
    It reached the service queue during opening hours: ``action`` is not
    ``closed`` or ``reject`` and ``queued_at`` is set. Calls that hung up before
    joining a queue (e.g. during the 115 menu) are ``not_queued`` instead.
``answered`` / ``abandoned`` / ``other_offered``
    An offered call with ``answered_at`` set is answered (also while still in
    conversation); one with outcome ``abandoned`` is abandoned; the rest
    (queue timeout or exit, or still waiting) are ``other_offered``, so
    ``offered = answered + abandoned + other_offered``.
``short_abandoned``
    Abandoned after waiting *less than* ``short_abandon_s`` (5 s): a misdial or
    a caller who changed their mind before anyone could have answered. Shown
    apart, still counted in ``abandoned`` and ``offered``.
``answered_within``
    Answered with a wait ``<= threshold_s`` ("within 20 s" includes 20.0 s,
    as Asterisk's queue ``servicelevel`` does).
``sl_answered_pct``
    Service level over answered calls: ``answered_within / answered``.
``sl_offered_pct``
    Service level over offered calls, the usual call-centre convention that
    counts every abandon against the service level except short abandons:
    ``answered_within / (offered - short_abandoned)``. Calls that timed out
    of the queue count against it too.

    These four, and the 20 s / 5 s defaults, are
    :mod:`pbxbridge.core.servicelevel`'s, shared with the live figure of
    ``/metrics``.
``mean_wait_s`` / ``p90_wait_s``
    Of answered calls; the 90th percentile by nearest rank (the value at rank
    ``ceil(0.9 * n)`` of the sorted waits, so it is always a real wait).
``mean_talk_s``
    Of answered calls whose conversation has ended (``talk_s`` known).
``via_115_pct``
    Share of ``offered + closed_hours`` that came in on a 115 number.
``fcr_pct``
    First-contact resolution: ``resolved / (resolved + callbacks)`` over answered
    calls with a disposition (opening hours or not: the promise is about
    contacts); ``None`` when no answered call has a disposition.
``callbacks_due`` / ``callbacks_overdue``
    Callbacks still open (not done) whose deadline ``callback_due_at`` falls in
    the bucket; overdue are those whose deadline is before ``now``.
``callbacks_on_time`` / ``callbacks_late`` / ``callback_on_time_pct``
    Of callbacks whose deadline falls in the bucket: done by the deadline, or
    done after it; the percentage is ``on_time / (on_time + late + overdue)``,
    i.e. over callbacks whose fate is known at ``now``.
``virtual_hold_offered`` / ``_accepted`` / ``_connected`` / ``_failed`` / ``_pending``
    Virtual holds (callback instead of waiting) of the calls that arrived in
    the bucket, counted from the holds given to :func:`build_report`: offered
    (one per call, however often offered), accepted (the caller gave a
    number), connected (called back and answered), failed (became a callback
    ticket: tries used up or the tenant closed first), pending (accepted and
    still owed). A call answered by callback is also counted in ``answered``
    when its rows pass through
    :func:`pbxbridge.journal.virtual_holds.answered_by_callback`.
``virtual_hold_mean_to_connect_s`` / ``virtual_hold_p90_to_connect_s``
    Seconds from the acceptance (the request) to the connection, of connected
    holds; the 90th percentile by nearest rank.

Percentages are ``None`` when their denominator is zero, and are *truncated*
(not rounded) to two decimals when rendered, so a report never shows a missed
promise as met (79.996 % is shown as 79.99, not 80.00); the counts are always
there to recompute exact ratios.

Because callback deadlines lie after the arrival, a report needs the calls that
arrived in the period *and* the callbacks due in it, however long before the
period those calls arrived (deadlines are working days after the call: up to
10 of them, across closures of up to a year): :func:`report_rows` loads both,
the second set by deadline (``callbacks_due_between``), not by a fixed window.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from pbxbridge.core import servicelevel
from pbxbridge.core.virtual_hold import VirtualHold
from pbxbridge.core.virtual_hold_outcome import VHoldOutcome, hold_outcome
from pbxbridge.journal.entry import Outcome
from pbxbridge.journal.store import CallRow

Granularity = Literal["hour", "day", "month"]
GRANULARITIES: tuple[Granularity, ...] = ("hour", "day", "month")
TOTAL = "total"
"""Label of the whole-period totals (bucket column of CSV and JSON rows)."""


class RowSource(Protocol):
    """A journal that lists calls by arrival and by callback deadline (``SqliteJournal``…)."""

    def calls_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterable[CallRow]:
        """Calls with ``start <= arrived_at < end`` (aware datetimes), optionally one tenant's."""
        ...

    def callbacks_due_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterable[CallRow]:
        """Calls with a callback due in ``[start, end)``, whenever they arrived."""
        ...


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of one tenant (or all) over one bucket (or the whole period).

    See the module docstring for the exact definitions. Counts are ints; the
    derived percentages are properties computed from them (``None`` when the
    denominator is zero); times are seconds or ``None`` when there is nothing
    to average.
    """

    calls: int = 0
    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    other_offered: int = 0
    not_queued: int = 0
    closed_hours: int = 0
    rejected: int = 0
    via_115: int = 0
    resolved: int = 0
    callbacks_requested: int = 0
    callbacks_due: int = 0
    callbacks_overdue: int = 0
    callbacks_on_time: int = 0
    callbacks_late: int = 0
    virtual_hold_offered: int = 0
    virtual_hold_accepted: int = 0
    virtual_hold_connected: int = 0
    virtual_hold_failed: int = 0
    virtual_hold_pending: int = 0
    mean_wait_s: float | None = None
    p90_wait_s: float | None = None
    mean_talk_s: float | None = None
    virtual_hold_mean_to_connect_s: float | None = None
    virtual_hold_p90_to_connect_s: float | None = None

    @property
    def sl_answered_pct(self) -> float | None:
        """Answered within the threshold, of answered calls (percent)."""
        return self.fraction("sl_answered_pct").percent()

    @property
    def sl_offered_pct(self) -> float | None:
        """Answered within the threshold, of offered calls minus short abandons (percent)."""
        return self.fraction("sl_offered_pct").percent()

    @property
    def via_115_pct(self) -> float | None:
        """Share of offered and closed-hours calls that came via 115 (percent)."""
        return self.fraction("via_115_pct").percent()

    @property
    def fcr_pct(self) -> float | None:
        """First-contact resolution: resolved of resolved plus callbacks (percent)."""
        return self.fraction("fcr_pct").percent()

    @property
    def callback_on_time_pct(self) -> float | None:
        """Callbacks done by their deadline, of those whose fate is known (percent)."""
        return self.fraction("callback_on_time_pct").percent()

    def fraction(self, name: str) -> servicelevel.Fraction:
        """A percentage's counts, so that renderers can truncate it exactly.

        Args:
            name: One of :data:`PCT_FIELDS`.

        Returns:
            Numerator and denominator.

        Raises:
            KeyError: For an unknown name.
        """
        if name == "sl_answered_pct":
            return servicelevel.over_answered(self.answered_within, self.answered)
        if name == "sl_offered_pct":
            return servicelevel.over_offered(
                self.answered_within, self.offered, self.short_abandoned
            )
        if name == "via_115_pct":
            return servicelevel.Fraction(self.via_115, self.offered + self.closed_hours)
        if name == "fcr_pct":
            return servicelevel.Fraction(self.resolved, self.resolved + self.callbacks_requested)
        if name == "callback_on_time_pct":
            return servicelevel.Fraction(
                self.callbacks_on_time,
                self.callbacks_on_time + self.callbacks_late + self.callbacks_overdue,
            )
        raise KeyError(name)


FIGURES: tuple[str, ...] = (
    "calls",
    "offered",
    "answered",
    "answered_within",
    "abandoned",
    "short_abandoned",
    "other_offered",
    "not_queued",
    "closed_hours",
    "rejected",
    "via_115",
    "sl_answered_pct",
    "sl_offered_pct",
    "mean_wait_s",
    "p90_wait_s",
    "mean_talk_s",
    "via_115_pct",
    "resolved",
    "callbacks_requested",
    "fcr_pct",
    "callbacks_due",
    "callbacks_overdue",
    "callbacks_on_time",
    "callbacks_late",
    "callback_on_time_pct",
    "virtual_hold_offered",
    "virtual_hold_accepted",
    "virtual_hold_connected",
    "virtual_hold_failed",
    "virtual_hold_pending",
    "virtual_hold_mean_to_connect_s",
    "virtual_hold_p90_to_connect_s",
)
"""Every figure of :class:`Figures` (fields and percentages), in rendering order.

The CSV's columns after its keys, in this order: a new figure is appended.
"""

COUNTERS: tuple[str, ...] = tuple(f.name for f in fields(Figures) if f.type == "int")
"""The counts of :class:`Figures` (its ``int`` fields, in declaration order)."""
SECONDS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Figures) if f.name.endswith("_s"))
"""The times of :class:`Figures` (seconds or ``None``)."""
PCT_FIELDS: tuple[str, ...] = tuple(name for name in FIGURES if name.endswith("_pct"))
"""The percentages of :class:`Figures` (properties), in rendering order."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One hour, day or month of one tenant.

    Attributes:
        label: ``2026-03-29``, ``2026-03`` or ``2026-03-29 03:00``; on the day
            winter time starts the repeated hour is labelled with the zone
            abbreviation (``2026-10-25 02:00 CEST`` and ``... 02:00 CET``).
        start: Local start (aware, in the report's time zone), clipped to the period.
        end: Local end (exclusive), clipped to the period.
        figures: The figures.
    """

    label: str
    start: datetime
    end: datetime
    figures: Figures


@dataclass(frozen=True, slots=True)
class TenantReport:
    """One tenant's buckets and totals.

    Attributes:
        tenant: Tenant id (``""``: rejected calls no tenant claimed).
        buckets: Every bucket of the period in time order, empty ones included;
            empty when the report has no granularity.
        total: The whole period.
    """

    tenant: str
    buckets: tuple[Bucket, ...]
    total: Figures


@dataclass(frozen=True, slots=True)
class Report:
    """A service-level report.

    Attributes:
        start: First local date.
        end: Last local date (inclusive).
        tz: Time zone of buckets and dates.
        by: Granularity, or ``None`` for totals only.
        threshold_s: Service-level threshold (answered within, inclusive).
        short_abandon_s: Abandons shorter than this are short abandons.
        now: The instant overdue callbacks are judged against.
        tenants: Per tenant, sorted by id.
        total: All tenants together over the whole period.
    """

    start: date
    end: date
    tz: ZoneInfo
    by: Granularity | None
    threshold_s: float
    short_abandon_s: float
    now: datetime
    tenants: tuple[TenantReport, ...]
    total: Figures

    def tenant(self, tenant: str) -> TenantReport:
        """One tenant's part of the report.

        Args:
            tenant: Tenant id.

        Returns:
            Its buckets and totals.

        Raises:
            KeyError: If the tenant is not in the report.
        """
        for part in self.tenants:
            if part.tenant == tenant:
                return part
        raise KeyError(tenant)


# --------------------------------------------------------------------------
# Aggregation


@dataclass(slots=True)
class _Acc:
    """Mutable counters of one bucket while the rows stream past."""

    calls: int = 0
    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    other_offered: int = 0
    not_queued: int = 0
    closed_hours: int = 0
    rejected: int = 0
    via_115: int = 0
    resolved: int = 0
    callbacks_requested: int = 0
    callbacks_due: int = 0
    callbacks_overdue: int = 0
    callbacks_on_time: int = 0
    callbacks_late: int = 0
    virtual_hold_offered: int = 0
    virtual_hold_accepted: int = 0
    virtual_hold_connected: int = 0
    virtual_hold_failed: int = 0
    virtual_hold_pending: int = 0
    talk_sum: float = 0.0
    talk_n: int = 0
    # Kept whole (not a running sum) for the nearest-rank percentile; a month of
    # 42,000 calls is a few hundred kilobytes.
    waits: list[float] = field(default_factory=list)
    to_connect: list[float] = field(default_factory=list)

    def merge(self, other: _Acc) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.talk_sum += other.talk_sum
        self.talk_n += other.talk_n
        self.waits.extend(other.waits)
        self.to_connect.extend(other.to_connect)

    def figures(self) -> Figures:
        counts = {name: getattr(self, name) for name in COUNTERS}
        waits, to_connect = self.waits, self.to_connect
        return Figures(
            **counts,
            mean_wait_s=sum(waits) / len(waits) if waits else None,
            p90_wait_s=percentile_nearest_rank(waits, 90),
            mean_talk_s=self.talk_sum / self.talk_n if self.talk_n else None,
            virtual_hold_mean_to_connect_s=(
                sum(to_connect) / len(to_connect) if to_connect else None
            ),
            virtual_hold_p90_to_connect_s=percentile_nearest_rank(to_connect, 90),
        )


def percentile_nearest_rank(values: Sequence[float], pct: int) -> float | None:
    """The nearest-rank percentile: the value at rank ``ceil(pct/100 * n)``.

    Args:
        values: The sample (any order).
        pct: Percentile, 1 to 100.

    Returns:
        The percentile, or ``None`` for an empty sample.
    """
    n = len(values)
    if n == 0:
        return None
    # Integer ceiling: 0.9 * n in floats can land a hair above an integer.
    rank = max(1, -(-pct * n // 100))
    return sorted(values)[rank - 1]


def period_range(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants of a period of local dates.

    Args:
        start: First local date.
        end: Last local date (inclusive).
        tz: The local time zone.

    Returns:
        ``[start 00:00 local, end + 1 day 00:00 local)`` in UTC.
    """
    first = datetime.combine(start, time(0), tz).astimezone(UTC)
    after = datetime.combine(end + timedelta(days=1), time(0), tz).astimezone(UTC)
    return first, after


def report_rows(
    journal: RowSource, start: date, end: date, tz: ZoneInfo, tenant: str | None = None
) -> Iterator[CallRow]:
    """Every row a report for ``[start, end]`` needs, each once.

    The calls that arrived in the period, then the callbacks due in it of calls
    that arrived before it (found by their deadline, however far back: a
    fixed look-back window would miss deadlines set weeks after the call).

    Args:
        journal: The journal store.
        start: First local date.
        end: Last local date (inclusive).
        tz: The local time zone.
        tenant: Only this tenant, or ``None`` for all.

    Returns:
        The rows, lazily (page by page from the store).
    """
    first, after = period_range(start, end, tz)
    yield from journal.calls_between(first, after, tenant)
    for row in journal.callbacks_due_between(first, after, tenant):
        # Arrived in the period: already yielded above.
        if row.arrived_at < first:
            yield row


def month_range(year: int, month: int) -> tuple[date, date]:
    """First and last date of a calendar month.

    Args:
        year: The year.
        month: The month, 1 to 12.

    Returns:
        ``(first, last)``, inclusive.
    """
    first = date(year, month, 1)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first, following - timedelta(days=1)


class _Buckets:
    """Maps local instants to bucket keys and knows each bucket's span and label."""

    def __init__(
        self, by: Granularity | None, tz: ZoneInfo, first: datetime, after: datetime
    ) -> None:
        self.by = by
        self.tz = tz
        self.first = first
        self.after = after
        self._spans: dict[Hashable, tuple[str, datetime, datetime]] = {
            key: self._span(key) for key in self._all_keys()
        }
        self._ordered: list[tuple[Hashable, str, datetime, datetime]] | None = None

    def key(self, instant: datetime) -> Hashable:
        if self.by is None:
            return None
        local = instant.astimezone(self.tz)
        if self.by == "day":
            return local.date()
        if self.by == "month":
            return (local.year, local.month)
        # The offset tells the two 02:00 hours of the autumn switch day apart.
        return (local.date(), local.hour, local.utcoffset())

    def _all_keys(self) -> list[Hashable]:
        # Every bucket of the period, so empty hours/days show as zeros.
        keys: dict[Hashable, None] = {}
        if self.by == "hour":
            # Each UTC hour is one local hour (a local hour can't hold two
            # UTC hours), so stepping through UTC visits each exactly once.
            instant = self.first
            while instant < self.after:
                keys[self.key(instant)] = None
                instant += timedelta(hours=1)
        elif self.by is not None:
            day = self.first.astimezone(self.tz).date()
            last = (self.after - timedelta(microseconds=1)).astimezone(self.tz).date()
            while day <= last:
                keys[day if self.by == "day" else (day.year, day.month)] = None
                day += timedelta(days=1)
        else:
            keys[None] = None
        return list(keys)

    def spans(
        self, extra: Iterable[Hashable] = ()
    ) -> list[tuple[Hashable, str, datetime, datetime]]:
        """``(key, label, local start, local end)`` of every bucket, in time order."""
        for key in extra:
            # Only an exotic zone (a half-hour DST shift) can give a key the
            # pre-computed list lacks; keep such a bucket rather than lose calls.
            if key not in self._spans:
                self._spans[key] = self._span(key)
                self._ordered = None
        if self._ordered is None:
            # Sort on UTC: aware datetimes sharing a tzinfo compare by wall
            # time, which would tie the two 02:00 hours of the autumn switch.
            self._ordered = sorted(
                ((k, *v) for k, v in self._spans.items()),
                key=lambda s: s[2].astimezone(UTC),
            )
        return self._ordered

    def _span(self, key: Hashable) -> tuple[str, datetime, datetime]:
        """Label, local start and local end (both clipped to the period)."""
        tz = self.tz
        if self.by == "day":
            assert isinstance(key, date)
            start = datetime.combine(key, time(0), tz)
            end = datetime.combine(key + timedelta(days=1), time(0), tz)
            label = key.isoformat()
        elif self.by == "month":
            assert isinstance(key, tuple)
            year, month = key
            start = datetime(year, month, 1, tzinfo=tz)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
            label = f"{year:04d}-{month:02d}"
        elif self.by == "hour":
            assert isinstance(key, tuple)
            day, hour, offset = key
            start = datetime.combine(day, time(hour), tz)
            if start.utcoffset() != offset:
                start = start.replace(fold=1)
            end = (start.astimezone(UTC) + timedelta(hours=1)).astimezone(tz)
            label = f"{day.isoformat()} {hour:02d}:00"
            if start.replace(fold=1 - start.fold).utcoffset() != start.utcoffset():
                label += f" {start.tzname()}"
        else:
            return TOTAL, self.first.astimezone(tz), self.after.astimezone(tz)
        start = max(start.astimezone(UTC), self.first).astimezone(tz)
        end = min(end.astimezone(UTC), self.after).astimezone(tz)
        return label, start, end


def build_report(
    rows: Iterable[CallRow],
    *,
    start: date,
    end: date,
    tz: ZoneInfo,
    by: Granularity | None,
    tenant: str | None,
    now: datetime,
    threshold_s: float = servicelevel.THRESHOLD_S,
    short_abandon_s: float = servicelevel.SHORT_ABANDON_S,
    tenants: Iterable[str] = (),
    holds: Iterable[VirtualHold] = (),
) -> Report:
    """Aggregate journal rows into a service-level report.

    Rows outside the period are ignored (those arriving before it still count
    for callback deadlines inside it), so any superset of the needed rows will
    do, each row once; see :func:`report_rows`.

    Args:
        rows: Journal rows.
        start: First local date of the period.
        end: Last local date (inclusive).
        tz: Local time zone (``rules.timezone``); buckets and dates are local.
        by: ``"hour"``, ``"day"``, ``"month"`` or ``None`` (totals only).
        tenant: Only this tenant, or ``None`` for all.
        now: Open callbacks due before this are overdue (aware).
        threshold_s: Service-level threshold in seconds (inclusive).
        short_abandon_s: Abandons after less than this are short abandons.
        tenants: Tenants to list even without calls (e.g. every tenant in the
            rules); ignored when ``tenant`` is given, which is always listed.
        holds: Virtual holds, counted in the ``virtual_hold_*`` figures of the
            bucket their call arrived in (those arriving outside the period
            are ignored). They do not change the call figures: pass the rows
            through :func:`~pbxbridge.journal.virtual_holds.answered_by_callback`
            for that.

    Returns:
        The report.

    Raises:
        ValueError: If the period is reversed, ``by`` unknown or ``now`` naive.
    """
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    if by is not None and by not in GRANULARITIES:
        raise ValueError(f"unknown granularity {by!r} (use {', '.join(GRANULARITIES)})")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    first, after = period_range(start, end, tz)
    buckets = _Buckets(by, tz, first, after)
    wanted = {tenant} if tenant is not None else set(tenants)
    accs: dict[str, dict[Hashable, _Acc]] = {t: {} for t in wanted}

    def acc_for(who: str, key: Hashable) -> _Acc:
        per = accs.get(who)
        if per is None:
            per = accs[who] = {}
        acc = per.get(key)
        if acc is None:
            acc = per[key] = _Acc()
        return acc

    for row in rows:
        who = row.tenant
        if tenant is not None and who != tenant:
            continue
        arrived = row.arrived_at
        if first <= arrived < after:
            _count_arrival(acc_for(who, buckets.key(arrived)), row, threshold_s, short_abandon_s)
        if row.disposition == "callback" and row.callback_due_at is not None:
            due = row.callback_due_at
            if first <= due < after:
                _count_deadline(acc_for(who, buckets.key(due)), row, due, now)
    for hold in holds:
        who = hold.tenant
        if (tenant is not None and who != tenant) or not first <= hold.arrived_at < after:
            continue
        _count_hold(acc_for(who, buckets.key(hold.arrived_at)), hold)

    parts: list[TenantReport] = []
    overall = _Acc()
    for who in sorted(accs):
        per = accs[who]
        total = _Acc()
        out: list[Bucket] = []
        for key, label, b_start, b_end in buckets.spans(per):
            acc = per.get(key) or _Acc()
            total.merge(acc)
            out.append(Bucket(label, b_start, b_end, acc.figures()))
        overall.merge(total)
        parts.append(TenantReport(who, tuple(out) if by is not None else (), total.figures()))
    return Report(
        start=start,
        end=end,
        tz=tz,
        by=by,
        threshold_s=threshold_s,
        short_abandon_s=short_abandon_s,
        now=now,
        tenants=tuple(parts),
        total=overall.figures(),
    )


def _count_arrival(acc: _Acc, row: CallRow, threshold_s: float, short_abandon_s: float) -> None:
    acc.calls += 1
    action = row.action
    if action == "reject" or row.outcome == Outcome.REJECTED:
        acc.rejected += 1
        return
    answered_at = row.answered_at
    if answered_at is not None and row.disposition is not None:
        # FCR counts every contact, after-hours queues included.
        if row.disposition == "resolved":
            acc.resolved += 1
        elif row.disposition == "callback":
            acc.callbacks_requested += 1
    queued_at = row.queued_at
    if action == "closed":
        acc.closed_hours += 1
        acc.via_115 += row.via_115
        return
    if queued_at is None:
        acc.not_queued += 1
        return
    acc.offered += 1
    acc.via_115 += row.via_115
    wait = row.wait_s
    if answered_at is not None:
        if wait is None:
            wait = max(0.0, (answered_at - queued_at).total_seconds())
        acc.answered += 1
        acc.waits.append(wait)
        if servicelevel.answered_within(wait, threshold_s):
            acc.answered_within += 1
        if row.talk_s is not None:
            acc.talk_sum += row.talk_s
            acc.talk_n += 1
    elif row.outcome == Outcome.ABANDONED:
        acc.abandoned += 1
        if wait is None and row.ended_at is not None:
            wait = (row.ended_at - queued_at).total_seconds()
        if servicelevel.short_abandon(wait, short_abandon_s):
            acc.short_abandoned += 1
    else:
        acc.other_offered += 1


def count_holds(holds: Iterable[VirtualHold]) -> Figures:
    """The ``virtual_hold_*`` figures of some holds, whatever their tenant or time.

    Args:
        holds: The holds.

    Returns:
        Figures with only the virtual-hold counts and times set.
    """
    acc = _Acc()
    for hold in holds:
        _count_hold(acc, hold)
    return acc.figures()


def _count_hold(acc: _Acc, hold: VirtualHold) -> None:
    acc.virtual_hold_offered += 1
    result = hold_outcome(hold)  # the live gauges classify with the same function
    if result.outcome is VHoldOutcome.NOT_ACCEPTED:
        return
    acc.virtual_hold_accepted += 1
    if result.outcome is VHoldOutcome.CONNECTED:
        acc.virtual_hold_connected += 1
        if result.to_connect_s is not None:
            acc.to_connect.append(result.to_connect_s)
    elif result.outcome is VHoldOutcome.FAILED:
        acc.virtual_hold_failed += 1
    elif result.outcome is VHoldOutcome.PENDING:
        acc.virtual_hold_pending += 1
    # ACCEPTED_ONLY (accepted, then cancelled): counted as accepted only.


def _count_deadline(acc: _Acc, row: CallRow, due: datetime, now: datetime) -> None:
    done = row.callback_done_at
    if done is None:
        acc.callbacks_due += 1
        if due < now:
            acc.callbacks_overdue += 1
    elif done <= due:
        acc.callbacks_on_time += 1
    else:
        acc.callbacks_late += 1
