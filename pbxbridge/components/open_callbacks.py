"""The face of the open-callback look-up: closed at stop (nothing to start, nothing to report).

:class:`~pbxbridge.journal.open_callbacks.OpenCallbacks` answers the screen
pop's "offener Rückruf vom Di 09:14" from the journal's callbacks list and the
virtual-hold store, in worker threads; stopping cancels its look-ups and
closes its own connections to both.
"""

from __future__ import annotations

from pbxbridge.components.base import Part
from pbxbridge.journal.open_callbacks import OpenCallbacks


class OpenCallbackNotes(Part):
    """Open callbacks of repeat callers, for the screen pops.

    Args:
        lookup: The look-up, ``None`` without a journal (no notes).
    """

    def __init__(self, lookup: OpenCallbacks | None) -> None:
        super().__init__()
        self._lookup = lookup

    async def stop(self) -> None:
        """Cancel pending look-ups and close the stores."""
        if self._lookup is not None:
            self._lookup.close()
