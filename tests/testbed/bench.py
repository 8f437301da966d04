"""Plumbing shared by the benchmarks that run on the real test bed.

``benchmarks/asterisk_load.py``, ``benchmarks/screenpop_latency.py``,
``benchmarks/page.py`` and ``benchmarks/soak.py`` each bring up Asterisk under
the test bed lock (:func:`tests.testbed.lock.testbed_lock`), place sipp calls and
measure. What they share lives here: progress lines on stderr, ending on SIGTERM
like on Ctrl-C, CPU time and memory from ``/proc``, clean-up of sipp processes an
interrupted run left behind, and the queue set-up of the load benchmarks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from tests.testbed import chroot
from tests.testbed.config import TestbedConfig, default_queues
from tests.testbed.testbed import Testbed

#: A progress reporter: takes one line of text.
Say = Callable[[str], None]


def progress(name: str) -> Say:
    """A reporter that writes ``[name] message`` lines to stderr.

    The benchmarks keep stdout for their summary and the final JSON line.

    Args:
        name: The benchmark's name, shown in front of every line.

    Returns:
        The reporter (flushes every line).
    """

    def say(msg: str) -> None:
        print(f"[{name}] {msg}", file=sys.stderr, flush=True)

    return say


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Signal handler: end the process like an exception, so ``finally`` blocks run.

    Args:
        signum: The signal received.
        frame: The interrupted frame (unused).

    Raises:
        SystemExit: Always, with the shell's exit status for the signal (128 + signum).
    """
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Install :func:`raise_on_sigterm` for SIGTERM.

    A benchmark stopped with SIGTERM then unwinds like one stopped with Ctrl-C:
    agents and daemon stopped, Asterisk down, the test bed lock released.
    """
    signal.signal(signal.SIGTERM, raise_on_sigterm)


# ----------------------------------------------------------------- /proc


def stat_fields(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` from field 3 (state) on.

    Args:
        pid: The process.

    Returns:
        The fields; index 1 is the parent PID, 11 and 12 are utime and stime.

    Raises:
        OSError: The process is gone.
    """
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_ticks(pid: int | None) -> int:
    """utime + stime of a process (all its threads), in clock ticks.

    Args:
        pid: The process, or ``None``.

    Returns:
        The ticks; 0 for ``None`` or a process that is gone.
    """
    if pid is None:
        return 0
    try:
        fields = stat_fields(pid)
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15


def rss_kib(pid: int | None) -> int | None:
    """Resident set size of a process (``VmRSS`` in ``/proc/<pid>/status``).

    Args:
        pid: The process, or ``None``.

    Returns:
        KiB; ``None`` for ``None`` or a process that is gone.
    """
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def asterisk_pid(tb: Testbed) -> int | None:
    """The test bed's Asterisk main process (``-f``), not ``-rx`` CLI helpers.

    Args:
        tb: The running test bed.

    Returns:
        The PID, or ``None`` when no Asterisk runs in the chroot.
    """
    for pid in chroot.chroot_pids(tb.root):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"asterisk") and b"-f" in args:
            return pid
    return None


def stop_own_sipp_children(report: Say | None = None) -> list[int]:
    """Kill sipp processes this process started and that are still there.

    ``place_calls`` waits for its sipp; interrupted (Ctrl-C, SIGTERM) it leaves it
    running. Only our own children named ``sipp`` are touched, by PID.

    Args:
        report: Told which PIDs were killed, if any.

    Returns:
        The PIDs killed.
    """
    me = os.getpid()
    killed: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            ppid = int(stat_fields(pid)[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and comm == "sipp":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            killed.append(pid)
    if killed and report is not None:
        report(f"killed leftover sipp processes {killed}")
    return killed


# ----------------------------------------------------------------- set-up


def bench_config() -> TestbedConfig:
    """Quiet Asterisk; ``servicecenter`` rings one agent per call, all agents in turn.

    ``ringinuse`` lets one sipp UAS take many calls at once, ``rrmemory`` spreads
    them over the four agents (sized for 50 calls/s). In ``asterisk_load`` the
    pure dialplan path and pbxbridge use this same queue.

    Returns:
        The test bed configuration (``verbose=0``; the other queues as by default).
    """
    queues = tuple(
        dataclasses.replace(
            q, strategy="rrmemory", ringinuse=True, timeout=4, retry=1, wrapuptime=0, autofill=True
        )
        if q.name == "servicecenter"
        else q
        for q in default_queues()
    )
    return TestbedConfig(verbose=0, queues=queues)
