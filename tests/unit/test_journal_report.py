"""Service-level reports: figures worked out by hand from synthetic journal rows."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.cli import run_report_cli
from pbxbridge.config import load_rules
from pbxbridge.core.virtual_hold import VHoldState, VirtualHold, offered
from pbxbridge.journal.render import (
    CSV_COLUMNS,
    INVOICE_COLUMNS,
    format_csv,
    format_json,
    format_table,
    monthly_invoice_csv,
)
from pbxbridge.journal.report import (
    FIGURES,
    PCT_FIELDS,
    Figures,
    Granularity,
    Report,
    build_report,
    month_range,
    percentile_nearest_rank,
    period_range,
    report_rows,
)
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import CallRow, JournalStore
from tests.unit.test_journal_store import entry

BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
T = "wardenburg"
# Thursday 12 March 2026, noon in Berlin (CET): "now" for the callback figures.
NOW = datetime(2026, 3, 12, 12, 0, tzinfo=BERLIN)


def call_row(
    arrived_at: datetime,
    tenant: str = T,
    queued_at: datetime | None = None,
    answered_at: datetime | None = None,
    ended_at: datetime | None = None,
    outcome: str = "answered",
    wait_s: float | None = None,
    talk_s: float | None = None,
    via_115: bool = False,
    action: str = "queue",
    disposition: str | None = None,
    callback_due_at: datetime | None = None,
    callback_done_at: datetime | None = None,
) -> CallRow:
    """A journal row as the store returns it (what reports read given, the rest empty)."""
    return CallRow(
        node="n1", call_id="c", tenant=tenant, did="", caller=None, via_115=via_115,
        action=action, reasons=(), arrived_at=arrived_at, queued_at=queued_at,
        answered_at=answered_at, ended_at=ended_at, outcome=outcome, agent="", queue="",
        wait_s=wait_s, talk_s=talk_s, rings=(), disposition=disposition,
        disposition_at=None, disposition_by=None, disposition_note=None, callback_number=None,
        callback_due_at=callback_due_at, callback_done_at=callback_done_at, purged_at=None,
    )  # fmt: skip


Row = CallRow
"""What the helpers below build."""


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A Berlin wall-clock time as a UTC instant (as the store returns times)."""
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def answered(at: datetime, wait: float, talk: float = 60, **kw: Any) -> Row:
    ans = at + timedelta(seconds=wait)
    return call_row(
        arrived_at=at,
        queued_at=at,
        answered_at=ans,
        ended_at=ans + timedelta(seconds=talk),
        outcome="answered",
        wait_s=wait,
        talk_s=talk,
        **kw,
    )


def abandoned(at: datetime, wait: float, **kw: Any) -> Row:
    return call_row(
        arrived_at=at,
        queued_at=at,
        ended_at=at + timedelta(seconds=wait),
        outcome="abandoned",
        wait_s=wait,
        **kw,
    )


def closed(at: datetime, **kw: Any) -> Row:
    return call_row(arrived_at=at, action="closed", outcome="closed", ended_at=at, **kw)


def rejected(at: datetime, tenant: str = "") -> Row:
    return call_row(arrived_at=at, tenant=tenant, action="reject", outcome="rejected", ended_at=at)


def report(
    rows: Iterable[CallRow],
    start: date = date(2026, 3, 1),
    end: date = date(2026, 3, 31),
    by: Granularity | None = None,
    tenant: str | None = None,
    **kw: Any,
) -> Report:
    return build_report(rows, start=start, end=end, tz=BERLIN, by=by, tenant=tenant, now=NOW, **kw)


# Tuesday 10 March 2026 (CET, +01:00), the service centre open 07:00-18:00.
NINE = utc(2026, 3, 10, 9, 0)
MIXED = [
    answered(NINE, 0, talk=120, disposition="resolved"),  # at once
    answered(NINE, 25, talk=300, disposition="callback"),  # too late for the SL
    answered(NINE, 20, talk=60),  # exactly on the threshold: within
    abandoned(NINE, 3),  # short abandon
    abandoned(NINE, 40),
    closed(utc(2026, 3, 10, 19, 0), via_115=True),
    answered(NINE, 10, talk=200, via_115=True, disposition="resolved"),
    rejected(NINE),  # unknown number: no tenant
]


