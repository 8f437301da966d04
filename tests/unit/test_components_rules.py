"""The rules' face (pbxbridge.components.entry.Rules): what a reload sets off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pbxbridge import components
from pbxbridge.journal.replay import ReloadImpact
from pbxbridge.journal.sqlite import SqliteJournal
from pbxbridge.runtime.live import LiveRules
from tests.unit.test_cli_replay import entry
from tests.unit.test_replay import RULES, WAR_DID

CURRENT = RULES.replace("CAL", "sc")
NEW = CURRENT.replace(
    'dids: ["+49 4407 73-0"]\n    calendar: sc\n    open: {queue: sc, priority: 5}\n'
    "    closed: {then: hangup}",
    'dids: ["+49 4407 73-0"]\n    calendar: sc\n    open: {queue: sc, priority: 9}\n'
    "    closed: {then: voicemail, mailbox: '7@w'}",
)


class TestRulesFace:
    async def test_a_reload_replays_the_week_and_asks_for_a_sound_check(
        self, tmp_path: Path
    ) -> None:
        assert NEW != CURRENT
        path = tmp_path / "routing.yaml"
        path.write_text(CURRENT, encoding="utf-8")
        live = LiveRules(path)
        live.load_initial()
        with SqliteJournal(tmp_path / "journal.sqlite") as journal:
            # open or closed, whenever the test runs: the change shows either way
            journal.upsert(
                [entry("c1", WAR_DID, "+494411234567", datetime.now(UTC) - timedelta(hours=1))]
            )
        impact = ReloadImpact(lambda: SqliteJournal(tmp_path / "journal.sqlite"))
        told: list[str] = []
        face = components.Rules(live, impact=impact, reloaded=lambda: told.append("reloaded"))
        assert face.health() == {"rules": {**live.health(), "replay": None}}

        path.write_text(NEW, encoding="utf-8")
        await face._reload("test")
        assert told == ["reloaded"] and impact._task is not None
        await impact._task
        replay = face.health()["rules"]["replay"]  # type: ignore[index]
        assert (replay["generation"], replay["calls"], replay["changed"]) == (2, 1, 1)

        # The same file again (SIGHUP after copying a prompt): a sound check, no replay.
        task = impact._task
        await face._reload("SIGHUP")
        assert told == ["reloaded", "reloaded"] and impact._task is task

        # A rejected file: neither.
        path.write_text(NEW.replace("calendar: sc", "calendar: nosuch", 1), encoding="utf-8")
        await face._reload("test")
        assert told == ["reloaded", "reloaded"] and impact._task is task
        assert face.problems() and live.generation == 2
        await face.stop()
