"""The reconnect policy shared by every adapter (ARI, AMI, MQTT, journal)."""

from __future__ import annotations

import random
from collections.abc import Callable

_MAX_BACKOFF_EXPONENT = 30  # 2**30 * any sane initial delay is far past any cap


def backoff_delay(
    failures: int,
    initial: float,
    maximum: float,
    *,
    rand: Callable[[], float] = random.random,
) -> float:
    """Compute the wait before the next connection attempt.

    Capped exponential backoff with "equal jitter": the ceiling doubles with every
    consecutive failure up to ``maximum`` and the result is drawn uniformly from
    ``[ceiling / 2, ceiling]``. Never drawing below half the ceiling is what keeps
    a refusing server (wrong password, ACL) from being hammered even with unlucky
    random numbers, while the jitter still spreads several clients apart after a
    restart of Asterisk or the broker.

    Args:
        failures: Consecutive failures so far (values below 1 count as 1).
        initial: Ceiling after the first failure, in seconds.
        maximum: Upper bound for the ceiling, in seconds.
        rand: Source of uniform numbers in ``[0, 1]`` (injectable for tests).

    Returns:
        The delay in seconds, within ``[initial / 2, maximum]``.
    """
    exponent = min(max(failures - 1, 0), _MAX_BACKOFF_EXPONENT)
    ceiling = min(maximum, initial * 2.0**exponent)
    return ceiling / 2.0 + (ceiling / 2.0) * rand()
