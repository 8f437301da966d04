"""Virtual holds in the journal: the report's figures, the service level, tickets, repeat callers.

A virtual hold's own journal is its record in the virtual-hold store
(:mod:`pbxbridge.storage.virtual_holds`): offer, acceptance, number,
placeholder answered, every try and its outcome, each with its time
(:attr:`~pbxbridge.core.virtual_hold.VirtualHold.events`). The call it came
from keeps its row in the call journal. This module ties the two together.

**Service level of a call answered by callback** (the definition the report
and the docs use): the call counts as *answered*, and its wait runs, like any
call's, from joining the queue (``queued_at``) to the moment the citizen is
connected with an agent (the hold's ``connected_at``), however long the
caller was off the line in between. "Answered within 20 s" is judged on that
wait. A hold that did not connect (a ticket, cancelled, still pending) leaves
its call not answered; such a call counts as ``other_offered``, not as
abandoned: the caller hung up because we promised to call, not because they
gave up. Measuring to the acceptance instead would make long queues look
better the more callers take the offer; measuring to the connection keeps the
promise "within 20 s" about when a citizen actually talks to someone.

**Virtual-hold figures** (``pbxbridge report``, shown apart, per tenant, by the
original call's arrival):

``offered``
    Holds offered at least once (one per call, however often offered).
``accepted``
    The caller accepted and gave a number.
``connected``
    The citizen was called back and answered.
``failed``
    Became a callback ticket (tries used up, or the tenant closed first).
``pending``
    Accepted, still owed (waiting, calling, retry).
``mean_to_connect_s`` / ``p90_to_connect_s``
    Time from the acceptance (the request) to the connection, of connected
    holds; the 90th percentile by nearest rank, as the report's waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Final

from pbxbridge.core.virtual_hold import PENDING, VHoldState, VirtualHold
from pbxbridge.journal.entry import Outcome
from pbxbridge.journal.report import Figures, count_holds
from pbxbridge.journal.store import CallRow, JournalStore

TICKET_BY: Final = "virtual-hold"
"""``disposition_by`` of the callback tickets virtual holds become."""


def answered_by_callback(
    rows: Iterable[CallRow], holds: Mapping[tuple[str, str], VirtualHold]
) -> Iterator[CallRow]:
    """The journal rows with calls answered by callback counted as answered.

    See the module docstring for the definition. Rows without an accepted hold
    pass unchanged.

    Args:
        rows: Journal rows (as :func:`~pbxbridge.journal.report.report_rows` gives them).
        holds: Holds by ``(node, call_id)`` of their call.

    Yields:
        The rows, a connected hold's call with ``answered_at`` the connection,
        ``wait_s`` from joining the queue to it and ``agent`` the one who called;
        an accepted, unconnected hold's abandoned call as ``unanswered``.
    """
    for row in rows:
        hold = holds.get((row.node, row.call_id))
        if hold is None or hold.accepted_at is None or row.answered_at is not None:
            yield row
            continue
        connected = hold.connected_at
        if connected is not None:
            start = row.queued_at or row.arrived_at
            yield replace(
                row,
                answered_at=connected,
                wait_s=max(0.0, (connected - start).total_seconds()),
                outcome=Outcome.ANSWERED,
                agent=hold.agent or row.agent,
            )
        elif row.outcome == Outcome.ABANDONED:
            yield replace(row, outcome=Outcome.UNANSWERED)
        else:
            yield row


@dataclass(frozen=True, slots=True)
class VirtualHoldFigures:
    """The virtual-hold figures of one tenant (or all); see the module docstring."""

    offered: int = 0
    accepted: int = 0
    connected: int = 0
    failed: int = 0
    pending: int = 0
    mean_to_connect_s: float | None = None
    p90_to_connect_s: float | None = None

    def as_dict(self) -> dict[str, int | float | None]:
        """JSON-ready."""
        return asdict(self)

    @classmethod
    def of(cls, fig: Figures) -> VirtualHoldFigures:
        """The ``virtual_hold_*`` figures of a report's :class:`Figures`."""
        return cls(
            fig.virtual_hold_offered,
            fig.virtual_hold_accepted,
            fig.virtual_hold_connected,
            fig.virtual_hold_failed,
            fig.virtual_hold_pending,
            mean_to_connect_s=fig.virtual_hold_mean_to_connect_s,
            p90_to_connect_s=fig.virtual_hold_p90_to_connect_s,
        )


