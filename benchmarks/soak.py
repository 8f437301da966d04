"""Soak: 30,000 calls at 50 calls/s through the daemon with every feature on.

One run on the real test bed (``tests/testbed``), holding the pytest sessions'
test bed lock (``/tmp/pbxbridge-testbed.lock``, ``PBXBRIDGE_TESTBED_LOCK``) from
before ``Testbed.up()`` until Asterisk is down again:

* the real ``pbxbridge run`` daemon with the integration tests' rules
  (``TEST_RULES``: DID ``+494407730`` -> tenant ``wardenburg``, always open, with
  its 0.3 s whisper) and everything switched on: ARI routing, AMI queue
  following, screen pops over MQTT to the machine's broker (127.0.0.1:1883)
  below a topic prefix of its own, the call journal in SQLite beside the state
  file, the FastAGI server listening, and the agent page (``PBXBRIDGE_AGENTS_FILE``);
* three agents of that file (agent1, agent2 and the supervisor chefin) signed
  in over HTTP like a browser (login form, CSRF token, session cookie), each
  listening on ``/agent/events`` (server-sent events) with a plain aiohttp
  client for the whole run;
* a paho subscriber on ``{prefix}/#``;
* four sipp agents in ``servicecenter`` (``ringinuse``, ``rrmemory``) that ring
  100 ms and answer; sipp places ``--calls`` calls at ``--rate`` calls/s, each
  held 1 s after the answer.

Figures (JSON on the last line):

* ``failed_calls``: calls sipp did not complete (target 0); ``route_failed``:
  calls the daemon could not route (``/healthz``).
* ``missing_pops``: for every call the journal has as answered by an agent,
  the ``ringing``, ``answered`` and ``ended`` pops on that agent's topic that
  the subscriber never received (target 0); ``mqtt_dropped_overflow``: messages
  the daemon's publisher dropped because its buffer was full;
  ``journal_missing``: routed calls without a journal row. ``sse_missing``: pops
  of agent1 and agent2 that reached the MQTT subscriber but not the agent's
  event stream; ``page_delivered``: pops the agent page's desk took (of
  ``pops_published``).
* ``rss_first_mib``: the daemon's resident memory (``VmRSS``) when it had routed
  ``--first`` calls (2,000); ``rss_end_mib``: after the last call ended and the
  journal and the pops were drained; ``rss_growth_mib`` their difference
  (target: within 10 MiB). ``rss_series`` samples it every 30 s.
* ``daemon_cpu_ms_per_call`` and ``asterisk_cpu_ms_per_call``: CPU time
  (utime + stime from ``/proc/<pid>/stat``) from the first call until everything
  was drained, divided by the calls placed; ``cpu_ratio`` is the daemon's over
  Asterisk's. Other work on the machine does not enter either figure, but a
  crowded machine makes both processes slower per call.

Usage: ``python benchmarks/soak.py [--calls 30000] [--rate 50] [--first 2000]
[--ring-delay-ms 100] [--hold-ms 1000] [--keep]`` (root: the test bed needs
``chroot``). A short run for development: ``--calls 600 --rate 20 --first 200``.
SIGTERM stops it like Ctrl-C: sipp, agents, listeners, daemon and Asterisk are
stopped and the lock is released.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import sqlite3
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbxbridge.web.agents import agents_file_line
from pbxbridge.web.passwords import hash_password
from tests.integration.daemon import TEST_RULES, DaemonProcess, install_test_sound
from tests.testbed.bench import (
    MQTT_HOST,
    MQTT_PORT,
    MqttListener,
    asterisk_pid,
    bench_config,
    cpu_ticks,
    progress,
    rss_kib,
    run_benchmark,
    stop_own_sipp_children,
)
from tests.testbed.config import AGI_SECRET
from tests.testbed.sipp import CallResult, SippAgent, place_calls, stop_agents
from tests.testbed.testbed import Testbed

DID = "+494407730"  # tenant wardenburg in TEST_RULES
CALLER = "04407123456"
#: Agents of the agents file signed in on the page (chefin is the supervisor).
PAGE_AGENTS = ("agent1", "agent2", "chefin")
#: Their passwords (test values; the file holds only scrypt hashes).
PASSWORDS = {a: f"soak-{a}-Kennwort-2026" for a in PAGE_AGENTS}
#: scrypt cost of the hashes: the cheapest allowed (sign-in speed is not measured).
FAST_LN = 10
POP_KINDS = ("ringing", "answered", "ended")
RSS_SERIES_EVERY_S = 30.0

TARGET_FAILED = 0
TARGET_MISSING_POPS = 0
TARGET_RSS_GROWTH_MIB = 10.0

say = progress("soak")  # stderr: stdout carries the summary and the JSON line


# ----------------------------------------------------------------- listeners


class PopSubscriber:
    """Every message below the daemon's topic prefix, as the broker delivers it.

    Agent pops (``{prefix}/agents/<agent>/screenpop``) are kept as
    ``(call_id, event, agent)``; everything else is only counted by topic kind.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pops: set[tuple[str, str, str]] = set()
        self.agent_messages = 0
        self.other: Counter[str] = Counter()
        self.bad = 0
        self._lock = threading.Lock()
        self._listener = MqttListener(f"{prefix}/#", self._on_message)

    def _on_message(self, topic: str, payload: bytes) -> None:
        parts = topic[len(self.prefix) + 1 :].split("/")
        with self._lock:
            if len(parts) == 3 and parts[0] == "agents" and parts[2] == "screenpop":
                self.agent_messages += 1
                try:
                    message = json.loads(payload)
                    self.pops.add((str(message["call_id"]), str(message["event"]), parts[1]))
                except (ValueError, KeyError, TypeError):
                    self.bad += 1
            else:
                self.other[parts[0]] += 1

    def received(self) -> int:
        """Messages received so far (all topics)."""
        with self._lock:
            return self.agent_messages + sum(self.other.values())

    def close(self) -> None:
        """Disconnect."""
        self._listener.close()


