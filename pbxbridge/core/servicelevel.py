"""Service level: the one definition, live (``/metrics``) and in history (``pbxbridge report``).

The partner municipalities are promised that more than 80 % of calls are
answered within 20 s. Two figures measure it, each a fraction of counts:

* over answered calls: ``answered_within / answered``;
* over offered calls, the usual call-centre convention that counts every
  abandon against the service level except *short* abandons (a misdial, a
  caller who changed their mind before anyone could have answered):
  ``answered_within / (offered - short_abandoned)``.

A call is answered within the threshold when it waited ``<= threshold_s``
("within 20 s" includes 20.0 s, as Asterisk's queue ``servicelevel`` does); an
abandon is short when it waited *less than* ``short_abandon_s``, and an abandon
of unknown wait is not short (it counts against the service level).

Who counts which calls as offered differs by purpose and stays with the caller:
the live figure sees answers and abandons as they happen, the report every
call that reached a queue (timeouts included). The fractions are kept as
integer pairs so that each consumer scales them without rounding twice: the
live gauge as a ratio, the report as a percentage, truncated to hundredths in
exact integer arithmetic when rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

THRESHOLD_S: Final = 20.0
"""Default service-level threshold in seconds (answered within, inclusive)."""
SHORT_ABANDON_S: Final = 5.0
"""Default short-abandon limit in seconds (abandons after less are short)."""
TARGET_PERCENT: Final = 80.0
"""Default promise: this share of calls (in percent) answered within :data:`THRESHOLD_S`."""


def answered_within(wait_s: float, threshold_s: float = THRESHOLD_S) -> bool:
    """Whether an answered call counts as answered within the service level.

    Args:
        wait_s: Seconds the caller waited until answered.
        threshold_s: The service-level threshold (inclusive).

    Returns:
        ``wait_s <= threshold_s``.
    """
    return wait_s <= threshold_s


def short_abandon(wait_s: float | None, short_abandon_s: float = SHORT_ABANDON_S) -> bool:
    """Whether an abandoned call is a short abandon (left out of the offered calls).

    Args:
        wait_s: Seconds the caller waited until hanging up (``None``: unknown).
        short_abandon_s: The limit (exclusive).

    Returns:
        ``wait_s < short_abandon_s``; ``False`` for an unknown wait.
    """
    return wait_s is not None and wait_s < short_abandon_s


@dataclass(frozen=True, slots=True)
class Fraction:
    """A figure as counts: ``num`` of ``den`` (undefined when ``den <= 0``).

    Attributes:
        num: Numerator.
        den: Denominator.
    """

    num: int
    den: int

    def ratio(self) -> float | None:
        """``num / den`` (0..1), or ``None`` without calls."""
        return self.num / self.den if self.den > 0 else None

    def percent(self) -> float | None:
        """``num * 100 / den``, or ``None`` without calls."""
        # int / int is correctly rounded, so 57 of 100 is exactly the float 57.0.
        return self.num * 100 / self.den if self.den > 0 else None

    def hundredths(self) -> int | None:
        """The percentage in hundredths of a percent, truncated (never rounded up).

        A report never shows a missed promise as met: 79.996 % is 7999.
        """
        return self.num * 10000 // self.den if self.den > 0 else None


def over_answered(answered_within: int, answered: int) -> Fraction:
    """Service level over answered calls.

    Args:
        answered_within: Answered within the threshold.
        answered: Answered.

    Returns:
        ``answered_within`` of ``answered``.
    """
    return Fraction(answered_within, answered)


def over_offered(answered_within: int, offered: int, short_abandoned: int) -> Fraction:
    """Service level over offered calls minus short abandons.

    Args:
        answered_within: Answered within the threshold.
        offered: Offered calls, short abandons included.
        short_abandoned: Short abandons among them.

    Returns:
        ``answered_within`` of ``offered - short_abandoned``.
    """
    return Fraction(answered_within, offered - short_abandoned)


def meets_target(fraction: Fraction, target_percent: float = TARGET_PERCENT) -> bool | None:
    """Whether a service level keeps the promise (``>= target``, in exact integer arithmetic).

    Args:
        fraction: The service level as counts.
        target_percent: The promised share in percent (may have decimals).

    Returns:
        ``num * 100 >= target * den``; ``None`` without calls.
    """
    if fraction.den <= 0:
        return None
    # Compare in hundredths of a percent so that 80 of 100 meets 80.0 exactly.
    return fraction.num * 10000 >= round(target_percent * 100) * fraction.den
