"""Staffing formulas: Erlang C (callers wait forever) and Erlang A (callers abandon).

Both answer the same question for one interval (say half an hour): with
``calls`` arriving at random (Poisson) over ``interval_s`` seconds, each taking
``aht_s`` seconds of an agent's time on average (talk plus wrap-up, exponential),
how many agents answer ``target_level`` of the calls within ``threshold_s``?

The offered load is ``A = calls * aht_s / interval_s`` Erlangs (busy agents
needed on average). The figures of :class:`Staffing`:

``service_level``
    Probability that a call is *answered* within ``threshold_s`` (inclusive),
    over all offered calls: an abandon counts against it. In Erlang C nobody
    abandons, so this is the textbook ``1 - C * exp(-(n - A) * t / aht)``.
``wait_probability``
    Probability that a caller has to queue (all ``n`` agents busy on arrival).
``asa_s``
    Average speed of answer: the mean wait of *answered* calls (those answered
    at once count with 0 s), as ``pbxbridge report``'s ``mean_wait_s``.
``occupancy``
    Share of the agents' time spent on calls: answered load over ``n``.
``abandon``
    Probability that a caller hangs up before being answered (Erlang A only).

**Erlang C** (M/M/n): the textbook formula, computed from the Erlang B
recursion ``B(k) = A*B(k-1) / (k + A*B(k-1))`` — never a factorial or a power
of ``A``, so hundreds of agents and loads are exact to rounding. With
``n <= A`` the queue grows without bound: service level 0, ASA infinite.

**Erlang A** (M/M/n+M, Palm's model; Garnett, Mandelbaum and Reiman 2002):
callers abandon after an exponential patience of mean ``patience_s``
(rate ``theta``). The stationary distribution is a birth–death chain; with
``x = n*mu/theta`` and ``y = lambda/theta`` the queue part sums to
``A(x, y) = sum_j y**j / prod_{i<=j}(x + i)``, and the wait of a caller
who finds ``j`` others queued satisfies ``exp(-theta*V) ~ Beta(x, j+1)``.
Summing over ``j`` gives the closed forms used here (the same as
Mandelbaum and Zeltyn's incomplete-gamma formulas)::

    pi_n                  = B / (1 + (A(x,y) - 1) * B)         (B: Erlang B)
    P(wait)               = pi_n * A(x,y)
    P(answered, 0<W<=t)   = pi_n * x * (S(x+1,y) - z**(x+1) * e**(y(1-z)) * S(x+1,y*z)),
                            z = exp(-theta*t)
    P(abandon)            = P(wait) - pi_n * x * S(x+1, y)
    E[W; answered]        = pi_n * x / theta * sum_k s_k * H_k

with ``S(a, w) = sum_k s_k``, ``s_k = w**k / prod_{i=0..k}(a + i)`` and
``H_k = sum_{i=0..k} 1/(a + i)``. Each series is summed in logarithms (terms
``exp(k*ln(w) - lgamma(a+k+1) + lgamma(a))``), so long patience and heavy
overload cannot overflow. Erlang A keeps a finite queue even with ``n < A``.

Robbins, Medeiros and Harrison (WSC 2010, "Does the Erlang C model fit in
real call centers?") show that Erlang C over-staffs when callers abandon;
``docs/staffing.md`` says when to use which.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Literal

from pbxbridge.core import servicelevel

Model = Literal["erlang-c", "erlang-a"]
MODELS: Final[tuple[Model, ...]] = ("erlang-c", "erlang-a")

MAX_AGENTS: Final = 10_000
"""Search limit of :func:`staffing` (far beyond any service centre)."""

_EPS: Final = 1e-17
"""Series terms below this share of the largest are dropped (below double precision)."""


@dataclass(frozen=True, slots=True)
class Staffing:
    """One interval staffed with ``agents`` (see the module docstring for each figure).

    Attributes:
        agents: Agents (``n``) the figures are for.
        traffic_erlangs: Offered load ``calls * aht_s / interval_s``.
        service_level: 0..1, answered within the threshold, over offered calls.
        wait_probability: 0..1, the caller has to queue.
        asa_s: Mean wait of answered calls (``math.inf`` for an unstable Erlang C queue).
        occupancy: 0..1, answered load per agent.
        abandon: 0..1, the caller abandons (always 0 in Erlang C).
        model: ``"erlang-c"`` or ``"erlang-a"``.
    """

    agents: int
    traffic_erlangs: float
    service_level: float
    wait_probability: float
    asa_s: float
    occupancy: float
    abandon: float
    model: Model


DEFAULT_TARGET: Final = f"{servicelevel.TARGET_PERCENT:g}/{servicelevel.THRESHOLD_S:g}"
"""The centre's promise as :func:`parse_target` reads it (``80/20``): the
service-level module's defaults, so that staffing plans for what is measured."""