class TestFigures:
    """The mixed day, worked out by hand.

    wardenburg: 7 calls. Offered (queued in opening hours): the 4 answered and
    the 2 abandoned = 6. Answered within 20 s: waits 0, 20, 10 = 3 (25 s is
    not). Short abandons (< 5 s): the 3 s one.
    SL over answered = 3/4 = 75 %. SL over offered minus short abandons
    = 3/(6-1) = 60 %. Waits of answered sorted: 0, 10, 20, 25; mean 55/4 =
    13.75; p90 nearest rank ceil(0.9*4) = 4th = 25. Talk (120+300+60+200)/4 =
    170. 115: 2 of offered+closed 7 = 28.571 %. FCR: 2 resolved, 1 callback =
    66.67 %.
    """

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("calls", 7),
            ("offered", 6),
            ("answered", 4),
            ("answered_within", 3),
            ("abandoned", 2),
            ("short_abandoned", 1),
            ("other_offered", 0),
            ("not_queued", 0),
            ("closed_hours", 1),
            ("rejected", 0),
            ("via_115", 2),
            ("sl_answered_pct", 75.0),
            ("sl_offered_pct", 60.0),
            ("mean_wait_s", 13.75),
            ("p90_wait_s", 25.0),
            ("mean_talk_s", 170.0),
            ("via_115_pct", pytest.approx(200 / 7)),
            ("resolved", 2),
            ("callbacks_requested", 1),
            ("fcr_pct", pytest.approx(200 / 3)),
        ],
    )
    def test_tenant_total(self, name: str, expected: object) -> None:
        figures = report(MIXED).tenant(T).total
        assert getattr(figures, name) == expected

    def test_rejected_without_tenant_is_its_own_line_and_in_the_total(self) -> None:
        r = report(MIXED)
        assert [p.tenant for p in r.tenants] == ["", T]
        assert r.tenant("").total.rejected == 1
        assert r.tenant("").total.offered == 0
        assert r.total.calls == 8
        assert r.total.rejected == 1
        assert r.total.offered == 6

    def test_tenant_filter_drops_other_tenants(self) -> None:
        rows = [*MIXED, answered(NINE, 5, tenant="oldenburg")]
        r = report(rows, tenant=T)
        assert [p.tenant for p in r.tenants] == [T]
        assert r.total.calls == 7

    def test_calls_reconcile(self) -> None:
        f = report(MIXED).tenant(T).total
        assert f.calls == f.offered + f.closed_hours + f.rejected + f.not_queued
        assert f.offered == f.answered + f.abandoned + f.other_offered

    def test_queue_timeout_and_menu_hangup(self) -> None:
        at = NINE
        timed_out = call_row(
            arrived_at=at,
            queued_at=at,
            ended_at=at + timedelta(seconds=300),
            outcome="unanswered",
            wait_s=300,
        )
        menu_hangup = call_row(arrived_at=at, via_115=True, outcome="unanswered", ended_at=at)
        f = report([timed_out, menu_hangup, answered(at, 5)]).tenant(T).total
        # offered = the timeout and the answered call; not queued = the menu hangup.
        assert (f.calls, f.offered, f.other_offered, f.not_queued) == (3, 2, 1, 1)
        # The timeout counts against the offered SL: 1 within of 2 offered.
        assert (f.sl_answered_pct, f.sl_offered_pct) == (100.0, 50.0)
        # The menu hangup never reached a queue: not in the 115 share's base.
        assert f.via_115 == 0

    def test_closed_hours_queue_is_not_offered(self) -> None:
        # Closed-hours handling "then: queue" (an after-hours queue): counted as
        # closed_hours, not offered; its disposition still counts for FCR.
        at = utc(2026, 3, 10, 20, 0)
        row = replace(answered(at, 30, disposition="resolved"), action="closed")
        f = report([row]).tenant(T).total
        assert (f.closed_hours, f.offered, f.answered, f.mean_wait_s) == (1, 0, 0, None)
        assert f.sl_offered_pct is None
        assert (f.resolved, f.fcr_pct) == (1, 100.0)

    def test_missing_wait_is_taken_from_timestamps(self) -> None:
        a = replace(answered(NINE, 30), wait_s=None)
        b = replace(abandoned(NINE, 2), wait_s=None)
        f = report([a, b]).tenant(T).total
        assert (f.mean_wait_s, f.answered_within, f.short_abandoned) == (30.0, 0, 1)

    def test_in_conversation_counts_as_answered_without_talk(self) -> None:
        row = replace(answered(NINE, 4), outcome="in_progress", ended_at=None, talk_s=None)
        f = report([row]).tenant(T).total
        assert (f.answered, f.answered_within, f.mean_talk_s) == (1, 1, None)


@pytest.mark.parametrize(
    ("answered_waits", "abandon_waits", "threshold", "short", "sl_answered", "sl_offered"),
    [
        # 2 of 3 within 20 s; offered 3 + 2 abandons - 1 short = 4 -> 2/4
        ([0, 20, 25], [3, 40], 20, 5, 200 / 3, 50.0),
        # 20.5 s is over; 5 s abandon is not short (short means < 5 s)
        ([20.5], [5], 20, 5, 0.0, 0.0),
        # only short abandons: no answered calls, offered minus short is 0
        ([], [1, 2], 20, 5, None, None),
        # a stricter 10 s threshold, no short-abandon exclusion
        ([5, 10, 11, 30], [1], 10, 0, 50.0, 40.0),
        # nothing at all
        ([], [], 20, 5, None, None),
    ],
)
def test_service_level_definitions(
    answered_waits: list[float],
    abandon_waits: list[float],
    threshold: float,
    short: float,
    sl_answered: float | None,
    sl_offered: float | None,
) -> None:
    rows = [answered(NINE, w) for w in answered_waits] + [abandoned(NINE, w) for w in abandon_waits]
    f = report(rows, tenant=T, threshold_s=threshold, short_abandon_s=short).tenant(T).total
    assert f.sl_answered_pct == (None if sl_answered is None else pytest.approx(sl_answered))
    assert f.sl_offered_pct == (None if sl_offered is None else pytest.approx(sl_offered))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([7.0], 7.0),
        ([3.0, 1.0], 3.0),  # ceil(1.8) = 2nd
        ([float(v) for v in range(1, 11)], 9.0),  # ceil(9.0) = 9th, not 10th
        ([float(v) for v in range(1, 12)], 10.0),  # ceil(9.9) = 10th
        ([float(v) for v in range(20, 0, -1)], 18.0),  # ceil(18.0) = 18th, any order
        ([float(v) for v in range(1, 101)], 90.0),
        ([float(v) for v in range(1, 102)], 91.0),  # ceil(90.9) = 91st
    ],
)
def test_p90_nearest_rank(values: list[float], expected: float | None) -> None:
    assert percentile_nearest_rank(values, 90) == expected
    rows = [answered(NINE, v) for v in values]
    assert report(rows, tenant=T).tenant(T).total.p90_wait_s == expected


@pytest.mark.parametrize(
    ("dispositions", "resolved", "callbacks", "fcr"),
    [
        ([], 0, 0, None),
        ([None, None], 0, 0, None),
        (["resolved"], 1, 0, 100.0),
        (["callback"], 0, 1, 0.0),
        (["resolved", "resolved", "resolved", "callback", None], 3, 1, 75.0),
    ],
)
def test_first_contact_resolution(
    dispositions: list[str | None], resolved: int, callbacks: int, fcr: float | None
) -> None:
    rows = [answered(NINE, 5, disposition=d) for d in dispositions]
    f = report(rows, tenant=T).tenant(T).total
    assert (f.resolved, f.callbacks_requested, f.fcr_pct) == (resolved, callbacks, fcr)


