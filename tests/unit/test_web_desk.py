"""Agent desk: pops per agent, streams, wrap-up into the journal, callback deadlines.

Real pieces throughout: the example rules (``config/routing.yaml``: Lower Saxony
holidays, 24.12. and 31.12. closed), CallTracker fed with AMI events, the SQLite
journal. Also the helpers the web server tests use (imported from here).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import jsonschema
import pytest

from pbxbridge.config import load_rules
from pbxbridge.core import Call, route
from pbxbridge.core.rules import Rules
from pbxbridge.core.virtual_hold import VHoldState, VirtualHold
from pbxbridge.journal.entry import entry_from_record
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.journal.store import CallRow
from pbxbridge.tracking.call_tracker import CallTracker
from pbxbridge.web.desk import (
    MAX_CARDS_PER_AGENT,
    STREAM_QUEUE,
    AgentDesk,
    DeskError,
    JournalLink,
    callback_due,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
BERLIN = ZoneInfo("Europe/Berlin")
NODE = "node1"
AGENT_SCHEMA = json.loads(
    resources.files("pbxbridge.schemas").joinpath("screenpop.schema.json").read_text("utf-8")
)


def local(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=BERLIN)


class Clock:
    """A settable "now" (aware)."""

    def __init__(self, now: datetime) -> None:
        self.now = now.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now.astimezone(UTC)

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def cards(desk: AgentDesk, agent: str) -> list[dict[str, Any]]:
    """The cards on an agent's desk."""
    return cast(list[dict[str, Any]], desk.snapshot(agent)["cards"])


def example_rules() -> Rules:
    return load_rules(EXAMPLE)[0]


class Bench:
    """CallTracker → desk, with a real SQLite journal written like the daemon would.

    Args:
        tmp_path: Where the journal lives.
        rules: The rules.
        clock: The desk's and the pops' clock.
        journal: Give the desk a journal link.
    """

    def __init__(self, tmp_path: Path, rules: Rules, clock: Clock, journal: bool = True) -> None:
        self.rules = rules
        self.clock = clock
        self.db = tmp_path / "journal.sqlite"
        self.store = SqliteJournal(self.db)
        self.link = JournalLink(lambda: SqliteJournal(self.db), NODE) if journal else None
        # The numbers of each callback ticket, as the open-callback look-up is told them.
        self.told: list[tuple[str | None, str | None]] = []
        self.desk = AgentDesk(
            lambda: rules,
            lambda: self.link,
            clock=clock,
            not_journalled_wait_s=0.3,
            on_callback=lambda caller, number: self.told.append((caller, number)),
        )
        self.journal_writes = True
        self.pops = CallTracker(
            None,
            clock=clock,
            local=self.desk.deliver,
            on_record=self._record,
            repeat_calls=lambda number: 2,
        )

    def _record(self, record: Any, event: Any) -> None:
        if self.journal_writes:
            self.store.upsert([entry_from_record(record, NODE)])

    def ev(self, name: str, uid: str, **fields: str) -> None:
        self.pops.ami_event({"Event": name, "Uniqueid": uid, "Queue": "servicecenter", **fields})

    def ring(
        self,
        uid: str,
        agent: str,
        did: str = "04407730",
        caller: str = "0441 1234567",
        name: str = "Jörg Müller",
    ) -> None:
        decision = route(
            Call(did=did, caller=caller, caller_name=name), self.rules, local(2026, 11, 25)
        )
        self.pops.routed(uid, decision)
        self.ev("QueueCallerJoin", uid, Position="1")
        self.clock.tick(2)
        self.ev("AgentCalled", uid, MemberName=agent, Interface=f"PJSIP/{agent}")

    def answer(self, uid: str, agent: str) -> None:
        self.clock.tick(1)
        self.ev("AgentConnect", uid, MemberName=agent, HoldTime="3")

    def end(self, uid: str, agent: str) -> None:
        self.clock.tick(30)
        self.ev("AgentComplete", uid, MemberName=agent, HoldTime="3", TalkTime="30")

    def answered_call(self, uid: str, agent: str = "agent1", **kw: str) -> None:
        self.ring(uid, agent, **kw)
        self.answer(uid, agent)
        self.end(uid, agent)

    def row(self, call_id: str) -> CallRow:
        rows = list(
            self.store.calls_between(
                datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
            )
        )
        return next(r for r in rows if r.call_id == call_id)

    def close(self) -> None:
        self.store.close()


