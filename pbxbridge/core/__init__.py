"""The pure, synchronous core: models, numbers, calendars, rules and routing.

Nothing in this package does I/O, reads the clock or touches asyncio.
"""

from pbxbridge.core.models import (
    ALL_TENANTS,
    Action,
    Call,
    ClosedHandling,
    ClosedThen,
    Decision,
    Menu,
    Override,
    OverrideState,
    QueueTarget,
    Reject,
)
from pbxbridge.core.routing import route
from pbxbridge.core.rules import Rules, Tenant

__all__ = [
    "ALL_TENANTS",
    "Action",
    "Call",
    "ClosedHandling",
    "ClosedThen",
    "Decision",
    "Menu",
    "Override",
    "OverrideState",
    "QueueTarget",
    "Reject",
    "Rules",
    "Tenant",
    "route",
]