class TestCallbacks:
    """Deadlines in March 2026 judged at NOW = Thu 12 March, 12:00.

    a: due Wed 11th 18:00, open          -> due, overdue
    b: due Fri 13th 18:00, open          -> due, not overdue
    c: due Wed 11th 18:00, done 11th 10:00 -> done on time
    d: due Wed 11th 18:00, done 12th 09:00 -> done late
    e: call on Fri 27 Feb, due Mon 2 Mar 18:00, open -> due, overdue (the
       call itself is February's)
    f: call on Tue 31 Mar, due Wed 1 Apr 18:00, open -> April's
    Due 3 (a, b, e), overdue 2 (a, e), on time 1 of (1 + 1 late + 2 overdue).
    Requested (March arrivals with a callback): a, b, c, d, f = 5.
    """

    ROWS = (
        answered(
            utc(2026, 3, 10, 9, 0),
            5,
            disposition="callback",
            callback_due_at=utc(2026, 3, 11, 18, 0),
        ),
        answered(
            utc(2026, 3, 12, 9, 0),
            5,
            disposition="callback",
            callback_due_at=utc(2026, 3, 13, 18, 0),
        ),
        answered(
            utc(2026, 3, 10, 9, 0),
            5,
            disposition="callback",
            callback_due_at=utc(2026, 3, 11, 18, 0),
            callback_done_at=utc(2026, 3, 11, 10, 0),
        ),
        answered(
            utc(2026, 3, 10, 9, 0),
            5,
            disposition="callback",
            callback_due_at=utc(2026, 3, 11, 18, 0),
            callback_done_at=utc(2026, 3, 12, 9, 0),
        ),
        answered(
            utc(2026, 2, 27, 9, 0),
            5,
            disposition="callback",
            callback_due_at=utc(2026, 3, 2, 18, 0),
        ),
        answered(
            utc(2026, 3, 31, 9, 0),
            5,
            disposition="callback",
            callback_due_at=utc(2026, 4, 1, 18, 0),
        ),
    )

    def test_month(self) -> None:
        f = report(self.ROWS).tenant(T).total
        assert (f.callbacks_due, f.callbacks_overdue) == (3, 2)
        assert (f.callbacks_on_time, f.callbacks_late) == (1, 1)
        assert f.callback_on_time_pct == 25.0
        assert (f.calls, f.callbacks_requested) == (5, 5)

    def test_by_day_goes_by_deadline(self) -> None:
        r = report(self.ROWS, by="day")
        days = {b.label: b.figures for b in r.tenant(T).buckets}
        assert (days["2026-03-11"].callbacks_due, days["2026-03-11"].callbacks_overdue) == (1, 1)
        assert (days["2026-03-13"].callbacks_due, days["2026-03-13"].callbacks_overdue) == (1, 0)
        assert (days["2026-03-02"].callbacks_due, days["2026-03-02"].calls) == (1, 0)
        # the day the calls arrived has the calls, not the deadlines
        assert (days["2026-03-10"].calls, days["2026-03-10"].callbacks_due) == (3, 0)

    def test_now_before_the_deadlines(self) -> None:
        r = build_report(
            self.ROWS,
            start=date(2026, 3, 1),
            end=date(2026, 3, 31),
            tz=BERLIN,
            by=None,
            tenant=T,
            now=utc(2026, 3, 1, 0, 0),
        )
        f = r.tenant(T).total
        assert (f.callbacks_due, f.callbacks_overdue) == (3, 0)
        # c and d are done; nothing is overdue yet: 1 of 2
        assert f.callback_on_time_pct == 50.0

    def test_april(self) -> None:
        f = report(self.ROWS, start=date(2026, 4, 1), end=date(2026, 4, 30)).tenant(T).total
        assert (f.calls, f.callbacks_due, f.callbacks_overdue) == (0, 1, 0)