@dataclasses.dataclass
class StreamCounts:
    """What one signed-in agent's event stream delivered."""

    events: Counter[str] = dataclasses.field(default_factory=Counter)
    pops: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    reconnects: int = 0
    error: str = ""


_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


class PageListeners:
    """Agents signed in on the agent page, each reading ``/agent/events``.

    Runs its own event loop in a thread (the benchmark's main thread watches
    the daemon and places calls). A stream that ends is opened again and
    counted in ``reconnects``.
    """

    def __init__(self, base: str, agents: tuple[str, ...]) -> None:
        self.base = base
        self.agents = agents
        self.counts = {a: StreamCounts() for a in agents}
        self._open: set[str] = set()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="sse", daemon=True)

    def start(self, timeout: float = 20.0) -> PageListeners:
        """Sign everyone in and wait until every stream sent its snapshot."""
        self._thread.start()
        if not self._ready.wait(timeout):
            errors = {a: c.error for a, c in self.counts.items() if c.error}
            raise RuntimeError(f"agent page streams not open after {timeout}s: {errors}")
        return self

    def stop(self) -> None:
        """End the streams and the thread."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks = [asyncio.create_task(self._watch(a)) for a in self.agents]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _sign_in(self, http: aiohttp.ClientSession, agent: str) -> None:
        async with http.get(self.base + "login") as resp:
            match = _CSRF.search(await resp.text())
        if match is None:
            raise RuntimeError(f"no CSRF field on the login form (HTTP {resp.status})")
        form = {"agent": agent, "password": PASSWORDS[agent], "csrf": match.group(1)}
        async with http.post(self.base + "login", data=form, allow_redirects=False) as resp:
            if resp.status != 303:
                raise RuntimeError(f"sign-in of {agent}: HTTP {resp.status}")

    async def _watch(self, agent: str) -> None:
        counts = self.counts[agent]
        # unsafe: keep cookies for an IP address host (127.0.0.1)
        jar = aiohttp.CookieJar(unsafe=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        # read_bufsize: a snapshot (up to 20 cards) is one line of a few 10 kB
        async with aiohttp.ClientSession(
            cookie_jar=jar, timeout=timeout, read_bufsize=1 << 22
        ) as http:
            signed_in = opened = False
            while True:
                try:
                    if not signed_in:
                        await self._sign_in(http, agent)
                        signed_in = True
                    if opened:
                        counts.reconnects += 1
                    async with http.get(self.base + "events") as resp:
                        if resp.status == 401:
                            signed_in = False
                        if resp.status != 200:
                            raise RuntimeError(f"events: HTTP {resp.status}")
                        opened = True
                        await self._read(resp, agent, counts)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any failure: note it, sign in or reconnect again
                    counts.error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.5)

    async def _read(self, resp: aiohttp.ClientResponse, agent: str, counts: StreamCounts) -> None:
        name, data = "", ""
        while True:
            line = (await resp.content.readline()).decode()
            if not line:
                return  # stream ended: reconnect
            line = line.rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name:
                counts.events[name] += 1
                if name == "pop":
                    message = json.loads(data)
                    counts.pops.add((str(message["call_id"]), str(message["event"])))
                elif name == "snapshot" and agent not in self._open:
                    self._open.add(agent)
                    if len(self._open) == len(self.agents):
                        self._ready.set()
                name, data = "", ""


# ----------------------------------------------------------------- the run


@dataclasses.dataclass
class Watch:
    """What the main thread saw of the daemon while the calls ran."""

    rss_first_kib: int | None = None
    routed_at_first: int = 0
    seconds_to_first: float | None = None
    series: list[dict[str, float]] = dataclasses.field(default_factory=list)


def write_agents(path: Path) -> Path:
    """The agents file: agent1 and agent2, and chefin as supervisor (mode 0600)."""
    lines = [
        agents_file_line(a, hash_password(PASSWORDS[a], ln=FAST_LN))
        for a in PAGE_AGENTS
        if a != "chefin"
    ]
    lines.append(
        f"chefin:\n  password: {hash_password(PASSWORDS['chefin'], ln=FAST_LN)}\n"
        "  name: Chefin vom Dienst\n  supervisor: true"
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def journal_rows(daemon_dir: Path) -> list[tuple[str, str, str, float | None]]:
    """``(call_id, agent, outcome, answered_at)`` of every row of the daemon's journal."""
    paths = sorted(daemon_dir.rglob("journal.sqlite"))
    if not paths:
        return []
    with contextlib.closing(sqlite3.connect(f"file:{paths[0]}?mode=ro", uri=True)) as db:
        return [
            (str(r[0]), str(r[1]), str(r[2]), r[3])
            for r in db.execute("SELECT call_id, agent, outcome, answered_at FROM calls")
        ]


