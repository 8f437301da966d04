"""Virtual hold ("Rückruf statt Warten") against the real Asterisk, with the real daemon.

sipp plays the carrier (callers), the agents and the citizens called back
(endpoint ``citizen``, reached through the test bed's ``testbed-citizens``
outbound context). Agents are "busy" by being paused in the ``vhold`` queue
(whose ``context`` option lets a caller leave with ``1``) and "free up" by
being unpaused; the order in which callers are served is read from
Asterisk's own ``queue_log`` (``ENTERQUEUE`` carries the calling number,
``CONNECT`` the agent), the citizens' phones from the ``TestbedCitizen``
UserEvent the outbound context sends, and the holds' journal from the
daemon's durable store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.core.virtual_hold import VHoldState
from tests.browser import CHROMIUM, Chromium, chromium_available
from tests.integration.daemon import DaemonProcess, running_daemon
from tests.integration.test_screenpops_real import Subscriber
from tests.integration.test_web_real import sign_in
from tests.integration.vhold_calls import (
    CONFIRM,
    Callers,
    agent1,
    citizen,
    e164,
    holds,
    joined,
    national,
    pause,
    pending,
    running,
    served,
    wait_for,
    waiting,
)
from tests.testbed.sipp import SippAgent
from tests.testbed.testbed import Testbed
from tests.testbed.vhold_rules import PRIORITY_DID, vhold_rules
from tests.unit.test_web_server import write_agents

pytestmark = [pytest.mark.asterisk, pytest.mark.mosquitto]


def vhold_ready(h: dict[str, object]) -> bool:
    hold = h.get("virtual_hold")
    return isinstance(hold, dict) and hold.get("ari") == "connected"


@pytest.fixture
def answer_on_join(tb: Testbed) -> Iterator[None]:
    """sipp sends DTMF as SIP INFO, which needs an answered call (see pbxbridge.conf)."""
    tb.cli("dialplan set global PBXBRIDGE_VHOLD_ANSWER 1")
    yield
    tb.cli("dialplan set global PBXBRIDGE_VHOLD_ANSWER 0")


RULES = vhold_rules(retry_after=3)
"""A retry 3 s after a failed try: time enough for the test to swap the citizen's phone."""


def ready(h: dict[str, Any]) -> bool:
    """Both of the daemon's Asterisk connections up (again, after a restart of either)."""
    return vhold_ready(h) and h["ami"]["state"] == "connected" and h["ari"]["state"] == "connected"


class SharedDaemon:
    """One daemon for the module's tests (a start and stop each cost seconds).

    Each test reads only what it made: the holds of calls that arrived since
    it began (``since``), the log lines written since. A test that kills,
    stops or restarts the daemon leaves it to the next one to start it again;
    one that left holds still owed a callback (a failed test) gets the next
    test a fresh daemon, in a fresh directory, so they cannot come back in it.
    """

    def __init__(self, tb: Testbed, workdirs: pytest.TempPathFactory) -> None:
        self._tb = tb
        self._workdirs = workdirs
        self.daemon: DaemonProcess | None = None

    def ready(self) -> DaemonProcess:
        d = self.daemon
        if d is not None:
            workdir = d.workdir
            try:
                wait_for("no hold pending", lambda: not pending(workdir), 5)
            except AssertionError:
                self.stop()
                d = None
        if d is None:
            d = DaemonProcess(self._tb, self._workdirs.mktemp("vhold"), rules=RULES)
            self.daemon = d
        if d.proc is None or d.proc.poll() is not None:
            d.start()
        d.wait_health(ready, 30)
        return d

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None


@pytest.fixture(scope="module")
def shared_daemon(
    testbed: Testbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedDaemon]:
    shared = SharedDaemon(testbed, tmp_path_factory)
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def since() -> datetime:
    """When the test began: what arrived before is an earlier test's."""
    return datetime.now(UTC)


@pytest.fixture
def daemon(
    tb: Testbed, shared_daemon: SharedDaemon, answer_on_join: None, since: datetime
) -> DaemonProcess:
    return shared_daemon.ready()


