"""Which sounds Asterisk has (ARI ``GET /sounds``), and the daemon's check of the rules' sounds.

:func:`fetch_sounds` asks Asterisk once for its sound index: every sound it
can play, with the languages (and formats) it has each in. :class:`SoundCheck`
compares the sounds the rules name (:func:`~pbxbridge.config.sounds.sounds_named`)
with it, when the rules load and whenever ARI (re)connects (a prompt copied
into place meanwhile is then seen), and keeps the result for ``/healthz``,
``/metrics`` and the log. A check that cannot reach Asterisk keeps the last
result and says so; nothing here is on a call's path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import aiohttp
import structlog

from pbxbridge.adapters.ari.config import AriConfig
from pbxbridge.adapters.ari.errors import AriError
from pbxbridge.adapters.ari.transport import AriTransport
from pbxbridge.config.sounds import MissingSound, SoundUse, missing_sounds

log = structlog.get_logger(__name__)


async def fetch_sounds(
    config: AriConfig, *, session: aiohttp.ClientSession | None = None
) -> dict[str, frozenset[str]]:
    """Asterisk's sound index: sound name to the languages it exists in.

    Args:
        config: How to reach ARI (the daemon's settings, or ``check --ari``).
        session: An aiohttp session to use (not closed here).

    Returns:
        ``{"custom/wardenburg": frozenset({"de"}), ...}``.

    Raises:
        AriError: ARI answered with an error, or could not be reached
            (:class:`~pbxbridge.adapters.ari.errors.AriUnavailable`).
    """
    transport = AriTransport(config, session)
    try:
        data = await transport.request("GET", ("sounds",), expect="array")
    finally:
        await transport.close()
    index: dict[str, frozenset[str]] = {}
    for item in data:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        formats = item.get("formats") or ()
        languages = frozenset(
            f["language"]
            for f in formats
            if isinstance(f, Mapping) and isinstance(f.get("language"), str)
        )
        index[item["id"]] = index.get(item["id"], frozenset()) | languages
    return index


class SoundCheck:
    """The daemon's view of the rules' sounds against Asterisk (for a component face).

    Args:
        config: How to reach ARI.
        languages: Languages every sound must exist in (empty: those the named
            sounds exist in, see :mod:`pbxbridge.config.sounds`).
    """

    def __init__(self, config: AriConfig, *, languages: Sequence[str] = ()) -> None:
        self._config = config
        self._languages = tuple(languages)
        self.uses: list[SoundUse] = []
        self.missing: list[MissingSound] = []
        self.checked_at: datetime | None = None
        self.error: str | None = None
        self._lock = asyncio.Lock()

    async def check(self, uses: Sequence[SoundUse] | None = None, *, why: str = "") -> None:
        """Fetch the index and compare (never raises for ARI's sake).

        Args:
            uses: The sounds the rules now name; ``None``: the last ones.
            why: What triggered it (``rules loaded``, ``ARI connected``), for the log.
        """
        async with self._lock:
            if uses is not None:
                self.uses = list(uses)
            try:
                index = await fetch_sounds(self._config)
            except (AriError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("sounds.check_failed", trigger=why, error=self.error)
                return
            self.error = None
            self.checked_at = datetime.now(UTC)
            missing = missing_sounds(self.uses, index, self._languages)
            for item in missing:
                # One line per missing sound, naming every place that uses it.
                log.warning(
                    "sounds.missing",
                    sound=item.sound,
                    language=item.language,
                    used_at=[use.path for use in item.uses],
                )
            if not missing and self.missing:
                log.info("sounds.complete", trigger=why, sounds=len({u.sound for u in self.uses}))
            self.missing = missing

    def health(self) -> dict[str, object]:
        """``/healthz`` view: when checked, what is missing, where it is named."""
        return {
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "named": len({use.sound for use in self.uses}),
            "missing": [
                {"sound": m.sound, "language": m.language, "used_at": [u.path for u in m.uses]}
                for m in self.missing
            ],
            "error": self.error,
        }
