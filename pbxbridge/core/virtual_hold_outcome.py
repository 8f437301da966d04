"""How a virtual hold stands for the figures: one classification (pure).

The live gauges (:mod:`pbxbridge.tracking.virtual_holds`, "today") and the
report (:mod:`pbxbridge.journal.report`, a month) count the same holds the
same way: accepted or not, and of the accepted ones connected, turned into a
callback ticket, still pending, or none of these (cancelled after the
acceptance: counted as accepted only). :func:`hold_outcome` decides it once.

Only an acceptance leads to the pending states, a ticket or a connection
(:mod:`pbxbridge.core.virtual_hold`'s transitions), so a hold without
``accepted_at`` is never more than offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pbxbridge.core.virtual_hold import PENDING, VHoldState, VirtualHold


class VHoldOutcome(StrEnum):
    """Where a hold stands, as the figures count it."""

    NOT_ACCEPTED = "not_accepted"
    """Offered (declined, entry failed, caller hung up, or not answered yet)."""
    PENDING = "pending"
    """Accepted and owed a callback now (placeholder waiting, calling, retry)."""
    CONNECTED = "connected"
    """The citizen was called back and connected with an agent."""
    FAILED = "failed"
    """A callback ticket: tries used up, or the tenant closed first."""
    ACCEPTED_ONLY = "accepted_only"
    """Accepted, then cancelled: nothing to count but the acceptance."""


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    """A hold's outcome with the instants the figures are dated by.

    Attributes:
        outcome: Where it stands.
        accepted_at: When the caller accepted; ``None``: not accepted.
        settled_at: When it connected (``CONNECTED``) or became a ticket
            (``FAILED``); ``None`` otherwise.
    """

    outcome: VHoldOutcome
    accepted_at: datetime | None = None
    settled_at: datetime | None = None

    @property
    def to_connect_s(self) -> float | None:
        """Seconds from the acceptance to the connection; ``None`` unless connected."""
        if self.outcome is not VHoldOutcome.CONNECTED:
            return None
        if self.accepted_at is None or self.settled_at is None:
            return None
        return (self.settled_at - self.accepted_at).total_seconds()


def hold_outcome(hold: VirtualHold) -> HoldOutcome:
    """Classify a hold for the gauges and the report.

    Args:
        hold: The hold as saved.

    Returns:
        ``NOT_ACCEPTED`` without an acceptance; else ``CONNECTED`` (in that
        state with its time, dated by it), ``FAILED`` (a ticket, dated by its
        last step), ``PENDING``, or ``ACCEPTED_ONLY``.
    """
    accepted = hold.accepted_at
    if accepted is None:
        return HoldOutcome(VHoldOutcome.NOT_ACCEPTED)
    if hold.state is VHoldState.CONNECTED and hold.connected_at is not None:
        return HoldOutcome(VHoldOutcome.CONNECTED, accepted, hold.connected_at)
    if hold.state is VHoldState.TICKET:
        # A ticket never changes again: its last step is when it became one.
        return HoldOutcome(VHoldOutcome.FAILED, accepted, hold.updated_at)
    if hold.state in PENDING:
        return HoldOutcome(VHoldOutcome.PENDING, accepted)
    return HoldOutcome(VHoldOutcome.ACCEPTED_ONLY, accepted)