class TestVirtualHold:
    def test_b_takes_the_callback_and_is_served_between_a_and_c(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        pops = Subscriber(daemon.mqtt_port, daemon.topic_prefix)
        with tb.ami() as ami:
            callers.call("A", national(1), hold_ms=90_000)
            joined(tb, mark, 1)
            # B presses 1 in the queue, then 1 to confirm the number read back
            # (and no #: Read() takes the 1 after its 5 s wait for more digits)
            callers.call("B", national(2), dtmf="11")
            joined(tb, mark, 2)
            callers.call("C", national(3), hold_ms=90_000)
            # B's placeholder joined; B's own call has ended (B hung up on "we call back")
            wait_for(
                "B's placeholder in the queue",
                lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir, since)),
                20,
            )
            wait_for("B's call ended", lambda: "B" in callers.results, 20)
            assert waiting(tb) == 3  # A, B's placeholder, C
            with agent1(tb, citizen()):
                pause(tb, 1, paused=False)
                wait_for("three served", lambda: len(served(tb, mark)) >= 3, 60)
                wait_for(
                    "B connected",
                    lambda: holds(daemon.workdir, since)[0].state is VHoldState.CONNECTED,
                    20,
                )
            citizens = [
                e.get("Number")
                for e in ami.events_named("UserEvent")
                if e.get("UserEvent") == "TestbedCitizen"
            ]
            # The agent's screen pops: A's call, B's callback leg (marked, with
            # the number to call), C's call; one journal row each, none for the leg.
            pops.wait(
                lambda: len([m for m in pops.agent("agent1") if m["event"] == "answered"]) >= 3, 20
            )
        callers.join()
        pops.close()
        assert served(tb, mark) == [e164(1), national(2), e164(3)]
        assert citizens == [national(2)]
        (hold,) = holds(daemon.workdir, since)
        assert hold.number == e164(2)
        pops.validate_all()
        answered = [m for m in pops.agent("agent1") if m["event"] == "answered"]
        assert [m["caller"]["number"] for m in answered] == [e164(1), e164(2), e164(3)]
        assert ["virtual_hold" in m for m in answered] == [False, True, False]
        leg = answered[1]
        assert leg["call_id"] == hold.call_id
        assert leg["tenant"]["name"] == "Gemeinde Rückruf"
        assert leg["virtual_hold"]["number"] == e164(2)
        assert leg["virtual_hold"]["try"] == 1
        assert hold.accepted_at is not None
        assert leg["virtual_hold"]["requested_at"] == hold.accepted_at.isoformat()
        assert 0 <= leg["virtual_hold"]["waited_s"] < 60
        ringing = [m for m in pops.agent("agent1") if m["event"] == "ringing"]
        assert [("virtual_hold" in m) for m in ringing] == [False, True, False]
        assert [e[1] for e in hold.events] == [
            "offered",
            "accepted",
            "placeholder_queued",
            "agent_reached",
            "calling",
            "citizen_answered",
        ]
        assert callers.results["B"].ok

    def test_daemon_killed_while_three_placeholders_wait(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        callers = Callers()
        for n in (1, 2, 3):
            callers.call(f"caller{n}", national(n), dtmf=CONFIRM)
            time.sleep(0.4)
        wait_for(
            "three placeholders",
            lambda: sum(h.state is VHoldState.WAITING for h in holds(daemon.workdir, since)) == 3,
            30,
        )
        daemon.kill9()
        assert waiting(tb) == 3
        mark = len(tb.queue_log())
        # Asterisk alone: agents free up, all three citizens are called back
        with agent1(tb, citizen()):
            pause(tb, 1, paused=False)
            wait_for(
                "three callbacks connected",
                lambda: len(served(tb, mark)) >= 3,
                60,
            )
            wait_for("queue empty", lambda: waiting(tb) == 0, 20)
        assert sorted(served(tb, mark)) == [national(n) for n in (1, 2, 3)]
        # the daemon, restarted, reads what happened while it was away
        daemon.start()
        daemon.wait_health(ready, 15)
        wait_for(
            "journal shows all connected",
            lambda: (
                sorted(h.state for h in holds(daemon.workdir, since)) == [VHoldState.CONNECTED] * 3
            ),
            20,
        )
        callers.join()
        for hold in holds(daemon.workdir, since):
            assert [e[1] for e in hold.events][-3:] == [
                "agent_reached",
                "calling",
                "citizen_answered",
            ]
            assert hold.connected_at is not None and hold.wait_s is not None

    def test_citizen_busy_then_no_answer_becomes_a_ticket_due_next_working_day(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        pops = Subscriber(daemon.mqtt_port, daemon.topic_prefix)
        callers = Callers()
        callers.call("B", national(2), dtmf=CONFIRM)
        wait_for(
            "placeholder",
            lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir, since)),
            30,
        )
        mark = len(tb.queue_log())
        with running(tb, SippAgent.for_agent(1, "answer", ring_delay_ms=100)):
            with running(tb, SippAgent.for_citizen("reject")):
                pause(tb, 1, paused=False)
                wait_for(
                    "first try failed",
                    lambda: holds(daemon.workdir, since)[0].state is VHoldState.RETRY_WAIT,
                    30,
                )
            with running(tb, SippAgent.for_citizen("noanswer")):
                wait_for(
                    "ticket", lambda: holds(daemon.workdir, since)[0].state is VHoldState.TICKET, 60
                )
        callers.join()
        (hold,) = holds(daemon.workdir, since)
        assert [a.outcome for a in hold.attempts] == ["busy", "noanswer"]
        # the retry went to the head of the queue, an agent took it each time
        assert served(tb, mark) == [national(2), national(2)]
        # end of the next working day: the always-open calendar closes tomorrow
        # at 24:00, i.e. midnight at the start of the day after, Berlin time
        assert hold.ticket_due_at is not None
        berlin = ZoneInfo("Europe/Berlin")
        failed = hold.updated_at.astimezone(berlin)
        midnight = datetime.combine(failed.date() + timedelta(days=2), dt_time(0), berlin)
        assert hold.ticket_due_at == midnight
        # on the agent page's callbacks list: the call's disposition in the journal
        wait_for("ticket in the journal", lambda: callback_open(daemon.workdir, hold.call_id), 20)
        # The agent saw both tries as callback legs.
        legs = [m for m in pops.agent("agent1") if m["event"] == "ringing"]
        assert [m["virtual_hold"]["try"] for m in legs] == [1, 2]
        assert {m["caller"]["number"] for m in legs} == {e164(2)}
        # B calls again: the agent's pop says a callback is open. The daemon
        # reuses the look-up made for B's first call ("none open") for 60 s
        # (journal/open_callbacks.py; the expiry is unit-tested in
        # test_journal_lookup.py). Rather than wait that out, the daemon is
        # restarted: it looks B up afresh, in the journal and store it left.
        assert daemon.stop() == 0
        daemon.start()
        daemon.wait_health(ready, 15)
        again = Callers()

        def plain_ringing() -> list[dict[str, object]]:
            return [
                m
                for m in pops.agent("agent1")
                if "virtual_hold" not in m and m["event"] == "ringing"
            ]

        with running(tb, SippAgent.for_agent(1, "answer", ring_delay_ms=100)):
            again.call("B again", national(2), hold_ms=1500)
            pops.wait(lambda: bool(plain_ringing()), 30)
            again.join()
        pops.close()
        pops.validate_all()
        (call,) = plain_ringing()
        caller = call["caller"]
        assert isinstance(caller, dict) and caller["number"] == e164(2)
        note = call["open_callback"]
        assert isinstance(note, str) and note.startswith("offener Rückruf vom ")

    def test_ten_callbacks_one_free_agent_never_two_citizens_at_once(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        callers = Callers()
        for n in range(10):
            callers.call(f"c{n}", f"0440712340{n}", dtmf=CONFIRM)
            time.sleep(0.3)
        wait_for(
            "ten placeholders",
            lambda: sum(h.state is VHoldState.WAITING for h in holds(daemon.workdir, since)) == 10,
            60,
        )
        callers.join()
        with tb.ami() as ami:
            with agent1(tb, citizen()):
                pause(tb, 1, paused=False)
                wait_for(
                    "all connected",
                    lambda: (
                        sum(h.state is VHoldState.CONNECTED for h in holds(daemon.workdir, since))
                        == 10
                    ),
                    150,
                )
            events = list(ami.events)
        # Citizens being called at the same time: +1 at the TestbedCitizen UserEvent
        # (the outbound leg starts), -1 when that leg hangs up.
        legs: set[str] = set()
        peak = 0
        for e in events:
            if e.get("Event") == "UserEvent" and e.get("UserEvent") == "TestbedCitizen":
                legs.add(e.get("Uniqueid", ""))
                peak = max(peak, len(legs))
            elif e.get("Event") == "Hangup" and e.get("Uniqueid") in legs:
                legs.discard(e.get("Uniqueid", ""))
        assert peak == 1
        assert sum(1 for e in events if e.get("UserEvent") == "TestbedCitizen") == 10

    def test_a_higher_priority_caller_still_goes_first(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        callers.call("A", national(1))
        joined(tb, mark, 1)
        callers.call("B", national(2), dtmf=CONFIRM)
        wait_for(
            "B's placeholder",
            lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir, since)),
            30,
        )
        # H calls the tenant with priority 9 after B's placeholder joined
        callers.call("H", national(8), did=PRIORITY_DID)
        wait_for("A, placeholder, H waiting", lambda: waiting(tb) == 3, 20)
        with agent1(tb, citizen()):
            pause(tb, 1, paused=False)
            wait_for("three served", lambda: len(served(tb, mark)) >= 3, 60)
        callers.join()
        assert served(tb, mark) == [e164(8), e164(1), national(2)]

    @pytest.mark.parametrize(
        ("entry", "problem"),
        [
            ("09001234567#" * 2, "premium"),
            ("110#" * 2, "emergency"),
            ("0441#" * 2, "too few digits"),
            ("04A1234567#" * 2, "letters (SIP INFO Signal=A)"),
            ("", "no input at all"),
        ],
    )
    def test_bad_entry_twice_back_to_the_place_and_served(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime, entry: str, problem: str
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        callers.call("A", national(1))
        joined(tb, mark, 1)
        callers.call("B", national(2), dtmf="1" + entry)
        joined(tb, mark, 2)
        callers.call("C", national(3))
        wait_for(
            f"B back after {problem}",
            lambda: any(
                "entry_failed" in [e[1] for e in h.events] for h in holds(daemon.workdir, since)
            ),
            60,
        )
        wait_for("B queued again", lambda: waiting(tb) == 3, 10)
        with agent1(tb):
            pause(tb, 1, paused=False)
            wait_for("three served", lambda: len(served(tb, mark)) >= 3, 60)
        callers.join()
        # B went back to the same place: between A and C, and nobody was called back
        assert served(tb, mark) == [e164(1), e164(2), e164(3)]
        (hold,) = holds(daemon.workdir, since)
        assert hold.state is VHoldState.OFFERED and hold.number is None
        assert [e[1] for e in hold.events] == ["offered", "entry_failed"]

    def test_hang_up_in_the_middle_of_the_number(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime
    ) -> None:
        errors = daemon.health()["virtual_hold"]["errors"]  # the daemon's since it started
        pause(tb, 1, 2, 3, 4)
        callers = Callers()
        callers.call("B", national(2), dtmf="10440", hold_ms=500)
        callers.join(60)
        assert callers.results["B"].ok
        wait_for("no channel left", lambda: tb.active_channels() == 0, 15)
        (hold,) = holds(daemon.workdir, since)
        assert hold.state is VHoldState.OFFERED and hold.number is None
        assert daemon.health()["virtual_hold"]["errors"] == errors

    def test_asterisk_restarted_while_a_placeholder_waits(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        callers = Callers()
        callers.call("B", national(2), dtmf=CONFIRM)
        wait_for(
            "placeholder",
            lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir, since)),
            30,
        )
        callers.join(60)
        with running(
            tb, SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen()
        ):
            tb.cli("core restart now")  # the placeholder goes with it; agents come back unpaused
            wait_for(
                "re-queued and connected",
                lambda: holds(daemon.workdir, since)[0].state is VHoldState.CONNECTED,
                60,
            )
        (hold,) = holds(daemon.workdir, since)
        events = [e[1] for e in hold.events]
        assert "lost" in events and events[-1] == "citizen_answered"
        assert events.count("retry_queued") == 1

    def test_the_fastagi_entry_point_offers_it_too(
        self, tb: Testbed, daemon: DaemonProcess, since: datetime
    ) -> None:
        logged = len(daemon.logs())
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        # 127.0.0.5: the carrier into [pbxbridge-agi] (FreePBX's path, FastAGI routing)
        callers.call("B", national(2), dtmf=CONFIRM, source_ip="127.0.0.5")
        wait_for(
            "placeholder",
            lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir, since)),
            30,
        )
        with agent1(tb, citizen()):
            pause(tb, 1, paused=False)
            wait_for(
                "connected",
                lambda: holds(daemon.workdir, since)[0].state is VHoldState.CONNECTED,
                30,
            )
        callers.join()
        assert served(tb, mark) == [national(2)]
        (routed,) = [e for e in daemon.logs()[logged:] if e.get("event") == "call.routed"]
        assert routed["entry"] == "agi" and routed["tenant"] == "rueckruf"


