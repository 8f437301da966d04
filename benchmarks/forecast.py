"""``pbxbridge forecast`` for all tenants over a journal of 1,000,000 calls; Erlang evaluation.

A throwaway database on the machine's PostgreSQL (``tests/postgres.py``;
``PBXBRIDGE_TEST_POSTGRES`` overrides the server) is filled server-side with
``--rows`` calls of 40 tenants (``tests/journal_fill.py``: every call answered,
4 s wait, 60 s talk, disposition 5 s after the call). By default they are
spread over the 8 weeks before the forecast week (``--days 56``), so the
forecast reads *every* one of the million calls: the worst case. ``--days 400``
is the same journal over 400 days, of which the forecast reads the last 8 weeks.

The timed part is what ``pbxbridge forecast --week 2026-W50 --format csv`` does
for all tenants: :func:`pbxbridge.cli.forecast.run_forecast_cli` with rules
loaded from a generated YAML (40 tenants on one calendar open 00:00-24:00 every
day, Lower Saxony holidays, so that every half hour of every day is staffed),
summing the history per tenant and half hour in PostgreSQL as the CLI does
(:func:`pbxbridge.journal.forecast.half_hours`), building the
forecast (40 tenants + the shared queue, 7 x 48 half hours each) and rendering
the CSV. Best of ``--repeat``.

Then :func:`pbxbridge.core.erlang.staffing` and ``evaluate`` are timed for a
small queue (91 calls per half hour at 180 s), a large one (8,000 calls: ~830
agents) and Erlang A with 60 s patience.

``--engine sqlite`` writes the same calls into an SQLite journal file instead (the
default when no database URL is configured).

Usage: ``python benchmarks/forecast.py [--rows 1000000] [--days 56] [--repeat 3] [--engine postgres|sqlite]``.
The last line of output is JSON with ``rows``, ``days``, ``read_rows`` (calls in
the history the forecast sums),
``forecast_s`` (target <= 5), ``fill_s`` and the ``staffing_us`` timings
(microseconds per call).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbxbridge.cli.forecast import run_forecast_cli
from pbxbridge.config import load_rules
from pbxbridge.core import erlang
from pbxbridge.journal.postgres import PostgresJournal
from pbxbridge.journal.report import period_range
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import JournalStore
from pbxbridge.planning.forecast import history_period
from tests.journal_fill import fill_journal
from tests.postgres import query, throwaway_database

YEAR, WEEK = 2026, 50
# The forecast's "now": Monday of the target week, so the history is the 8 weeks before it.
NOW = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
TENANTS = 40


def rules_yaml() -> str:
    """40 tenants t000..t039 (journal_fill's), one calendar open around the clock."""
    lines = [
        "version: 1",
        "timezone: Europe/Berlin",
        "region: DE",
        "calendars:",
        "  always:",
        "    holidays: {country: DE, subdivision: NI}",
        "    hours:",
        '      mon-sun: ["00:00-24:00"]',
        "queues:",
        "  servicecenter: {context: pbxbridge-queue, queue: servicecenter}",
        "unknown_did: {tenant: t000}",
        "tenants:",
    ]
    for n in range(TENANTS):
        lines += [
            f"  t{n:03d}:",
            f"    name: Gemeinde {n}",
            f'    greeting: "Gemeinde {n}, guten Tag"',
            f'    dids: ["+49 4407 5{n:03d}"]',
            "    calendar: always",
            "    open: {queue: servicecenter}",
            "    closed: {announce: custom/closed, then: hangup}",
        ]
    return "\n".join(lines) + "\n"


def per_call_us(fn: Callable[[], object], repeat: int = 200) -> float:
    """Mean microseconds of one call (best of three rounds)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - started) / repeat)
    return round(best * 1e6, 1)


def staffing_timings() -> dict[str, float]:
    """Microseconds per staffing/evaluate call, small and large."""
    return {
        "erlang_c_91_calls": per_call_us(
            lambda: erlang.staffing(91, 1800, 180, target_level=0.8, threshold_s=20)
        ),
        "erlang_c_8000_calls": per_call_us(
            lambda: erlang.staffing(8000, 1800, 180, target_level=0.8, threshold_s=20), 5
        ),
        "erlang_a_91_calls": per_call_us(
            lambda: erlang.staffing(
                91,
                1800,
                180,
                target_level=0.8,
                threshold_s=20,
                model="erlang-a",
                patience_s=60,
            )
        ),
        "evaluate_erlang_c_830_agents": per_call_us(
            lambda: erlang.evaluate(8000, 1800, 180, agents=830, threshold_s=20), 50
        ),
        "evaluate_erlang_a_13_agents": per_call_us(
            lambda: erlang.evaluate(
                91, 1800, 180, agents=13, threshold_s=20, model="erlang-a", patience_s=60
            ),
            500,
        ),
    }


def fill_sqlite(path: Path, rows: int, newest: datetime, days: float) -> None:
    """The same calls as ``tests/journal_fill.py`` writes to PostgreSQL, into an SQLite journal."""
    SqliteJournal(path).close()  # the journal's own schema, migrated
    end = newest.timestamp()
    step = days * 86400 / rows

    def generate() -> Any:
        for i in range(rows):
            t = end - step * i
            callback = i % 10 == 0
            yield (
                f"n{i % 3}", f"c{i}", f"t{i % 40:03d}", f"+49440773{i % 100:02d}",
                f"+49441{i % 9000000:07d}", int(i % 5 == 0), "queue", "[]",
                t, t + 1, t + 5, t + 65, "answered", f"agent{i % 20}", "servicecenter",
                4.0, 60.0, "[]", "callback" if callback else "resolved", t + 70,
                f"agent{i % 20}", "", f"+49171{i:07d}" if callback else None,
                t + 86400 if callback else None,
            )  # fmt: skip

    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO calls (node, call_id, tenant, did, caller, via_115, action, reasons,"
            " arrived_at, queued_at, answered_at, ended_at, outcome, agent, queue, wait_s,"
            " talk_s, rings, disposition, disposition_at, disposition_by, disposition_note,"
            " callback_number, callback_due_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            generate(),
        )
        db.execute("ANALYZE")


def main() -> None:
    """Run the benchmark and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=56)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "routing.yaml"
        path.write_text(rules_yaml(), encoding="utf-8")
        rules, _ = load_rules(path)

    first, last = history_period(YEAR, WEEK, 8, NOW.astimezone(rules.timezone).date())
    start, after = period_range(first, last, rules.timezone)
    newest = NOW - timedelta(microseconds=1)
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        opener: Callable[[], JournalStore]
        if args.engine == "postgres":
            url = stack.enter_context(throwaway_database())
            PostgresJournal(url).close()  # migrated
            fill_journal(url, args.rows, newest, args.days)
            # The calls the forecast's history covers (what it sums).
            read_rows = int(
                query(
                    url,
                    f"SELECT count(*) FROM calls WHERE arrived_at >= '{start.isoformat()}'"
                    f" AND arrived_at < '{after.isoformat()}'",
                )[0][0]
            )
            opener = lambda: PostgresJournal(url)  # noqa: E731
        else:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "journal.sqlite"
            fill_sqlite(path, args.rows, newest, args.days)
            with sqlite3.connect(path) as db:
                read_rows = db.execute(
                    "SELECT count(*) FROM calls WHERE arrived_at >= ? AND arrived_at < ?",
                    (start.timestamp(), after.timestamp()),
                ).fetchone()[0]
            opener = lambda: SqliteJournal(path)  # noqa: E731
        fill_s = time.perf_counter() - started
        print(
            f"filled {args.rows:,} calls over {args.days:g} days ({args.engine}) in {fill_s:.1f} s",
            flush=True,
        )
        best = float("inf")
        text = ""
        for _ in range(args.repeat):
            with opener() as store:
                started = time.perf_counter()
                text = run_forecast_cli(
                    store, rules, year=YEAR, week=WEEK, weeks=8, fmt="csv", now=NOW
                )
                took = time.perf_counter() - started
            best = min(best, took)
            print(f"forecast over {read_rows:,} calls: {took:.2f} s", flush=True)
    lines = text.count("\n") - 1
    timings = staffing_timings()
    print(f"staffing (us per call): {timings}", flush=True)
    print(
        json.dumps(
            {
                "engine": args.engine,
                "rows": args.rows,
                "days": args.days,
                "tenants": TENANTS,
                "read_rows": read_rows,
                "csv_rows": lines,
                "forecast_s": round(best, 2),
                "target_s": 5,
                "fill_s": round(fill_s, 1),
                "staffing_us": timings,
            }
        )
    )


if __name__ == "__main__":
    main()
