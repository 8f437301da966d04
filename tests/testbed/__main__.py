"""Command line for the test bed.

Usage::

    python -m tests.testbed ensure                  # build/reuse the chroot, install sipp
    python -m tests.testbed up                      # start Asterisk, print connection info
    python -m tests.testbed status
    python -m tests.testbed cli "core show channels"
    python -m tests.testbed down                    # stop Asterisk, unmount

The chroot location comes from ``PBXBRIDGE_TESTBED_ROOT`` (default
``/var/cache/pbxbridge/testbed-sid``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tests.testbed.chroot import TestbedError
from tests.testbed.testbed import Testbed


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
    args = parser.parse_args(argv)

    tb = Testbed()
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
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