_NUMBER = r"(\d+(?:[.,]\d+)?)"
_TARGET_RE = re.compile(rf"^\s*{_NUMBER}\s*%?\s*(?:/\s*{_NUMBER}\s*s?\s*)?$", re.IGNORECASE)


def parse_target(text: str) -> tuple[float, float]:
    """A service-level target as call centres write it: the one reader of it.

    ``pbxbridge staffing``/``forecast --target`` and the supervisor page's
    ``PBXBRIDGE_SL_TARGET`` both read it here, so a promise means the same to
    the plan and to the page that measures it.

    Accepted forms: ``PERCENT/SECONDS`` (``"80/20"``: 80 % answered within
    20 s), with an optional ``%`` after the percentage and ``s`` after the
    seconds (``"80%/20s"``), spaces anywhere around the parts
    (``" 80 / 20 "``), decimals with a point or a comma (``"82.5/15"``,
    ``"82,5/15"``); ``PERCENT`` alone (``"80"``) means within the default
    :data:`~pbxbridge.core.servicelevel.THRESHOLD_S` (20 s).

    Args:
        text: The target.

    Returns:
        ``(level, threshold_s)``, the level as a fraction (0.8).

    Raises:
        ValueError: If the text has none of these forms, the percentage is not
            above 0 and below 100, or the seconds are not above 0; the message
            names the text and what is expected.
    """
    match = _TARGET_RE.match(text)
    if match is None:
        raise ValueError(
            f"target {text!r}: expected PERCENT/SECONDS, e.g. 80/20 (80 % answered within 20 s)"
        )
    percent = float(match.group(1).replace(",", "."))
    seconds = match.group(2)
    threshold = float(seconds.replace(",", ".")) if seconds else servicelevel.THRESHOLD_S
    if not 0 < percent < 100:
        # 100 % is reached by no finite number of agents (calls arrive at random).
        raise ValueError(f"target {text!r}: the percentage must be above 0 and below 100")
    if threshold <= 0:
        # 0 s would count only calls answered with no wait at all (a call rings
        # first): no promise a centre makes, most likely a typo.
        raise ValueError(f"target {text!r}: the seconds must be above 0")
    return percent / 100, threshold


def erlang_b(agents: int, load: float) -> float:
    """Erlang B blocking probability by the stable recursion.

    Args:
        agents: Servers ``n >= 0``.
        load: Offered load in Erlangs (``>= 0``).

    Returns:
        ``B(n, A)``.
    """
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """Erlang C: probability that a caller has to wait (1 when ``n <= A``).

    Args:
        agents: Agents ``n``.
        load: Offered load in Erlangs.

    Returns:
        ``C(n, A) = n*B / (n - A*(1 - B))``.
    """
    if agents <= load:
        return 1.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1 - b))


def _check(calls: float, interval_s: float, aht_s: float, threshold_s: float) -> None:
    if not (math.isfinite(calls) and calls >= 0):
        raise ValueError(f"calls must be a number >= 0, got {calls!r}")
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"the interval must be > 0 seconds, got {interval_s!r}")
    if not (math.isfinite(aht_s) and aht_s > 0):
        raise ValueError(f"the handle time must be > 0 seconds, got {aht_s!r}")
    if not (math.isfinite(threshold_s) and threshold_s >= 0):
        raise ValueError(f"the threshold must be >= 0 seconds, got {threshold_s!r}")


def _patience(model: Model, patience_s: float | None) -> float:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (use {', '.join(MODELS)})")
    if model == "erlang-c":
        return math.inf
    if patience_s is None or not (patience_s > 0):
        raise ValueError("Erlang A needs the callers' mean patience (seconds, > 0)")
    return patience_s


