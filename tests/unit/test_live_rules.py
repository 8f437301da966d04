"""LiveRules: reloading the rules when they, or an .ics file they name, change."""

from __future__ import annotations

import os
import shutil
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pbxbridge.runtime.live import LiveRules

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
ICS = Path(__file__).resolve().parents[1] / "data" / "ics"
BERLIN = ZoneInfo("Europe/Berlin")


def rules_with_ics(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "  servicecenter:\n    holidays:",
        "  servicecenter:\n    ics: closures.ics\n    holidays:",
        1,
    )
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    shutil.copyfile(ICS / "outlook-schliesstage.ics", tmp_path / "closures.ics")
    return path


def is_open(live: LiveRules, when: datetime) -> bool:
    return live.rules.calendars["servicecenter"].state_at(when).is_open


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


class TestLiveRules:
    async def test_a_changed_ics_file_is_picked_up(self, tmp_path: Path) -> None:
        path = rules_with_ics(tmp_path)
        live = LiveRules(path)
        live.load_initial()
        excursion = datetime(2026, 6, 12, 10, tzinfo=BERLIN)
        assert not is_open(live, excursion)
        assert not live.changed_on_disk()

        ics = tmp_path / "closures.ics"
        ics.write_bytes(
            ics.read_bytes().replace(b"20260612", b"20260619").replace(b"20260613", b"20260620")
        )
        touch_later(ics)
        assert live.changed_on_disk()
        assert await live.reload("file changed")
        assert live.generation == 2
        assert is_open(live, excursion)
        assert not is_open(live, datetime(2026, 6, 19, 10, tzinfo=BERLIN))
        assert not live.changed_on_disk()

    async def test_a_broken_ics_file_keeps_the_last_good_rules(self, tmp_path: Path) -> None:
        path = rules_with_ics(tmp_path)
        live = LiveRules(path)
        live.load_initial()
        ics = tmp_path / "closures.ics"
        ics.write_bytes((ICS / "invalid-dtstart.ics").read_bytes())
        touch_later(ics)
        assert live.changed_on_disk()
        assert not await live.reload("file changed")
        assert live.generation == 1
        assert not is_open(live, datetime(2026, 6, 12, 10, tzinfo=BERLIN))
        (error,) = live.last_error
        assert error.startswith(f"{ics}:13: calendars.servicecenter.ics: DTSTART:")
        line = path.read_text(encoding="utf-8").splitlines().index("    ics: closures.ics") + 1
        assert f"(named at {path}:{line})" in error
        assert not live.changed_on_disk()  # not retried every second

    async def test_an_unchanged_yaml_with_a_changed_ics_has_a_new_digest(
        self, tmp_path: Path
    ) -> None:
        path = rules_with_ics(tmp_path)
        live = LiveRules(path)
        live.load_initial()
        first = live.rules.digest
        ics = tmp_path / "closures.ics"
        ics.write_bytes(ics.read_bytes().replace(b"Personalversammlung", b"Personalrat"))
        touch_later(ics)
        assert await live.reload("SIGHUP")
        assert live.rules.digest != first
        reason = live.rules.calendars["servicecenter"].state_on(date(2026, 11, 25))
        assert [i.text for i in reason[0]] == ["07:00-12:00"]

    async def test_fixing_a_newly_named_broken_ics_reloads(self, tmp_path: Path) -> None:
        # The YAML names an .ics that is broken: the reload fails. Fixing the
        # .ics alone (the YAML unchanged) must be seen and reload the rules.
        path = tmp_path / "routing.yaml"
        shutil.copyfile(EXAMPLE, path)
        live = LiveRules(path)
        live.load_initial()
        assert rules_with_ics(tmp_path) == path  # the YAML now names closures.ics
        (tmp_path / "closures.ics").write_bytes((ICS / "invalid-dtstart.ics").read_bytes())
        touch_later(path)
        assert live.changed_on_disk()
        assert not await live.reload("file changed")
        assert not live.changed_on_disk()

        ics = tmp_path / "closures.ics"
        ics.write_bytes((ICS / "outlook-schliesstage.ics").read_bytes())
        touch_later(ics)
        assert live.changed_on_disk()
        assert await live.reload("file changed")
        assert not is_open(live, datetime(2026, 6, 12, 10, tzinfo=BERLIN))
