"""``python -m tests.testbed vhold-demo``: a caller takes the callback ("Rückruf statt Warten").

Brings up the test bed's Asterisk (restarts it), starts a pbxbridge daemon with a
tenant that offers virtual hold on the ``vhold`` queue, pauses every agent, and
places a call that presses 1 in the queue and 1 again to confirm the number
read back. Then agent1 (a sipp phone that answers, talks 3 s and hangs up) is
unpaused: it takes the placeholder, the citizen's phone (sipp behind endpoint
``citizen``) rings and answers. Prints what happened, step by step, and the
hold's journal from the daemon's store. Takes about 30 s; needs root (the
chroot), like the other test-bed commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from tests.testbed.sipp import CallResult, SippAgent, place_calls
from tests.testbed.testbed import Testbed
from tests.testbed.vhold_rules import DID, QUEUE, vhold_rules

CALLER = "04407123452"
# The tests' tenant (tests/testbed/vhold_rules.py) with the schema's retry
# defaults and a citizen's phone that may ring a while: a demo, not a test.
RULES = vhold_rules(retry_after=300, max_tries=3, answer_timeout=20, whisper="")


def _say(text: str) -> None:
    print(f"[vhold-demo] {text}", flush=True)


def _health(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return dict(json.load(resp))
    except OSError:
        return {}


def run(tb: Testbed) -> int:
    """Run the demo on a test bed whose lock the caller holds.

    Args:
        tb: The test bed (restarted here).

    Returns:
        0 when the citizen was connected, else 1.
    """
    tb.up()
    tb.cli("dialplan set global PBXBRIDGE_VHOLD_ANSWER 1")
    work = Path(tempfile.mkdtemp(prefix="pbxbridge-vhold-demo-"))
    (work / "routing.yaml").write_text(RULES, encoding="utf-8")
    port = 18090
    env = dict(os.environ)
    env.update(
        PBXBRIDGE_ARI_URL=tb.ari_url.removesuffix("/ari"),
        PBXBRIDGE_ARI_USER=tb.ari_user,
        PBXBRIDGE_ARI_PASSWORD=tb.ari_password,
        PBXBRIDGE_AMI_USER=tb.ami_user,
        PBXBRIDGE_AMI_PASSWORD=tb.ami_password,
        PBXBRIDGE_HTTP_BIND=f"127.0.0.1:{port}",
        PBXBRIDGE_MQTT_ENABLED="false",
        PBXBRIDGE_LOG_FORMAT="json",
    )
    log = (work / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "pbxbridge", "run", "--config", str(work / "routing.yaml")],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            hold = _health(port).get("virtual_hold")
            if isinstance(hold, dict) and hold.get("ari") == "connected":
                break
            time.sleep(0.2)
        _say(f"daemon up (log: {work / 'daemon.log'}); all agents paused (busy)")
        with tb.ami(events=False) as ami:
            for n in range(1, 5):
                ami.action("QueuePause", Queue=QUEUE, Interface=f"PJSIP/agent{n}", Paused="true")
        results: dict[str, CallResult] = {}

        def caller() -> None:
            results["call"] = place_calls(
                DID, caller=CALLER, dtmf="11", dtmf_delay_ms=2500, hold_ms=60_000, timeout_s=90
            )

        thread = threading.Thread(target=caller, daemon=True)
        thread.start()
        _say(f"{CALLER} calls {DID}, waits, presses 1, confirms the number read back with 1")
        thread.join(40)
        _say("the caller has hung up; the placeholder keeps the place:")
        print(tb.cli(f"queue show {QUEUE}"), flush=True)
        with SippAgent.for_agent(1, "talk", ring_delay_ms=200), SippAgent.for_citizen():
            with tb.ami(events=False) as ami:
                ami.action("QueuePause", Queue=QUEUE, Interface="PJSIP/agent1", Paused="false")
            _say("agent1 is free: it takes the placeholder, the citizen's phone rings ...")
            connected = False
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not connected:
                hold = _health(port).get("virtual_hold")
                connected = isinstance(hold, dict) and bool(hold.get("connected"))
                time.sleep(0.5)
        _say("connected" if connected else "NOT connected (see the daemon log)")
        from pbxbridge.storage.virtual_holds import open_virtual_hold_store

        with open_virtual_hold_store("", work / "state.sqlite") as store:
            holds = store.between(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
        for hold in holds:
            _say(f"hold {hold.call_id}: {hold.state.value}")
            for at, event, detail in hold.events:
                print(f"    {at:%H:%M:%S}  {event:20} {detail}", flush=True)
        return 0 if connected else 1
    finally:
        daemon.terminate()
        daemon.wait(20)
        log.close()
