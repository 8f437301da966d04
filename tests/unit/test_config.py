"""Tests for the rules loader: YAML → pydantic → compiled rules, and its error reports.

Every error test asserts the exact line, the key path and a meaningful part of
the message, because ``FILE:LINE: key.path: message`` is what an operator uses
to find and fix the problem.
"""

from __future__ import annotations

import contextlib
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbxbridge.config import ConfigError, Issue, load_rules, parse_rules
from pbxbridge.core.models import ClosedThen

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
NAME = "rules.yaml"

# A small, complete rules file under our control, so that line numbers and key
# paths in the expectations do not move when the shipped example is edited.
BASE = """\
version: 1
timezone: Europe/Berlin
region: DE
calendars:
  main:
    holidays: {country: DE, subdivision: NI}
    hours:
      mon-fri: ["07:00-18:00"]
    closed:
      - "2026-12-24"
    open: {}
  short:
    hours:
      mon-thu: ["07:00-12:30", "13:00-18:00"]
      fri: ["07:00-14:00"]
    closed: ["2026-12-24..2026-12-31"]
queues:
  sc: {context: pbxbridge-queue, queue: servicecenter}
  late: {queue: afterhours}
tenants:
  oldenburg:
    name: Stadt Oldenburg
    dids: ["+49 441 235-0"]
    calendar: main
    open: {queue: sc, priority: 5}
    closed: {then: voicemail, mailbox: "1000@oldenburg"}
    screen_pop: {url: "https://kb.example.org/?t={tenant}&c={caller}"}
  wardenburg:
    name: Gemeinde Wardenburg
    dids:
      - "+49 4407 73-0"
      - "+49 4407 73*"
    calendar: main
    open: {queue: sc}
    closed: {then: hangup}
  friesland:
    name: Landkreis Friesland
    dids: ["+49 4461 919-0"]
    calendar: short
    open: {queue: sc}
    closed: {then: queue, queue: late}
service_115:
  dids: ["115", "+49 441 115"]
  by_area_code:
    "+49 441": oldenburg
    "04407": wardenburg
  otherwise:
    menu:
      prompt: custom/115-choose
      options: {"1": oldenburg, "2": wardenburg}
      default: oldenburg
unknown_did: {tenant: oldenburg}
"""


def mutate(old: str, new: str, text: str = BASE) -> str:
    """``text`` with the one occurrence of ``old`` replaced by ``new``."""
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based line of the one line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def issues_of(text: str | bytes) -> tuple[Issue, ...]:
    with pytest.raises(ConfigError) as info:
        parse_rules(text, NAME)
    assert info.value.issues, "a ConfigError must carry at least one issue"
    return info.value.issues


def only_issue(text: str | bytes) -> Issue:
    issues = issues_of(text)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def assert_issue(issue: Issue, line: int, path: str, *fragments: str) -> None:
    assert issue.file == NAME
    assert (issue.line, issue.path) == (line, path), str(issue)
    for fragment in fragments:
        assert fragment in issue.message, f"{fragment!r} not in {issue.message!r}"


class TestValidFiles:
    def test_base_fixture_is_valid(self) -> None:
        rules, model = parse_rules(BASE, NAME)
        assert set(rules.tenants) == {"oldenburg", "wardenburg", "friesland"}
        assert model.version == 1

    def test_shipped_example_loads(self) -> None:
        rules, model = load_rules(EXAMPLE)
        assert len(rules.tenants) == 5
        assert set(model.tenants) == set(rules.tenants)
        assert rules.timezone.key == "Europe/Berlin"
        assert rules.region == "DE"
        assert rules.source == str(EXAMPLE)
        assert len(rules.digest) == 64

    def test_shipped_example_dids_compiled_to_e164(self) -> None:
        rules, _ = load_rules(EXAMPLE)
        assert rules.exact_dids["+494407730"] == ("wardenburg", "+49 4407 73-0")
        assert rules.exact_dids["+494412350"][0] == "oldenburg"
        assert rules.prefix_dids.longest("+4944077312") == (
            "+49440773",
            "wardenburg",
            "+49 4407 73*",
        )
        assert all(did.startswith("+49") for did in rules.exact_dids)
        assert rules.service_115 is not None
        assert rules.service_115.dids == frozenset({"+49115", "+49441115"})
        assert rules.service_115.by_area_code.longest("+494407123456") is not None

    def test_shipped_example_closed_handling_compiled(self) -> None:
        rules, _ = load_rules(EXAMPLE)
        tenants = rules.tenants
        assert tenants["oldenburg"].closed.then is ClosedThen.VOICEMAIL
        assert tenants["oldenburg"].closed.target == "1000@oldenburg"
        assert tenants["ganderkesee"].closed.then is ClosedThen.FORWARD
        assert tenants["ganderkesee"].closed.target == "+49422244999"
        assert tenants["friesland"].closed.queue is not None
        assert tenants["friesland"].closed.queue.queue == "afterhours"
        assert tenants["wardenburg"].open.callerid_prefix == "WAR"

    def test_bytes_and_str_give_the_same_rules(self) -> None:
        from_str, _ = parse_rules(BASE, NAME)
        from_bytes, _ = parse_rules(BASE.encode(), NAME)
        assert from_str.digest == from_bytes.digest
        assert from_str.exact_dids == from_bytes.exact_dids

    def test_unquoted_dates_are_accepted_as_strings(self) -> None:
        text = mutate('      - "2026-12-24"\n', "      - 2026-12-24\n")
        text = mutate(
            'closed: ["2026-12-24..2026-12-31"]', "closed: [2026-12-24..2026-12-31]", text
        )
        rules, model = parse_rules(text, NAME)
        assert model.calendars["main"].closed == ["2026-12-24"]
        assert model.calendars["short"].closed == ["2026-12-24..2026-12-31"]
        closed = rules.calendars["main"].closed_dates
        assert [d.isoformat() for d in closed] == ["2026-12-24"]

    def test_unquoted_special_opening_date_key_is_accepted(self) -> None:
        text = mutate("    open: {}\n", '    open: {2027-03-14: ["08:00-18:00"]}\n')
        rules, _ = parse_rules(text, NAME)
        assert [d.isoformat() for d in rules.calendars["main"].special_open] == ["2027-03-14"]

    def test_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "nope.yaml"
        with pytest.raises(ConfigError) as info:
            load_rules(path)
        (issue,) = info.value.issues
        assert (issue.file, issue.line, issue.path) == (str(path), 0, "")
        assert "cannot read" in issue.message