def evaluate(
    calls: float,
    interval_s: float,
    aht_s: float,
    *,
    agents: int,
    threshold_s: float,
    model: Model = "erlang-c",
    patience_s: float | None = None,
) -> Staffing:
    """The figures of one interval staffed with ``agents``.

    Args:
        calls: Calls arriving in the interval (may be fractional: a forecast).
        interval_s: Length of the interval in seconds (1800 for half an hour).
        aht_s: Mean handle time (talk plus wrap-up) in seconds.
        agents: Agents staffed.
        threshold_s: Service-level threshold in seconds (answered within, inclusive).
        model: ``"erlang-c"`` or ``"erlang-a"``.
        patience_s: Mean patience in seconds (Erlang A only, required there).

    Returns:
        The figures.

    Raises:
        ValueError: On negative or non-finite inputs, ``agents < 0``, an
            unknown model or Erlang A without patience.
    """
    _check(calls, interval_s, aht_s, threshold_s)
    patience = _patience(model, patience_s)
    if agents < 0:
        raise ValueError(f"agents must be >= 0, got {agents}")
    load = calls * aht_s / interval_s
    if load == 0:
        return Staffing(agents, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, model)
    if model == "erlang-a":
        return _erlang_a(agents, load, aht_s, patience, threshold_s)
    if agents <= load:
        # Unstable: the queue (and every wait) grows without bound.
        return Staffing(agents, load, 0.0, 1.0, math.inf, 1.0, 0.0, model)
    pw = erlang_c(agents, load)
    spare = agents - load
    level = 1.0 - pw * math.exp(-spare * threshold_s / aht_s)
    return Staffing(agents, load, level, pw, pw * aht_s / spare, load / agents, 0.0, model)


def _digamma(x: float) -> float:
    """The digamma function for ``x > 0`` (recurrence up to 10, then the asymptotic series)."""
    shift = 0.0
    while x < 10.0:
        shift -= 1.0 / x
        x += 1.0
    inv = 1.0 / (x * x)
    return (
        shift
        + math.log(x)
        - 0.5 / x
        - inv * (1.0 / 12 - inv * (1.0 / 120 - inv * (1.0 / 252 - inv * (1.0 / 240))))
    )


def _series(a: float, w: float) -> tuple[float, float, float]:
    """``S(a, w)`` and ``sum_k s_k * H_k`` as ``(log_scale, S, SH)`` with ``S, SH`` scaled.

    The true values are ``exp(log_scale) * S`` and ``exp(log_scale) * SH``.
    """
    if w <= 0:
        return -math.log(a), 1.0, 1.0 / a
    log_w = math.log(w)
    base = math.lgamma(a)
    # The terms rise while w > a + k and fall after, like a Poisson weight
    # around the peak: start where they are below double precision of the
    # peak (12 standard deviations before it; long patience makes w huge)
    # and sum past the peak until they no longer count.
    peak = max(0, math.floor(w - a))
    log_peak = peak * log_w - math.lgamma(a + peak + 1) + base
    k = max(0, peak - math.ceil(12 * math.sqrt(w)) - 10)
    # H_k = sum_{i<k} 1/(a+i) = digamma(a+k) - digamma(a); summed for short runs.
    harmonic = _digamma(a + k) - _digamma(a) if k > 64 else sum(1.0 / (a + i) for i in range(k))
    total = 0.0
    weighted = 0.0
    while True:
        harmonic += 1.0 / (a + k)
        log_term = k * log_w - math.lgamma(a + k + 1) + base
        term = math.exp(log_term - log_peak)
        total += term
        weighted += term * harmonic
        if k > peak and term < _EPS * total:
            return log_peak, total, weighted
        k += 1


