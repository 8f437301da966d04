"""The faces of routing: the entry points (ARI, FastAGI), calls, rules, overrides, HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping

import structlog

from pbxbridge.adapters.agi import AgiRouter, AgiServer
from pbxbridge.adapters.ari.client import AriClient
from pbxbridge.adapters.ari.router import StasisRouter, routing_alive
from pbxbridge.adapters.http.server import HttpServer
from pbxbridge.components.base import DISABLED, Part, Sample, up
from pbxbridge.journal.replay import ReloadImpact
from pbxbridge.runtime.live import LiveOverrides, LiveRules
from pbxbridge.runtime.sdnotify import SystemdNotifier, watchdog_loop

log = structlog.get_logger(__name__)


class Ari(Part):
    """The ARI socket and the Stasis router on it: the one part whose loss means ``down``.

    Started, it connects (and reconnects forever: Asterisk may come later),
    routes channels in the application the router never heard of, and feeds the
    systemd watchdog while the connection supervisor lives. Stopped, it finishes
    the calls being routed, closes the socket (Asterisk then sends new calls down
    the dialplan fallback) and finishes the calls that arrived just before.

    Args:
        client: The ARI client (``None`` before it is built).
        app: The Stasis application name, shown on ``/healthz``.
        router: The Stasis router the events go to (``None``: nothing to start).
        notifier: Where the watchdog pings go (``None``: no watchdog).
        drain_s: How long a stop waits for the calls being routed.
        connected: Told after each (re)connect and resync (it must return at
            once: it starts background work, e.g. the sound check).
    """

    def __init__(
        self,
        client: AriClient | None,
        app: str,
        *,
        router: StasisRouter | None = None,
        notifier: SystemdNotifier | None = None,
        drain_s: float = 15.0,
        connected: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self._app = app
        self._router = router
        self._notifier = notifier
        self._drain_s = drain_s
        self._connected = connected

    async def start(self) -> None:
        """Spawn the connection supervisor, the Stasis sweep and the watchdog."""
        client, router = self._client, self._router
        if client is None or router is None:
            return
        connected = self._connected

        async def on_connected() -> None:
            await router.resync()
            if connected is not None:
                connected()

        supervisor = self._spawn(
            client.run(
                router.handle, on_connected=router.resync if connected is None else on_connected
            ),
            "ari",
        )
        # Routes channels in the application that the router never heard of.
        self._spawn(router.sweep(), "stasis-sweep")
        if self._notifier is not None:
            # Fed only while the loop turns and the ARI supervisor is alive (see
            # routing_alive; Asterisk down still counts as alive).
            alive = lambda: routing_alive(client, supervisor)  # noqa: E731
            self._spawn(watchdog_loop(self._notifier, alive), "watchdog")

    async def stop(self) -> None:
        """Drain, close the socket, drain what arrived meanwhile, end the tasks."""
        client, router = self._client, self._router
        if client is not None and router is not None:
            if not await router.drain(self._drain_s):
                log.warning("daemon.drain_timeout", in_progress=router.in_progress)
            # Closing the socket unregisters the application: from here on the
            # dialplan's Stasis() fails over to the static queue.
            await client.close(grace=2.0)
            await router.drain(5.0)  # calls that arrived just before the close
        await self._cancel()

    @property
    def connected(self) -> bool:
        """Whether the ARI socket is up (what makes the verdict ``down``)."""
        return bool(self._client is not None and self._client.status.connected)

    def health(self) -> Mapping[str, object]:
        """``ari``: the connection status."""
        status = self._client.status if self._client is not None else None
        never_connected = {"state": "idle", "since": None, "failures": 0, "last_error": None}
        return {
            "ari": {
                **(status.as_dict() if status else never_connected),
                # The name this key has always had for ARI (same number as "failures").
                "consecutive_failures": status.failures if status else 0,
                "app": self._app,
            }
        }

    def problems(self) -> list[str]:
        """Not connected."""
        return [] if self.connected else ["ari: not connected"]

    def gauges(self) -> Iterator[Sample]:
        """``pbxbridge_up{component="ari"}``."""
        yield up("ari", bool(self._client and self._client.connected))


class Agi(Part):
    """The FastAGI entry point: its server and its router.

    Not part of the ``down`` verdict: while it is down, AGI calls take the
    dialplan fallback.

    Args:
        server: The FastAGI server, ``None`` when FastAGI is off.
        router: Its router, ``None`` when FastAGI is off.
        drain_s: How long a stop lets sessions finish.
    """

    def __init__(
        self, server: AgiServer | None, router: AgiRouter | None, *, drain_s: float = 15.0
    ) -> None:
        super().__init__()
        self._server = server
        self._router = router
        self._drain_s = drain_s

    async def start(self) -> None:
        """Listen (a taken port is logged and retried in the background)."""
        if self._server is not None:
            await self._server.start()

    async def stop(self) -> None:
        """Stop listening at once (new AGI calls take the fallback), let sessions finish."""
        if self._server is not None and not await self._server.stop(self._drain_s):
            log.warning("daemon.agi_drain_timeout")

    def health(self) -> Mapping[str, object]:
        """``agi``: state, bind address and counters."""
        server, router = self._server, self._router
        if server is None or router is None:
            return {"agi": DISABLED}
        return {
            "agi": {
                "state": "listening" if server.listening else "down",
                "bind": f"{server.host}:{server.port}",
                "last_error": server.last_error,
                # Shown, not a problem of its own: FreePBX set-ups without the
                # secret keep routing; the start-up log warns once.
                "authentication": "shared secret"
                if server.authenticated
                else "none: set credential agi-secret (any local process can inject calls)",
                "connections": server.connections,
                "in_progress": server.in_progress,
                "capacity": server.capacity,
                "routed": router.stats.routed,
                "failed": router.stats.failed,
                "gone": router.stats.gone,
                "menus": router.stats.menus,
                "by_action": dict(router.stats.by_action),
                "evicted": server.stats.evicted,
                "over_capacity": server.stats.over_capacity,
                "faults": dict(server.stats.faults),
            }
        }

    def problems(self) -> list[str]:
        """Not listening (the port taken, say)."""
        server = self._server
        if server is not None and not server.listening:
            return [f"agi: not listening on {server.host}:{server.port}"]
        return []

    def gauges(self) -> Iterator[Sample]:
        """The routing families with ``entry="agi"``, plus the server's own."""
        server, router = self._server, self._router
        if server is None or router is None:
            return
        entry = {"entry": "agi"}
        yield up("agi", server.listening)
        yield "pbxbridge_calls_in_routing", entry, float(server.in_progress)
        yield "pbxbridge_routing_failures", entry, float(router.stats.failed)
        yield "pbxbridge_agi_connections", {}, float(server.connections)
        stats = server.stats
        refused = {"over_capacity": stats.over_capacity, "evicted_idle": stats.evicted}
        for reason, count in (*refused.items(), *stats.faults.items()):
            yield "pbxbridge_agi_faults", {"reason": reason}, float(count)