@pytest.fixture(scope="module")
def rules() -> Rules:
    return example_rules()


@pytest.fixture
def bench(tmp_path: Path, rules: Rules) -> Iterator[Bench]:
    b = Bench(tmp_path, rules, Clock(local(2026, 11, 25)))
    yield b
    b.close()


# ------------------------------------------------------------------ deadlines


class TestCallbackDue:
    """End of the next working day of the tenant's calendar (example rules)."""

    @pytest.mark.parametrize(
        ("day", "due"),
        [
            (date(2026, 11, 25), local(2026, 11, 26, 18)),  # Wed → Thu
            (date(2026, 5, 8), local(2026, 5, 11, 18)),  # Friday → Monday
            (date(2026, 5, 9), local(2026, 5, 11, 18)),  # Saturday → Monday
            (date(2026, 5, 13), local(2026, 5, 15, 18)),  # before Christi Himmelfahrt
            (date(2026, 4, 2), local(2026, 4, 7, 18)),  # Gründonnerstag → Easter → Tue
            (date(2026, 12, 23), local(2026, 12, 28, 18)),  # 24.12. closed, 25./26. holidays
            (date(2026, 12, 30), local(2027, 1, 4, 18)),  # 31.12. closed, 01.01., weekend
            (date(2026, 10, 30), local(2026, 11, 2, 18)),  # Reformationstag (NI) is Sat 31.10.
        ],
    )
    def test_servicecenter_calendar(self, rules: Rules, day: date, due: datetime) -> None:
        assert callback_due(rules, "wardenburg", day) == due

    def test_friesland_short_friday_and_its_closed_range(self, rules: Rules) -> None:
        assert callback_due(rules, "friesland", date(2026, 11, 26)) == local(2026, 11, 27, 14)
        assert callback_due(rules, "friesland", date(2026, 12, 22)) == local(2026, 12, 23, 18)
        assert callback_due(rules, "friesland", date(2026, 12, 23)) == local(2027, 1, 4, 18)

    def test_working_days_per_tenant(self, tmp_path: Path) -> None:
        text = EXAMPLE.read_text(encoding="utf-8").replace(
            '    screen_pop: {url: "https://kb.example.org/search?tenant={tenant}&caller={caller}"}\n'
            "\n  wardenburg:",
            '    screen_pop: {url: "https://kb.example.org/search?tenant={tenant}&caller={caller}"}\n'
            "    callback: {working_days: 2}\n\n  wardenburg:",
        )
        assert "working_days: 2" in text
        path = tmp_path / "routing.yaml"
        path.write_text(text, encoding="utf-8")
        two = load_rules(path)[0]
        assert two.tenants["oldenburg"].callback_working_days == 2
        assert callback_due(two, "oldenburg", date(2026, 5, 8)) == local(2026, 5, 12, 18)
        assert callback_due(two, "wardenburg", date(2026, 5, 8)) == local(2026, 5, 11, 18)

    def test_unknown_tenant(self, rules: Rules) -> None:
        with pytest.raises(DeskError) as info:
            callback_due(rules, "atlantis", date(2026, 5, 8))
        assert info.value.key == "err_tenant_unknown"


# ------------------------------------------------------------------ pops


