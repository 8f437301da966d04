"""The supervisor page's ``PBXBRIDGE_SL_TARGET``: read by the staffing commands' parser.

What the page does with each value: the forms :func:`pbxbridge.core.erlang.parse_target`
accepts set the promise; anything else is logged once with the reason and the page
runs with the default 80/20 (it still shows every figure).
"""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from pbxbridge.web.supervisor_live import SupervisorConfig


@pytest.mark.parametrize(
    ("value", "target", "threshold"),
    [
        ("75/30", 75.0, 30.0),
        ("80%/20s", 80.0, 20.0),
        (" 80 / 20 ", 80.0, 20.0),
        ("82,5/15", 82.5, 15.0),
        ("90", 90.0, 20.0),  # the percentage alone: within the default 20 s
        ("7/20", 7.0, 20.0),  # not 7.000000000000001 (the fraction back to percent)
    ],
)
def test_accepted_targets(value: str, target: float, threshold: float) -> None:
    with capture_logs() as logs:
        cfg = SupervisorConfig.from_env({"PBXBRIDGE_SL_TARGET": value})
    assert (cfg.target_percent, cfg.threshold_s) == (target, threshold)
    assert logs == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "expected PERCENT/SECONDS"),
        ("0/20", "percentage must be above 0 and below 100"),
        ("101/20", "percentage must be above 0 and below 100"),
        # 100 % was taken by the page's own parser; no number of agents reaches it,
        # and the page shares its promise with the staffing plan.
        ("100/20", "percentage must be above 0 and below 100"),
        ("80/0", "seconds must be above 0"),
    ],
)
def test_a_bad_target_is_logged_and_the_default_used(value: str, reason: str) -> None:
    with capture_logs() as logs:
        cfg = SupervisorConfig.from_env({"PBXBRIDGE_SL_TARGET": value})
    assert (cfg.target_percent, cfg.threshold_s) == (80.0, 20.0)
    (line,) = logs
    assert line["event"] == "supervisor.target_invalid"
    assert line["log_level"] == "error"
    assert line["value"] == value
    assert reason in line["error"]
    assert line["using"] == "80/20"


@pytest.mark.parametrize("env", [{}, {"PBXBRIDGE_SL_TARGET": ""}, {"PBXBRIDGE_SL_TARGET": "  "}])
def test_unset_or_empty_is_the_default_without_a_log_line(env: dict[str, str]) -> None:
    with capture_logs() as logs:
        cfg = SupervisorConfig.from_env(env)
    assert (cfg.target_percent, cfg.threshold_s) == (80.0, 20.0)
    assert logs == []
