"""pytest fixtures for the real-Asterisk test bed (a pytest plugin).

Enable with ``pytest_plugins = ["tests.testbed.fixtures"]`` in ``tests/conftest.py``.

* ``testbed`` (session): Asterisk up once per session, down at the end.  Skipped
  only when ``PBXBRIDGE_SKIP_ASTERISK=1``; otherwise a bed that cannot start is an
  error, not a silent skip.
* ``fresh_testbed`` (function): the session bed, checked idle before the test.
* ``agents`` (function): a factory starting sipp UAS agents; all stopped after
  the test.
* ``answering_agents`` (function): agent1..agent4 answering after 50 ms.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import pytest

from tests.testbed.lock import testbed_lock
from tests.testbed.sipp import WORKDIR_ENV, AgentBehaviour, SippAgent
from tests.testbed.testbed import Testbed

SKIP_ENV = "PBXBRIDGE_SKIP_ASTERISK"

AgentFactory = Callable[..., SippAgent]


def _skip_requested() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in {"1", "yes", "true", "on"}


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """The session's Asterisk 22 (builds the chroot on first use, ~30 s).

    sipp's trace files go below pytest's temporary directory (kept for the last
    few runs, like ``tmp_path``) unless ``PBXBRIDGE_SIPP_WORKDIR`` is set.

    Args:
        tmp_path_factory: pytest's session temp dir factory.

    Yields:
        The running test bed.
    """
    if _skip_requested():
        pytest.skip(f"{SKIP_ENV}=1: real-Asterisk tests skipped")
    # One test bed per machine (fixed ports): a second pytest session waits for
    # the first instead of restarting its Asterisk under it.
    with testbed_lock(), pytest.MonkeyPatch.context() as mp:
        if not os.environ.get(WORKDIR_ENV):
            mp.setenv(WORKDIR_ENV, str(tmp_path_factory.mktemp("sipp")))
        tb = Testbed()
        tb.up()
        try:
            yield tb
        finally:
            tb.down()


@pytest.fixture
def fresh_testbed(testbed: Testbed) -> Testbed:
    """The session test bed, with no calls left over from an earlier test.

    Args:
        testbed: The session test bed.

    Returns:
        The test bed.
    """
    testbed.wait_idle(timeout=20)
    return testbed


@pytest.fixture
def agents(testbed: Testbed) -> Iterator[AgentFactory]:
    """Factory for agent UAS instances; everything it started is stopped afterwards.

    Call it as ``agents(n, behaviour="answer", ring_delay_ms=50)``.

    Args:
        testbed: The session test bed (its config decides addresses and ports).

    Yields:
        The factory.
    """
    started: list[SippAgent] = []

    def start(n: int, behaviour: AgentBehaviour = "answer", ring_delay_ms: int = 50) -> SippAgent:
        agent = SippAgent.for_agent(n, behaviour, ring_delay_ms, testbed.config)
        started.append(agent)
        return agent.start()

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()


@pytest.fixture
def answering_agents(agents: AgentFactory, testbed: Testbed) -> Sequence[SippAgent]:
    """All agents running and answering after 50 ms of ringing.

    Args:
        agents: The agent factory.
        testbed: The session test bed.

    Returns:
        agent1..agentN, in order.
    """
    return [agents(n) for n in range(1, testbed.config.agent_count + 1)]
