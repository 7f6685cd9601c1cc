"""Thompson allocation against independent references, with its floors, burn-in and rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from abpilot.bandits.thompson import (
    ArmData,
    Method,
    ThompsonConfig,
    allocate,
    floor_weights,
    posterior_of,
    probability_best_exact,
    probability_best_monte_carlo,
    round_weights,
)


def quad_reference(posteriors: list[tuple[float, float]]) -> list[float]:
    dists = [stats.beta(a, b) for a, b in posteriors]
    out = []
    for i, d in enumerate(dists):

        def f(x: float, i: int = i, d: object = d) -> float:
            return float(
                dists[i].pdf(x) * math.prod(o.cdf(x) for j, o in enumerate(dists) if j != i)
            )

        out.append(integrate.quad(f, d.ppf(1e-15), d.isf(1e-15), epsabs=1e-14, limit=400)[0])
    return out


CASES = [
    [(4, 8), (10, 4)],
    [(321, 9779), (421, 9679), (381, 9719)],
    [(1 + s, 99 + 10_000 - s) for s in (300, 320, 340, 360, 380, 400, 420, 440, 460, 480)],
    [(1, 1), (1, 1), (1, 1)],
]


@pytest.mark.parametrize("posteriors", CASES)
def test_exact_probabilities_match_quadrature(posteriors: list[tuple[float, float]]) -> None:
    assert np.allclose(probability_best_exact(posteriors), quad_reference(posteriors), atol=1e-9)


@pytest.mark.parametrize("posteriors", CASES[:3])
def test_exact_agrees_with_a_million_draws(posteriors: list[tuple[float, float]]) -> None:
    draws = 1_000_000
    sampled = probability_best_monte_carlo(posteriors, draws, np.random.default_rng(7))
    exact = probability_best_exact(posteriors)
    for p, q in zip(exact, sampled, strict=True):
        # Five standard errors of a binomial share.
        assert abs(p - q) <= 5 * math.sqrt(max(p * (1 - p), 1e-12) / draws) + 1e-6


def test_ad_team_posterior() -> None:
    # docs/architecture.md §3: 320 clicks on 10,000 impressions under Beta(1, 99) give
    # Beta(321, 9779).
    config = ThompsonConfig(prior_alpha=1, prior_beta=99)
    assert posterior_of(ArmData("a", 10_000, 320), config) == (321, 9779)


def test_monte_carlo_is_reproducible_from_its_seed() -> None:
    arms = [ArmData("a", 1000, 30), ArmData("b", 1000, 42), ArmData("c", 1000, 38)]
    config = ThompsonConfig(method=Method.MONTE_CARLO)
    first = allocate(arms, config, configured=[1 / 3] * 3, seed=123)
    again = allocate(arms, config, configured=[1 / 3] * 3, seed=123)
    assert first == again
    assert (first.method, first.seed) == ("monte_carlo", 123)
    unseeded = allocate(arms, config, configured=[1 / 3] * 3)
    assert unseeded.seed is not None
    assert allocate(arms, config, configured=[1 / 3] * 3, seed=unseeded.seed) == unseeded


def test_burn_in_keeps_configured_weights() -> None:
    arms = [ArmData("a", 99, 10), ArmData("b", 5000, 400)]
    result = allocate(arms, ThompsonConfig(min_trials=100), configured=[0.5, 0.5])
    assert result.burn_in
    assert result.weights == (0.5, 0.5)
    assert result.probability_best is not None
    after = allocate(
        [ArmData("a", 100, 10), ArmData("b", 5000, 400)], ThompsonConfig(), configured=[0.5, 0.5]
    )
    assert not after.burn_in


def test_floor_keeps_every_arm_explored() -> None:
    arms = [ArmData("a", 10_000, 100), ArmData("b", 10_000, 500), ArmData("c", 10_000, 120)]
    result = allocate(arms, ThompsonConfig(min_weight=0.05), configured=[1 / 3] * 3)
    assert result.weights == (0.05, 0.9, 0.05)
    assert allocate(arms, ThompsonConfig(min_weight=0.0), configured=[1 / 3] * 3).weights == (
        0.0,
        1.0,
        0.0,
    )


def test_floor_is_water_filling() -> None:
    # 0.3 and 0.69 keep their ratio after two arms are raised to the floor.
    weights = floor_weights([0.3, 0.69, 0.005, 0.005], 0.02)
    assert weights[2:] == [0.02, 0.02]
    assert weights[0] / weights[1] == pytest.approx(0.3 / 0.69)
    assert sum(weights) == pytest.approx(1.0)


@settings(max_examples=300)
@given(
    st.lists(st.floats(min_value=0, max_value=1), min_size=2, max_size=12).filter(
        lambda w: sum(w) > 0
    ),
    st.sampled_from([0.0, 0.01, 0.02, 0.05]),
)
def test_rounded_weights_sum_to_one_and_respect_the_floor(
    raw: list[float], min_weight: float
) -> None:
    if min_weight * len(raw) > 1:
        return
    weights = round_weights(floor_weights(raw, min_weight), min_weight)
    points = [round(w * 10_000) for w in weights]
    assert sum(points) == 10_000
    assert all(abs(w * 10_000 - p) < 1e-9 for w, p in zip(weights, points, strict=True))
    assert all(w >= min_weight - 1e-12 for w in weights)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5_000), min_size=2, max_size=6))
def test_more_successes_never_lower_an_arms_probability(successes: list[int]) -> None:
    arms = [ArmData(str(i), 5_000, s) for i, s in enumerate(successes)]
    base = allocate(arms, ThompsonConfig(min_weight=0), configured=[1 / len(arms)] * len(arms))
    better = [ArmData("0", 5_000, min(5_000, successes[0] + 50)), *arms[1:]]
    boosted = allocate(better, ThompsonConfig(min_weight=0), configured=[1 / len(arms)] * len(arms))
    assert base.probability_best is not None
    assert boosted.probability_best is not None
    assert boosted.probability_best[0] >= base.probability_best[0] - 1e-9