class TestDaylightSaving:
    """Local buckets across the switches of 2026 in Berlin.

    29 March: 02:00 CET -> 03:00 CEST at 01:00 UTC; the day runs from 28 March
    23:00 UTC to 29 March 22:00 UTC (23 h). 25 October: 03:00 CEST -> 02:00 CET
    at 01:00 UTC; the day runs from 24 October 22:00 UTC to 25 October 23:00 UTC
    (25 h), and 02:00-03:00 local happens twice.
    """

    @pytest.mark.parametrize(
        ("instant", "day"),
        [
            (datetime(2026, 3, 28, 22, 59, tzinfo=UTC), "2026-03-28"),  # 23:59 CET
            (datetime(2026, 3, 28, 23, 30, tzinfo=UTC), "2026-03-29"),  # 00:30 CET
            (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), "2026-03-29"),  # 03:30 CEST
            (datetime(2026, 3, 29, 21, 59, tzinfo=UTC), "2026-03-29"),  # 23:59 CEST
            (datetime(2026, 3, 29, 22, 0, tzinfo=UTC), "2026-03-30"),  # 00:00 CEST
            (datetime(2026, 10, 24, 21, 59, tzinfo=UTC), "2026-10-24"),  # 23:59 CEST
            (datetime(2026, 10, 24, 22, 0, tzinfo=UTC), "2026-10-25"),  # 00:00 CEST
            (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "2026-10-25"),  # 02:30 CEST
            (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "2026-10-25"),  # 02:30 CET
            (datetime(2026, 10, 25, 22, 59, tzinfo=UTC), "2026-10-25"),  # 23:59 CET
            (datetime(2026, 10, 25, 23, 0, tzinfo=UTC), "2026-10-26"),  # 00:00 CET
        ],
    )
    def test_local_day(self, instant: datetime, day: str) -> None:
        start = date.fromisoformat(day) - timedelta(days=1)
        r = report([answered(instant, 1)], start=start, end=start + timedelta(days=2), by="day")
        counts = {b.label: b.figures.calls for b in r.tenant(T).buckets}
        assert counts == {
            d: int(d == day)
            for d in (str(start), str(start + timedelta(days=1)), str(start + timedelta(days=2)))
        }

    @pytest.mark.parametrize(
        ("day", "hours", "missing", "twice"),
        [
            (date(2026, 3, 29), 23, "2026-03-29 02:00", None),
            (date(2026, 10, 25), 25, None, "2026-10-25 02:00"),
            (date(2026, 3, 10), 24, None, None),
        ],
    )
    def test_day_length(
        self, day: date, hours: int, missing: str | None, twice: str | None
    ) -> None:
        by_day = report([], start=day, end=day, by="day", tenant=T).tenant(T).buckets
        assert len(by_day) == 1
        # (in UTC: aware datetimes sharing a tzinfo subtract as wall times)
        assert (by_day[0].end.astimezone(UTC) - by_day[0].start.astimezone(UTC)) == timedelta(
            hours=hours
        )
        labels = [
            b.label for b in report([], start=day, end=day, by="hour", tenant=T).tenant(T).buckets
        ]
        assert len(labels) == len(set(labels)) == hours
        if missing:
            assert missing not in labels
        if twice:
            assert f"{twice} CEST" in labels
            assert f"{twice} CET" in labels
            assert twice not in labels
            assert labels.index(f"{twice} CEST") + 1 == labels.index(f"{twice} CET")

    @pytest.mark.parametrize(
        ("instant", "label"),
        [
            (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), "2026-03-29 01:00"),  # 01:30 CET
            (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), "2026-03-29 03:00"),  # 03:30 CEST
            (datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC), "2026-03-29 01:00"),
            (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "2026-03-29 03:00"),
            (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "2026-10-25 02:00 CEST"),
            (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "2026-10-25 02:00 CET"),
            (datetime(2026, 10, 25, 2, 30, tzinfo=UTC), "2026-10-25 03:00"),  # 03:30 CET
            (datetime(2026, 10, 24, 23, 30, tzinfo=UTC), "2026-10-25 01:00"),  # 01:30 CEST
        ],
    )
    def test_local_hour(self, instant: datetime, label: str) -> None:
        day = instant.astimezone(BERLIN).date()
        r = report([answered(instant, 1)], start=day, end=day, by="hour")
        hit = [b for b in r.tenant(T).buckets if b.figures.calls]
        assert [b.label for b in hit] == [label]
        assert hit[0].start <= instant < hit[0].end
        assert hit[0].end.astimezone(UTC) - hit[0].start.astimezone(UTC) == timedelta(hours=1)

    def test_period_bounds_are_local_midnights(self) -> None:
        assert period_range(date(2026, 10, 25), date(2026, 10, 25), BERLIN) == (
            datetime(2026, 10, 24, 22, 0, tzinfo=UTC),
            datetime(2026, 10, 25, 23, 0, tzinfo=UTC),
        )
        assert period_range(date(2026, 3, 29), date(2026, 3, 29), BERLIN) == (
            datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
            datetime(2026, 3, 29, 22, 0, tzinfo=UTC),
        )
        rows = [
            answered(datetime(2026, 10, 24, 21, 59, 59, tzinfo=UTC), 1),  # out
            answered(datetime(2026, 10, 24, 22, 0, tzinfo=UTC), 1),  # in
            answered(datetime(2026, 10, 25, 22, 59, 59, tzinfo=UTC), 1),  # in
            answered(datetime(2026, 10, 25, 23, 0, tzinfo=UTC), 1),  # out
        ]
        f = report(rows, start=date(2026, 10, 25), end=date(2026, 10, 25)).tenant(T).total
        assert f.calls == 2

    def test_months(self) -> None:
        rows = [
            answered(datetime(2026, 3, 31, 21, 59, tzinfo=UTC), 1),  # 23:59 CEST, March
            answered(datetime(2026, 3, 31, 22, 30, tzinfo=UTC), 1),  # 00:30 CEST, April
            answered(datetime(2026, 2, 28, 23, 30, tzinfo=UTC), 1),  # 00:30 CET, March
        ]
        r = report(rows, start=date(2026, 3, 1), end=date(2026, 4, 30), by="month")
        assert [(b.label, b.figures.calls) for b in r.tenant(T).buckets] == [
            ("2026-03", 2),
            ("2026-04", 1),
        ]

    def test_partial_month_bucket_is_clipped(self) -> None:
        r = report([], start=date(2026, 3, 10), end=date(2026, 3, 12), by="month", tenant=T)
        (bucket,) = r.tenant(T).buckets
        assert (bucket.start, bucket.end) == (
            datetime(2026, 3, 10, tzinfo=BERLIN),
            datetime(2026, 3, 13, tzinfo=BERLIN),
        )


