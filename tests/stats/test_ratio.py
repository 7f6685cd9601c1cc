"""Ratio metrics (abpilot.stats.ratio) against the delta method computed from unit-level data by
linearisation (NumPy, SciPy's Welch test) on the fixed vectors of tests/cases/ratio.json, a
seeded bootstrap of units as a cross-check, and the A/A false-positive rate by simulation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from abpilot.stats.effects import UNDEFINED
from abpilot.stats.ratio import RatioMoments, compare_ratios, estimate

CASES = json.loads((Path(__file__).parents[1] / "cases" / "ratio.json").read_text())["cases"]
EXACT = 1e-9


def moments(arm: dict[str, Any]) -> RatioMoments:
    return RatioMoments(**arm)


def of_units(numerator: np.ndarray, denominator: np.ndarray) -> RatioMoments:
    return RatioMoments(
        numerator.size,
        float(numerator.sum()),
        float(numerator @ numerator),
        float(denominator.sum()),
        float(denominator @ denominator),
        float(numerator @ denominator),
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_ratio_matches_the_linearised_delta_method_on_unit_level_data(case: dict[str, Any]) -> None:
    arms = [moments(a) for a in case["arms"]]
    for arm, ratio, variance in zip(arms, case["ratios"], case["variances"], strict=True):
        found = estimate(arm)
        assert found.ratio == pytest.approx(ratio, rel=EXACT)
        assert found.variance == pytest.approx(variance, rel=1e-8)
    for arm, expected in zip(arms[1:], case["comparisons"], strict=True):
        effect = compare_ratios(arm, arms[0], alpha=0.05)
        assert effect.difference == pytest.approx(expected["difference"], rel=EXACT)
        assert effect.variance == pytest.approx(expected["variance"], rel=1e-8)
        assert effect.df == pytest.approx(expected["df"], rel=1e-8)
        assert effect.difference_ci == pytest.approx(expected["ci"], rel=1e-8)
        assert effect.p_value == pytest.approx(expected["p_value"], rel=1e-6)
        assert effect.lift == pytest.approx(expected["lift"], rel=EXACT)
        assert effect.lift_variance == pytest.approx(expected["lift_variance"], rel=1e-8)
        assert effect.lift_ci == pytest.approx(expected["lift_ci"], rel=1e-8)


BOOTSTRAPPED = [c for c in CASES if "bootstrap_se" in c]


@pytest.mark.parametrize("case", BOOTSTRAPPED, ids=[c["name"] for c in BOOTSTRAPPED])
def test_the_delta_method_standard_error_agrees_with_a_bootstrap_of_units(
    case: dict[str, Any],
) -> None:
    """2,000 resamples of units: the bootstrap's own relative error is about 1/sqrt(2 * 2000),
    1.6%; the delta method is within 5% of it."""
    control, treatment = (moments(a) for a in case["arms"])
    effect = compare_ratios(treatment, control)
    assert effect.variance is not None
    assert np.sqrt(effect.variance) == pytest.approx(case["bootstrap_se"], rel=0.05)


def test_a_unit_with_many_orders_is_one_unit_not_many() -> None:
    """The naive variance treats each order as independent; with orders of one unit correlated
    (a unit's order values share its level) it is too small, and the delta method is not: its
    interval covers the true difference 0 in about 95% of 400 seeded A/A experiments (within the
    central 99.9% range of Binomial(400, 0.95)), the naive interval far less often."""
    rng = np.random.default_rng(99)
    covered = naive_covered = 0
    for _ in range(400):
        arms, naive = [], []
        for _arm in range(2):
            orders = rng.poisson(3.0, 300)
            level = rng.gamma(1.0, 30.0, 300)
            values = [rng.normal(lvl, 2.0, k) for lvl, k in zip(level, orders, strict=True)]
            numerator = np.array([v.sum() for v in values])
            arms.append(of_units(numerator, orders.astype(float)))
            naive.append(np.concatenate(values))
        effect = compare_ratios(arms[1], arms[0])
        assert effect.difference_ci is not None
        covered += effect.difference_ci[0] <= 0 <= effect.difference_ci[1]
        naive_ci = stats.ttest_ind(naive[1], naive[0], equal_var=False).confidence_interval()
        naive_covered += naive_ci.low <= 0 <= naive_ci.high
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 400, 0.95)
    assert lo <= covered <= hi, covered
    assert naive_covered < lo, naive_covered


def test_without_a_denominator_or_units_nothing_is_invented() -> None:
    empty = RatioMoments(10, 0.0, 0.0, 0.0, 0.0, 0.0)
    some = RatioMoments(10, 50.0, 400.0, 12.0, 20.0, 80.0)
    assert estimate(empty).ratio is None
    assert compare_ratios(some, empty) == UNDEFINED
    assert compare_ratios(RatioMoments(1, 5.0, 25.0, 1.0, 1.0, 5.0), some) == UNDEFINED
    # A control ratio of 0 has no lift, the difference still has its test.
    zero = RatioMoments(10, 0.0, 0.0, 12.0, 20.0, 0.0)
    effect = compare_ratios(some, zero)
    assert effect.lift is None
    assert effect.p_value is not None
