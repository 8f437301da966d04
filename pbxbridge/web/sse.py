"""Server-sent events: one writer loop for every live page (agent desk, supervisor, wallboard)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Final

from aiohttp import web

KEEPALIVE_S: Final = 15.0
RECHECK_S: Final = 1.0
"""An open stream re-checks that it may go on this often (sign-out elsewhere,
removed agent, new password, role taken away: the stream ends within about a second)."""

Item = tuple[str, str] | None
"""``(event name, data)``; ``None`` ends the stream."""


def event(name: str, data: object) -> tuple[str, str]:
    """A queue item: ``data`` as compact JSON on one line (JSON never holds a raw newline).

    Args:
        name: The event name the page listens for.
        data: JSON-serialisable data (non-ASCII kept as is).

    Returns:
        ``(name, json)`` for :func:`serve`'s queue.
    """
    return name, json.dumps(data, ensure_ascii=False, separators=(",", ":"))


async def serve(
    request: web.Request,
    queue: asyncio.Queue[Item],
    *,
    allowed: Callable[[], bool],
    recheck_s: float = RECHECK_S,
    keepalive_s: float = KEEPALIVE_S,
) -> web.StreamResponse:
    """Write queued items as ``text/event-stream`` until the end, a gone browser or lost access.

    Args:
        request: The ``GET`` of the stream.
        queue: Items to write; ``None`` ends the stream.
        allowed: Asked every ``recheck_s`` while idle; False ends the stream.
        recheck_s: See :data:`RECHECK_S`.
        keepalive_s: A comment line after this long without data (proxies
            and browsers drop silent connections).

    Returns:
        The finished response. The caller forgets its queue afterwards.
    """
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        while True:
            try:
                async with asyncio.timeout(recheck_s):
                    item = await queue.get()
            except TimeoutError:
                if not allowed():
                    break
                if loop.time() - last_write >= keepalive_s:
                    await response.write(b": keep-alive\n\n")
                    last_write = loop.time()
                continue
            if item is None:
                break
            name, data = item
            await response.write(f"event: {name}\ndata: {data}\n\n".encode())
            last_write = loop.time()
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