class TestEmpty:
    ZERO_COUNTS = (
        "calls",
        "offered",
        "answered",
        "abandoned",
        "closed_hours",
        "rejected",
        "callbacks_due",
        "callbacks_overdue",
    )
    NONE_FIGURES = (
        "sl_answered_pct",
        "sl_offered_pct",
        "mean_wait_s",
        "p90_wait_s",
        "mean_talk_s",
        "via_115_pct",
        "fcr_pct",
        "callback_on_time_pct",
    )

    def check_empty(self, f: Figures) -> None:
        for name in self.ZERO_COUNTS:
            assert getattr(f, name) == 0, name
        for name in self.NONE_FIGURES:
            assert getattr(f, name) is None, name

    @pytest.mark.parametrize("by", [None, "hour", "day", "month"])
    def test_empty_period(self, by: Granularity | None) -> None:
        r = report([], by=by, tenant=T)
        self.check_empty(r.tenant(T).total)
        self.check_empty(r.total)
        expected = {None: 0, "hour": 31 * 24 - 1, "day": 31, "month": 1}[by]
        assert len(r.tenant(T).buckets) == expected
        for b in r.tenant(T).buckets:
            self.check_empty(b.figures)
        # every renderer copes with None everywhere
        assert format_table(r)
        assert format_csv(r)
        assert json.loads(format_json(r))["total"]["sl_offered_pct"] is None
        assert monthly_invoice_csv(r, T)

    def test_no_rows_no_tenants(self) -> None:
        r = report([])
        assert r.tenants == ()
        self.check_empty(r.total)
        assert len(list(csv.reader(io.StringIO(format_csv(r)), delimiter=";"))) == 2

    def test_tenant_without_calls_is_listed(self) -> None:
        r = report(MIXED, tenants=["ganderkesee", T], by="day")
        assert [p.tenant for p in r.tenants] == ["", "ganderkesee", T]
        self.check_empty(r.tenant("ganderkesee").total)
        assert len(r.tenant("ganderkesee").buckets) == 31
        assert r.tenant(T).total.calls == 7

    def test_rows_outside_the_period_only(self) -> None:
        r = report(MIXED, start=date(2026, 4, 1), end=date(2026, 4, 30), tenant=T)
        self.check_empty(r.tenant(T).total)

    def test_unknown_tenant_in_report(self) -> None:
        with pytest.raises(KeyError):
            report([]).tenant("nowhere")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": date(2026, 3, 2), "end": date(2026, 3, 1)}, "before it starts"),
        ({"by": "week"}, "unknown granularity"),
        ({"now": datetime(2026, 3, 1)}, "timezone-aware"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "start": date(2026, 3, 1),
        "end": date(2026, 3, 31),
        "tz": BERLIN,
        "by": None,
        "tenant": None,
        "now": NOW,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_report([], **args)


def german_number(text: str) -> float | None:
    return None if text == "" else float(text.replace(",", "."))


class TestCsv:
    def test_header_is_stable(self) -> None:
        # Spreadsheets read the columns by position: existing ones never move.
        text = format_csv(report([], tenants=["ganderkesee"]))
        assert text.splitlines()[0].split(";") == [
            "tenant", "bucket", "bucket_start", "bucket_end", "threshold_s",
            "short_abandon_s", "calls", "offered", "answered", "answered_within", "abandoned",
            "short_abandoned", "other_offered", "not_queued", "closed_hours", "rejected",
            "via_115", "sl_answered_pct", "sl_offered_pct", "mean_wait_s", "p90_wait_s",
            "mean_talk_s", "via_115_pct", "resolved", "callbacks_requested", "fcr_pct",
            "callbacks_due", "callbacks_overdue", "callbacks_on_time", "callbacks_late",
            "callback_on_time_pct", "virtual_hold_offered", "virtual_hold_accepted",
            "virtual_hold_connected", "virtual_hold_failed", "virtual_hold_pending",
            "virtual_hold_mean_to_connect_s", "virtual_hold_p90_to_connect_s",
        ]  # fmt: skip

    def test_every_figure_is_a_column(self) -> None:
        # A counter added to Figures but not to FIGURES would be missing from the CSV.
        names = {f.name for f in fields(Figures)} | set(PCT_FIELDS)
        assert set(FIGURES) == names and len(FIGURES) == len(names)
        assert set(PCT_FIELDS) == {n for n in dir(Figures) if n.endswith("_pct")}

    def test_round_trip(self) -> None:
        r = report(MIXED, tenants=["ganderkesee"], by="day")
        text = format_csv(r)
        assert text.startswith("tenant;bucket;")
        assert "\r\n" in text
        rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";"))
        assert tuple(rows[0]) == CSV_COLUMNS
        # 3 tenants x (31 days + total) + the all-tenants total
        assert len(rows) == 3 * 32 + 1
        day = next(x for x in rows if x["tenant"] == T and x["bucket"] == "2026-03-10")
        assert day["bucket_start"] == "2026-03-10T00:00:00+01:00"
        assert day["bucket_end"] == "2026-03-11T00:00:00+01:00"
        assert (day["calls"], day["offered"], day["answered"], day["short_abandoned"]) == (
            "7",
            "6",
            "4",
            "1",
        )
        assert day["sl_answered_pct"] == "75,00"
        assert day["sl_offered_pct"] == "60,00"
        assert day["via_115_pct"] == "28,57"  # 28.571... truncated
        assert day["fcr_pct"] == "66,66"  # 66.666... truncated, not rounded up
        assert day["mean_wait_s"] == "13,8"  # 13.75
        assert day["p90_wait_s"] == "25,0"
        assert day["threshold_s"] == "20"
        empty_day = next(x for x in rows if x["tenant"] == T and x["bucket"] == "2026-03-11")
        assert (empty_day["calls"], empty_day["sl_offered_pct"], empty_day["mean_wait_s"]) == (
            "0",
            "",
            "",
        )
        total = rows[-1]
        assert (total["tenant"], total["bucket"], total["calls"], total["rejected"]) == (
            "*",
            "total",
            "8",
            "1",
        )
        tenant_total = next(x for x in rows if x["tenant"] == T and x["bucket"] == "total")
        assert german_number(tenant_total["sl_offered_pct"]) == 60.0
        assert tenant_total["bucket_start"] == "2026-03-01T00:00:00+01:00"
        assert tenant_total["bucket_end"] == "2026-04-01T00:00:00+02:00"
        # the totals rows add up the buckets
        for col in ("calls", "offered", "answered", "abandoned", "closed_hours"):
            per_day = sum(int(x[col]) for x in rows if x["tenant"] == T and x["bucket"] != "total")
            assert per_day == int(tenant_total[col])

    def test_machine_dialect(self) -> None:
        text = format_csv(report(MIXED), delimiter=",", decimal=".")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows[-1]["sl_offered_pct"] == "60.00"
        assert rows[-1]["mean_wait_s"] == "13.8"

    def test_bom(self) -> None:
        text = format_csv(report([]), bom=True)
        assert text.startswith("\ufefftenant;")
        decoded = text.encode("utf-8").decode("utf-8-sig")
        assert next(csv.reader(io.StringIO(decoded), delimiter=";"))[0] == "tenant"

    def test_truncated_not_rounded(self) -> None:
        # 7996 of 10000 within = 79.96 %; 79995/100000 would round up to 80.00.
        f = Figures(answered=100_000, answered_within=79_995, offered=100_000)
        r = replace(report([]), total=f)
        last = list(csv.DictReader(io.StringIO(format_csv(r)), delimiter=";"))[-1]
        assert last["sl_answered_pct"] == "79,99"

    def test_semicolons_and_quotes_in_tenant_survive(self) -> None:
        r = report([answered(NINE, 1, tenant='a;"b"')])
        rows = list(csv.DictReader(io.StringIO(format_csv(r)), delimiter=";"))
        assert rows[0]["tenant"] == 'a;"b"'


