"""Analysis that a bandit's changing weights cannot fool (docs/architecture.md §6, "Periods").

When the allocation changes over time and the world changes too, pooled counts mix periods in
different proportions per arm and can reverse a comparison (Simpson's paradox). Here every
comparison is made within periods of constant weights (strata) and then combined:

- binary metrics: the Cochran-Mantel-Haenszel test (statsmodels' StratifiedTable) for the p-value,
  the inverse-variance weighted difference of rates with its interval, and the Mantel-Haenszel
  risk ratio for the lift;
- value metrics: the inverse-variance weighted difference of means and its z-test (ratio
  metrics too, each period's arms holding their ratio and delta-method variance);
- sample ratio mismatch: each period's units against the weights in force in that period; the
  chi-square statistics and degrees of freedom add up over periods;
- Bayesian view: posteriors of the standardised rate sum_k w_k p_ik, with w_k the share of all
  units that period k holds (normal approximation of the weighted sum of per-period posteriors).

Only periods in which every compared arm has units carry information about the comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abpilot.stats.bayes import Posterior, beta_posterior
from abpilot.stats.frequentist import Comparison
from abpilot.stats.srm import MIN_UNITS_PER_VARIANT, SRM_THRESHOLD, SrmCheck


@dataclass(frozen=True, slots=True)
class StratumArm:
    n: int
    successes: int
    mean: float | None
    variance: float | None


@dataclass(frozen=True, slots=True)
class Stratum:
    """One period of constant weights: the arms' data (in variant order) and the weights."""

    period: int
    weights: tuple[float, ...]
    arms: tuple[StratumArm, ...]


def stratified_srm(strata: Sequence[Stratum]) -> SrmCheck:
    """Chi-square of each period's units against that period's weights, summed over periods
    whose expected count is at least 5 in every arm (where the approximation holds)."""
    from scipy import stats

    statistic, df = 0.0, 0
    observed_total = np.zeros(len(strata[0].arms)) if strata else np.zeros(0)
    expected_total = np.zeros_like(observed_total)
    for stratum in strata:
        observed = np.array([a.n for a in stratum.arms], dtype=float)
        weights = np.array(stratum.weights, dtype=float)
        if observed.sum() == 0 or weights.sum() == 0:
            continue
        expected = observed.sum() * weights / weights.sum()
        live = expected > 0
        if (expected[live] < 5).any() or live.sum() < 2:
            continue
        statistic += float((((observed - expected) ** 2)[live] / expected[live]).sum())
        df += int(live.sum()) - 1
        observed_total += observed
        expected_total += expected
    observed_counts = tuple(int(x) for x in observed_total)
    if df == 0 or min(observed_counts, default=0) < MIN_UNITS_PER_VARIANT:
        return SrmCheck(
            None, False, tuple(expected_total.tolist()), observed_counts, "insufficient_data"
        )
    p_value = float(stats.chi2.sf(statistic, df))
    return SrmCheck(
        p_value, p_value < SRM_THRESHOLD, tuple(expected_total.tolist()), observed_counts
    )


def _informative(strata: Sequence[Stratum], i: int, c: int) -> list[tuple[StratumArm, StratumArm]]:
    return [(s.arms[i], s.arms[c]) for s in strata if s.arms[i].n > 0 and s.arms[c].n > 0]


def _normal_interval(estimate: float, se: float, alpha: float) -> tuple[float, float] | None:
    from scipy import stats

    if not (math.isfinite(estimate) and math.isfinite(se)):
        return None
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return estimate - half, estimate + half