class TestIssueFormat:
    def test_str_with_path(self) -> None:
        issue = Issue("r.yaml", 12, "tenants.a.dids.0", "cannot parse number 'x'")
        assert str(issue) == "r.yaml:12: tenants.a.dids.0: cannot parse number 'x'"

    def test_str_without_path(self) -> None:
        assert str(Issue("r.yaml", 1, "", "the file is empty")) == "r.yaml:1: the file is empty"

    def test_config_error_sorts_issues_and_joins_them(self) -> None:
        err = ConfigError([Issue("f", 9, "b", "late"), Issue("f", 2, "a", "early")])
        assert [i.line for i in err.issues] == [2, 9]
        assert str(err) == "f:2: a: early\nf:9: b: late"


# (id, old, new, line needle in the new text, key path, message fragments)
SCHEMA_ERRORS = [
    (
        "unknown-key-typo",
        "sc: {context: pbxbridge-queue",
        "sc: {contxt: pbxbridge-queue",
        "contxt",
        "queues.sc.contxt",
        ("unknown key 'contxt'",),
    ),
    (
        "unknown-key-in-tenant",
        "    calendar: short\n",
        "    calendar: short\n    greting: Moin\n",
        "greting",
        "tenants.friesland.greting",
        ("unknown key 'greting'",),
    ),
    (
        "unquoted-time-is-sexagesimal",
        'fri: ["07:00-14:00"]',
        'fri: ["07:00-14:00", 17:30]',
        "  fri: [",
        "calendars.short.hours.fri.1",
        ("'17:30'", "1050", '"17:30"', "quoted"),
    ),
    (
        "unquoted-did-is-octal",
        'dids: ["+49 4461 919-0"]',
        "dids: [0440773]",
        "0440773",
        "tenants.friesland.dids.0",
        ("'0440773'", "number 147963", '"0440773"'),
    ),
    (
        "no-is-a-boolean",
        "subdivision: NI}",
        "subdivision: NO}",
        "subdivision: NO",
        "calendars.main.holidays.subdivision",
        ("'NO'", "boolean False", '"NO"'),
    ),
    (
        "yes-is-a-boolean",
        "    name: Landkreis Friesland\n",
        "    name: yes\n",
        "name: yes",
        "tenants.friesland.name",
        ("'yes'", "boolean True"),
    ),
    (
        "unquoted-menu-option-key",
        'options: {"1": oldenburg,',
        "options: {1: oldenburg,",
        "options:",
        "service_115.otherwise.menu.options.1",
        ("key '1'", "number 1", '"1"'),
    ),
    (
        "missing-required-key",
        "    calendar: short\n",
        "",
        # an issue about a whole block mapping points at its first line
        "name: Landkreis Friesland",
        "tenants.friesland.calendar",
        ("required key is missing",),
    ),
    (
        "quoted-number-where-int-expected",
        "priority: 5}",
        'priority: "5"}',
        "priority:",
        "tenants.oldenburg.open.priority",
        ("'5'", "remove the quotes"),
    ),
    (
        "list-where-string-expected",
        "    calendar: short\n",
        "    calendar: [short]\n",
        "calendar: [short]",
        "tenants.friesland.calendar",
        ("got a list",),
    ),
    (
        "closed-voicemail-without-mailbox",
        'closed: {then: voicemail, mailbox: "1000@oldenburg"}',
        "closed: {then: voicemail}",
        "then: voicemail",
        "tenants.oldenburg.closed",
        ("then: voicemail needs mailbox",),
    ),
    (
        "closed-mailbox-with-hangup",
        "closed: {then: hangup}",
        'closed: {then: hangup, mailbox: "1000"}',
        "then: hangup",
        "tenants.wardenburg.closed",
        ("mailbox is only used with then: voicemail",),
    ),
    (
        "otherwise-tenant-and-menu",
        "  otherwise:\n",
        "  otherwise:\n    tenant: oldenburg\n",
        "    tenant: oldenburg",
        "service_115.otherwise",
        ("exactly one of tenant or menu",),
    ),
    (
        "unknown-did-neither-tenant-nor-reject",
        "unknown_did: {tenant: oldenburg}",
        "unknown_did: {}",
        "unknown_did:",
        "unknown_did",
        ("exactly one of tenant or reject",),
    ),
]


class TestSchemaErrors:
    @pytest.mark.parametrize(
        ("old", "new", "needle", "path", "fragments"),
        [pytest.param(*case[1:], id=case[0]) for case in SCHEMA_ERRORS],
    )
    def test_reported_with_line_path_and_message(
        self, old: str, new: str, needle: str, path: str, fragments: tuple[str, ...]
    ) -> None:
        text = mutate(old, new)
        assert_issue(only_issue(text), line_of(text, needle), path, *fragments)

    def test_wrong_version(self) -> None:
        text = mutate("version: 1\n", "version: 2\n")
        assert_issue(only_issue(text), 1, "version", "1")