class TestInvoice:
    def test_round_trip(self) -> None:
        r = report(MIXED, by="day")
        text = monthly_invoice_csv(r, T)
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
        assert tuple(rows[0]) == INVOICE_COLUMNS
        assert len(rows) == 1 + 31 + 1
        assert rows[1][:2] == [T, "01.03.2026"]
        assert rows[-1][1] == "Summe"
        summe = dict(zip(INVOICE_COLUMNS, rows[-1], strict=True))
        assert summe["Anrufe gesamt"] == "7"
        assert summe["Angeboten (Warteschlange)"] == "6"
        assert summe["Servicelevel angenommen (%)"] == "75,00"
        assert summe["Servicelevel angeboten (%)"] == "60,00"
        assert summe["davon Kurzaufleger"] == "1"
        assert summe["Außerhalb Öffnungszeiten"] == "1"
        assert summe["Erstlösungsquote (%)"] == "66,66"
        assert summe["Mittlere Gesprächsdauer (s)"] == "170,0"
        assert summe["Abgewiesen"] == "0"
        tuesday = dict(zip(INVOICE_COLUMNS, rows[10], strict=True))
        assert tuesday["Zeitraum"] == "10.03.2026"
        assert tuesday["Anrufe gesamt"] == "7"

    def test_unknown_tenant(self) -> None:
        with pytest.raises(KeyError):
            monthly_invoice_csv(report(MIXED), "nowhere")


def vhold(
    call_id: str,
    arrived: datetime,
    state: VHoldState,
    *,
    accepted_s: float | None = 60,
    connected_s: float | None = None,
    tenant: str = T,
) -> VirtualHold:
    """A hold as the store gives it back: only what the report reads is set by hand."""
    h = offered(
        node="n1", call_id=call_id, tenant=tenant, queue="sc", priority=0,
        caller="+4915112345678", arrived_at=arrived, at=arrived + timedelta(seconds=30),
    )  # fmt: skip
    return replace(
        h,
        state=state,
        accepted_at=None if accepted_s is None else arrived + timedelta(seconds=accepted_s),
        connected_at=None if connected_s is None else arrived + timedelta(seconds=connected_s),
    )


