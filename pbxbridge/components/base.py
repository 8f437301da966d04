"""The face every component shows (:class:`Component`) and the faces' base (:class:`Part`)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any, Protocol

Sample = tuple[str, dict[str, str], float]
"""One gauge value: family name, labels, value."""

DISABLED: dict[str, object] = {"state": "disabled"}


class Component(Protocol):
    """The face every part of the daemon shows to the root, ``/healthz`` and ``/metrics``."""

    async def start(self) -> None:
        """Start what it runs (background tasks, a listening socket); return promptly."""

    async def stop(self) -> None:
        """Finish or hand over its work, close what it opened, end its tasks."""

    def health(self) -> Mapping[str, object]:
        """Its keys of the ``/healthz`` body (none for a part that has no key)."""

    def problems(self) -> list[str]:
        """What it needs an operator for, ``"part: text"``; empty when well."""

    def gauges(self) -> Iterator[Sample]:
        """Its gauges, read now from the state it owns."""


def up(component: str, ok: bool) -> Sample:
    """``pbxbridge_up{component=...}``: 1 when ``ok``."""
    return "pbxbridge_up", {"component": component}, 1.0 if ok else 0.0


class Part:
    """Base of the faces: nothing to start, stop or report, unless a face says so.

    Keeps the background tasks a face starts with :meth:`_spawn`; the default
    :meth:`stop` cancels them (a face that must finish work first overrides it
    and calls :meth:`_cancel` last).
    """

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """End the tasks it started."""
        await self._cancel()

    def health(self) -> Mapping[str, object]:
        """No key of its own."""
        return {}

    def problems(self) -> list[str]:
        """None."""
        return []

    def gauges(self) -> Iterator[Sample]:
        """None."""
        yield from ()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def _cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
