"""Closures from an ``ics:`` file: reasons name the file and the date, never the title.

Reasons go to the journal, the log and replay reports; an imported calendar's
SUMMARY is free text that may name people ("Urlaub Frau Meyer"). The YAML's own
names (calendar keys, the ``ics:`` path, holiday names) stay.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pbxbridge.config import load_rules
from pbxbridge.core import Call, route

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
PERSONAL = ("Urlaub Frau Meyer", "Arzttermin Herr Schulz", "Meyer", "Schulz")

ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//reasons//EN\r\n"
    # all day, Friday 12 June 2026
    "BEGIN:VEVENT\r\nUID:a@test\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART;VALUE=DATE:20260612\r\nSUMMARY:Urlaub Frau Meyer\r\nEND:VEVENT\r\n"
    # 12:00-18:00 local, Wednesday 25 November 2026 (leaves 07:00-12:00)
    "BEGIN:VEVENT\r\nUID:b@test\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART;TZID=Europe/Berlin:20261125T120000\r\nDTEND;TZID=Europe/Berlin:20261125T180000\r\n"
    "SUMMARY:Arzttermin Herr Schulz\r\nEND:VEVENT\r\n"
    # 07:00-18:00 local, Thursday 26 November 2026: all the day's hours
    "BEGIN:VEVENT\r\nUID:c@test\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART;TZID=Europe/Berlin:20261126T070000\r\nDTEND;TZID=Europe/Berlin:20261126T180000\r\n"
    "SUMMARY:Urlaub Frau Meyer\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def rules_with_personal_ics(tmp: Path) -> Path:
    (tmp / "closures").mkdir()
    (tmp / "closures" / "staff.ics").write_text(ICS, encoding="utf-8")
    text = (ROOT / "config" / "routing.yaml").read_text(encoding="utf-8")
    named = text.replace(
        "  servicecenter:\n    holidays:",
        "  servicecenter:\n    ics: closures/staff.ics\n    holidays:",
        1,
    )
    assert named != text
    (tmp / "routing.yaml").write_text(named, encoding="utf-8")
    return tmp / "routing.yaml"


def reasons_at(path: Path, at: datetime) -> tuple[bool, str]:
    rules, _ = load_rules(path)
    decision = route(Call(did="+494407730", caller="+494411234567"), rules, at)
    return decision.action == "queue", "\n".join(decision.reasons)


def test_an_all_day_closure_names_the_file_and_the_date(tmp_path: Path) -> None:
    path = rules_with_personal_ics(tmp_path)
    is_open, reasons = reasons_at(path, datetime(2026, 6, 12, 10, tzinfo=BERLIN))
    assert not is_open
    assert (
        "Fri 12.06.2026 10:00 CEST: closed all day "
        "(closure from closures/staff.ics on 2026-06-12) (calendar servicecenter)"
    ) in reasons.splitlines()
    assert not any(p in reasons for p in PERSONAL)


def test_a_timed_closure_names_the_file_and_the_date(tmp_path: Path) -> None:
    path = rules_with_personal_ics(tmp_path)
    is_open, reasons = reasons_at(path, datetime(2026, 11, 25, 12, 30, tzinfo=BERLIN))
    assert not is_open
    assert (
        "Wed 25.11.2026 12:30 CET inside closure from closures/staff.ics on 2026-11-25 "
        "12:00-18:00 (open 07:00-12:00) (calendar servicecenter)"
    ) in reasons.splitlines()
    assert not any(p in reasons for p in PERSONAL)
    # The morning the closure leaves is open by the weekly hours, as before.
    is_open, reasons = reasons_at(path, datetime(2026, 11, 25, 10, tzinfo=BERLIN))
    assert is_open and "inside mon-fri 07:00-12:00" in reasons


def test_a_timed_closure_of_all_the_hours_closes_the_day(tmp_path: Path) -> None:
    path = rules_with_personal_ics(tmp_path)
    is_open, reasons = reasons_at(path, datetime(2026, 11, 26, 8, tzinfo=BERLIN))
    assert not is_open
    assert "closed all day (closure from closures/staff.ics on 2026-11-26)" in reasons
    assert not any(p in reasons for p in PERSONAL)


def test_the_calendar_listing_and_every_state_keep_the_titles_out(tmp_path: Path) -> None:
    rules, _ = load_rules(rules_with_personal_ics(tmp_path))
    cal = rules.calendars["servicecenter"]
    texts = [p.why for p in cal.periods(date(2026, 1, 1), date(2027, 12, 31))]
    texts += [i.label for cut, _ in cal.closed_hours.values() for i in cut]
    texts += [why for _, why in cal.closed_hours.values()]
    texts += list(cal.closed_dates.values())
    assert "closure from closures/staff.ics on 2026-06-12" in texts
    assert not any(p in t for t in texts for p in PERSONAL)
    # The YAML's own names stay: a holiday keeps its name.
    assert cal.state_on(date(2026, 12, 25))[1] == "holiday: Erster Weihnachtstag"