class TestVirtualHoldColumns:
    """The virtual-hold figures of CSV and invoice (by the call's arrival)."""

    ELEVEN = utc(2026, 3, 11, 10, 0)
    HOLDS = (
        # Tuesday 10 March: accepted after 60 s, connected 300 s and 100.4 s later.
        vhold("a", NINE, VHoldState.CONNECTED, connected_s=360),
        vhold("b", NINE, VHoldState.CONNECTED, connected_s=160.4),
        vhold("c", NINE, VHoldState.TICKET),
        vhold("d", NINE, VHoldState.OFFERED, accepted_s=None),
        # Wednesday 11 March: accepted, still waiting for the callback.
        vhold("e", ELEVEN, VHoldState.WAITING),
        # Another tenant: accepted, then cancelled (only counted as accepted).
        vhold("f", NINE, VHoldState.CANCELLED, tenant="ganderkesee"),
        # 1 April 00:30 in Berlin (still 31 March in UTC): outside the period.
        vhold("g", utc(2026, 4, 1, 0, 30), VHoldState.CONNECTED, connected_s=100),
    )
    VH = (
        "virtual_hold_offered", "virtual_hold_accepted", "virtual_hold_connected",
        "virtual_hold_failed", "virtual_hold_pending", "virtual_hold_mean_to_connect_s",
        "virtual_hold_p90_to_connect_s",
    )  # fmt: skip

    def rows(self, **kw: Any) -> list[dict[str, str]]:
        text = format_csv(report(MIXED, by="day", holds=self.HOLDS, **kw))
        return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";"))

    def cells(self, rows: list[dict[str, str]], tenant: str, bucket: str) -> list[str]:
        row = next(x for x in rows if x["tenant"] == tenant and x["bucket"] == bucket)
        return [row[c] for c in self.VH]

    def test_csv_by_day_with_decimal_comma(self) -> None:
        rows = self.rows()
        # mean (300 + 100.4) / 2 = 200.2; p90 of two by nearest rank: the larger
        assert self.cells(rows, T, "2026-03-10") == ["4", "3", "2", "1", "0", "200,2", "300,0"]
        assert self.cells(rows, T, "2026-03-11") == ["1", "1", "0", "0", "1", "", ""]
        assert self.cells(rows, T, "2026-03-12") == ["0", "0", "0", "0", "0", "", ""]
        assert self.cells(rows, T, "total") == ["5", "4", "2", "1", "1", "200,2", "300,0"]
        assert self.cells(rows, "ganderkesee", "total") == ["1", "1", "0", "0", "0", "", ""]
        assert self.cells(rows, "*", "total") == ["6", "5", "2", "1", "1", "200,2", "300,0"]

    def test_holds_do_not_change_the_call_figures(self) -> None:
        # Counting a call answered by callback is answered_by_callback's job.
        kw: dict[str, Any] = {"by": "day", "tenants": ["ganderkesee"]}
        without = format_csv(report(MIXED, **kw)).splitlines()
        with_holds = format_csv(report(MIXED, holds=self.HOLDS, **kw)).splitlines()
        assert len(with_holds) == len(without)
        n = len(CSV_COLUMNS) - len(self.VH)
        assert [x.split(";")[:n] for x in with_holds] == [x.split(";")[:n] for x in without]

    def test_one_tenant(self) -> None:
        rows = self.rows(tenant=T)
        assert {x["tenant"] for x in rows} == {T, "*"}
        assert self.cells(rows, "*", "total")[:5] == ["5", "4", "2", "1", "1"]

    def test_json_carries_them_in_every_bucket(self) -> None:
        doc = json.loads(format_json(report(MIXED, by="day", tenant=T, holds=self.HOLDS)))
        tuesday = doc["tenants"][0]["buckets"][9]
        assert (tuesday["virtual_hold_connected"], tuesday["virtual_hold_failed"]) == (2, 1)
        assert tuesday["virtual_hold_mean_to_connect_s"] == 200.2

    def test_invoice_header_is_stable(self) -> None:
        assert INVOICE_COLUMNS == (
            "Mandant", "Zeitraum", "Anrufe gesamt", "Angeboten (Warteschlange)", "Angenommen",
            "Angenommen innerhalb Schwelle", "Schwelle (s)", "Servicelevel angenommen (%)",
            "Servicelevel angeboten (%)", "Aufgelegt", "davon Kurzaufleger",
            "Außerhalb Öffnungszeiten", "Über 115 (%)", "Mittlere Wartezeit (s)",
            "90%-Wartezeit (s)", "Mittlere Gesprächsdauer (s)", "Beim Erstkontakt erledigt",
            "Rückruf vereinbart", "Erstlösungsquote (%)", "Rückrufe offen fällig",
            "Rückrufe überfällig", "Rückrufe fristgerecht (%)", "Abgewiesen",
            "Rückruf statt Warten angeboten", "Rückruf statt Warten angenommen",
            "Rückruf statt Warten verbunden",
            "Rückruf statt Warten nicht erreicht (Rückrufauftrag)", "Rückruf statt Warten offen",
            "Mittlere Zeit bis Rückruf (s)", "90%-Zeit bis Rückruf (s)",
        )  # fmt: skip

    def test_invoice(self) -> None:
        text = monthly_invoice_csv(report(MIXED, by="day", holds=self.HOLDS), T, bom=True)
        decoded = text.encode("utf-8").decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(decoded, newline=""), delimiter=";"))
        tuesday, summe = rows[10], rows[-1]
        assert tuesday[1] == "10.03.2026" and summe[1] == "Summe"
        assert tuesday[-7:] == ["4", "3", "2", "1", "0", "200,2", "300,0"]
        assert summe[-7:] == ["5", "4", "2", "1", "1", "200,2", "300,0"]
        assert summe[2] == "7"  # the call columns stay where they were

    def test_report_command_passes_the_holds_to_csv_and_invoice(self) -> None:
        rules, _ = load_rules(EXAMPLE)
        args: dict[str, Any] = {"start": date(2026, 3, 1), "end": date(2026, 3, 31), "now": NOW}
        journal = FakeJournal(list(MIXED))
        text = run_report_cli(journal, rules, fmt="csv", holds=self.HOLDS, **args)
        rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
        assert self.cells(rows, T, "total")[:5] == ["5", "4", "2", "1", "1"]
        text = run_report_cli(
            journal, rules, fmt="invoice", tenant=T, by="day", holds=self.HOLDS, **args
        )
        summe = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))[-1]
        assert summe[-7:-2] == ["5", "4", "2", "1", "1"]


class TestRendering:
    def test_table(self) -> None:
        text = format_table(report(MIXED, tenants=["ganderkesee"]))
        lines = text.splitlines()
        assert "answered within 20 s" in lines[0]
        assert lines[1].split()[:4] == ["tenant", "period", "calls", "offered"]
        wardenburg = next(line for line in lines if line.startswith(T))
        cells = wardenburg.split()
        # calls offered answ aband short SL ans% SL off%
        assert cells[2:9] == ["7", "6", "4", "2", "1", "75.0", "60.0"]
        assert "(no tenant)" in text
        assert lines[-1].startswith("(all)")

    def test_json(self) -> None:
        doc = json.loads(format_json(report(MIXED, by="day", tenant=T)))
        assert doc["period"] == {
            "start": "2026-03-01",
            "end": "2026-03-31",
            "timezone": "Europe/Berlin",
            "by": "day",
        }
        total = doc["tenants"][0]["total"]
        assert (total["offered"], total["sl_offered_pct"], total["fcr_pct"]) == (6, 60.0, 66.66)
        assert total["p90_wait_s"] == 25.0
        assert len(doc["tenants"][0]["buckets"]) == 31
        assert doc["tenants"][0]["buckets"][9]["bucket"] == "2026-03-10"


def test_month_range_and_period_range() -> None:
    assert month_range(2026, 2) == (date(2026, 2, 1), date(2026, 2, 28))
    assert month_range(2028, 2) == (date(2028, 2, 1), date(2028, 2, 29))
    assert month_range(2026, 12) == (date(2026, 12, 1), date(2026, 12, 31))
    first, after = period_range(date(2026, 3, 1), date(2026, 3, 31), BERLIN)
    assert after == datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
    assert first == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)


class FakeJournal:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.asked: list[tuple[datetime, datetime, str | None]] = []
        self.asked_due: list[tuple[datetime, datetime, str | None]] = []

    def calls_between(self, start: datetime, end: datetime, tenant: str | None = None) -> list[Row]:
        self.asked.append((start, end, tenant))
        return [
            r
            for r in self.rows
            if start <= r.arrived_at < end and (tenant is None or r.tenant == tenant)
        ]

    def callbacks_due_between(
        self, start: datetime, end: datetime, tenant: str | None = None
    ) -> list[Row]:
        self.asked_due.append((start, end, tenant))
        return [
            r
            for r in self.rows
            if r.disposition == "callback"
            and r.callback_due_at is not None
            and start <= r.callback_due_at < end
            and (tenant is None or r.tenant == tenant)
        ]


