"""The face of the virtual holds: their gauges on ``/metrics`` (nothing to start or stop).

The board (:class:`~pbxbridge.tracking.virtual_holds.VirtualHoldBoard`) is fed
by the virtual-hold orchestration after every saved step; this face only reads
it at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from pbxbridge.components.base import Part, Sample
from pbxbridge.tracking.virtual_holds import VirtualHoldBoard


class VirtualHolds(Part):
    """Virtual holds per tenant: waiting now, accepted, connected and failed today.

    Args:
        board: The board, ``None`` when virtual hold is not built (no gauges).
    """

    def __init__(self, board: VirtualHoldBoard | None) -> None:
        super().__init__()
        self._board = board

    def gauges(self) -> Iterator[Sample]:
        """``pbxbridge_virtual_holds_{waiting,accepted,connected,failed}{tenant}``."""
        if self._board is not None:
            yield from self._board.gauges()
