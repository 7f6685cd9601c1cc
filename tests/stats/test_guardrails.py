"""Guardrails against independent references, on the fixed vectors of tests/cases/guardrails.json:
the non-inferiority test of a difference by statsmodels (the Wald test of two proportions, Welch's
t-test on the per-unit values), of a lift by the delta method written out here with SciPy, and the
always-valid tests by the mSPRT's closed form written out here; then a seeded simulation that the
always-valid harm test keeps false alarms under alpha when read every day."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats import proportion
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from abpilot.stats import guardrails
from abpilot.stats.analysis import Arm, MetricInput, analyse
from abpilot.stats.options import AnalysisOptions

CASES = json.loads((Path(__file__).parents[1] / "cases" / "guardrails.json").read_text())["cases"]
EXACT = 1e-9


def metric_input(case: dict[str, Any]) -> MetricInput:
    """The primary metric (no data of interest) and the case's guardrail."""
    if case["kind"] == "binary":
        (s_c, n_c), (s_t, n_t) = case["control"], case["variant"]
        arms = (
            Arm("control", True, 0.5, n_c, s_c, s_c / n_c, None),
            Arm("variant", False, 0.5, n_t, s_t, s_t / n_t, None),
        )
    else:
        c, t = np.array(case["control"]), np.array(case["variant"])
        arms = tuple(
            Arm(key, key == "control", 0.5, len(x), int((x > 0).sum()), x.mean(), x.var(ddof=1))
            for key, x in (("control", c), ("variant", t))
        )
    return MetricInput(
        "guardrail",
        case["kind"] == "binary",
        arms,
        higher_is_better=case["higher_is_better"],
        margin=case["margin"],
        margin_relative=case["margin_relative"],
    )


def checked(case: dict[str, Any]) -> guardrails.GuardrailCheck:
    primary = MetricInput(
        "primary",
        True,
        (
            Arm("control", True, 0.5, 100, 10, 0.1, None),
            Arm("variant", False, 0.5, 100, 11, 0.11, None),
        ),
    )
    options = AnalysisOptions(alpha=case["alpha"], sequential=case["sequential"])
    analysis = analyse([primary, metric_input(case)], metric="guardrail", options=options)
    assert len(analysis.guardrails) == 1
    found = analysis.guardrails[0]
    assert analysis.variants[1].guardrail == found  # the per-variant field of the metric
    return found


def msprt_p(estimate: float, variance: float, tau: float) -> float:
    """Johari, Koomen, Pekelis, Walsh (2022), the normal mixture, written out."""
    ratio = math.sqrt(variance / (variance + tau**2)) * math.exp(
        tau**2 * estimate**2 / (2 * variance * (variance + tau**2))
    )
    return min(1.0, 1 / ratio)


def moments(case: dict[str, Any]) -> tuple[float, float, float, float]:
    """Means and variances of the means of variant and control."""
    if case["kind"] == "binary":
        (s_c, n_c), (s_t, n_t) = case["control"], case["variant"]
        p_c, p_t = s_c / n_c, s_t / n_t
        return p_t, p_t * (1 - p_t) / n_t, p_c, p_c * (1 - p_c) / n_c
    t, c = DescrStatsW(np.array(case["variant"])), DescrStatsW(np.array(case["control"]))
    return (
        t.mean,
        t.var * t.nobs / (t.nobs - 1) / t.nobs,
        c.mean,
        c.var * c.nobs / (c.nobs - 1) / c.nobs,
    )


def reference(case: dict[str, Any]) -> tuple[float, float, float, float]:
    """(estimate, variance, p-value, bound) of the fixed-horizon non-inferiority test."""
    margin, alpha = case["margin"], case["alpha"]
    higher = case["higher_is_better"]
    alternative = "larger" if higher else "smaller"
    value = -margin if higher else margin
    m_t, v_t, m_c, v_c = moments(case)
    if case["margin_relative"]:
        lift = m_t / m_c - 1
        variance = v_t / m_c**2 + m_t**2 * v_c / m_c**4
        z = (lift - value) / math.sqrt(variance)
        p = stats.norm.sf(z) if higher else stats.norm.cdf(z)
        q = stats.norm.ppf(1 - alpha) * math.sqrt(variance)
        return lift, variance, p, lift - q if higher else lift + q
    if case["kind"] == "binary":
        (s_c, n_c), (s_t, n_t) = case["control"], case["variant"]
        result = proportion.test_proportions_2indep(
            s_t, n_t, s_c, n_c, value=value, method="wald", compare="diff",
            alternative=alternative, correction=False,
        )  # fmt: skip
        lo, hi = proportion.confint_proportions_2indep(
            s_t, n_t, s_c, n_c, method="wald", compare="diff", alpha=2 * alpha
        )
        return result.diff, result.variance, result.pvalue, lo if higher else hi
    t, c = np.array(case["variant"]), np.array(case["control"])
    _, p, _ = ttest_ind(t, c, alternative=alternative, usevar="unequal", value=value)
    lo, hi = CompareMeans.from_data(t, c).tconfint_diff(alpha=2 * alpha, usevar="unequal")
    return t.mean() - c.mean(), v_t + v_c, p, lo if higher else hi


