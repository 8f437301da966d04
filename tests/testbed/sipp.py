"""Drive sipp: agent phones (UAS) and carrier calls (UAC) for the test bed.

Agents::

    with SippAgent.for_agent(1, behaviour="answer", ring_delay_ms=100) as agent1:
        result = place_calls("+494407730", count=1, hold_ms=1000)
        assert result.successful == 1
    assert agent1.stats.successful == 1

Every sipp run gets its own working directory (sipp writes its trace files into the
current directory, named after the scenario and its PID); the directory is kept so
a failed test can be debugged from ``*_errors.log`` / ``*_messages.log``.

Latency: the UAC scenario marks INVITE -> 200 OK as response-time "invite";
``-trace_rtt -rtt_freq 1`` makes sipp log one value per call, which
:class:`CallResult` exposes as :attr:`CallResult.invite_to_200_ms` and
:meth:`CallResult.percentile`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from tests.testbed.chroot import TestbedError, ensure_host_tools
from tests.testbed.config import TestbedConfig

SCENARIO_DIR = Path(__file__).resolve().with_name("sipp")
TRUNK_SCENARIO = SCENARIO_DIR / "trunk_call.xml"
ABANDON_SCENARIO = SCENARIO_DIR / "trunk_abandon.xml"
"""A caller who hangs up (CANCEL) after ``-key wait_ms`` without an answer."""
AGENT_SCENARIOS: dict[str, Path] = {
    "answer": SCENARIO_DIR / "agent_answer.xml",
    "noanswer": SCENARIO_DIR / "agent_noanswer.xml",
    "reject": SCENARIO_DIR / "agent_reject.xml",
    # 200 OK at once, no ring (ring_delay_ms is ignored): Asterisk's own time
    "instant": SCENARIO_DIR / "agent_instant.xml",
    # answers after the ring delay, talks 3 s, hangs up (an agent finishing a
    # call; a citizen called back by a virtual hold)
    "talk": SCENARIO_DIR / "answer_talk.xml",
}
AgentBehaviour = Literal["answer", "noanswer", "reject", "instant", "talk"]

#: Parent directory of all sipp working directories (override with
#: ``PBXBRIDGE_SIPP_WORKDIR``; defaults to the system temp dir).
WORKDIR_ENV = "PBXBRIDGE_SIPP_WORKDIR"

_DEFAULT_CONFIG = TestbedConfig()


def sipp_binary() -> str:
    """Path of the sipp binary, installing Debian's ``sip-tester`` if needed.

    Returns:
        The executable path.

    Raises:
        TestbedError: sipp is not available and could not be installed.
    """
    found = shutil.which("sipp")
    if found:
        return found
    ensure_host_tools()
    found = shutil.which("sipp")
    if not found:
        raise TestbedError("sipp not found (Debian package sip-tester)")
    return found


def _workdir(prefix: str) -> Path:
    parent = os.environ.get(WORKDIR_ENV) or None
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"pbxbridge-sipp-{prefix}-", dir=parent))


def free_udp_port(ip: str) -> int:
    """A currently free UDP port on ``ip`` (for sipp's SIP or media socket).

    Args:
        ip: Local address.

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def free_media_port(ip: str) -> int:
    """A free even UDP port whose successor is free too (RTP + RTCP for sipp's -mp).

    Args:
        ip: Local address.

    Returns:
        The even port number.
    """
    for _ in range(50):
        port = free_udp_port(ip) & ~1
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
            ):
                a.bind((ip, port))
                b.bind((ip, port + 1))
        except OSError:
            continue
        return port
    raise TestbedError(f"no free RTP port pair on {ip}")


@dataclasses.dataclass(frozen=True)
class SippStats:
    """Counters from sipp's statistics file (cumulative).

    Attributes:
        created: Calls created (incoming for a UAS, outgoing for a UAC).
        successful: Calls that went through the whole scenario.
        failed: Calls that failed (unexpected message, timeout, ...).
        current: Calls still running when the stats were written.
    """

    created: int = 0
    successful: int = 0
    failed: int = 0
    current: int = 0


def read_stats(stat_file: Path) -> SippStats:
    """Parse the last line of a ``-trace_stat`` CSV file.

    Args:
        stat_file: The CSV written by sipp (``;``-separated, header first).

    Returns:
        The cumulative counters (all zero when the file is missing/empty).
    """
    try:
        with stat_file.open(newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.reader(fh, delimiter=";"))
    except FileNotFoundError:
        return SippStats()
    if len(rows) < 2:
        return SippStats()
    header, last = rows[0], rows[-1]
    values = dict(zip(header, last, strict=False))

    def num(key: str) -> int:
        try:
            return int(float(values.get(key, "0") or 0))
        except ValueError:
            return 0

    return SippStats(
        created=num("TotalCallCreated"),
        successful=num("SuccessfulCall(C)"),
        failed=num("FailedCall(C)"),
        current=num("CurrentCall"),
    )


