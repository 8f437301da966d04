"""The supervisor page's face: its background jobs, ``/healthz`` key and gauges."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from pbxbridge.components.base import DISABLED, Part, Sample
from pbxbridge.web.desk import JournalLink
from pbxbridge.web.supervisor import SupervisorPage
from pbxbridge.web.supervisor_forecast import ForecastProvider


class Supervisor(Part):
    """The supervisor page, its live board and its forecast.

    Starts before AMI and ARI: today's figures are first counted from the
    journal up to the start (:meth:`~pbxbridge.web.supervisor_live.SupervisorHub.seed`),
    every later call live, so none is counted twice.

    Args:
        page: The page, ``None`` when it is off (no agent page, or no HTTP).
        forecast: The staffing forecast, ``None`` without a journal.
        journal: The journal the day's figures are counted from after a restart.
    """

    def __init__(
        self,
        page: SupervisorPage | None,
        *,
        forecast: ForecastProvider | None = None,
        journal: JournalLink | None = None,
    ) -> None:
        super().__init__()
        self._page = page
        self._forecast = forecast
        self._journal = journal

    async def start(self) -> None:
        """Spawn the periodic re-render, the forecast and the count of today so far."""
        if self._page is None:
            return
        hub = self._page.hub
        self._spawn(hub.run(), "supervisor-refresh")
        if self._journal is not None:
            self._spawn(hub.seed(self._journal, before=datetime.now(UTC)), "supervisor-seed")
        if self._forecast is not None:
            self._spawn(self._forecast.run(), "supervisor-forecast")

    async def stop(self) -> None:
        """End the jobs and the open boards' event streams."""
        await self._cancel()
        if self._page is not None:
            self._page.hub.close()

    def health(self) -> Mapping[str, object]:
        """``supervisor``: open boards, pushes, refusals, wallboard on/off, forecast state."""
        if self._page is None:
            return {"supervisor": DISABLED}
        body = dict(self._page.health())
        if self._forecast is not None:
            body["forecast"] = (
                "error"
                if self._forecast.error
                else ("ready" if self._forecast.forecast is not None else "none")
            )
            body["forecast_error"] = self._forecast.error
        return {"supervisor": body}

    def gauges(self) -> Iterator[Sample]:
        """Open supervisor boards and wallboards."""
        if self._page is not None:
            yield "pbxbridge_supervisor_viewers", {}, float(len(self._page.hub.viewers))


__all__ = ["Supervisor"]
