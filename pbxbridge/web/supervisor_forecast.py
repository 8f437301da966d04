"""The staffing forecast on the supervisor page: expected arrivals today, agents needed now.

``pbxbridge forecast``'s computation (:func:`pbxbridge.planning.forecast.build_forecast`
over the journal, the same history weeks and target) for the current ISO week,
rebuilt in a worker thread once an hour and when the week changes, never per
request. It feeds two hooks of :class:`~pbxbridge.web.supervisor_live.SupervisorHub`:
the arrivals chart's forecast line and "agents needed" for the current half hour
(the shared queue's, as agents are shared; with a single tenant, that tenant's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Final

import structlog

from pbxbridge.core.rules import Rules
from pbxbridge.journal.forecast import half_hours
from pbxbridge.planning.forecast import SHARED, SLOTS, Forecast, build_forecast, history_period
from pbxbridge.tracking.call_board import ALL
from pbxbridge.web.desk import JournalLink
from pbxbridge.web.supervisor_live import SupervisorConfig

log = structlog.get_logger(__name__)

HISTORY_WEEKS: Final = 8
"""History of the forecast (``pbxbridge forecast``'s default)."""
REFRESH_S: Final = 3600.0


class ForecastProvider:
    """Holds this week's forecast and answers the supervisor page's two questions.

    Args:
        rules: The routing rules in force (tenants, calendars, time zone).
        journal: The journal link (``None``: no forecast).
        config: The page's target and threshold (the forecast staffs for the same).
        clock: "now" (aware).
    """

    def __init__(
        self,
        rules: Callable[[], Rules],
        journal: Callable[[], JournalLink | None],
        config: SupervisorConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._rules = rules
        self._journal = journal
        self.config = config
        self.clock = clock
        self.forecast: Forecast | None = None
        # (tenant, day, half hour) -> (calls, agents): a page render looks up 49 of them.
        self._slots: dict[tuple[str, date, int], tuple[float, int]] = {}
        self.error: str | None = None

    def _shared(self) -> str:
        tenants = list(self._rules().tenants)
        return tenants[0] if len(tenants) == 1 else SHARED

    def build(self, now: datetime) -> Forecast | None:
        """Build the forecast of ``now``'s ISO week (blocking: reads the journal).

        Args:
            now: The current instant.

        Returns:
            The forecast, or ``None`` without a journal.
        """
        link = self._journal()
        if link is None:
            return None
        rules = self._rules()
        today = now.astimezone(rules.timezone).date()
        year, week, _ = today.isocalendar()
        first, last = history_period(year, week, HISTORY_WEEKS, today)
        store = link.open()
        try:
            return build_forecast(
                half_hours(store, first, last, rules.timezone),
                year=year,
                week=week,
                weeks=HISTORY_WEEKS,
                tz=rules.timezone,
                calendars={t: spec.calendar for t, spec in rules.tenants.items()},
                target_level=min(self.config.target_percent / 100, 0.999),
                threshold_s=self.config.threshold_s,
                today=today,
            )
        finally:
            store.close()

    async def refresh(self) -> None:
        """Rebuild in a worker thread; a failure keeps the last forecast (logged)."""
        try:
            fc = await asyncio.to_thread(self.build, self.clock())
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("supervisor.forecast_failed", error=self.error)
            return
        self.forecast = fc
        self._slots = (
            {(s.tenant, s.day, s.index): (s.calls, s.agents) for s in fc.slots} if fc else {}
        )
        self.error = None

    async def run(self, interval: float = REFRESH_S) -> None:
        """Refresh now and every ``interval`` seconds (until cancelled)."""
        while True:
            await self.refresh()
            await asyncio.sleep(interval)

    def arrivals(self, day: date) -> Mapping[str, list[float]]:
        """Expected arrivals per half hour of a local date (:data:`ALL`: the shared queue).

        Args:
            day: A local date of the forecast week.

        Returns:
            ``{"": [48 values]}``, or ``{}`` when the day is not forecast or
            nothing is expected all day (no history).
        """
        shared = self._shared()
        if (shared, day, 0) not in self._slots:
            return {}
        expected = [self._slots[(shared, day, i)][0] for i in range(SLOTS)]
        # No history behind it (a new installation): a flat zero would read as
        # "no calls expected"; show no forecast instead.
        return {ALL: expected} if any(expected) else {}

    def needed(self, now: datetime) -> int | None:
        """Agents needed for the shared queue in the half hour of ``now``.

        Args:
            now: An instant.

        Returns:
            The forecast's agents, or ``None`` without a forecast for that day.
        """
        local = now.astimezone(self._rules().timezone)
        if not self.arrivals(local.date()):
            return None  # no history for the day: "0 needed" would mislead
        index = (local.hour * 60 + local.minute) // 30
        hit = self._slots.get((self._shared(), local.date(), index))
        return hit[1] if hit is not None else None


__all__ = ["ForecastProvider"]
