"""Ratio metrics (revenue per order, clicks per session): the ratio of per-unit sums, with its
variance by the delta method, from sufficient statistics.

Each unit u of a variant has a numerator total N_u and a denominator total D_u (0 for a unit
without any). The variant's ratio is R = sum N / sum D = mean(N) / mean(D): the unit of
randomisation is the unit, not the order, so the orders of one unit are not independent and the
naive variance of the per-order values is wrong (Deng, Knoblich, Lu, "Applying the Delta Method
in Metric Analytics", KDD 2018). The first-order Taylor expansion of mean(N) / mean(D) gives

    Var(R) = (var(N) / mean(D)^2 + mean(N)^2 var(D) / mean(D)^4
              - 2 mean(N) cov(N, D) / mean(D)^3) / n

with the sample (co)variances of the per-unit totals (denominator n - 1), as GrowthBook's gbstats
``RatioStatistic`` and ``variance_of_ratios`` compute it. Between variants (independent samples):
the difference R_t - R_c with variance Var(R_t) + Var(R_c), Welch's degrees of freedom, interval
and p-value; the lift R_t / R_c - 1 with the delta-method variance
Var(R_t) / R_c^2 + R_t^2 Var(R_c) / R_c^4 (``abpilot.stats.effects``).
"""

from __future__ import annotations

from dataclasses import dataclass

from abpilot.stats.effects import UNDEFINED, Effect, welch_effect


@dataclass(frozen=True, slots=True)
class RatioMoments:
    """One variant's sufficient statistics over its ``n`` units: the numerator and denominator
    totals, their squares, and the cross sum of N_u D_u."""

    n: int
    sum_numerator: float
    sum_numerator_squares: float
    sum_denominator: float
    sum_denominator_squares: float
    sum_products: float


@dataclass(frozen=True, slots=True)
class RatioEstimate:
    """A variant's ratio and the delta-method variance of that estimate (None without a
    denominator, or below 2 units for the variance)."""

    n: int
    ratio: float | None
    variance: float | None


def estimate(moments: RatioMoments) -> RatioEstimate:
    n = moments.n
    if n == 0 or moments.sum_denominator == 0:
        return RatioEstimate(n, None, None)
    mean_n, mean_d = moments.sum_numerator / n, moments.sum_denominator / n
    ratio = float(moments.sum_numerator / moments.sum_denominator)
    if n < 2:
        return RatioEstimate(n, ratio, None)
    var_n = max(0.0, (moments.sum_numerator_squares - moments.sum_numerator * mean_n) / (n - 1))
    var_d = max(0.0, (moments.sum_denominator_squares - moments.sum_denominator * mean_d) / (n - 1))
    cov = (moments.sum_products - moments.sum_numerator * mean_d) / (n - 1)
    per_unit = var_n / mean_d**2 + mean_n**2 * var_d / mean_d**4 - 2 * mean_n * cov / mean_d**3
    return RatioEstimate(n, ratio, float(max(0.0, per_unit) / n))


def compare_ratios(
    treatment: RatioMoments, control: RatioMoments, *, alpha: float = 0.05
) -> Effect:
    """R_t - R_c with Welch's interval and p-value, and R_t / R_c - 1 with its delta-method
    interval; ``UNDEFINED`` when an arm has fewer than 2 units or no denominator."""
    t, c = estimate(treatment), estimate(control)
    if t.ratio is None or c.ratio is None or t.variance is None or c.variance is None:
        return UNDEFINED
    lift = None
    if c.ratio != 0:
        lift_variance = t.variance / c.ratio**2 + t.ratio**2 * c.variance / c.ratio**4
        lift = (t.ratio / c.ratio - 1, lift_variance)
    return welch_effect(
        t.ratio - c.ratio, t.variance, c.variance, (treatment.n, control.n), lift, alpha
    )
