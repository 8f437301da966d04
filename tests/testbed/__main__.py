"""Command line for the test bed.

Usage::

    python -m tests.testbed ensure                  # build/reuse the chroot, install sipp
    python -m tests.testbed up                      # start Asterisk, print connection info
    python -m tests.testbed status
    python -m tests.testbed cli "core show channels"
    python -m tests.testbed down                    # stop Asterisk, unmount
    python -m tests.testbed agents                  # agent phones 1-4 answer (until Ctrl-C)
    python -m tests.testbed call --did 044077300 --caller 04407123456 [--display NAME]
    python -m tests.testbed vhold-demo              # a caller takes the callback (virtual hold)

The chroot location comes from ``PBXBRIDGE_TESTBED_ROOT`` (default
``/var/cache/pbxbridge/testbed-sid``). ``up``, ``down`` and ``vhold-demo`` take
the test bed's lock (:mod:`tests.testbed.lock`) and refuse while someone else
holds it; a caller that holds it already (``scripts/run.sh``, for as long as its
daemon runs) names the inherited descriptor in ``PBXBRIDGE_TESTBED_LOCK_FD``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time

from tests.testbed.chroot import TestbedError
from tests.testbed.lock import lock_path
from tests.testbed.sipp import SippAgent, place_calls
from tests.testbed.testbed import Testbed

#: Names a descriptor, inherited from the caller, that holds the test bed lock.
LOCK_FD_ENV = "PBXBRIDGE_TESTBED_LOCK_FD"


def take_lock() -> tuple[object, str | None]:
    """Take the test bed lock without waiting, for as long as this process runs.

    Returns:
        What keeps the lock (keep a reference until the end) and ``None``, or
        ``None`` and why the lock cannot be had.
    """
    path = lock_path()
    inherited = os.environ.get(LOCK_FD_ENV, "")
    if inherited:
        # A parent that holds the lock (scripts/run.sh) passes its descriptor:
        # flock on the same open file succeeds, where opening the file again
        # would collide with the parent's own lock.
        try:
            fd = int(inherited)
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except (ValueError, OSError) as exc:
            return None, f"{LOCK_FD_ENV}={inherited!r} is not an open descriptor of {path}: {exc}"
        if not same:
            return None, f"{LOCK_FD_ENV}={inherited!r} is not an open descriptor of {path}"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None, f"the test bed is in use: {LOCK_FD_ENV}={fd} does not hold {path}"
        return fd, None
    lock = path.open("w")  # held (open) until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None, (
            f"the test bed is in use (lock {path}: a test session, a benchmark or "
            "scripts/run.sh's daemon); try again when it has ended"
        )
    return lock, None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help="build or reuse the chroot; install sipp/debootstrap")
    up = sub.add_parser("up", help="(re)start Asterisk and wait until it is ready")
    up.add_argument("--timeout", type=float, default=60.0)
    sub.add_parser("down", help="stop Asterisk and unmount")
    sub.add_parser("status", help="print build/run state as JSON")
    cli = sub.add_parser("cli", help="run an Asterisk CLI command")
    cli.add_argument("cli_command", help='e.g. "core show channels"')
    agents = sub.add_parser("agents", help="run answering agent phones until interrupted")
    agents.add_argument("--count", type=int, default=4)
    agents.add_argument("--ring-ms", type=int, default=1500)
    call = sub.add_parser("call", help="place one inbound trunk call")
    call.add_argument("--did", required=True)
    call.add_argument("--caller", default="04407123456")
    call.add_argument("--display", default="Jörg Müller")
    call.add_argument("--dtmf", default="")
    call.add_argument("--hold-ms", type=int, default=3000)
    sub.add_parser(
        "vhold-demo",
        help="restart Asterisk with a daemon; a caller takes the callback (docs/virtual-hold.md)",
    )
    args = parser.parse_args(argv)

    tb = Testbed()
    if args.command in {"up", "down", "vhold-demo"}:
        # pytest sessions and benchmarks hold this lock while they use Asterisk;
        # restarting it under them would fail their calls.
        _lock, refused = take_lock()  # _lock keeps it held until the process ends
        if refused:
            print(f"error: {refused}", file=sys.stderr)
            return 1
    try:
        if args.command == "ensure":
            started = time.monotonic()
            root = tb.ensure()
            print(json.dumps({"root": str(root), "seconds": round(time.monotonic() - started, 1)}))
        elif args.command == "up":
            print(json.dumps(tb.up(timeout=args.timeout), indent=2))
        elif args.command == "down":
            tb.down()
        elif args.command == "status":
            print(json.dumps(tb.status(), indent=2))
        elif args.command == "cli":
            sys.stdout.write(tb.cli(args.cli_command))
        elif args.command == "agents":
            phones = [
                SippAgent.for_agent(n, "answer", ring_delay_ms=args.ring_ms).start()
                for n in range(1, args.count + 1)
            ]
            print(f"{len(phones)} agent phones answering after {args.ring_ms} ms; Ctrl-C stops")
            # scripts/run.sh stops us with SIGTERM: end like Ctrl-C, so the
            # finally below stops the sipp phones instead of orphaning them.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
            finally:
                for agent in phones:
                    agent.stop()
        elif args.command == "vhold-demo":
            from tests.testbed import vhold_demo

            status = vhold_demo.run(tb)
            # The demo's daemon has stopped, its Asterisk has not.
            print(
                "Asterisk keeps running: `.venv/bin/python -m tests.testbed down` stops it",
                file=sys.stderr,
            )
            return status
        elif args.command == "call":
            result = place_calls(
                args.did,
                caller=args.caller,
                display=args.display,
                dtmf=args.dtmf,
                hold_ms=args.hold_ms,
            )
            print(
                f"successful={result.successful} failed={result.failed} "
                f"invite_to_200_ms={result.invite_to_200_ms}"
            )
            return 0 if result.ok else 1
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
