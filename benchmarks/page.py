"""Agent page speed in real headless Chromium: first render, and pop latency behind MQTT.

One run on the real test bed (``tests/testbed``), holding the pytest sessions'
test bed lock (``/tmp/pbxbridge-testbed.lock``) from before ``Testbed.up()``
until Asterisk is down again:

* the real ``pbxbridge run`` daemon with the integration tests' rules, an
  agents file (``PBXBRIDGE_AGENTS_FILE``) and MQTT to the machine's broker
  (127.0.0.1:1883) below a topic prefix of its own;
* Debian Chromium (``tests/browser.py``, DevTools protocol) signed in as agent1;
* a paho subscriber on ``{prefix}/agents/agent1/screenpop``;
* sipp places calls to Gemeinde Wardenburg one at a time (1/s); agent1 answers
  after 300 ms of ringing and holds 300 ms.

``first_render``: the desk page (``/agent/``, signed in) loaded ``--loads`` times
from loopback with the browser cache disabled (HTML, CSS, script and icon
fetched every time); each load's ``first-contentful-paint`` as the browser
reports it (milliseconds from the start of the navigation). ``first_render_ms``
is the 95th percentile.

``pop``: for each measured call, the moment the ringing pop was painted minus
the arrival of the same call's MQTT ``ringing`` message at the subscriber. The
page's paint time is taken by a MutationObserver in the page: when the call's
card is inserted it asks for the next animation frame, whose callback runs just
before that frame is painted, and notes ``performance.timeOrigin +
performance.now()``. The subscriber notes ``time.time()`` first thing in paho's
network thread. Same host, same clock (CLOCK_REALTIME). Calls are matched by
``call_id``. The page is fed in-process (CallTracker's local sink) and the MQTT
message goes out through the broker, so the difference can be negative: the
page was faster than the broker's subscriber. ``at_to_shown`` adds the
daemon's own view: paint minus the pop's ``at`` (when the daemon took the AMI
``AgentCalled`` event).

Usage: ``python benchmarks/page.py [--calls 30] [--warmup 3] [--loads 20]``
(root: the test bed needs ``chroot``). The last line is JSON with
``first_render_ms`` and ``pop_p95_ms``. Targets: first render under 200 ms,
pop p95 within 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import Chromium
from tests.integration.daemon import DaemonProcess, install_test_sound
from tests.testbed.bench import exit_on_sigterm, progress, stop_own_sipp_children
from tests.testbed.lock import testbed_lock
from tests.testbed.sipp import WORKDIR_ENV, SippAgent, place_calls
from tests.testbed.testbed import Testbed
from tests.unit.test_web_server import PASSWORDS, write_agents

DID = "+494407730"  # tenant wardenburg in TEST_RULES
CALLER = "04407123456"
MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883
TARGET_FIRST_RENDER_MS = 200.0
TARGET_POP_P95_MS = 100.0

WATCH_SCRIPT = """(() => {
    window.__shown = {};
    new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) {
            if (!n.matches || !n.matches('article.call')) continue;
            const id = n.getAttribute('data-call-id');
            const inserted = performance.timeOrigin + performance.now();
            requestAnimationFrame(() => {
                window.__shown[id] = [inserted, performance.timeOrigin + performance.now()];
            });
        }
    }).observe(document.getElementById('calls'), {childList: true});
    return true;
})()"""


say = progress("page")  # stderr: stdout carries the summary and the JSON line


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class RingingCollector:
    """``ringing`` pops on one agent's topic: call id → (arrival ms, pop ``at`` ms)."""

    def __init__(self, prefix: str, agent: str) -> None:
        self.topic = f"{prefix}/agents/{agent}/screenpop"
        self.raw: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._ready.set()
        self._client.connect(MQTT_HOST, MQTT_PORT)
        self._client.subscribe(self.topic, qos=1)
        self._client.loop_start()
        if not self._ready.wait(5):
            raise RuntimeError("MQTT subscription not acknowledged")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        arrived = time.time() * 1000.0
        with self._lock:
            self.raw.append((arrived, bytes(msg.payload)))

    def ringing(self) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        with self._lock:
            raw = list(self.raw)
        for arrived, payload in raw:
            message = json.loads(payload)
            if message.get("event") == "ringing" and message["call_id"] not in out:
                at = datetime.fromisoformat(message["at"]).timestamp() * 1000.0
                out[message["call_id"]] = (arrived, at)
        return out

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tb = Testbed()
    daemon: DaemonProcess | None = None
    agent: SippAgent | None = None
    collector: RingingCollector | None = None
    try:
        await asyncio.to_thread(tb.up)
        install_test_sound(tb)
        agents_file = write_agents(workdir / "agents.yaml")
        (workdir / "daemon").mkdir()
        daemon = DaemonProcess(
            tb,
            workdir / "daemon",
            mqtt_port=MQTT_PORT,
            extra_env={
                "PBXBRIDGE_AGENTS_FILE": str(agents_file),
                "PBXBRIDGE_LOG_LEVEL": "info",
                "PBXBRIDGE_MQTT_ENABLED": "yes",
                "PBXBRIDGE_MQTT_HOST": MQTT_HOST,
                "PBXBRIDGE_AGI_ENABLED": "no",
            },
        )
        await asyncio.to_thread(daemon.start)
        await asyncio.to_thread(
            daemon.wait_health,
            lambda h: h["ami"]["state"] == "connected" and h["mqtt"]["connected"],
            15,
        )
        collector = RingingCollector(daemon.topic_prefix, "agent1")
        agent = SippAgent.for_agent(1, "answer", args.ring_delay_ms, tb.config).start()
        base = f"http://127.0.0.1:{daemon.port}/agent/"
        async with Chromium() as browser:
            say(f"{browser.version}; daemon on port {daemon.port}")
            page = await browser.new_page()
            await page.sign_in(base + "login", "agent1", PASSWORDS["agent1"])
            await page.wait_for("!!document.querySelector('#status.live')")
            say(f"first render: {args.loads} loads of {base}, cache disabled")
            renders = await page.first_contentful_paints(base, args.loads)
            await page.wait_for("!!document.querySelector('#status.live')")
            await page.eval(WATCH_SCRIPT)
            if args.warmup:
                say(f"warm-up: {args.warmup} calls")
                await asyncio.to_thread(
                    place_calls,
                    DID,
                    count=args.warmup,
                    rate=1.0,
                    hold_ms=args.hold_ms,
                    caller=CALLER,
                )
                await asyncio.to_thread(tb.wait_idle, 30)
            warm = set(collector.ringing())
            say(f"measuring: {args.calls} calls, one per second")
            result = await asyncio.to_thread(
                place_calls,
                DID,
                count=args.calls,
                rate=1.0,
                hold_ms=args.hold_ms,
                caller=CALLER,
                timeout_s=args.calls * 3 + 60,
            )
            await asyncio.to_thread(tb.wait_idle, 30)
            await asyncio.sleep(0.5)
            shown: dict[str, list[float]] = await page.eval("window.__shown")
            errors = list(page.errors)
        ringing = {k: v for k, v in collector.ringing().items() if k not in warm}
        deltas: list[float] = []
        at_deltas: list[float] = []
        missing = 0
        for call_id, (arrived, at) in ringing.items():
            if call_id not in shown:
                missing += 1
                continue
            painted = shown[call_id][1]
            deltas.append(painted - arrived)
            at_deltas.append(painted - at)
        return {
            "renders": renders,
            "deltas": deltas,
            "at_deltas": at_deltas,
            "missing": missing,
            "calls_ok": result.successful,
            "calls_failed": result.failed,
            "page_errors": errors,
            "chromium": browser.version,
        }
    finally:
        if collector is not None:
            collector.close()
        if agent is not None:
            agent.stop()
        # Interrupted (SIGTERM, Ctrl-C) while place_calls waits for its sipp in a
        # worker thread: asyncio.run waits for that thread at exit, which takes
        # until sipp's own timeout (minutes) unless sipp goes now.
        stop_own_sipp_children(say)
        if daemon is not None:
            await asyncio.to_thread(daemon.stop)
        await asyncio.to_thread(tb.down)


