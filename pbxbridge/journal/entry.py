"""One journal row per call, built from the lifecycle record (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from pbxbridge.core.lifecycle import CallRecord, State
from pbxbridge.core.models import Action


class Outcome:
    """Values of :attr:`JournalEntry.outcome`."""

    IN_PROGRESS = "in_progress"
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    CLOSED = "closed"
    REJECTED = "rejected"
    UNANSWERED = "unanswered"
    """Ended without reaching a queue (e.g. hung up during the 115 menu)."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A call as the journal stores it (one row, updated as the call goes on).

    Times are timezone-aware UTC instants. ``caller`` is personal data: it is
    removed after the retention period (``pbxbridge purge``), everything else
    stays for the aggregates.

    Attributes:
        node: Which pbxbridge/Asterisk node handled the call (several may share
            one database); with ``call_id`` the primary key.
        call_id: The caller channel's unique id.
        tenant: Tenant id (``""`` for rejected calls without tenant).
        did: Dialled number (E.164 where possible).
        caller: Caller in E.164, or ``None`` (withheld, or purged).
        via_115: Arrived on a 115 number.
        action: The routing action (queue, closed, reject).
        reasons: The decision's trace.
        arrived_at: When the call was routed.
        queued_at: When it joined the queue.
        answered_at: When an agent answered.
        ended_at: When it ended.
        outcome: See :class:`Outcome`.
        agent: The agent who answered (or was last rung).
        queue: The queue it joined.
        wait_s: Seconds waited in the queue (until answer or abandon).
        talk_s: Seconds of conversation.
        rings: Ring attempts: ``[{"agent", "started", "ended", "outcome"}]``.
        menu_digit: The 115 menu digit pressed (``""``: the menu timed out),
            ``None`` when no menu was played. Not personal data: it stays after
            the purge, so ``pbxbridge replay`` can route such calls again.
            Keyword-only, so that the subclass's columns may follow without
            defaults.
    """

    node: str
    call_id: str
    tenant: str
    did: str
    caller: str | None
    via_115: bool
    action: str
    reasons: tuple[str, ...]
    arrived_at: datetime
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    outcome: str
    agent: str
    queue: str
    wait_s: float | None
    talk_s: float | None
    rings: tuple[dict[str, str | None], ...]
    menu_digit: str | None = field(default=None, kw_only=True)

    def rings_json(self) -> str:
        """The ring attempts as JSON text (for storage)."""
        return json.dumps(list(self.rings), separators=(",", ":"))

    def reasons_json(self) -> str:
        """The reasons as JSON text (for storage)."""
        return json.dumps(list(self.reasons), ensure_ascii=False, separators=(",", ":"))


def _outcome(record: CallRecord) -> str:
    action = record.decision.action
    if action is Action.REJECT:
        return Outcome.REJECTED
    if record.state is State.ABANDONED:
        return Outcome.ABANDONED
    if record.answered_at is not None:
        return Outcome.ANSWERED
    if action is Action.CLOSED and record.queued_at is None:
        return Outcome.CLOSED
    if record.state is State.ENDED:
        return Outcome.UNANSWERED
    return Outcome.IN_PROGRESS


def entry_from_record(record: CallRecord, node: str) -> JournalEntry:
    """The journal row for a lifecycle record.

    Args:
        record: The call's lifecycle record.
        node: This node's name.

    Returns:
        The row.
    """
    d = record.decision
    wait = record.hold_s
    if wait is None and record.queued_at is not None:
        end = record.answered_at or record.ended_at
        if end is not None:
            wait = max(0.0, (end - record.queued_at).total_seconds())
    return JournalEntry(
        node=node,
        call_id=record.call_id,
        tenant=d.tenant or "",
        did=d.did,
        caller=d.caller,
        via_115=d.via_115,
        action=d.action.value,
        reasons=d.reasons,
        arrived_at=record.routed_at,
        queued_at=record.queued_at,
        answered_at=record.answered_at,
        ended_at=record.ended_at,
        outcome=_outcome(record),
        agent=record.agent
        or next((r.agent for r in reversed(record.rings) if r.outcome == "answered"), ""),
        queue=record.queue,
        wait_s=wait,
        talk_s=record.talk_s,
        rings=tuple(
            {
                "agent": r.agent,
                "started": r.started.isoformat(),
                "ended": r.ended.isoformat() if r.ended else None,
                "outcome": r.outcome or None,
            }
            for r in record.rings
        ),
        menu_digit=d.menu_digit,
    )