def virtual_hold_figures(
    holds: Iterable[VirtualHold], tenants: Iterable[str] = ()
) -> tuple[dict[str, VirtualHoldFigures], VirtualHoldFigures]:
    """Count holds per tenant.

    Args:
        holds: The holds of the period (by arrival of their call).
        tenants: Tenants to list even without holds.

    Returns:
        ``(per tenant, total)``, tenants sorted.
    """
    # Counted by the report's own rules (journal/report.py), so that this
    # block and the report's virtual_hold_* columns cannot disagree.
    groups: dict[str, list[VirtualHold]] = {t: [] for t in tenants}
    for hold in holds:
        groups.setdefault(hold.tenant, []).append(hold)
    per = {who: VirtualHoldFigures.of(count_holds(groups[who])) for who in sorted(groups)}
    everyone = (hold for group in groups.values() for hold in group)
    return per, VirtualHoldFigures.of(count_holds(everyone))


_HEAD: Final = ("tenant", "offered", "accepted", "connected", "failed", "pending", "⌀ s", "p90 s")


def format_table(per: Mapping[str, VirtualHoldFigures], total: VirtualHoldFigures) -> str:
    """The virtual-hold section of ``pbxbridge report`` (plain text).

    Args:
        per: Figures per tenant.
        total: All tenants.

    Returns:
        A heading and one line per tenant plus the total; ``⌀``/``p90`` are the
        seconds from request to connection.
    """

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    lines = [(who, f) for who, f in per.items()] + [("total", total)]
    cells = [_HEAD] + [
        (
            who,
            str(f.offered),
            str(f.accepted),
            str(f.connected),
            str(f.failed),
            str(f.pending),
            secs(f.mean_to_connect_s),
            secs(f.p90_to_connect_s),
        )
        for who, f in lines
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_HEAD))]
    out = ["Virtual hold (callback instead of waiting; request to connection in s):"]
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = "  ".join(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))
        out.append(f"  {first}  {rest}")
    return "\n".join(out) + "\n"


def as_json(per: Mapping[str, VirtualHoldFigures], total: VirtualHoldFigures) -> dict[str, object]:
    """The figures as one JSON-ready object (``{"tenants": {...}, "total": {...}}``)."""
    return {"tenants": {who: f.as_dict() for who, f in per.items()}, "total": total.as_dict()}


def record_ticket(journal: JournalStore, hold: VirtualHold, *, at: datetime) -> bool:
    """Put a hold that became a ticket on the agent page's callback list.

    The original call gets the disposition ``callback`` with the hold's
    number and deadline, recorded by :data:`TICKET_BY`: the existing callbacks
    list, with its due times and reports.

    Args:
        journal: The call journal.
        hold: A hold in ``TICKET`` state.
        at: When it became one (aware).

    Returns:
        Whether the call was in the journal (``False``: not written yet; retry).

    Raises:
        ValueError: If the hold is not a ticket.
    """
    if hold.state is not VHoldState.TICKET or hold.ticket_due_at is None:
        raise ValueError("only a hold that became a ticket goes on the callback list")
    tries = hold.tries_failed
    note = (
        f"Rückruf statt Warten: {tries} Versuch(e) ohne Erfolg"
        if tries
        else "Rückruf statt Warten: vor Dienstschluss nicht erreicht"
    )
    return journal.set_disposition(
        hold.node,
        hold.call_id,
        "callback",
        TICKET_BY,
        note,
        hold.number,
        hold.ticket_due_at,
        at,
    )


def open_callback_since(
    number: str, *, holds: Iterable[VirtualHold], callbacks: Iterable[CallRow]
) -> datetime | None:
    """When a caller's oldest open callback was asked for (repeat callers).

    Args:
        number: The caller's E.164 number.
        holds: Pending holds of that number (``VirtualHoldStore.for_number``).
        callbacks: Open callbacks (``JournalStore.open_callbacks``); those whose
            callback number or caller is ``number`` count.

    Returns:
        The earliest acceptance or callback request, ``None`` when nothing is open.
    """
    if not number:
        return None
    times = [h.accepted_at for h in holds if h.accepted_at is not None and h.state in PENDING]
    for row in callbacks:
        if row.callback_done_at is None and number in (row.callback_number, row.caller):
            times.append(row.disposition_at or row.arrived_at)
    return min(times, default=None)
