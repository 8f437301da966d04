"""Asterisk under load: calls through pbxbridge against a pure dialplan ``Queue()``.

One run, on the real test bed (``tests/testbed``): the same sipp load, 50 calls/s for
60 s per path by default, goes

* through the pure dialplan baseline (source IP 127.0.0.4: ``Queue(servicecenter,t)``,
  the physical floor of this machine),
* through pbxbridge over ARI (source IP 127.0.0.2: ``Stasis`` -> the real
  ``pbxbridge run`` daemon sets the tag variables over ARI and ``continue``s ->
  ``pbxbridge-queue`` -> ``Queue()``), and
* through pbxbridge over FastAGI (source IP 127.0.0.5: ``[pbxbridge-agi]`` of the
  shipped FreePBX dialplan, ``AGI(agi://...)`` to the same daemon -> ``Goto`` ->
  ``pbxbridge-queue`` -> ``Queue()``),

all answered by the same four sipp agents (``ringinuse=yes``, ``rrmemory``, calls
held 500 ms). Each path runs as one continuous run (pure, ARI, AGI), so each really
carries the load for the whole time; ``--blocks N`` runs N blocks per path and
rotates the order per block, which cancels slow drift of the machine.

The agents (``--agents``):

* ``ring`` (default): they ring 20 ms (``--ring-delay-ms``) before answering. sipp
  times that on its own tick: a 20 ms ring lasts 24 to 28 ms, depending on where
  the INVITE falls between ticks, which hides a few milliseconds of added delay in
  the ratio. The agents therefore trace too, and each call is split into the
  agent's ring and Asterisk's share (``*_asterisk_*``: everything else, pbxbridge
  included); ``p95_ratio_fixed_ring`` is the p95 ratio as if every agent rang
  exactly ``--ring-delay-ms``.
* ``instant``: they send 200 OK the moment the INVITE arrives
  (``tests/testbed/sipp/agent_instant.xml``), so INVITE -> 200 OK at the carrier
  is Asterisk's own time (and pbxbridge's): the ratios are against the real floor
  and ``p95_extra_ms`` / ``agi_p95_extra_ms`` are the milliseconds pbxbridge adds.

Latency is INVITE sent -> 200 OK received at the carrier, per Call-ID, from the
microsecond timestamps of sipp's ``-trace_msg`` log: sipp's own response times
(``-trace_rtt``, reported as ``*_rtt_*``) come in 4 ms steps here, too coarse for a
ratio of two ~30 ms figures. ``p95_ratio`` (ARI over pure) and ``agi_p95_ratio``
are the plain carrier-side figures, ``p95_extra_ms`` and ``agi_p95_extra_ms`` the
same p95s as a difference in ms.

The daemon runs with the integration tests' rules (``TEST_RULES``, DID
``+494407730`` -> tenant ``wardenburg``, always open) minus wardenburg's whisper
(``--whisper none``): the whisper is a 0.3 s prompt played to the agent before the
bridge, which the pure path does not have, so it would measure the prompt, not
pbxbridge. ``--whisper missing`` names a sound file that does not exist instead:
nothing is played, yet app_queue still puts the caller into autoservice around
the (skipped) announcement, and leaving autoservice waits for the autoservice
thread to go round its loop, which sleeps 10 ms when it finds no channel to
watch (``main/autoservice.c``): about 10 ms per call that the pure path does not
pay. The daemon logs at ``info`` (one ``call.routed`` line per call is part of
the real cost) and, by default, routes only: AMI and MQTT are off (``--daemon
full`` turns them on). Its CPU time (utime + stime from ``/proc/<pid>/stat``)
over a path's measured calls, divided by the calls it routed on that entry point
(``/healthz``), is ``cpu_ms_per_call`` (ARI) and ``agi_cpu_ms_per_call``.

The test bed is exclusive per machine: the run holds the pytest sessions' lock
(``/tmp/pbxbridge-testbed.lock``, ``PBXBRIDGE_TESTBED_LOCK``) from before
``Testbed.up()`` until Asterisk is down again, and stops everything it started
(SIGTERM included).

Usage: ``python benchmarks/asterisk_load.py [--rate 50] [--seconds 60] [--blocks 1]
[--agents ring|instant] [--whisper none|missing] [--daemon routing|full]
[--mqtt tcp|unix] [--keep]``
(root: the test bed needs ``chroot``). The last line of output is JSON with
``failed_calls`` (pure + ARI) and ``agi_failed_calls``, p50/p95/p99 INVITE -> 200 OK
of the three paths, ``p95_ratio`` / ``p95_extra_ms`` (ARI over pure),
``agi_p95_ratio`` / ``agi_p95_extra_ms``, ``cpu_ms_per_call``,
``agi_cpu_ms_per_call``, ``daemon_cpu_over_asterisk`` /
``agi_daemon_cpu_over_asterisk`` (the daemon's CPU per call over Asterisk's own
per call on the same path, in the same run) and ``daemon_connections``
(``/healthz`` states after the last call). Targets: 0 failed calls, p95 ratios
<= 1.2, cpu_ms_per_call <= 1, daemon_cpu_over_asterisk <= 0.25.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import math
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.daemon import TEST_RULES, DaemonProcess, install_test_sound
from tests.mosquitto import MosquittoBroker
from tests.testbed.bench import (
    asterisk_pid,
    bench_config,
    cpu_ticks,
    progress,
    run_benchmark,
    stop_own_sipp_children,
)
from tests.testbed.config import AGI_SECRET
from tests.testbed.sipp import (
    AgentBehaviour,
    CallResult,
    SippAgent,
    SippStats,
    percentile,
    place_calls,
    stop_agents,
)
from tests.testbed.testbed import Testbed

DID = "+494407730"  # tenant wardenburg in TEST_RULES
CALLER = "04407123456"
DISPLAY = "Jörg Müller"
PURE = "pure"
PBX = "pbxbridge"
AGI = "agi"
_WHISPER = ", whisper: custom/pbxbridge-test"
#: A whisper whose sound file does not exist (``--whisper missing``).
MISSING_WHISPER = "custom/pbxbridge-no-such-sound"

TARGET_FAILED = 0
TARGET_P95_RATIO = 1.2
TARGET_CPU_MS = 1.0
#: The daemon's CPU per call over Asterisk's own per call, in the same run: the
#: daemon beside Asterisk should cost a quarter of what Asterisk itself spends.
TARGET_CPU_RATIO = 0.25


say = progress("asterisk_load")  # stderr: stdout carries the summary and the JSON line


# ----------------------------------------------------------------- set-up


def bench_rules(whisper: str = "none") -> str:
    """TEST_RULES without wardenburg's whisper, or with one whose file is missing.

    Args:
        whisper: ``none`` (the module docstring says why) or ``missing``: the
            whisper names a sound that does not exist, so nothing is played and
            only app_queue's announcement handling is left (see ``--whisper``).

    Returns:
        The rules text.
    """
    if _WHISPER not in TEST_RULES:
        raise RuntimeError(f"TEST_RULES changed: {_WHISPER!r} not found; update the benchmark")
    replacement = f", whisper: {MISSING_WHISPER}" if whisper == "missing" else ""
    return TEST_RULES.replace(_WHISPER, replacement, 1)


# ----------------------------------------------------------------- latency

_TRACE_HEADER = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)$", re.MULTILINE)


def parse_trace(workdir: Path) -> dict[str, dict[str, float]]:
    """INVITE and 200-OK-to-INVITE times per Call-ID from sipp's ``*_messages.log``.

    ``-trace_msg`` stamps every message with the wall clock in microseconds (all
    sipp processes share the host clock). Per Call-ID the first of each is kept
    (not retransmissions), under ``invite_sent``/``invite_recv``/``ok_sent``/
    ``ok_recv``, as seconds since the epoch.
    """
    calls: dict[str, dict[str, float]] = {}
    for path in sorted(workdir.glob("*_messages.log")):
        text = path.read_text(encoding="utf-8", errors="replace")
        heads = list(_TRACE_HEADER.finditer(text))
        for i, head in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            lines = text[head.end() : end].strip("\n").split("\n")
            sent = "message sent" in lines[0]
            start = next((ln.strip() for ln in lines[1:] if ln.strip()), "")
            if start.startswith("INVITE "):
                key = "invite_sent" if sent else "invite_recv"
            elif start.startswith("SIP/2.0 200"):
                key = "ok_sent" if sent else "ok_recv"
            else:
                continue
            call_id = cseq = ""
            for ln in lines[2:]:
                name, _, value = ln.partition(":")
                lower = name.strip().lower()
                if lower in ("call-id", "i"):
                    call_id = value.strip()
                elif lower == "cseq":
                    cseq = value.strip()
                elif not ln.strip():
                    break  # end of the headers
            if not call_id or (key.startswith("ok") and not cseq.endswith("INVITE")):
                continue
            stamp = datetime.strptime(head.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            calls.setdefault(call_id, {}).setdefault(key, stamp)
    return calls


def carrier_calls(workdir: Path) -> list[tuple[float, float]]:
    """(INVITE sent, 200 OK received) per answered call of a ``place_calls`` run."""
    return sorted(
        (t["invite_sent"], t["ok_recv"])
        for t in parse_trace(workdir).values()
        if "invite_sent" in t and "ok_recv" in t
    )


def agent_legs(workdirs: list[Path]) -> list[tuple[float, float]]:
    """(INVITE received, 200 OK sent) per answered agent leg, by 200 OK time."""
    legs = [
        (t["invite_recv"], t["ok_sent"])
        for wd in workdirs
        for t in parse_trace(wd).values()
        if "invite_recv" in t and "ok_sent" in t
    ]
    return sorted(legs, key=lambda leg: leg[1])


def split_at_agent(
    calls: list[tuple[float, float]],
    legs: list[tuple[float, float]],
    max_gap_s: float = 0.010,
    slack_s: float = 0.001,
) -> tuple[list[float], list[float]]:
    """Each call's INVITE -> 200 OK split into Asterisk's share and the agent's ring.

    Asterisk answers the carrier right after the agent's 200 OK, so a call's agent
    leg is the one whose 200 OK was sent last before the carrier's 200 OK arrived
    (within ``max_gap_s``; calls are 20 ms apart at 50/s). ``slack_s`` allows for
    the order in which two processes write their logs (a sender may stamp a
    message after its receiver did). Calls without an unambiguous leg are left
    out.

    Returns:
        Asterisk's share (carrier INVITE -> 200 OK minus the agent's INVITE ->
        200 OK) and the agent's ring time, in ms, for the matched calls.
    """
    ends = [ok for _, ok in legs]
    used: set[int] = set()
    shares: list[float] = []
    rings: list[float] = []
    for invite, ok in calls:
        i = bisect.bisect_right(ends, ok + slack_s) - 1
        if i < 0 or i in used:
            continue
        leg_invite, leg_ok = legs[i]
        if ok - leg_ok > max_gap_s or leg_invite < invite - slack_s:
            continue
        used.add(i)
        rings.append((leg_ok - leg_invite) * 1000.0)
        shares.append((ok - invite) * 1000.0 - rings[-1])
    return shares, rings


def agent_gap_s(args: argparse.Namespace) -> float:
    """The longest agent 200 OK -> carrier 200 OK gap :func:`split_at_agent` accepts.

    Without a whisper Asterisk answers the carrier about a millisecond after the
    agent's 200 OK (10 ms is ample). With ``--whisper missing`` app_queue first
    takes the caller through autoservice, which adds about 10 ms after the
    agent's answer: with the 10 ms window half the calls found no leg.
    """
    return 0.030 if args.whisper == "missing" else 0.010


# ----------------------------------------------------------------- running


@dataclasses.dataclass
class PathStats:
    """What one path's measured calls did (warm-up excluded)."""

    name: str
    requested: int = 0
    successful: int = 0
    sipp_failed: int = 0
    calls: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    rtt_ms: list[float] = dataclasses.field(default_factory=list)
    wall_s: float = 0.0
    asterisk_ticks: int = 0
    daemon_ticks: int = 0
    routed: int = 0
    route_failed: int = 0
    routed_ranges: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    workdirs: list[Path] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> int:
        """Calls that did not complete: sipp failures and calls never completed."""
        return self.requested - self.successful

    @property
    def latencies_ms(self) -> list[float]:
        """INVITE -> 200 OK per answered call, in ms (trace timestamps)."""
        return [(ok - invite) * 1000.0 for invite, ok in self.calls]

    def pct(self, p: float) -> float:
        """INVITE -> 200 OK percentile in ms (trace timestamps)."""
        return percentile(self.latencies_ms, p)


