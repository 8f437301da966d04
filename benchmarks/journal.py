"""Call journal speed: sustained write throughput (and, later, report time).

Write part (``measure_writes``): calls go through ``JournalWriter`` into an
SQLite journal for ``--seconds`` (default 20). Each call is updated five times
as it goes through its life (routed, queued, ringing, answered, ended), the
updates ``--step`` seconds apart (default 0.6 s, more than the writer's 0.5 s
flush interval, so that a writer keeping up writes every update as a row of its
own, as in real life where a call lasts minutes). New calls start as fast as the
writer keeps up: while its backlog is above a bound, the producer waits.

``writes_per_s`` is the number of calls started per second of the run, each of
them verified to have reached the database in its final state. A writer at its
limit falls behind and coalesces some updates of a call (as it would in
production), which helps it; ``row_writes_per_s`` counts the rows actually
upserted, and ``calls_per_s_uncoalesced`` (row writes / 5) is the conservative
figure: calls per second if every update needed its own row write.

Usage: ``python benchmarks/journal.py [--seconds S] [--step S] [--keep DIR]``.
The last line of output is JSON with ``writes_per_s`` (target ≥ 2,000 calls/s)
and ``report_s`` (the report part's figure; ``null`` until that part exists).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbxbridge.journal.entry import JournalEntry, Outcome
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.writer import JournalWriter

T0 = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
TENANTS = [f"t{i:03d}" for i in range(40)]
WAVE = 100
"""Calls started per producer step."""


def lifecycle(n: int, node: str = "bench") -> list[JournalEntry]:
    """The five versions of call ``n`` (a realistic answered call)."""
    arrived = T0 + timedelta(milliseconds=n * 7)
    base = JournalEntry(
        node=node,
        call_id=f"1764054000.{n}",
        tenant=TENANTS[n % len(TENANTS)],
        did=f"+49440773{n % 100:02d}",
        caller=f"+49441{n % 9_000_000:07d}",
        via_115=n % 5 == 0,
        action="queue",
        reasons=(
            f"DID +49440773{n % 100:02d} matched tenant {TENANTS[n % len(TENANTS)]}",
            "Wed 25.11.2026 08:00 CET inside mon-fri 07:00-18:00 (calendar servicecenter)",
            "open → queue servicecenter (priority 5)",
        ),
        arrived_at=arrived,
        queued_at=None,
        answered_at=None,
        ended_at=None,
        outcome=Outcome.IN_PROGRESS,
        agent="",
        queue="",
        wait_s=None,
        talk_s=None,
        rings=(),
    )
    queued = replace(base, queued_at=arrived + timedelta(seconds=1), queue="servicecenter")
    agent = f"agent{n % 60}"
    ring: dict[str, str | None] = {
        "agent": agent,
        "started": (arrived + timedelta(seconds=3)).isoformat(),
        "ended": None,
        "outcome": None,
    }
    ringing = replace(queued, agent=agent, rings=(ring,))
    done = {**ring, "ended": (arrived + timedelta(seconds=9)).isoformat(), "outcome": "answered"}
    answered = replace(
        ringing,
        answered_at=arrived + timedelta(seconds=9),
        outcome=Outcome.ANSWERED,
        wait_s=8.0,
        rings=(done,),
    )
    ended = replace(answered, ended_at=arrived + timedelta(seconds=189), talk_s=180.0)
    return [base, queued, ringing, answered, ended]


@dataclass
class _Wave:
    started: float
    first: int
    versions: list[list[JournalEntry]]
    done: int = 0  # versions submitted so far


async def _run(path: Path, spool: Path, seconds: float, step: float) -> dict[str, float | int]:
    writer = JournalWriter(lambda: SqliteJournal(path), spool)
    backlog_limit = 20_000  # entries; the producer waits above it
    task = asyncio.create_task(writer.run())
    waves: collections.deque[_Wave] = collections.deque()
    calls = 0
    max_backlog = 0
    waited_s = 0.0
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        max_backlog = max(max_backlog, writer.stats.backlog)
        if now < end:
            if writer.stats.backlog < backlog_limit:
                wave = _Wave(now, calls, [lifecycle(n) for n in range(calls, calls + WAVE)])
                for versions in wave.versions:
                    writer.submit(versions[0])
                wave.done = 1
                waves.append(wave)
                calls += WAVE
            else:
                waited_s += 0.002
                await asyncio.sleep(0.002)  # backpressure: let the writer catch up
        for wave in waves:
            due = min(5, 1 + int((now - wave.started) / step))
            while wave.done < due:
                for versions in wave.versions:
                    writer.submit(versions[wave.done])
                wave.done += 1
        while waves and waves[0].done == 5:
            waves.popleft()
        if now >= end and not waves:
            break
        await asyncio.sleep(0)  # the writer's loop runs too (as in the daemon)
    lifecycle_done = time.monotonic()
    await writer.close(timeout=60)
    await task
    finished = time.monotonic()
    db = sqlite3.connect(path)
    final = db.execute("SELECT count(*) FROM calls WHERE ended_at IS NOT NULL").fetchone()[0]
    rows = db.execute("SELECT count(*) FROM calls").fetchone()[0]
    db.close()
    if final != calls or rows != calls or writer.stats.spooled:
        raise RuntimeError(f"journal incomplete: {final}/{rows} of {calls} calls, {writer.stats}")
    return {
        "writes_per_s": round(calls / seconds, 1),
        "calls": calls,
        "updates": writer.stats.submitted,
        "row_writes": writer.stats.written,
        "row_writes_per_s": round(writer.stats.written / (finished - start), 1),
        "calls_per_s_uncoalesced": round(writer.stats.written / 5 / (finished - start), 1),
        "seconds": seconds,
        "drain_s": round(finished - lifecycle_done, 3),
        "max_backlog": max_backlog,
        "producer_waited_s": round(waited_s, 2),
    }


def measure_writes(
    seconds: float = 20.0, step: float = 0.6, path: Path | None = None
) -> dict[str, float | int]:
    """Sustained journal write throughput through ``JournalWriter`` into SQLite.

    Args:
        seconds: How long new calls keep starting.
        step: Seconds between a call's updates.
        path: The SQLite file to write (kept); a temporary one when ``None``.

    Returns:
        ``writes_per_s`` (calls per second) and details.
    """
    with tempfile.TemporaryDirectory(prefix="pbxbridge-journal-bench-") as tmp:
        db = path or Path(tmp) / "journal.sqlite"
        return asyncio.run(_run(db, Path(tmp) / "spool", seconds, step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--step", type=float, default=0.6)
    parser.add_argument("--keep", type=Path, help="directory to keep the journal in")
    parser.add_argument("--report-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbxbridge-journal-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "journal.sqlite"
        path.unlink(missing_ok=True)
        result: dict[str, object] = {}
        result.update(measure_writes(args.seconds, args.step, path))
        print(
            f"write: {result['writes_per_s']} calls/s ({result['calls']} calls, "
            f"{result['row_writes_per_s']} row writes/s)",
            file=sys.stderr,
        )

        # ---------------------------------------------------------------- REPORT PART
        # The monthly report over 1,000,000 journal rows (about two years of a
        # 42,000-calls-a-month centre): see benchmarks/journal_report.py.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import journal_report

        report_db = folder / "report.sqlite"
        report_db.unlink(missing_ok=True)
        rows = journal_report.generate(report_db, args.report_rows, random.Random(42))
        open_journal, fetch = journal_report.store_journal(report_db)
        best = min(
            (journal_report.time_report(open_journal) for _ in range(3)),
            key=lambda t: t.total_s,
        )
        result["report_s"] = round(best.total_s, 3)
        result["report_rows"] = rows
        result["report_month_rows"] = best.month_rows
        result["report_fetch"] = fetch
        print(
            f"report: {best.month_rows} calls of one month out of {rows} rows in "
            f"{best.total_s:.3f} s",
            file=sys.stderr,
        )
        # ------------------------------------------------------------ END REPORT PART

    print(json.dumps(result))


if __name__ == "__main__":
    main()
