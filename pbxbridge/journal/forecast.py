"""The journal query of the staffing forecast: the history weeks' calls.

The forecast (:mod:`pbxbridge.planning.forecast`) reads the same rows as the
reports, through the same store method (``calls_between``, paged by arrival),
as the same :class:`~pbxbridge.journal.store.CallRow`; only the period differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from zoneinfo import ZoneInfo

from pbxbridge.journal.report import RowSource, period_range
from pbxbridge.journal.store import CallRow


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
