"""The agent page: live screen pops, wrap-up and callbacks in the browser.

Served by the daemon's HTTP server under ``/agent/`` (see ``docs/agent-page.md``).
Everything it needs (templates, CSS, script, icon) ships in this package.
"""

from pbxbridge.web.config import WebConfig
from pbxbridge.web.desk import AgentDesk, DeskError, JournalLink, callback_due
from pbxbridge.web.server import AgentPage, setup_web

__all__ = [
    "AgentDesk",
    "AgentPage",
    "DeskError",
    "JournalLink",
    "WebConfig",
    "callback_due",
    "setup_web",
]
