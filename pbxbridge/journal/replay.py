"""Replay the journal: the calls of a period, routed by two rule sets (synchronous).

The reading half of ``pbxbridge replay`` and of the daemon's reload summary:
the calls come from :meth:`~pbxbridge.journal.store.JournalStore.calls_between`
(the reports' read path, page by page, so a year of calls never sits in
memory at once), the overrides from the override store's history, and the
comparison is :mod:`pbxbridge.core.replay`'s. Call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from pbxbridge.core.replay import OverrideTimeline, Replayer, ReplayReport
from pbxbridge.core.rules import Rules
from pbxbridge.journal.store import JournalStore
from pbxbridge.storage.overrides import OverrideStore

OVERRIDE_HISTORY_LIMIT: Final = 1_000_000
"""Overrides read for the timeline: all of them in practice (a few a week)."""


def override_timeline(store: OverrideStore | None) -> OverrideTimeline:
    """Every override ever set, with when it was cleared (``None``: no store).

    Args:
        store: The override store the daemon reads.

    Returns:
        The timeline the replay looks overrides up in.
    """
    if store is None:
        return OverrideTimeline()
    return OverrideTimeline(
        (override, cleared_at) for override, cleared_at, _ in store.history(OVERRIDE_HISTORY_LIMIT)
    )


def replay_journal(
    journal: JournalStore,
    before: Rules,
    after: Rules,
    start: datetime,
    end: datetime,
    *,
    overrides: OverrideTimeline | None = None,
    tenant: str | None = None,
    pause: Callable[[], None] | None = None,
) -> ReplayReport:
    """Replay the calls that arrived in ``[start, end)``.

    Args:
        journal: The journal.
        before: The rules in force.
        after: The new rules.
        start: First arrival (aware, inclusive).
        end: Last arrival (aware, exclusive).
        overrides: The overrides over the period (:func:`override_timeline`).
        tenant: Only changes touching this tenant (see
            :class:`~pbxbridge.core.replay.Replayer`): all calls are read, since
            a call journalled for another tenant may move to this one.
        pause: Called every few thousand calls (the daemon yields the GIL
            there, so that a replay in a thread never holds up routing).

    Returns:
        The report.

    Raises:
        ValueError: If a bound is naive.
    """
    replayer = Replayer(before, after, overrides, tenant=tenant)
    add = replayer.add
    for count, row in enumerate(journal.calls_between(start, end), start=1):
        add(row)
        if pause is not None and count % 2000 == 0:
            pause()
    return replayer.finish()