# (id, old, new, line needle, key path, message fragments)
REFERENCE_ERRORS = [
    (
        "tenant-calendar",
        "    calendar: short\n",
        "    calendar: shrot\n",
        "calendar: shrot",
        "tenants.friesland.calendar",
        ("unknown calendar 'shrot'", "known: main, short"),
    ),
    (
        "tenant-open-queue",
        "open: {queue: sc, priority: 5}",
        "open: {queue: cs, priority: 5}",
        "queue: cs",
        "tenants.oldenburg.open.queue",
        ("unknown queue 'cs'", "known: late, sc"),
    ),
    (
        "tenant-closed-queue",
        "closed: {then: queue, queue: late}",
        "closed: {then: queue, queue: later}",
        "queue: later",
        "tenants.friesland.closed.queue",
        ("unknown queue 'later'",),
    ),
    (
        "by-area-code",
        '"04407": wardenburg',
        '"04407": wardenbrug',
        "wardenbrug",
        "service_115.by_area_code.04407",
        ("unknown tenant 'wardenbrug'", "known: friesland, oldenburg, wardenburg"),
    ),
    (
        "menu-option",
        '"2": wardenburg}',
        '"2": wardenbrug}',
        "wardenbrug",
        "service_115.otherwise.menu.options.2",
        ("unknown tenant 'wardenbrug'",),
    ),
    (
        "menu-default",
        "      default: oldenburg\n",
        "      default: oldenbrug\n",
        "default: oldenbrug",
        "service_115.otherwise.menu.default",
        ("unknown tenant 'oldenbrug'",),
    ),
    (
        "otherwise-tenant",
        "    menu:\n      prompt: custom/115-choose\n"
        '      options: {"1": oldenburg, "2": wardenburg}\n      default: oldenburg\n',
        "    tenant: oldenbrug\n",
        "tenant: oldenbrug",
        "service_115.otherwise.tenant",
        ("unknown tenant 'oldenbrug'",),
    ),
    (
        "unknown-did-tenant",
        "unknown_did: {tenant: oldenburg}",
        "unknown_did: {tenant: oldenbrug}",
        "unknown_did:",
        "unknown_did.tenant",
        ("unknown tenant 'oldenbrug'",),
    ),
]


class TestReferenceErrors:
    @pytest.mark.parametrize(
        ("old", "new", "needle", "path", "fragments"),
        [pytest.param(*case[1:], id=case[0]) for case in REFERENCE_ERRORS],
    )
    def test_unknown_reference(
        self, old: str, new: str, needle: str, path: str, fragments: tuple[str, ...]
    ) -> None:
        text = mutate(old, new)
        assert_issue(only_issue(text), line_of(text, needle), path, *fragments)

    def test_reference_to_an_invalid_entry_is_not_reported_twice(self) -> None:
        # The calendar exists but is broken: only its own error is reported,
        # not "unknown calendar" for the tenants that use it.
        text = mutate('      fri: ["07:00-14:00"]\n', '      fri: ["07:00-14:00"]\n    x: 1\n')
        assert_issue(only_issue(text), line_of(text, "x: 1"), "calendars.short.x", "unknown key")

    def test_menu_option_key_must_be_a_single_key(self) -> None:
        text = mutate('options: {"1": oldenburg,', 'options: {"12": oldenburg,')
        assert_issue(
            only_issue(text),
            line_of(text, "options:"),
            "service_115.otherwise.menu.options.12",
            "'12' is not a single key 0-9*#",
        )


def with_invalid_tenant_key() -> str:
    return BASE.replace("wardenburg:", "Wardenburg!:").replace(": wardenburg", ": Wardenburg!")


def with_invalid_calendar_key() -> str:
    return mutate("calendar: short", "calendar: Short", mutate("  short:\n", "  Short:\n"))


class TestKeys:
    def test_invalid_tenant_key(self) -> None:
        issue = only_issue(with_invalid_tenant_key())
        assert issue.path == "tenants.Wardenburg!"
        assert "invalid key 'Wardenburg!'" in issue.message
        assert "lowercase letters" in issue.message

    def test_invalid_calendar_key(self) -> None:
        issue = only_issue(with_invalid_calendar_key())
        assert issue.path == "calendars.Short"
        assert "invalid key 'Short'" in issue.message

    def test_invalid_queue_key_with_flow_value(self) -> None:
        text = mutate("queue: late}", "queue: 1late}", mutate("  late: {queue", "  1late: {queue"))
        assert_issue(only_issue(text), line_of(text, "1late: {"), "queues.1late", "invalid key")

    @pytest.mark.parametrize("key", ["a" * 33, "-x", "x.y", "ümlaut"])
    def test_other_invalid_tenant_keys(self, key: str) -> None:
        text = BASE.replace("wardenburg:", f"{key}:").replace(": wardenburg", f": {key}")
        assert only_issue(text).path == f"tenants.{key}"

    @pytest.mark.parametrize("key", ["a", "a" * 32, "stadt-oldenburg", "lk_friesland2"])
    def test_valid_tenant_keys(self, key: str) -> None:
        text = BASE.replace("wardenburg:", f"{key}:").replace(": wardenburg", f": {key}")
        rules, _ = parse_rules(text, NAME)
        assert key in rules.tenants


class TestKeyLines:
    """An issue about a key must point at the key's line, also for block values."""

    @pytest.mark.parametrize(
        ("text", "needle", "path"),
        [
            pytest.param(
                with_invalid_tenant_key(), "Wardenburg!:", "tenants.Wardenburg!", id="tenant-key"
            ),
            pytest.param(
                with_invalid_calendar_key(), "  Short:", "calendars.Short", id="calendar-key"
            ),
            pytest.param(
                mutate(
                    '      mon-fri: ["07:00-18:00"]\n', '      mo-fr:\n        - "07:00-18:00"\n'
                ),
                "mo-fr:",
                "calendars.main.hours.mo-fr",
                id="day-spec-key",
            ),
            pytest.param(
                mutate(
                    "    open: {}\n", '    open:\n      "2026-12-24":\n        - "08:00-12:00"\n'
                ),
                '"2026-12-24":',
                "calendars.main.open.2026-12-24",
                id="special-opening-date-key",
            ),
        ],
    )
    def test_issue_about_a_key_points_at_the_key_line(
        self, text: str, needle: str, path: str
    ) -> None:
        issue = only_issue(text)
        assert (issue.line, issue.path) == (line_of(text, needle), path)

    def test_issue_about_a_key_with_flow_value_points_at_the_key_line(self) -> None:
        text = mutate("    open: {}\n", '    open: {"2026-12-24": ["08:00-12:00"]}\n')
        issue = only_issue(text)
        assert (issue.line, issue.path) == (
            line_of(text, '"2026-12-24": ['),
            "calendars.main.open.2026-12-24",
        )