def wait_drained(daemon: DaemonProcess, subscriber: PopSubscriber, timeout: float) -> None:
    """Until the journal has written everything and no more pops arrive (2 s quiet)."""
    deadline = time.monotonic() + timeout
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        journal = daemon.health().get("journal") or {}
        now = subscriber.received()
        if now != last:
            last, quiet_since = now, time.monotonic()
        if not journal.get("backlog") and time.monotonic() - quiet_since >= 2.0:
            return
        time.sleep(0.25)
    say(f"not drained after {timeout:g}s: journal {daemon.health().get('journal')}")


def place_in_background(
    tb: Testbed, args: argparse.Namespace, out: list[CallResult]
) -> threading.Thread:
    """Start the sipp run in a thread; its result lands in ``out``."""

    def calls() -> None:
        out.append(
            place_calls(
                DID,
                count=args.calls,
                rate=args.rate,
                hold_ms=args.hold_ms,
                caller=CALLER,
                source_ip=tb.config.trunk_ip,
                target=f"{tb.sip_host}:{tb.sip_port}",
                max_concurrent=max(200, int(args.rate * 10)),
                timeout_s=args.calls / args.rate + 120.0,
            )
        )

    thread = threading.Thread(target=calls, name="sipp", daemon=True)
    thread.start()
    return thread


