"""The faces of the daemon's components: the /healthz body and the scrape-time gauges.

A daemon with every part on (fakes of the public attributes each face reads)
and one with nothing built: the body's keys, the order of the problems and every
gauge family with its labels are the ones monitors and dashboards rely on.
(Checked equal, body and /metrics text, against the daemon before the faces.)
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pbxbridge import app, components
from pbxbridge.adapters.ari.client import AriConnectionStatus, AriState
from pbxbridge.core.lifecycle import State
from pbxbridge.runtime.live import LiveRules
from pbxbridge.runtime.settings import Settings
from pbxbridge.tracking.metrics import ScrapeCollector, render

REPO = Path(__file__).resolve().parents[2]
TENANTS = ("friesland", "ganderkesee", "oldenburg", "wardenburg", "wilhelmshaven")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Daemon:
    """The daemon's faces (app.faces) over the parts a test sets (none: nothing built)."""

    def __init__(self, rules: LiveRules) -> None:
        self.rules = rules
        self.parts: dict[str, object] = {}

    def components(self) -> app.Components:
        return app.faces(app.Parts(self.rules, **self.parts), Settings.from_env({}))  # type: ignore[arg-type]

    def health(self) -> tuple[bool, dict[str, object]]:
        return self.components().health()


def _daemon(tmp_path: Path) -> Daemon:
    rules = tmp_path / "routing.yaml"
    shutil.copy(REPO / "config/routing.yaml", rules)
    d = Daemon(LiveRules(rules))
    d.rules.load_initial()
    return d


def _everything_on(d: Daemon) -> None:
    """Every part built, each with something to report."""
    status = AriConnectionStatus(AriState.CONNECTED, datetime.now(UTC), 0, None)
    parts: dict[str, object] = {
        "ari": SimpleNamespace(status=status, connected=True),
        "ami": SimpleNamespace(connected=False, status=SimpleNamespace(as_dict=dict)),
        "mqtt": SimpleNamespace(
            status=lambda: SimpleNamespace(
                connected=False,
                as_dict=dict,
                dropped_stale={"agent": 2, "wallboard": 1},
                dropped_overflow=3,
                queued=4,
            )
        ),
        "tracker": SimpleNamespace(
            records={
                "1": SimpleNamespace(
                    state=State.QUEUED, decision=SimpleNamespace(tenant="oldenburg")
                ),
                "2": SimpleNamespace(state=State.RINGING, decision=SimpleNamespace(tenant=None)),
                "3": SimpleNamespace(
                    state=State.ANSWERED, decision=SimpleNamespace(tenant="oldenburg")
                ),
            },
            stats=SimpleNamespace(followed=3, pops=1),
        ),
        "journal": SimpleNamespace(
            stats=SimpleNamespace(last_error="E", as_dict=dict, backlog=5, db_available=False)
        ),
        "overrides": SimpleNamespace(error="unreadable", health=dict),
        "agi": SimpleNamespace(
            listening=False,
            host="127.0.0.1",
            port=4574,
            last_error=None,
            authenticated=True,
            connections=2,
            in_progress=1,
            capacity=9,
            stats=SimpleNamespace(evicted=1, over_capacity=2, faults={"overlong_line": 3}),
        ),
        "web": SimpleNamespace(health=lambda: {"agents": 1, "error": "agents.yaml:3: bad"}),
        "desk": SimpleNamespace(
            figures={"oldenburg": SimpleNamespace(open=1, overdue=2, due_today=3)}
        ),
    }
    router_stats = SimpleNamespace(
        routed=1, failed=2, gone=0, menus=0, resynced=0, stasis_timeouts=6, by_action={}
    )
    parts["agi_router"] = SimpleNamespace(stats=router_stats)
    parts["router"] = SimpleNamespace(stats=router_stats, in_progress=7)
    d.parts.update(parts)
    d.rules.last_error = ["rules.yaml:1: bad"]


