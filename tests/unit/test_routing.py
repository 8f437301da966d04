"""Table-driven tests of the pure routing core: route(call, rules, at, overrides)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbxbridge.config import parse_rules
from pbxbridge.core import (
    ALL_TENANTS,
    Action,
    Call,
    ClosedThen,
    Decision,
    Override,
    OverrideState,
    Rules,
    route,
)

BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
WARDENBURG = "04407 73-0"
OLDENBURG_CALLER = "0441 1234567"


def at(text: str) -> datetime:
    """A local Berlin wall-clock time (naive ISO) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return parse_rules(EXAMPLE.read_bytes(), str(EXAMPLE))[0]


RULES_WITH_REJECT = """
timezone: Europe/Berlin
calendars:
  cal:
    hours: {mon-fri: ["07:00-12:00", "13:00-18:00"], sat: ["09:00-12:00"]}
    closed: ["2026-12-24"]
    open: {"2026-03-08": ["08:00-18:00"], "2026-12-25": ["10:00-11:00"]}
    holidays: {country: DE, subdivision: NI}
queues:
  sc: {queue: servicecenter}
tenants:
  a:
    name: Gemeinde A
    dids: ["+49 4407 73-0", "+49 4407 73*", "+49 4407 7*"]
    calendar: cal
    open: {queue: sc, priority: 7, callerid_prefix: "A"}
    closed: {then: queue, queue: sc}
  b:
    name: Gemeinde B
    dids: ["+49 4407 735*"]
    calendar: cal
    open: {queue: sc}
service_115:
  dids: ["115"]
  by_area_code: {"+49 4407": a}
  otherwise: {tenant: b}
unknown_did: {reject: {announce: custom/unknown}}
"""


@pytest.fixture(scope="module")
def rules_reject() -> Rules:
    return parse_rules(RULES_WITH_REJECT, "inline.yaml")[0]


def decide(
    rules: Rules, did: str, when: datetime, caller: str = OLDENBURG_CALLER, **kw: object
) -> Decision:
    overrides = kw.pop("overrides", ())
    return route(Call(did=did, caller=caller, **kw), rules, when, overrides)  # type: ignore[arg-type]


class TestOpeningBoundaries:
    @pytest.mark.parametrize(
        ("local", "action"),
        [
            ("2026-11-25T06:59:59", Action.CLOSED),
            ("2026-11-25T07:00:00", Action.QUEUE),
            ("2026-11-25T12:00:00", Action.QUEUE),
            ("2026-11-25T17:59:59", Action.QUEUE),
            ("2026-11-25T18:00:00", Action.CLOSED),
            ("2026-11-25T23:59:59", Action.CLOSED),
            ("2026-11-28T10:00:00", Action.CLOSED),  # Saturday
            ("2026-11-29T10:00:00", Action.CLOSED),  # Sunday
            ("2026-11-30T07:00:00", Action.QUEUE),  # Monday
        ],
    )
    def test_half_open_interval(self, rules: Rules, local: str, action: Action) -> None:
        assert decide(rules, WARDENBURG, at(local)).action is action

    def test_reason_names_interval_and_local_time(self, rules: Rules) -> None:
        d = decide(rules, WARDENBURG, at("2026-11-25T10:00"))
        assert "Wed 25.11.2026 10:00 CET inside mon-fri 07:00-18:00" in " ".join(d.reasons)

    def test_several_intervals_per_day(self, rules_reject: Rules) -> None:
        assert decide(rules_reject, "044077300", at("2026-11-25T12:30")).action is Action.CLOSED
        assert decide(rules_reject, "044077300", at("2026-11-25T13:00")).action is Action.QUEUE
        assert decide(rules_reject, "044077300", at("2026-11-28T09:30")).action is Action.QUEUE

    def test_instant_in_other_zone_is_converted(self, rules: Rules) -> None:
        # 06:30 UTC is 07:30 CET: open.
        d = decide(rules, WARDENBURG, datetime(2026, 11, 25, 6, 30, tzinfo=UTC))
        assert d.action is Action.QUEUE

    def test_naive_instant_is_a_programming_error(self, rules: Rules) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            route(Call(did=WARDENBURG), rules, datetime(2026, 11, 25, 10, 0))


