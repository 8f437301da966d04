"""Number normalisation and caller-name sanitising."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxbridge.core.numbers import (
    _fast_e164,
    is_withheld,
    normalize,
    printable,
    sanitize_display_name,
    shorten,
)


class TestNormalize:
    @pytest.mark.parametrize(
        ("raw", "e164"),
        [
            ("04407 73-0", "+494407730"),
            ("4407730", "+494407730"),  # carrier stripped the trunk prefix
            ("+49 4407 73-0", "+494407730"),
            ("0049 4407 730", "+494407730"),
            ("0171 1234567", "+491711234567"),
            ("115", "+49115"),
            ("+43 1 234567", "+431234567"),  # foreign: phonenumbers path
            ("+1 212 555 0100", "+12125550100"),
        ],
    )
    def test_formats(self, raw: str, e164: str) -> None:
        assert normalize(raw).e164 == e164

    @pytest.mark.parametrize(
        "raw", ["", "anonymous", "abc", "+", "0" * 70, "1" * 20, "\x00\x01", "04407;73"]
    )
    def test_not_a_number(self, raw: str) -> None:
        n = normalize(raw)
        assert n.e164 is None
        assert all(c.isprintable() for c in n.display)
        assert len(n.display) <= 33

    @settings(max_examples=3000, deadline=None)
    @given(
        prefix=st.sampled_from(["", "0", "00", "+", "+49", "0049", "049", "4", "49", "1"]),
        digits=st.text(alphabet="0123456789", min_size=1, max_size=17),
    )
    def test_fast_path_agrees_with_phonenumbers(self, prefix: str, digits: str) -> None:
        raw = prefix + digits
        fast = _fast_e164(raw, "49")
        if fast is None:
            return
        parsed = phonenumbers.parse(raw, "DE")
        assert fast == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    @settings(max_examples=500, deadline=None)
    @given(raw=st.text(max_size=200))
    def test_never_raises(self, raw: str) -> None:
        n = normalize(raw)
        assert n.e164 is None or (n.e164.startswith("+") and n.e164[1:].isdigit())


class TestWithheld:
    @pytest.mark.parametrize("raw", ["", "  ", "anonymous", "Anonymous", "unknown", "RESTRICTED"])
    def test_markers(self, raw: str) -> None:
        assert is_withheld(raw)

    def test_digits_are_not_withheld(self) -> None:
        assert not is_withheld("0441 123")


class TestSanitizeDisplayName:
    @pytest.mark.parametrize(
        ("raw", "clean"),
        [
            ("Jörg Müller", "Jörg Müller"),
            ('"Evil" <sip:x>', "Evil sip:x"),
            ("${SHELL(reboot)}", "SHELL(reboot)"),
            ("a;b,c|d", "a b c d"),
            ("line\\nbreak\r\nx", "line nbreak x"),
            ("\ufffd\ufffdName", "Name"),
            ("   spaced    out  ", "spaced out"),
            ("Ärztin Dr. O'Neil & Co.", "Ärztin Dr. O'Neil & Co."),
        ],
    )
    def test_cases(self, raw: str, clean: str) -> None:
        assert sanitize_display_name(raw) == clean

    def test_length_cut(self) -> None:
        assert len(sanitize_display_name("x" * 300)) == 80

    @settings(max_examples=500, deadline=None)
    @given(raw=st.text(max_size=1000))
    def test_no_dangerous_characters(self, raw: str) -> None:
        out = sanitize_display_name(raw)
        assert not set(out) & set("\"'$`{}[];,|\\<>\r\n\t\x00") - {"'"}
        assert len(out) <= 80
        assert out == out.strip()


class TestShortenAndPrintable:
    def test_shorten(self) -> None:
        assert shorten("+494411234567") == "+4944…67"
        assert shorten(None) == "withheld"
        assert shorten("+49115") == "+49115"

    def test_printable(self) -> None:
        assert printable("a\x00b\nc") == "a?b?c"
        assert printable("x" * 40) == "x" * 32 + "…"
