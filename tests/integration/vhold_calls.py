"""Callers, phones and the queue as the virtual-hold tests against the real Asterisk use them.

sipp plays the carrier (:class:`Callers`, one sipp run per call in a thread),
agent1 (:func:`agent1`, hanging up once connected: :class:`HangUpOnceConnected`)
and the citizens called back (:func:`citizen`); the order in which callers
are served is read from Asterisk's ``queue_log`` (:func:`served`), the holds
from the daemon's durable store (:func:`holds`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from pbxbridge.core.virtual_hold import VirtualHold
from pbxbridge.storage.virtual_holds import open_virtual_hold_store
from tests.testbed.ami import AmiError
from tests.testbed.sipp import CallResult, SippAgent, place_calls
from tests.testbed.testbed import Testbed
from tests.testbed.vhold_rules import DID, QUEUE

CONFIRM = "11#"
"""1 for the offer, 1 for the number read back, # to end the entry at once.

Without the ``#``, ``Read()`` waits 5 s for more digits; the test of B
between A and C confirms the way the prompt asks, with 1 alone.
"""


ENTRY_PACE_MS = 700
"""Between a caller's digits (sipp sends them all at one pace, the first after the answer).

The slowest step between two digits is the second number entry, which
``Read()`` takes about 0.3 s after the first entry's ``#`` (the daemon's
verdict, then a 0.3 s prompt): 0.7 s leaves as much again.
"""


def national(n: int) -> str:
    """Caller ``n``'s number as the carrier sends it (Wardenburg area code)."""
    return f"0440712345{n}"


def e164(n: int) -> str:
    """Caller ``n``'s number as the daemon stores it."""
    return f"+49440712345{n}"


def pause(tb: Testbed, *agents: int, paused: bool = True) -> None:
    """Agents paused in the queue are busy; unpaused, they take the next caller."""
    with tb.ami(events=False) as ami:
        for n in agents:
            ami.action(
                "QueuePause",
                Queue=QUEUE,
                Interface=f"PJSIP/agent{n}",
                Paused="true" if paused else "false",
            )


PLACEHOLDER = "@pbxbridge-vhold-place-"
"""In the queue half of a placeholder's name: ``Local/<call id>@pbxbridge-vhold-place-…;2``."""


class HangUpOnceConnected:
    """The agents hang up the moment a call is theirs, instead of talking 3 s.

    What the tests assert is who was served in which order and what the
    holds, the pops and the journal record; how long an agent talks plays no
    part, and sipp's 3 s talk (``talk``) per served call was much of their
    time. So the agents' phones just answer (``answer``) and this
    hangs up the agent's channel over AMI (the agent ends the call, as with
    ``talk``): a caller's as soon as app_queue connects it (``AgentConnect``),
    a callback leg only once the citizen answered (``PbxbridgeVirtualHold``
    ``State: connected``), since an agent who hangs up while the citizen's
    phone rings is another case ("agent gone").
    """

    def __init__(self, tb: Testbed) -> None:
        self._tb = tb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hang-up", daemon=True)

    def __enter__(self) -> HangUpOnceConnected:
        self._ami = self._tb.ami()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ami.close()

    def _run(self) -> None:
        seen = 0
        agent_of: dict[str, str] = {}  # hold (call id) -> the agent's channel
        connected: set[str] = set()  # holds whose citizen answered
        while True:
            # a last round after the stop: what the test waited for was read by then
            last = self._stop.is_set()
            events = self._ami.events[seen:]
            seen += len(events)
            for e in events:
                if e.get("Event") == "AgentConnect" and e.get("Queue") == QUEUE:
                    caller, agent = e.get("Channel", ""), e.get("DestChannel", "")
                    if PLACEHOLDER not in caller:
                        self._hang_up(agent)
                        continue
                    call_id = caller[len("Local/") : caller.index(PLACEHOLDER)]
                    agent_of[call_id] = agent
                elif (
                    e.get("Event") == "UserEvent"
                    and e.get("UserEvent") == "PbxbridgeVirtualHold"
                    and e.get("State") == "connected"
                ):
                    call_id = e.get("Id", "")
                    connected.add(call_id)
                else:
                    continue
                # either order: the citizen's answer may be read before the connect
                if call_id in connected and call_id in agent_of:
                    connected.discard(call_id)
                    self._hang_up(agent_of.pop(call_id))
            if last:
                return
            time.sleep(0.02)

    def _hang_up(self, channel: str) -> None:
        with contextlib.suppress(AmiError):  # the connection went with Asterisk
            self._ami.action("Hangup", Channel=channel)


@contextlib.contextmanager
def running(tb: Testbed, *phones: SippAgent) -> Iterator[None]:
    """sipp phones started, and stopped together afterwards.

    A graceful stop waits until the phone's calls are over, including each
    finished call's 2 s ``timewait`` (retransmissions, which loopback does
    not lose): one phone after the other, those waits added up. Once
    Asterisk has no channel left, no call of theirs is up, and the phones
    are told to quit at once; otherwise they stop gracefully.
    """
    started: list[SippAgent] = []
    try:
        for phone in phones:
            started.append(phone.start())
        yield
    finally:
        try:
            wait_for("no channel left", lambda: tb.active_channels() == 0, 10)
            patience = 0.0
        except AssertionError:
            patience = 8.0
        stopping = [
            threading.Thread(target=phone.stop, kwargs={"timeout": patience}) for phone in started
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()


def citizen() -> SippAgent:
    """The citizens' phone: answers after 50 ms of ringing (talks 3 s unless hung up)."""
    return SippAgent.for_citizen(ring_delay_ms=50)


@contextlib.contextmanager
def agent1(tb: Testbed, *others: SippAgent) -> Iterator[None]:
    """agent1's phone (answers after 100 ms of ringing, hangs up once connected), and ``others``."""
    agent = SippAgent.for_agent(1, "answer", ring_delay_ms=100)
    with running(tb, agent, *others), HangUpOnceConnected(tb):
        yield


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
        delay_ms: int = ENTRY_PACE_MS,
        hold_ms: int = 90_000,
        did: str = DID,
        source_ip: str = "127.0.0.2",
    ) -> None:
        # delay_ms goes before each digit, the first one after the answer:
        # the caller is answered when joining the queue (answer_on_join)
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


def joined(tb: Testbed, mark: int, count: int) -> None:
    """Wait until ``count`` callers joined the queue since ``mark`` lines of queue_log.

    Who calls next waits for this rather than a fixed pause: the order in
    which callers join is what the tests' orders are made of.
    """
    wait_for(
        f"{count} joined the queue",
        lambda: sum(1 for line in tb.queue_log()[mark:] if line[4:5] == ["ENTERQUEUE"]) >= count,
        15,
    )


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


def holds(workdir: Path, since: datetime) -> list[VirtualHold]:
    """The holds of the calls that arrived since ``since``, in the daemon's store."""
    with open_virtual_hold_store("", workdir / "state.sqlite") as store:
        return store.between(since, datetime(2100, 1, 1, tzinfo=UTC))


def pending(workdir: Path) -> list[VirtualHold]:
    """Holds the daemon still owes a callback."""
    with open_virtual_hold_store("", workdir / "state.sqlite") as store:
        return store.pending()