class TestPops:
    def test_cards_follow_the_call_per_agent(self, bench: Bench) -> None:
        bench.ring("1.1", "agent1")
        shown = cards(bench.desk, "agent1")
        assert len(shown) == 1
        assert shown[0]["state"] == "ringing"
        pop = shown[0]["pop"]
        jsonschema.validate(pop, AGENT_SCHEMA)
        assert pop["tenant"]["name"] == "Gemeinde Wardenburg"
        assert pop["caller"]["number"] == "+494411234567"
        assert cards(bench.desk, "agent2") == []
        bench.answer("1.1", "agent1")
        assert cards(bench.desk, "agent1")[0]["state"] == "answered"
        bench.end("1.1", "agent1")
        assert cards(bench.desk, "agent1")[0]["state"] == "wrapup"

    def test_unanswered_ring_leaves_no_card(self, bench: Bench) -> None:
        bench.ring("1.2", "agent1")
        bench.ev("AgentRingNoAnswer", "1.2", MemberName="agent1", RingTime="4")
        bench.ev("AgentCalled", "1.2", MemberName="agent2")
        assert cards(bench.desk, "agent1") == []
        assert [c["state"] for c in cards(bench.desk, "agent2")] == ["ringing"]

    def test_duplicate_and_late_pops(self, bench: Bench) -> None:
        bench.ring("1.3", "agent1")
        bench.answer("1.3", "agent1")
        ringing = {**cards(bench.desk, "agent1")[0]["pop"], "event": "ringing"}
        bench.desk.deliver("agent1", ringing)  # at-least-once: a late duplicate
        assert cards(bench.desk, "agent1")[0]["state"] == "answered"
        bench.desk.deliver("agent1", {"event": "bogus", "call_id": "1.3"})
        bench.desk.deliver("agent1", {"event": "ringing"})  # no call id
        bench.desk.deliver("", {"event": "ringing", "call_id": "x"})
        assert len(cards(bench.desk, "agent1")) == 1

    def test_cards_bounded(self, bench: Bench) -> None:
        for i in range(MAX_CARDS_PER_AGENT + 10):
            bench.desk.deliver("agent1", {"event": "answered", "call_id": f"c{i}"})
        shown = cards(bench.desk, "agent1")
        assert len(shown) == MAX_CARDS_PER_AGENT
        assert shown[-1]["pop"]["call_id"] == f"c{MAX_CARDS_PER_AGENT + 9}"

    async def test_streams_only_get_their_agents_pops(self, bench: Bench) -> None:
        one = bench.desk.subscribe("agent1")
        two = bench.desk.subscribe("agent2")
        assert (await one.queue.get())[0] == "snapshot"  # type: ignore[index]
        assert (await two.queue.get())[0] == "snapshot"  # type: ignore[index]
        bench.ring("2.1", "agent1")
        name, data = await one.queue.get()  # type: ignore[misc]
        assert name == "pop" and json.loads(data)["event"] == "ringing"
        assert two.queue.empty()
        bench.desk.unsubscribe(one)
        bench.desk.unsubscribe(two)
        assert bench.desk.stream_count == 0

    async def test_stream_gets_the_end_of_an_unanswered_ring(self, bench: Bench) -> None:
        # The phone rang and was not picked up: the page must take the ringing
        # card away (the ended pop used to be lost in a KeyError).
        stream = bench.desk.subscribe("agent1")
        assert (await stream.queue.get())[0] == "snapshot"  # type: ignore[index]
        bench.desk.deliver("agent1", {"event": "ringing", "call_id": "9.1"})
        bench.desk.deliver("agent1", {"event": "ended", "call_id": "9.1"})
        events = [json.loads(stream.queue.get_nowait()[1])["event"] for _ in range(2)]  # type: ignore[index]
        assert events == ["ringing", "ended"]
        assert bench.desk.delivered == 2
        assert cards(bench.desk, "agent1") == []

    async def test_slow_stream_gets_a_snapshot_not_a_backlog(self, bench: Bench) -> None:
        stream = bench.desk.subscribe("agent1")
        for i in range(STREAM_QUEUE * 3):
            bench.desk.deliver("agent1", {"event": "ringing", "call_id": f"r{i}"})
        assert stream.queue.qsize() <= STREAM_QUEUE
        assert stream.resyncs >= 1
        items = [stream.queue.get_nowait() for _ in range(stream.queue.qsize())]
        assert any(item is not None and item[0] == "snapshot" for item in items)

    async def test_stream_limit_and_end(self, bench: Bench) -> None:
        streams = [bench.desk.subscribe("agent1", f"s{i}") for i in range(7)]
        assert bench.desk.stream_count == 5
        assert streams[0].queue.get_nowait() is None  # the oldest was ended
        bench.desk.end_session_streams("s6")
        assert bench.desk.stream_count == 4
        bench.desk.end_streams()
        assert bench.desk.stream_count == 0


