"""The retention purge on a large PostgreSQL journal: how long, in how many batches.

A throwaway database on the machine's PostgreSQL (``tests/postgres.py``;
``PBXBRIDGE_TEST_POSTGRES`` overrides the server) is filled server-side with
``--rows`` calls spread over 400 days (``tests/journal_fill.py``), 77.5 % of
them older than the 90-day retention: a journal whose purge never ran, written
under schema 1 and then migrated (``migrate_s``: migration 2 builds the purge's
index on the full table, which blocks journal writes meanwhile). Then
``PostgresJournal.purge`` runs as the daemon runs it, each batch of
``PURGE_BATCH`` calls its own statement under the store's statement timeout
(``--statement-timeout``, default 30 s as in production); every batch is timed.
``next_day_ms`` is the following day's run (a day's worth of calls).

``--single`` also times what the purge used to be, one ``UPDATE`` for the whole
backlog under the same timeout, on a second copy at schema 1 (``null`` when it
timed out).

Usage: ``python benchmarks/purge.py [--rows 1000000] [--single]``. The last line
of output is JSON with ``rows``, ``purged``, ``purge_s``, ``batches``,
``max_batch_s``, ``next_day_ms``, ``fill_s``, ``migrate_s`` and ``single_update_s``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbxbridge.journal.postgres import PostgresJournal
from tests.journal_fill import create_schema, fill_journal
from tests.postgres import throwaway_database

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DAYS = 400
RETENTION_DAYS = 90


def timed_purge(url: str, statement_timeout: float) -> tuple[int, float, list[float], float]:
    """Purge as the daemon does; ``(purged, seconds, per-batch seconds, next day ms)``."""
    batches: list[float] = []
    with PostgresJournal(url, statement_timeout=statement_timeout) as store:
        write = store._write

        def timed(sql: str, params: Sequence[Any]) -> int:
            started = time.perf_counter()
            try:
                return write(sql, params)
            finally:
                batches.append(time.perf_counter() - started)

        store._write = timed  # type: ignore[method-assign]
        started = time.perf_counter()
        purged = store.purge(NOW - timedelta(days=RETENTION_DAYS), NOW)
        took = time.perf_counter() - started
        first_run = list(batches)
        started = time.perf_counter()
        store.purge(NOW - timedelta(days=RETENTION_DAYS - 1), NOW + timedelta(days=1))
        next_day = time.perf_counter() - started
    return purged, took, first_run, next_day * 1000


def single_update(url: str, statement_timeout: float) -> float | None:
    """The old purge: one UPDATE for everything; seconds, ``None`` on timeout."""
    with psycopg.connect(
        url, autocommit=True, options=f"-c statement_timeout={int(statement_timeout * 1000)}"
    ) as conn:
        started = time.perf_counter()
        try:
            conn.execute(
                "UPDATE calls SET caller = NULL, callback_number = NULL,"
                " disposition_note = NULL, purged_at = %s"
                " WHERE arrived_at < %s AND purged_at IS NULL",
                (NOW, NOW - timedelta(days=RETENTION_DAYS)),
            )
        except psycopg.errors.QueryCanceled:
            return None
        return time.perf_counter() - started


def main() -> None:
    """Run the benchmark and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--statement-timeout", type=float, default=30.0)
    parser.add_argument(
        "--single", action="store_true", help="also time the old single-statement purge"
    )
    args = parser.parse_args()

    single_s: float | None = None
    with throwaway_database() as url:
        create_schema(url, 1)
        started = time.perf_counter()
        fill_journal(url, args.rows, NOW, DAYS)
        fill_s = time.perf_counter() - started
        started = time.perf_counter()
        PostgresJournal(url).close()  # migrates to the current schema
        migrate_s = time.perf_counter() - started
        print(
            f"filled {args.rows:,} calls in {fill_s:.1f} s; migrated in {migrate_s:.1f} s",
            flush=True,
        )
        purged, purge_s, batches, next_day_ms = timed_purge(url, args.statement_timeout)
        print(
            f"purged {purged:,} calls in {purge_s:.1f} s, {len(batches)} batches, "
            f"slowest {max(batches):.2f} s; next day {next_day_ms:.0f} ms",
            flush=True,
        )
    if args.single:
        with throwaway_database() as url:
            create_schema(url, 1)  # the schema the old purge ran on
            fill_journal(url, args.rows, NOW, DAYS)
            single_s = single_update(url, args.statement_timeout)
            print("single UPDATE: " + ("timed out" if single_s is None else f"{single_s:.1f} s"))
    print(
        json.dumps(
            {
                "rows": args.rows,
                "purged": purged,
                "purge_s": round(purge_s, 1),
                "batches": len(batches),
                "max_batch_s": round(max(batches), 2),
                "next_day_ms": round(next_day_ms),
                "fill_s": round(fill_s, 1),
                "migrate_s": round(migrate_s, 1),
                "statement_timeout_s": args.statement_timeout,
                "single_update_s": None if single_s is None else round(single_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
