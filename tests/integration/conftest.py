"""Fixtures shared by the integration tests against the real Asterisk test bed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import DaemonProcess, install_test_sound
from tests.testbed.testbed import Testbed


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