# ------------------------------------------------------------------ wrap-up


class TestDispose:
    async def test_callback_on_a_friday(self, bench: Bench) -> None:
        bench.clock.set(local(2026, 5, 8, 11))
        bench.answered_call("3.1")
        saved = await bench.desk.dispose("agent1", "3.1", "callback", "Bauantrag", "0441 555-12")
        assert saved.due_local == local(2026, 5, 11, 18)
        row = bench.row("3.1")
        assert row.disposition == "callback" and row.disposition_by == "agent1"
        assert row.callback_number == "+4944155512"
        assert row.callback_due_at == local(2026, 5, 11, 18)
        assert row.disposition_note == "Bauantrag"
        assert cards(bench.desk, "agent1") == []
        # the caller's and the callback number: their cached "no open callback" goes
        assert bench.told == [("+494411234567", "+4944155512")]
        await bench.desk.close()

    async def test_callback_leg_wraps_up_the_original_calls_row(self, bench: Bench) -> None:
        # The caller took a virtual hold and hung up: one journal row.
        decision = route(Call(did="04407730", caller="0441 1234567"), bench.rules, bench.clock())
        bench.pops.routed("3.9", decision)
        bench.ev("QueueCallerJoin", "3.9", Position="1")
        bench.clock.tick(40)
        bench.ev("Hangup", "3.9")
        hold = VirtualHold(
            node=NODE,
            call_id="3.9",
            tenant="wardenburg",
            queue="servicecenter",
            priority=5,
            arrived_at=bench.clock(),
            offered_at=bench.clock(),
            accepted_at=bench.clock(),
            updated_at=bench.clock(),
            state=VHoldState.WAITING,
            number="+4944155512",
            dial="044155512",
        )
        bench.clock.tick(300)
        placeholder = "Local/3.9@pbxbridge-vhold-place-00000001;2"
        for name in ("AgentCalled", "AgentConnect", "AgentComplete"):
            bench.clock.tick(1)
            bench.pops.callback_leg(
                {"Event": name, "Uniqueid": "9.1", "Channel": placeholder, "MemberName": "agent1"},
                hold,
                tenant_name="Gemeinde Wardenburg",
                greeting="",
            )
        (card,) = cards(bench.desk, "agent1")
        assert card["state"] == "wrapup"
        assert card["pop"]["virtual_hold"]["number"] == "+4944155512"
        saved = await bench.desk.dispose("agent1", "3.9", "resolved", "zurückgerufen", "")
        assert saved.call_id == "3.9"
        assert bench.row("3.9").disposition == "resolved"
        rows = bench.store.calls_between(
            datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        )
        assert [r.call_id for r in rows] == ["3.9"]  # the leg made no row of its own
        await bench.desk.close()

    async def test_local_date_not_utc_date(self, bench: Bench) -> None:
        # Thu 07.05.2026 22:30 UTC is Fri 00:30 in Berlin: due Monday, not Friday.
        bench.clock.set(datetime(2026, 5, 7, 22, 30, tzinfo=UTC))
        bench.answered_call("3.2")
        saved = await bench.desk.dispose("agent1", "3.2", "callback", "", "+49 441 1234567")
        assert saved.due_local == local(2026, 5, 11, 18)
        await bench.desk.close()

    async def test_a_failing_callback_hook_keeps_the_ticket(self, bench: Bench) -> None:
        def broken(caller: str | None, number: str | None) -> None:
            raise RuntimeError("look-up gone")

        bench.desk._on_callback = broken
        bench.answered_call("3.5")
        saved = await bench.desk.dispose("agent1", "3.5", "callback", "", "0441 555-12")
        assert saved.disposition == "callback"
        assert bench.row("3.5").callback_number == "+4944155512"
        assert cards(bench.desk, "agent1") == []
        await bench.desk.close()

    async def test_resolved(self, bench: Bench) -> None:
        bench.answered_call("3.3")
        saved = await bench.desk.dispose("agent1", "3.3", "resolved", "Auskunft erteilt", "")
        assert saved.due_local is None
        row = bench.row("3.3")
        assert row.disposition == "resolved" and row.callback_due_at is None
        assert row.callback_number is None
        assert bench.told == []  # no ticket, nothing to forget
        await bench.desk.close()

    async def test_wrapup_while_still_talking(self, bench: Bench) -> None:
        bench.ring("3.4", "agent1")
        bench.answer("3.4", "agent1")
        saved = await bench.desk.dispose("agent1", "3.4", "resolved", "", "")
        assert saved.disposition == "resolved"
        await bench.desk.close()

    @pytest.mark.parametrize(
        ("agent", "call_id", "disposition", "note", "number", "status", "key"),
        [
            ("agent1", "4.1", "maybe", "", "", 400, "err_disposition"),
            ("agent1", "4.1", "callback", "x" * 501, "0441 1", 400, "err_note_long"),
            ("agent1", "4.1", "callback", "", "", 400, "err_number_missing"),
            ("agent1", "4.1", "callback", "", "call me maybe", 400, "err_number_invalid"),
            ("agent1", "4.1", "callback", "", "0" * 60, 400, "err_number_invalid"),
            ("agent2", "4.1", "resolved", "", "", 404, "err_unknown_call"),  # not agent2's
            ("agent1", "4.9", "resolved", "", "", 404, "err_unknown_call"),
        ],
    )
    async def test_refused_and_nothing_stored(
        self,
        bench: Bench,
        agent: str,
        call_id: str,
        disposition: str,
        note: str,
        number: str,
        status: int,
        key: str,
    ) -> None:
        bench.answered_call("4.1")
        with pytest.raises(DeskError) as info:
            await bench.desk.dispose(agent, call_id, disposition, note, number)
        assert (info.value.status, info.value.key) == (status, key)
        assert bench.row("4.1").disposition is None
        assert len(cards(bench.desk, "agent1")) == 1
        await bench.desk.close()

    async def test_note_of_exactly_500_characters(self, bench: Bench) -> None:
        bench.answered_call("4.2")
        await bench.desk.dispose("agent1", "4.2", "resolved", "ä" * 500, "")
        assert bench.row("4.2").disposition_note == "ä" * 500
        await bench.desk.close()

    async def test_call_not_journalled_yet(self, bench: Bench) -> None:
        bench.journal_writes = False
        bench.answered_call("4.3")
        with pytest.raises(DeskError) as info:
            await bench.desk.dispose("agent1", "4.3", "resolved", "", "")
        assert (info.value.status, info.value.key) == (409, "err_not_journalled")
        assert len(cards(bench.desk, "agent1")) == 1
        await bench.desk.close()

    async def test_journal_written_while_waiting(self, bench: Bench) -> None:
        bench.journal_writes = False
        bench.answered_call("4.4")
        record_rows = list(bench.pops.records.values())
        assert record_rows == []  # ended: the record is gone, the journal writer is "late"

        async def late_write() -> None:
            await asyncio.sleep(0.1)
            bench.journal_writes = True
            bench.ring("4.4", "agent9")  # any change writes the row

        task = asyncio.ensure_future(late_write())
        bench.desk._wait_s = 2.0
        saved = await bench.desk.dispose("agent1", "4.4", "resolved", "", "")
        await task
        assert saved.disposition == "resolved"
        await bench.desk.close()

    async def test_without_journal(self, tmp_path: Path, rules: Rules) -> None:
        b = Bench(tmp_path, rules, Clock(local(2026, 11, 25)), journal=False)
        b.answered_call("5.1")
        assert b.desk.snapshot("agent1")["journal"] is False
        assert len(cards(b.desk, "agent1")) == 1
        with pytest.raises(DeskError) as info:
            await b.desk.dispose("agent1", "5.1", "resolved", "", "")
        assert (info.value.status, info.value.key) == (503, "journal_missing")
        with pytest.raises(DeskError):
            await b.desk.callbacks("agent1", False, None)
        await b.desk.refresh_figures()
        assert b.desk.figures == {}
        b.close()

    async def test_journal_unreachable(self, tmp_path: Path, rules: Rules) -> None:
        b = Bench(tmp_path, rules, Clock(local(2026, 11, 25)))

        def broken() -> SqliteJournal:
            raise OSError("database is away")

        b.link = JournalLink(broken, NODE)
        b.answered_call("5.2")
        with pytest.raises(DeskError) as info:
            await b.desk.dispose("agent1", "5.2", "resolved", "", "")
        assert (info.value.status, info.value.key) == (503, "err_journal_down")
        b.close()