def compare_binary(strata: Sequence[Stratum], i: int, c: int, alpha: float = 0.05) -> Comparison:
    from statsmodels.stats.contingency_tables import StratifiedTable

    pairs = _informative(strata, i, c)
    empty = Comparison(None, None, None, None, None, "cmh_stratified")
    if not pairs:
        return empty
    tables = [
        [[t.successes, t.n - t.successes], [k.successes, k.n - k.successes]] for t, k in pairs
    ]
    total_successes = sum(t.successes + k.successes for t, k in pairs)
    total_n = sum(t.n + k.n for t, k in pairs)
    p_value = None
    risk_ratio = None
    if 0 < total_successes < total_n:
        table = StratifiedTable(np.array(tables, dtype=float).transpose(1, 2, 0))
        p_value = float(table.test_null_odds(correction=False).pvalue)
        if sum(k.successes * t.n / (t.n + k.n) for t, k in pairs) > 0:
            risk_ratio = float(table.riskratio_pooled)
    differences, weights = [], []
    for t, k in pairs:
        p_t, p_c = t.successes / t.n, k.successes / k.n
        # Variance with a half-unit continuity guard so that 0% or 100% periods keep weight.
        var = (max(p_t * (1 - p_t), 0.25 / t.n) / t.n) + (max(p_c * (1 - p_c), 0.25 / k.n) / k.n)
        differences.append(p_t - p_c)
        weights.append(1 / var)
    w = np.array(weights)
    difference = float(np.dot(w, differences) / w.sum())
    se = float(1 / math.sqrt(w.sum()))
    lift = None if risk_ratio is None or not math.isfinite(risk_ratio) else risk_ratio - 1
    return Comparison(
        difference=difference,
        difference_ci=_normal_interval(difference, se, alpha),
        lift=lift,
        lift_ci=None,
        p_value=None if p_value is None or not math.isfinite(p_value) else min(1.0, p_value),
        method="cmh_stratified",
        variance=se * se,
    )


def compare_means(strata: Sequence[Stratum], i: int, c: int, alpha: float = 0.05) -> Comparison:
    from scipy import stats

    differences, weights = [], []
    for t, k in _informative(strata, i, c):
        if t.n < 2 or k.n < 2 or None in (t.mean, k.mean, t.variance, k.variance):
            continue  # (a ratio without a denominator in the period has neither)
        var = (t.variance or 0.0) / t.n + (k.variance or 0.0) / k.n
        if var <= 0:
            continue
        differences.append((t.mean or 0.0) - (k.mean or 0.0))
        weights.append(1 / var)
    if not weights:
        return Comparison(None, None, None, None, None, "welch_stratified")
    w = np.array(weights)
    difference = float(np.dot(w, differences) / w.sum())
    se = float(1 / math.sqrt(w.sum()))
    p_value = float(2 * stats.norm.sf(abs(difference) / se))
    return Comparison(
        difference,
        _normal_interval(difference, se, alpha),
        None,
        None,
        p_value,
        "welch_stratified",
        variance=se * se,
    )


def standardised_posteriors(
    strata: Sequence[Stratum], binary: bool, prior: tuple[float, float]
) -> list[Posterior] | None:
    """Normal posteriors of each arm's standardised rate (or mean), over the periods in which
    every arm has units; None when there is no such period or no spread."""
    shared = [s for s in strata if all(a.n > 0 for a in s.arms)]
    if not shared:
        return None
    total = sum(sum(a.n for a in s.arms) for s in shared)
    result = []
    for i in range(len(shared[0].arms)):
        mean = variance = 0.0
        for s in shared:
            share = sum(a.n for a in s.arms) / total
            arm = s.arms[i]
            if binary:
                p = beta_posterior(arm.successes, arm.n, prior)
                m, v = p.mean, p.a * p.b / ((p.a + p.b) ** 2 * (p.a + p.b + 1))
            else:
                if arm.n < 2 or not (arm.variance or 0) > 0:
                    return None
                m, v = arm.mean or 0.0, (arm.variance or 0.0) / arm.n
            mean += share * m
            variance += share * share * v
        if not variance > 0:
            return None
        result.append(Posterior("normal", mean, math.sqrt(variance)))
    return result
