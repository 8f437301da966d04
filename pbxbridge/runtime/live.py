"""Rules and overrides as the running daemon sees them, reloaded without dropping calls.

Routing reads ``LiveRules.rules`` and ``LiveOverrides.items`` synchronously:
both are replaced atomically (one attribute assignment on the loop thread) by
a reload, so a call is routed entirely by the old or entirely by the new rules.
Parsing and validation run in a worker thread, so a 50,000-DID file does not
stall the event loop while calls arrive.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pbxbridge.config import ConfigError, load_rules
from pbxbridge.config.loader import named_ics_files
from pbxbridge.config.schema import RulesFile
from pbxbridge.core.models import Override
from pbxbridge.core.rules import Rules
from pbxbridge.storage.overrides import (
    SQLITE,
    OverrideStore,
    open_override_store,
    override_backend,
)
from pbxbridge.storage.postgres import redact_database_url

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _FileStamp:
    mtime_ns: int
    size: int
    inode: int


def _stamp(path: Path) -> _FileStamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _FileStamp(st.st_mtime_ns, st.st_size, st.st_ino)


class LiveRules:
    """The rules in force, with their generation and the last reload's outcome.

    Args:
        path: The rules file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rules: Rules
        self.model: RulesFile
        self.generation = 0
        self.loaded_at: datetime | None = None
        self.last_error: list[str] = []
        self.last_error_at: datetime | None = None
        self.reload_failures = 0
        # The rules file's stamp, then those of the .ics files its calendars name
        # (as the last file read names them, valid or not).
        self._stamp: tuple[_FileStamp | None, ...] = ()
        self._ics: list[Path] = []
        self._lock = asyncio.Lock()

    def load_initial(self) -> None:
        """Load the rules at start-up.

        Raises:
            ConfigError: If the file is invalid (the daemon must not start with
                no rules at all).
        """
        self._ics = named_ics_files(self.path)
        stamp = self._stamps()
        self.rules, self.model = load_rules(self.path)
        self._stamp = stamp
        self.generation = 1
        self.loaded_at = datetime.now(UTC)

    def _stamps(self) -> tuple[_FileStamp | None, ...]:
        return tuple(_stamp(p) for p in (self.path, *self._ics))

    def changed_on_disk(self) -> bool:
        """Whether the file or an ``.ics`` file it names differs (mtime, size or inode).

        Returns:
            True when one changed since the last attempt; editors that replace
            the file (new inode) count.
        """
        return self._stamps() != self._stamp

    async def reload(self, why: str) -> bool:
        """Reload the file; keep the current rules if the new file is invalid.

        Args:
            why: What triggered it (``SIGHUP``, ``file changed``), for the log.

        Returns:
            True when new rules are in force.
        """
        async with self._lock:
            self._ics = await asyncio.to_thread(named_ics_files, self.path)
            stamp = self._stamps()
            try:
                rules, model = await asyncio.to_thread(load_rules, self.path)
            except ConfigError as exc:
                self._stamp = stamp  # don't retry the same broken file every second
                self.reload_failures += 1
                self.last_error = [str(i) for i in exc.issues]
                self.last_error_at = datetime.now(UTC)
                for issue in exc.issues:
                    log.error(
                        "rules.invalid",
                        file=issue.file,
                        line=issue.line,
                        path=issue.path,
                        message=issue.message,
                    )
                log.error(
                    "rules.reload_rejected",
                    trigger=why,
                    errors=len(exc.issues),
                    kept_generation=self.generation,
                )
                return False
            self._stamp = stamp
            if rules.digest == self.rules.digest:
                log.info("rules.unchanged", trigger=why, generation=self.generation)
                self.last_error = []
                return False
            self.rules, self.model = rules, model
            self.generation += 1
            self.loaded_at = datetime.now(UTC)
            self.last_error = []
            log.info(
                "rules.reloaded",
                trigger=why,
                generation=self.generation,
                tenants=len(rules.tenants),
                digest=rules.digest[:12],
            )
            return True

    def health(self) -> dict[str, object]:
        """Health view for ``/healthz``.

        Returns:
            A JSON-ready dict.
        """
        return {
            "file": str(self.path),
            "generation": self.generation,
            "digest": self.rules.digest[:12] if self.generation else None,
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "reload_failures": self.reload_failures,
            "last_reload_error": self.last_error or None,
            "last_reload_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
        }


class LiveOverrides:
    """Manual overrides, picked up from the database within a poll interval.

    The store is the one the CLI writes (:func:`open_override_store`): the
    shared PostgreSQL database when ``database_url`` is set, else the node's
    SQLite state file. An unreachable or broken database never stops routing:
    the last overrides read stay in force and the error shows in health.

    Args:
        path: The SQLite state file (not used when a database URL is given).
        database_url: PostgreSQL URL shared by the nodes, or ``""``.
    """

    def __init__(self, path: str | Path, database_url: str = "") -> None:
        self.path = Path(path)
        self.backend = override_backend(database_url)
        self.items: tuple[Override, ...] = ()
        self.error: str | None = None
        self._url = database_url
        self._store: OverrideStore | None = None
        # A change seen by changed() but not read yet (active() failed): read
        # again on the next poll, even if changed() has nothing new to say.
        self._unread = True

    def _poll_sync(self) -> tuple[Override, ...] | None:
        # Runs in a worker thread, one at a time (poll() awaits it).
        if self._store is None:
            self._store = open_override_store(self._url, self.path)
        if self._store.changed():
            self._unread = True
        if not self._unread:
            return None
        fresh = tuple(self._store.active(datetime.now(UTC)))
        self._unread = False
        return fresh

    async def poll(self) -> bool:
        """Re-read the overrides if the database changed.

        Returns:
            True when the set of overrides changed.
        """
        try:
            fresh = await asyncio.to_thread(self._poll_sync)
        except Exception as exc:
            # A locked or broken state file, or an unreachable database, must
            # not stop routing: keep the overrides we have and say so in health.
            error = redact_database_url(str(exc) or type(exc).__name__, self._url)
            if self.error is None:
                log.error(
                    "overrides.unavailable", backend=self.backend, error=error, **self._where()
                )
            self.error = error
            return False
        if self.error is not None:
            log.info("overrides.available", backend=self.backend, **self._where())
            self.error = None
        if fresh is None or fresh == self.items:
            return False
        self.items = fresh
        log.info(
            "overrides.changed",
            count=len(fresh),
            overrides=[f"#{o.id} {o.scope} {o.state.value}" for o in fresh],
        )
        return True

    def close(self) -> None:
        """Close the database."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def _where(self) -> dict[str, str]:
        # The state file's path is harmless; the database URL may hold a
        # password and is never shown.
        return {"path": str(self.path)} if self.backend == SQLITE else {}

    def health(self) -> dict[str, object]:
        """Health view for ``/healthz`` (names the backend, never the database URL).

        Returns:
            A JSON-ready dict.
        """
        return {
            "backend": self.backend,
            "path": str(self.path) if self.backend == SQLITE else None,
            "count": len(self.items),
            "error": self.error,
            "pid": os.getpid(),
        }