def _log_add(a: float, b: float) -> float:
    """``log(exp(a) + exp(b))`` without overflow."""
    if a == -math.inf:
        return b
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def _erlang_a(agents: int, load: float, aht_s: float, patience_s: float, t: float) -> Staffing:
    mu = 1.0 / aht_s
    lam = load * mu
    theta = 1.0 / patience_s
    if agents == 0:
        # Nobody answers: every caller abandons.
        return Staffing(0, load, 0.0, 1.0, math.inf, 0.0, 1.0, "erlang-a")
    b = erlang_b(agents, load)
    if b == 0.0:
        # Far more agents than load: all n busy is below double precision.
        return Staffing(agents, load, 1.0, 0.0, 0.0, load / agents, 0.0, "erlang-a")
    x = agents * mu / theta
    y = lam / theta
    log_x = math.log(x)
    # Everything in logarithms: with long patience and n < A the queue's sum
    # A(x, y) = x * S(x, y) exceeds the largest double.
    scale_q, s_q, _ = _series(x, y)
    log_queue = log_x + scale_q + math.log(s_q)
    # pi_n = B / (1 - B + A(x, y) * B)
    log_pi_n = math.log(b) - _log_add(
        math.log1p(-b) if b < 1.0 else -math.inf, log_queue + math.log(b)
    )
    p_wait = math.exp(log_pi_n + log_queue)
    scale, s_all, sh_all = _series(x + 1.0, y)
    base = log_pi_n + log_x + scale
    served_after_wait = math.exp(base + math.log(s_all))
    z = math.exp(-theta * t)
    if z > 0:
        scale_z, s_z, _ = _series(x + 1.0, y * z)
        log_tail = (x + 1.0) * math.log(z) + y * (1.0 - z) + scale_z
        # P(answered after more than t): pi_n * x * integral_0^z u^x e^(y(1-u)) du.
        answered_late = math.exp(log_pi_n + log_x + log_tail + math.log(s_z))
    else:
        answered_late = 0.0
    answered_late = min(served_after_wait, answered_late)
    level = (1.0 - p_wait) + served_after_wait - answered_late
    abandon = max(0.0, p_wait - served_after_wait)
    answered = 1.0 - abandon
    wait_sum = math.exp(base + math.log(sh_all)) / theta
    asa = wait_sum / answered if answered > 0 else math.inf
    occupancy = load * answered / agents
    return Staffing(
        agents,
        load,
        min(1.0, max(0.0, level)),
        min(1.0, p_wait),
        asa,
        min(1.0, occupancy),
        abandon,
        "erlang-a",
    )


def staffing(
    calls: float,
    interval_s: float,
    aht_s: float,
    *,
    target_level: float,
    threshold_s: float,
    model: Model = "erlang-c",
    patience_s: float | None = None,
    max_agents: int = MAX_AGENTS,
) -> Staffing:
    """The fewest agents whose service level reaches the target, with their figures.

    Args:
        calls: Calls arriving in the interval (may be fractional: a forecast).
        interval_s: Length of the interval in seconds.
        aht_s: Mean handle time (talk plus wrap-up) in seconds.
        target_level: Share to answer within the threshold, 0 < level < 1 (0.8).
        threshold_s: Service-level threshold in seconds (inclusive).
        model: ``"erlang-c"`` or ``"erlang-a"``.
        patience_s: Mean patience in seconds (Erlang A only, required there).
        max_agents: Give up above this many agents.

    Returns:
        The figures for the fewest agents reaching ``target_level``
        (0 agents without calls).

    Raises:
        ValueError: On bad inputs (see :func:`evaluate`), a target outside
            (0, 1), or when even ``max_agents`` do not reach it.
    """
    if not 0 < target_level < 1:
        raise ValueError(f"the target level must be in (0, 1), got {target_level!r}")
    _check(calls, interval_s, aht_s, threshold_s)
    _patience(model, patience_s)
    load = calls * aht_s / interval_s
    if load == 0:
        return evaluate(
            calls,
            interval_s,
            aht_s,
            agents=0,
            threshold_s=threshold_s,
            model=model,
            patience_s=patience_s,
        )

    def at(n: int) -> Staffing:
        return evaluate(
            calls,
            interval_s,
            aht_s,
            agents=n,
            threshold_s=threshold_s,
            model=model,
            patience_s=patience_s,
        )

    # Service level rises with every agent, so the fewest is found by doubling
    # the step until the target is met and then halving the gap (a dozen
    # evaluations for 800 agents, not hundreds). Erlang C needs more than A
    # agents to be stable at all; Erlang A may meet a target with fewer, but
    # not with fewer than target * A: n agents answer at most n/A of the calls.
    low = math.floor(load) + 1 if model == "erlang-c" else max(1, math.ceil(target_level * load))
    if low > max_agents:
        raise ValueError(f"more than {max_agents} agents would be needed")
    best = at(low)
    if best.service_level >= target_level:
        return best
    step = 1
    while True:  # invariant: at(low) misses the target
        high = min(low + step, max_agents)
        best = at(high)
        if best.service_level >= target_level:
            break
        if high == max_agents:
            raise ValueError(f"more than {max_agents} agents would be needed")
        low, step = high, step * 2
    while high - low > 1:  # at(low) misses, at(high) = best meets
        middle = (low + high) // 2
        result = at(middle)
        if result.service_level >= target_level:
            high, best = middle, result
        else:
            low = middle
    return best


__all__ = [
    "MAX_AGENTS",
    "MODELS",
    "Model",
    "Staffing",
    "erlang_b",
    "erlang_c",
    "evaluate",
    "parse_target",
    "staffing",
]
