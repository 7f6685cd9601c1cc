"""CUPED (abpilot.stats.cuped) against independent references on the fixed vectors of
tests/cases/cuped.json (NumPy and SciPy on the unit-level data, statsmodels OLS for the ANCOVA
form; see tests/cases/make_estimator_cases.py), then seeded simulations: the interval's width
at covariate-metric correlation 0.7, and the false-positive rate of the adjusted test in A/A
experiments, read once and read repeatedly (the always-valid form)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from abpilot.stats import stratified
from abpilot.stats.cuped import (
    CovariateMoments,
    CovariatePeriod,
    adjusted_strata,
    always_valid,
    compare,
    compare_periods,
    cuped,
    period_theta,
    pooled_theta,
)
from abpilot.stats.effects import UNDEFINED, Effect
from abpilot.stats.sequential import msprt

CASES = json.loads((Path(__file__).parents[1] / "cases" / "cuped.json").read_text())["cases"]
EXACT = 1e-9


def moments(arm: dict[str, Any]) -> CovariateMoments:
    return CovariateMoments(
        arm["n"], arm["sum_y"], arm["sum_y2"], arm["sum_x"], arm["sum_x2"], arm["sum_xy"]
    )


def of_units(x: np.ndarray, y: np.ndarray) -> CovariateMoments:
    return CovariateMoments(
        x.size, float(y.sum()), float(y @ y), float(x.sum()), float(x @ x), float(x @ y)
    )


def same_welch(effect: Effect, expected: dict[str, Any]) -> None:
    assert effect.difference == pytest.approx(expected["difference"], rel=EXACT, abs=1e-12)
    assert effect.variance == pytest.approx(expected["variance"], rel=EXACT)
    assert effect.df == pytest.approx(expected["df"], rel=EXACT)
    assert effect.difference_ci == pytest.approx(expected["ci"], rel=EXACT)
    assert effect.p_value == pytest.approx(expected["p_value"], rel=1e-7)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_cuped_matches_numpy_and_scipy_on_the_unit_level_data(case: dict[str, Any]) -> None:
    arms = [moments(a) for a in case["arms"]]
    analysis = cuped(arms, control=0, alpha=0.05)
    assert analysis.theta == pytest.approx(case["theta"], rel=EXACT, abs=1e-12)
    assert analysis.comparisons[0] is None
    for found, expected in zip(analysis.comparisons[1:], case["comparisons"], strict=True):
        assert found is not None
        same_welch(found.adjusted, expected["adjusted"])
        same_welch(found.unadjusted, expected["unadjusted"])
        assert found.adjusted.lift == pytest.approx(expected["lift"], rel=EXACT)
        assert found.adjusted.lift_variance == pytest.approx(expected["lift_variance"], rel=EXACT)
        assert found.adjusted.lift_ci == pytest.approx(expected["lift_ci"], rel=EXACT)
        assert found.variance_reduction == pytest.approx(
            expected["variance_reduction"], rel=1e-7, abs=1e-12
        )


ANCOVA = [c for c in CASES if c["ols"] is not None]


@pytest.mark.parametrize("case", ANCOVA, ids=[c["name"] for c in ANCOVA])
def test_cuped_agrees_with_the_ancova_regression_up_to_the_slope_it_uses(
    case: dict[str, Any],
) -> None:
    """OLS of y ~ variant + x estimates the slope within variants; CUPED's theta comes from the
    pooled units about the grand means, so it also holds the between-variant part of the
    co-moments (the variants' differences of means, times their covariate imbalance). The two
    differences differ by exactly (slope - theta)(mean x_t - mean x_c): a product of two
    quantities of order 1/sqrt(n), so at most 2% of a standard error in these cases. The standard
    errors differ because OLS pools one residual variance over all variants and counts the
    slope's uncertainty while CUPED takes each variant's own variance with theta as known:
    within 3% here (n from 300 to 1,500 per variant)."""
    arms = [moments(a) for a in case["arms"]]
    analysis = cuped(arms)
    slope = case["ols"]["slope"]
    for found, expected in zip(analysis.comparisons[1:], case["comparisons"], strict=True):
        assert found is not None
        assert found.adjusted.difference is not None
        ols = expected["ols"]
        gap = (slope - analysis.theta) * ols["x_mean_difference"]
        assert found.adjusted.difference - ols["difference"] == pytest.approx(
            gap, rel=1e-6, abs=1e-12
        )
        se = math.sqrt(found.adjusted.variance or 0.0)
        assert abs(found.adjusted.difference - ols["difference"]) < 0.02 * se
        assert se / ols["se"] == pytest.approx(1.0, abs=0.03)


def test_with_a_covariate_the_interval_at_correlation_07_is_sqrt_051_as_wide() -> None:
    """300 seeded experiments of 1,000 units per arm, covariate-metric correlation 0.7: the
    adjusted interval is sqrt(1 - 0.49) = 0.714 as wide as the unadjusted one (mean ratio within
    0.01; each experiment's own ratio within 0.05, its sample correlation varying), and the
    variance reduction is about 0.49."""
    rng = np.random.default_rng(2013)
    ratios, reductions = [], []
    for _ in range(300):
        arms = []
        for effect in (0.0, 0.1):
            x = rng.normal(0, 1, 1000)
            y = 0.7 * x + math.sqrt(1 - 0.49) * rng.normal(0, 1, 1000) + effect
            arms.append(of_units(x, y))
        found = cuped(arms).comparisons[1]
        assert found is not None
        adjusted, unadjusted = found.adjusted.difference_ci, found.unadjusted.difference_ci
        assert adjusted is not None
        assert unadjusted is not None
        ratios.append((adjusted[1] - adjusted[0]) / (unadjusted[1] - unadjusted[0]))
        reductions.append(found.variance_reduction)
    expected = math.sqrt(1 - 0.49)
    assert np.mean(ratios) == pytest.approx(expected, abs=0.01)
    assert np.all(np.abs(np.array(ratios) - expected) < 0.05)
    assert np.mean(reductions) == pytest.approx(0.49, abs=0.01)


def binomial_bounds(trials: int, alpha: float) -> tuple[int, int]:
    """The central 99.9% range of Binomial(trials, alpha): a correct test lands outside it once
    in a thousand seeds."""
    lo, hi = stats.binom.ppf([0.0005, 0.9995], trials, alpha)
    return int(lo), int(hi)


@pytest.mark.parametrize("binary", [False, True], ids=["value", "binary"])
def test_the_adjusted_test_keeps_the_false_positive_rate_at_alpha(binary: bool) -> None:
    """2,000 seeded A/A experiments (300 units per arm, correlation about 0.7 for the value
    metric): the adjusted test rejects at alpha = 0.05 a number of times inside the central
    99.9% range of Binomial(2000, 0.05), 69 to 133."""
    rng = np.random.default_rng(7 if binary else 5)
    rejections = 0
    for _ in range(2000):
        arms = []
        for _arm in range(2):
            x = rng.normal(0, 1, 300)
            if binary:
                y = (rng.random(300) < 1 / (1 + np.exp(-(x - 1)))).astype(float)
            else:
                y = 0.7 * x + 0.714 * rng.normal(0, 1, 300)
            arms.append(of_units(x, y))
        found = cuped(arms).comparisons[1]
        assert found is not None
        assert found.adjusted.p_value is not None
        rejections += found.adjusted.p_value < 0.05
    lo, hi = binomial_bounds(2000, 0.05)
    assert lo <= rejections <= hi, (rejections, lo, hi)


def test_the_always_valid_adjusted_test_keeps_alpha_over_20_looks() -> None:
    """400 seeded A/A experiments read 20 times each (every 100 units per arm): the mSPRT of the
    adjusted difference ever rejects at alpha = 0.05 in at most the upper end of the central
    99.9% range of Binomial(400, 0.05) (it is conservative, so the count is usually far below)."""
    rng = np.random.default_rng(11)
    ever = 0
    for _ in range(400):
        x = rng.normal(0, 1, (2, 2000))
        y = 0.7 * x + 0.714 * rng.normal(0, 1, (2, 2000))
        # Running sums: the moments at every look at once.
        sums = [np.cumsum(v, axis=1) for v in (y, y * y, x, x * x, x * y)]
        for look in range(1, 21):
            n = 100 * look
            arms = [CovariateMoments(n, *(float(s[i, n - 1]) for s in sums)) for i in range(2)]
            found = compare(arms[1], arms[0], theta=pooled_theta(arms))
            result = always_valid(found, control_mean=0.0, tau=0.1)
            assert result is not None
            if result.p_value < 0.05:
                ever += 1
                break
    assert ever <= binomial_bounds(400, 0.05)[1], ever


def test_always_valid_is_the_msprt_of_the_adjusted_difference_and_variance() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(5, 1, (2, 400))
    y = 2 + x + rng.normal(0, 1, (2, 400)) + np.array([[0.0], [0.3]])
    found = cuped([of_units(x[0], y[0]), of_units(x[1], y[1])]).comparisons[1]
    assert found is not None
    effect = found.adjusted
    assert effect.difference is not None
    assert effect.variance is not None
    result = always_valid(found, control_mean=float(y[0].mean()), tau=0.2, alpha=0.05)
    expected = msprt(effect.difference, effect.variance, 0.2, 0.05)
    assert result is not None
    assert expected is not None
    assert (result.p_value, result.difference_ci) == (expected.p_value, expected.ci)
    assert effect.lift is not None
    assert effect.lift_variance is not None
    lift = msprt(effect.lift, effect.lift_variance, 0.2 / abs(float(y[0].mean())), 0.05)
    assert lift is not None
    assert result.lift_ci == lift.ci


def test_theta_is_pooled_over_every_variant() -> None:
    """One theta for all variants: cov(y, x) / var(x) of all units together (NumPy), not any
    variant's own slope; with two arms it is gbstats' compute_theta of the pair."""
    rng = np.random.default_rng(8)
    xs = [rng.normal(0, 1, n) for n in (200, 300, 250)]
    slopes = (0.5, 1.0, 1.5)
    ys = [s * x + rng.normal(0, 1, x.size) for s, x in zip(slopes, xs, strict=True)]
    arms = [of_units(x, y) for x, y in zip(xs, ys, strict=True)]
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    expected = np.cov(y_all, x_all)[0, 1] / np.var(x_all, ddof=1)
    assert pooled_theta(arms) == pytest.approx(expected, rel=EXACT)
    assert cuped(arms).theta == pytest.approx(expected, rel=EXACT)
    own = [np.cov(y, x)[0, 1] / np.var(x, ddof=1) for x, y in zip(xs, ys, strict=True)]
    assert abs(own[0] - expected) > 0.3
    assert abs(own[2] - expected) > 0.3
    # The adjusted means are on the metric's scale: mean y - theta (mean x - pooled mean x).
    found = cuped(arms)
    for arm, x, y in zip(found.arms, xs, ys, strict=True):
        assert arm.mean == pytest.approx(y.mean() - expected * (x.mean() - x_all.mean()))
        assert arm.variance == pytest.approx(np.var(y - expected * x, ddof=1), rel=EXACT)


def test_without_data_or_spread_nothing_is_invented() -> None:
    one = CovariateMoments(1, 2.0, 4.0, 1.0, 1.0, 2.0)
    many = CovariateMoments(10, 20.0, 50.0, 10.0, 12.0, 22.0)
    assert compare(one, many, theta=0.5).adjusted == UNDEFINED
    assert compare(many, one, theta=0.5).unadjusted == UNDEFINED
    # No spread in the covariate: theta 0, the adjusted effect is the unadjusted one.
    flat = [CovariateMoments(5, 5.0, 7.0, 10.0, 20.0, 10.0), CovariateMoments(5, 6, 9, 10, 20, 12)]
    found = cuped(flat)
    assert found.theta == 0.0
    comparison = found.comparisons[1]
    assert comparison is not None
    assert comparison.adjusted == comparison.unadjusted
    assert comparison.variance_reduction == 0.0
    # No spread at all: the difference is known exactly; a control mean of 0 has no lift.
    zero = CovariateMoments(4, 0.0, 0.0, 4.0, 4.0, 0.0)
    ones = CovariateMoments(4, 4.0, 4.0, 4.0, 4.0, 4.0)
    exact = compare(ones, zero, theta=0.0).adjusted
    assert (exact.difference, exact.difference_ci, exact.p_value) == (1.0, (1.0, 1.0), 0.0)
    assert exact.lift is None
    assert exact.lift_ci is None
    assert CovariateMoments.binary(10, 3, 5.0, 7.0, 2.0).sum_y2 == 3


def test_within_periods_theta_and_the_differences_match_numpy() -> None:
    """Two periods of constant weights whose metric and covariate both shift between them: theta
    is the slope of the units demeaned within each period (NumPy), unaffected by the shift, and
    the adjusted stratified difference is the inverse-variance weighted mean of each period's
    adjusted difference (written out here)."""
    rng = np.random.default_rng(21)
    periods, units = [], []
    for period, (shift, sizes) in enumerate(((0.0, (300, 300)), (5.0, (150, 450)))):
        arms = []
        for i, n in enumerate(sizes):
            x = rng.normal(shift, 1, n)
            y = 3 * shift + 0.8 * x + rng.normal(0, 0.6, n) + 0.2 * i
            arms.append((x, y))
        units.append(arms)
        periods.append(CovariatePeriod(period, (0.5, 0.5), tuple(of_units(x, y) for x, y in arms)))
    demeaned_x, demeaned_y = [], []
    for arms in units:
        x = np.concatenate([a[0] for a in arms])
        y = np.concatenate([a[1] for a in arms])
        demeaned_x.append(x - x.mean())
        demeaned_y.append(y - y.mean())
    dx, dy = np.concatenate(demeaned_x), np.concatenate(demeaned_y)
    theta = float(dx @ dy / (dx @ dx))
    assert period_theta(periods) == pytest.approx(theta, rel=EXACT)
    differences, weights = [], []
    for arms in units:
        (x_c, y_c), (x_t, y_t) = arms
        a_t, a_c = y_t - theta * x_t, y_c - theta * x_c
        differences.append(a_t.mean() - a_c.mean())
        weights.append(1 / (a_t.var(ddof=1) / a_t.size + a_c.var(ddof=1) / a_c.size))
    w = np.array(weights)
    found = compare_periods(periods, 1, 0)
    assert found.theta == pytest.approx(theta, rel=EXACT)
    assert found.adjusted.difference == pytest.approx(np.dot(w, differences) / w.sum(), rel=1e-9)
    assert found.adjusted.variance == pytest.approx(1 / w.sum(), rel=1e-9)
    assert found.variance_reduction is not None
    assert found.variance_reduction > 0.5
    # One period: the same difference and variance as the single-period analysis.
    single = compare_periods(periods[:1], 1, 0)
    direct = cuped(list(periods[0].arms)).comparisons[1]
    assert direct is not None
    assert single.adjusted.difference == pytest.approx(direct.adjusted.difference, rel=1e-9)
    assert single.adjusted.variance == pytest.approx(direct.adjusted.variance, rel=1e-9)
    # The strata feed the stratified Bayesian view too (value strata, no successes).
    strata = adjusted_strata(periods, theta)
    assert stratified.standardised_posteriors(strata, False, (1.0, 1.0)) is not None
