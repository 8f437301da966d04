"""FastAGI entry point: ``AGI(agi://127.0.0.1:4574/route,<secret>)`` decides a call.

* :mod:`.protocol` - the sans-I/O FastAGI parser and command builders;
* :mod:`.server` - the TCP server with its limits, and the per-call session;
* :mod:`.router` - the ``route`` script, which uses the core like the Stasis
  router and sets the same channel variables plus ``PBXBRIDGE_DEST_*``.
"""

from pbxbridge.adapters.agi.protocol import (
    AgiEnv,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiResponse,
    parse_environment,
    parse_response,
    quote_value,
)
from pbxbridge.adapters.agi.router import AgiRouter
from pbxbridge.adapters.agi.server import AgiLimits, AgiServer, AgiServerStats, AgiSession

__all__ = [
    "AgiEnv",
    "AgiError",
    "AgiHangup",
    "AgiLimits",
    "AgiProtocolError",
    "AgiResponse",
    "AgiRouter",
    "AgiServer",
    "AgiServerStats",
    "AgiSession",
    "parse_environment",
    "parse_response",
    "quote_value",
]