class TestHolidays:
    @pytest.mark.parametrize(
        ("day", "name"),
        [
            ("2026-01-01", "Neujahr"),
            ("2026-04-03", "Karfreitag"),
            ("2026-04-06", "Ostermontag"),
            ("2026-05-14", "Christi Himmelfahrt"),
            ("2026-05-25", "Pfingstmontag"),
            ("2026-10-03", "Tag der Deutschen Einheit"),
            ("2027-05-06", "Christi Himmelfahrt"),
            ("2025-10-31", "Reformationstag"),  # a Friday in 2025
        ],
    )
    def test_lower_saxony_holiday_closes(self, rules: Rules, day: str, name: str) -> None:
        d = decide(rules, WARDENBURG, at(f"{day}T10:00"))
        assert d.action is Action.CLOSED
        assert f"holiday: {name}" in " ".join(d.reasons)

    @pytest.mark.parametrize(
        "day",
        [
            "2026-01-06",  # Heilige Drei Könige: Bavaria, Baden-Württemberg, Saxony-Anhalt
            "2026-06-04",  # Fronleichnam: not in Lower Saxony
            "2026-11-18",  # Buß- und Bettag: Saxony only
        ],
    )
    def test_holiday_of_other_states_is_a_working_day(self, rules: Rules, day: str) -> None:
        d = decide(rules, WARDENBURG, at(f"{day}T10:00"))
        assert d.action is Action.QUEUE, d.reasons


class TestDaylightSaving:
    @pytest.mark.parametrize(
        ("utc", "action", "local"),
        [
            # 2026-03-29: clocks go 02:00 CET -> 03:00 CEST (a Sunday: closed all day)
            ("2026-03-29T05:30:00+00:00", Action.CLOSED, "07:30 CEST"),
            # Monday after: 07:00 CEST is 05:00 UTC
            ("2026-03-30T04:59:59+00:00", Action.CLOSED, "06:59:59 CEST"),
            ("2026-03-30T05:00:00+00:00", Action.QUEUE, "07:00 CEST"),
            ("2026-03-30T15:59:59+00:00", Action.QUEUE, "17:59:59 CEST"),
            ("2026-03-30T16:00:00+00:00", Action.CLOSED, "18:00 CEST"),
            # 2026-10-25: 03:00 CEST -> 02:00 CET; Monday 26.10. 07:00 CET = 06:00 UTC
            ("2026-10-26T05:59:59+00:00", Action.CLOSED, "06:59:59 CET"),
            ("2026-10-26T06:00:00+00:00", Action.QUEUE, "07:00 CET"),
            ("2026-10-26T17:00:00+00:00", Action.CLOSED, "18:00 CET"),
        ],
    )
    def test_local_wall_clock(self, rules: Rules, utc: str, action: Action, local: str) -> None:
        d = decide(rules, WARDENBURG, datetime.fromisoformat(utc))
        assert d.action is action
        assert local in " ".join(d.reasons)

    def test_special_opening_on_switch_day(self) -> None:
        text = RULES_WITH_REJECT.replace('"2026-03-08"', '"2026-03-29"')
        rules = parse_rules(text, "dst.yaml")[0]
        # 08:00 CEST on the spring-forward day is 06:00 UTC.
        assert decide(rules, "044077300", datetime(2026, 3, 29, 5, 59, tzinfo=UTC)).action is (
            Action.CLOSED
        )
        assert decide(rules, "044077300", datetime(2026, 3, 29, 6, 0, tzinfo=UTC)).action is (
            Action.QUEUE
        )

    def test_autumn_switch_day_both_0230s(self) -> None:
        text = RULES_WITH_REJECT.replace('"2026-03-08"', '"2026-10-25"').replace(
            '["08:00-18:00"]', '["02:00-03:00"]'
        )
        rules = parse_rules(text, "dst.yaml")[0]
        # 02:30 happens twice on 25.10.2026: 00:30 UTC (CEST) and 01:30 UTC (CET).
        for utc_hour in (0, 1):
            d = decide(rules, "044077300", datetime(2026, 10, 25, utc_hour, 30, tzinfo=UTC))
            assert d.action is Action.QUEUE
        assert decide(rules, "044077300", datetime(2026, 10, 25, 2, 0, tzinfo=UTC)).action is (
            Action.CLOSED
        )