def watch_daemon(
    daemon: DaemonProcess,
    pid: int,
    args: argparse.Namespace,
    thread: threading.Thread,
    started: float,
) -> Watch:
    """Sample ``/healthz`` and the daemon's memory until the sipp run ends."""
    watch = Watch()
    next_series = started
    next_progress = started + 60.0
    while thread.is_alive():
        thread.join(1.0)
        now = time.monotonic()
        try:
            routed = int(daemon.health()["calls"]["routed"])
        except (OSError, ValueError, KeyError):
            continue
        if watch.rss_first_kib is None and routed >= args.first:
            watch.rss_first_kib = rss_kib(pid)
            watch.routed_at_first = routed
            watch.seconds_to_first = round(now - started, 1)
            say(f"{routed} calls routed: daemon RSS {watch.rss_first_kib} KiB")
        if now >= next_series:
            rss = rss_kib(pid)
            watch.series.append(
                {
                    "s": round(now - started),
                    "routed": routed,
                    "rss_mib": round((rss or 0) / 1024, 1),
                }
            )
            next_series += RSS_SERIES_EVERY_S
        if now >= next_progress:
            say(f"{routed} of {args.calls} calls routed")
            next_progress += 60.0
    return watch


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Bring up the bed, agents, daemon and listeners; place the calls; tear down."""
    tb = Testbed(config=bench_config())
    agents: list[SippAgent] = []
    daemon: DaemonProcess | None = None
    subscriber: PopSubscriber | None = None
    listeners: PageListeners | None = None
    try:
        tb.up()
        install_test_sound(tb)  # wardenburg's whisper
        for n in range(1, tb.config.agent_count + 1):
            agent = SippAgent.for_agent(n, "answer", args.ring_delay_ms, tb.config)
            agents.append(agent)  # before start(): stopped in any case
            agent.start()
        agents_file = write_agents(workdir / "agents.yaml")
        (workdir / "daemon").mkdir()
        daemon = DaemonProcess(
            tb,
            workdir / "daemon",
            rules=TEST_RULES,
            mqtt_port=MQTT_PORT,
            extra_env={
                "PBXBRIDGE_LOG_LEVEL": "info",
                "PBXBRIDGE_AMI_ENABLED": "yes",
                "PBXBRIDGE_MQTT_ENABLED": "yes",
                "PBXBRIDGE_MQTT_HOST": MQTT_HOST,
                "PBXBRIDGE_AGENTS_FILE": str(agents_file),
                "PBXBRIDGE_AGI_SECRET": AGI_SECRET,
            },
        )
        subscriber = PopSubscriber(daemon.topic_prefix)
        daemon.start()
        health = daemon.wait_health(
            lambda h: h["ami"]["state"] == "connected" and bool(h["mqtt"].get("connected")),
            timeout=20,
        )
        assert daemon.proc is not None
        pid = daemon.proc.pid
        listeners = PageListeners(f"http://127.0.0.1:{daemon.port}/agent/", PAGE_AGENTS).start()
        ast_pid = asterisk_pid(tb)
        say(
            f"daemon pid {pid} (RSS {rss_kib(pid)} KiB), Asterisk pid {ast_pid}; "
            f"{args.calls} calls at {args.rate:g}/s"
        )
        d0, a0 = cpu_ticks(pid), cpu_ticks(ast_pid)
        started = time.monotonic()
        out: list[CallResult] = []
        thread = place_in_background(tb, args, out)
        watch = watch_daemon(daemon, pid, args, thread, started)
        calls_s = time.monotonic() - started
        result = out[0]
        if not result.ok:
            say(
                f"{result.requested - result.successful} of {result.requested} calls failed\n"
                f"{result.describe()}"
            )
        tb.wait_idle(timeout=60)
        wait_drained(daemon, subscriber, timeout=60)
        d1, a1 = cpu_ticks(pid), cpu_ticks(ast_pid)
        rss_end = rss_kib(pid)
        wall_s = time.monotonic() - started
        health = daemon.health()
        listeners.stop()
        stop_agents(agents)
        agents = []
        daemon.stop()
        rows = journal_rows(workdir / "daemon")
        return summarise(
            args,
            result,
            watch,
            rss_end,
            d1 - d0,
            a1 - a0,
            calls_s,
            wall_s,
            health,
            rows,
            subscriber,
            listeners,
        )
    finally:
        stop_own_sipp_children(say)
        if listeners is not None:
            listeners.stop()
        if subscriber is not None:
            subscriber.close()
        if agents:
            stop_agents(agents)
        if daemon is not None:
            daemon.stop()
        tb.down()


# ----------------------------------------------------------------- report


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def summarise(
    args: argparse.Namespace,
    result: CallResult,
    watch: Watch,
    rss_end: int | None,
    daemon_ticks: int,
    asterisk_ticks: int,
    calls_s: float,
    wall_s: float,
    health: dict[str, Any],
    rows: list[tuple[str, str, str, float | None]],
    subscriber: PopSubscriber,
    listeners: PageListeners,
) -> dict[str, Any]:
    """The JSON result."""
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    calls = result.requested
    routed = int(health["calls"]["routed"])
    answered = [(call_id, agent) for call_id, agent, _o, at in rows if at is not None and agent]
    missing: Counter[str] = Counter()
    for call_id, agent in answered:
        for kind in POP_KINDS:
            if (call_id, kind, agent) not in subscriber.pops:
                missing[kind] += 1
    sse: dict[str, Any] = {}
    sse_missing = 0
    for agent, counts in listeners.counts.items():
        mqtt_pops = {(c, k) for c, k, a in subscriber.pops if a == agent}
        lost = len(mqtt_pops - counts.pops)
        if agent != "chefin":
            sse_missing += lost
        sse[agent] = {
            "events": dict(counts.events),
            "pops": len(counts.pops),
            "mqtt_pops": len(mqtt_pops),
            "missing": lost,
            "reconnects": counts.reconnects,
            "last_error": counts.error or None,
        }
    daemon_ms = daemon_ticks * tick_ms / calls if calls else None
    asterisk_ms = asterisk_ticks * tick_ms / calls if calls else None
    growth = (
        None
        if rss_end is None or watch.rss_first_kib is None
        else round((rss_end - watch.rss_first_kib) / 1024, 1)
    )
    mqtt_health = health.get("mqtt") or {}
    res: dict[str, Any] = {
        "calls": calls,
        "rate": args.rate,
        "ring_delay_ms": args.ring_delay_ms,
        "hold_ms": args.hold_ms,
        "failed_calls": calls - result.successful,
        "sipp_failed": result.failed,
        "routed": routed,
        "route_failed": int(health["calls"]["failed"]),
        "journal_rows": len(rows),
        "journal_missing": max(0, routed - len(rows)),
        "journal_outcomes": dict(Counter(o for _c, _a, o, _t in rows)),
        "answered_by_agent": len(answered),
        "pops_expected": len(answered) * len(POP_KINDS),
        "pops_received": len(subscriber.pops),
        "missing_pops": sum(missing.values()),
        "missing_pops_by_kind": dict(missing),
        "pops_published": (health.get("screen_pops") or {}).get("pops"),
        "mqtt_messages_received": subscriber.received(),
        "mqtt_other_topics": dict(subscriber.other),
        "mqtt_bad_payloads": subscriber.bad,
        "mqtt_dropped_overflow": mqtt_health.get("dropped_overflow"),
        "mqtt_publisher": {k: v for k, v in mqtt_health.items() if not isinstance(v, dict)},
        "page_delivered": (health.get("web") or {}).get("delivered"),
        "sse_missing": sse_missing,
        "sse": sse,
        "first_calls": watch.routed_at_first or args.first,
        "seconds_to_first": watch.seconds_to_first,
        "rss_first_mib": _mib(watch.rss_first_kib),
        "rss_end_mib": _mib(rss_end),
        "rss_growth_mib": growth,
        "rss_series": watch.series,
        "daemon_cpu_ms_per_call": None if daemon_ms is None else round(daemon_ms, 3),
        "asterisk_cpu_ms_per_call": None if asterisk_ms is None else round(asterisk_ms, 3),
        "cpu_ratio": (
            round(daemon_ms / asterisk_ms, 3) if daemon_ms is not None and asterisk_ms else None
        ),
        "calls_s": round(calls_s, 1),
        "wall_s": round(wall_s, 1),
        "daemon_status": health.get("status"),
        "daemon_problems": health.get("problems"),
        "journal": {
            k: (health.get("journal") or {}).get(k)
            for k in ("written", "failures", "spooled", "backlog")
        },
        "web": health.get("web"),
    }
    res["targets_met"] = {
        "failed_calls": res["failed_calls"] <= TARGET_FAILED and res["route_failed"] == 0,
        "missing_pops": res["missing_pops"] <= TARGET_MISSING_POPS and res["pops_expected"] > 0,
        "rss_growth": growth is not None and abs(growth) <= TARGET_RSS_GROWTH_MIB,
    }
    return res


def print_summary(res: dict[str, Any]) -> None:
    """Human-readable lines (stdout, before the JSON)."""
    print(
        f"soak: {res['calls']} calls at {res['rate']:g}/s in {res['calls_s']} s "
        f"(ring {res['ring_delay_ms']} ms, hold {res['hold_ms']} ms); "
        f"{res['failed_calls']} failed, {res['routed']} routed, "
        f"{res['route_failed']} routing failures"
    )
    print(
        f"journal: {res['journal_rows']} rows ({res['journal_missing']} routed calls missing), "
        f"outcomes {res['journal_outcomes']}"
    )
    print(
        f"pops: {res['pops_received']} of {res['pops_expected']} expected received, "
        f"{res['missing_pops']} missing {res['missing_pops_by_kind']}; publisher: "
        f"{res['pops_published']} agent pops made, {res['mqtt_dropped_overflow']} messages "
        f"dropped (buffer full)"
    )
    print(
        f"agent page: {res['page_delivered']} of {res['pops_published']} pops taken by the "
        f"desk, {res['sse_missing']} pops of agent1/agent2 missing on their event streams"
    )
    print(
        f"daemon RSS: {res['rss_first_mib']} MiB after {res['first_calls']} calls, "
        f"{res['rss_end_mib']} MiB after the run: {res['rss_growth_mib']:+} MiB "
        f"(target within {TARGET_RSS_GROWTH_MIB:g})"
        if res["rss_growth_mib"] is not None
        else "daemon RSS: not measured"
    )
    print(
        f"CPU per call: daemon {res['daemon_cpu_ms_per_call']} ms, Asterisk "
        f"{res['asterisk_cpu_ms_per_call']} ms, daemon/Asterisk {res['cpu_ratio']}"
    )
    print(f"targets met: {res['targets_met']}")


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30_000, help="calls to place (30000)")
    parser.add_argument("--rate", type=float, default=50.0, help="calls per second (50)")
    parser.add_argument(
        "--first", type=int, default=2_000, help="RSS reference after this many routed calls (2000)"
    )
    parser.add_argument("--ring-delay-ms", type=int, default=100, help="agent ring time (100)")
    parser.add_argument("--hold-ms", type=int, default=1000, help="call hold after 200 OK (1000)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directory (daemon log, journal, sipp files)",
    )
    args = parser.parse_args()
    if args.calls < 1 or args.rate <= 0 or not 1 <= args.first < args.calls:
        parser.error("--calls >= 1, --rate > 0, 1 <= --first < --calls")

    # keep the evidence (sipp's *_errors.log, the daemon log, the journal)
    return run_benchmark(
        "soak",
        lambda workdir: run(args, workdir),
        say=say,
        summary=print_summary,
        keep=args.keep,
        failed=lambda res: not all(res["targets_met"].values()),
    )


if __name__ == "__main__":
    sys.exit(main())