# (id, old, new, line needle, key path, message fragments)
NUMBER_ERRORS = [
    (
        "unparsable-did",
        'dids: ["+49 4461 919-0"]',
        'dids: ["abc"]',
        '"abc"',
        "tenants.friesland.dids.0",
        ("cannot parse number 'abc'",),
    ),
    (
        "unparsable-did-block",
        '      - "+49 4407 73*"\n',
        '      - "x*"\n',
        '"x*"',
        "tenants.wardenburg.dids.1",
        ("cannot parse number block 'x*'",),
    ),
    (
        "unparsable-area-code",
        '"04407": wardenburg',
        '"abc": wardenburg',
        '"abc"',
        "service_115.by_area_code.abc",
        ("cannot parse area code 'abc'",),
    ),
    (
        "area-code-listed-twice",
        '"04407": wardenburg',
        '"04407": wardenburg\n    "+49 4407": wardenburg',
        '"+49 4407"',
        "service_115.by_area_code.+49 4407",
        ("area code +494407 is listed twice",),
    ),
    (
        "unparsable-forward-number",
        "closed: {then: hangup}",
        'closed: {then: forward, number: "nope"}',
        "then: forward",
        "tenants.wardenburg.closed.number",
        ("cannot parse number 'nope'",),
    ),
    (
        "did-claimed-by-two-tenants",
        'dids: ["+49 4461 919-0"]',
        'dids: ["04407 73-0"]',
        '"04407 73-0"',
        "tenants.friesland.dids.0",
        ("+494407730", "tenant wardenburg", "tenants.wardenburg.dids.0"),
    ),
    (
        "did-block-claimed-by-two-tenants",
        'dids: ["+49 4461 919-0"]',
        'dids: ["04407 73*"]',
        '"04407 73*"',
        "tenants.friesland.dids.0",
        ("+49440773", "tenant wardenburg", "tenants.wardenburg.dids.1"),
    ),
    (
        "did-of-tenant-and-115",
        'dids: ["+49 4461 919-0"]',
        'dids: ["0441 115"]',
        'dids: ["115", "+49 441 115"]',  # the 115 number's line, found second
        "service_115.dids.1",
        ("+49441115", "tenant friesland", "tenants.friesland.dids.0"),
    ),
]


class TestNumberErrors:
    @pytest.mark.parametrize(
        ("old", "new", "needle", "path", "fragments"),
        [pytest.param(*case[1:], id=case[0]) for case in NUMBER_ERRORS],
    )
    def test_reported(
        self, old: str, new: str, needle: str, path: str, fragments: tuple[str, ...]
    ) -> None:
        text = mutate(old, new)
        assert_issue(only_issue(text), line_of(text, needle), path, *fragments)

    def test_same_did_twice_in_one_tenant(self) -> None:
        text = mutate('      - "+49 4407 73*"\n', '      - "+49 4407 730"\n')
        assert_issue(
            only_issue(text),
            line_of(text, '"+49 4407 730"'),
            "tenants.wardenburg.dids.1",
            "tenant wardenburg (tenants.wardenburg.dids.0)",
        )

    def test_unknown_region(self) -> None:
        text = mutate("region: DE\n", "region: XX\n")
        assert_issue(only_issue(text), 3, "region", "unknown region 'XX'")