FIXED = [c for c in CASES if not c["sequential"]]
SEQUENTIAL = [c for c in CASES if c["sequential"]]


@pytest.mark.parametrize("case", FIXED, ids=[c["name"] for c in FIXED])
def test_non_inferiority_agrees_with_the_references(case: dict[str, Any]) -> None:
    found = checked(case)
    estimate, _, p_value, bound = reference(case)
    assert found.estimate == pytest.approx(estimate, rel=EXACT, abs=1e-12)
    assert found.p_value == pytest.approx(p_value, rel=1e-7, abs=1e-12)
    assert found.bound == pytest.approx(bound, rel=1e-7)
    assert found.harm_ruled_out is bool(p_value < case["alpha"])
    # The bound and the test agree: harm beyond the margin is ruled out when the worst change
    # the data leave plausible is within the margin.
    sign = 1 if case["higher_is_better"] else -1
    assert found.harm_ruled_out is bool(sign * bound > -case["margin"])


@pytest.mark.parametrize("case", SEQUENTIAL, ids=[c["name"] for c in SEQUENTIAL])
def test_under_the_sequential_test_non_inferiority_is_always_valid(case: dict[str, Any]) -> None:
    found = checked(case)
    estimate, variance, _, _ = reference(case)
    sign = 1 if case["higher_is_better"] else -1
    shifted = sign * estimate + case["margin"]
    expected = msprt_p(shifted, variance, case["margin"]) if shifted > 0 else 1.0
    assert found.method == "msprt"
    assert found.p_value == pytest.approx(expected, rel=1e-9)
    assert found.harm_ruled_out is bool(expected < case["alpha"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_harm_is_tested_always_valid_with_the_margin_as_mixing_scale(case: dict[str, Any]) -> None:
    found = checked(case)
    estimate, variance, _, _ = reference(case)
    m_c = moments(case)[2]
    tau = case["margin"] or 0.1 * m_c  # margin 0: the planned mde (10% of the control)
    harmful = (estimate < 0) if case["higher_is_better"] else (estimate > 0)
    expected = msprt_p(estimate, variance, tau) if harmful else 1.0
    assert found.harm_p_value == pytest.approx(expected, rel=1e-9)
    assert found.harm_detected is bool(expected < case["alpha"])


def test_the_cases_cover_every_outcome() -> None:
    found = [checked(c) for c in CASES]
    assert {f.harm_ruled_out for f in found} == {True, False}
    assert {f.harm_detected for f in found} == {True, False}
    assert any(f.harmful for f in found)


def test_read_daily_the_harm_test_keeps_false_alarms_under_alpha() -> None:
    """A/A guardrails read after each of 30 days: the always-valid test raises a false alarm in
    at most alpha of 2,000 experiments (the fixed-horizon test, read alike, far more often)."""
    rng = np.random.default_rng(7)
    experiments, days, per_day, rate, alpha = 2000, 30, 200, 0.1, 0.05
    t = rng.binomial(per_day, rate, (experiments, days)).cumsum(axis=1)
    c = rng.binomial(per_day, rate, (experiments, days)).cumsum(axis=1)
    n = per_day * np.arange(1, days + 1)
    alarms = fixed_alarms = 0
    for e in range(experiments):
        raised = fixed = False
        for d in range(days):
            p_t, p_c = t[e, d] / n[d], c[e, d] / n[d]
            estimate = guardrails.Estimate(p_t - p_c, (p_t * (1 - p_t) + p_c * (1 - p_c)) / n[d])
            p = guardrails.harm(estimate, higher_is_better=True, tau=0.01, alpha=alpha)
            raised |= p is not None and p < alpha
            z = estimate.value / math.sqrt(estimate.variance)
            fixed |= stats.norm.cdf(z) < alpha
        alarms += raised
        fixed_alarms += fixed
    assert alarms / experiments <= alpha
    assert fixed_alarms / experiments > 2 * alpha
