"""Every variant against the control on one metric: the fixed-horizon test (Fisher's exact test
or Welch's t-test, per period when the weights changed), its always-valid form under the
sequential test, the Bayesian posteriors and the probability of being best, and the estimates
the guardrails are tested on. Pure: it takes a ``MetricInput`` and returns frozen results.

A metric with a covariate is compared by CUPED (``abpilot.stats.cuped``: one theta pooled over
every variant; within periods of constant weights, the per-period form), always-valid under the
sequential test; that adjusted comparison is the one the correction, the winner rule and the
decision read, and the unadjusted one is kept beside it (``Adjustment``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from abpilot.stats import cuped, guardrails, ratio, stratified
from abpilot.stats.bayes import BestArm, Posterior, best_arm, beta_posterior, normal_posterior
from abpilot.stats.frequentist import Comparison, compare_means, compare_proportions
from abpilot.stats.inputs import (
    Arm,
    MetricInput,
    control_index,
    difference_variance,
    lift_variance,
    mixing_scale,
    rate,
)
from abpilot.stats.options import AnalysisOptions
from abpilot.stats.sequential import msprt


@dataclass(frozen=True, slots=True)
class Adjustment:
    """What covariate adjustment did to one variant's comparison: the ``unadjusted`` comparison,
    the ``theta`` used and the variance reduction achieved (None without an unadjusted
    variance)."""

    unadjusted: Comparison
    theta: float
    variance_reduction: float | None


Compared = tuple[
    list[Comparison | None], BestArm | None, list[Posterior] | None, list[Adjustment | None]
]


def _compare(metric: MetricInput, i: int, c: int, options: AnalysisOptions) -> Comparison:
    arm, control = metric.arms[i], metric.arms[c]
    if metric.stratified:
        compare = stratified.compare_binary if metric.binary else stratified.compare_means
        comparison = compare(metric.strata, i, c, options.alpha)
        if metric.ratio_moments:  # each period's arms hold their ratio and its variance
            comparison = replace(comparison, method="delta_ratio_stratified")
    elif metric.binary:
        if arm.successes > arm.n or control.successes > control.n:
            return Comparison(None, None, None, None, None, "fisher_exact")
        comparison = compare_proportions(
            arm.successes, arm.n, control.successes, control.n, options.alpha
        )
    else:
        comparison = compare_means(
            arm.mean or 0.0,
            arm.variance or 0.0,
            arm.n,
            control.mean or 0.0,
            control.variance or 0.0,
            control.n,
            options.alpha,
        )
    if not options.sequential or comparison.difference is None:
        return comparison
    return _sequential(comparison, metric, arm, control, options)


def _sequential(
    comparison: Comparison, metric: MetricInput, arm: Arm, control: Arm, options: AnalysisOptions
) -> Comparison:
    """The always-valid p-value, difference interval and lift interval (the mSPRT of the lift
    with its delta-method variance and the mixing scale relative to the control). Within
    periods, the mSPRT of the periods' combined difference with its variance (the lift's over
    the control's pooled rate or mean squared, taken as known)."""
    tau = mixing_scale(metric, control, options)
    base = rate(control) if metric.binary else control.mean
    if metric.stratified:
        variance = comparison.variance or 0.0
    else:
        variance = difference_variance(metric, arm, control)
    result = (
        None if tau is None else msprt(comparison.difference or 0.0, variance, tau, options.alpha)
    )
    lift_ci = None
    if tau is not None and comparison.lift is not None and base:
        relative = variance / base**2 if metric.stratified else lift_variance(metric, arm, control)
        lift = msprt(comparison.lift, relative, tau / abs(base), options.alpha)
        lift_ci = None if lift is None else lift.ci
    return Comparison(
        difference=comparison.difference,
        difference_ci=None if result is None else result.ci,
        lift=comparison.lift,
        lift_ci=lift_ci,
        p_value=None if result is None else result.p_value,
        method="msprt",
        p_value_z=comparison.p_value_z,
    )


def _ratio(metric: MetricInput, i: int, c: int, options: AnalysisOptions) -> Comparison:
    """A ratio metric's variant against the control: the difference of ratios and the lift by
    the delta method (``abpilot.stats.ratio``); under the sequential test the mSPRT of both,
    the lift's mixing scale relative to the control's ratio."""
    e = ratio.compare_ratios(metric.ratio_moments[i], metric.ratio_moments[c], alpha=options.alpha)
    found = Comparison(
        e.difference,
        e.difference_ci,
        e.lift,
        e.lift_ci,
        e.p_value,
        "delta_ratio",
        variance=e.variance,
    )
    if not options.sequential or e.difference is None or e.variance is None:
        return found
    tau = mixing_scale(metric, metric.arms[c], options)
    valid = None if tau is None else msprt(e.difference, e.variance, tau, options.alpha)
    lift = None
    base = metric.arms[c].mean
    if tau is not None and valid is not None and e.lift is not None and base:
        lift = msprt(e.lift, e.lift_variance or 0.0, tau / abs(base), options.alpha)
    return replace(
        found,
        difference_ci=None if valid is None else valid.ci,
        lift_ci=None if lift is None else lift.ci,
        p_value=None if valid is None else valid.p_value,
        method="delta_ratio_msprt",
    )