# (id, old, new, line needle, key path, message fragments)
CALENDAR_ERRORS = [
    (
        "overlap-in-one-list",
        '"07:00-12:30", "13:00-18:00"',
        '"07:00-12:30", "12:00-18:00"',
        "mon-thu:",
        "calendars.short.hours.mon-thu.1",
        ("12:00-18:00 overlaps mon-thu 07:00-12:30 on mon",),
    ),
    (
        "overlap-across-day-specs",
        '      mon-fri: ["07:00-18:00"]\n',
        '      mon-fri: ["07:00-18:00"]\n      fri: ["17:00-19:00"]\n',
        '"17:00-19:00"',
        "calendars.main.hours.fri.0",
        ("17:00-19:00 overlaps mon-fri 07:00-18:00 on fri",),
    ),
    (
        "end-before-start",
        'fri: ["07:00-14:00"]',
        'fri: ["14:00-07:00"]',
        "  fri: [",
        "calendars.short.hours.fri.0",
        ("'14:00-07:00'", "end must be after the start"),
    ),
    (
        "empty-interval",
        'fri: ["07:00-14:00"]',
        'fri: ["07:00-07:00"]',
        "  fri: [",
        "calendars.short.hours.fri.0",
        ("end must be after the start",),
    ),
    (
        "time-after-24",
        'fri: ["07:00-14:00"]',
        'fri: ["07:00-24:30"]',
        "  fri: [",
        "calendars.short.hours.fri.0",
        ("'24:30'", "24:00 is the latest time"),
    ),
    (
        "time-malformed",
        'fri: ["07:00-14:00"]',
        'fri: ["7-14"]',
        "  fri: [",
        "calendars.short.hours.fri.0",
        ("invalid time '7'", "HH:MM"),
    ),
    (
        "interval-malformed",
        'fri: ["07:00-14:00"]',
        'fri: ["07:00"]',
        "  fri: [",
        "calendars.short.hours.fri.0",
        ("invalid interval '07:00'", "HH:MM-HH:MM"),
    ),
    (
        "bad-day-names",
        'mon-fri: ["07:00-18:00"]',
        'mo-fr: ["07:00-18:00"]',
        "mo-fr:",
        "calendars.main.hours.mo-fr",
        ("invalid days 'mo-fr'", "unknown day 'mo'"),
    ),
    (
        "reversed-day-range",
        'mon-fri: ["07:00-18:00"]',
        'fri-mon: ["07:00-18:00"]',
        "fri-mon:",
        "calendars.main.hours.fri-mon",
        ("invalid days 'fri-mon'", "runs backwards"),
    ),
    (
        "bad-closed-date",
        '      - "2026-12-24"\n',
        '      - "2026-13-24"\n',
        '"2026-13-24"',
        "calendars.main.closed.0",
        ("invalid date '2026-13-24'", "YYYY-MM-DD"),
    ),
    (
        "reversed-closed-range",
        'closed: ["2026-12-24..2026-12-31"]',
        'closed: ["2026-12-31..2026-12-24"]',
        "2026-12-31..2026-12-24",
        "calendars.short.closed.0",
        ("'2026-12-31..2026-12-24'", "end is before the start"),
    ),
    (
        "closed-range-longer-than-a-year",
        'closed: ["2026-12-24..2026-12-31"]',
        'closed: ["2026-01-01..2027-12-31"]',
        "2026-01-01..2027-12-31",
        "calendars.short.closed.0",
        ("longer than a year",),
    ),
    (
        "date-both-closed-and-open",
        "    open: {}\n",
        '    open: {"2026-12-24": ["08:00-12:00"]}\n',
        '"2026-12-24": [',
        "calendars.main.open.2026-12-24",
        ("2026-12-24 is also listed under closed",),
    ),
    (
        "bad-special-opening-date",
        "    open: {}\n",
        '    open: {"2026-02-30": ["08:00-12:00"]}\n',
        '"2026-02-30"',
        "calendars.main.open.2026-02-30",
        ("invalid date '2026-02-30'",),
    ),
    (
        "overlap-in-special-opening",
        "    open: {}\n",
        '    open: {"2027-03-14": ["08:00-12:00", "11:00-13:00"]}\n',
        '"2027-03-14"',
        "calendars.main.open.2027-03-14.1",
        ("11:00-13:00 overlaps 08:00-12:00",),
    ),
    (
        "yearly-closed-no-such-day",
        '      - "2026-12-24"\n',
        '      - "02-30"\n',
        '"02-30"',
        "calendars.main.closed.0",
        ("invalid yearly date '02-30'", "no such day"),
    ),
    (
        "yearly-closed-month-13",
        'closed: ["2026-12-24..2026-12-31"]',
        'closed: ["12-24..13-01"]',
        "12-24..13-01",
        "calendars.short.closed.0",
        ("invalid yearly date '13-01'",),
    ),
    (
        "yearly-range-mixed-with-a-date",
        'closed: ["2026-12-24..2026-12-31"]',
        'closed: ["12-24..2026-12-31"]',
        "12-24..2026-12-31",
        "calendars.short.closed.0",
        ("invalid yearly range '12-24..2026-12-31'", "both ends must be MM-DD"),
    ),
    (
        "yearly-single-digit-month",
        '      - "2026-12-24"\n',
        '      - "1-06"\n',
        '"1-06"',
        "calendars.main.closed.0",
        ("invalid date '1-06'",),
    ),
    (
        "yearly-both-closed-and-open",
        '      - "2026-12-24"\n    open: {}\n',
        '      - "12-24"\n    open: {"12-20..12-26": ["08:00-12:00"]}\n',
        '"12-20..12-26": [',
        "calendars.main.open.12-20..12-26",
        ("12-24 is also closed every year", "pick one"),
    ),
    (
        "yearly-special-opening-bad-interval",
        "    open: {}\n",
        '    open: {"03-08": ["08:00-07:00"]}\n',
        '"03-08"',
        "calendars.main.open.03-08.0",
        ("invalid interval '08:00-07:00'",),
    ),
    (
        "invalid-timezone",
        "timezone: Europe/Berlin\n",
        "timezone: Europe/Oldenburg\n",
        "timezone:",
        "timezone",
        ("unknown time zone 'Europe/Oldenburg'",),
    ),
    (
        "timezone-path-traversal",
        "timezone: Europe/Berlin\n",
        "timezone: ../../etc/passwd\n",
        "timezone:",
        "timezone",
        ("unknown time zone",),
    ),
    (
        "invalid-holiday-country",
        "holidays: {country: DE, subdivision: NI}",
        "holidays: {country: XX, subdivision: NI}",
        "country: XX",
        "calendars.main.holidays.country",
        ("no holiday data for country 'XX'",),
    ),
    (
        "invalid-holiday-subdivision",
        "holidays: {country: DE, subdivision: NI}",
        "holidays: {country: DE, subdivision: ZZ}",
        "subdivision: ZZ",
        "calendars.main.holidays.subdivision",
        ("unknown subdivision 'ZZ' of DE", "NI"),
    ),
]


class TestCalendarErrors:
    @pytest.mark.parametrize(
        ("old", "new", "needle", "path", "fragments"),
        [pytest.param(*case[1:], id=case[0]) for case in CALENDAR_ERRORS],
    )
    def test_reported(
        self, old: str, new: str, needle: str, path: str, fragments: tuple[str, ...]
    ) -> None:
        text = mutate(old, new)
        assert_issue(only_issue(text), line_of(text, needle), path, *fragments)

    def test_touching_intervals_do_not_overlap(self) -> None:
        text = mutate('"07:00-12:30", "13:00-18:00"', '"07:00-12:30", "12:30-18:00", "18:00-24:00"')
        rules, _ = parse_rules(text, NAME)
        monday = rules.calendars["short"].weekly[0]
        assert [(i.start, i.end) for i in monday] == [
            (7 * 3600, 12 * 3600 + 1800),
            (12 * 3600 + 1800, 18 * 3600),
            (18 * 3600, 24 * 3600),
        ]

    def test_lowercase_holiday_codes_are_accepted(self) -> None:
        text = mutate(
            "holidays: {country: DE, subdivision: NI}", "holidays: {country: de, subdivision: ni}"
        )
        rules, _ = parse_rules(text, NAME)
        assert rules.calendars["main"].holiday_country == "DE"
        assert rules.calendars["main"].holiday_subdivision == "NI"


