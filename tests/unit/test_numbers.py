"""Number normalisation and caller-name sanitising."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxbridge.core.numbers import (
    _fast_e164,
    is_withheld,
    mask_numbers,
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

    @pytest.mark.parametrize(
        ("raw", "short"),
        [
            ("tel:+494411234567", "tel:+…67"),
            ("0441/1234567;cpc=x", "0441/…=x"),
            ("<script>alert(1)</script>", "<scri…t>"),
            ("1234567", "12…67"),  # a 7-digit local number keeps 3 digits hidden
            ("123456", "1…56"),
            ("12345", "12345"),
            ("\x1b[31m\n", "?[31m?"),
            ("anonymous", "anon…us"),
        ],
    )
    def test_shorten_any_caller_string(self, raw: str, short: str) -> None:
        assert shorten(raw) == short

    @settings(max_examples=2000, deadline=None)
    @given(
        raw=st.one_of(
            st.text(max_size=300),
            st.from_regex(r"(tel:|sip:)?\+?[0-9 \-/();=a-z]{0,60}", fullmatch=True),
        )
    )
    def test_shorten_never_keeps_six_digits_in_a_row(self, raw: str) -> None:
        out = shorten(raw)
        assert not re.search(r"\d{6}", out)
        assert not any(unicodedata.category(c)[0] == "C" for c in out)
        assert len(out) <= 8
        digits = "".join(c for c in raw if c.isdigit())
        if len(digits) >= 6:  # some of a real number always stays hidden
            assert sum(c.isdigit() for c in out) < len(digits)

    def test_mask_numbers_in_free_text(self) -> None:
        text = (
            'value "+494411234567" is out of range; Failing row contains '
            "(n1, 0441 123-4567, 127.0.0.1, 5432)"
        )
        assert mask_numbers(text) == (
            'value "+4944…67" is out of range; Failing row contains (n1, 0441 …67, 127.0.0.1, 5432)'
        )