def _posteriors(metric: MetricInput, options: AnalysisOptions) -> list[Posterior] | None:
    """Each variant's posterior; an adjusted metric's (binary too) are normal, of the CUPED
    arms (within periods, standardised over the adjusted periods), as its comparison is."""
    if metric.covariate_moments and metric.stratified:
        periods = metric.covariate_periods
        strata = cuped.adjusted_strata(periods, cuped.period_theta(periods))
        return stratified.standardised_posteriors(strata, False, options.prior)
    if metric.covariate_moments:
        adjusted = cuped.cuped(metric.covariate_moments, control=control_index(metric)).arms
        found = [normal_posterior(a.mean, a.variance, a.n) for a in adjusted]
        return None if any(p is None for p in found) else [p for p in found if p is not None]
    if metric.stratified:
        return stratified.standardised_posteriors(metric.strata, metric.binary, options.prior)
    if metric.binary:
        if any(a.successes > a.n for a in metric.arms):
            return None
        return [beta_posterior(a.successes, a.n, options.prior) for a in metric.arms]
    found = [normal_posterior(a.mean or 0.0, a.variance or 0.0, a.n) for a in metric.arms]
    return None if any(p is None for p in found) else [p for p in found if p is not None]


def compare_metric(metric: MetricInput, options: AnalysisOptions) -> Compared:
    """Each variant's comparison with the control (None for the control), the probability of
    being best and the posteriors (None when undefined)."""
    c = control_index(metric)
    compare = _ratio if metric.ratio_moments and not metric.stratified else _compare
    comparisons: list[Comparison | None] = [
        None if arm.is_control else compare(metric, i, c, options)
        for i, arm in enumerate(metric.arms)
    ]
    adjustments: list[Adjustment | None] = [None] * len(comparisons)
    if metric.covariate_moments:
        comparisons, adjustments = _adjusted(metric, comparisons, options)
    posteriors = _posteriors(metric, options)
    best = best_arm(posteriors) if posteriors else None
    return comparisons, best, posteriors, adjustments


def _adjusted(
    metric: MetricInput, unadjusted: list[Comparison | None], options: AnalysisOptions
) -> tuple[list[Comparison | None], list[Adjustment | None]]:
    """Each variant's CUPED comparison (within periods once the weights changed), always-valid
    under the sequential test, and its adjustment beside the ``unadjusted`` comparison."""
    c = control_index(metric)
    comparisons: list[Comparison | None] = []
    adjustments: list[Adjustment | None] = []
    for i, plain in enumerate(unadjusted):
        if plain is None:
            comparisons.append(None)
            adjustments.append(None)
            continue
        if metric.stratified:
            adjusted, adjustment = _adjusted_periods(metric, i, c, options)
        else:
            adjusted, adjustment = _adjusted_pooled(metric, i, c, options)
        comparisons.append(adjusted)
        adjustments.append(Adjustment(plain, *adjustment))
    return comparisons, adjustments


def _adjusted_pooled(
    metric: MetricInput, i: int, c: int, options: AnalysisOptions
) -> tuple[Comparison, tuple[float, float | None]]:
    """CUPED with theta pooled over every variant; under the sequential test its always-valid
    form (``cuped.always_valid``)."""
    moments = metric.covariate_moments
    found = cuped.compare(
        moments[i], moments[c], theta=cuped.pooled_theta(moments), alpha=options.alpha
    )
    e = found.adjusted
    adjusted = Comparison(
        e.difference, e.difference_ci, e.lift, e.lift_ci, e.p_value, "cuped", variance=e.variance
    )
    if options.sequential and e.difference is not None:
        tau = mixing_scale(metric, metric.arms[c], options)
        valid = None
        if tau is not None:
            valid = cuped.always_valid(
                found, control_mean=moments[c].mean_y, tau=tau, alpha=options.alpha
            )
        adjusted = replace(
            adjusted,
            difference_ci=None if valid is None else valid.difference_ci,
            lift_ci=None if valid is None else valid.lift_ci,
            p_value=None if valid is None else valid.p_value,
            method="cuped_msprt",
        )
    return adjusted, (found.theta, found.variance_reduction)


