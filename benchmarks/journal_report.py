"""Journal reports at scale: a monthly service-level report over two years of calls.

Generates 1,000,000 journal rows (two years at ~42,000 calls a month, 5 tenants)
into an SQLite file in a temporary folder, with the journal's own schema
(``SQLITE_MIGRATIONS[0]``, then the later migrations as an upgrade runs them)
and times as REAL Unix seconds, inserted with one ``executemany`` in one
transaction. The mix: ~88 % of calls in opening hours (Mon-Fri 07-18 local),
the rest closed-hours; 0.5 % rejected numbers, 1 % 115-menu hang-ups; of the
queued calls 90 % answered (exponential waits, mean 12 s), 8 % abandoned (40 %
of those within 5 s), 2 % queue time-outs; 18 % via 115; answered calls 78 %
resolved, 14 % callback (85 % done in time, 10 % late, 5 % open), 8 % without
disposition; personal data purged after 90 days.

Then the timed part, what ``pbxbridge report`` does for one month (March 2026,
with the DST switch) and all tenants: fetch the rows as the CLI does
(:func:`pbxbridge.journal.report.report_rows`: the month's calls through the
``calls_arrived`` index, then the callbacks due in the month by deadline,
through ``calls_callback_due``), :func:`build_report` by day, and render the CSV
and one invoice CSV per tenant. The rows come from
``SqliteJournal.calls_between`` when :mod:`pbxbridge.journal.sqlite` provides it
(the real path), else from a plain ``SELECT ... WHERE arrived_at >= ? AND
arrived_at < ?``; ``fetch`` in the output says which. The plain SELECT is timed
as well for comparison (``select_report_s``).

Usage: ``python benchmarks/journal_report.py [--rows 1000000] [--seed 42] [--repeat 3]``.
The last line of output is JSON with ``rows``, ``month_rows``, ``fetched_rows``,
``report_s`` (best of ``--repeat``: open, fetch, build, render), ``fetch_build_s``,
``fetch`` and ``generate_s``.
Targets: ``report_s`` <= 2 on SQLite, generation < 60 s.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbxbridge.journal.render import format_csv, monthly_invoice_csv
from pbxbridge.journal.report import (
    RowSource,
    build_report,
    month_range,
    period_range,
    report_rows,
)
from pbxbridge.journal.store import CallRow
from pbxbridge.storage.schema import JOURNAL_SQLITE_MIGRATIONS as SQLITE_MIGRATIONS
from pbxbridge.storage.schema import JOURNAL_SQLITE_VERSION as SCHEMA_VERSION
from pbxbridge.storage.sqlite import migrate_sqlite, user_version

TZ = ZoneInfo("Europe/Berlin")
TENANTS = (
    ("oldenburg", 0.35),
    ("wilhelmshaven", 0.25),
    ("ganderkesee", 0.15),
    ("friesland", 0.15),
    ("wardenburg", 0.10),
)
FIRST_DAY = date(2024, 4, 1)
LAST_DAY = date(2026, 3, 31)
REPORT_MONTH = (2026, 3)
# Reports judge overdue callbacks against "now": a fixed instant after the month.
NOW = datetime(2026, 4, 2, 9, 0, tzinfo=TZ)
OPEN_FROM, OPEN_TO = 7 * 3600, 18 * 3600
PURGE_AFTER = timedelta(days=90)
COLUMNS = 26


def generate(path: Path, n: int, rng: random.Random) -> int:
    """Write ``n`` calls into a fresh journal file; the rows written."""
    days = []
    day = FIRST_DAY
    while day <= LAST_DAY:
        # Local midnight in UTC seconds; times within a day are added as
        # seconds (off by an hour after 02:00 on the two switch days a year,
        # which does not matter for a load test).
        days.append((datetime.combine(day, datetime.min.time(), TZ).timestamp(), day.weekday()))
        day += timedelta(days=1)
    workdays = [i for i, (_, wd) in enumerate(days) if wd < 5]
    purge_before = datetime.combine(LAST_DAY, datetime.min.time(), TZ).timestamp() - (
        PURGE_AFTER.total_seconds()
    )

    # Arrivals first, sorted: the journal is written in arrival order.
    arrivals: list[tuple[float, bool]] = []
    rand = rng.random
    for _ in range(n):
        if rand() < 0.88:
            start, _wd = days[workdays[int(rand() * len(workdays))]]
            arrivals.append((start + OPEN_FROM + rand() * (OPEN_TO - OPEN_FROM), False))
        else:
            start, wd = days[int(rand() * len(days))]
            if wd < 5:  # evening or early morning on a working day
                sec = OPEN_TO + rand() * (86400 - OPEN_TO + OPEN_FROM)
                sec %= 86400
            else:
                sec = rand() * 86400
            arrivals.append((start + sec, True))
    arrivals.sort()

    names = [t for t, _ in TENANTS]
    weights = [w for _, w in TENANTS]
    tenant_of = rng.choices(names, weights, k=n)
    # Streamed into executemany: a million 26-column tuples at once would
    # take most of a gigabyte.
    rows = (
        _row(i, at, is_closed, tenant_of[i], purge_before, rng)
        for i, (at, is_closed) in enumerate(arrivals)
    )

    db = sqlite3.connect(path)
    try:
        # Bulk load only: no journal, no fsync (the file is thrown away).
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(SQLITE_MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        with db:
            db.executemany(f"INSERT INTO calls VALUES ({','.join('?' * COLUMNS)})", rows)
        # The rows have migration 1's columns; the later migrations add theirs
        # (with defaults) as they would on a node's upgraded file.
        db.isolation_level = None
        migrate_sqlite(db, SQLITE_MIGRATIONS)
        assert user_version(db) == SCHEMA_VERSION
        db.execute("ANALYZE")
        count = int(db.execute("SELECT count(*) FROM calls").fetchone()[0])
    finally:
        db.close()
    return count


def _row(
    i: int, at: float, is_closed: bool, tenant: str, purge_before: float, rng: random.Random
) -> tuple[Any, ...]:
    r = rng.random()
    node = "node1" if i & 1 else "node2"
    call_id = f"{at:.6f}.{i}"
    did = f"+494407{rng.randint(100000, 999999)}"
    via_115 = rng.random() < 0.18
    if via_115:
        did = "+49115"
    purged = at < purge_before
    caller = None if purged or r < 0.05 else f"+49441{rng.randint(1000000, 9999999)}"
    purged_at = at + PURGE_AFTER.total_seconds() if purged else None
    action, reasons = "queue", '["tenant by DID","open: mon-fri 07:00-18:00"]'
    queued = answered = wait = talk = None
    outcome = "answered"
    agent = queue = ""
    rings = "[]"
    disposition = disposition_at = disposition_by = note = cb_number = None
    cb_due = cb_done = None
    ended: float | None = at + 20
    if r < 0.005:
        tenant, action, outcome = "", "reject", "rejected"
        reasons = '["unknown number: rejected"]'
    elif is_closed:
        action, outcome = "closed", "closed"
        reasons = '["tenant by DID","closed: outside mon-fri 07:00-18:00"]'
        ended = at + rng.uniform(10, 60)
    elif r < 0.015:
        outcome = "unanswered"  # hung up during the 115 menu
        ended = at + rng.uniform(3, 15)
    else:
        queue = "servicecenter"
        queued = at + 1.5
        k = rng.random()
        if k < 0.90:
            wait = rng.expovariate(1 / 12)
            answered = queued + wait
            talk = rng.lognormvariate(5.0, 0.6)
            ended = answered + talk
            agent = f"agent{rng.randint(1, 40):02d}"
            rings = (
                f'[{{"agent":"{agent}","started":"{queued}","ended":"{answered}",'
                '"outcome":"answered"}]'
            )
            d = rng.random()
            if d < 0.78:
                disposition = "resolved"
            elif d < 0.92:
                disposition = "callback"
                cb_number = None if purged else caller
                # End of the next working day (weekends skipped; holidays ignored).
                local = datetime.fromtimestamp(at, TZ).date() + timedelta(days=1)
                while local.weekday() >= 5:
                    local += timedelta(days=1)
                cb_due = datetime.combine(local, datetime.min.time(), TZ).timestamp() + OPEN_TO
                c = rng.random()
                if c < 0.85:
                    cb_done = cb_due - rng.uniform(600, 20 * 3600)
                elif c < 0.95:
                    cb_done = cb_due + rng.uniform(600, 48 * 3600)
            if disposition is not None:
                disposition_at = ended + 30
                disposition_by = agent
                note = "Auskunft erteilt" if disposition == "resolved" else "Rückruf Bauamt"
        elif k < 0.98:
            outcome = "abandoned"
            wait = rng.uniform(0, 5) if rng.random() < 0.4 else rng.uniform(5, 120)
            ended = queued + wait
        else:
            outcome = "unanswered"  # queue time-out
            wait = 300.0
            ended = queued + wait
    return (
        node, call_id, tenant, did, caller, int(via_115), action, reasons, at, queued,
        answered, ended, outcome, agent, queue, wait, talk, rings, disposition,
        disposition_at, disposition_by, note, cb_number, cb_due, cb_done, purged_at,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SelectRow:
    """What the plain SELECT path builds per row (only what reports read).

    Not a :class:`CallRow`: the comparison is with the cheapest row object.
    Duck-typed into ``build_report``, which reads only these attributes.
    """

    tenant: str
    arrived_at: datetime
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    outcome: str
    wait_s: float | None
    talk_s: float | None
    via_115: bool
    action: str
    disposition: str | None
    callback_due_at: datetime | None
    callback_done_at: datetime | None


class SelectJournal:
    """A minimal :class:`RowSource` over a plain SELECT (the fallback path)."""

    _SQL = (
        "SELECT tenant, arrived_at, queued_at, answered_at, ended_at, outcome, wait_s, "
        "talk_s, via_115, action, disposition, callback_due_at, callback_done_at "
        "FROM calls WHERE arrived_at >= ? AND arrived_at < ?"
    )
    _DUE_SQL = _SQL.split(" WHERE ")[0] + (
        " WHERE disposition = 'callback' AND callback_due_at >= ? AND callback_due_at < ?"
    )

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path)

    def calls_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterator[SelectRow]:
        """Rows with ``start <= arrived_at < end``."""
        return self._rows(self._SQL, start, end, tenant)

    def callbacks_due_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> Iterator[SelectRow]:
        """Callbacks with ``start <= callback_due_at < end``."""
        return self._rows(self._DUE_SQL, start, end, tenant)

    def _rows(
        self, sql: str, start: datetime, end: datetime, tenant: str | None
    ) -> Iterator[SelectRow]:
        params: list[Any] = [start.timestamp(), end.timestamp()]
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)

        def t(value: float | None) -> datetime | None:
            return None if value is None else datetime.fromtimestamp(value, UTC)

        for (ten, arr, que, ans, end_, out, wait, talk, v115, act, disp, due,
             done) in self._db.execute(sql, params):  # fmt: skip
            yield SelectRow(
                ten, datetime.fromtimestamp(arr, UTC), t(que), t(ans), t(end_), out, wait,
                talk, bool(v115), act, disp, t(due), t(done),
            )  # fmt: skip

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def store_journal(path: Path) -> tuple[Callable[[], Any], str]:
    """The colleague's SqliteJournal when it exists, else the plain SELECT."""
    try:
        store = importlib.import_module("pbxbridge.journal.sqlite")
    except ImportError:
        store = None
    cls = getattr(store, "SqliteJournal", None)
    if cls is not None and hasattr(cls, "calls_between"):
        return (lambda: cls(path)), "SqliteJournal.calls_between"
    return (lambda: SelectJournal(path)), "SELECT"


