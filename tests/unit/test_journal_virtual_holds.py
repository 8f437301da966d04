"""Virtual holds in the journal: service level of callbacks, figures, tickets, repeat callers."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pbxbridge.cli import run_report_cli
from pbxbridge.config import load_rules
from pbxbridge.core.virtual_hold import (
    VHoldEvent,
    VirtualHold,
    VirtualHoldPolicy,
    check_callback_number,
    offered,
    step,
)
from pbxbridge.journal.entry import Outcome
from pbxbridge.journal.report import build_report
from pbxbridge.journal.retention import purge_older_than
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.virtual_holds import (
    TICKET_BY,
    answered_by_callback,
    as_json,
    format_table,
    open_callback_since,
    record_ticket,
    virtual_hold_figures,
)
from pbxbridge.storage.virtual_holds import SqliteVirtualHoldStore
from tests.unit.test_journal_report import EXAMPLE, abandoned, answered, call_row
from tests.unit.test_journal_store import entry

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 12, 9, 0, tzinfo=BERLIN).astimezone(UTC)
NOW = datetime(2026, 3, 12, 18, 0, tzinfo=BERLIN)
POLICY = VirtualHoldPolicy(enabled=True, max_tries=1)
NUMBER = "+4915112345678"


def hold(call_id: str, *, tenant: str = "wardenburg", node: str = "n1") -> VirtualHold:
    return offered(
        node=node,
        call_id=call_id,
        tenant=tenant,
        queue="sc",
        priority=0,
        caller=NUMBER,
        arrived_at=T0,
        at=T0 + timedelta(seconds=60),
    )


def accepted(h: VirtualHold, after_s: float = 70) -> VirtualHold:
    number = check_callback_number(NUMBER)
    at = T0 + timedelta(seconds=after_s)
    h = step(h, VHoldEvent.ACCEPTED, at=at, policy=POLICY, number=number, position=2)
    return step(h, VHoldEvent.PLACEHOLDER_QUEUED, at=at, policy=POLICY)


def calling(h: VirtualHold, at_s: float) -> VirtualHold:
    at = T0 + timedelta(seconds=at_s)
    h = step(h, VHoldEvent.AGENT_REACHED, at=at, policy=POLICY, agent="anna")
    return step(h, VHoldEvent.CALLING, at=at, policy=POLICY)


def connected(h: VirtualHold, at_s: float) -> VirtualHold:
    h = calling(h, at_s - 10)
    return step(h, VHoldEvent.CITIZEN_ANSWERED, at=T0 + timedelta(seconds=at_s), policy=POLICY)


def ticket(h: VirtualHold) -> VirtualHold:
    h = calling(h, 300)
    due = datetime(2026, 3, 13, 18, 0, tzinfo=BERLIN)
    at = T0 + timedelta(seconds=330)
    return step(
        h, VHoldEvent.CITIZEN_FAILED, at=at, policy=POLICY, outcome="noanswer", ticket_due_at=due
    )


class TestJournalVirtualHolds:
    def test_a_call_answered_by_callback_is_answered_with_the_wait_to_connection(self) -> None:
        # Queued at T0, hung up after accepting at 70 s, citizen connected at 400 s.
        row = replace(abandoned(T0, 70), call_id="cb")
        h = connected(accepted(hold("cb")), 400)
        (got,) = answered_by_callback([row], {("n1", "cb"): h})
        assert got.answered_at == T0 + timedelta(seconds=400)
        assert got.wait_s == 400.0
        assert got.outcome == Outcome.ANSWERED and got.agent == "anna"

    def test_in_the_report(self) -> None:
        rows = [
            replace(answered(T0, 10), call_id="fast"),  # within 20 s
            replace(abandoned(T0, 70), call_id="cb"),  # callback connected after 400 s
            replace(abandoned(T0, 80), call_id="tk"),  # callback became a ticket
            replace(abandoned(T0, 15), call_id="gone"),  # a plain abandon
        ]
        holds = {
            ("n1", "cb"): connected(accepted(hold("cb")), 400),
            ("n1", "tk"): ticket(accepted(hold("tk"))),
        }
        report = build_report(
            answered_by_callback(rows, holds),
            start=date(2026, 3, 12),
            end=date(2026, 3, 12),
            tz=BERLIN,
            by=None,
            tenant=None,
            now=NOW,
        )
        f = report.total
        assert (f.offered, f.answered, f.answered_within) == (4, 2, 1)
        assert (f.abandoned, f.other_offered) == (1, 1)

    def test_rows_without_an_accepted_hold_pass_unchanged(self) -> None:
        row = replace(abandoned(T0, 70), call_id="x")
        only_offered = hold("x")
        assert list(answered_by_callback([row], {("n1", "x"): only_offered})) == [row]
        assert list(answered_by_callback([row], {})) == [row]

    def test_figures_per_tenant(self) -> None:
        holds = [
            hold("a"),  # offered, declined or still waiting itself
            connected(accepted(hold("b"), after_s=100), 400),  # 300 s to connection
            connected(accepted(hold("c"), after_s=100), 200),  # 100 s
            ticket(accepted(hold("d"))),
            accepted(hold("e")),  # pending
            accepted(hold("f", tenant="friesland")),
        ]
        per, total = virtual_hold_figures(holds, tenants=["oldenburg"])
        w = per["wardenburg"]
        assert (w.offered, w.accepted, w.connected, w.failed, w.pending) == (5, 4, 2, 1, 1)
        assert w.mean_to_connect_s == 200.0 and w.p90_to_connect_s == 300.0
        assert per["oldenburg"].offered == 0 and per["oldenburg"].mean_to_connect_s is None
        assert (total.offered, total.accepted, total.pending) == (6, 5, 2)
        assert list(per) == ["friesland", "oldenburg", "wardenburg"]
        assert as_json(per, total)["total"] == total.as_dict()
        table = format_table(per, total)
        assert "wardenburg" in table and "200" in table and "300" in table

    def test_a_ticket_goes_on_the_callback_list(self, tmp_path: Path) -> None:
        with SqliteJournal(tmp_path / "j.sqlite") as journal:
            journal.upsert([entry("tk", arrived_at=T0, queued_at=T0)])
            h = ticket(accepted(hold("tk")))
            assert record_ticket(journal, h, at=T0 + timedelta(seconds=330))
            (row,) = journal.open_callbacks("wardenburg")
            assert row.call_id == "tk" and row.disposition == "callback"
            assert row.callback_number == NUMBER and row.disposition_by == TICKET_BY
            assert row.callback_due_at == datetime(2026, 3, 13, 18, 0, tzinfo=BERLIN)
            assert row.disposition_note is not None and "1 Versuch" in row.disposition_note
            assert not record_ticket(journal, replace(h, call_id="unknown"), at=T0)

    def test_open_callback_since_the_oldest(self) -> None:
        pending = accepted(hold("p"), after_s=500)
        cb = call_row(arrived_at=T0 - timedelta(days=1), disposition="callback")
        cb = replace(cb, callback_number=NUMBER, disposition_at=T0 - timedelta(hours=20))
        done = replace(cb, callback_done_at=T0, disposition_at=T0 - timedelta(days=3))
        other = replace(cb, callback_number="+4930123456", disposition_at=T0 - timedelta(days=5))
        got = open_callback_since(NUMBER, holds=[pending], callbacks=[cb, done, other])
        assert got == T0 - timedelta(hours=20)
        assert open_callback_since(NUMBER, holds=[pending], callbacks=[]) == pending.accepted_at
        assert open_callback_since("+4930999", holds=[], callbacks=[cb]) is None

    def test_report_command_shows_virtual_holds_apart(self, tmp_path: Path) -> None:
        rules = load_rules(EXAMPLE)[0]
        with SqliteJournal(tmp_path / "j.sqlite") as journal:
            journal.upsert(
                [
                    entry("cb", arrived_at=T0, queued_at=T0, outcome="abandoned", wait_s=70.0),
                    entry("tk", arrived_at=T0, queued_at=T0, outcome="abandoned", wait_s=80.0),
                ]
            )
            holds = [connected(accepted(hold("cb")), 400), ticket(accepted(hold("tk")))]
            day = date(2026, 3, 12)

            def run(fmt: str, given: list[VirtualHold], tenant: str | None = None) -> str:
                return run_report_cli(
                    journal, rules, start=day, end=day, now=NOW, fmt=fmt, holds=given, tenant=tenant
                )

            data = json.loads(run("json", holds))
            table = run("table", holds)
            offering = json.loads(run("json", []))
            plain = json.loads(run("json", [], tenant="wilhelmshaven"))
        wardenburg = data["virtual_holds"]["tenants"]["wardenburg"]
        assert (wardenburg["offered"], wardenburg["connected"], wardenburg["failed"]) == (2, 1, 1)
        assert wardenburg["mean_to_connect_s"] == 330.0
        assert "Virtual hold" in table
        # The example's Wardenburg offers virtual hold: listed with zeros.
        assert list(offering["virtual_holds"]["tenants"]) == ["wardenburg"]
        assert offering["virtual_holds"]["total"]["offered"] == 0
        assert "virtual_holds" not in plain  # Wilhelmshaven does not offer it, no holds

    def test_purge_takes_the_virtual_holds_along(self, tmp_path: Path) -> None:
        with (
            SqliteJournal(tmp_path / "j.sqlite") as journal,
            SqliteVirtualHoldStore(tmp_path / "state.sqlite") as store,
        ):
            journal.upsert([entry("cb", arrived_at=T0)])
            store.save(connected(accepted(hold("cb")), 400))
            store.save(accepted(hold("pending")))
            purge_older_than(journal, days=1, now=T0 + timedelta(days=2), holds=store)
            done, pending = store.get("n1", "cb"), store.get("n1", "pending")
        assert done is not None and done.number is None and done.caller is None
        assert pending is not None and pending.number == NUMBER
