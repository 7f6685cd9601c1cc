"""The derived moments of a metric's counters, as the estimators take them (issue 18): the
covariate moments of an adjusted metric (``abpilot.stats.cuped``), in total and per period, and
the ratio moments of a ratio metric (``abpilot.stats.ratio``) with the arm and period forms the
analysis compares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from abpilot.domain import derived
from abpilot.domain.experiment import Experiment, Metric, MetricKind
from abpilot.domain.records import MetricTotals, VariantCounters
from abpilot.stats import ratio
from abpilot.stats.analysis import Arm
from abpilot.stats.cuped import CovariateMoments, CovariatePeriod
from abpilot.stats.ratio import RatioMoments
from abpilot.stats.stratified import StratumArm
from abpilot.stats.summary import Basis, summarise

_ZERO = MetricTotals()


def ratio_moments(
    exp: Experiment, metric: Metric, basis: Basis, counters: Mapping[str, VariantCounters]
) -> tuple[RatioMoments, ...]:
    """Each variant's sums of a ratio ``metric``'s numerator and denominator per unit totals
    and their cross sum (none for another kind)."""
    if metric.kind is not MetricKind.RATIO:
        return ()
    found = []
    for v in exp.variants:
        c = counters.get(v.key) or VariantCounters()
        numerator = c.metrics.get(metric.numerator or "", _ZERO)
        denominator = c.metrics.get(metric.denominator or "", _ZERO)
        found.append(
            RatioMoments(
                n=summarise(_ZERO, c, basis).n,
                sum_numerator=numerator.sum,
                sum_numerator_squares=numerator.sum_squares,
                sum_denominator=denominator.sum,
                sum_denominator_squares=denominator.sum_squares,
                sum_products=derived.ratio_cross_sum(c, metric.key),
            )
        )
    return tuple(found)


def ratio_stratum(moments: RatioMoments) -> StratumArm:
    """A variant of a ratio metric in one period: its ratio, and n times its delta-method
    variance (None without a denominator or below 2 units: the period is then left out)."""
    found = ratio.estimate(moments)
    variance = None if found.variance is None else found.variance * found.n
    return StratumArm(found.n, 0, found.ratio, variance)


def ratio_arm(arm: Arm, moments: RatioMoments) -> Arm:
    """A variant of a ratio metric: its mean is the ratio, its variance per unit the delta
    method's (n times the variance of the ratio)."""
    found = ratio.estimate(moments)
    variance = None if found.variance is None else found.variance * found.n
    return replace(arm, mean=found.ratio, variance=variance)


def covariate_moments(
    exp: Experiment,
    metric: Metric,
    basis: Basis,
    counters: Mapping[str, VariantCounters],
    periods: list[tuple[int, tuple[float, ...], Mapping[str, VariantCounters]]],
) -> tuple[tuple[CovariateMoments, ...], tuple[CovariatePeriod, ...]]:
    """Each variant's CUPED moments of an adjusted ``metric`` (none without a covariate), in
    total and per period of constant weights."""
    if not metric.covariate:
        return (), ()

    def arms(by_variant: Mapping[str, VariantCounters]) -> tuple[CovariateMoments, ...]:
        return tuple(
            _moments(by_variant.get(v.key) or VariantCounters(), metric, basis)
            for v in exp.variants
        )

    return arms(counters), tuple(
        CovariatePeriod(period, weights, arms(by_variant))
        for period, weights, by_variant in periods
    )


def _moments(counters: VariantCounters, metric: Metric, basis: Basis) -> CovariateMoments:
    """A variant's moments over its population: y the unit's total (a binary metric's
    converting units with sum(y^2) = sum(y)), x its covariate (0 when its exposure had none)."""
    covariate = derived.covariate_sums(counters, metric.covariate or "")
    cross = derived.cross_sum(counters, metric.key)
    summary = summarise(counters.metrics.get(metric.key, _ZERO), counters, basis)
    if metric.kind is MetricKind.BINARY:
        return CovariateMoments.binary(
            summary.n, summary.conversions, covariate.sum, covariate.sum_squares, cross
        )
    return CovariateMoments(
        summary.n, summary.sum, summary.sum_squares, covariate.sum, covariate.sum_squares, cross
    )