# (id, old, new, line needle, key path, message fragments)
SCREEN_POP_ERRORS = [
    (
        "unknown-placeholder",
        "?t={tenant}&c={caller}",
        "?t={tenant}&c={phone}",
        "screen_pop",
        "tenants.oldenburg.screen_pop.url",
        ("unknown placeholder {phone}", "{caller}"),
    ),
    (
        "format-spec-in-placeholder",
        "?t={tenant}&c={caller}",
        "?t={tenant:>10}",
        "screen_pop",
        "tenants.oldenburg.screen_pop.url",
        ("placeholder {tenant}",),
    ),
    (
        "attribute-access-in-placeholder",
        "?t={tenant}&c={caller}",
        "?t={caller.__class__}",
        "screen_pop",
        "tenants.oldenburg.screen_pop.url",
        ("unknown placeholder",),
    ),
    (
        "non-http-url",
        'url: "https://kb.example.org/?t={tenant}&c={caller}"',
        'url: "ftp://kb.example.org/{caller}"',
        "screen_pop",
        "tenants.oldenburg.screen_pop.url",
        ("must start with https://",),
    ),
    (
        "javascript-url",
        'url: "https://kb.example.org/?t={tenant}&c={caller}"',
        'url: "javascript:alert({caller})"',
        "screen_pop",
        "tenants.oldenburg.screen_pop.url",
        ("must start with https://",),
    ),
]


class TestScreenPopErrors:
    @pytest.mark.parametrize(
        ("old", "new", "needle", "path", "fragments"),
        [pytest.param(*case[1:], id=case[0]) for case in SCREEN_POP_ERRORS],
    )
    def test_reported(
        self, old: str, new: str, needle: str, path: str, fragments: tuple[str, ...]
    ) -> None:
        text = mutate(old, new)
        assert_issue(only_issue(text), line_of(text, needle), path, *fragments)


class TestYamlStructure:
    def test_duplicate_top_level_key(self) -> None:
        text = BASE + "region: AT\n"
        assert_issue(
            only_issue(text),
            len(text.splitlines()),
            "",
            "duplicate key 'region'",
            "first at line 3",
        )

    def test_duplicate_tenant(self) -> None:
        second = "  oldenburg:\n    name: Zweimal\n    calendar: main\n    open: {queue: sc}\n"
        text = mutate("service_115:\n", second + "service_115:\n")
        first = line_of(BASE, "  oldenburg:")
        assert_issue(
            only_issue(text),
            line_of(text, "name: Zweimal") - 1,
            "",
            "duplicate key 'oldenburg'",
            f"first at line {first}",
        )

    def test_duplicate_key_is_reported_together_with_other_errors(self) -> None:
        text = mutate("timezone: Europe/Berlin\n", "timezone: Mars/Base\n") + "region: DE\n"
        issues = issues_of(text)
        assert [(i.line, i.path) for i in issues] == [
            (2, "timezone"),
            (len(text.splitlines()), ""),
        ]

    @pytest.mark.parametrize(
        ("text", "line"),
        [
            pytest.param(
                mutate("  late: {queue: afterhours}", "  late: queue: afterhours"),
                line_of(BASE, "late: {queue"),
                id="nested-mapping-value",
            ),
            pytest.param(
                mutate('      - "+49 4407 73*"\n', '      - "+49 4407 73*"\n     - "x"\n'),
                line_of(BASE, '"+49 4407 73*"') + 1,
                id="list-item-indent",
            ),
            pytest.param("version: 1\ntimezone: x\n  region: DE\n", 3, id="bad-indent"),
            pytest.param("a: 1\n\tb: 2\n", 2, id="tab"),
        ],
    )
    def test_syntax_error_has_line(self, text: str, line: int) -> None:
        issue = only_issue(text)
        assert (issue.line, issue.path) == (line, "")
        assert issue.message.startswith("YAML syntax:")

    @pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "~\n", "---\n"])
    def test_empty_file(self, text: str) -> None:
        issue = only_issue(text)
        assert (issue.line, issue.path, issue.message) == (1, "", "the file is empty")

    @pytest.mark.parametrize(
        ("text", "line"),
        [("- a\n- b\n", 1), ("\n\njust text\n", 3), ("42\n", 1)],
    )
    def test_not_a_mapping(self, text: str, line: int) -> None:
        issue = only_issue(text)
        assert (issue.line, issue.path, issue.message) == (line, "", "expected a mapping")

    def test_invalid_utf8(self) -> None:
        raw = BASE.encode().replace(b"Stadt Oldenburg", b"Stadt \xd6ldenburg")
        issue = only_issue(raw)
        assert (issue.line, issue.path) == (line_of(BASE, "Stadt Oldenburg"), "")
        assert "UTF-8" in issue.message

    def test_utf16_is_not_utf8(self) -> None:
        issue = only_issue(BASE.encode("utf-16"))
        assert "not valid UTF-8" in issue.message

    def test_utf8_with_bom_is_accepted(self) -> None:
        rules, _ = parse_rules(b"\xef\xbb\xbf" + BASE.encode(), NAME)
        assert len(rules.tenants) == 3

    def test_umlauts_are_fine(self) -> None:
        text = mutate("name: Stadt Oldenburg", "name: Stadt Oldenbürg (Öffnungszeiten)")
        rules, _ = parse_rules(text.encode(), NAME)
        assert rules.tenants["oldenburg"].name == "Stadt Oldenbürg (Öffnungszeiten)"

    def test_billion_laughs_is_rejected_quickly(self) -> None:
        lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        for i in range(1, 10):
            refs = ", ".join([f"*a{i - 1}"] * 9)
            lines.append(f"a{i}: &a{i} [{refs}]")
        text = "\n".join(lines) + "\n"
        started = time.perf_counter()
        issue = only_issue(text)
        assert time.perf_counter() - started < 2.0
        assert issue.message == "document too large after expanding aliases"

    def test_alias_bomb_inside_real_rules_is_rejected_quickly(self) -> None:
        bomb = 'x0: &x0 ["07:00-08:00", "07:00-08:00", "07:00-08:00", "07:00-08:00"]\n'
        for i in range(1, 12):
            bomb += f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 4) + "]\n"
        text = bomb + mutate('mon-fri: ["07:00-18:00"]', "mon-fri: *x11")
        started = time.perf_counter()
        issues = issues_of(text)
        assert time.perf_counter() - started < 2.0
        assert [i.message for i in issues] == ["document too large after expanding aliases"]

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("a: &a [*a]\n", id="list"),
            pytest.param("a: &a {b: *a}\n", id="mapping"),
            pytest.param(BASE + "x: &x\n  - y: *x\n", id="in-rules"),
        ],
    )
    def test_recursive_alias(self, text: str) -> None:
        issue = only_issue(text)
        assert issue.path == ""
        assert "recursive alias" in issue.message

    def test_aliases_and_merge_keys_are_allowed(self) -> None:
        text = mutate(
            "    open: {queue: sc}\n    closed: {then: queue, queue: late}\n",
            "    <<: &common {open: {queue: sc}, closed: {then: queue, queue: late}}\n",
        )
        rules, _ = parse_rules(text, NAME)
        assert rules.tenants["friesland"].closed.target == "afterhours"

    def test_error_in_merged_value_points_at_the_anchor(self) -> None:
        text = "defaults: &d {queue: sc, priority: 500}\n" + BASE
        text = mutate("open: {queue: sc, priority: 5}", "open: {<<: *d}", text)
        issues = issues_of(text)
        by_path = {i.path: i for i in issues}
        issue = by_path["tenants.oldenburg.open.priority"]
        assert issue.line == line_of(text, "defaults:")
        assert "100" in issue.message

    def test_nesting_too_deep(self) -> None:
        text = "tenants: " + "[" * 3000 + "]" * 3000 + "\n"
        issue = only_issue(text)
        assert issue.line == 1

    def test_non_string_top_level_key(self) -> None:
        issues = issues_of("1: x\n")
        assert all(i.line == 1 for i in issues)
        assert {i.path for i in issues} >= {"calendars", "queues", "tenants", "timezone"}

    def test_unhashable_key(self) -> None:
        issue = only_issue("? [a, b]\n: c\n")
        assert issue.line == 1
        assert "unhashable" in issue.message

    def test_python_tags_are_refused(self) -> None:
        issue = only_issue("timezone: !!python/object/apply:os.system ['true']\n")
        assert issue.line == 1
        assert "YAML syntax" in issue.message


