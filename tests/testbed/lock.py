"""The test bed's machine-wide lock: one user of Asterisk at a time.

The test bed listens on fixed ports, so only one user at a time may run it: the
pytest sessions (fixture ``testbed``), the benchmarks and the ``up``/``down``
commands of ``python -m tests.testbed`` all take this ``flock`` on the same file
before they start or stop Asterisk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

#: Environment variable naming the lock file.
LOCK_ENV = "PBXBRIDGE_TESTBED_LOCK"
#: The lock file when :data:`LOCK_ENV` is not set.
DEFAULT_LOCK = "/tmp/pbxbridge-testbed.lock"


def lock_path() -> Path:
    """The lock file: ``$PBXBRIDGE_TESTBED_LOCK`` or ``/tmp/pbxbridge-testbed.lock``.

    Returns:
        The path (the file is created when the lock is first taken).
    """
    return Path(os.environ.get(LOCK_ENV, DEFAULT_LOCK))


@contextlib.contextmanager
def testbed_lock(report: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the exclusive test bed lock, waiting for it as long as it takes.

    Args:
        report: Told, if given, when the lock is busy (before waiting) and when it
            is held; ``None`` waits silently.

    Yields:
        Nothing; the lock is held until the ``with`` block ends.
    """
    path = lock_path()
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if report is not None:
                report(f"waiting for the test bed lock {path} (another session is using Asterisk)")
            fcntl.flock(fh, fcntl.LOCK_EX)
        if report is not None:
            report(f"holding the test bed lock {path}")
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
