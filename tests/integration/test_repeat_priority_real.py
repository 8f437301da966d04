"""Repeat callers go ahead, against the real Asterisk with the real daemon.

A caller whose number has an open callback ticket on the callbacks list calls
while two others wait, all at the tenant's priority 5. The tenant's rules give
such callers ``repeat_caller_priority: 2``: the daemon raises the caller's
priority over AMI once app_queue has them (``QueueChangePriorityCaller``), so
``QueueStatus`` shows them first at priority 7 and the agent who frees up takes
them before the caller who waited longer. Which call an agent took is read
from Asterisk's own ``queue_log`` (helpers of the virtual-hold tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pbxbridge.adapters.ami.queue import QueueEntry
from pbxbridge.journal.backend import journal_opener
from pbxbridge.journal.entry import Outcome
from tests.integration.daemon import DaemonProcess, running_daemon
from tests.integration.test_virtual_hold_real import vhold_ready
from tests.integration.vhold_calls import Callers, e164, national, pause, served, wait_for
from tests.testbed.sipp import SippAgent
from tests.testbed.testbed import Testbed
from tests.testbed.vhold_rules import QUEUE, vhold_rules
from tests.unit.test_journal_store import entry

pytestmark = [pytest.mark.asterisk, pytest.mark.mosquitto]

REPEAT_RULES = vhold_rules().replace(
    "      outbound_context: testbed-citizens\n",
    "      outbound_context: testbed-citizens\n      repeat_caller_priority: 2\n",
)


def open_ticket(workdir: Path, caller: str) -> None:
    """An earlier call of ``caller`` that an agent marked for a callback (not done yet)."""
    earlier = datetime.now(UTC) - timedelta(hours=2)
    store = journal_opener("", workdir / "state.sqlite")()
    try:
        store.upsert(
            [
                entry(
                    "earlier.1",
                    tenant="rueckruf",
                    caller=caller,
                    arrived_at=earlier,
                    ended_at=earlier + timedelta(minutes=3),
                    outcome=Outcome.ANSWERED,
                )
            ]
        )
        assert store.set_disposition(
            "n1",
            "earlier.1",
            "callback",
            "agent1",
            "",
            caller,
            earlier + timedelta(days=1),
            earlier,
        )
    finally:
        store.close()


def entries(tb: Testbed) -> list[QueueEntry]:
    """The callers app_queue holds in the test queue, in its order."""
    with tb.ami(events=False) as ami:
        found = [
            QueueEntry.from_event(e)
            for e in ami.list_action("QueueStatus", Queue=QUEUE)
            if e.get("Event") == "QueueEntry"
        ]
    return sorted(found, key=lambda e: e.position)


@pytest.fixture
def daemon(tb: Testbed, tmp_path: Path) -> Iterator[DaemonProcess]:
    open_ticket(tmp_path, e164(2))
    with running_daemon(tb, tmp_path, rules=REPEAT_RULES) as d:
        d.wait_health(vhold_ready, 15)
        yield d


class TestRepeatCallerPriority:
    def test_a_caller_with_an_open_ticket_overtakes_earlier_callers(
        self, tb: Testbed, daemon: DaemonProcess
    ) -> None:
        pause(tb, 1, 2, 3, 4)
        mark = len(tb.queue_log())
        callers = Callers()
        callers.call("A", national(1))
        wait_for("A waiting", lambda: len(entries(tb)) == 1, 20)
        callers.call("R", national(2))  # has the open ticket
        wait_for("A and R waiting", lambda: len(entries(tb)) == 2, 20)
        callers.call("C", national(3))
        wait_for("R raised to the head", lambda: entries(tb)[0].priority == 7, 20)
        wait_for("three waiting", lambda: len(entries(tb)) == 3, 20)
        queued = entries(tb)
        assert [(e.caller_id_num, e.priority) for e in queued] == [
            (e164(2), 7),
            (e164(1), 5),
            (e164(3), 5),
        ]
        # ... and the channel's QUEUE_PRIO, which a return to the queue (the
        # virtual-hold offer, a placeholder) joins with.
        with tb.ami(events=False) as ami:
            answer = ami.action("Getvar", Channel=queued[0].channel, Variable="QUEUE_PRIO")
        assert answer.get("Value") == "7"
        with SippAgent.for_agent(1, "talk", ring_delay_ms=100):
            pause(tb, 1, paused=False)
            wait_for("three served", lambda: len(served(tb, mark)) >= 3, 60)
        callers.join()
        # R came second but was served first; A and C kept their order.
        assert served(tb, mark) == [e164(2), e164(1), e164(3)]
        raised = [e for e in daemon.logs() if e.get("event") == "queue.repeat_caller_priority"]
        assert [(e["tenant"], e["queue"], e["priority"]) for e in raised] == [
            ("rueckruf", QUEUE, 7)
        ]
        assert "4407123452" not in str(raised)