def read_rtt(rtt_file: Path, rtd: str = "invite") -> list[float]:
    """Per-call response times of one ``<rtd>`` from a ``-trace_rtt`` file.

    Args:
        rtt_file: ``<scenario>_<pid>_rtt.csv``.
        rtd: The response-time marker's name.

    Returns:
        Milliseconds, in the order the calls completed.
    """
    try:
        with rtt_file.open(newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.reader(fh, delimiter=";"))
    except FileNotFoundError:
        return []
    out: list[float] = []
    for row in rows[1:]:
        if len(row) >= 3 and row[2] == rtd:
            with contextlib.suppress(ValueError):
                out.append(float(row[1]))
    return out


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile.

    Args:
        values: Samples.
        pct: Percentile, 0 < pct <= 100.

    Returns:
        The value, or ``nan`` for no samples.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclasses.dataclass
class CallResult:
    """Outcome of :func:`place_calls`.

    Attributes:
        returncode: sipp's exit code (0: every call succeeded; 1: some failed;
            97/99/-1/-2: aborted, no calls, fatal).
        requested: Number of calls asked for.
        stats: Final counters.
        invite_to_200_ms: INVITE -> 200 OK per successful call, in milliseconds.
        workdir: sipp's working directory (trace files).
        command: The sipp command line.
        output: sipp's stdout/stderr (tail).
    """

    returncode: int
    requested: int
    stats: SippStats
    invite_to_200_ms: list[float]
    workdir: Path
    command: list[str]
    output: str

    @property
    def successful(self) -> int:
        """Calls that completed the scenario."""
        return self.stats.successful

    @property
    def failed(self) -> int:
        """Calls that failed."""
        return self.stats.failed

    @property
    def ok(self) -> bool:
        """True when sipp exited 0 and every requested call succeeded."""
        return self.returncode == 0 and self.successful == self.requested and self.failed == 0

    def percentile(self, pct: float) -> float:
        """INVITE -> 200 OK latency percentile in ms (nearest rank).

        Args:
            pct: Percentile, e.g. 50, 95, 99.

        Returns:
            Milliseconds (``nan`` without samples).
        """
        return percentile(self.invite_to_200_ms, pct)

    def errors(self) -> str:
        """Content of sipp's ``*_errors.log`` files (unexpected messages etc.).

        Returns:
            The text, empty when there were none.
        """
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.workdir.glob("*_errors.log"))
        )

    def describe(self) -> str:
        """A human-readable summary for assertion messages.

        Returns:
            Summary text including sipp's error log.
        """
        return (
            f"sipp rc={self.returncode} requested={self.requested} stats={self.stats} "
            f"workdir={self.workdir}\ncommand: {' '.join(self.command)}\n"
            f"output tail:\n{self.output[-1500:]}\nerrors:\n{self.errors()[-3000:]}"
        )


