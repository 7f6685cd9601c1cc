"""Properties of the estimators over sufficient statistics that hold for any data (hypothesis):
CUPED does not depend on the covariate's origin or scale and its pooled theta minimises the
pooled variance;
a ratio's lift does not depend on the units of its numerator; Cochran's Q is 0 for equal
effects; a percentile cap lies between the smallest and the largest total."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abpilot.stats.capping import percentile_threshold
from abpilot.stats.cuped import CovariateMoments, cuped
from abpilot.stats.heterogeneity import SegmentEffect, cochran_q
from abpilot.stats.ratio import RatioMoments, compare_ratios

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def covariate_arms(seed: int, shift: float = 0.0, scale: float = 1.0) -> list[CovariateMoments]:
    rng = np.random.default_rng(seed)
    arms = []
    for n in rng.integers(20, 200, 3):
        x = rng.normal(0, 1, n)
        y = rng.normal(1, 1) * x + rng.normal(0, 1, n) + rng.normal(5, 1)
        x = x * scale + shift
        arms.append(CovariateMoments(int(n), y.sum(), y @ y, x.sum(), x @ x, x @ y))
    return arms


@settings(max_examples=60, deadline=None)
@given(seeds, st.floats(-100, 100), st.floats(0.1, 10))
def test_cuped_ignores_the_covariates_origin_and_scale(seed: int, shift: float, scale: float):
    plain = cuped(covariate_arms(seed))
    moved = cuped(covariate_arms(seed, shift, scale))
    assert moved.theta == pytest.approx(plain.theta / scale, rel=1e-6, abs=1e-9)
    for a, b in zip(plain.comparisons[1:], moved.comparisons[1:], strict=True):
        assert a is not None
        assert b is not None
        assert b.adjusted.difference == pytest.approx(a.adjusted.difference, rel=1e-6, abs=1e-9)
        assert b.adjusted.variance == pytest.approx(a.adjusted.variance, rel=1e-6, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(seeds)
def test_pooled_theta_reduces_the_variance_up_to_its_between_variant_part(seed: int):
    """Pooled theta minimises the pooled sum of squares of y - theta x, which is the
    within-variant part (what the tests use) plus the between-variant part. So the within part
    at theta is at most the within part at 0 plus what the between part lost:
    S_w(theta) <= S_w(0) + S_b(0) - S_b(theta)."""
    arms = covariate_arms(seed)
    theta = cuped(arms).theta
    within = sum((a.n - 1) * a.adjusted_variance(theta) for a in arms)
    within_0 = sum((a.n - 1) * a.adjusted_variance(0.0) for a in arms)
    assert within <= within_0 + _between(arms, 0.0) - _between(arms, theta) + 1e-9 * within_0


def _between(arms: list[CovariateMoments], theta: float) -> float:
    """sum over variants of n (mean of y - theta x in the variant - overall mean)^2."""
    total = sum(a.n for a in arms)
    overall = sum(a.sum_y - theta * a.sum_x for a in arms) / total
    return sum(a.n * (a.mean_y - theta * a.mean_x - overall) ** 2 for a in arms)


@settings(max_examples=60, deadline=None)
@given(seeds, st.floats(0.01, 1000))
def test_a_ratio_s_lift_does_not_depend_on_the_numerator_s_unit(seed: int, factor: float):
    rng = np.random.default_rng(seed)
    arms = []
    for _ in range(2):
        d = rng.poisson(2.0, 100).astype(float)
        n = d * rng.gamma(2.0, 10.0, 100)
        arms.append((n, d))

    def moments(n: np.ndarray, d: np.ndarray) -> RatioMoments:
        return RatioMoments(n.size, n.sum(), n @ n, d.sum(), d @ d, n @ d)

    plain = compare_ratios(moments(*arms[1]), moments(*arms[0]))
    scaled = compare_ratios(
        moments(arms[1][0] * factor, arms[1][1]), moments(arms[0][0] * factor, arms[0][1])
    )
    assert scaled.lift == pytest.approx(plain.lift, rel=1e-9, abs=1e-12)
    assert scaled.lift_ci == pytest.approx(plain.lift_ci, rel=1e-9, abs=1e-12)
    assert scaled.p_value == pytest.approx(plain.p_value, rel=1e-7, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.floats(-10, 10), st.lists(st.floats(1e-6, 10), min_size=2, max_size=12))
def test_equal_effects_have_no_heterogeneity(effect: float, variances: list[float]):
    found = cochran_q([SegmentEffect(str(i), effect, v) for i, v in enumerate(variances)])
    assert found.q == pytest.approx(0.0, abs=1e-9)
    assert found.p_value == pytest.approx(1.0)
    assert found.i_squared == 0.0
    assert found.pooled_effect == pytest.approx(effect)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), max_size=50),
    st.integers(0, 50),
    st.floats(0.001, 0.999),
)
def test_a_percentile_cap_lies_within_the_totals(totals: list[float], zeros: int, q: float):
    found = percentile_threshold(totals, quantile=q, zero_units=zeros)
    everything = totals + [0.0] * zeros
    if not everything:
        assert found.value is None
        return
    assert found.value is not None
    assert min(everything) <= found.value <= max(everything)
    assert math.isclose(found.value, float(np.quantile(everything, q)), rel_tol=1e-9, abs_tol=1e-6)
