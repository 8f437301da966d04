"""The journal side of the staffing forecast: the history's calls, summed per half hour.

The forecast (:mod:`pbxbridge.planning.forecast`) needs, per tenant and half
hour of the history, a handful of sums (:class:`HalfHour`), not the calls
themselves. A year-old service centre's eight weeks are a few hundred
thousand calls, and a million rows turned into
:class:`~pbxbridge.journal.store.CallRow` take most of a minute in Python;
the database sums them in about a second. So there are two ways to the same
sums, and one definition:

* :func:`fold_half_hours` folds rows as the reports read them (any iterable of
  ``CallRow``; for fakes and as the reference);
* :func:`half_hours` asks the SQLite or PostgreSQL journal to ``GROUP BY``
  with the same rules in SQL, and falls back to the fold over
  ``calls_between`` for any other row source.

The tests hold the two to the same result on both engines.

Definitions (those of :mod:`pbxbridge.journal.report` where they overlap): a
call is *offered* when it reached the service queue in opening hours
(``queued_at`` set, ``action`` not ``closed``/``reject``, ``outcome`` not
``rejected``), bucketed by the UTC half hour of its arrival (local half hours
begin on UTC half hours in every zone a whole or half hour off UTC). Of those:

``answered`` / ``talk_sum``
    Answered calls whose conversation has ended (``talk_s`` known), and their talk.
``wrapped`` / ``wrap_sum``
    Of those, the ones with a disposition, and their wrap-up: from the end of
    the call to the disposition, clamped to ``[0, MAX_WRAP_S]`` (a longer gap
    is a card left open, not work on the call).
``abandoned``
    Outcome ``abandoned`` (never answered).
``waited_sum``
    Seconds waited by every offered call, answered or not: ``wait_s``, or
    else until the answer, or else until the end. The patience estimator
    divides it by the abandons.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from pbxbridge.journal.entry import Outcome
from pbxbridge.journal.report import RowSource, period_range
from pbxbridge.journal.store import CallRow, _SqlJournal

SLOT_S: Final = 1800
"""A half hour, the bucket of the sums."""
MAX_WRAP_S: Final = 900.0
"""Wrap-up longer than this is clamped (the card was left open)."""


@dataclass(frozen=True, slots=True)
class HalfHour:
    """One tenant's offered calls of one half hour, summed (see the module docstring).

    Attributes:
        tenant: Tenant id.
        start: The half hour's start (aware, UTC).
        offered: Offered calls.
        answered: Answered calls with known talk time.
        talk_sum: Their talk, seconds.
        wrapped: Of those, the ones with a disposition.
        wrap_sum: Their wrap-up (clamped), seconds.
        abandoned: Abandoned calls.
        waited_sum: Seconds waited by all offered calls.
    """

    tenant: str
    start: datetime
    offered: int
    answered: int
    talk_sum: float
    wrapped: int
    wrap_sum: float
    abandoned: int
    waited_sum: float


def _offered(row: CallRow) -> bool:
    return (
        row.queued_at is not None
        and row.action not in ("closed", "reject")
        and row.outcome != Outcome.REJECTED
    )


def _wrap(row: CallRow) -> float | None:
    if row.disposition_at is None or row.ended_at is None:
        return None
    return min(MAX_WRAP_S, max(0.0, (row.disposition_at - row.ended_at).total_seconds()))


def fold_half_hours(rows: Iterable[CallRow]) -> list[HalfHour]:
    """Sum rows per tenant and half hour, in Python.

    Args:
        rows: Journal rows (any order; those not offered are skipped).

    Returns:
        One :class:`HalfHour` per tenant and half hour with offered calls,
        ordered by ``(start, tenant)``.
    """
    sums: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        if not _offered(row):
            continue
        queued = row.queued_at
        assert queued is not None
        key = (row.tenant, int(row.arrived_at.timestamp()) // SLOT_S)
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = [0, 0, 0.0, 0, 0.0, 0, 0.0]
        acc[0] += 1
        wait = row.wait_s
        if row.answered_at is not None:
            if wait is None:
                wait = max(0.0, (row.answered_at - queued).total_seconds())
            if row.talk_s is not None:
                acc[1] += 1
                acc[2] += row.talk_s
                wrap = _wrap(row)
                if wrap is not None:
                    acc[3] += 1
                    acc[4] += wrap
        else:
            if row.outcome == Outcome.ABANDONED:
                acc[5] += 1
            if wait is None and row.ended_at is not None:
                wait = max(0.0, (row.ended_at - queued).total_seconds())
        if wait is not None:
            acc[6] += wait
    return [
        _half_hour(tenant, bucket, *values)
        for (tenant, bucket), values in sorted(sums.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def _half_hour(tenant: str, bucket: int, *values: Any) -> HalfHour:
    offered, answered, talk, wrapped, wrap, abandoned, waited = values
    return HalfHour(
        tenant=tenant,
        start=datetime.fromtimestamp(int(bucket) * SLOT_S, UTC),
        offered=int(offered),
        answered=int(answered),
        talk_sum=float(talk or 0.0),
        wrapped=int(wrapped),
        wrap_sum=float(wrap or 0.0),
        abandoned=int(abandoned),
        waited_sum=float(waited or 0.0),
    )


# The same rules in SQL; {epoch(x)} is the engine's seconds since 1970 of a
# stored time, {clamp(x)} its x clamped to [0, MAX_WRAP_S].
_TALKED = "answered_at IS NOT NULL AND talk_s IS NOT NULL"
_WRAPPED = f"{_TALKED} AND disposition_at IS NOT NULL AND ended_at IS NOT NULL"
# Our column names and constants only; every value is a parameter.
_SUMS = (
    "SELECT tenant, {bucket} AS bucket, count(*),"  # noqa: S608
    f" sum(CASE WHEN {_TALKED} THEN 1 ELSE 0 END),"
    f" sum(CASE WHEN {_TALKED} THEN talk_s ELSE 0 END),"
    f" sum(CASE WHEN {_WRAPPED} THEN 1 ELSE 0 END),"
    f" sum(CASE WHEN {_WRAPPED} THEN {{wrap}} ELSE 0 END),"
    f" sum(CASE WHEN answered_at IS NULL AND outcome = '{Outcome.ABANDONED}' THEN 1 ELSE 0 END),"
    " sum(coalesce(wait_s, CASE WHEN answered_at IS NOT NULL THEN {since_queued_answer}"
    " WHEN ended_at IS NOT NULL THEN {since_queued_end} END))"
    " FROM calls WHERE arrived_at >= ? AND arrived_at < ?{tenant}"
    " AND queued_at IS NOT NULL AND action NOT IN ('closed', 'reject')"
    f" AND outcome <> '{Outcome.REJECTED}'"
    " GROUP BY tenant, bucket ORDER BY bucket, tenant"
)
_SQLITE = {
    # Times are REAL Unix seconds; SQLite's two-argument min/max are scalar.
    "bucket": f"CAST(arrived_at / {SLOT_S} AS INTEGER)",
    "wrap": f"min({MAX_WRAP_S}, max(0.0, disposition_at - ended_at))",
    "since_queued_answer": "max(0.0, answered_at - queued_at)",
    "since_queued_end": "max(0.0, ended_at - queued_at)",
}
_POSTGRES = {
    "bucket": f"floor(extract(epoch FROM arrived_at) / {SLOT_S})::bigint",
    "wrap": f"least({MAX_WRAP_S}, greatest(0.0, extract(epoch FROM disposition_at - ended_at)))",
    "since_queued_answer": "greatest(0.0, extract(epoch FROM answered_at - queued_at))",
    "since_queued_end": "greatest(0.0, extract(epoch FROM ended_at - queued_at))",
}


def half_hours(
    journal: RowSource, first: date, last: date, tz: ZoneInfo, tenant: str | None = None
) -> list[HalfHour]:
    """The history's sums per tenant and half hour, from the local dates ``[first, last]``.

    Summed by the database for the SQLite and PostgreSQL journals, else
    folded over ``calls_between``.

    Args:
        journal: The journal store (or any row source).
        first: First local date.
        last: Last local date (inclusive).
        tz: The rules' time zone.
        tenant: Only this tenant, or ``None`` for all.

    Returns:
        As :func:`fold_half_hours`.
    """
    start, after = period_range(first, last, tz)
    if isinstance(journal, _SqlJournal):
        # The dialect by how the store keeps times (this module imports no
        # store, so that the forecast stays free of storage): SQLite as REAL
        # Unix seconds, PostgreSQL as timestamptz.
        parts = _SQLITE if isinstance(journal._time(start), float) else _POSTGRES
        sql = _SUMS.format(**parts, tenant=" AND tenant = ?" if tenant is not None else "")
        params: list[Any] = [journal._time(start), journal._time(after)]
        if tenant is not None:
            params.append(tenant)
        raw = journal._read(journal._sql(sql), params)
        return [_half_hour(row[0], *row[1:]) for row in raw]
    return fold_half_hours(journal.calls_between(start, after, tenant))


def history_rows(
    journal: RowSource, first: date, last: date, tz: ZoneInfo, tenant: str | None = None
) -> Iterator[CallRow]:
    """The calls that arrived on the local dates ``[first, last]``, oldest first.

    Args:
        journal: The journal store.
        first: First local date.
        last: Last local date (inclusive).
        tz: The rules' time zone.
        tenant: Only this tenant, or ``None`` for all.

    Returns:
        The rows, lazily (page by page from the store).
    """
    start, after = period_range(first, last, tz)
    yield from journal.calls_between(start, after, tenant)


def handle_times(rows: Iterable[CallRow], *, limit: int = 5000) -> dict[str, list[float]]:
    """Observed handle times (talk plus wrap-up) per tenant, the latest ``limit`` of each.

    For the simulation check: answered offered calls with known talk; a call
    without a disposition gets the tenant's mean wrap-up.

    Args:
        rows: Journal rows, oldest first.
        limit: Most handle times kept per tenant (the latest).

    Returns:
        Tenant to handle times in seconds.
    """
    talks: dict[str, list[tuple[float, float | None]]] = {}
    wraps: dict[str, list[float]] = {}
    for row in rows:
        if not _offered(row) or row.answered_at is None or row.talk_s is None:
            continue
        wrap = _wrap(row)
        talks.setdefault(row.tenant, []).append((row.talk_s, wrap))
        if wrap is not None:
            wraps.setdefault(row.tenant, []).append(wrap)
    out: dict[str, list[float]] = {}
    for tenant, pairs in talks.items():
        known = wraps.get(tenant, [])
        mean_wrap = sum(known) / len(known) if known else 0.0
        out[tenant] = [t + (mean_wrap if w is None else w) for t, w in pairs[-limit:]]
    return out
