"""Replay speed: a journal's calls routed by the example rules and a changed copy.

Fills an SQLite journal (the single-node default) with a realistic mix of
calls — the partners' numbers, 115 by area code, 115 mobile callers who
pressed a menu digit, withheld callers, unknown numbers, a tenth purged — over
consecutive weeks of office hours and evenings, then times
:func:`pbxbridge.journal.replay.replay_journal` (reading the journal included,
filling it not) against a copy of ``config/routing.yaml`` with three changes:
a priority, an area code moved to another tenant and a shorter Friday.

Usage: ``python benchmarks/replay.py [--calls 42000 1000000] [--postgres]``.
With ``--postgres`` the journal is a throwaway database on the machine's
PostgreSQL instead, filled by the server (``tests/journal_fill.py``: its own
mix, the partners' numbers only). The last line is JSON with, per size, the
seconds and calls per second. Targets: 42,000 calls (a month of the centre) in
≤ 2 s, 1,000,000 in ≤ 30 s.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbxbridge.config import load_rules
from pbxbridge.journal.replay import replay_journal
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import ENTRY_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "routing.yaml"
CHANGES = (
    (
        "open: {queue: servicecenter, priority: 5, whisper: custom/wardenburg",
        "open: {queue: servicecenter, priority: 6, whisper: custom/wardenburg",
    ),
    ('"+49 4223": ganderkesee', '"+49 4223": oldenburg'),
    ('fri: ["07:00-14:00"]', 'fri: ["07:00-13:00"]'),
)
DIDS = ["+494412350", "+494407730", "+494407731", "+494421160", "+494222440", "+4944619190"]
AREAS = ["+49441", "+494407", "+494421", "+494222", "+494223", "+494461", "+494451", "+494221"]
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


def changed_rules(folder: Path) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in CHANGES:
        if old not in text:
            raise SystemExit(f"the example rules no longer contain {old!r}")
        text = text.replace(old, new)
    path = folder / "changed.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def fill(path: Path, calls: int, rng: random.Random) -> tuple[datetime, datetime]:
    """Write ``calls`` calls, 42,000 per 30 days; the period they span."""
    SqliteJournal(path).close()  # the schema, migrated
    span = timedelta(days=30) * (calls / 42_000)
    step = span / calls
    db = sqlite3.connect(path)
    columns = (*ENTRY_COLUMNS, "purged_at")
    sql = f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    rows = []
    for i in range(calls):
        # Office hours get most calls: fold a uniform instant into 06:00-20:00 often.
        at = START + step * i
        if rng.random() < 0.8:
            at = at.replace(hour=5 + int(rng.random() * 14))
        kind = rng.random()
        digit = None
        if kind < 0.6:
            did, caller = rng.choice(DIDS), f"{rng.choice(AREAS)}{rng.randrange(10**6, 10**7)}"
        elif kind < 0.85:
            did, caller = "115", f"{rng.choice(AREAS)}{rng.randrange(10**6, 10**7)}"
        elif kind < 0.95:
            did, caller = "115", f"+49171{rng.randrange(10**6, 10**7)}"
            digit = rng.choice(["1", "2", "3", "4", "5", ""])
        elif kind < 0.98:
            did, caller = rng.choice(DIDS), None
        else:
            did, caller = "+4930123456", f"+4930{rng.randrange(10**6, 10**7)}"
        purged = i < calls // 10
        t = at.timestamp()
        rows.append(
            (
                "n1",
                f"c{i}",
                "oldenburg",
                did,
                None if purged else caller,
                int(did == "115"),
                "queue",
                "[]",
                t,
                t + 1,
                t + 5,
                t + 60,
                "answered",
                "agent1",
                "servicecenter",
                4.0,
                55.0,
                "[]",
                digit,
                t + 86400 * 90 if purged else None,
            )
        )
    # The daemon writes calls as they arrive: the table is in arrival order.
    rows.sort(key=lambda row: row[8])
    db.executemany(sql, rows)
    db.commit()
    db.close()
    return START, START + span + timedelta(days=1)


def postgres(sizes: list[int]) -> None:
    from pbxbridge.journal.postgres import PostgresJournal
    from tests.journal_fill import fill_journal
    from tests.postgres import throwaway_database

    results: dict[str, object] = {}
    now = datetime(2026, 11, 25, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        before = load_rules(EXAMPLE)[0]
        after = load_rules(changed_rules(Path(tmp)))[0]
        for calls in sizes:
            days = 30 * calls / 42_000
            with throwaway_database() as url:
                PostgresJournal(url).close()  # the schema, migrated
                fill_journal(url, calls, now, days)
                with PostgresJournal(url) as journal:
                    began = time.perf_counter()
                    report = replay_journal(
                        journal,
                        before,
                        after,
                        now - timedelta(days=days + 1),
                        now + timedelta(days=1),
                    )
                    seconds = time.perf_counter() - began
            assert report.calls == calls, (report.calls, calls)
            print(f"{calls:>9} calls (PostgreSQL): {seconds:6.2f} s", file=sys.stderr)
            results[f"postgres_calls_{calls}"] = {
                "seconds": round(seconds, 3),
                "calls_per_s": round(calls / seconds),
                "changed": len(report.changed),
            }
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, nargs="+", default=[42_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", action="store_true", help="Journal in PostgreSQL.")
    args = parser.parse_args()
    if args.postgres:
        postgres(args.calls)
        return
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before = load_rules(EXAMPLE)[0]
        after = load_rules(changed_rules(Path(tmp)))[0]
        for calls in args.calls:
            path = Path(tmp) / f"journal-{calls}.sqlite"
            start, end = fill(path, calls, random.Random(args.seed))
            with SqliteJournal(path) as journal:
                began = time.perf_counter()
                report = replay_journal(journal, before, after, start, end)
                seconds = time.perf_counter() - began
            assert report.calls == calls, (report.calls, calls)
            summary = report.summary()
            print(
                f"{calls:>9} calls: {seconds:6.2f} s, {calls / seconds:,.0f} calls/s, "
                f"{summary['changed']} changed, {summary['not_replayable']} not replayable, "
                f"{len(report.groups)} groups",
                file=sys.stderr,
            )
            results[f"calls_{calls}"] = {
                "seconds": round(seconds, 3),
                "calls_per_s": round(calls / seconds),
                "changed": summary["changed"],
                "not_replayable": summary["not_replayable"],
                "groups": len(report.groups),
            }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
