"""The face of virtual hold's Asterisk side: its ARI application and its reconciliation.

The gauges of the holds are :class:`~pbxbridge.components.virtual_holds.VirtualHolds`;
this face starts and stops what carries the calls
(:class:`~pbxbridge.adapters.ari.virtual_hold.VirtualHoldService`): the event
socket of the ``pbxbridge-vhold`` Stasis application and the loop that reads
the placeholders' outcomes from AstDB. AMI events and logins reach the service
through the AMI face's handlers (see :func:`pbxbridge.app.faces`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pbxbridge.adapters.ari.client import AriClient
from pbxbridge.adapters.ari.virtual_hold import VirtualHoldService
from pbxbridge.components.base import DISABLED, Part


class VirtualHoldCalls(Part):
    """Virtual hold on Asterisk: offer, number entry, placeholders, retries, tickets.

    Args:
        client: The ARI client of the ``pbxbridge-vhold`` application (``None``: off).
        service: The service its events go to (``None``: off).
    """

    def __init__(self, client: AriClient | None, service: VirtualHoldService | None) -> None:
        super().__init__()
        self._client = client
        self._service = service

    async def start(self) -> None:
        """Connect the application (reconnecting forever) and start the reconciliation."""
        client, service = self._client, self._service
        if client is None or service is None:
            return
        self._spawn(client.run(service.handle, on_connected=service.resync), "vhold-ari")
        self._spawn(service.run(), "vhold-reconcile")

    async def stop(self) -> None:
        """Close the socket (callers in the number entry go back to their place), stop the loop."""
        if self._client is not None:
            await self._client.close(grace=1.0)
        await self._cancel()
        if self._service is not None:
            self._service.close()

    def health(self) -> Mapping[str, object]:
        """``virtual_hold``: running or disabled, the socket's state and the counters."""
        client, service = self._client, self._service
        if client is None or service is None:
            return {"virtual_hold": DISABLED}
        stats = service.stats
        return {
            "virtual_hold": {
                "state": "running",
                "ari": client.status.state.value,
                "pending": stats.pending,
                "offers": stats.offers,
                "accepted": stats.accepted,
                "placeholders": stats.placeholders,
                "connected": stats.connected,
                "retries": stats.retries,
                "tickets": stats.tickets,
                "lost": stats.lost,
                "errors": stats.errors,
            }
        }

    def problems(self) -> list[str]:
        """The socket down while the application is on."""
        client = self._client
        if client is None or self._service is None or client.connected:
            return []
        return ["virtual_hold: ARI application pbxbridge-vhold not connected"]
