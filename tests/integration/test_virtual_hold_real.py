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
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pbxbridge.core.virtual_hold import VHoldState, VirtualHold
from pbxbridge.storage.virtual_holds import open_virtual_hold_store
from tests.browser import CHROMIUM, Chromium, chromium_available
from tests.integration.daemon import DaemonProcess, running_daemon
from tests.integration.test_screenpops_real import Subscriber
from tests.integration.test_web_real import sign_in
from tests.testbed.sipp import CallResult, SippAgent, place_calls
from tests.testbed.testbed import Testbed
from tests.testbed.vhold_rules import DID, PRIORITY_DID, QUEUE, vhold_rules
from tests.unit.test_web_server import write_agents

pytestmark = [pytest.mark.asterisk, pytest.mark.mosquitto]


def national(n: int) -> str:
    """Caller ``n``'s number as the carrier sends it (Wardenburg area code)."""
    return f"0440712345{n}"


def e164(n: int) -> str:
    return f"+49440712345{n}"


def vhold_ready(h: dict[str, object]) -> bool:
    hold = h.get("virtual_hold")
    return isinstance(hold, dict) and hold.get("ari") == "connected"


@pytest.fixture
def answer_on_join(tb: Testbed) -> Iterator[None]:
    """sipp sends DTMF as SIP INFO, which needs an answered call (see pbxbridge.conf)."""
    tb.cli("dialplan set global PBXBRIDGE_VHOLD_ANSWER 1")
    yield
    tb.cli("dialplan set global PBXBRIDGE_VHOLD_ANSWER 0")


@pytest.fixture
def daemon(tb: Testbed, tmp_path: Path, answer_on_join: None) -> Iterator[DaemonProcess]:
    with running_daemon(tb, tmp_path, rules=vhold_rules()) as d:
        d.wait_health(vhold_ready, 15)
        yield d


def pause(tb: Testbed, *agents: int, paused: bool = True) -> None:
    with tb.ami(events=False) as ami:
        for n in agents:
            ami.action(
                "QueuePause",
                Queue=QUEUE,
                Interface=f"PJSIP/agent{n}",
                Paused="true" if paused else "false",
            )


