"""The sounds a rules file names, and which Asterisk lacks (pbxbridge.config.sounds)."""

from __future__ import annotations

from pathlib import Path

from pbxbridge.config import load_rules
from pbxbridge.config.loader import line_finder
from pbxbridge.config.sounds import MissingSound, SoundUse, missing_sounds, sounds_named
from tests.unit.test_replay import RULES

WITH_SOUNDS = (
    RULES.replace("CAL", "sc")
    .replace(
        "open: {queue: sc, priority: 5}\n    closed: {then: voicemail",
        "open: {queue: sc, priority: 5, whisper: custom/oldenburg}\n"
        "    closed: {announce: custom/ol-closed, then: voicemail",
    )
    .replace(
        "closed: {then: hangup}",
        "closed: {then: hangup}\n    virtual_hold:\n      enabled: true\n"
        "      sounds: {offer: custom/offer}",
    )
    .replace("unknown_did: {tenant: oldenburg}", "unknown_did: {reject: {announce: custom/nope}}")
)


def named(tmp_path: Path) -> tuple[list[SoundUse], str]:
    path = tmp_path / "rules.yaml"
    path.write_text(WITH_SOUNDS, encoding="utf-8")
    return sounds_named(load_rules(path)[1]), WITH_SOUNDS


class TestSoundsNamed:
    def test_every_kind_with_its_line(self, tmp_path: Path) -> None:
        uses, text = named(tmp_path)
        line = line_finder(text)
        got = [(u.sound, u.path, u.what, line(u.loc)) for u in uses]
        lines = text.splitlines()

        def line_of(needle: str) -> int:
            return next(i for i, t in enumerate(lines, 1) if needle in t)

        assert got[:2] == [
            (
                "custom/oldenburg",
                "tenants.oldenburg.open.whisper",
                "whisper",
                line_of("whisper: custom/oldenburg"),
            ),
            (
                "custom/ol-closed",
                "tenants.oldenburg.closed.announce",
                "closed announcement",
                line_of("announce: custom/ol-closed"),
            ),
        ]
        hold = [u for u in uses if u.what.startswith("virtual hold")]
        assert [u.sound for u in hold] == [
            "custom/offer",  # configured: its own line
            "pbxbridge/vhold-read-back",  # the defaults: the block's line
            "pbxbridge/vhold-confirm-or-enter",
            "pbxbridge/vhold-enter-number",
            "pbxbridge/vhold-invalid-number",
            "pbxbridge/vhold-premium-number",
            "pbxbridge/vhold-international-number",
            "pbxbridge/vhold-confirmed",
            "pbxbridge/vhold-may-call-tomorrow",
            "pbxbridge/vhold-callback-for",  # the agent's whisper of a callback leg
        ]
        assert line(hold[0].loc) == line_of("sounds: {offer: custom/offer}")
        assert line(hold[1].loc) == line_of("virtual_hold:")
        assert [(u.sound, u.what, line(u.loc)) for u in uses[-2:]] == [
            ("custom/115-choose", "115 menu prompt", line_of("prompt: custom/115-choose")),
            ("custom/nope", "reject announcement", line_of("announce: custom/nope")),
        ]

    def test_the_agent_whisper_of_a_callback_is_checked(self, tmp_path: Path) -> None:
        path = tmp_path / "rules.yaml"
        path.write_text(WITH_SOUNDS, encoding="utf-8")
        uses = sounds_named(load_rules(path)[1])
        (default,) = [u for u in uses if u.sound == "pbxbridge/vhold-callback-for"]
        assert (default.path, default.what) == (
            "tenants.wardenburg.virtual_hold",
            "virtual hold agent whisper",
        )
        # Asterisk has every other sound: the whisper alone is reported missing.
        index = {u.sound: frozenset({"de"}) for u in uses if u is not default}
        assert missing_sounds(uses, index) == [
            MissingSound("pbxbridge/vhold-callback-for", "de", (default,))
        ]
        # configured per tenant: that sound, at its own key
        path.write_text(
            WITH_SOUNDS.replace("{offer: custom/offer}", "{agent_whisper: custom/rr-fuer}"),
            encoding="utf-8",
        )
        hold = [u for u in sounds_named(load_rules(path)[1]) if "whisper" in u.what]
        assert [(u.sound, u.path) for u in hold] == [
            ("custom/oldenburg", "tenants.oldenburg.open.whisper"),
            ("custom/rr-fuer", "tenants.wardenburg.virtual_hold.sounds.agent_whisper"),
        ]

    def test_a_disabled_virtual_hold_plays_nothing(self, tmp_path: Path) -> None:
        path = tmp_path / "rules.yaml"
        path.write_text(WITH_SOUNDS.replace("enabled: true", "enabled: false"), encoding="utf-8")
        assert not [u for u in sounds_named(load_rules(path)[1]) if "vhold" in u.sound]


USES = (
    SoundUse("custom/a", ("x",), "whisper"),
    SoundUse("custom/b", ("y",), "whisper"),
    SoundUse("custom/b", ("z",), "closed announcement"),
)


class TestMissingSounds:
    def test_per_language_of_the_deployment(self) -> None:
        index = {"custom/a": frozenset({"de", "en"}), "custom/b": frozenset({"de"})}
        assert missing_sounds(USES, index) == [MissingSound("custom/b", "en", tuple(USES[1:]))]
        # the languages asked for
        assert [(m.sound, m.language) for m in missing_sounds(USES, index, ["fr"])] == [
            ("custom/a", "fr"),
            ("custom/b", "fr"),
        ]

    def test_asterisk_file_layouts(self) -> None:
        # sounds/custom/a.ulaw: listed as "a" in "custom", plays in every language;
        # sounds/custom/de/b.ulaw: listed as "de/b" in "custom", plays in German.
        index = {
            "a": frozenset({"custom"}),
            "de/b": frozenset({"custom"}),
            "beep": frozenset({"en"}),
        }
        assert [(m.sound, m.language) for m in missing_sounds(USES, index, ["de", "en"])] == [
            ("custom/b", "en")
        ]

    def test_nothing_anywhere_checks_the_default_language(self) -> None:
        assert [(m.sound, m.language) for m in missing_sounds(USES, {})] == [
            ("custom/a", "en"),
            ("custom/b", "en"),
        ]
