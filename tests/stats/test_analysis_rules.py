"""Reasons for data that cannot be tested, the sequential test's mixing scale, and the level of
every interval, against closed forms and statsmodels."""

from __future__ import annotations

import math

import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from abpilot.stats.analysis import Arm, MetricInput, Reason, analyse
from abpilot.stats.options import AnalysisOptions


def binary(successes: list[int], units: list[int]) -> MetricInput:
    arms = tuple(
        Arm(f"v{i}", i == 0, 0.5, n, s, s / n, None)
        for i, (s, n) in enumerate(zip(successes, units, strict=True))
    )
    return MetricInput("conversion", True, arms)


def test_conversions_above_units_are_a_data_quality_reason() -> None:
    result = analyse(
        [binary([30, 140], [100, 100])], metric="conversion", options=AnalysisOptions()
    )
    assert (result.winner, result.reason) == (None, Reason.CONVERSIONS_EXCEED_UNITS)
    assert "v1 140 > 100" in result.message


def test_a_value_metric_without_data_is_insufficient_data() -> None:
    arms = tuple(Arm(f"v{i}", i == 0, 0.5, 500, 0, 0.0, 0.0) for i in range(2))
    result = analyse(
        [MetricInput("revenue", False, arms)], metric="revenue", options=AnalysisOptions()
    )
    assert (result.reason, result.message) == (
        Reason.INSUFFICIENT_DATA,
        "no values yet in any variant",
    )


def test_sequential_with_a_zero_control_rate_says_tau_must_be_set() -> None:
    metric = binary([0, 40], [2000, 2000])
    result = analyse([metric], metric="conversion", options=AnalysisOptions(sequential=True))
    assert (result.winner, result.reason) == (None, Reason.TAU_REQUIRED)
    assert "settings.analysis.tau" in result.message
    with_tau = analyse(
        [metric], metric="conversion", options=AnalysisOptions(sequential=True, tau=0.01)
    )
    assert with_tau.reason == Reason.WINNER
    # A planned baseline gives the scale (10% of 2%), whatever the control's observed rate.
    planned = AnalysisOptions(sequential=True, baseline=0.02)
    assert analyse([metric], metric="conversion", options=planned).reason == Reason.WINNER


def always_valid(estimate: float, variance: float, tau: float, alpha: float) -> tuple[float, float]:
    """The mSPRT interval (Johari et al. 2022), written out."""
    half = math.sqrt(
        variance
        * (variance + tau**2)
        / tau**2
        * math.log((variance + tau**2) / (variance * alpha**2))
    )
    return estimate - half, estimate + half


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_sequential_lift_interval_is_always_valid_too(alpha: float) -> None:
    s_c, s_t, n = 400, 470, 4000
    options = AnalysisOptions(sequential=True, alpha=alpha)
    variant = analyse([binary([s_c, s_t], [n, n])], metric="conversion", options=options).variants[
        1
    ]
    p_t, p_c = s_t / n, s_c / n
    v_t, v_c = p_t * (1 - p_t) / n, p_c * (1 - p_c) / n
    assert variant.difference_ci == pytest.approx(
        always_valid(p_t - p_c, v_t + v_c, 0.1 * p_c, alpha)
    )
    lift_variance = v_t / p_c**2 + p_t**2 * v_c / p_c**4  # delta method
    assert variant.lift_ci == pytest.approx(always_valid(p_t / p_c - 1, lift_variance, 0.1, alpha))


def test_every_interval_is_at_one_minus_alpha() -> None:
    s_c, s_t, n, alpha = 40, 55, 500, 0.1
    result = analyse(
        [binary([s_c, s_t], [n, n])], metric="conversion", options=AnalysisOptions(alpha=alpha)
    )
    for variant, s in zip(result.variants, (s_c, s_t), strict=True):
        assert variant.ci == pytest.approx(proportion_confint(s, n, alpha=alpha, method="wilson"))
        posterior = stats.beta(1 + s, 1 + n - s)
        assert variant.credible_interval == pytest.approx(
            tuple(posterior.ppf([alpha / 2, 1 - alpha / 2]))
        )
    p_t, p_c = s_t / n, s_c / n
    half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(
        p_t * (1 - p_t) / n / p_c**2 + p_t**2 * p_c * (1 - p_c) / n / p_c**4
    )
    lift = p_t / p_c - 1
    assert result.variants[1].lift_ci == pytest.approx((lift - half, lift + half))
