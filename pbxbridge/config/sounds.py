"""The sound files a rules file names, and which of them Asterisk lacks (pure).

A missing sound fails silently on the phone: the caller hears nothing where the
closed announcement should be, the agent gets no whisper, the 115 menu waits
its whole timeout for a prompt that never played, and each missing whisper
costs app_queue about 10 ms per call looking for it. :func:`sounds_named`
walks the validated rules for every sound they make Asterisk play, each with
its key path (which :func:`~pbxbridge.config.loader.line_finder` turns into the
YAML line); :func:`missing_sounds` compares them with what Asterisk has, per
language, as ARI's ``GET /sounds`` lists it (fetched by
:mod:`pbxbridge.adapters.ari.sounds`).

Which languages must have a sound: those given (``pbxbridge check
--language``), else every language in which Asterisk has at least one of the
sounds the rules name (a deployment with German prompts checks German), else
Asterisk's default ``en``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Final

from pbxbridge.config.schema import RulesFile
from pbxbridge.core.virtual_hold import VirtualHoldSounds

Loc = tuple[str | int, ...]

DEFAULT_LANGUAGE: Final = "en"
"""Asterisk's language for a channel nobody set one on."""


@dataclass(frozen=True, slots=True)
class SoundUse:
    """One place the rules name a sound.

    Attributes:
        sound: The Asterisk sound name (``custom/wardenburg``).
        loc: Its key path in the rules (``("tenants", "wardenburg", "open", "whisper")``);
            a default sound points at the block that switched it on.
        what: What it is for (``whisper``, ``closed announcement``, ...).
    """

    sound: str
    loc: Loc
    what: str

    @property
    def path(self) -> str:
        """The key path dotted (``tenants.wardenburg.open.whisper``)."""
        return ".".join(str(part) for part in self.loc)


@dataclass(frozen=True, slots=True)
class MissingSound:
    """A sound the rules name that Asterisk does not have in a language.

    Attributes:
        sound: The sound name.
        language: The language it lacks.
        uses: Where the rules name it.
    """

    sound: str
    language: str
    uses: tuple[SoundUse, ...]


def sounds_named(model: RulesFile) -> list[SoundUse]:
    """Every sound the rules make Asterisk play, in the order of the file.

    Whispers, closed announcements, the 115 menu prompt, the unknown-number
    rejection announcement, and the prompts of every enabled virtual hold
    (its defaults included: they are played too).

    Args:
        model: The validated rules.

    Returns:
        One entry per place a sound is named (a sound named twice appears twice).
    """
    uses: list[SoundUse] = []
    for tid, tenant in model.tenants.items():
        base: Loc = ("tenants", tid)
        if tenant.open.whisper:
            uses.append(SoundUse(tenant.open.whisper, (*base, "open", "whisper"), "whisper"))
        if tenant.closed.announce:
            uses.append(
                SoundUse(
                    tenant.closed.announce, (*base, "closed", "announce"), "closed announcement"
                )
            )
        hold = tenant.virtual_hold
        if hold is not None and hold.enabled:
            configured = hold.sounds.model_dump()
            defaults = VirtualHoldSounds()
            for item in fields(VirtualHoldSounds):
                name = configured.get(item.name) or getattr(defaults, item.name)
                loc: Loc = (*base, "virtual_hold")
                if configured.get(item.name):
                    loc = (*loc, "sounds", item.name)
                uses.append(SoundUse(name, loc, f"virtual hold {item.name.replace('_', ' ')}"))
    service = model.service_115
    if service is not None and service.otherwise.menu is not None:
        uses.append(
            SoundUse(
                service.otherwise.menu.prompt,
                ("service_115", "otherwise", "menu", "prompt"),
                "115 menu prompt",
            )
        )
    reject = model.unknown_did.reject
    if reject is not None and reject.announce:
        uses.append(
            SoundUse(reject.announce, ("unknown_did", "reject", "announce"), "reject announcement")
        )
    return uses


def missing_sounds(
    uses: Iterable[SoundUse],
    available: Mapping[str, frozenset[str]],
    languages: Iterable[str] = (),
) -> list[MissingSound]:
    """The named sounds Asterisk lacks, per language.

    Asterisk plays ``custom/x`` in language ``de`` from ``sounds/de/custom/x``,
    ``sounds/custom/de/x`` or, for every language, ``sounds/custom/x``. Its
    index takes the first directory below ``sounds`` for the language, so it
    lists these as ``custom/x`` in ``de``, ``de/x`` in ``custom`` and ``x`` in
    ``custom``; all three count. Only the first form tells which languages a
    deployment uses. (A sound directly in ``sounds`` is in no
    language directory and not in the index: it is reported missing.)

    Args:
        uses: What the rules name (:func:`sounds_named`).
        available: ARI's index: sound id to the languages it lists it in.
        languages: The languages every sound must exist in; empty: see the
            module docstring.

    Returns:
        One entry per sound and language, sorted by sound then language.
    """
    by_sound: dict[str, list[SoundUse]] = {}
    for use in uses:
        by_sound.setdefault(use.sound, []).append(use)
    wanted = set(languages)
    if not wanted:
        for sound in by_sound:
            wanted.update(available.get(sound, ()))
    if not wanted:
        wanted = {DEFAULT_LANGUAGE}
    return [
        MissingSound(sound, language, tuple(by_sound[sound]))
        for sound in sorted(by_sound)
        for language in sorted(wanted)
        if not _has(available, sound, language)
    ]


def _has(available: Mapping[str, frozenset[str]], sound: str, language: str) -> bool:
    if language in available.get(sound, ()):
        return True  # sounds/<language>/<sound>
    folder, _, base = sound.rpartition("/")
    # sounds/<sound> (every language) or sounds/<folder>/<language>/<base>
    return _indexed(available, sound) or (
        bool(folder) and _indexed(available, f"{folder}/{language}/{base}")
    )


def _indexed(available: Mapping[str, frozenset[str]], path: str) -> bool:
    """Whether ``sounds/<path>`` exists: the index files it under its first directory."""
    first, _, rest = path.partition("/")
    return bool(rest) and first in available.get(rest, ())