class TestAllErrorsAtOnce:
    def test_independent_errors_are_all_reported_sorted_by_line(self) -> None:
        text = BASE
        text = mutate("timezone: Europe/Berlin\n", "timezone: Europe/Nowhere\n", text)
        text = mutate('"07:00-12:30", "13:00-18:00"', '"07:00-12:30", "12:00-18:00"', text)
        text = mutate("sc: {context: pbxbridge-queue", "sc: {contxt: pbxbridge-queue", text)
        text = mutate(
            "    calendar: main\n    open: {queue: sc}\n",
            "    calendar: mian\n    open: {queue: sc}\n",
            text,
        )
        text = mutate('dids: ["+49 4461 919-0"]', 'dids: ["abc"]', text)
        text = mutate('"2": wardenburg}', '"2": nobody}', text)
        text = mutate("unknown_did: {tenant: oldenburg}", "unknown_did: {tenant: ghost}", text)
        text += "region: DE\n"
        issues = issues_of(text)
        got = [(i.line, i.path) for i in issues]
        assert got == [
            (2, "timezone"),
            (line_of(text, "12:00-18:00"), "calendars.short.hours.mon-thu.1"),
            (line_of(text, "contxt"), "queues.sc.contxt"),
            (line_of(text, "calendar: mian"), "tenants.wardenburg.calendar"),
            (line_of(text, '"abc"'), "tenants.friesland.dids.0"),
            (line_of(text, '"2": nobody'), "service_115.otherwise.menu.options.2"),
            (line_of(text, "tenant: ghost"), "unknown_did.tenant"),
            (len(text.splitlines()), ""),
        ]
        assert got == sorted(got)
        assert all(i.file == NAME for i in issues)

    def test_invalid_entry_does_not_hide_the_others(self) -> None:
        # One tenant fails the schema, another has a bad number: both reported.
        text = mutate(
            "    open: {queue: sc}\n    closed: {then: hangup}\n",
            "    open: {queue: sc}\n    closed: {then: maybe}\n",
        )
        text = mutate('dids: ["+49 4461 919-0"]', 'dids: ["abc"]', text)
        paths = [i.path for i in issues_of(text)]
        assert paths == ["tenants.wardenburg.closed.then", "tenants.friesland.dids.0"]

    def test_references_to_an_invalid_tenant_are_not_reported(self) -> None:
        text = mutate(
            "    name: Gemeinde Wardenburg\n", "    name: Gemeinde Wardenburg\n    x: 1\n"
        )
        paths = [i.path for i in issues_of(text)]
        assert paths == ["tenants.wardenburg.x"]


# --- hostile input ---------------------------------------------------------------

