"""The daemon's event loop: uvloop by default, the standard library's on request.

Why uvloop: the daemon's work per call is mostly the event loop's own - waking
for a socket, running a callback, writing a frame to ARI, AMI or the broker.
uvloop (libuv, in C) does that part for a fraction of the standard loop's CPU
(``benchmarks/asterisk_load.py --daemon full``: the daemon's CPU per call,
docs/operations.md). Nothing in pbxbridge depends on which loop runs it, so
``PBXBRIDGE_EVENT_LOOP=asyncio`` is the way back if a platform has no uvloop
wheel or a loop-specific problem is suspected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

__all__ = ["loop_factory", "run"]

log = structlog.get_logger(__name__)

T = TypeVar("T")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the named event loop (``None``: the standard library's).

    Args:
        name: ``uvloop`` or ``asyncio``.

    Returns:
        ``uvloop.new_event_loop`` for ``uvloop`` when uvloop can be imported,
        otherwise ``None`` (a missing uvloop is logged, not fatal: the daemon
        works the same, only with more CPU per call).
    """
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("daemon.uvloop_missing", using="asyncio")
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, event_loop: str) -> T:
    """Run ``main`` to completion on the named event loop (like :func:`asyncio.run`).

    Args:
        main: The coroutine (the daemon's ``run()``).
        event_loop: ``uvloop`` or ``asyncio``.

    Returns:
        What ``main`` returned.
    """
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        return runner.run(main)
