"""Phone numbers and caller names: normalisation and sanitising.

Asterisk hands us numbers in whatever shape the trunk delivered them:
``04407730``, ``4407730`` (national prefix stripped by the carrier),
``+494407730``, ``00494407730``, ``115``, ``anonymous`` or garbage. The core
compares numbers in E.164 only, so every DID and caller goes through
:func:`normalize` once.

phonenumbers is the reference, but one ``parse`` costs ~10 µs, which would
use up the routing budget (p99 ≤ 20 µs per decision) on its own. For the
shapes that make up nearly all traffic (digits with an optional ``+``/``00``/
``0`` prefix) we compute the same result directly; a hypothesis test asserts
that this fast path agrees with phonenumbers. Everything else goes to
phonenumbers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

WITHHELD_WORDS = frozenset(
    {
        "anonymous",
        "anonym",
        "unknown",
        "unavailable",
        "restricted",
        "private",
        "withheld",
        "unterdrueckt",
        "unterdrückt",
        "asterisk",
    }
)
"""Caller "numbers" that mean the caller is not identified (case-insensitive)."""

_SEPARATORS = frozenset(" -/().\t")
_DIGITS = frozenset("0123456789")
_PLAIN_NAME = re.compile(r"[^\W_]+(?:[ .'-][^\W_]+)*\.?")
"""Names made of letters/digits with single inner separators need no cleaning."""
MAX_DISPLAY_NAME = 80
"""Caller names are cut to this many characters (SIP allows far more)."""


@dataclass(frozen=True, slots=True)
class Number:
    """A normalised number.

    Attributes:
        e164: E.164 form (``+494407730``), or ``None`` when not a usable number.
        display: What to show in traces: the E.164 form, or a cleaned copy of the
            input (printable, at most 32 characters) when it is not a number.
    """

    e164: str | None
    display: str


@lru_cache(maxsize=64)
def _country_code(region: str) -> str:
    return str(phonenumbers.country_code_for_region(region))


def clean_digits(raw: str) -> str | None:
    """Strip visual separators; return ``+digits``/``digits`` or ``None``.

    Args:
        raw: The number as received.

    Returns:
        The number without separators, or ``None`` when it contains anything
        other than an optional leading ``+``, digits and separators.
    """
    out: list[str] = []
    for ch in raw:
        if ch in _DIGITS or (ch == "+" and not out):
            out.append(ch)
        elif ch in _SEPARATORS:
            continue
        else:
            return None
    return "".join(out)


def printable(raw: str, limit: int = 32) -> str:
    """A short, printable copy of untrusted text for traces and logs.

    Args:
        raw: Untrusted text.
        limit: Maximum length of the result (an ellipsis marks a cut).

    Returns:
        ``raw`` with control and format characters replaced by ``?``, cut to ``limit``.
    """
    cut = raw[: limit + 1]
    text = "".join("?" if unicodedata.category(c)[0] == "C" else c for c in cut[:limit])
    return text + "…" if len(cut) > limit else text


def _fast_e164(digits: str, country_code: str) -> str | None:
    """E.164 for the common shapes, as phonenumbers would produce them.

    Only for regions whose trunk prefix is ``0`` and international prefix ``00``
    (DE, AT, FR, NL, …); the caller guarantees that.
    """
    if digits.startswith("+"):
        body = digits[1:]
    elif digits.startswith("00"):
        body = digits[2:]
    elif digits.startswith("0"):
        if digits[1:2] == "0":
            return None
        body = country_code + digits[1:]
    elif digits.startswith(country_code):
        return None  # phonenumbers guesses whether "49…" means +49; follow its guess
    else:
        body = country_code + digits
    if not body.startswith(country_code):
        return None  # foreign numbers are rare; phonenumbers knows their rules
    # 8..15 digits covers every fixed/mobile number; shorter ones (short codes
    # like 115) and the country-code-specific national-prefix quirks inside the
    # number ("+49 0441…") go to phonenumbers for an exact answer.
    # Bare short codes (115, 110) are common and safe; prefixed short strings
    # ("0441") are treated specially by phonenumbers, so they take its path.
    shortest = len(country_code) + 3 if digits[0] in "123456789" else 7
    if not shortest <= len(body) <= 15 or body[len(country_code) : len(country_code) + 1] == "0":
        return None
    return "+" + body


_FAST_REGIONS = frozenset({"DE", "AT", "CH", "FR", "NL", "BE", "DK", "PL", "CZ", "LU"})


def normalize(raw: str, region: str = "DE") -> Number:
    """Normalise a dialled or calling number to E.164.

    Never raises, for any input.

    Args:
        raw: The number as Asterisk reported it.
        region: Default region for numbers without a country code.

    Returns:
        The normalised number. ``e164`` is ``None`` when the input is empty, a
        withheld marker, or not a phone number; short codes (``115``) get their
        E.164 form in the region (``+49115``).
    """
    digits = clean_digits(raw[:64]) if len(raw) <= 64 else None
    if digits is None or not digits.strip("+"):
        return Number(None, printable(raw))
    if region in _FAST_REGIONS and digits[0] in "+0123456789":
        fast = _fast_e164(digits, _country_code(region))
        if fast is not None:
            return Number(fast, fast)
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return Number(None, printable(raw))
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) > 16:  # E.164 allows at most 15 digits
        return Number(None, printable(raw))
    return Number(e164, e164)


def is_withheld(raw: str) -> bool:
    """Whether a caller "number" means the caller is not identified.

    Args:
        raw: ``CALLERID(num)`` as received.

    Returns:
        True for empty strings and the usual withheld markers.
    """
    stripped = raw.strip()
    return not stripped or stripped.casefold() in WITHHELD_WORDS


def sanitize_display_name(raw: str, limit: int = MAX_DISPLAY_NAME) -> str:
    """Make an untrusted caller-ID name safe to store, show and hand to Asterisk.

    The name comes from the calling network and is attacker-controlled. We keep
    letters, digits, spaces and harmless punctuation only: no quotes (SIP
    display-name quoting), no ``$``/``{``/``}`` (dialplan expressions), no
    ``;``/``,``/``|`` (argument separators), no backslashes or control
    characters (escaped newlines), and we cut it to ``limit`` characters.

    Args:
        raw: The caller-ID name as received (already decoded; invalid UTF-8 is
            expected to arrive as U+FFFD replacement characters).
        limit: Maximum length.

    Returns:
        The sanitised name, whitespace collapsed; possibly empty.
    """
    if (
        len(raw) <= limit
        and _PLAIN_NAME.fullmatch(raw)
        and "\ufffd" not in raw
        and unicodedata.is_normalized("NFC", raw)
    ):
        return raw  # the common case: a plain name, nothing to remove
    out: list[str] = []
    space = False
    for ch in unicodedata.normalize("NFC", raw[: limit * 4]):
        cat = unicodedata.category(ch)
        if ch.isspace() or cat[0] == "C" or cat[0] == "Z":
            space = bool(out)
            continue
        if cat[0] in "LN" or ch in "-.'&+@/:()_#*":
            if ch == "\ufffd":
                continue
            if space:
                out.append(" ")
                space = False
            out.append(ch)
        else:
            space = bool(out)
        if len(out) >= limit:
            break
    return "".join(out)[:limit].strip()


def shorten(number: str | None) -> str:
    """Shorten a caller "number" for reasons and info-level logs (personal data).

    Whatever the input, E.164 or hostile garbage (``tel:+494411234567``,
    ``0441/1234567;cpc=x``, 300 characters of markup), the result holds at most
    five leading and two trailing characters of it around a ``…``, so no run of
    more than five of the caller's digits survives; an input short enough to
    be kept whole holds at most five digits. Enough to tell area codes and
    callers apart in a trace, not enough to call anyone back.

    Args:
        number: E.164 number, the raw caller string, or ``None``.

    Returns:
        ``+4944…67`` for ``+494411234567``; short codes (``115``, ``+49115``)
        unchanged; control characters as ``?``; ``"withheld"`` for ``None``
        or ``""``.
    """
    if not number:
        return "withheld"
    head = printable(number[:8], 8)
    if len(number) <= 7 and sum(c.isdigit() for c in number) <= 5:
        return head
    # At least three characters stay hidden, also in six- or seven-character
    # local numbers ("1234567" -> "12…67").
    keep = min(5, len(number) - 5)
    return f"{head[: max(1, keep)]}…{printable(number[-2:], 2)}"


_DIGIT_RUN = re.compile(r"\+?\d(?:[ \-/()]?\d){5,}")
"""Six or more digits, possibly with single separators between them (not dots,
so that addresses such as ``127.0.0.1`` in an error message stay readable)."""


def mask_numbers(text: str) -> str:
    """``text`` with every number of six or more digits shortened (:func:`shorten`).

    For free text that may quote a caller's number: database error messages
    (``value "+494411234567" is out of range``), for example.

    Args:
        text: Any text.

    Returns:
        The text with such numbers replaced by their :func:`shorten` form.
    """
    return _DIGIT_RUN.sub(lambda m: shorten(m.group()), text)