class TestExtraDates:
    @pytest.mark.parametrize("year", [2026, 2027, 2031])
    def test_yearly_closed_date(self, rules: Rules, year: int) -> None:
        d = decide(rules, WARDENBURG, at(f"{year}-12-24T10:00"))
        assert d.action is Action.CLOSED
        assert "yearly closed date 12-24" in " ".join(d.reasons)

    def test_closed_range(self, rules: Rules) -> None:
        for day in ("2026-12-28", "2026-12-30", "2027-12-27", "2027-12-29"):
            assert decide(rules, "04461 919-0", at(f"{day}T10:00")).action is Action.CLOSED
        assert decide(rules, "04461 919-0", at("2027-01-04T10:00")).action is Action.QUEUE

    def test_special_opening_on_sunday(self, rules_reject: Rules) -> None:
        d = decide(rules_reject, "044077300", at("2026-03-08T08:00"))
        assert d.action is Action.QUEUE
        assert "special opening 2026-03-08" in " ".join(d.reasons)
        assert decide(rules_reject, "044077300", at("2026-03-08T07:59")).action is Action.CLOSED

    def test_special_opening_beats_holiday(self, rules_reject: Rules) -> None:
        assert decide(rules_reject, "044077300", at("2026-12-25T10:30")).action is Action.QUEUE
        assert decide(rules_reject, "044077300", at("2026-12-25T11:00")).action is Action.CLOSED


class TestOverrides:
    def ov(
        self, scope: str, state: OverrideState, start: str, end: str | None = None, oid: int = 1
    ) -> Override:
        return Override(
            scope=scope,
            state=state,
            reason="Unwetter",
            set_at=at(start),
            expires_at=at(end) if end else None,
            id=oid,
        )

    def test_closed_override_without_expiry(self, rules: Rules) -> None:
        o = self.ov("wardenburg", OverrideState.CLOSED, "2026-11-25T08:00")
        d = decide(rules, WARDENBURG, at("2026-11-25T10:00"), overrides=[o])
        assert d.action is Action.CLOSED
        assert "override #1 for wardenburg: forced closed until cleared (Unwetter)" in d.reasons

    def test_expiry_is_exclusive(self, rules: Rules) -> None:
        o = self.ov("wardenburg", OverrideState.CLOSED, "2026-11-25T08:00", "2026-11-25T12:00")
        before = decide(rules, WARDENBURG, at("2026-11-25T11:59:59"), overrides=[o])
        after = decide(rules, WARDENBURG, at("2026-11-25T12:00"), overrides=[o])
        assert before.action is Action.CLOSED
        assert after.action is Action.QUEUE

    def test_not_yet_in_force(self, rules: Rules) -> None:
        o = self.ov("wardenburg", OverrideState.CLOSED, "2026-11-25T11:00")
        assert decide(rules, WARDENBURG, at("2026-11-25T10:00"), overrides=[o]).action is (
            Action.QUEUE
        )

    def test_open_override_at_night(self, rules: Rules) -> None:
        o = self.ov(ALL_TENANTS, OverrideState.OPEN, "2026-11-25T18:00", "2026-11-25T20:00")
        d = decide(rules, WARDENBURG, at("2026-11-25T19:00"), overrides=[o])
        assert d.action is Action.QUEUE
        assert any("for all tenants: forced open" in r for r in d.reasons)

    def test_tenant_override_beats_global(self, rules: Rules) -> None:
        everyone = self.ov(ALL_TENANTS, OverrideState.CLOSED, "2026-11-25T08:00", oid=1)
        mine = self.ov("wardenburg", OverrideState.OPEN, "2026-11-25T07:00", oid=2)
        d = decide(rules, WARDENBURG, at("2026-11-25T10:00"), overrides=[everyone, mine])
        assert d.action is Action.QUEUE
        other = decide(rules, "0441 235-0", at("2026-11-25T10:00"), overrides=[everyone, mine])
        assert other.action is Action.CLOSED

    def test_newest_of_same_scope_wins(self, rules: Rules) -> None:
        old = self.ov("wardenburg", OverrideState.CLOSED, "2026-11-25T08:00", oid=1)
        new = self.ov("wardenburg", OverrideState.OPEN, "2026-11-25T09:00", oid=2)
        d = decide(rules, WARDENBURG, at("2026-11-25T19:00"), overrides=[new, old])
        assert d.action is Action.QUEUE

    def test_other_tenants_override_is_ignored(self, rules: Rules) -> None:
        o = self.ov("oldenburg", OverrideState.CLOSED, "2026-11-25T08:00")
        assert decide(rules, WARDENBURG, at("2026-11-25T10:00"), overrides=[o]).action is (
            Action.QUEUE
        )