def _samples(d: Daemon) -> Samples:
    registry = CollectorRegistry()
    registry.register(ScrapeCollector(d.components().gauges, components.GAUGE_HELP))
    got: Samples = {}
    for family in text_string_to_metric_families(render(registry).decode()):
        assert family.documentation == components.GAUGE_HELP[family.name]
        for sample in family.samples:
            got[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return got


def test_nothing_built(tmp_path: Path) -> None:
    d = _daemon(tmp_path)
    healthy, body = d.health()
    assert not healthy and body["status"] == "down"
    assert body["problems"] == ["ari: not connected"]
    assert list(body) == [
        "status", "problems", "version", "ari", "ami", "mqtt", "screen_pops",
        "journal", "rules", "sounds", "overrides", "agi", "web", "supervisor", "calls",
        "virtual_hold",
    ]  # fmt: skip
    for off in ("ami", "mqtt", "journal", "sounds", "agi", "web", "supervisor", "virtual_hold"):
        assert body[off] == {"state": "disabled"}
    assert body["overrides"] is None
    assert body["screen_pops"] == {"following": 0}
    assert body["ari"] == {
        "state": "idle", "since": None, "failures": 0, "last_error": None,
        "consecutive_failures": 0, "app": "pbxbridge",
    }  # fmt: skip
    expected: Samples = {
        **{("pbxbridge_calls_waiting", (("tenant", t),)): 0.0 for t in TENANTS},
        ("pbxbridge_rules_generation", ()): 1.0,
        ("pbxbridge_rules_reload_failures", ()): 0.0,
        ("pbxbridge_up", (("component", "ari"),)): 0.0,
        ("pbxbridge_up", (("component", "ami"),)): 0.0,
        ("pbxbridge_up", (("component", "mqtt"),)): 0.0,
    }
    assert _samples(d) == expected


def test_everything_on(tmp_path: Path) -> None:
    d = _daemon(tmp_path)
    _everything_on(d)
    healthy, body = d.health()
    assert not healthy and body["status"] == "degraded"
    # Routing's own problems first, then what it loses: the order of before.
    assert body["problems"] == [
        "rules: last reload rejected (1 errors), generation 1 still routing",
        "agi: not listening on 127.0.0.1:4574",
        "overrides: store unreadable, last overrides read stay in force",
        "web: agents file rejected, last good agents stay in force",
        "ami: not connected",
        "mqtt: not connected",
        "journal: database unavailable, spooling to disk",
    ]
    assert body["screen_pops"] == {"following": 3, "followed": 3, "pops": 1}
    assert body["calls"] == {
        "routed": 1, "failed": 2, "gone": 0, "menus": 0, "resynced": 0,
        "stasis_timeouts": 6, "in_progress": 7, "by_action": {},
    }  # fmt: skip
    agi = body["agi"]
    assert isinstance(agi, dict)
    assert agi["bind"] == "127.0.0.1:4574" and agi["state"] == "down"
    expected: Samples = {
        **{
            ("pbxbridge_calls_waiting", (("tenant", t),)): 1.0 if t == "oldenburg" else 0.0
            for t in TENANTS
        },
        ("pbxbridge_rules_generation", ()): 1.0,
        ("pbxbridge_rules_reload_failures", ()): 0.0,
        ("pbxbridge_up", (("component", "ari"),)): 1.0,
        ("pbxbridge_up", (("component", "ami"),)): 0.0,
        ("pbxbridge_up", (("component", "mqtt"),)): 0.0,
        ("pbxbridge_up", (("component", "agi"),)): 0.0,
        ("pbxbridge_up", (("component", "journal"),)): 0.0,
        ("pbxbridge_up", (("component", "overrides"),)): 0.0,
        ("pbxbridge_screenpops_dropped", (("reason", "stale_agent"),)): 2.0,
        ("pbxbridge_screenpops_dropped", (("reason", "stale_wallboard"),)): 1.0,
        ("pbxbridge_screenpops_dropped", (("reason", "overflow"),)): 3.0,
        ("pbxbridge_screenpops_queued", ()): 4.0,
        ("pbxbridge_journal_backlog", ()): 5.0,
        ("pbxbridge_calls_in_routing", (("entry", "ari"),)): 7.0,
        ("pbxbridge_calls_in_routing", (("entry", "agi"),)): 1.0,
        ("pbxbridge_routing_failures", (("entry", "ari"),)): 2.0,
        ("pbxbridge_routing_failures", (("entry", "agi"),)): 2.0,
        ("pbxbridge_stasis_timeouts", ()): 6.0,
        ("pbxbridge_agi_connections", ()): 2.0,
        ("pbxbridge_agi_faults", (("reason", "over_capacity"),)): 2.0,
        ("pbxbridge_agi_faults", (("reason", "evicted_idle"),)): 1.0,
        ("pbxbridge_agi_faults", (("reason", "overlong_line"),)): 3.0,
        ("pbxbridge_callbacks_open", (("tenant", "oldenburg"),)): 1.0,
        ("pbxbridge_callbacks_overdue", (("tenant", "oldenburg"),)): 2.0,
        ("pbxbridge_callbacks_due_today", (("tenant", "oldenburg"),)): 3.0,
    }
    assert _samples(d) == expected