@dataclass(frozen=True, slots=True)
class Timing:
    """One timed report run."""

    total_s: float
    fetch_build_s: float
    fetched_rows: int
    month_rows: int
    csv_bytes: int


def time_report(open_journal: Callable[[], Any]) -> Timing:
    """Open the journal, fetch a month's rows, build the report, render it."""
    start, end = month_range(*REPORT_MONTH)
    t0 = time.perf_counter()
    journal = open_journal()
    try:
        source: RowSource = journal
        fetched: list[CallRow] = []

        def counted(rows: Iterable[CallRow]) -> Iterator[CallRow]:
            for row in rows:
                fetched.append(row)
                yield row

        report = build_report(
            counted(report_rows(source, start, end, TZ)),
            start=start,
            end=end,
            tz=TZ,
            by="day",
            tenant=None,
            now=NOW,
            tenants=[t for t, _ in TENANTS],
        )
        t1 = time.perf_counter()
        size = len(format_csv(report))
        for tenant, _ in TENANTS:
            size += len(monthly_invoice_csv(report, tenant))
        total = time.perf_counter() - t0
    finally:
        journal.close()
    first, after = period_range(start, end, TZ)
    month = sum(1 for r in fetched if first <= r.arrived_at < after)
    assert month == report.total.calls
    return Timing(total, t1 - t0, len(fetched), month, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs; the best counts.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="pbxbridge-journal-") as tmp:
        path = Path(tmp) / "journal.sqlite3"
        t0 = time.perf_counter()
        rows = generate(path, args.rows, rng)
        generate_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        print(f"generated {rows:,} rows in {generate_s:.1f} s ({size_mb:.0f} MB)")

        open_journal, fetch = store_journal(path)
        real = [time_report(open_journal) for _ in range(max(1, args.repeat))]
        plain = [time_report(lambda: SelectJournal(path)) for _ in range(max(1, args.repeat))]
        best = min(real, key=lambda t: t.total_s)
        best_plain = min(plain, key=lambda t: t.total_s)
        print(
            f"report {REPORT_MONTH[0]}-{REPORT_MONTH[1]:02d} via {fetch}: "
            f"{best.month_rows:,} calls in the month, {best.fetched_rows:,} fetched, "
            f"{best.total_s:.3f} s (fetch+build {best.fetch_build_s:.3f} s); "
            f"plain SELECT {best_plain.total_s:.3f} s"
        )
    result = {
        "rows": rows,
        "month_rows": best.month_rows,
        "fetched_rows": best.fetched_rows,
        "report_s": round(best.total_s, 3),
        "fetch_build_s": round(best.fetch_build_s, 3),
        "fetch": fetch,
        "select_report_s": round(best_plain.total_s, 3),
        "generate_s": round(generate_s, 1),
        "db_mb": round(size_mb),
        "target_report_s": 2.0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