class TestDidMatching:
    @pytest.mark.parametrize(
        "did",
        ["04407730", "04407 73-0", "4407730", "+494407730", "00494407730", "+49 (4407) 73-0"],
    )
    def test_formats_of_the_same_number(self, rules: Rules, did: str) -> None:
        d = decide(rules, did, at("2026-11-25T10:00"))
        assert d.tenant == "wardenburg"
        assert d.did == "+494407730"
        assert "DID +494407730 matched tenant wardenburg (exact" in d.reasons[0]

    @pytest.mark.parametrize(
        ("did", "tenant", "kind"),
        [
            ("+494407730", "a", "exact"),
            ("+4944077301", "a", "prefix +49440773"),  # block 73*
            ("+4944077351", "b", "prefix +494407735"),  # longer block of another tenant
            ("+494407799", "a", "prefix +4944077"),
        ],
    )
    def test_most_specific_wins(
        self, rules_reject: Rules, did: str, tenant: str, kind: str
    ) -> None:
        d = decide(rules_reject, did, at("2026-11-25T10:00"))
        assert d.tenant == tenant
        assert kind in d.reasons[0]

    def test_unknown_did_as_tenant(self, rules: Rules) -> None:
        d = decide(rules, "0800 1234567", at("2026-11-25T10:00"))
        assert d.tenant == "oldenburg"
        assert "unknown DID: routed as tenant oldenburg" in " ".join(d.reasons)

    def test_unknown_did_rejected(self, rules_reject: Rules) -> None:
        d = decide(rules_reject, "0800 1234567", at("2026-11-25T10:00"))
        assert d.action is Action.REJECT
        assert d.tenant is None
        assert d.reject is not None and d.reject.announce == "custom/unknown"


class TestService115:
    @pytest.mark.parametrize(
        ("caller", "tenant", "area"),
        [
            ("0441 1234567", "oldenburg", "+49441"),
            ("04407 123456", "wardenburg", "+494407"),  # longer than +49440..
            ("+49 4421 98765", "wilhelmshaven", "+494421"),
            ("004944619876", "friesland", "+494461"),
        ],
    )
    def test_longest_area_code(self, rules: Rules, caller: str, tenant: str, area: str) -> None:
        d = decide(rules, "115", at("2026-11-25T10:00"), caller=caller)
        assert d.via_115 is True
        assert d.tenant == tenant
        assert f"({area})" in " ".join(d.reasons)

    def test_longest_prefix_beats_shorter(self) -> None:
        text = RULES_WITH_REJECT.replace(
            'by_area_code: {"+49 4407": a}', 'by_area_code: {"+49 44": b, "+49 4407": a}'
        )
        rules = parse_rules(text, "x.yaml")[0]
        assert decide(rules, "115", at("2026-11-25T10:00"), caller="04407 1").tenant == "a"
        assert decide(rules, "115", at("2026-11-25T10:00"), caller="0441 1").tenant == "b"

    @pytest.mark.parametrize(
        ("caller", "restricted", "why"),
        [
            ("0171 1234567", False, "matches no configured area code"),
            ("", False, "caller withheld"),
            ("anonymous", False, "caller withheld"),
            ("0441 1234567", True, "presentation restricted"),
        ],
    )
    def test_mobile_or_withheld_gets_menu(
        self, rules: Rules, caller: str, restricted: bool, why: str
    ) -> None:
        d = decide(rules, "115", at("2026-11-25T10:00"), caller=caller, restricted=restricted)
        assert d.action is Action.MENU
        assert d.menu is not None and d.menu.default == "oldenburg"
        assert d.menu.options["2"] == "wardenburg"
        assert why in " ".join(d.reasons)

    @pytest.mark.parametrize(
        ("digit", "tenant", "why"),
        [
            ("2", "wardenburg", "caller pressed 2"),
            ("", "oldenburg", "no digit pressed"),
            ("9", "oldenburg", "is not an option"),
        ],
    )
    def test_menu_choice(self, rules: Rules, digit: str, tenant: str, why: str) -> None:
        d = decide(rules, "115", at("2026-11-25T10:00"), caller="", menu_digit=digit)
        assert d.action is Action.QUEUE
        assert d.tenant == tenant
        assert d.via_115 is True
        assert why in " ".join(d.reasons)

    def test_otherwise_tenant(self, rules_reject: Rules) -> None:
        d = decide(rules_reject, "115", at("2026-11-25T10:00"), caller="0171 1234567")
        assert d.tenant == "b"

    def test_115_outside_hours_is_tenant_closed(self, rules: Rules) -> None:
        d = decide(rules, "115", at("2026-11-25T20:00"), caller="04407 123456")
        assert d.action is Action.CLOSED
        assert d.tenant == "wardenburg"
        assert d.via_115