@dataclasses.dataclass
class Bench:
    """One benchmark run's fixed parts."""

    tb: Testbed
    daemon: DaemonProcess
    rate: float
    hold_ms: int

    def source_ip(self, path: str) -> str:
        """The carrier address that selects the path."""
        cfg = self.tb.config
        return {PBX: cfg.trunk_ip, AGI: cfg.agi_trunk_ip}.get(path, cfg.pure_trunk_ip)

    def calls(self, path: str, count: int) -> CallResult:
        """Place ``count`` calls on ``path`` at the benchmark rate (blocking)."""
        return place_calls(
            DID,
            count=count,
            rate=self.rate,
            hold_ms=self.hold_ms,
            caller=CALLER,
            display=DISPLAY,
            source_ip=self.source_ip(path),
            target=f"{self.tb.sip_host}:{self.tb.sip_port}",
            # ~rate x (ring + hold + BYE + 0.5 s timewait) calls are open at once
            max_concurrent=max(200, int(self.rate * 10)),
            timeout_s=count / self.rate + 60.0,
            trace_messages=True,
        )

    def routed_so_far(self, path: str) -> tuple[int, int]:
        """Routed and failed calls of the path's entry point, from ``/healthz``.

        ``/healthz`` keeps the ARI router's counters under ``calls`` and the
        FastAGI router's under ``agi``.
        """
        counters = self.daemon.health()["agi" if path == AGI else "calls"]
        return int(counters["routed"]), int(counters["failed"])

    def warm_up(self, path: str, count: int) -> int:
        """Unmeasured calls; returns how many did not complete."""
        if count <= 0:
            return 0
        say(f"warm-up: {count} calls on {path}")
        result = self.calls(path, count)
        self.tb.wait_idle(timeout=30)
        if result.failed or result.successful != count:
            say(f"warm-up on {path}: {count - result.successful} failed\n{result.describe()}")
        return count - result.successful

    def block(self, stats: PathStats, count: int) -> None:
        """Measured calls on one path, added to ``stats``."""
        path = stats.name
        say(f"{path}: {count} calls at {self.rate:g}/s")
        daemon_pid = self.daemon.proc.pid if self.daemon.proc else None
        ast_pid = asterisk_pid(self.tb)
        routed0, failed0 = self.routed_so_far(path)
        d0 = cpu_ticks(daemon_pid) if daemon_pid else 0
        a0 = cpu_ticks(ast_pid) if ast_pid else 0
        started = time.monotonic()
        result = self.calls(path, count)
        stats.wall_s += time.monotonic() - started
        if ast_pid:
            stats.asterisk_ticks += cpu_ticks(ast_pid) - a0
        if daemon_pid:
            stats.daemon_ticks += cpu_ticks(daemon_pid) - d0
        routed1, failed1 = self.routed_so_far(path)
        stats.routed += routed1 - routed0
        stats.route_failed += failed1 - failed0
        stats.routed_ranges.append((routed0, routed1))
        stats.requested += count
        stats.successful += result.successful
        stats.sipp_failed += result.failed
        stats.rtt_ms.extend(result.invite_to_200_ms)
        stats.calls.extend(carrier_calls(result.workdir))
        stats.workdirs.append(result.workdir)
        if not result.ok:
            say(f"{path}: {count - result.successful} of {count} calls failed\n{result.describe()}")
        self.tb.wait_idle(timeout=30)


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def daemon_env_for(
    mode: str, tb: Testbed, unix_socket: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """The daemon's extra environment and the features it runs with.

    ``routing``: ARI routing only; AMI (queue following) and MQTT (screen pops)
    off, so the figure does not depend on a broker happening to run here.
    ``full``: also AMI, logged in to the test bed, and MQTT when a broker answers
    at ``PBXBRIDGE_MQTT_HOST``/``PBXBRIDGE_MQTT_PORT`` (default 127.0.0.1:1883),
    or over ``unix_socket`` (``--mqtt unix``: a private mosquitto's socket).
    """
    # The shared secret the test bed's [pbxbridge-agi] passes: the AGI path is
    # measured as deployed, with its session check.
    env = {"PBXBRIDGE_LOG_LEVEL": "info", "PBXBRIDGE_AGI_SECRET": AGI_SECRET}
    if mode == "routing":
        env.update(PBXBRIDGE_AMI_ENABLED="no", PBXBRIDGE_MQTT_ENABLED="no")
        return env, ["ari"]
    env.update(
        PBXBRIDGE_AMI_ENABLED="yes",
        PBXBRIDGE_AMI_HOST=tb.ami_host,
        PBXBRIDGE_AMI_PORT=str(tb.ami_port),
        PBXBRIDGE_AMI_USER=tb.ami_user,
        PBXBRIDGE_AMI_PASSWORD=tb.ami_password,
    )
    if unix_socket is not None:
        # PORT empty: the daemon's environment names the test broker's TCP port.
        env.update(
            PBXBRIDGE_MQTT_ENABLED="yes",
            PBXBRIDGE_MQTT_HOST=f"unix:{unix_socket}",
            PBXBRIDGE_MQTT_PORT="",
        )
        return env, ["ari", "ami", "mqtt-unix"]
    host = os.environ.get("PBXBRIDGE_MQTT_HOST") or "127.0.0.1"
    port = int(os.environ.get("PBXBRIDGE_MQTT_PORT") or 1883)
    if _tcp_open(host, port):
        env["PBXBRIDGE_MQTT_ENABLED"] = "yes"
        return env, ["ari", "ami", "mqtt"]
    say(f"no MQTT broker at {host}:{port}: MQTT off")
    env["PBXBRIDGE_MQTT_ENABLED"] = "no"
    return env, ["ari", "ami"]


def block_sizes(total: int, blocks: int) -> list[int]:
    """``total`` calls split into ``blocks`` nearly equal parts."""
    base, rest = divmod(total, blocks)
    return [base + (1 if i < rest else 0) for i in range(blocks)]


def routing_ms(daemon: DaemonProcess, ranges: list[tuple[int, int]], entry: str) -> list[float]:
    """The daemon's own ``call.routed`` ``ms`` of one entry point's measured calls.

    The n-th ``call.routed`` line of an entry point is logged right after its
    router's counter reached n (same task, no await in between), so counter
    ranges select the lines. With both entry points in one daemon the lines
    interleave: AGI lines carry ``entry: agi``, ARI lines no ``entry`` or
    ``entry: ari``.
    """
    routed = [e for e in daemon.routed() if e.get("entry", "ari") == entry]
    out: list[float] = []
    for lo, hi in ranges:
        out.extend(float(e.get("ms", math.nan)) for e in routed[lo:hi])
    return out


def wait_agi_listening(daemon: DaemonProcess) -> None:
    """Wait for the daemon's FastAGI server; name the process holding its port if not.

    The test bed's ``[pbxbridge-agi]`` calls a fixed address: a daemon left
    running by someone else there would get the AGI path's calls.
    """
    try:
        daemon.wait_health(lambda h: h["agi"]["state"] == "listening", timeout=10)
    except AssertionError:
        agi = daemon.health().get("agi") or {}
        bind = str(agi.get("bind", ""))
        holder = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{bind.rpartition(':')[2]}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        raise SystemExit(
            f"the daemon's FastAGI server cannot listen on {bind} "
            f"({agi.get('last_error')}); held by: {holder or 'unknown'}. "
            "Stop that process, or run with --no-agi"
        ) from None


def connection_states(health: dict[str, Any]) -> dict[str, str]:
    """``/healthz``'s state per connection (the MQTT part has ``connected``, no state)."""
    out: dict[str, str] = {}
    for name in ("ari", "ami", "mqtt", "agi"):
        part = health.get(name) or {}
        state = part.get("state")
        if state is None and "connected" in part:
            state = "connected" if part["connected"] else "disconnected"
        out[name] = str(state)
    return out


def start_agents(args: argparse.Namespace, tb: Testbed) -> list[SippAgent]:
    """The four tracing sipp agents: ringing ``--ring-delay-ms``, or answering at once."""
    behaviour: AgentBehaviour = "instant" if args.agents == "instant" else "answer"
    agents: list[SippAgent] = []
    try:
        for n in range(1, tb.config.agent_count + 1):
            agent = SippAgent.for_agent(
                n, behaviour, args.ring_delay_ms, tb.config, trace_messages=True
            )
            agents.append(agent)
            agent.start()
    except BaseException:
        stop_agents(agents)
        raise
    return agents


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Bring up the bed, the agents and the daemon; run the three paths; tear down."""
    tb = Testbed(config=bench_config())
    agents: list[SippAgent] = []
    daemon: DaemonProcess | None = None
    pure, pbx, agi = PathStats(PURE), PathStats(PBX), PathStats(AGI)
    warmup_failed = agi_warmup_failed = 0
    routing: list[float] = []
    agi_routing: list[float] = []
    agent_stats: dict[str, SippStats] = {}
    agent_dirs: list[Path] = []
    connections: dict[str, str] = {}
    features: list[str] = []
    broker: MosquittoBroker | None = None
    try:
        if args.daemon == "full" and args.mqtt == "unix":
            # A private broker: the machine's own has no Unix socket listener.
            broker = MosquittoBroker(workdir / "mosquitto", unix_socket=True)
            broker.start()
        tb.up()
        install_test_sound(tb)  # other tenants of TEST_RULES refer to it
        agents = start_agents(args, tb)
        (workdir / "daemon").mkdir()
        daemon_env, features = daemon_env_for(
            args.daemon, tb, broker.socket_path if broker is not None else None
        )
        daemon = DaemonProcess(
            tb, workdir / "daemon", rules=bench_rules(args.whisper), extra_env=daemon_env
        )
        daemon.start()
        if args.agi:
            wait_agi_listening(daemon)
        bench = Bench(tb, daemon, args.rate, args.hold_ms)
        warmup_failed += bench.warm_up(PURE, args.warmup)
        warmup_failed += bench.warm_up(PBX, args.warmup)
        agi_warmup_failed = bench.warm_up(AGI, args.warmup) if args.agi else 0
        total = round(args.rate * args.seconds)
        paths = (pure, pbx, agi) if args.agi else (pure, pbx)
        for i, count in enumerate(block_sizes(total, args.blocks)):
            # Rotate the order per block, so no path always runs first or last.
            for stats in paths[i % len(paths) :] + paths[: i % len(paths)]:
                bench.block(stats, count)
        connections = connection_states(daemon.health())
        agent_dirs = [a.workdir for a in agents]
        agent_stats = stop_agents(agents)
        agents = []
        daemon.stop()
        routing = routing_ms(daemon, pbx.routed_ranges, "ari")
        agi_routing = routing_ms(daemon, agi.routed_ranges, AGI)
    finally:
        if agents:
            stop_agents(agents)
        if daemon is not None:
            daemon.stop()
        stop_own_sipp_children(say)
        tb.down()
        if broker is not None:
            broker.stop()
    legs = agent_legs(agent_dirs)
    res = summarise(
        args,
        pure,
        pbx,
        routing,
        warmup_failed,
        legs,
        {k: dataclasses.asdict(v) for k, v in agent_stats.items()},
    )
    res["daemon_features"] = [*features, "agi"] if args.agi else features
    res["daemon_connections"] = connections  # /healthz states after the last call
    res.update(summarise_agi(args, pure, agi, agi_routing, agi_warmup_failed, legs))
    if args.agi:
        res["targets_met"]["agi_failed_calls"] = res["agi_failed_calls"] <= TARGET_FAILED
        ratio = res["agi_p95_ratio"]
        res["targets_met"]["agi_p95_ratio"] = ratio is not None and ratio <= TARGET_P95_RATIO
    res["daemon_cpu_over_asterisk"] = cpu_ratio(pbx)
    res["agi_daemon_cpu_over_asterisk"] = cpu_ratio(agi)
    ratio = res["daemon_cpu_over_asterisk"]
    res["targets_met"]["daemon_cpu_over_asterisk"] = ratio is not None and ratio <= TARGET_CPU_RATIO
    return res


def cpu_ratio(stats: PathStats) -> float | None:
    """The daemon's CPU per routed call over Asterisk's CPU per call on one path.

    Both from the same measured calls, so the machine's speed (and whatever else
    runs on it) cancels out: the daemon's cost in units of the PBX's own.
    """
    if not (stats.routed and stats.requested and stats.asterisk_ticks):
        return None
    daemon = stats.daemon_ticks / stats.routed
    asterisk = stats.asterisk_ticks / stats.requested
    return _r(daemon / asterisk)


# ----------------------------------------------------------------- report


def _r(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def summarise(
    args: argparse.Namespace,
    pure: PathStats,
    pbx: PathStats,
    routing: list[float],
    warmup_failed: int,
    legs: list[tuple[float, float]],
    agent_stats: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """The JSON result."""
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    ratio = pbx.pct(95) / pure.pct(95) if pure.latencies_ms and pbx.latencies_ms else math.nan
    cpu_per_call = pbx.daemon_ticks * tick_ms / pbx.routed if pbx.routed else math.nan
    out: dict[str, Any] = {
        "rate": args.rate,
        "seconds": args.seconds,
        "blocks": args.blocks,
        "calls_per_path": round(args.rate * args.seconds),
        "warmup_calls_per_path": args.warmup,
        "hold_ms": args.hold_ms,
        "agent_mode": args.agents,
        "ring_delay_ms": args.ring_delay_ms,
        "whisper": args.whisper if args.whisper == "none" else MISSING_WHISPER,
        "failed_calls": pure.failed + pbx.failed,
        "failed_pbxbridge": pbx.failed,
        "failed_pure": pure.failed,
        "warmup_failed": warmup_failed,
    }
    for stats in (pure, pbx):
        for p in (50, 95, 99):
            out[f"{stats.name}_p{p}_ms"] = _r(stats.pct(p))
        out[f"{stats.name}_max_ms"] = _r(max(stats.latencies_ms, default=math.nan))
        out[f"{stats.name}_samples"] = len(stats.latencies_ms)
    out["p50_ratio"] = (
        _r(pbx.pct(50) / pure.pct(50)) if pure.latencies_ms and pbx.latencies_ms else None
    )
    out["p95_ratio"] = _r(ratio)
    out["p95_extra_ms"] = _r(pbx.pct(95) - pure.pct(95))
    out["cpu_ms_per_call"] = _r(cpu_per_call)
    out["routed"] = pbx.routed
    out["route_failed"] = pbx.route_failed
    for p in (50, 95, 99):
        out[f"routing_p{p}_ms"] = _r(percentile(routing, p))
    for stats in (pure, pbx):
        for p in (50, 95, 99):
            out[f"{stats.name}_rtt_p{p}_ms"] = _r(percentile(stats.rtt_ms, p))
        out[f"asterisk_cpu_ms_per_call_{stats.name}"] = (
            _r(stats.asterisk_ticks * tick_ms / stats.requested) if stats.requested else None
        )
        out[f"{stats.name}_wall_s"] = _r(stats.wall_s, 1)
    # Asterisk's share: INVITE -> 200 OK without the agent's own ring time, which
    # sipp times on a coarse timer (a 20 ms ring is 24 to 28 ms); the ratio as if
    # every agent answered exactly --ring-delay-ms after the INVITE.
    shares: dict[str, list[float]] = {}
    for stats in (pure, pbx):
        share, rings = split_at_agent(stats.calls, legs, max_gap_s=agent_gap_s(args))
        shares[stats.name] = share
        for p in (50, 95, 99):
            out[f"{stats.name}_asterisk_p{p}_ms"] = _r(percentile(share, p))
        out[f"{stats.name}_asterisk_samples"] = len(share)
        for p in (50, 95):
            out[f"{stats.name}_agent_ring_p{p}_ms"] = _r(percentile(rings, p))
    ring = float(args.ring_delay_ms)
    pure_share95 = percentile(shares[PURE], 95)
    pbx_share95 = percentile(shares[PBX], 95)
    out["asterisk_p95_extra_ms"] = _r(pbx_share95 - pure_share95)
    out["p95_ratio_fixed_ring"] = _r((pbx_share95 + ring) / (pure_share95 + ring))
    out["latency_source"] = "sipp -trace_msg timestamps (us), INVITE sent -> 200 OK received"
    out["agents"] = agent_stats
    out["targets_met"] = {
        "failed_calls": out["failed_calls"] <= TARGET_FAILED,
        "p95_ratio": not math.isnan(ratio) and ratio <= TARGET_P95_RATIO,
        "cpu_ms_per_call": not math.isnan(cpu_per_call) and cpu_per_call <= TARGET_CPU_MS,
    }
    return out


def summarise_agi(
    args: argparse.Namespace,
    pure: PathStats,
    agi: PathStats,
    routing: list[float],
    warmup_failed: int,
    legs: list[tuple[float, float]],
) -> dict[str, Any]:
    """The AGI path's figures, named and computed like the ARI path's."""
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    both = bool(pure.latencies_ms and agi.latencies_ms)
    out: dict[str, Any] = {
        "agi_failed_calls": agi.failed,
        "agi_warmup_failed": warmup_failed,
    }
    for p in (50, 95, 99):
        out[f"agi_p{p}_ms"] = _r(agi.pct(p))
    out["agi_max_ms"] = _r(max(agi.latencies_ms, default=math.nan))
    out["agi_samples"] = len(agi.latencies_ms)
    out["agi_p50_ratio"] = _r(agi.pct(50) / pure.pct(50)) if both else None
    out["agi_p95_ratio"] = _r(agi.pct(95) / pure.pct(95)) if both else None
    out["agi_p95_extra_ms"] = _r(agi.pct(95) - pure.pct(95))
    out["agi_cpu_ms_per_call"] = _r(agi.daemon_ticks * tick_ms / agi.routed) if agi.routed else None
    out["agi_routed"] = agi.routed
    out["agi_route_failed"] = agi.route_failed
    for p in (50, 95, 99):
        out[f"agi_routing_p{p}_ms"] = _r(percentile(routing, p))
        out[f"agi_rtt_p{p}_ms"] = _r(percentile(agi.rtt_ms, p))
    out["asterisk_cpu_ms_per_call_agi"] = (
        _r(agi.asterisk_ticks * tick_ms / agi.requested) if agi.requested else None
    )
    out["agi_wall_s"] = _r(agi.wall_s, 1)
    pure_share, _ = split_at_agent(pure.calls, legs, max_gap_s=agent_gap_s(args))
    share, rings = split_at_agent(agi.calls, legs, max_gap_s=agent_gap_s(args))
    for p in (50, 95, 99):
        out[f"agi_asterisk_p{p}_ms"] = _r(percentile(share, p))
    out["agi_asterisk_samples"] = len(share)
    for p in (50, 95):
        out[f"agi_agent_ring_p{p}_ms"] = _r(percentile(rings, p))
    ring = float(args.ring_delay_ms)
    out["agi_asterisk_p95_extra_ms"] = _r(percentile(share, 95) - percentile(pure_share, 95))
    out["agi_p95_ratio_fixed_ring"] = _r(
        (percentile(share, 95) + ring) / (percentile(pure_share, 95) + ring)
    )
    return out


def print_summary(res: dict[str, Any]) -> None:
    """Human-readable lines (stdout, before the JSON)."""
    ring = (
        "agents answer at once"
        if res["agent_mode"] == "instant"
        else (f"ring {res['ring_delay_ms']} ms")
    )
    print(
        f"asterisk_load: {res['calls_per_path']} calls per path at {res['rate']:g}/s "
        f"({res['blocks']} block(s) each), hold {res['hold_ms']} ms, {ring}, "
        f"whisper {res['whisper']}"
    )
    print("INVITE -> 200 OK (ms)        p50      p95      p99      max   failed")
    for name, label in ((PURE, PURE), (PBX, PBX), (AGI, "agi (FastAGI)")):
        prefix = "agi_" if name == AGI else f"{name}_"
        cells = [res[f"{prefix}p{p}_ms"] for p in (50, 95, 99)] + [res[f"{prefix}max_ms"]]
        text = "".join(f"{c:9.2f}" if c is not None else "      n/a" for c in cells)
        failed = res["agi_failed_calls"] if name == AGI else res[f"failed_{name}"]
        print(f"  {label:<25}{text}{failed:9d}")
    print(
        f"ARI: p95 ratio {res['p95_ratio']} (target <= {TARGET_P95_RATIO}), "
        f"+{res['p95_extra_ms']} ms at p95; p50 ratio {res['p50_ratio']}"
    )
    print(
        f"AGI: p95 ratio {res['agi_p95_ratio']} (target <= {TARGET_P95_RATIO}), "
        f"+{res['agi_p95_extra_ms']} ms at p95; p50 ratio {res['agi_p50_ratio']}"
    )
    print(
        f"Asterisk's share (without the agent's ring) p50/p95/p99: pure "
        f"{res['pure_asterisk_p50_ms']}/{res['pure_asterisk_p95_ms']}/"
        f"{res['pure_asterisk_p99_ms']} ms, pbxbridge {res['pbxbridge_asterisk_p50_ms']}/"
        f"{res['pbxbridge_asterisk_p95_ms']}/{res['pbxbridge_asterisk_p99_ms']} ms, agi "
        f"{res['agi_asterisk_p50_ms']}/{res['agi_asterisk_p95_ms']}/"
        f"{res['agi_asterisk_p99_ms']} ms; p95 ratio with an exact {res['ring_delay_ms']} ms "
        f"ring: ARI {res['p95_ratio_fixed_ring']}, AGI {res['agi_p95_ratio_fixed_ring']}"
    )
    print(
        f"agent ring time p50/p95 (sipp timer): pure {res['pure_agent_ring_p50_ms']}/"
        f"{res['pure_agent_ring_p95_ms']} ms, pbxbridge {res['pbxbridge_agent_ring_p50_ms']}/"
        f"{res['pbxbridge_agent_ring_p95_ms']} ms"
    )
    print(
        f"daemon ({'+'.join(res['daemon_features'])}) CPU per routed call: ARI "
        f"{res['cpu_ms_per_call']} ms, AGI {res['agi_cpu_ms_per_call']} ms "
        f"(target <= {TARGET_CPU_MS}); {res['routed']} + {res['agi_routed']} routed, "
        f"{res['route_failed']} + {res['agi_route_failed']} routing failures; "
        f"routing time p50/p95/p99 ARI {res['routing_p50_ms']}/{res['routing_p95_ms']}/"
        f"{res['routing_p99_ms']} ms, AGI {res['agi_routing_p50_ms']}/"
        f"{res['agi_routing_p95_ms']}/{res['agi_routing_p99_ms']} ms"
    )
    print(
        f"Asterisk CPU per call: pure {res['asterisk_cpu_ms_per_call_pure']} ms, "
        f"pbxbridge {res['asterisk_cpu_ms_per_call_pbxbridge']} ms, "
        f"agi {res['asterisk_cpu_ms_per_call_agi']} ms"
    )
    print(
        f"daemon CPU over Asterisk's per call: ARI {res['daemon_cpu_over_asterisk']}, "
        f"AGI {res['agi_daemon_cpu_over_asterisk']} (target <= {TARGET_CPU_RATIO})"
    )
    print(
        f"sipp RTT (whole ms) p95: pure {res['pure_rtt_p95_ms']}, "
        f"pbxbridge {res['pbxbridge_rtt_p95_ms']}, agi {res['agi_rtt_p95_ms']}"
    )
    print(f"daemon connections after the last call: {res['daemon_connections']}")
    print(f"targets met: {res['targets_met']}")


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="calls per second (50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per path (60)")
    parser.add_argument(
        "--blocks",
        type=int,
        default=1,
        help="rotate the paths in this many blocks each (1: pure, ARI, AGI)",
    )
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured calls per path (50)")
    parser.add_argument("--hold-ms", type=int, default=500, help="call hold after 200 OK (500)")
    parser.add_argument(
        "--agents",
        choices=("ring", "instant"),
        default="ring",
        help="ring: agents ring --ring-delay-ms before answering (default); "
        "instant: they answer at once",
    )
    parser.add_argument(
        "--ring-delay-ms", type=int, default=20, help="agent ring time with --agents ring (20)"
    )
    parser.add_argument(
        "--whisper",
        choices=("none", "missing"),
        default="none",
        help="none: no whisper (default); missing: wardenburg's whisper names "
        "a sound file that does not exist",
    )
    parser.add_argument(
        "--no-agi",
        dest="agi",
        action="store_false",
        help="measure pure and ARI only (e.g. while another process holds the FastAGI port)",
    )
    parser.add_argument(
        "--daemon",
        choices=("routing", "full"),
        default="routing",
        help="routing: ARI and AGI only (default); full: also AMI and MQTT",
    )
    parser.add_argument(
        "--mqtt",
        choices=("tcp", "unix"),
        default="tcp",
        help="with --daemon full: tcp: the broker at PBXBRIDGE_MQTT_HOST/PORT (default "
        "127.0.0.1:1883); unix: a private mosquitto over its Unix socket",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (sipp traces, daemon log)"
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.blocks < 1 or args.warmup < 0:
        parser.error("--rate and --seconds must be > 0, --blocks >= 1, --warmup >= 0")
    if args.agents == "instant":
        args.ring_delay_ms = 0  # what the agents add; the "fixed ring" figures use it

    # failed calls: keep the evidence (sipp's *_errors.log, the daemon log)
    return run_benchmark(
        "asterisk-load",
        lambda workdir: run(args, workdir),
        say=say,
        summary=print_summary,
        keep=args.keep,
        failed=lambda res: bool(
            res["failed_calls"]
            or res["warmup_failed"]
            or res["agi_failed_calls"]
            or res["agi_warmup_failed"]
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
