"""Covariate adjustment (CUPED; CUPAC when the covariate is a model's prediction) from sufficient
statistics.

Reference: A. Deng, Y. Xu, R. Kohavi, T. Walker, "Improving the Sensitivity of Online Controlled
Experiments by Utilizing Pre-Experiment Data", WSDM 2013. Each unit's metric total y is replaced by
y - theta (x - mean(x)), x the unit's covariate, with one theta for every variant:

    theta = cov(y, x) / var(x)

over the units of ALL the variants pooled (sample moments about the pooled means), as GrowthBook's
gbstats computes it (``compute_theta``: the joint statistics of the arms, ``joint covariance /
joint pre-period variance``; gbstats pools the two arms it compares, here every variant is pooled,
which is the same for two arms and gives every variant one adjusted mean). Per variant, with its
own sample moments (denominator n - 1):

    adjusted mean      = mean(y) - theta (mean(x) - pooled mean(x))
    per-unit variance  = var(y) + theta^2 var(x) - 2 theta cov(y, x)

The difference of adjusted means is tested like Welch's t-test, the adjusted variances in the
Welch-Satterthwaite degrees of freedom (gbstats' ``TwoSidedTTest``). The relative lift is
(adjusted difference) / (control's unadjusted mean) with gbstats' delta-method variance
(``frequentist_variance_relative_cuped``): the control's adjusted mean in the numerator and its
unadjusted mean in the denominator are correlated, which that variance accounts for. The
unadjusted figures are the same estimator with theta = 0; the variance reduction is
1 - Var(adjusted difference) / Var(unadjusted difference) (about rho^2, rho the correlation).

A binary metric (y is 0 or 1 per unit) takes the same formulas with sum(y^2) = sum(y). Within
periods of constant weights (bandits), theta is pooled over every variant of every period from
each period's co-moments about its own means, and each period's adjusted arms feed
``abpilot.stats.stratified.compare_means``. The adjusted difference and its variance feed the
mSPRT (``abpilot.stats.sequential``) unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from abpilot.stats import stratified
from abpilot.stats.effects import UNDEFINED, Effect, welch_effect
from abpilot.stats.frequentist import Comparison, Interval
from abpilot.stats.sequential import msprt
from abpilot.stats.stratified import Stratum, StratumArm


@dataclass(frozen=True, slots=True)
class CovariateMoments:
    """One variant's sufficient statistics over its ``n`` units: the metric totals y (0 for a unit
    without any) and the covariate x, their squares and cross products."""

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float

    @classmethod
    def binary(
        cls, n: int, conversions: int, sum_x: float, sum_x2: float, sum_xy: float
    ) -> CovariateMoments:
        """A binary metric: y is 1 for a converting unit, so sum(y^2) = sum(y)."""
        return cls(n, conversions, conversions, sum_x, sum_x2, sum_xy)

    def __add__(self, other: CovariateMoments) -> CovariateMoments:
        return CovariateMoments(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_y2 + other.sum_y2,
            self.sum_x + other.sum_x,
            self.sum_x2 + other.sum_x2,
            self.sum_xy + other.sum_xy,
        )

    @property
    def mean_y(self) -> float:
        return float(self.sum_y / self.n) if self.n > 0 else 0.0

    @property
    def mean_x(self) -> float:
        return float(self.sum_x / self.n) if self.n > 0 else 0.0

    def co_moments(self) -> tuple[float, float, float]:
        """Sums of squares and products about the means: (S_yy, S_xx, S_xy), the squares
        clipped at 0 against rounding."""
        if self.n == 0:
            return 0.0, 0.0, 0.0
        s_yy = max(0.0, float(self.sum_y2 - self.sum_y * self.sum_y / self.n))
        s_xx = max(0.0, float(self.sum_x2 - self.sum_x * self.sum_x / self.n))
        return s_yy, s_xx, float(self.sum_xy - self.sum_x * self.sum_y / self.n)

    def adjusted_variance(self, theta: float) -> float:
        """Per-unit sample variance of y - theta x (denominator n - 1; 0 below 2 units)."""
        if self.n < 2:
            return 0.0
        s_yy, s_xx, s_xy = self.co_moments()
        return max(0.0, (s_yy + theta * theta * s_xx - 2 * theta * s_xy) / (self.n - 1))


def _sum(moments: Sequence[CovariateMoments]) -> CovariateMoments:
    total = CovariateMoments(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for m in moments:
        total = total + m
    return total


def pooled_theta(moments: Sequence[CovariateMoments]) -> float:
    """cov(y, x) / var(x) over the units of every variant pooled; 0 when either variance is 0
    (no adjustment, as gbstats reverts to the unadjusted test)."""
    s_yy, s_xx, s_xy = _sum(moments).co_moments()
    return s_xy / s_xx if s_xx > 0 and s_yy > 0 else 0.0


@dataclass(frozen=True, slots=True)
class CupedComparison:
    """A variant against the control, adjusted and unadjusted, with the theta used and the
    variance reduction achieved (None when the unadjusted variance is 0)."""

    adjusted: Effect
    unadjusted: Effect
    theta: float
    variance_reduction: float | None


@dataclass(frozen=True, slots=True)
class AdjustedArm:
    n: int
    mean: float  # on the metric's scale: mean(y) - theta (mean(x) - pooled mean(x))
    variance: float  # per unit, of y - theta x
    unadjusted_mean: float
    unadjusted_variance: float


@dataclass(frozen=True, slots=True)
class CupedAnalysis:
    """Every variant adjusted by one ``theta``; ``comparisons`` in the variants' order (None for
    the control)."""

    theta: float
    covariate_mean: float
    arms: tuple[AdjustedArm, ...]
    comparisons: tuple[CupedComparison | None, ...]


def _effect(
    treatment: CovariateMoments, control: CovariateMoments, theta: float, alpha: float
) -> Effect:
    if treatment.n < 2 or control.n < 2:
        return UNDEFINED
    se2_t = treatment.adjusted_variance(theta) / treatment.n
    se2_c = control.adjusted_variance(theta) / control.n
    difference = (treatment.mean_y - control.mean_y) - theta * (treatment.mean_x - control.mean_x)
    lift = _lift(treatment, control, theta, difference)
    return welch_effect(difference, se2_t, se2_c, (treatment.n, control.n), lift, alpha)


def _lift(
    treatment: CovariateMoments, control: CovariateMoments, theta: float, difference: float
) -> tuple[float, float] | None:
    """(adjusted difference) / |control's unadjusted mean| and gbstats' delta-method variance:
    the treatment's terms over mean_c^2, the control's with gradient (-mean_t / mean_c^2 on its
    mean of y, theta / mean_c on its mean of x)."""
    mean_c, mean_t = control.mean_y, treatment.mean_y
    if mean_c == 0:
        return None
    s_yy_c, s_xx_c, s_xy_c = control.co_moments()
    v_t = treatment.adjusted_variance(theta) / (treatment.n * mean_c**2)
    n1 = control.n - 1
    var_y, var_x, cov = s_yy_c / n1, s_xx_c / n1, s_xy_c / n1
    v_c = (var_y * mean_t**2 / mean_c**2 - 2 * theta * cov * mean_t / mean_c + theta**2 * var_x) / (
        control.n * mean_c**2
    )
    return difference / abs(mean_c), max(0.0, v_t + v_c)


def compare(
    treatment: CovariateMoments, control: CovariateMoments, *, theta: float, alpha: float = 0.05
) -> CupedComparison:
    """``treatment`` against ``control`` adjusted by ``theta`` (``pooled_theta`` of every
    variant), and unadjusted."""
    adjusted = _effect(treatment, control, theta, alpha)
    unadjusted = _effect(treatment, control, 0.0, alpha)
    reduction = None
    if adjusted.variance is not None and unadjusted.variance:
        reduction = 1 - adjusted.variance / unadjusted.variance
    return CupedComparison(adjusted, unadjusted, theta, reduction)


def cuped(
    arms: Sequence[CovariateMoments], *, control: int = 0, alpha: float = 0.05
) -> CupedAnalysis:
    """Every variant against the ``control`` (its index), all adjusted by one theta pooled over
    every variant."""
    theta = pooled_theta(arms)
    pooled = _sum(arms)
    x_mean = pooled.mean_x
    adjusted = tuple(
        AdjustedArm(
            n=a.n,
            mean=a.mean_y - theta * (a.mean_x - x_mean),
            variance=a.adjusted_variance(theta),
            unadjusted_mean=a.mean_y,
            unadjusted_variance=a.adjusted_variance(0.0),
        )
        for a in arms
    )
    comparisons = tuple(
        None if i == control else compare(a, arms[control], theta=theta, alpha=alpha)
        for i, a in enumerate(arms)
    )
    return CupedAnalysis(theta, x_mean, adjusted, comparisons)


@dataclass(frozen=True, slots=True)
class SequentialEffect:
    """The always-valid p-value and intervals of an adjusted comparison (mSPRT)."""

    p_value: float
    difference_ci: Interval
    lift_ci: Interval | None
    tau: float


def always_valid(
    comparison: CupedComparison, *, control_mean: float, tau: float, alpha: float = 0.05
) -> SequentialEffect | None:
    """The mSPRT of the adjusted difference with its adjusted variance and mixing scale ``tau``,
    and of the lift with ``tau / |control_mean|``; None without a positive variance."""
    effect = comparison.adjusted
    if effect.difference is None or effect.variance is None:
        return None
    found = msprt(effect.difference, effect.variance, tau, alpha)
    if found is None:
        return None
    lift_ci = None
    if effect.lift is not None and effect.lift_variance is not None and control_mean:
        lift = msprt(effect.lift, effect.lift_variance, tau / abs(control_mean), alpha)
        lift_ci = None if lift is None else lift.ci
    return SequentialEffect(found.p_value, found.ci, lift_ci, tau)


@dataclass(frozen=True, slots=True)
class CovariatePeriod:
    """One period of constant weights: each variant's moments (in variant order)."""

    period: int
    weights: tuple[float, ...]
    arms: tuple[CovariateMoments, ...]