class Calls(Part):
    """The Stasis router's calls.

    Args:
        router: The router (``None`` before it is built).
    """

    def __init__(self, router: StasisRouter | None) -> None:
        super().__init__()
        self._router = router

    def health(self) -> Mapping[str, object]:
        """``calls``: the router's counters."""
        router = self._router
        return {
            "calls": {
                "routed": router.stats.routed if router else 0,
                "failed": router.stats.failed if router else 0,
                "gone": router.stats.gone if router else 0,
                "menus": router.stats.menus if router else 0,
                "resynced": router.stats.resynced if router else 0,
                "stasis_timeouts": router.stats.stasis_timeouts if router else 0,
                "in_progress": router.in_progress if router else 0,
                "by_action": dict(router.stats.by_action) if router else {},
            }
        }

    def gauges(self) -> Iterator[Sample]:
        """The routing families with ``entry="ari"`` and the Stasis guard's timeouts."""
        if self._router is None:
            return
        entry = {"entry": "ari"}
        yield "pbxbridge_calls_in_routing", entry, float(self._router.in_progress)
        yield "pbxbridge_routing_failures", entry, float(self._router.stats.failed)
        yield "pbxbridge_stasis_timeouts", {}, float(self._router.stats.stasis_timeouts)


class Rules(Part):
    """The routing rules in force, reloaded when the file changes or on :meth:`reload`.

    Args:
        rules: The live rules (loaded before the daemon builds anything).
        notifier: Told RELOADING=1, then READY=1 with the generation, on each reload.
        poll_s: How often the file is checked for changes (``None``: not watched).
        impact: Replays the last days by the old and the new rules after a
            reload (in the background; its summary is ``rules.replay``).
        reloaded: Told after each reload that did not reject the file, new
            rules or not (returns at once).
    """

    def __init__(
        self,
        rules: LiveRules,
        *,
        notifier: SystemdNotifier | None = None,
        poll_s: float | None = None,
        impact: ReloadImpact | None = None,
        reloaded: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._rules = rules
        self._notifier = notifier
        self._poll_s = poll_s
        self._impact = impact
        self._reloaded = reloaded

    async def start(self) -> None:
        """Spawn the watch of the rules file."""
        if self._poll_s is not None:
            self._spawn(self._watch(self._poll_s), "rules-watch")

    def reload(self, why: str) -> None:
        """Reload the rules in the background (SIGHUP)."""
        self._spawn(self._reload(why), "reload")

    async def _reload(self, why: str) -> None:
        if self._notifier is not None:
            self._notifier.reloading(status=f"reloading rules ({why})")
        before = self._rules.rules
        changed = await self._rules.reload(why)
        if changed and self._impact is not None:
            self._impact.start(before, self._rules.rules, self._rules.generation)
        if self._reloaded is not None and not self._rules.last_error:
            # Also for an unchanged file: SIGHUP after copying a missing
            # prompt into place is how an operator asks for a new look.
            self._reloaded()
        status = f"routing with rules generation {self._rules.generation}"
        if self._rules.last_error:
            status += f"; last reload rejected ({len(self._rules.last_error)} errors)"
        if self._notifier is not None:
            self._notifier.ready(status=status)

    async def _watch(self, poll_s: float) -> None:
        while True:
            await asyncio.sleep(poll_s)
            if self._rules.changed_on_disk():
                await self._reload("file changed")

    async def stop(self) -> None:
        """End the watch, and a reload's replay still running."""
        if self._impact is not None:
            self._impact.cancel()
        await self._cancel()

    def health(self) -> Mapping[str, object]:
        """``rules``: file, generation, last reload, what the last reload changed."""
        body = self._rules.health()
        if self._impact is not None:
            body = {**body, "replay": self._impact.last}
        return {"rules": body}

    def problems(self) -> list[str]:
        """A rejected reload: the previous generation still routes."""
        if not self._rules.last_error:
            return []
        return [
            f"rules: last reload rejected ({len(self._rules.last_error)} errors), "
            f"generation {self._rules.generation} still routing"
        ]

    def gauges(self) -> Iterator[Sample]:
        """Generation and rejected reloads."""
        yield "pbxbridge_rules_generation", {}, float(self._rules.generation)
        yield "pbxbridge_rules_reload_failures", {}, float(self._rules.reload_failures)


class Overrides(Part):
    """The manual overrides store.

    Args:
        overrides: The live overrides (``None`` before they are opened).
        poll_s: How often the store is read again (``None``: read once at start).
    """

    def __init__(self, overrides: LiveOverrides | None, *, poll_s: float | None = None) -> None:
        super().__init__()
        self._overrides = overrides
        self._poll_s = poll_s

    async def start(self) -> None:
        """Read the store (before anything routes), then spawn its polling."""
        if self._overrides is None:
            return
        await self._overrides.poll()
        if self._poll_s is not None:
            self._spawn(self._watch(self._overrides, self._poll_s), "overrides-watch")

    async def stop(self) -> None:
        """End the polling, close the store."""
        await self._cancel()
        if self._overrides is not None:
            self._overrides.close()

    @staticmethod
    async def _watch(overrides: LiveOverrides, poll_s: float) -> None:
        while True:
            await asyncio.sleep(poll_s)
            await overrides.poll()

    def health(self) -> Mapping[str, object]:
        """``overrides``: the store and what was read last (``None`` before it is opened)."""
        return {"overrides": self._overrides.health() if self._overrides else None}

    def problems(self) -> list[str]:
        """Store unreadable: the overrides read last stay in force."""
        if self._overrides is not None and self._overrides.error:
            return ["overrides: store unreadable, last overrides read stay in force"]
        return []

    def gauges(self) -> Iterator[Sample]:
        """``pbxbridge_up{component="overrides"}``."""
        if self._overrides is not None:
            # 0 while the override store (SQLite file or shared PostgreSQL) cannot
            # be read: routing goes on with the overrides read last.
            yield up("overrides", not self._overrides.error)


class Http(Part):
    """The HTTP server of ``/healthz``, ``/metrics`` and the agent page (no key of its own).

    Args:
        server: The server, ``None`` when no HTTP port is configured.
    """

    def __init__(self, server: HttpServer | None) -> None:
        super().__init__()
        self._server = server

    async def start(self) -> None:
        """Listen."""
        if self._server is not None:
            await self._server.start()

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            await self._server.stop()
