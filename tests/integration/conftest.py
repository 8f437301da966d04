"""Fixtures shared by the integration tests against the real Asterisk test bed."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, Chromium, chromium_available
from tests.integration.daemon import DaemonProcess, install_test_sound
from tests.testbed.testbed import Testbed
from tests.unit.test_web_server import write_agents


@pytest.fixture
def tb(fresh_testbed: Testbed) -> Testbed:
    """The session's test bed, idle, with the short test sound installed."""
    install_test_sound(fresh_testbed)
    return fresh_testbed


@pytest.fixture
def new_daemon(tb: Testbed, tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon the test starts and stops itself; never left running afterwards."""
    d = DaemonProcess(tb, tmp_path)
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            os.kill(d.proc.pid, signal.SIGCONT)  # a test may have frozen it
        d.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    """Debian's headless Chromium; without it the page tests fail, they do not skip."""
    if not chromium_available():
        pytest.fail(f"{CHROMIUM} missing: run scripts/setup.sh as root (installs Debian chromium)")
    async with Chromium() as chromium:
        yield chromium


@pytest.fixture
async def web_daemon(
    tb: Testbed, tmp_path: Path
) -> AsyncIterator[Callable[[dict[str, str]], Awaitable[DaemonProcess]]]:
    """Starts a daemon with the agent page's agents file, once AMI is connected.

    The agents file is the unit tests' (``tmp_path/agents.yaml``: agent1-3, and
    chefin the supervisor). Called with the daemon's extra environment; the
    daemon is stopped after the test (the test may stop and start it itself).
    """
    started: list[DaemonProcess] = []

    async def start(env: dict[str, str]) -> DaemonProcess:
        agents_file = write_agents(tmp_path / "agents.yaml")
        daemon = DaemonProcess(
            tb, tmp_path, extra_env={**env, "PBXBRIDGE_AGENTS_FILE": str(agents_file)}
        )
        started.append(daemon)
        await asyncio.to_thread(daemon.start)
        await asyncio.to_thread(daemon.wait_health, lambda h: h["ami"]["state"] == "connected", 15)
        return daemon

    yield start
    for daemon in started:
        await asyncio.to_thread(daemon.stop)