def period_theta(periods: Sequence[CovariatePeriod]) -> float:
    """theta pooled over every variant of every period, each period's co-moments taken about
    its own pooled means (so a shift between periods does not enter theta); one period gives
    ``pooled_theta``."""
    s_yy = s_xx = s_xy = 0.0
    for period in periods:
        yy, xx, xy = _sum(period.arms).co_moments()
        s_yy, s_xx, s_xy = s_yy + yy, s_xx + xx, s_xy + xy
    return s_xy / s_xx if s_xx > 0 and s_yy > 0 else 0.0


def adjusted_strata(periods: Sequence[CovariatePeriod], theta: float) -> tuple[Stratum, ...]:
    """Each period's arms adjusted by ``theta`` about the period's pooled covariate mean, as
    value strata for ``stratified.compare_means`` and ``stratified.standardised_posteriors``
    (``successes`` is 0: an adjusted metric is a value, not a rate)."""
    strata = []
    for period in periods:
        x_mean = _sum(period.arms).mean_x
        arms = tuple(
            StratumArm(
                n=a.n,
                successes=0,
                mean=a.mean_y - theta * (a.mean_x - x_mean) if a.n > 0 else None,
                variance=a.adjusted_variance(theta) if a.n >= 2 else None,
            )
            for a in period.arms
        )
        strata.append(Stratum(period.period, period.weights, arms))
    return tuple(strata)


@dataclass(frozen=True, slots=True)
class PeriodComparison:
    """A variant against the control within periods, adjusted and unadjusted."""

    adjusted: Comparison
    unadjusted: Comparison
    theta: float
    variance_reduction: float | None


def compare_periods(
    periods: Sequence[CovariatePeriod], treatment: int, control: int, alpha: float = 0.05
) -> PeriodComparison:
    """The inverse-variance weighted difference over periods (``stratified.compare_means``) of
    the adjusted arms, and of the unadjusted ones."""
    theta = period_theta(periods)
    adjusted = stratified.compare_means(adjusted_strata(periods, theta), treatment, control, alpha)
    unadjusted = stratified.compare_means(adjusted_strata(periods, 0.0), treatment, control, alpha)
    reduction = None
    if adjusted.variance is not None and unadjusted.variance:
        reduction = 1 - adjusted.variance / unadjusted.variance
    return PeriodComparison(adjusted, unadjusted, theta, reduction)
