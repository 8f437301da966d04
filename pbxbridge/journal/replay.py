"""Replay the journal: the calls of a period, routed by two rule sets (synchronous).

The reading half of ``pbxbridge replay`` and of the daemon's reload summary:
the calls come from :meth:`~pbxbridge.journal.store.JournalStore.calls_between`
(the reports' read path, page by page, so a year of calls never sits in
memory at once), the overrides from the override store's history, and the
comparison is :mod:`pbxbridge.core.replay`'s. Call it from a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from pbxbridge.core.numbers import mask_numbers
from pbxbridge.core.replay import OverrideTimeline, Replayer, ReplayReport
from pbxbridge.core.rules import Rules
from pbxbridge.journal.store import JournalStore
from pbxbridge.storage.overrides import OverrideStore

log = structlog.get_logger(__name__)

RELOAD_REPLAY_DAYS: Final = 7
"""Days a live reload replays (a week: every weekday and its evening once)."""
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
        pause: Called every few hundred calls (the daemon yields the GIL
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
        if pause is not None and count % 500 == 0:
            pause()
    return replayer.finish()


class ReloadImpact:
    """What a live reload changes over the last days, in the background (the daemon's).

    After a reload, :meth:`start` replays the journal's last :attr:`days` days
    by the old and the new rules in a worker thread and logs one line of
    counts (``rules.replay``: calls, changed, not replayable, per kind and
    per tenant; no numbers, no call ids); :attr:`last` keeps it for
    ``/healthz``. Routing never waits for it: it runs beside the calls, yields
    the interpreter every few thousand rows, and a newer reload cancels it.
    A journal or database that cannot be read is logged and shown, never raised.

    Args:
        journal: Opens the journal (a store of its own, closed after each run).
        overrides: Opens the override store, or ``None`` (no overrides).
        days: How far back to replay.
        clock: "now" (tests inject one).
    """

    def __init__(
        self,
        journal: Callable[[], JournalStore],
        overrides: Callable[[], OverrideStore] | None = None,
        *,
        days: int = RELOAD_REPLAY_DAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._journal = journal
        self._overrides = overrides
        self.days = days
        self._clock = clock
        self.last: dict[str, object] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()

    def start(self, before: Rules, after: Rules, generation: int) -> asyncio.Task[None]:
        """Replay in the background (cancelling a replay still running).

        Args:
            before: The rules that were in force.
            after: The rules now in force.
            generation: The new rules' generation (named in the log and health).

        Returns:
            The task (the daemon need not await it).
        """
        self.cancel()
        self._stop = threading.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(before, after, generation, self._stop), name="rules-replay"
        )
        return self._task

    def cancel(self) -> None:
        """Stop a replay still running (at shutdown, or for a newer reload)."""
        self._stop.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(
        self, before: Rules, after: Rules, generation: int, stop: threading.Event
    ) -> None:
        end = self._clock()
        start = end - timedelta(days=self.days)
        try:
            report = await asyncio.to_thread(self._replay, before, after, start, end, stop)
        except asyncio.CancelledError:
            raise
        except _Stopped:
            return
        except Exception as exc:
            error = mask_numbers(str(exc) or type(exc).__name__)
            self.last = {"generation": generation, "days": self.days, "error": error}
            log.warning("rules.replay_failed", generation=generation, error=error)
            return
        summary = report.summary()
        self.last = {"generation": generation, "days": self.days, "at": end.isoformat(), **summary}
        log.info("rules.replay", generation=generation, days=self.days, **summary)

    def _replay(
        self, before: Rules, after: Rules, start: datetime, end: datetime, stop: threading.Event
    ) -> ReplayReport:
        def pause() -> None:
            if stop.is_set():
                raise _Stopped
            time.sleep(0)  # let the event loop's thread have the interpreter

        timeline = None
        if self._overrides is not None:
            with self._overrides() as store:
                timeline = override_timeline(store)
        with self._journal() as journal:
            return replay_journal(
                journal, before, after, start, end, overrides=timeline, pause=pause
            )


class _Stopped(Exception):
    """A newer reload or the shutdown stopped the replay."""
