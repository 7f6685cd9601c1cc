"""Frequentist comparison of a variant with the control, from counts or per-unit moments.

Binary metrics: Wilson interval per rate, Fisher's exact test (two-sided; ``fisher_p_value`` says
how it is computed at every size), a two-proportion z-test as a second opinion, Newcombe's
interval for the difference, and the relative lift with a delta-method interval. Value metrics:
Welch's t-test from n, mean and variance, with intervals for the difference and the lift.
Everything comes from SciPy and statsmodels; degenerate inputs give None, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Comparison:
    """Variant minus control. ``p_value`` is None where the test is undefined; ``variance`` is
    the estimated variance of ``difference``."""

    difference: float | None
    difference_ci: Interval | None
    lift: float | None
    lift_ci: Interval | None
    p_value: float | None
    method: str
    p_value_z: float | None = None
    variance: float | None = None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _interval(lo: float, hi: float) -> Interval | None:
    return (float(lo), float(hi)) if math.isfinite(lo) and math.isfinite(hi) else None


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> Interval | None:
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0 or not 0 <= successes <= n:
        return None
    lo, hi = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return _interval(lo, hi)


def relative_lift(
    mean_t: float, var_mean_t: float, mean_c: float, var_mean_c: float, alpha: float
) -> tuple[float | None, Interval | None]:
    """Lift mean_t / mean_c - 1 with the delta-method interval:
    Var(T/C) ~ Var(T)/C^2 + T^2 Var(C)/C^4 (means independent)."""
    from scipy import stats

    if mean_c == 0:
        return None, None
    lift = mean_t / mean_c - 1
    variance = var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4
    z = stats.norm.ppf(1 - alpha / 2)
    half = z * math.sqrt(variance)
    return _finite(lift), _interval(lift - half, lift + half)


SCIPY_FISHER_MAX_UNITS = 1_000_000
EXACT_SUPPORT_MAX = 1_000_000
TIE = 1 + 1e-7  # tables this close in probability to the observed one count as extreme too


def fisher_p_value(successes_t: int, n_t: int, successes_c: int, n_c: int) -> tuple[float, str]:
    """Two-sided p-value of Fisher's exact test and the method that computed it.

    Up to ``SCIPY_FISHER_MAX_UNITS`` units in all, SciPy's ``fisher_exact``. Above that SciPy
    takes seconds (its hypergeometric functions scale with the population, 33 s at 10^9 units),
    so the same p-value is computed by summing the hypergeometric probabilities of every table
    with the observed margins that is at most as likely as the observed one; each probability
    is the previous one times an exact ratio, so the work is the size of the support
    (min(successes, failures, n_t, n_c) + 1), not of the population. When even the support
    exceeds ``EXACT_SUPPORT_MAX`` (over a million successes and failures), the pooled
    two-proportion z-test is used ("z_test"): at those counts it agrees with the exact test.
    """
    from scipy import stats
    from statsmodels.stats.proportion import proportions_ztest

    total, successes = n_t + n_c, successes_t + successes_c
    if total <= SCIPY_FISHER_MAX_UNITS:
        table = [[successes_t, n_t - successes_t], [successes_c, n_c - successes_c]]
        return float(stats.fisher_exact(table, alternative="two-sided").pvalue), "fisher_exact"
    lo, hi = max(0, successes - n_c), min(successes, n_t)
    if hi - lo + 1 > EXACT_SUPPORT_MAX:
        _, p_value = proportions_ztest([successes_t, successes_c], [n_t, n_c])
        return float(p_value), "z_test"
    x = np.arange(lo, hi, dtype=np.float64)
    # log P(x + 1) - log P(x) for the count of successes among the variant's n_t units.
    step = np.log(successes - x) + np.log(n_t - x) - np.log(x + 1) - np.log(n_c - successes + x + 1)
    log_p = np.concatenate([[0.0], np.cumsum(step)])
    weights = np.exp(log_p - log_p.max())
    observed = weights[successes_t - lo]
    p_value = weights[weights <= observed * TIE].sum() / weights.sum()
    return min(1.0, float(p_value)), "fisher_exact"


def compare_proportions(
    successes_t: int, n_t: int, successes_c: int, n_c: int, alpha: float = 0.05
) -> Comparison:
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    if n_t <= 0 or n_c <= 0 or not (0 <= successes_t <= n_t and 0 <= successes_c <= n_c):
        return Comparison(None, None, None, None, None, "fisher_exact")
    p_t, p_c = successes_t / n_t, successes_c / n_c
    p_value, method = fisher_p_value(successes_t, n_t, successes_c, n_c)
    p_value_z = None
    if 0 < successes_t + successes_c < n_t + n_c:
        _, pz = proportions_ztest([successes_t, successes_c], [n_t, n_c])
        p_value_z = _finite(pz)
    lo, hi = confint_proportions_2indep(
        successes_t, n_t, successes_c, n_c, method="newcomb", compare="diff", alpha=alpha
    )
    lift, lift_ci = relative_lift(p_t, p_t * (1 - p_t) / n_t, p_c, p_c * (1 - p_c) / n_c, alpha)
    return Comparison(
        difference=p_t - p_c,
        difference_ci=_interval(lo, hi),
        lift=lift,
        lift_ci=lift_ci,
        p_value=min(1.0, p_value),
        method=method,
        p_value_z=p_value_z,
        variance=p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c,
    )


def compare_means(
    mean_t: float,
    var_t: float,
    n_t: int,
    mean_c: float,
    var_c: float,
    n_c: int,
    alpha: float = 0.05,
) -> Comparison:
    """Welch's t-test and the Welch-Satterthwaite interval of the difference of means."""
    from scipy import stats

    if n_t < 2 or n_c < 2:
        return Comparison(None, None, None, None, None, "welch_t")
    se2_t, se2_c = var_t / n_t, var_c / n_c
    se2 = se2_t + se2_c
    difference = mean_t - mean_c
    lift, lift_ci = relative_lift(mean_t, se2_t, mean_c, se2_c, alpha)
    if se2 == 0:
        # No spread at all: the difference is known exactly.
        p_value = 1.0 if difference == 0 else 0.0
        return Comparison(
            difference, (difference, difference), lift, lift_ci, p_value, "welch_t", variance=0.0
        )
    result = stats.ttest_ind_from_stats(
        mean_t, math.sqrt(var_t), n_t, mean_c, math.sqrt(var_c), n_c, equal_var=False
    )
    df = se2**2 / (se2_t**2 / (n_t - 1) + se2_c**2 / (n_c - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * math.sqrt(se2)
    return Comparison(
        difference=difference,
        difference_ci=_interval(difference - half, difference + half),
        lift=lift,
        lift_ci=lift_ci,
        p_value=_finite(result.pvalue),
        method="welch_t",
        variance=se2,
    )