def _adjusted_periods(
    metric: MetricInput, i: int, c: int, options: AnalysisOptions
) -> tuple[Comparison, tuple[float, float | None]]:
    """CUPED within periods of constant weights (``cuped.compare_periods``); under the
    sequential test the mSPRT of the adjusted difference, and of the lift with the control's
    pooled unadjusted mean taken as known."""
    found = cuped.compare_periods(metric.covariate_periods, i, c, options.alpha)
    adjusted = replace(found.adjusted, method=f"cuped_{found.adjusted.method}")
    variance = adjusted.variance
    if options.sequential and adjusted.difference is not None:
        tau = mixing_scale(metric, metric.arms[c], options)
        base = cuped.CovariateMoments(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        for period in metric.covariate_periods:
            base = base + period.arms[c]
        valid = lift = None
        if tau is not None and variance is not None:
            valid = msprt(adjusted.difference, variance, tau, options.alpha)
            if valid is not None and adjusted.lift is not None and base.mean_y:
                scale = abs(base.mean_y)
                lift = msprt(adjusted.lift, variance / scale**2, tau / scale, options.alpha)
        adjusted = replace(
            adjusted,
            difference_ci=None if valid is None else valid.ci,
            lift_ci=None if lift is None else lift.ci,
            p_value=None if valid is None else valid.p_value,
            method="cuped_msprt",
        )
    return adjusted, (found.theta, found.variance_reduction)


def _adjusted_estimate(metric: MetricInput, i: int, c: int) -> guardrails.Estimate | None:
    """An adjusted guardrail's estimate, from the CUPED comparison the analysis reports: the
    adjusted difference with its variance and Welch's degrees of freedom, or the adjusted lift
    with gbstats' delta-method variance; within periods, the per-period adjusted difference
    (over the control's pooled unadjusted mean, taken as known, for a lift)."""
    if metric.stratified:
        periods = metric.covariate_periods
        found = cuped.compare_periods(periods, i, c).adjusted
        if found.difference is None or found.variance is None:
            return None
        if not metric.margin_relative:
            return guardrails.Estimate(found.difference, found.variance)
        base = sum((p.arms[c] for p in periods), cuped.CovariateMoments(0, 0, 0, 0, 0, 0))
        scale = abs(base.mean_y)
        if not scale:
            return None
        return guardrails.Estimate(found.difference / scale, found.variance / scale**2)
    moments = metric.covariate_moments
    e = cuped.compare(moments[i], moments[c], theta=cuped.pooled_theta(moments)).adjusted
    if metric.margin_relative:
        if e.lift is None or e.lift_variance is None:
            return None
        return guardrails.Estimate(e.lift, e.lift_variance)
    if e.difference is None or e.variance is None:
        return None
    return guardrails.Estimate(e.difference, e.variance, e.df)


def _estimate(metric: MetricInput, i: int, c: int) -> guardrails.Estimate | None:
    """The fixed-horizon estimate a guardrail is tested on: the difference (of rates with the
    unpooled variance, of means with Welch's degrees of freedom), or with a relative margin the
    lift with its delta-method variance. Across periods of constant weights, the stratified
    difference (over the control's pooled rate or mean, taken as known, for a lift). An adjusted
    metric's is CUPED's (``_adjusted_estimate``); a ratio metric's arms hold each variant's
    ratio and delta-method variance, so the same formulas give the delta-method estimate."""
    if metric.covariate_moments:
        return _adjusted_estimate(metric, i, c)
    arm, control = metric.arms[i], metric.arms[c]
    base = rate(control) if metric.binary else control.mean
    if metric.stratified:
        compare = stratified.compare_binary if metric.binary else stratified.compare_means
        found = compare(metric.strata, i, c, 0.05)
        if found.difference is None or found.variance is None:
            return None
        if not metric.margin_relative:
            return guardrails.Estimate(found.difference, found.variance)
        return (
            guardrails.Estimate(found.difference / base, found.variance / base**2) if base else None
        )
    if arm.n < 2 or control.n < 2:
        return None
    if metric.binary and (arm.successes > arm.n or control.successes > control.n):
        return None
    if metric.margin_relative:
        mean = rate(arm) if metric.binary else arm.mean
        if not base:
            return None
        return guardrails.Estimate((mean or 0.0) / base - 1, lift_variance(metric, arm, control))
    if metric.binary:
        variance = difference_variance(metric, arm, control)
        return guardrails.Estimate((rate(arm) or 0.0) - (base or 0.0), variance)
    se2_t, se2_c = (arm.variance or 0.0) / arm.n, (control.variance or 0.0) / control.n
    se2 = se2_t + se2_c
    df = se2**2 / (se2_t**2 / (arm.n - 1) + se2_c**2 / (control.n - 1)) if se2 > 0 else None
    return guardrails.Estimate((arm.mean or 0.0) - (base or 0.0), se2, df)


def guardrail_checks(
    metric: MetricInput, options: AnalysisOptions
) -> list[guardrails.GuardrailCheck]:
    """Every variant on the guardrail ``metric``. The mixing scale of the always-valid tests is
    the margin (the harm worth detecting), or the sequential test's scale when the margin is 0
    (over the control's rate or mean for a relative margin)."""
    c = control_index(metric)
    control = metric.arms[c]
    margin = metric.margin or 0.0
    tau = margin or mixing_scale(metric, control, options)
    if tau is not None and metric.margin_relative and not margin:
        base = rate(control) if metric.binary else control.mean
        tau = tau / abs(base) if base else None
    return [
        guardrails.check(
            _estimate(metric, i, c),
            metric=metric.key,
            variant=arm.key,
            higher_is_better=metric.higher_is_better,
            margin=margin,
            margin_relative=metric.margin_relative,
            alpha=options.alpha,
            tau=tau,
            sequential=options.sequential,
        )
        for i, arm in enumerate(metric.arms)
        if not arm.is_control
    ]
