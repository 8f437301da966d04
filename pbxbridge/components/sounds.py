"""The face of the sound check: the rules' sounds Asterisk lacks, on ``/healthz`` and ``/metrics``.

The check (:class:`~pbxbridge.adapters.ari.sounds.SoundCheck`) runs when the
root says so: after every ARI (re)connect (the first one follows the rules'
first load) and after every reload that put new rules in force. Each run is a
background task of its own; nothing waits for it, and a call never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from pbxbridge.adapters.ari.sounds import SoundCheck
from pbxbridge.components.base import DISABLED, Part, Sample
from pbxbridge.config.sounds import SoundUse

HELP = {
    "pbxbridge_sounds_missing": (
        "Sounds the rules name that Asterisk lacks (per language), at the last check."
    ),
    "pbxbridge_sound_missing": "1 for each sound and language the rules name and Asterisk lacks.",
}
"""Help text of this face's gauge families."""

PROBLEM_LIST = 5
"""Missing sounds named in the problem line (the rest are counted)."""


class Sounds(Part):
    """The rules' sounds against Asterisk's index.

    Args:
        check: The check, ``None`` without ARI (reports ``disabled``).
        uses: The sounds the rules in force name (read at each check).
    """

    def __init__(self, check: SoundCheck | None, uses: Callable[[], Sequence[SoundUse]]) -> None:
        super().__init__()
        self._check = check
        self._uses = uses

    def recheck(self, why: str) -> None:
        """Check again in the background (ARI connected, rules reloaded)."""
        if self._check is None:
            return
        # Finished checks need no keeping; one is started per reload or reconnect.
        self._tasks = [task for task in self._tasks if not task.done()]
        self._spawn(self._check.check(self._uses(), why=why), "sounds-check")

    def health(self) -> Mapping[str, object]:
        """``sounds``: when checked, what is missing and where the rules name it."""
        return {"sounds": self._check.health() if self._check is not None else DISABLED}

    def problems(self) -> list[str]:
        """A missing sound: callers hear silence, agents no whisper."""
        if self._check is None or not self._check.missing:
            return []
        missing = self._check.missing
        named = ", ".join(f"{m.sound} [{m.language}]" for m in missing[:PROBLEM_LIST])
        more = f" and {len(missing) - PROBLEM_LIST} more" if len(missing) > PROBLEM_LIST else ""
        return [f"sounds: {len(missing)} missing in Asterisk ({named}{more})"]

    def gauges(self) -> Iterator[Sample]:
        """The count, and one gauge per missing sound and language."""
        if self._check is None:
            return
        yield "pbxbridge_sounds_missing", {}, float(len(self._check.missing))
        for item in self._check.missing:
            yield "pbxbridge_sound_missing", {"sound": item.sound, "language": item.language}, 1.0
