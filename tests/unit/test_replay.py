"""The replay core (pbxbridge.core.replay): journalled calls routed by two rule sets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pbxbridge.config import load_rules
from pbxbridge.core import Call, Override, OverrideState, Rules, route
from pbxbridge.core.replay import OverrideTimeline, Routed, replay

RULES = """\
version: 1
timezone: Europe/Berlin
region: DE
calendars:
  sc:
    holidays: {country: DE, subdivision: NI}
    hours: {mon-fri: ["07:00-18:00"]}
  short:
    hours: {mon-fri: ["08:00-12:00"]}
queues:
  sc: {context: pbxbridge-queue, queue: servicecenter}
  ah: {context: pbxbridge-queue, queue: afterhours}
tenants:
  oldenburg:
    name: Stadt Oldenburg
    dids: ["+49 441 235-0"]
    calendar: sc
    open: {queue: sc, priority: 5}
    closed: {then: voicemail, mailbox: "1000@oldenburg"}
  wardenburg:
    name: Gemeinde Wardenburg
    dids: ["+49 4407 73-0"]
    calendar: sc
    open: {queue: sc, priority: 5}
    closed: {then: hangup}
  friesland:
    name: Landkreis Friesland
    dids: ["+49 4461 919-0"]
    calendar: CAL
    open: {queue: sc, priority: 4}
    closed: {then: queue, queue: ah}
service_115:
  dids: ["115"]
  by_area_code:
    "+49 441": oldenburg
    "+49 4407": wardenburg
  otherwise:
    menu:
      prompt: custom/115-choose
      options: {"1": oldenburg, "2": wardenburg, "3": friesland}
      default: oldenburg
