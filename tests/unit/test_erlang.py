"""Erlang C and Erlang A (pbxbridge.core.erlang) against independent values.

Expectations come from outside the code under test:

* the agent counts of the textbook example quoted in the project's staffing
  requirement (91 calls per 30 minutes at 180 s: 13 agents for 80/20, 12 for
  75/30; 136 calls: 17 for either) — the figures of the standard Erlang C
  tables (e.g. Call Centre Helper's Erlang C calculator);
* the published Erlang B table value B(10 lines, 5 Erlangs) = 0.01838
  (every Erlang B table, e.g. the ITU-T traffic tables);
* Erlang C and its service level recomputed here from the classical
  factorial form in exact rational arithmetic (``fractions.Fraction``), a
  different computation from the module's Erlang B recursion;
* Erlang A checked against the M/M/n+M birth-death chain solved in this test
  (truncated stationary distribution; the waiting-time probability by
  uniformisation of the tagged caller's queue position, the ASA by the
  first-step recursion of that chain) — no formula of the module reused.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from pbxbridge.core import erlang


def exact_erlang_c(agents: int, load: Fraction) -> Fraction:
    """C(n, A) from the textbook formula with factorials, exactly."""
    top = load**agents / math.factorial(agents) * Fraction(agents, 1) / (agents - load)
    bottom = sum(load**k / math.factorial(k) for k in range(agents)) + top
    return top / bottom


def birth_death(
    agents: int, lam: float, mu: float, theta: float, t: float, queue: int = 400
) -> dict[str, float]:
    """M/M/n+M figures from the chain itself (truncated ``queue`` places into the tail)."""
    cap = agents + queue
    weights = [1.0]
    for k in range(1, cap + 1):
        down = min(k, agents) * mu + max(0, k - agents) * theta
        weights.append(weights[-1] * lam / down)
    total = sum(weights)
    pi = [w / total for w in weights]
    p_wait = sum(pi[agents:])
    queued = sum((k - agents) * pi[k] for k in range(agents, cap + 1))
    abandon = theta * queued / lam  # abandons per arrival = theta * E[Q] / lambda
    # A caller who finds j queued is at position j (0 = next). From position k
    # the queue moves on at rate n*mu + k*theta; the caller abandons at theta.
    positions = pi[agents:]
    # Uniformisation of the tagged caller's killed chain up to time t.
    big = agents * mu + len(positions) * theta + theta
    steps = int(big * t + 12 * math.sqrt(big * t) + 30)
    dist = positions[:]
    served = 0.0
    weight = math.exp(-big * t)
    answered_by_t = 0.0
    for m in range(steps + 1):
        answered_by_t += weight * served
        new = [0.0] * len(dist)
        for k, p in enumerate(dist):
            if p == 0.0:
                continue
            move = (agents * mu + k * theta) / big
            stay = 1.0 - move - theta / big
            if k == 0:
                served += p * move
            else:
                new[k - 1] += p * move
            new[k] += p * stay
        dist = new
        weight *= big * t / (m + 1)
    # First-step recursion: P(answered) and E[wait; answered] from position k.
    p_ans, m_ans = 1.0, 0.0
    wait_answered = 0.0
    for k, p in enumerate(positions):
        rate = agents * mu + k * theta + theta
        go = (agents * mu + k * theta) / rate
        m_ans = go * (p_ans / rate + m_ans)
        p_ans = go * p_ans
        wait_answered += p * m_ans
    return {
        "wait_probability": p_wait,
        "abandon": abandon,
        "service_level": 1.0 - p_wait + answered_by_t,
        "asa_s": wait_answered / (1.0 - abandon),
        "occupancy": lam * (1.0 - abandon) / (agents * mu),
    }


class TestErlang:
    @pytest.mark.parametrize(
        ("calls", "target", "agents"),
        [(91, "80/20", 13), (91, "75/30", 12), (136, "80/20", 17), (136, "75/30", 17)],
    )
    def test_textbook_agents(self, calls: int, target: str, agents: int) -> None:
        level, threshold = erlang.parse_target(target)
        result = erlang.staffing(calls, 1800, 180, target_level=level, threshold_s=threshold)
        assert result.agents == agents
        assert result.model == "erlang-c" and result.abandon == 0.0
        # One agent fewer misses the target (the count is the fewest, not just enough).
        fewer = erlang.evaluate(calls, 1800, 180, agents=agents - 1, threshold_s=threshold)
        assert fewer.service_level < level

    def test_erlang_b_table_value(self) -> None:
        assert erlang.erlang_b(10, 5.0) == pytest.approx(0.01838, abs=5e-6)

    @pytest.mark.parametrize(
        ("agents", "calls", "aht"), [(13, 91, 180), (55, 360, 240), (3, 1, 900)]
    )
    def test_erlang_c_matches_exact_factorial_form(self, agents: int, calls: int, aht: int) -> None:
        load = Fraction(calls * aht, 1800)
        c = exact_erlang_c(agents, load)
        result = erlang.evaluate(calls, 1800, aht, agents=agents, threshold_s=20)
        assert result.wait_probability == pytest.approx(float(c), rel=1e-12)
        spare = float(agents - load)
        assert result.service_level == pytest.approx(
            1 - float(c) * math.exp(-spare * 20 / aht), rel=1e-12
        )
        assert result.asa_s == pytest.approx(float(c) * aht / spare, rel=1e-12)
        assert result.occupancy == pytest.approx(float(load / agents), rel=1e-12)
        assert result.traffic_erlangs == pytest.approx(float(load), rel=1e-15)

    def test_hundreds_of_agents_without_overflow(self) -> None:
        # 800 Erlangs: A**n / n! overflows a float long before this; the exact
        # form is slow but fine for one check.
        load = Fraction(800)
        c = exact_erlang_c(830, load)
        result = erlang.evaluate(8000, 1800, 180, agents=830, threshold_s=20)
        assert result.wait_probability == pytest.approx(float(c), rel=1e-10)
        big = erlang.staffing(8000, 1800, 180, target_level=0.8, threshold_s=20)
        assert big.agents > 800 and big.service_level >= 0.8
        assert (
            erlang.evaluate(8000, 1800, 180, agents=big.agents - 1, threshold_s=20).service_level
            < 0.8
        )

    def test_unstable_and_empty(self) -> None:
        unstable = erlang.evaluate(91, 1800, 180, agents=9, threshold_s=20)
        assert unstable.service_level == 0.0 and math.isinf(unstable.asa_s)
        empty = erlang.staffing(0, 1800, 180, target_level=0.8, threshold_s=20)
        assert (empty.agents, empty.service_level, empty.occupancy) == (0, 1.0, 0.0)

    @pytest.mark.parametrize(
        ("agents", "calls", "aht", "patience", "threshold"),
        [
            (10, 91, 180, 60, 20),
            (8, 91, 180, 120, 20),  # fewer agents than Erlangs: still a finite queue
            (13, 91, 180, 600, 30),
            (30, 300, 200, 45, 15),
        ],
    )
    def test_erlang_a_matches_birth_death_chain(
        self, agents: int, calls: int, aht: float, patience: float, threshold: float
    ) -> None:
        expected = birth_death(agents, calls / 1800, 1 / aht, 1 / patience, threshold)
        result = erlang.evaluate(
            calls,
            1800,
            aht,
            agents=agents,
            threshold_s=threshold,
            model="erlang-a",
            patience_s=patience,
        )
        for name, value in expected.items():
            assert getattr(result, name) == pytest.approx(value, rel=1e-7, abs=1e-9), name

    def test_erlang_a_long_queue_matches_birth_death_chain(self) -> None:
        # 80 agents for 100 Erlangs, patience 10,000 s: some 2,000 callers queue,
        # and the module's series start near their peak (the digamma path).
        expected = birth_death(80, 1.0, 1 / 100, 1 / 10_000, 20, queue=6000)
        result = erlang.evaluate(
            1800, 1800, 100, agents=80, threshold_s=20, model="erlang-a", patience_s=10_000
        )
        for name, value in expected.items():
            assert getattr(result, name) == pytest.approx(value, rel=1e-6, abs=1e-9), name

    def test_erlang_a_tends_to_erlang_c_and_staffs_fewer(self) -> None:
        c = erlang.evaluate(91, 1800, 180, agents=12, threshold_s=20)
        a = erlang.evaluate(
            91, 1800, 180, agents=12, threshold_s=20, model="erlang-a", patience_s=1e9
        )
        assert a.service_level == pytest.approx(c.service_level, rel=1e-6)
        assert a.asa_s == pytest.approx(c.asa_s, rel=1e-5)
        # Callers who abandon free the queue: Erlang C over-staffs (Robbins et al. 2010).
        with_abandons = erlang.staffing(
            91, 1800, 180, target_level=0.8, threshold_s=20, model="erlang-a", patience_s=60
        )
        assert with_abandons.agents < 13 and with_abandons.abandon > 0

    def test_erlang_a_heavy_overload_long_patience(self) -> None:
        # y = lambda/theta = 10,000: the series would overflow without logarithms.
        result = erlang.evaluate(
            3600, 1800, 300, agents=400, threshold_s=20, model="erlang-a", patience_s=5000
        )
        assert 0 < result.service_level < 1 and math.isfinite(result.asa_s)
        # Capacity 400/300 per s against 2 per s offered: a third must abandon.
        assert result.abandon == pytest.approx(1 - (400 / 300) / 2, abs=0.01)

    def test_erlang_a_very_long_patience_at_scale(self) -> None:
        # 800 Erlangs, patience of 11 days: Erlang A is Erlang C (checked against
        # the exact factorial form above), found without summing millions of terms.
        a = erlang.staffing(
            8000, 1800, 180, target_level=0.8, threshold_s=20, model="erlang-a", patience_s=1e6
        )
        c = erlang.staffing(8000, 1800, 180, target_level=0.8, threshold_s=20)
        assert a.agents == c.agents
        assert a.service_level == pytest.approx(c.service_level, abs=1e-3)
        # Fewer agents than Erlangs: the queue is still finite, the surplus abandons.
        over = erlang.evaluate(
            3600, 1800, 300, agents=400, threshold_s=20, model="erlang-a", patience_s=1e7
        )
        assert over.abandon == pytest.approx(1 / 3, rel=1e-6) and over.occupancy <= 1.0

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("80/20", (0.8, 20.0)),
            ("80%/20s", (0.8, 20.0)),
            (" 80 / 20 ", (0.8, 20.0)),
            ("82,5 % / 15 s", (0.825, 15.0)),
            ("82.5/15.5", (0.825, 15.5)),
            ("80/20S", (0.8, 20.0)),
            ("99.9/1", (0.999, 1.0)),
            # The percentage alone: within the default 20 s (the page always took it).
            ("80", (0.8, 20.0)),
            (" 75 % ", (0.75, 20.0)),
        ],
    )
    def test_parse_target(self, text: str, expected: tuple[float, float]) -> None:
        assert erlang.parse_target(text) == pytest.approx(expected, abs=1e-12)

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("abc", "expected PERCENT/SECONDS, e.g. 80/20"),
            ("", "expected PERCENT/SECONDS"),
            ("a/b", "expected PERCENT/SECONDS"),
            ("80/", "expected PERCENT/SECONDS"),
            ("/20", "expected PERCENT/SECONDS"),
            ("80/20/5", "expected PERCENT/SECONDS"),
            ("80/-1", "expected PERCENT/SECONDS"),
            ("80s/20%", "expected PERCENT/SECONDS"),
            ("inf/20", "expected PERCENT/SECONDS"),
            ("nan/20", "expected PERCENT/SECONDS"),
            ("1e2/20", "expected PERCENT/SECONDS"),
            ("0/20", "percentage must be above 0 and below 100"),
            ("100/20", "percentage must be above 0 and below 100"),
            ("101/20", "percentage must be above 0 and below 100"),
            ("120", "percentage must be above 0 and below 100"),
            ("80/0", "seconds must be above 0"),
            ("90/0,0", "seconds must be above 0"),
        ],
    )
    def test_parse_target_refuses(self, text: str, reason: str) -> None:
        with pytest.raises(ValueError, match=r"^target ") as raised:
            erlang.parse_target(text)
        # The message names the value as given, so the operator finds it.
        assert repr(text) in str(raised.value)
        assert reason in str(raised.value)

    def test_refuses_bad_input(self) -> None:
        with pytest.raises(ValueError, match="patience"):
            erlang.staffing(10, 1800, 180, target_level=0.8, threshold_s=20, model="erlang-a")
        with pytest.raises(ValueError, match="interval"):
            erlang.evaluate(10, 0, 180, agents=1, threshold_s=20)
        with pytest.raises(ValueError, match="target level"):
            erlang.staffing(10, 1800, 180, target_level=1.0, threshold_s=20)
