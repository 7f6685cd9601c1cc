"""The effect of a variant against the control from an estimate and its variance: Welch's t
interval and p-value of the difference (the Welch-Satterthwaite degrees of freedom from each
arm's share of the variance), and the relative lift with its delta-method interval at the same
degrees of freedom (as GrowthBook's gbstats ``TwoSidedTTest``). Shared by the covariate-adjusted
(``cuped``) and the ratio (``ratio``) estimators."""

from __future__ import annotations

import math
from dataclasses import dataclass

from abpilot.stats.frequentist import Interval


@dataclass(frozen=True, slots=True)
class Effect:
    """Variant minus control: the difference with its variance, Welch degrees of freedom,
    interval and p-value, and the relative lift with its delta-method variance and interval.
    None where undefined (fewer than 2 units in an arm; a control of 0 for the lift); ``df`` is
    None when the variance is 0 (the difference is then known exactly)."""

    difference: float | None
    variance: float | None
    df: float | None
    difference_ci: Interval | None
    p_value: float | None
    lift: float | None
    lift_variance: float | None
    lift_ci: Interval | None


UNDEFINED = Effect(None, None, None, None, None, None, None, None)


def welch_df(se2_t: float, se2_c: float, n_t: int, n_c: int) -> float | None:
    """(se2_t + se2_c)^2 / (se2_t^2 / (n_t - 1) + se2_c^2 / (n_c - 1)); None when both are 0."""
    denominator = se2_t**2 / (n_t - 1) + se2_c**2 / (n_c - 1)
    return (se2_t + se2_c) ** 2 / denominator if denominator > 0 else None


def welch_effect(
    difference: float,
    se2_t: float,
    se2_c: float,
    n: tuple[int, int],
    lift: tuple[float, float] | None,
    alpha: float,
) -> Effect:
    """The effect of ``difference`` with the variances of the treatment's and the control's
    estimates ``se2_t`` and ``se2_c`` over ``n`` = (n_t, n_c) units (each at least 2), and the
    ``lift`` (estimate, variance) when defined."""
    variance = se2_t + se2_c
    df = welch_df(se2_t, se2_c, *n)
    lift_value, lift_variance = lift if lift is not None else (None, None)
    if df is None:
        exact = (difference, difference)
        lift_ci = None if lift_value is None else (lift_value, lift_value)
        p_value = 1.0 if difference == 0 else 0.0
        return Effect(difference, 0.0, None, exact, p_value, lift_value, lift_variance, lift_ci)
    # Student's t through scipy.special (stdtrit: quantile, stdtr: CDF), the functions behind
    # scipy.stats.t without its per-call overhead (about 100 times faster per call).
    from scipy import special  # loaded on first use: a worker that only ingests never does

    quantile = float(special.stdtrit(df, 1 - alpha / 2))
    half = quantile * math.sqrt(variance)
    p_value = float(2 * special.stdtr(df, -abs(difference) / math.sqrt(variance)))
    lift_ci = None
    if lift_value is not None and lift_variance is not None:
        lift_half = quantile * math.sqrt(lift_variance)
        lift_ci = (lift_value - lift_half, lift_value + lift_half)
    return Effect(
        difference,
        variance,
        df,
        (difference - half, difference + half),
        min(1.0, p_value),
        lift_value,
        lift_variance,
        lift_ci,
    )