def summarise(args: argparse.Namespace, m: dict[str, Any]) -> dict[str, Any]:
    renders, deltas = m["renders"], m["deltas"]
    res = {
        "first_render_ms": _r(percentile(renders, 95)),
        "first_render_median_ms": _r(percentile(renders, 50)),
        "first_render_max_ms": _r(max(renders) if renders else None),
        "loads": len(renders),
        "pop_p95_ms": _r(percentile(deltas, 95)),
        "pop_p50_ms": _r(percentile(deltas, 50)),
        "pop_max_ms": _r(max(deltas) if deltas else None),
        "pop_min_ms": _r(min(deltas) if deltas else None),
        "at_to_shown_p95_ms": _r(percentile(m["at_deltas"], 95)),
        "at_to_shown_p50_ms": _r(percentile(m["at_deltas"], 50)),
        "pops": len(deltas),
        "missing_pops": m["missing"],
        "calls": args.calls,
        "calls_failed": m["calls_failed"],
        "page_errors": len(m["page_errors"]),
        "chromium": m["chromium"],
    }
    res["target_met"] = bool(
        res["first_render_ms"] is not None
        and res["first_render_ms"] < TARGET_FIRST_RENDER_MS
        and res["pop_p95_ms"] is not None
        and res["pop_p95_ms"] <= TARGET_POP_P95_MS
        and not res["missing_pops"]
        and res["pops"] > 0
    )
    return res


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="measured calls (30)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured calls first (3)")
    parser.add_argument("--loads", type=int, default=20, help="page loads for first render (20)")
    parser.add_argument("--ring-delay-ms", type=int, default=300, help="agent ring time (300)")
    parser.add_argument("--hold-ms", type=int, default=300, help="call hold after 200 OK (300)")
    args = parser.parse_args()
    if not 1 <= args.calls <= 1000 or not 0 <= args.warmup <= 100 or not 1 <= args.loads <= 500:
        parser.error("--calls 1..1000, --warmup 0..100, --loads 1..500")
    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="pbxbridge-page-bench-"))
    os.environ.setdefault(WORKDIR_ENV, str(workdir / "sipp"))
    try:
        with testbed_lock(say):
            measurement = asyncio.run(measure(args, workdir))
    finally:
        stop_own_sipp_children(say)
        shutil.rmtree(workdir, ignore_errors=True)
    res = summarise(args, measurement)
    for error in measurement["page_errors"]:
        say(f"page error: {error}")
    print(
        f"first render (FCP, cache off): p95 {res['first_render_ms']} ms, "
        f"median {res['first_render_median_ms']} ms over {res['loads']} loads "
        f"(target < {TARGET_FIRST_RENDER_MS:g} ms)\n"
        f"pop shown after the MQTT ringing message: p50 {res['pop_p50_ms']} ms, "
        f"p95 {res['pop_p95_ms']} ms, max {res['pop_max_ms']} ms over {res['pops']} calls, "
        f"{res['missing_pops']} missing (target p95 <= {TARGET_POP_P95_MS:g} ms)\n"
        f"daemon event -> painted: p50 {res['at_to_shown_p50_ms']} ms, "
        f"p95 {res['at_to_shown_p95_ms']} ms"
    )
    print(json.dumps(res, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