unknown_did: {tenant: oldenburg}
"""

WAR_DID = "+494407730"
OL_DID = "+494412350"
FRI_DID = "+4944619190"
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday, no holiday in NI


@dataclass(frozen=True)
class Row:
    """A journalled call (the fields the journal's row has)."""

    did: str
    caller: str | None
    arrived_at: datetime
    menu_digit: str | None = None
    purged_at: datetime | None = None
    tenant: str = ""
    node: str = "n1"
    call_id: str = "c"


def rules_from(tmp_path: Path, text: str, name: str) -> Rules:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rules(path)[0]


@pytest.fixture
def before(tmp_path: Path) -> Rules:
    return rules_from(tmp_path, RULES.replace("CAL", "sc"), "before")


def local(day: int, hhmm: str) -> datetime:
    """Mon 23.11.2026 + ``day`` days at ``hhmm`` Berlin time (CET, UTC+1)."""
    h, m = map(int, hhmm.split(":"))
    return MONDAY + timedelta(days=day, hours=h - 1, minutes=m)


class TestReplay:
    def test_same_rules_change_nothing(self, before: Rules) -> None:
        rows = [Row(WAR_DID, "+494411234567", local(0, "10:00"))]
        report = replay(rows, before, before)
        assert (report.calls, report.replayed, report.changed) == (1, 1, [])

    def test_a_priority_change_in_open_hours_only(self, tmp_path: Path, before: Rules) -> None:
        after = rules_from(
            tmp_path,
            RULES.replace("CAL", "sc").replace(
                'dids: ["+49 4407 73-0"]\n    calendar: sc\n    open: {queue: sc, priority: 5}',
                'dids: ["+49 4407 73-0"]\n    calendar: sc\n    open: {queue: sc, priority: 9}',
            ),
            "after",
        )
        rows = [
            Row(WAR_DID, "+494411234567", local(0, "10:00"), call_id="open1"),
            Row(WAR_DID, "+494411234568", local(0, "10:05"), call_id="open2"),
            Row(WAR_DID, "+494411234569", local(0, "19:00"), call_id="evening"),
            Row(OL_DID, "+494411234560", local(0, "10:00"), call_id="other"),
        ]
        report = replay(rows, before, after)
        assert [c.call_id for c in report.changed] == ["open1", "open2"]
        (group,) = report.groups
        assert (group.tenant, group.kind, group.count) == ("wardenburg", "priority", 2)
        assert (group.before.priority, group.after.priority) == (5, 9)
        # each sample carries its own call's reasons, both sides
        assert [s.call.call_id for s in group.samples] == ["open1", "open2"]
        assert "open → queue servicecenter (priority 5)" in group.samples[1].reasons_before
        assert "open → queue servicecenter (priority 9)" in group.samples[1].reasons_after
        assert any("10:05" in r for r in group.samples[1].reasons_after)
        assert report.changed[0].caller == "+4944…67"  # shortened, never whole
        assert report.summary() == {
            "calls": 4,
            "replayed": 4,
            "changed": 2,
            "not_replayable": 0,
            "by_kind": {"priority": 2},
            "by_tenant": {"wardenburg": 2},
        }

    def test_a_shorter_calendar_changes_afternoon_calls(
        self, tmp_path: Path, before: Rules
    ) -> None:
        after = rules_from(tmp_path, RULES.replace("CAL", "short"), "after")
        rows = [
            Row(FRI_DID, "+494461111111", local(0, "09:00"), call_id="morning"),
            Row(FRI_DID, "+494461111112", local(0, "14:00"), call_id="afternoon"),
            Row(FRI_DID, "+494461111113", local(5, "14:00"), call_id="saturday"),
        ]
        report = replay(rows, before, after)
        (change,) = report.changed
        assert change.call_id == "afternoon"
        assert change.kind == "action+queue+priority+closed"
        assert change.before == Routed("friesland", "queue", "servicecenter", 4, "")
        assert change.after == Routed("friesland", "closed", "afterhours", 0, "queue afterhours")

    def test_the_menu_digit_is_replayed(self, tmp_path: Path, before: Rules) -> None:
        after = rules_from(
            tmp_path,
            RULES.replace("CAL", "sc").replace('"2": wardenburg', '"2": friesland'),
            "after",
        )
        rows = [
            Row("115", "+491711234567", local(0, "10:00"), menu_digit="2", call_id="pressed2"),
            Row("115", "+491711234567", local(0, "10:00"), menu_digit="1", call_id="pressed1"),
            Row("115", "+491711234567", local(0, "10:00"), menu_digit="", call_id="timeout"),
        ]
        report = replay(rows, before, after)
        (change,) = report.changed
        assert (change.call_id, change.kind) == ("pressed2", "tenant+priority")
        assert (change.before.tenant, change.after.tenant) == ("wardenburg", "friesland")

    def test_area_codes_decide_by_the_caller(self, tmp_path: Path, before: Rules) -> None:
        after = rules_from(
            tmp_path,
            RULES.replace("CAL", "sc").replace('"+49 4407": wardenburg', '"+49 4407": oldenburg'),
            "after",
        )
        rows = [
            Row("115", "+494407123456", local(0, "10:00"), call_id="wardenburger"),
            Row("115", "+494411234567", local(0, "10:00"), call_id="oldenburger"),
            Row("115", None, local(0, "10:00"), call_id="withheld"),
        ]
        report = replay(rows, before, after)
        assert [(c.call_id, c.kind) for c in report.changed] == [("wardenburger", "tenant")]
        assert report.changed[0].after.tenant == "oldenburg"

    def test_purged_calls(self, before: Rules) -> None:
        after = before
        purged = MONDAY + timedelta(days=100)
        rows = [
            Row("115", None, local(0, "10:00"), purged_at=purged, tenant="oldenburg"),
            Row("115", None, local(0, "11:00"), purged_at=purged, tenant="wardenburg"),
            Row("115", None, local(0, "11:00"), purged_at=purged, tenant="wardenburg"),
            # not on 115: the caller does not matter, the call replays
            Row(WAR_DID, None, local(0, "10:00"), purged_at=purged, tenant="wardenburg"),
        ]
        report = replay(rows, before, after)
        assert report.not_replayable == {"oldenburg": 1, "wardenburg": 2}
        assert (report.calls, report.replayed) == (4, 1)
        assert replay(rows, before, after, tenant="wardenburg").not_replayable == {"wardenburg": 2}

    def test_overrides_in_force_then_apply_to_both_sides(
        self, tmp_path: Path, before: Rules
    ) -> None:
        after = rules_from(
            tmp_path,
            RULES.replace("CAL", "sc").replace(
                "closed: {then: hangup}", "closed: {then: voicemail, mailbox: '7@w'}"
            ),
            "after",
        )
        storm = Override(
            "wardenburg", OverrideState.CLOSED, "Unwetter", local(0, "10:00"), None, id=1
        )
        cleared = local(0, "11:00")
        never = Override("*", OverrideState.CLOSED, "oops", local(0, "12:00"), None, id=2)
        timeline = OverrideTimeline([(storm, cleared), (never, local(0, "12:00"))])
        rows = [
            Row(WAR_DID, "+494411234567", local(0, "09:59"), call_id="before"),
            Row(WAR_DID, "+494411234567", local(0, "10:30"), call_id="storm"),
            Row(WAR_DID, "+494411234567", local(0, "11:00"), call_id="cleared"),
            Row(WAR_DID, "+494411234567", local(0, "12:30"), call_id="noon"),
        ]
        report = replay(rows, before, after, timeline)
        (change,) = report.changed
        assert change.call_id == "storm"
        assert (change.before.closed, change.after.closed) == ("hangup", "voicemail 7@w")
        (sample,) = report.groups[0].samples
        assert any("override #1" in r for r in sample.reasons_before)

    def test_tenant_filter_sees_calls_moving_in(self, tmp_path: Path, before: Rules) -> None:
        after = rules_from(
            tmp_path,
            RULES.replace("CAL", "sc").replace('"+49 4407": wardenburg', '"+49 4407": oldenburg'),
            "after",
        )
        rows = [
            Row("115", "+494407123456", local(0, "10:00"), call_id="moves"),
            Row(WAR_DID, "+494407123456", local(0, "10:00"), call_id="stays"),
        ]
        assert [c.call_id for c in replay(rows, before, after, tenant="oldenburg").changed] == [
            "moves"
        ]
        only_friesland = replay(rows, before, after, tenant="friesland")
        assert (only_friesland.calls, only_friesland.changed) == (0, [])

    def test_keyed_replay_equals_routing_every_call(self, tmp_path: Path, before: Rules) -> None:
        """A month of mixed calls: the keyed replay finds exactly the calls routing each finds."""
        after = rules_from(
            tmp_path,
            RULES.replace("CAL", "short")
            .replace('"+49 4407": wardenburg', '"+49 4407": friesland')
            .replace('"2": wardenburg', '"2": oldenburg')
            .replace("unknown_did: {tenant: oldenburg}", "unknown_did: {reject: {}}")
            .replace('hours: {mon-fri: ["07:00-18:00"]}', 'hours: {mon-fri: ["07:30-17:00"]}'),
            "after",
        )
        rng = random.Random(7)
        start = datetime(2026, 10, 20, tzinfo=UTC)  # across the end of summer time
        overrides = [
            (
                Override(
                    rng.choice(["*", "wardenburg", "friesland"]),
                    rng.choice(list(OverrideState)),
                    "x",
                    start + timedelta(hours=rng.randrange(24 * 30)),
                    start + timedelta(hours=rng.randrange(24 * 30, 24 * 40)),
                    id=i,
                ),
                start + timedelta(hours=rng.randrange(24 * 35)) if i % 2 else None,
            )
            for i in range(1, 8)
        ]
        timeline = OverrideTimeline(overrides)
        dids = [WAR_DID, "04407 73-0", OL_DID, FRI_DID, "115", "+4930999", "garbage", "0"]
        callers = ["+494407123456", "+494411234567", "+491711234567", "+494461555", None]
        rows = [
            Row(
                rng.choice(dids),
                rng.choice(callers),
                start + timedelta(seconds=rng.randrange(30 * 86400)),
                menu_digit=rng.choice([None, None, "", "1", "2", "9"]),
                call_id=str(i),
            )
            for i in range(4000)
        ]
        rows.sort(key=lambda r: r.arrived_at)
        expected = []
        for row in rows:
            call = Call(did=row.did, caller=row.caller or "", menu_digit=row.menu_digit)
            active = [o for o, _ in timeline_pairs(overrides) if o.active_at(row.arrived_at)]
            b = route(call, before, row.arrived_at, active)
            a = route(call, after, row.arrived_at, active)
            if Routed.of(b) != Routed.of(a):
                expected.append(row.call_id)
        report = replay(rows, before, after, timeline)
        assert [c.call_id for c in report.changed] == expected
        assert 50 < len(expected) < 3800  # the mix really changes some calls, not all


def timeline_pairs(
    history: list[tuple[Override, datetime | None]],
) -> list[tuple[Override, None]]:
    """The overrides with a clear folded into the expiry (the oracle's own reading)."""
    out = []
    for o, cleared in history:
        end = o.expires_at
        if cleared is not None:
            end = cleared if end is None else min(end, cleared)
        if end is not None and end <= o.set_at:
            continue
        out.append((Override(o.scope, o.state, o.reason, o.set_at, end, o.id), None))
    return out