class TestTagging:
    def test_queue_target_and_tags(self, rules: Rules) -> None:
        d = decide(rules, WARDENBURG, at("2026-11-25T10:00"), caller_name="Jörg Müller")
        assert d.queue is not None
        assert (d.queue.context, d.queue.queue, d.queue.priority) == (
            "pbxbridge-queue",
            "servicecenter",
            5,
        )
        assert d.queue.whisper == "custom/wardenburg"
        assert d.callerid_name == "WAR: Jörg Müller"
        assert d.tenant_name == "Gemeinde Wardenburg"
        assert d.greeting.startswith("Gemeinde Wardenburg")

    def test_closed_handling(self, rules: Rules) -> None:
        d = decide(rules, "04222 44-0", at("2026-11-25T20:00"))
        assert d.closed is not None
        assert d.closed.then is ClosedThen.FORWARD
        assert d.closed.target == "+494222 44999".replace(" ", "")
        f = decide(rules, "04461 919-0", at("2026-11-25T20:00"))
        assert f.closed is not None and f.closed.then is ClosedThen.QUEUE
        assert f.closed.queue is not None and f.closed.queue.queue == "afterhours"

    def test_screen_pop_url_encodes_values(self, rules: Rules) -> None:
        d = decide(rules, WARDENBURG, at("2026-11-25T10:00"), caller="+49 441 1234567")
        assert d.screen_pop_url == (
            "https://kb.example.org/search?tenant=wardenburg&caller=%2B494411234567"
        )

    def test_withheld_caller_renders_empty(self, rules: Rules) -> None:
        d = decide(rules, WARDENBURG, at("2026-11-25T10:00"), caller="anonymous")
        assert d.caller is None
        assert d.screen_pop_url.endswith("caller=")

    def test_hostile_name_is_sanitised(self, rules: Rules) -> None:
        d = decide(
            rules,
            WARDENBURG,
            at("2026-11-25T10:00"),
            caller_name='"Evil" ${SHELL(rm -rf /)};,\\n\x00' + "x" * 300,
        )
        for bad in '"${};,\\\x00':
            assert bad not in d.callerid_name
        assert len(d.caller_name) <= 80

    def test_reasons_shorten_caller_numbers(self, rules: Rules) -> None:
        d = decide(rules, "115", at("2026-11-25T10:00"), caller="0441 1234567")
        assert "+494411234567" not in " ".join(d.reasons)

    def test_as_dict_is_json_ready(self, rules: Rules) -> None:
        import json

        d = decide(rules, WARDENBURG, at("2026-11-25T10:00"))
        out = json.loads(json.dumps(d.as_dict()))
        assert out["tenant"] == "wardenburg"
        assert out["action"] == "queue"
        assert out["queue"]["queue"] == "servicecenter"
        assert out["reasons"] == list(d.reasons)


HOSTILE = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=5000, max_size=10000),
    st.from_regex(r"\+?[0-9 \-/()]{0,40}", fullmatch=True),
    st.sampled_from(["", "anonymous", "115", "\x00", "+", "++49", "0" * 10000, "𝟘𝟜𝟜𝟘𝟟"]),
)


class TestNeverRaises:
    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        did=HOSTILE,
        caller=HOSTILE,
        name=HOSTILE,
        digit=st.one_of(st.none(), st.text(max_size=5)),
        minutes=st.integers(min_value=0, max_value=60 * 24 * 800),
        restricted=st.booleans(),
    )
    def test_any_input_gives_a_decision(
        self,
        rules: Rules,
        did: str,
        caller: str,
        name: str,
        digit: str | None,
        minutes: int,
        restricted: bool,
    ) -> None:
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
        d = route(
            Call(did=did, caller=caller, caller_name=name, restricted=restricted, menu_digit=digit),
            rules,
            when,
        )
        assert d.action in set(Action)
        assert d.reasons
        if d.action in (Action.QUEUE, Action.CLOSED):
            assert d.tenant in rules.tenants
        for text in (d.callerid_name, d.caller_name, *d.reasons):
            assert "\x00" not in text and "\n" not in text
        if d.tenant is None and d.action is not Action.MENU:
            pytest.fail("no tenant for a non-menu decision with unknown_did.tenant set")

    @settings(max_examples=100, deadline=None)
    @given(did=st.text(max_size=50))
    def test_unparsable_did_falls_to_unknown_rule(self, rules: Rules, did: str) -> None:
        d = route(Call(did=did), rules, datetime(2026, 11, 25, 9, tzinfo=UTC))
        if d.did == "" or not d.did.startswith("+"):
            assert d.tenant == "oldenburg"
            assert any("unknown DID" in r for r in d.reasons)