def place_calls(
    did: str,
    *,
    count: int = 1,
    rate: float = 10.0,
    hold_ms: int = 1000,
    caller: str = "04407123456",
    display: str = "Jörg Müller",
    dtmf: str = "",
    dtmf_delay_ms: int = 300,
    source_ip: str = _DEFAULT_CONFIG.trunk_ip,
    target: str = f"127.0.0.1:{_DEFAULT_CONFIG.sip_port}",
    max_concurrent: int | None = None,
    timeout_s: float = 60.0,
    trace_messages: bool = False,
    extra_args: Sequence[str] = (),
    scenario: Path | None = None,
) -> CallResult:
    """Place ``count`` inbound trunk calls with sipp and wait for them to finish.

    Args:
        did: Dialled number (request-URI user part), e.g. ``"+494407730"``.
        count: Number of calls.
        rate: New calls per second.
        hold_ms: How long each call stays up after the 200 OK (and DTMF) unless the
            far end hangs up first (which still counts as a successful call).
        caller: Calling number.
        display: Calling name (UTF-8; may be empty).
        dtmf: Digits sent as SIP INFO after the 200 OK, one INFO each ("" = none).
        dtmf_delay_ms: Pause before each digit.
        source_ip: Local address; selects the trunk (127.0.0.2 ``trunk`` ->
            pbxbridge, 127.0.0.4 ``trunk-pure`` -> plain Queue()).
        target: Asterisk's SIP address.
        max_concurrent: sipp ``-l`` (default: sipp's own).
        timeout_s: Overall limit; sipp is stopped and the run fails after it.
        trace_messages: Also write every SIP message to ``*_messages.log``.
        extra_args: More sipp arguments.
        scenario: Another UAC scenario taking the same keys (default
            ``trunk_call.xml``; e.g. :data:`ABANDON_SCENARIO` with
            ``extra_args=["-key", "wait_ms", "3000"]``).

    Returns:
        The result, with per-call INVITE -> 200 OK latencies.
    """
    workdir = _workdir("uac")
    stat_file = workdir / "stats.csv"
    cmd = [
        sipp_binary(),
        target,
        "-sf",
        str(scenario or TRUNK_SCENARIO),
        "-s",
        did,
        "-i",
        source_ip,
        "-p",
        str(free_udp_port(source_ip)),
        "-mi",
        source_ip,
        "-mp",
        str(free_media_port(source_ip)),
        "-m",
        str(count),
        "-r",
        f"{rate:g}",
        # the hold time: how long the scenario waits for a far-end BYE before
        # sending its own (see trunk_call.xml); 0 would mean "forever"
        "-recv_timeout",
        str(max(1, hold_ms)),
        "-key",
        "caller",
        caller,
        "-key",
        "display",
        display,
        "-key",
        "dtmf",
        dtmf,
        "-key",
        "dtmf_delay",
        str(max(0, dtmf_delay_ms)),
        "-nostdin",
        "-trace_err",
        "-trace_stat",
        "-stf",
        str(stat_file),
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-trace_screen",
        # sipp's own limit, a little below ours so it writes its statistics
        "-timeout",
        f"{max(1, int(timeout_s) - 2)}s",
        "-timeout_error",
    ]
    if max_concurrent is not None:
        cmd += ["-l", str(max_concurrent)]
    if trace_messages:
        cmd.append("-trace_msg")
    cmd.extend(extra_args)
    with (workdir / "output.log").open("w+b") as out:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            returncode = proc.wait(timeout=timeout_s + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            returncode = proc.wait()
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    rtt_files = sorted(workdir.glob("*_rtt.csv"))
    latencies = read_rtt(rtt_files[0]) if rtt_files else []
    return CallResult(
        returncode=returncode,
        requested=count,
        stats=read_stats(stat_file),
        invite_to_200_ms=latencies,
        workdir=workdir,
        command=cmd,
        output=output[-5000:],
    )


class SippAgent:
    """A sipp UAS playing one agent's phone, running in the background.

    Attributes:
        name: Label (e.g. ``agent1``).
        ip: Listen address.
        port: SIP port.
        behaviour: ``answer``, ``noanswer``, ``reject``, ``instant`` or ``talk``.
        ring_delay_ms: For ``answer`` and ``talk``: ringing time before the 200 OK.
        workdir: sipp's working directory.
    """

    def __init__(
        self,
        name: str,
        ip: str,
        port: int,
        behaviour: AgentBehaviour = "answer",
        ring_delay_ms: int = 50,
        *,
        trace_messages: bool = False,
    ) -> None:
        """Describe the agent; call :meth:`start` (or use ``with``).

        Args:
            name: Label for logs.
            ip: Listen address (the AOR contact's host).
            port: SIP port (the AOR contact's port).
            behaviour: Scenario to run.
            ring_delay_ms: Ring time before answering (``answer`` only, >= 1).
            trace_messages: Write every SIP message to ``*_messages.log``.
        """
        if behaviour not in AGENT_SCENARIOS:
            raise ValueError(f"unknown agent behaviour {behaviour!r}")
        self.name = name
        self.ip = ip
        self.port = port
        self.behaviour = behaviour
        self.ring_delay_ms = ring_delay_ms
        self.trace_messages = trace_messages
        self.workdir = _workdir(name)
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_agent(
        cls,
        n: int,
        behaviour: AgentBehaviour = "answer",
        ring_delay_ms: int = 50,
        config: TestbedConfig | None = None,
        *,
        trace_messages: bool = False,
    ) -> SippAgent:
        """The UAS behind PJSIP endpoint ``agent<n>`` of the test bed.

        Args:
            n: Agent number (1-based).
            behaviour: Scenario to run.
            ring_delay_ms: Ring time before answering.
            config: Test bed configuration (default layout when omitted).
            trace_messages: Write every SIP message to ``*_messages.log``.

        Returns:
            The (not yet started) agent.
        """
        cfg = config or _DEFAULT_CONFIG
        return cls(
            f"agent{n}",
            cfg.agent_ip,
            cfg.agent_port(n),
            behaviour,
            ring_delay_ms,
            trace_messages=trace_messages,
        )

    @classmethod
    def for_citizen(
        cls,
        behaviour: AgentBehaviour = "talk",
        ring_delay_ms: int = 300,
        config: TestbedConfig | None = None,
    ) -> SippAgent:
        """The UAS behind PJSIP endpoint ``citizen``: the phones a virtual hold calls back.

        Args:
            behaviour: ``talk`` (answers, hangs up 3 s later), ``noanswer`` or
                ``reject`` (busy).
            ring_delay_ms: Ring time before answering.
            config: Test bed configuration (default layout when omitted).

        Returns:
            The (not yet started) phone.
        """
        cfg = config or _DEFAULT_CONFIG
        return cls("citizen", cfg.agent_ip, cfg.citizen_port, behaviour, ring_delay_ms)

    @property
    def stat_file(self) -> Path:
        """sipp's statistics CSV."""
        return self.workdir / "stats.csv"

    @property
    def stats(self) -> SippStats:
        """Counters so far (written every second while running, and at exit)."""
        return read_stats(self.stat_file)

    @property
    def running(self) -> bool:
        """Whether the sipp process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 5.0) -> SippAgent:
        """Start sipp and wait until it listens on its port.

        Args:
            timeout: Seconds to wait for the port.

        Returns:
            ``self``.

        Raises:
            TestbedError: sipp exited or never bound the port.
        """
        if self.running:
            return self
        cmd = [
            sipp_binary(),
            "-sf",
            str(AGENT_SCENARIOS[self.behaviour]),
            "-i",
            self.ip,
            "-p",
            str(self.port),
            "-mi",
            self.ip,
            "-mp",
            str(free_media_port(self.ip)),
            "-nostdin",
            "-trace_err",
            "-trace_stat",
            "-stf",
            str(self.stat_file),
            "-fd",
            "1",
            "-trace_screen",
        ]
        if self.behaviour in ("answer", "talk"):
            # The ring delay is the global receive timeout of the "wait for CANCEL"
            # step (sipp cannot take a pause length from a -key); 0 would mean "no
            # timeout", i.e. never answer.
            cmd += ["-recv_timeout", str(max(1, self.ring_delay_ms))]
        if self.trace_messages:
            cmd.append("-trace_msg")
        self._log = (self.workdir / "output.log").open("wb")
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._log.close()
                raise TestbedError(
                    f"sipp for {self.name} exited ({self._proc.returncode}): "
                    f"{(self.workdir / 'output.log').read_text(errors='replace')[-2000:]}"
                )
            if _udp_port_taken(self.ip, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise TestbedError(f"sipp for {self.name} did not bind {self.ip}:{self.port}")

    def stop(self, timeout: float = 8.0) -> SippStats:
        """Stop sipp gracefully and return its final counters.

        SIGUSR1 is sipp's soft quit: no new calls, exit once the running ones
        (including their ``timewait``) are over, writing the final statistics.
        SIGINT and SIGKILL follow if it takes longer than ``timeout``.

        Args:
            timeout: Seconds to wait for the graceful exit.

        Returns:
            The final statistics.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGUSR1, timeout), (signal.SIGINT, 2.0)):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc is not None and not self._log.closed:
            self._log.close()
        return self.stats

    def errors(self) -> str:
        """Content of sipp's ``*_errors.log``.

        Returns:
            The text, empty when there were none.
        """
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.workdir.glob("*_errors.log"))
        )

    def __enter__(self) -> SippAgent:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SippAgent({self.name} {self.behaviour} {self.ip}:{self.port})"


def _udp_port_taken(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return True
    return False


def start_agents(
    behaviours: Sequence[AgentBehaviour] | None = None,
    ring_delay_ms: int = 50,
    config: TestbedConfig | None = None,
) -> list[SippAgent]:
    """Start agents 1..N with the given behaviours (default: all answer).

    Args:
        behaviours: One behaviour per agent, agent1 first.
        ring_delay_ms: Ring time before answering.
        config: Test bed configuration.

    Returns:
        The running agents (stop them with :func:`stop_agents`).
    """
    cfg = config or _DEFAULT_CONFIG
    kinds: Sequence[AgentBehaviour] = behaviours or ["answer"] * cfg.agent_count
    agents: list[SippAgent] = []
    try:
        for n, kind in enumerate(kinds, start=1):
            agents.append(SippAgent.for_agent(n, kind, ring_delay_ms, cfg).start())
    except BaseException:
        stop_agents(agents)
        raise
    return agents


def stop_agents(agents: Sequence[SippAgent]) -> dict[str, SippStats]:
    """Stop agents and collect their final statistics.

    Args:
        agents: Agents to stop.

    Returns:
        Final statistics per agent name.
    """
    return {a.name: a.stop() for a in agents}
