"""Retention: personal data leaves the journal after a fixed period.

The journal keeps every call for the statistics, but the caller's number, a
callback number an agent noted and the agent's free-text disposition note (which
may name the caller or their matter) are personal data that may only be kept as
long as needed. :func:`purge_older_than` removes them from calls older than the
retention period (and empties the routing trace, which names the caller) and
stamps ``purged_at``; tenant, times, outcome, disposition, agent, waiting and
talking times stay, so reports over any period still add up. The same run ages
out the journal writer's ``rejected.jsonl`` (entries the database refused,
numbers included) with the same cut-off.

The default period is :data:`DEFAULT_RETENTION_DAYS` (90 days). The daemon runs
the purge once a day (:func:`retention_loop`); operators can run it by hand with
``pbxbridge purge``. Purging is idempotent: running it twice, or on two nodes
sharing a PostgreSQL journal, purges each call once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import structlog

from pbxbridge.journal.spool import age_rejected
from pbxbridge.journal.store import JournalStore
from pbxbridge.storage.virtual_holds import VirtualHoldStore

log = structlog.get_logger(__name__)

DEFAULT_RETENTION_DAYS: Final = 90
"""How long callers' numbers are kept, in days (counted from the call's arrival)."""


def purge_older_than(
    store: JournalStore,
    days: int = DEFAULT_RETENTION_DAYS,
    now: datetime | None = None,
    spool_dir: Path | None = None,
    holds: VirtualHoldStore | None = None,
) -> int:
    """Remove the personal data of calls that arrived more than ``days`` ago.

    Args:
        store: The journal.
        days: The retention period in days (at least 1; a mistaken 0 must not
            wipe today's callback numbers).
        now: The current instant (aware); defaults to the system clock.
        spool_dir: The journal writer's spool directory: its ``rejected.jsonl``
            loses the entries of calls older than the retention too.
        holds: The virtual-hold store: finished holds of such calls lose the
            caller's and the callback number too (pending ones keep them).

    Returns:
        How many calls were purged by this run.

    Raises:
        ValueError: If ``days`` is below 1 or ``now`` is naive.
    """
    if days < 1:
        raise ValueError(f"the retention period must be at least 1 day, got {days}")
    at = datetime.now(UTC) if now is None else now
    if at.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    before = at - timedelta(days=days)
    purged = store.purge(before, at)
    rejected = 0 if spool_dir is None else age_rejected(spool_dir, before)
    vholds = 0 if holds is None else holds.purge(before, at)
    log.info(
        "journal.purged", calls=purged, rejected_entries=rejected, virtual_holds=vholds, days=days
    )
    return purged


async def retention_loop(
    store_factory: Callable[[], JournalStore],
    *,
    days: int = DEFAULT_RETENTION_DAYS,
    spool_dir: Path | None = None,
    interval_s: float = 86_400.0,
    retry_s: float = 3_600.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    holds_factory: Callable[[], VirtualHoldStore] | None = None,
) -> None:
    """Purge now and then every ``interval_s`` until cancelled (for the daemon).

    Each run opens its own store in a worker thread (never the writer's), so a
    purge of many rows does not hold up the journal writer's connection. A
    failed run (database down) is retried after ``retry_s``.

    Args:
        store_factory: Opens the journal store.
        days: The retention period in days.
        spool_dir: The journal writer's spool directory (its ``rejected.jsonl``
            ages out in the same run).
        interval_s: Seconds between runs.
        retry_s: Seconds until the next try after a failure.
        clock: "now" (tests inject one).
        holds_factory: Opens the virtual-hold store, whose finished holds are
            purged in the same run; ``None``: no virtual holds.
    """
    if days < 1:
        raise ValueError(f"the retention period must be at least 1 day, got {days}")

    def once() -> int:
        with store_factory() as store:
            if holds_factory is None:
                return purge_older_than(store, days, clock(), spool_dir)
            with holds_factory() as holds:
                return purge_older_than(store, days, clock(), spool_dir, holds)

    while True:
        try:
            await asyncio.to_thread(once)
            delay = interval_s
        except Exception:
            log.exception("journal.purge_failed")
            delay = retry_s
        await asyncio.sleep(delay)
