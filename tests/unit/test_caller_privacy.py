"""Caller numbers never reach a decision's reasons or an info-level log line whole.

Reasons are logged with every routed call (info level) and stored in the
journal; a caller "number" that is not one (``tel:+494411234567``,
``0441/1234567;cpc=x``) is still the caller's. The check: no six consecutive
digits of the caller (separators between them allowed) appear in the output,
unless the same digits appear for a withheld caller too (dates and times in
the trace are not the caller's).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from pbxbridge.config import load_rules
from pbxbridge.core import Call, Rules, route
from tests.unit.test_agi_router import asterisk_env, harness

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"
DIDS = ["115", "04407 73-0", "0441 235-0", "+49 9999 1", "garbage"]
HOSTILE_CALLERS = [
    "tel:+494411234567",
    "0441/1234567;cpc=x",
    "<script>04411234567</script>",
    "$(reboot)04411234567",
    "sip:04411234567@10.0.0.1",
    "0441 123 45 67 ext",
    "+49 (0) 441-1234567",
    "04411234567" + "x" * 300,
]
_RUN = re.compile(r"\d(?:[ \-/().]?\d)*")


def _windows(text: str) -> set[str]:
    """Every six consecutive digits of every digit run in ``text``."""
    found: set[str] = set()
    for match in _RUN.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        found.update(digits[i : i + 6] for i in range(len(digits) - 5))
    return found


def leaked(caller: str, output: str, baseline: str) -> set[str]:
    """Six-digit pieces of the caller found in ``output`` but not in ``baseline``."""
    mine = _windows(caller)
    return {w for w in _windows(output) - _windows(baseline) if w in mine}


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE)[0]


def reasons(rules: Rules, did: str, caller: str, when: datetime) -> str:
    return "\n".join(route(Call(did=did, caller=caller), rules, when).reasons)


class TestReasons:
    @pytest.mark.parametrize("did", DIDS)
    @pytest.mark.parametrize("caller", HOSTILE_CALLERS)
    def test_hostile_callers(self, rules: Rules, did: str, caller: str) -> None:
        when = datetime(2026, 11, 25, 9, tzinfo=UTC)
        text = reasons(rules, did, caller, when)
        assert not leaked(caller, text, reasons(rules, did, "anonymous", when)), text

    def test_the_old_leak_is_gone(self, rules: Rules) -> None:
        # What the review found: the whole string in the reason.
        text = reasons(rules, "04407 73-0", "tel:+494411234567", datetime(2026, 1, 5, tzinfo=UTC))
        assert "tel:+…67" in text and "494411234567" not in text

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        did=st.sampled_from(DIDS),
        caller=st.one_of(
            st.from_regex(r"(tel:|sip:|<b>)?\+?[0-9 \-/()]{6,30}(;cpc=x|@h|</b>)?", fullmatch=True),
            st.text(max_size=120),
        ),
        minutes=st.integers(min_value=0, max_value=60 * 24 * 400),
    )
    def test_any_caller(self, rules: Rules, did: str, caller: str, minutes: int) -> None:
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
        text = reasons(rules, did, caller, when)
        assert not leaked(caller, text, reasons(rules, did, "anonymous", when)), text


class TestLogLines:
    """The routed call's info-level log line, through the FastAGI entry point."""

    @pytest.mark.parametrize("caller", HOSTILE_CALLERS)
    async def test_routed_line(self, rules: Rules, caller: str) -> None:
        async def logged(callerid: str) -> str:
            async with harness(rules) as h:
                with capture_logs() as logs:
                    await h.fake(env=asterisk_env(callerid=callerid)).call()
            lines = [
                repr(e)
                for e in logs
                if logging.getLevelNamesMapping()[e["log_level"].upper()] >= logging.INFO
            ]
            assert any("call.routed" in line for line in lines)
            return "\n".join(lines)

        text = await logged(caller)
        assert not leaked(caller, text, await logged("anonymous")), text
