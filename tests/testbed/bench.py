"""Plumbing shared by the benchmarks that run on the real test bed.

``benchmarks/asterisk_load.py``, ``benchmarks/screenpop_latency.py``,
``benchmarks/page.py`` and ``benchmarks/soak.py`` each bring up Asterisk under
the test bed lock (:func:`tests.testbed.lock.testbed_lock`), place sipp calls and
measure. What they share lives here: the frame of a run (:func:`run_benchmark`:
work directory, test bed lock, clean-up, the JSON line), progress lines on
stderr, ending on SIGTERM like on Ctrl-C, CPU time and memory from ``/proc``,
clean-up of sipp processes an interrupted run left behind, the queue set-up of
the load benchmarks, and an MQTT subscriber that reads what the daemon
publishes (:class:`MqttListener`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.testbed import chroot
from tests.testbed.config import TestbedConfig, default_queues
from tests.testbed.lock import testbed_lock
from tests.testbed.sipp import WORKDIR_ENV
from tests.testbed.testbed import Testbed

#: A progress reporter: takes one line of text.
Say = Callable[[str], None]

#: The broker the benchmarks' daemons publish to and their listeners read from.
MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883


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


# ----------------------------------------------------------------- the frame


def run_benchmark(
    name: str,
    measure: Callable[[Path], dict[str, Any]],
    *,
    say: Say,
    summary: Callable[[dict[str, Any]], None],
    keep: bool = False,
    failed: Callable[[dict[str, Any]], bool] = lambda res: False,
) -> int:
    """Run one benchmark on the test bed and print its result, the JSON line last.

    Makes a work directory (sipp's files go below it), ends on SIGTERM like on
    Ctrl-C, holds the test bed lock while ``measure`` runs, kills sipp processes
    an interruption left behind, and removes the work directory unless it is
    wanted: ``keep``, a result that ``failed`` (the evidence: sipp's
    ``*_errors.log``, the daemon log), or an exception.

    Args:
        name: Part of the work directory's name (``pbxbridge-<name>-...``).
        measure: Brings up what it needs, measures, tears down; returns the
            JSON-ready result.
        say: The benchmark's progress reporter.
        summary: Prints the human-readable lines (stdout, before the JSON).
        keep: Keep the work directory in any case.
        failed: Whether a result is worth keeping the evidence of.

    Returns:
        The exit status (0).
    """
    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix=f"pbxbridge-{name}-"))
    os.environ.setdefault(WORKDIR_ENV, str(workdir / "sipp"))
    try:
        with testbed_lock(say):
            res = measure(workdir)
        keep = keep or failed(res)
    except BaseException:
        keep = True
        raise
    finally:
        stop_own_sipp_children(say)
        if keep and any(workdir.iterdir()):
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summary(res)
    print(json.dumps(res, ensure_ascii=False))
    return 0


# ----------------------------------------------------------------- MQTT


class MqttListener:
    """A subscriber of its own (paho, in its network thread) on one topic filter, QoS 1.

    Reads what the daemon publishes as an agent's desk would. ``on_message`` is
    called in paho's network thread with each message's topic and payload; it
    takes its own timestamp first when arrival times matter.

    Args:
        topic_filter: The filter, wildcards allowed.
        on_message: Called with ``(topic, payload)`` per message.
        client_id: The MQTT client id (default: paho's random one).

    Raises:
        RuntimeError: The broker did not acknowledge the subscription within 5 s.
    """

    def __init__(
        self,
        topic_filter: str,
        on_message: Callable[[str, bytes], None],
        *,
        client_id: str = "",
    ) -> None:
        self.topic_filter = topic_filter
        self._on_message = on_message
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.on_message = self._deliver
        self._client.on_subscribe = lambda *_a: self._subscribed.set()
        self._client.connect(MQTT_HOST, MQTT_PORT)
        self._client.subscribe(topic_filter, qos=1)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            raise RuntimeError(f"MQTT subscription to {topic_filter} not acknowledged")

    def _deliver(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message(msg.topic, bytes(msg.payload))

    def close(self) -> None:
        """Stop the network thread and disconnect."""
        self._client.loop_stop()
        with contextlib.suppress(Exception):
            self._client.disconnect()