class Callers:
    """Callers placed in the background (each call is one sipp run in a thread)."""

    def __init__(self) -> None:
        self.results: dict[str, CallResult] = {}
        self._threads: list[threading.Thread] = []

    def call(
        self,
        name: str,
        caller: str,
        *,
        dtmf: str = "",
        delay_ms: int = 1500,
        hold_ms: int = 90_000,
        did: str = DID,
        source_ip: str = "127.0.0.2",
    ) -> None:
        def run() -> None:
            self.results[name] = place_calls(
                did,
                source_ip=source_ip,
                caller=caller,
                dtmf=dtmf,
                dtmf_delay_ms=delay_ms,
                hold_ms=hold_ms,
                timeout_s=120,
            )

        thread = threading.Thread(target=run, name=f"caller-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self, timeout: float = 130) -> None:
        for thread in self._threads:
            thread.join(timeout)


def entered(lines: list[list[str]]) -> dict[str, str]:
    """Call id -> the calling number it entered the queue with (placeholder: the number to call)."""
    return {line[1]: line[6] for line in lines if len(line) > 6 and line[4] == "ENTERQUEUE"}


def served(tb: Testbed, mark: int) -> list[str]:
    """Calling numbers in the order an agent connected them, since ``mark`` lines of queue_log."""
    lines = tb.queue_log()
    numbers = entered(lines)
    return [numbers.get(line[1], line[1]) for line in lines[mark:] if line[4] == "CONNECT"]


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def waiting(tb: Testbed) -> int:
    with tb.ami(events=False) as ami:
        return sum(
            1 for e in ami.list_action("QueueStatus", Queue=QUEUE) if e.get("Event") == "QueueEntry"
        )


def holds(workdir: Path) -> list[VirtualHold]:
    with open_virtual_hold_store("", workdir / "state.sqlite") as store:
        return store.between(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


class TestVirtualHold:
    def test_b_takes_the_callback_and_is_served_between_a_and_c(
        self, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        pops = Subscriber(daemon.mqtt_port, daemon.topic_prefix)
        with tb.ami() as ami:
            callers.call("A", national(1), hold_ms=90_000)
            time.sleep(0.5)
            # B presses 1 in the queue, then 1 to confirm the number read back
            callers.call("B", national(2), dtmf="11", delay_ms=2500)
            time.sleep(0.5)
            callers.call("C", national(3), hold_ms=90_000)
            # B's placeholder joined; B's own call has ended (B hung up on "we call back")
            wait_for(
                "B's placeholder in the queue",
                lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir)),
                20,
            )
            wait_for("B's call ended", lambda: "B" in callers.results, 20)
            assert waiting(tb) == 3  # A, B's placeholder, C
            with SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen():
                pause(tb, 1, paused=False)
                wait_for("three served", lambda: len(served(tb, mark)) >= 3, 60)
                wait_for(
                    "B connected",
                    lambda: holds(daemon.workdir)[0].state is VHoldState.CONNECTED,
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
        (hold,) = holds(daemon.workdir)
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
        self, tb: Testbed, tmp_path: Path, answer_on_join: None
    ) -> None:
        with running_daemon(tb, tmp_path, rules=vhold_rules()) as daemon:
            daemon.wait_health(vhold_ready, 15)
            pause(tb, 1, 2, 3, 4)
            callers = Callers()
            for n in (1, 2, 3):
                callers.call(f"caller{n}", national(n), dtmf="11", delay_ms=2500)
                time.sleep(0.4)
            wait_for(
                "three placeholders",
                lambda: sum(h.state is VHoldState.WAITING for h in holds(tmp_path)) == 3,
                30,
            )
            daemon.kill9()
            assert waiting(tb) == 3
            mark = len(tb.queue_log())
            # Asterisk alone: agents free up, all three citizens are called back
            with SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen():
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
            daemon.wait_health(vhold_ready, 15)
            wait_for(
                "journal shows all connected",
                lambda: sorted(h.state for h in holds(tmp_path)) == [VHoldState.CONNECTED] * 3,
                20,
            )
            callers.join()
        for hold in holds(tmp_path):
            assert [e[1] for e in hold.events][-3:] == [
                "agent_reached",
                "calling",
                "citizen_answered",
            ]
            assert hold.connected_at is not None and hold.wait_s is not None

    def test_citizen_busy_then_no_answer_becomes_a_ticket_due_next_working_day(
        self, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        pops = Subscriber(daemon.mqtt_port, daemon.topic_prefix)
        callers = Callers()
        first_call = time.monotonic()
        callers.call("B", national(2), dtmf="11", delay_ms=2500)
        wait_for(
            "placeholder",
            lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir)),
            30,
        )
        mark = len(tb.queue_log())
        with SippAgent.for_agent(1, "answer", ring_delay_ms=100):
            with SippAgent.for_citizen("reject"):
                pause(tb, 1, paused=False)
                wait_for(
                    "first try failed",
                    lambda: holds(daemon.workdir)[0].state is VHoldState.RETRY_WAIT,
                    30,
                )
            with SippAgent.for_citizen("noanswer"):
                wait_for("ticket", lambda: holds(daemon.workdir)[0].state is VHoldState.TICKET, 60)
        callers.join()
        (hold,) = holds(daemon.workdir)
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
        wait_for("ticket in the journal", lambda: callback_rows(daemon.workdir), 20)
        # The agent saw both tries as callback legs.
        legs = [m for m in pops.agent("agent1") if m["event"] == "ringing"]
        assert [m["virtual_hold"]["try"] for m in legs] == [1, 2]
        assert {m["caller"]["number"] for m in legs} == {e164(2)}
        # B calls again: the agent's pop says a callback is open. (The look-up
        # made for B's first call is reused for 60 s: call after that.)
        time.sleep(max(0.0, first_call + 62 - time.monotonic()))
        again = Callers()

        def plain_ringing() -> list[dict[str, object]]:
            return [
                m
                for m in pops.agent("agent1")
                if "virtual_hold" not in m and m["event"] == "ringing"
            ]

        with SippAgent.for_agent(1, "answer", ring_delay_ms=100):
            again.call("B again", national(2), hold_ms=3000)
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
        self, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        callers = Callers()
        for n in range(10):
            callers.call(f"c{n}", f"0440712340{n}", dtmf="11", delay_ms=2500)
            time.sleep(0.3)
        wait_for(
            "ten placeholders",
            lambda: sum(h.state is VHoldState.WAITING for h in holds(daemon.workdir)) == 10,
            60,
        )
        callers.join()
        with tb.ami() as ami:
            with SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen():
                pause(tb, 1, paused=False)
                wait_for(
                    "all connected",
                    lambda: (
                        sum(h.state is VHoldState.CONNECTED for h in holds(daemon.workdir)) == 10
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
        self, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        callers.call("A", national(1))
        time.sleep(0.5)
        callers.call("B", national(2), dtmf="11", delay_ms=2500)
        wait_for(
            "B's placeholder",
            lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir)),
            30,
        )
        # H calls the tenant with priority 9 after B's placeholder joined
        callers.call("H", national(8), did=PRIORITY_DID)
        wait_for("A, placeholder, H waiting", lambda: waiting(tb) == 3, 20)
        with SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen():
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
        self, tb: Testbed, daemon: DaemonProcess, entry: str, problem: str
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        callers.call("A", national(1))
        time.sleep(0.5)
        callers.call("B", national(2), dtmf="1" + entry, delay_ms=1200)
        time.sleep(0.5)
        callers.call("C", national(3))
        wait_for(
            f"B back after {problem}",
            lambda: any("entry_failed" in [e[1] for e in h.events] for h in holds(daemon.workdir)),
            60,
        )
        wait_for("B queued again", lambda: waiting(tb) == 3, 10)
        with SippAgent.for_agent(1, "talk", ring_delay_ms=100):
            pause(tb, 1, paused=False)
            wait_for("three served", lambda: len(served(tb, mark)) >= 3, 60)
        callers.join()
        # B went back to the same place: between A and C, and nobody was called back
        assert served(tb, mark) == [e164(1), e164(2), e164(3)]
        (hold,) = holds(daemon.workdir)
        assert hold.state is VHoldState.OFFERED and hold.number is None
        assert [e[1] for e in hold.events] == ["offered", "entry_failed"]

    def test_hang_up_in_the_middle_of_the_number(self, tb: Testbed, daemon: DaemonProcess) -> None:
        pause(tb, 1, 2, 3, 4)
        callers = Callers()
        callers.call("B", national(2), dtmf="10440", delay_ms=1200, hold_ms=500)
        callers.join(60)
        assert callers.results["B"].ok
        wait_for("no channel left", lambda: tb.active_channels() == 0, 15)
        (hold,) = holds(daemon.workdir)
        assert hold.state is VHoldState.OFFERED and hold.number is None
        assert daemon.health()["virtual_hold"]["errors"] == 0

    def test_asterisk_restarted_while_a_placeholder_waits(
        self, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        callers = Callers()
        callers.call("B", national(2), dtmf="11", delay_ms=2500)
        wait_for(
            "placeholder",
            lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir)),
            30,
        )
        callers.join(60)
        with SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen():
            tb.cli("core restart now")  # the placeholder goes with it; agents come back unpaused
            wait_for(
                "re-queued and connected",
                lambda: holds(daemon.workdir)[0].state is VHoldState.CONNECTED,
                60,
            )
        (hold,) = holds(daemon.workdir)
        events = [e[1] for e in hold.events]
        assert "lost" in events and events[-1] == "citizen_answered"
        assert events.count("retry_queued") == 1

    def test_the_fastagi_entry_point_offers_it_too(
        self, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        # 127.0.0.5: the carrier into [pbxbridge-agi] (FreePBX's path, FastAGI routing)
        callers.call("B", national(2), dtmf="11", delay_ms=2500, source_ip="127.0.0.5")
        wait_for(
            "placeholder",
            lambda: any(h.state is VHoldState.WAITING for h in holds(daemon.workdir)),
            30,
        )
        with SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen():
            pause(tb, 1, paused=False)
            wait_for(
                "connected",
                lambda: holds(daemon.workdir)[0].state is VHoldState.CONNECTED,
                30,
            )
        callers.join()
        assert served(tb, mark) == [national(2)]
        (routed,) = [e for e in daemon.logs() if e.get("event") == "call.routed"]
        assert routed["entry"] == "agi" and routed["tenant"] == "rueckruf"


def callback_rows(workdir: Path) -> bool:
    """Whether the tenant's callbacks list (the agent page's) has an open entry."""
    from pbxbridge.journal.backend import journal_opener

    store = journal_opener("", workdir / "state.sqlite")()
    try:
        return bool(store.open_callbacks("rueckruf"))
    finally:
        store.close()


class TestCallbackLegOnTheAgentPage:
    async def test_the_agent_sees_the_callback_leg_marked_and_wraps_it_up(
        self, tb: Testbed, tmp_path: Path, answer_on_join: None
    ) -> None:
        if not chromium_available():
            pytest.fail(f"{CHROMIUM} missing: run scripts/setup.sh as root")
        agents_file = write_agents(tmp_path / "agents.yaml")
        env = {"PBXBRIDGE_AGENTS_FILE": str(agents_file)}
        with running_daemon(tb, tmp_path, rules=vhold_rules(), extra_env=env) as d:
            await asyncio.to_thread(d.wait_health, vhold_ready, 15)
            base = f"http://127.0.0.1:{d.port}/agent/"
            async with Chromium() as browser:
                page = await browser.new_page()
                await sign_in(page, base, "agent1")
                await asyncio.to_thread(pause, tb, 1, 2, 3, 4)
                callers = Callers()
                callers.call("B", national(2), dtmf="11", delay_ms=2500)
                await asyncio.to_thread(
                    wait_for,
                    "B's placeholder",
                    lambda: any(h.state is VHoldState.WAITING for h in holds(d.workdir)),
                    30,
                )
                with SippAgent.for_agent(1, "talk", ring_delay_ms=100), SippAgent.for_citizen():
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
                (hold,) = holds(d.workdir)
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