EXAMPLE_LINES = EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)

YAML_TOKENS = [
    "\n",
    "  ",
    "    ",
    "- ",
    ": ",
    ":",
    ",",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    '"',
    "'",
    "#",
    "? ",
    "|",
    ">",
    "---\n",
    "...\n",
    "!!str ",
    "%YAML 1.1\n",
    "tenants",
    "calendars",
    "queues",
    "hours",
    "mon-fri",
    "dids",
    "timezone",
    "Europe/Berlin",
    "unknown_did",
    "service_115",
    "otherwise",
    "menu",
    "options",
    "17:30",
    "07:00-18:00",
    "0440773",
    "no",
    "yes",
    "~",
    "null",
    "1",
    "-1",
    "1.5",
    ".inf",
    "2026-12-24",
    "x",
    "\t",
    "\u00e4",
    "\x85",
    "\ufeff",
]


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    lines = list(EXAMPLE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=20)) + "\n")
        else:
            line = lines[i]
            if len(line) >= 2:
                j = draw(st.integers(0, len(line) - 2))
                lines[i] = line[:j] + line[j + 1] + line[j] + line[j + 2 :]
        if not lines:
            break
    return "".join(lines)


HOSTILE = settings(
    max_examples=200,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
)


def parse_or_config_error(raw: str | bytes) -> None:
    try:
        rules, _ = parse_rules(raw, NAME)
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.file == NAME
            assert issue.line >= 0
            assert str(issue).startswith(f"{NAME}:{issue.line}: ")
    else:
        assert rules.tenants


class TestHostileInput:
    @HOSTILE
    @given(st.text(max_size=400))
    def test_random_text(self, text: str) -> None:
        parse_or_config_error(text)

    @HOSTILE
    @given(st.binary(max_size=400))
    def test_random_bytes(self, raw: bytes) -> None:
        parse_or_config_error(raw)

    @HOSTILE
    @given(st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join))
    def test_random_yaml_tokens(self, text: str) -> None:
        parse_or_config_error(text)

    @HOSTILE
    @given(mutated_example())
    def test_mutated_example(self, text: str) -> None:
        parse_or_config_error(text)
        parse_or_config_error(text.encode())

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("version: !!int abc\n", id="int-tag"),
            pytest.param("version: !!float abc\n", id="float-tag"),
            pytest.param("version: !!bool maybe\n", id="bool-tag"),
            pytest.param("timezone: !!timestamp garbage\n", id="timestamp-tag"),
            pytest.param("version: " + "1" * 5000 + "\n", id="int-over-4300-digits"),
        ],
    )
    def test_scalar_construction_failure_is_a_config_error(self, text: str) -> None:
        issue = only_issue(text)
        assert issue.line == 1
        assert issue.message.startswith("cannot read the value")

    def test_lone_surrogate_in_str_is_a_config_error(self) -> None:
        issue = only_issue("version: 1\ntimezone: \ud800\n")
        assert issue.line in (0, 2)

    def test_repeated_closed_ranges_compile_quickly(self) -> None:
        year = '&r "2026-01-01..2026-12-31", ' + ", ".join(["*r"] * 20_000)
        text = mutate('closed: ["2026-12-24..2026-12-31"]', f"closed: [{year}]")
        started = time.perf_counter()
        with contextlib.suppress(ConfigError):
            parse_rules(text, NAME)
        assert time.perf_counter() - started < 1.0


ICS_DATA = Path(__file__).resolve().parents[1] / "data" / "ics"


class TestIcsReference:
    def rules_text(self, ics: str) -> str:
        return mutate("  main:\n", f"  main:\n    ics: {ics}\n").replace(
            "    open: {}\n", '    open: {"2026-06-12": ["09:00-12:00"]}\n'
        )

    def test_closures_from_the_file(self) -> None:
        rules, model = parse_rules(
            self.rules_text("outlook-schliesstage.ics"),
            NAME,
            base_dir=ICS_DATA,
            today=date(2026, 5, 1),
        )
        assert model.calendars["main"].ics == "outlook-schliesstage.ics"
        cal = rules.calendars["main"]
        assert cal.state_on(date(2026, 12, 28))[1] == "mon"
        # Sunday 27 December: the weekend is closed anyway; in 2027 a Monday
        assert cal.state_on(date(2027, 12, 27)) == (
            (),
            "closure from outlook-schliesstage.ics on 2027-12-27",
            "",
        )
        # a dated special opening in the YAML wins over the file's closure
        assert cal.state_on(date(2026, 6, 12))[1] == "special opening 2026-06-12"
        intervals, _, _ = cal.state_on(date(2026, 11, 25))
        assert [i.text for i in intervals] == ["07:00-12:00"]

    def test_window_is_relative_to_the_load_date(self) -> None:
        text = self.rules_text("outlook-schliesstage.ics")
        rules, _ = parse_rules(text, NAME, base_dir=ICS_DATA, today=date(2026, 5, 1))
        assert date(2031, 12, 27) in rules.calendars["main"].closed_dates  # 2026 + 5
        assert date(2032, 12, 27) not in rules.calendars["main"].closed_dates

    def test_missing_file_points_at_the_key(self) -> None:
        text = self.rules_text("nope.ics")
        issue = only_issue(text)
        assert_issue(issue, line_of(text, "ics: nope.ics"), "calendars.main.ics", "cannot read")

    def test_broken_file_names_its_line_and_the_rules_line(self) -> None:
        text = self.rules_text("invalid-dtstart.ics")
        with pytest.raises(ConfigError) as info:
            parse_rules(text, NAME, base_dir=ICS_DATA)
        (issue,) = info.value.issues
        assert (issue.file, issue.line, issue.path) == (
            str(ICS_DATA / "invalid-dtstart.ics"),
            13,
            "calendars.main.ics",
        )
        assert f"(named at {NAME}:{line_of(text, 'ics: invalid')})" in issue.message
