"""Callback numbers: may a number be called back, and how is it dialled (pure).

Virtual hold (:mod:`pbxbridge.core.virtual_hold`) calls citizens back through
the outbound trunk, at the service centre's cost and under its name. Only
numbers of real subscribers in the tenant's country qualify: no emergency or
service short codes, no premium-rate, shared-cost or personal (forwarding)
numbers, no local numbers without area code; foreign numbers only when the
tenant allows them. Normalisation is :func:`pbxbridge.core.numbers.normalize`'s
(one copy); phonenumbers knows the numbering plan (valid lengths, line types).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import phonenumbers

from pbxbridge.core.numbers import clean_digits, normalize, shorten


class NumberProblem(StrEnum):
    """Why a callback number was refused (each picks its own prompt)."""

    EMPTY = "empty"
    """Nothing was entered (or the caller is withheld and typed nothing)."""
    NOT_DIGITS = "not_digits"
    """Letters, ``*`` or other characters (SIP INFO can carry anything)."""
    TOO_SHORT = "too_short"
    """Too few digits, or a local number without area code."""
    TOO_LONG = "too_long"
    """More digits than a number has."""
    PREMIUM = "premium"
    """Costs money to call or forwards anywhere: 0900, 0137, 0180, 0190, 0700, 012 …"""
    EMERGENCY = "emergency"
    """110 or 112: never called back by a machine."""
    SERVICE = "service"
    """Short service numbers: 115, 116xxx, 118xx, test numbers."""
    INTERNATIONAL = "international"
    """A foreign number, and the tenant does not allow those."""
    INVALID = "invalid"
    """Not a number that exists in the numbering plan."""


_EMERGENCY: Final = frozenset({"110", "112"})
_SERVICE_PREFIXES: Final = ("115", "116", "118", "31")
"""National numbers (without the 0) that are services, not people: 115, 116xxx
(116117 …), 118xx directory enquiries, 031x test numbers."""
_PREMIUM_PREFIXES: Final = (
    "900",
    "137",
    "138",
    "180",
    "190",
    "191",
    "192",
    "193",
    "194",
    "700",
    "12",
)
"""National numbers (without the 0) that cost the caller money or forward anywhere:
0900 premium, 0137/0138 mass calls, 0180x shared cost, 0190x/0191-0194 old
premium and online services, 0700 personal numbers, 012 innovative services."""
_CALLABLE_TYPES: Final = frozenset(
    {
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        phonenumbers.PhoneNumberType.VOIP,
        phonenumbers.PhoneNumberType.TOLL_FREE,
    }
)
_MIN_NATIONAL_DIGITS: Final = 5
"""A German national number has at least an area code and a short subscriber number."""


@dataclass(frozen=True, slots=True)
class NumberCheck:
    """The verdict on a callback number.

    Attributes:
        ok: The number may be called back.
        e164: Its E.164 form (``None`` when refused for its shape).
        dial: What the outbound context dials: digits only, national form for
            numbers of the tenant's country (``04407730``), ``00`` and the
            country code for foreign ones; ``""`` when refused.
        problem: Why it was refused, ``None`` when ok.
        reason: Short text for traces (the number shortened).
    """

    ok: bool
    e164: str | None
    dial: str
    problem: NumberProblem | None
    reason: str


def _refused(problem: NumberProblem, reason: str, e164: str | None = None) -> NumberCheck:
    return NumberCheck(False, e164, "", problem, reason)


def check_callback_number(
    raw: str, *, region: str = "DE", allow_international: bool = False
) -> NumberCheck:
    """Whether a number typed by the caller (or their caller ID) may be called back.

    Accepted: numbers of the tenant's country in national (``04407 730``) or
    international form (``+49 4407 730``, ``0049 4407 730``) that are fixed,
    mobile, VoIP (032) or toll-free lines. Refused: emergency numbers, service
    short codes, premium and shared-cost numbers, personal (0700) numbers,
    local numbers without area code, anything the numbering plan does not
    know, and foreign numbers unless ``allow_international``.

    Args:
        raw: What the caller typed (DTMF digits) or ``CALLERID(num)``; any text.
        region: The rules' region (``DE``).
        allow_international: The tenant calls foreign numbers back.

    Returns:
        The verdict. Never raises.
    """
    text = raw.strip()
    if not text:
        return _refused(NumberProblem.EMPTY, "no number entered")
    digits = clean_digits(text[:64])
    if digits is None or not digits.strip("+"):
        return _refused(NumberProblem.NOT_DIGITS, "not a number")
    bare = digits.lstrip("+")
    if bare in _EMERGENCY:
        return _refused(NumberProblem.EMERGENCY, f"emergency number {bare}")
    if not digits.startswith(("0", "+")):
        if bare.startswith(_SERVICE_PREFIXES[:3]):
            return _refused(NumberProblem.SERVICE, f"service number {shorten(bare)}")
        # A local number: we do not know the caller's area code.
        return _refused(NumberProblem.TOO_SHORT, "no area code")
    if len(bare) > 17:
        return _refused(NumberProblem.TOO_LONG, f"{len(bare)} digits")
    number = normalize(digits, region)
    if number.e164 is None:
        if len(bare) > 15:  # E.164 has at most 15 digits
            return _refused(NumberProblem.TOO_LONG, f"{len(bare)} digits")
        return _refused(NumberProblem.INVALID, "not a phone number")
    e164 = number.e164
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return _refused(NumberProblem.INVALID, "not a phone number")
    home = str(phonenumbers.country_code_for_region(region))
    national = phonenumbers.national_significant_number(parsed)
    short = shorten(e164)
    if str(parsed.country_code) == home:
        if national in _EMERGENCY:
            return _refused(NumberProblem.EMERGENCY, f"emergency number {national}", e164)
        if national.startswith(_SERVICE_PREFIXES):
            return _refused(NumberProblem.SERVICE, f"service number {short}", e164)
        if national.startswith(_PREMIUM_PREFIXES):
            return _refused(NumberProblem.PREMIUM, f"premium or shared-cost number {short}", e164)
        if len(national) < _MIN_NATIONAL_DIGITS:
            return _refused(NumberProblem.TOO_SHORT, f"{len(national)} digits", e164)
    elif not allow_international:
        return _refused(NumberProblem.INTERNATIONAL, f"foreign number {short}", e164)
    if not phonenumbers.is_valid_number(parsed):
        possible = phonenumbers.is_possible_number_with_reason(parsed)
        if possible in (
            phonenumbers.ValidationResult.TOO_SHORT,
            phonenumbers.ValidationResult.INVALID_LENGTH,
        ):
            return _refused(NumberProblem.TOO_SHORT, f"too short: {short}", e164)
        if possible == phonenumbers.ValidationResult.TOO_LONG:
            return _refused(NumberProblem.TOO_LONG, f"too long: {short}", e164)
        return _refused(NumberProblem.INVALID, f"no such number: {short}", e164)
    kind = phonenumbers.number_type(parsed)
    if kind not in _CALLABLE_TYPES:
        return _refused(NumberProblem.PREMIUM, f"not a subscriber line: {short}", e164)
    if str(parsed.country_code) == home:
        # The trunk prefix of the region (0 in DE/AT/…) plus the national number.
        prefix = phonenumbers.ndd_prefix_for_region(region, True) or ""
        dial = prefix + national
    else:
        dial = "00" + e164[1:]
    return NumberCheck(True, e164, dial, None, f"callback number {short}")
