"""The ``pbxbridge`` command line.

One module per group of commands, each registering on the one :data:`cli` group
of :mod:`pbxbridge.cli.base`; importing this package registers them all. A new
command gets its own module here and one import line below.
"""

from pbxbridge.cli import daemon, journal, overrides, rules
from pbxbridge.cli import forecast as forecast_commands
from pbxbridge.cli import replay as replay_commands
from pbxbridge.cli import staffing as staffing_commands
from pbxbridge.cli import virtual_holds as virtual_hold_commands
from pbxbridge.cli.base import cli
from pbxbridge.cli.journal import run_report_cli

__all__ = ["cli", "main", "run_report_cli"]

# The modules are imported for their side effect: each registers its commands.
_COMMANDS = (
    daemon,
    journal,
    overrides,
    rules,
    staffing_commands,
    forecast_commands,
    replay_commands,
    virtual_hold_commands,
)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pbxbridge")