def test_report_rows_gives_each_row_once() -> None:
    march = FakeJournal([*MIXED, *TestCallbacks.ROWS])
    rows = list(report_rows(march, date(2026, 3, 1), date(2026, 3, 31), BERLIN))
    arrived = [r for r in march.rows if date(2026, 3, 1) <= r.arrived_at.date() < date(2026, 4, 1)]
    # March's calls (a-d with deadlines in March among them) once, plus e (February's)
    assert len(rows) == len(arrived) + 1
    assert rows[-1].arrived_at == TestCallbacks.ROWS[4].arrived_at


class TestCli:
    @pytest.fixture
    def journal(self) -> FakeJournal:
        return FakeJournal([*MIXED, *TestCallbacks.ROWS])

    def run(self, journal: FakeJournal, **kw: Any) -> str:
        rules, _ = load_rules(EXAMPLE)
        args: dict[str, Any] = {"start": date(2026, 3, 1), "end": date(2026, 3, 31), "now": NOW}
        args.update(kw)
        return run_report_cli(journal, rules, **args)

    def test_all_tenants_listed(self, journal: FakeJournal) -> None:
        doc = json.loads(self.run(journal, fmt="json"))
        assert [t["tenant"] for t in doc["tenants"]] == [
            "",
            "friesland",
            "ganderkesee",
            "oldenburg",
            "wardenburg",
            "wilhelmshaven",
        ]
        # February's call (callback due 2 March) is fetched by its deadline
        assert doc["tenants"][4]["total"]["callbacks_due"] == 3
        march = (
            datetime(2026, 2, 28, 23, 0, tzinfo=UTC),
            datetime(2026, 3, 31, 22, 0, tzinfo=UTC),
            None,
        )
        assert journal.asked == journal.asked_due == [march]

    def test_invoice(self, journal: FakeJournal) -> None:
        text = self.run(journal, fmt="invoice", tenant=T, by="day")
        assert text.startswith("\ufeffMandant;")
        assert journal.asked[0][2] == T

    def test_csv_has_bom(self, journal: FakeJournal) -> None:
        assert self.run(journal, fmt="csv").startswith("\ufefftenant;")

    def test_table(self, journal: FakeJournal) -> None:
        assert "wilhelmshaven" in self.run(journal)

    @pytest.mark.parametrize(
        ("kw", "message"),
        [
            ({"fmt": "xml"}, "unknown format"),
            ({"tenant": "nowhere"}, "unknown tenant"),
            ({"fmt": "invoice"}, "give a tenant"),
            ({"threshold_s": -1}, "negative"),
            ({"start": date(2026, 4, 1)}, "before it starts"),
        ],
    )
    def test_errors(self, journal: FakeJournal, kw: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            self.run(journal, **kw)


# ------------------------------------------------------- callbacks due long after the call

FAR_RULES = """
timezone: Europe/Berlin
calendars:
  town:
    hours: {mon-fri: ["08:00-16:00"]}
    # a year-long closure (the longest the rules allow), e.g. a town hall rebuilt
    closed: ["2026-03-02..2027-03-02"]
queues:
  sc: {queue: servicecenter}
tenants:
  wardenburg:
    name: Gemeinde Wardenburg
    dids: ["+49 4407 73-0"]
    calendar: town
    open: {queue: sc}
    callback: {working_days: 10}
unknown_did: {reject: {}}
"""


def far_callback_report(store: JournalStore) -> None:
    """A callback due more than a year after the call counts in its deadline's month.

    Called on Fri 27 Feb 2026; ten working days after it, with the town hall
    closed from 2 March 2026 to 2 March 2027, is Tue 16 March 2027. A report
    for March 2027 (starting a year after the call: far beyond any fixed
    look-back) lists it as due and, at ``now`` after the deadline, overdue;
    one for February 2026 counts the request.
    """
    from pbxbridge.config import parse_rules

    rules = parse_rules(FAR_RULES, "far.yaml")[0]
    town = rules.tenants[T]
    arrived = utc(2026, 2, 27, 11, 0)
    due = town.calendar.end_of_working_day(date(2026, 2, 27), 10, rules.timezone)
    assert due == datetime(2027, 3, 16, 16, 0, tzinfo=BERLIN)
    store.upsert(
        [
            entry(
                "far",
                tenant=T,
                arrived_at=arrived,
                queued_at=arrived,
                answered_at=arrived + timedelta(seconds=5),
                outcome="answered",
                wait_s=5.0,
            )
        ]
    )
    store.upsert([entry("near", tenant=T, arrived_at=utc(2027, 3, 3, 9, 0))])
    assert store.set_disposition(
        "n1", "far", "callback", "agent1", "", "+4944170000", due, arrived + timedelta(minutes=2)
    )
    now = datetime(2027, 3, 20, 12, 0, tzinfo=BERLIN)

    def totals(month: tuple[date, date], **kw: Any) -> dict[str, Any]:
        text = run_report_cli(store, rules, start=month[0], end=month[1], fmt="json", now=now, **kw)
        (tenant,) = json.loads(text)["tenants"]
        return dict(tenant["total"])

    march = totals(month_range(2027, 3))
    assert (march["calls"], march["callbacks_due"], march["callbacks_overdue"]) == (1, 1, 1)
    assert march["callbacks_requested"] == 0  # requested in February 2026
    assert totals(month_range(2027, 3), tenant=T)["callbacks_overdue"] == 1
    february = totals(month_range(2026, 2))
    assert (february["calls"], february["callbacks_requested"], february["callbacks_due"]) == (
        1,
        1,
        0,
    )
    # done late: on time 0, late 1 in March 2027
    assert store.mark_callback_done("n1", "far", datetime(2027, 3, 18, 9, 0, tzinfo=BERLIN))
    march = totals(month_range(2027, 3))
    assert (march["callbacks_due"], march["callbacks_late"], march["callbacks_on_time"]) == (
        0,
        1,
        0,
    )


def test_a_callback_due_long_after_the_call_sqlite(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "journal.sqlite") as store:
        far_callback_report(store)
