"""The sound check's face (pbxbridge.components.sounds): /healthz, problems, gauges."""

from __future__ import annotations

from pbxbridge.adapters.ari.config import AriConfig
from pbxbridge.adapters.ari.sounds import SoundCheck
from pbxbridge.components.sounds import Sounds
from pbxbridge.config.sounds import MissingSound, SoundUse

WHISPER = SoundUse("custom/a", ("tenants", "t", "open", "whisper"), "whisper")


def check_with(*missing: MissingSound) -> SoundCheck:
    check = SoundCheck(
        AriConfig(base_url="http://127.0.0.1:9", username="u", password="p", app="a")
    )
    check.uses = [WHISPER]
    check.missing = list(missing)
    return check


class TestSoundsFace:
    def test_missing_sounds_are_a_problem_a_gauge_and_in_health(self) -> None:
        missing = [MissingSound(f"custom/s{i}", "de", (WHISPER,)) for i in range(7)]
        face = Sounds(check_with(*missing), lambda: [WHISPER])
        (problem,) = face.problems()
        assert problem == (
            "sounds: 7 missing in Asterisk (custom/s0 [de], custom/s1 [de], custom/s2 [de], "
            "custom/s3 [de], custom/s4 [de] and 2 more)"
        )
        gauges = list(face.gauges())
        assert gauges[0] == ("pbxbridge_sounds_missing", {}, 7.0)
        assert gauges[1] == (
            "pbxbridge_sound_missing",
            {"sound": "custom/s0", "language": "de"},
            1.0,
        )
        assert len(gauges) == 8
        body = face.health()["sounds"]
        assert isinstance(body, dict)
        assert body["missing"][0] == {
            "sound": "custom/s0",
            "language": "de",
            "used_at": ["tenants.t.open.whisper"],
        }
        assert body["named"] == 1

    def test_all_there(self) -> None:
        face = Sounds(check_with(), lambda: [WHISPER])
        assert face.problems() == []
        assert list(face.gauges()) == [("pbxbridge_sounds_missing", {}, 0.0)]

    def test_without_ari(self) -> None:
        face = Sounds(None, lambda: [WHISPER])
        face.recheck("ARI connected")  # nothing to do, no task
        assert face.health() == {"sounds": {"state": "disabled"}}
        assert (face.problems(), list(face.gauges())) == ([], [])

    async def test_recheck_runs_in_the_background_and_keeps_the_last_result(self) -> None:
        # Asterisk unreachable (port 9): the check records the error, raises nothing.
        check = check_with(MissingSound("custom/a", "en", (WHISPER,)))
        face = Sounds(check, lambda: [WHISPER])
        face.recheck("rules reloaded")
        await face.stop()  # cancels or finishes the task
        face.recheck("rules reloaded")
        await face._tasks[0]
        assert check.error is not None and "AriUnavailable" in check.error
        assert [m.sound for m in check.missing] == ["custom/a"]  # the last result stays
