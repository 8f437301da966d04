"""Callback numbers: German subscriber numbers only, the dial string, the refusal's prompt."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxbridge.core.callback_number import NumberProblem, check_callback_number
from pbxbridge.core.virtual_hold import VirtualHoldSounds


class TestCheckCallbackNumber:
    @pytest.mark.parametrize(
        ("raw", "dial"),
        [
            ("04407 730", "04407730"),
            ("+494407730", "04407730"),
            ("00494407730", "04407730"),
            ("0151/12345678", "015112345678"),
            ("+49 441 123456", "0441123456"),
        ],
    )
    def test_german_numbers_are_accepted(self, raw: str, dial: str) -> None:
        got = check_callback_number(raw)
        assert got.ok and got.problem is None
        assert got.dial == dial

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            ("", NumberProblem.EMPTY),
            ("   ", NumberProblem.EMPTY),
            ("abc", NumberProblem.NOT_DIGITS),
            ("0441*123", NumberProblem.NOT_DIGITS),
            ("0441123A", NumberProblem.NOT_DIGITS),
            ("090012345678", NumberProblem.PREMIUM),
            ("01371234567", NumberProblem.PREMIUM),
            ("01805123456", NumberProblem.PREMIUM),
            ("0190123456", NumberProblem.PREMIUM),
            ("070012345678", NumberProblem.PREMIUM),
            ("+4990012345678", NumberProblem.PREMIUM),
            ("110", NumberProblem.EMERGENCY),
            ("112", NumberProblem.EMERGENCY),
            ("115", NumberProblem.SERVICE),
            ("116117", NumberProblem.SERVICE),
            ("11833", NumberProblem.SERVICE),
            ("4407730", NumberProblem.TOO_SHORT),
            ("0441", NumberProblem.TOO_SHORT),
            ("0441123456789012", NumberProblem.TOO_LONG),
            ("+43 1 5125533", NumberProblem.INTERNATIONAL),
        ],
    )
    def test_refused(self, raw: str, problem: NumberProblem) -> None:
        got = check_callback_number(raw)
        assert not got.ok
        assert got.problem is problem
        assert got.dial == ""

    def test_international_when_the_tenant_allows(self) -> None:
        got = check_callback_number("+43 1 5125533", allow_international=True)
        assert got.ok and got.dial == "004315125533"

    def test_reason_never_holds_the_whole_number(self) -> None:
        got = check_callback_number("015112345678")
        assert "12345678" not in got.reason

    def test_prompt_per_problem(self) -> None:
        sounds = VirtualHoldSounds()
        assert sounds.prompt_for(NumberProblem.PREMIUM) == sounds.premium_number
        assert sounds.prompt_for(NumberProblem.EMERGENCY) == sounds.premium_number
        assert sounds.prompt_for(NumberProblem.INTERNATIONAL) == sounds.international_number
        assert sounds.prompt_for(NumberProblem.EMPTY) == sounds.enter_number
        assert sounds.prompt_for(NumberProblem.TOO_SHORT) == sounds.invalid_number


class TestHostileInput:
    @settings(max_examples=400, deadline=None)
    @given(st.text(max_size=80))
    def test_never_raises_and_dials_digits_only(self, raw: str) -> None:
        got = check_callback_number(raw, allow_international=True)
        assert got.ok == (got.problem is None)
        if got.ok:
            assert got.dial.isascii() and got.dial.isdigit()
            assert got.e164 is not None and got.e164[1:].isdigit()
        else:
            assert got.dial == ""

    @settings(max_examples=200, deadline=None)
    @given(st.from_regex(r"0[1-9][0-9]{3,12}", fullmatch=True))
    def test_accepted_national_numbers_dial_as_typed(self, raw: str) -> None:
        got = check_callback_number(raw)
        if got.ok:
            assert got.dial == raw
            assert got.e164 == "+49" + raw[1:]
