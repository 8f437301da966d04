"""Live virtual-hold figures for ``/metrics``: waiting now, accepted, connected, failed today.

Its face on ``/metrics`` is :class:`pbxbridge.components.VirtualHolds`.
The daemon's virtual-hold orchestration saves every step of a hold to the
store and then shows the hold to :meth:`VirtualHoldBoard.observe`; after a
restart it shows the holds it re-adopts (and today's finished ones, if it
wants today's counts back) the same way. Nothing here reads a database at
scrape time: a dead database never delays a scrape.

Gauges, per tenant:

``pbxbridge_virtual_holds_waiting``
    Holds the daemon owes a callback now (accepted, waiting, calling, retry).
``pbxbridge_virtual_holds_accepted`` / ``_connected`` / ``_failed``
    Holds accepted, connected, or turned into a callback ticket during the
    current local day (the day of that step, in the rules' time zone), the
    window the live service level uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from pbxbridge.core.virtual_hold import VirtualHold
from pbxbridge.core.virtual_hold_outcome import VHoldOutcome, hold_outcome

Sample = tuple[str, dict[str, str], float]
"""``(family, labels, value)`` as the components' gauges yield them."""

HELP: Final = {
    "pbxbridge_virtual_holds_waiting": (
        "Virtual holds owed a callback now (accepted, placeholder waiting, calling, retry)."
    ),
    "pbxbridge_virtual_holds_accepted": "Virtual holds accepted today (local day).",
    "pbxbridge_virtual_holds_connected": (
        "Virtual holds whose citizen was called back and connected today (local day)."
    ),
    "pbxbridge_virtual_holds_failed": (
        "Virtual holds that became a callback ticket today (local day): tries used up or closed."
    ),
}
"""Help text of every gauge family :meth:`VirtualHoldBoard.gauges` yields."""

_KINDS: Final = ("accepted", VHoldOutcome.CONNECTED.value, VHoldOutcome.FAILED.value)


class VirtualHoldBoard:
    """What ``/metrics`` shows of virtual holds, fed by the holds' steps.

    Args:
        tz: The rules' time zone ("today").
        tenants: Tenants listed with zeros even before their first hold.
        clock: Now (aware); tests inject one.
    """

    def __init__(
        self,
        tz: ZoneInfo,
        tenants: Iterable[str] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.tz = tz
        self._clock = clock
        self._tenants = set(tenants)
        self._pending: dict[tuple[str, str], str] = {}
        # (kind, key) -> (local day, tenant): each hold counted once per kind.
        self._counted: dict[tuple[str, tuple[str, str]], tuple[date, str]] = {}

    def set_tenants(self, tenants: Iterable[str]) -> None:
        """The tenants of the rules in force (after a reload)."""
        self._tenants = set(tenants)

    def observe(self, hold: VirtualHold) -> None:
        """Take a hold's current state (call after each saved step; idempotent).

        Args:
            hold: The hold as saved.
        """
        key = (hold.node, hold.call_id)
        result = hold_outcome(hold)  # the report classifies with the same function
        if result.outcome is VHoldOutcome.PENDING:
            self._pending[key] = hold.tenant
        else:
            self._pending.pop(key, None)
        if result.accepted_at is not None:
            self._count("accepted", key, result.accepted_at, hold.tenant)
        if result.settled_at is not None:  # connected or failed, on that day
            self._count(result.outcome.value, key, result.settled_at, hold.tenant)

    def _count(self, kind: str, key: tuple[str, str], at: datetime, tenant: str) -> None:
        self._counted.setdefault((kind, key), (at.astimezone(self.tz).date(), tenant))

    def gauges(self) -> Iterator[Sample]:
        """The four families, one sample per tenant (zeros included)."""
        today = self._clock().astimezone(self.tz).date()
        # Forget earlier days, so the table stays one day's worth.
        self._counted = {k: v for k, v in self._counted.items() if v[0] >= today}
        tenants = self._tenants | set(self._pending.values())
        tenants |= {tenant for _, tenant in self._counted.values()}
        waiting = dict.fromkeys(tenants, 0)
        for tenant in self._pending.values():
            waiting[tenant] += 1
        counts = {kind: dict.fromkeys(tenants, 0) for kind in _KINDS}
        for (kind, _), (day, tenant) in self._counted.items():
            if day == today:
                counts[kind][tenant] += 1
        for tenant in sorted(tenants):
            yield "pbxbridge_virtual_holds_waiting", {"tenant": tenant}, float(waiting[tenant])
        for kind in _KINDS:
            for tenant in sorted(tenants):
                family = f"pbxbridge_virtual_holds_{kind}"
                yield family, {"tenant": tenant}, float(counts[kind][tenant])
