"""A discrete-event simulation of one half hour of the shared queue (SimPy), to check a forecast.

The Erlang formulas assume exponential handle times and patience; real handle
times are not exponential. :func:`simulate` therefore plays the queue out with

* Poisson arrivals at the forecast rate (``calls`` per ``interval_s``),
* handle times drawn from the journal's observed handle times (the empirical
  distribution: each call takes one of the sample's values at random),
* callers who abandon after an exponential patience with the observed mean
  (``None``: nobody abandons),
* ``agents`` agents serving first come, first served,

and measures the service level the way the report does over offered calls:
answered within ``threshold_s`` (inclusive) of every call that arrived in the
measured window (abandons count against it).

Each replication is a stationary run: a warm-up (``warmup_s``, calls not
counted) so the queue is not empty at the start, then ``measure_s`` of counted
arrivals, then the queue is drained so every counted call has its outcome.
Replications use independent seeded random streams, so a result is
reproducible, and their spread gives a confidence interval.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import simpy

from pbxbridge.core import servicelevel


@dataclass(frozen=True, slots=True)
class SimResult:
    """What the replications measured.

    Attributes:
        agents: Agents simulated.
        offered: Counted calls (arrived in the measured windows).
        answered: Of those, answered.
        answered_within: Answered within the threshold.
        abandoned: Hung up while waiting.
        mean_wait_answered_s: Mean wait of answered calls.
        levels: Service level of each replication (0..1).
    """

    agents: int
    offered: int
    answered: int
    answered_within: int
    abandoned: int
    mean_wait_answered_s: float
    levels: tuple[float, ...]

    @property
    def service_level(self) -> float:
        """Answered within the threshold, of all counted calls (0..1)."""
        return self.answered_within / self.offered if self.offered else 1.0

    @property
    def abandon(self) -> float:
        """Abandoned, of all counted calls (0..1)."""
        return self.abandoned / self.offered if self.offered else 0.0

    def confidence(self) -> tuple[float, float]:
        """A 95 % confidence interval of the service level over the replications.

        Normal approximation over the replications' levels (``t`` would widen it
        by a few percent for 10-20 replications; the tests' tolerances allow it).
        """
        if len(self.levels) < 2:
            return self.service_level, self.service_level
        half = 1.96 * statistics.stdev(self.levels) / math.sqrt(len(self.levels))
        return self.service_level - half, self.service_level + half


@dataclass(slots=True)
class _Tally:
    offered: int = 0
    answered: int = 0
    within: int = 0
    abandoned: int = 0
    wait_sum: float = 0.0


def _caller(
    env: simpy.Environment,
    agents: simpy.Resource,
    rng: random.Random,
    handle_times: Sequence[float],
    patience_s: float | None,
    threshold_s: float,
    tally: _Tally | None,
) -> Generator[Any, Any, None]:
    arrived = env.now
    with agents.request() as request:
        if patience_s is None:
            yield request
        else:
            give_up = env.timeout(rng.expovariate(1.0 / patience_s))
            outcome = yield request | give_up
            if request not in outcome:
                # Leaving the with block withdraws the request from the queue.
                if tally is not None:
                    tally.abandoned += 1
                return
        wait = env.now - arrived
        if tally is not None:
            tally.answered += 1
            tally.wait_sum += wait
            if servicelevel.answered_within(wait, threshold_s):
                tally.within += 1
        yield env.timeout(rng.choice(handle_times))


def _arrivals(
    env: simpy.Environment,
    agents: simpy.Resource,
    rng: random.Random,
    rate: float,
    until: float,
    counted_from: float,
    handle_times: Sequence[float],
    patience_s: float | None,
    threshold_s: float,
    tally: _Tally,
) -> Generator[Any, Any, None]:
    while True:
        yield env.timeout(rng.expovariate(rate))
        if env.now >= until:
            return
        counted = env.now >= counted_from
        if counted:
            tally.offered += 1
        env.process(
            _caller(
                env, agents, rng, handle_times, patience_s, threshold_s, tally if counted else None
            )
        )


def simulate(
    *,
    calls: float,
    interval_s: float,
    agents: int,
    handle_times: Sequence[float],
    patience_s: float | None,
    threshold_s: float,
    seed: int,
    replications: int = 20,
    warmup_s: float = 1800.0,
    measure_s: float = 4 * 3600.0,
) -> SimResult:
    """Simulate a stationary half hour's queue and measure its service level.

    Args:
        calls: Calls per ``interval_s`` (the forecast).
        interval_s: The interval those calls arrive in.
        agents: Agents (>= 1).
        handle_times: Observed handle times in seconds (non-empty).
        patience_s: Mean patience, or ``None`` (nobody abandons).
        threshold_s: Service-level threshold (inclusive).
        seed: Seed of the first replication's random stream.
        replications: Independent runs.
        warmup_s: Simulated time before calls are counted.
        measure_s: Simulated time whose arrivals are counted.

    Returns:
        The pooled counts and each replication's service level.

    Raises:
        ValueError: On no handle times, no agents or no calls.
    """
    if not handle_times:
        raise ValueError("the simulation needs observed handle times")
    if agents < 1 or calls <= 0:
        raise ValueError("the simulation needs calls and at least one agent")
    rate = calls / interval_s
    total = _Tally()
    levels: list[float] = []
    for n in range(replications):
        # Not for secrecy: a seeded stream per replication makes runs repeatable.
        rng = random.Random(seed * 1_000_003 + n)  # noqa: S311
        env = simpy.Environment()
        pool = simpy.Resource(env, capacity=agents)
        tally = _Tally()
        env.process(
            _arrivals(
                env,
                pool,
                rng,
                rate,
                warmup_s + measure_s,
                warmup_s,
                handle_times,
                patience_s,
                threshold_s,
                tally,
            )
        )
        env.run()  # to the end: arrivals stop, the queue drains
        levels.append(tally.within / tally.offered if tally.offered else 1.0)
        total.offered += tally.offered
        total.answered += tally.answered
        total.within += tally.within
        total.abandoned += tally.abandoned
        total.wait_sum += tally.wait_sum
    return SimResult(
        agents=agents,
        offered=total.offered,
        answered=total.answered,
        answered_within=total.within,
        abandoned=total.abandoned,
        mean_wait_answered_s=total.wait_sum / total.answered if total.answered else 0.0,
        levels=tuple(levels),
    )