# ------------------------------------------------------------------ callbacks


class TestCallbacks:
    async def test_buckets_ownership_and_done(self, bench: Bench) -> None:
        # Three callbacks of agent1 on different days, one of agent2.
        for uid, day in (
            ("6.1", local(2026, 5, 4)),
            ("6.2", local(2026, 5, 7)),
            ("6.3", local(2026, 5, 8)),
        ):
            bench.clock.set(day)
            bench.answered_call(uid)
            await bench.desk.dispose("agent1", uid, "callback", f"note {uid}", "0441 12345")
        bench.clock.set(local(2026, 5, 8))
        bench.answered_call("6.4", agent="agent2")
        await bench.desk.dispose("agent2", "6.4", "callback", "", "0441 12345")
        # Now Fri 08.05. 12:00: 6.1 (due Tue 05.05.) overdue, 6.2 due today 18:00,
        # 6.3 due Mon 11.05.
        bench.clock.set(local(2026, 5, 8, 12))
        view = await bench.desk.callbacks("agent1", False, None)
        assert [(i.row.call_id, i.bucket) for i in view.items] == [
            ("6.1", "overdue"),
            ("6.2", "due_today"),
            ("6.3", "open_later"),
        ]
        counts = view.counts["wardenburg"]
        assert (counts.open, counts.due_today, counts.overdue) == (4, 1, 1)
        supervisor = await bench.desk.callbacks("agent3", True, "wardenburg")
        assert len(supervisor.items) == 4
        assert (await bench.desk.callbacks("agent1", False, "oldenburg")).items == []

        with pytest.raises(DeskError) as info:
            await bench.desk.mark_done("agent1", False, NODE, "6.4")  # agent2's
        assert (info.value.status, info.value.key) == (403, "err_callback_foreign")
        assert bench.row("6.4").callback_done_at is None
        with pytest.raises(DeskError) as info:
            await bench.desk.mark_done("agent1", False, NODE, "nope")
        assert info.value.status == 404
        await bench.desk.mark_done("agent1", False, NODE, "6.1")
        assert bench.row("6.1").callback_done_at == bench.clock.now
        with pytest.raises(DeskError) as info:
            await bench.desk.mark_done("agent1", False, NODE, "6.1")  # done already
        assert info.value.status == 404
        await bench.desk.mark_done("agent3", True, NODE, "6.4")  # supervisor
        await bench.desk.refresh_figures()
        assert bench.desk.figures["wardenburg"].open == 2
        assert bench.desk.figures["wardenburg"].overdue == 0
        assert bench.desk.figures["oldenburg"].open == 0
        await bench.desk.close()

    async def test_overdue_figures_move_with_time(self, bench: Bench) -> None:
        bench.clock.set(local(2026, 12, 30, 9))
        bench.answered_call("7.1")
        saved = await bench.desk.dispose("agent1", "7.1", "callback", "", "0441 12345")
        assert saved.due_local == local(2027, 1, 4, 18)
        await bench.desk.refresh_figures()
        assert bench.desk.figures["wardenburg"].overdue == 0
        bench.clock.set(local(2027, 1, 4, 17, 59))
        await bench.desk.refresh_figures()
        assert bench.desk.figures["wardenburg"].due_today == 1
        bench.clock.set(local(2027, 1, 4, 18, 0))
        await bench.desk.refresh_figures()
        assert bench.desk.figures["wardenburg"].overdue == 1
        await bench.desk.close()
