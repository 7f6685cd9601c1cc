"""Sample size and power for comparing each variant with the control (statsmodels' power module).

With k variants there are k - 1 comparisons with the control; the significance level of each is
alpha / (k - 1) (Bonferroni), which is what Holm's procedure guarantees at the worst. The analysis
corrects a metric within its family (the primary metric over its k - 1 comparisons; the secondary
metrics together), and plans with ``comparisons``, the size of that family.

``repeated_reads=True`` plans for the analysis's default winner rule, which stays valid however
often it is read after the plan (``abpilot.stats.anchored``): its threshold on the z-statistic at
the plan is ``anchored.boundary(alpha / comparisons)`` (2.59 for alpha 0.05 and one comparison),
and ``comparison_alpha`` is the two-sided level with that threshold, 2 (1 - Phi(threshold)), so
that the rule has the planned power at the planned size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from abpilot.domain.errors import ValidationError
from abpilot.stats import anchored


@dataclass(frozen=True, slots=True)
class SampleSize:
    required_per_variant: int
    total: int
    baseline: float
    target: float
    effect_size: float
    alpha: float
    power: float
    variants: int
    comparison_alpha: float


MIN_ALPHA, MAX_ALPHA = 1e-6, 0.5


def _check(
    alpha: float, power: float, variants: int, comparisons: int | None, repeated_reads: bool
) -> float:
    from scipy.stats import norm

    if not MIN_ALPHA <= alpha <= MAX_ALPHA:
        raise ValidationError(
            f"alpha must be from {MIN_ALPHA:g} to {MAX_ALPHA:g} (got {alpha})", field="alpha"
        )
    if not alpha < power < 1:
        raise ValidationError(
            f"power must be above alpha ({alpha:g}) and below 1 (got {power})", field="power"
        )
    if variants < 2:
        raise ValidationError(f"variants must be at least 2 (got {variants})", field="variants")
    if comparisons is not None and comparisons < 1:
        raise ValidationError(
            f"comparisons must be at least 1 (got {comparisons})", field="comparisons"
        )
    level = alpha / (comparisons or variants - 1)
    if repeated_reads:
        return float(2 * norm.sf(anchored.boundary(level)))
    return level


LARGE_EFFECT_SIZE = 2.0
MIN_EFFECT_SIZE = 1e-6  # about 1.6e13 units per variant at alpha 0.05 and power 0.8


def _solve(effect_size: float, alpha: float, power: float, field: str) -> int:
    """Units per variant for a standardised effect. Effects too small to plan for (an mde that
    underflows against its standard deviation, say) are refused with the reason, before
    statsmodels' root finder is asked for a sample size it cannot find."""
    from scipy.stats import norm
    from statsmodels.stats.power import NormalIndPower

    if not math.isfinite(effect_size):
        raise ValidationError(
            f"the standardised effect size is not a finite number ({effect_size}); check mde"
            " and its baseline or standard deviation",
            field=field,
        )
    if abs(effect_size) < MIN_EFFECT_SIZE:
        raise ValidationError(
            f"the standardised effect size ({effect_size:.3g}) is below {MIN_EFFECT_SIZE:g}:"
            " detecting it would need more than 10^13 units per variant; plan for a larger mde",
            field=field,
        )
    if abs(effect_size) >= LARGE_EFFECT_SIZE:
        # statsmodels' root finder fails for effects this large (n below 2); the normal
        # approximation's closed form, which it agrees with to 1e-4 at d = 2, is exact enough.
        z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
        value = float(2 * (z / abs(effect_size)) ** 2)
    else:
        n = NormalIndPower().solve_power(
            effect_size=abs(effect_size),
            alpha=alpha,
            power=power,
            ratio=1.0,
            alternative="two-sided",
        )
        value = float(np.asarray(n).reshape(-1)[0]) if np.ndim(n) else float(n)
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(
            f"no sample size reaches power {power:g} at alpha {alpha:g} for this effect",
            field="power",
        )
    return math.ceil(value)


def proportion_sample_size(
    *,
    baseline_rate: float,
    mde: float,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
    comparisons: int | None = None,
    repeated_reads: bool = False,
) -> SampleSize:
    """Units per variant to detect ``mde`` (absolute, or relative to the baseline) on a rate,
    with Cohen's arcsine effect size h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1))."""
    from statsmodels.stats.proportion import proportion_effectsize

    comparison_alpha = _check(alpha, power, variants, comparisons, repeated_reads)
    if not 0 < baseline_rate < 1:
        raise ValidationError(
            f"baseline_rate must be in (0, 1) (got {baseline_rate})", field="baseline_rate"
        )
    target = baseline_rate * (1 + mde) if relative else baseline_rate + mde
    if mde == 0 or not 0 < target < 1:
        raise ValidationError(
            f"mde must be non-zero and keep the rate in (0, 1) (target rate {target:.6g})",
            field="mde",
        )
    h = float(proportion_effectsize(target, baseline_rate))
    n = _solve(h, comparison_alpha, power, "mde")
    return SampleSize(
        n, n * variants, baseline_rate, target, h, alpha, power, variants, comparison_alpha
    )


def mean_sample_size(
    *,
    baseline_mean: float,
    standard_deviation: float,
    mde: float,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
    comparisons: int | None = None,
    repeated_reads: bool = False,
) -> SampleSize:
    """Units per variant to detect a shift ``mde`` of a mean with the given standard deviation
    (normal approximation, effect size d = mde / sd)."""
    comparison_alpha = _check(alpha, power, variants, comparisons, repeated_reads)
    if not standard_deviation > 0 or not math.isfinite(standard_deviation):
        raise ValidationError(
            f"standard_deviation must be > 0 (got {standard_deviation})", field="standard_deviation"
        )
    shift = baseline_mean * mde if relative else mde
    if shift == 0:
        raise ValidationError(
            "mde must be non-zero (and the baseline too when relative)", field="mde"
        )
    d = shift / standard_deviation
    n = _solve(d, comparison_alpha, power, "mde")
    return SampleSize(
        n,
        n * variants,
        baseline_mean,
        baseline_mean + shift,
        d,
        alpha,
        power,
        variants,
        comparison_alpha,
    )


def plan_sample_size(
    *,
    mde: float,
    baseline_rate: float | None = None,
    baseline_mean: float | None = None,
    standard_deviation: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
) -> SampleSize:
    """A rate plan from ``baseline_rate``, or a mean plan from ``baseline_mean`` (default 0)
    and ``standard_deviation``."""
    if standard_deviation is not None:
        return mean_sample_size(
            baseline_mean=baseline_mean or 0.0,
            standard_deviation=standard_deviation,
            mde=mde,
            relative=relative,
            alpha=alpha,
            power=power,
            variants=variants,
        )
    if baseline_rate is None:
        raise ValidationError(
            "give baseline_rate for a rate, or standard_deviation (and baseline_mean) for a mean",
            field="baseline_rate",
        )
    return proportion_sample_size(
        baseline_rate=baseline_rate,
        mde=mde,
        relative=relative,
        alpha=alpha,
        power=power,
        variants=variants,
    )