def callback_open(workdir: Path, call_id: str) -> bool:
    """Whether the tenant's callbacks list (the agent page's) has the call as an open entry."""
    from pbxbridge.journal.backend import journal_opener

    store = journal_opener("", workdir / "state.sqlite")()
    try:
        return any(row.call_id == call_id for row in store.open_callbacks("rueckruf"))
    finally:
        store.close()


class TestCallbackLegOnTheAgentPage:
    async def test_the_agent_sees_the_callback_leg_marked_and_wraps_it_up(
        self,
        tb: Testbed,
        tmp_path: Path,
        answer_on_join: None,
        shared_daemon: SharedDaemon,
        since: datetime,
    ) -> None:
        if not chromium_available():
            pytest.fail(f"{CHROMIUM} missing: run scripts/setup.sh as root")
        agents_file = write_agents(tmp_path / "agents.yaml")
        env = {"PBXBRIDGE_AGENTS_FILE": str(agents_file)}
        # A daemon of its own, with the agents' logins and a journal holding only
        # this test's call; two daemons would share the ARI applications.
        shared_daemon.stop()
        with running_daemon(tb, tmp_path, rules=vhold_rules(), extra_env=env) as d:
            await asyncio.to_thread(d.wait_health, vhold_ready, 15)
            base = f"http://127.0.0.1:{d.port}/agent/"
            async with Chromium() as browser:
                page = await browser.new_page()
                await sign_in(page, base, "agent1")
                await asyncio.to_thread(pause, tb, 1, 2, 3, 4)
                callers = Callers()
                callers.call("B", national(2), dtmf=CONFIRM)
                await asyncio.to_thread(
                    wait_for,
                    "B's placeholder",
                    lambda: any(h.state is VHoldState.WAITING for h in holds(d.workdir, since)),
                    30,
                )
                with running(
                    tb, SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen()
                ):
                    await asyncio.to_thread(pause, tb, 1, paused=False)
                    await page.wait_for(
                        "!!document.querySelector('article.call.callback-leg')", timeout=30
                    )
                    text = await page.text(".callback-leg-text")
                    badge = await page.text("article.call .badge.bcallback")
                    await page.wait_for(
                        "!!document.querySelector('article.call.callback-leg.wrapup')",
                        timeout=60,
                    )
                callers.join()
                (hold,) = holds(d.workdir, since)
                assert text == f"Rückruf für Gemeinde Rückruf: {e164(2)}, angefordert vor 0 min"
                assert badge == "Rückruf"
                await page.click("article.call.callback-leg button.resolved")
                await page.wait_for("!document.querySelector('article.call')", timeout=10)
        from pbxbridge.journal.backend import journal_opener

        store = journal_opener("", d.workdir / "state.sqlite")()
        try:
            rows = list(
                store.calls_between(
                    datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
                )
            )
        finally:
            store.close()
        # One row: B's call, wrapped up by the agent; the leg made none of its own.
        assert [(r.call_id, r.disposition) for r in rows] == [(hold.call_id, "resolved")]
