"""Reading an experiment's results: counters and summaries per variant, and the analysis of
every variant against the control (within periods of constant weights once a bandit moved them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from abpilot.domain.errors import ValidationError
from abpilot.domain.experiment import Experiment, ExperimentStatus, MetricKind
from abpilot.stats.analysis import Analysis, Arm, MetricInput, analyse
from abpilot.stats.corrections import Correction
from abpilot.stats.options import analysis_options
from abpilot.stats.stratified import Stratum, StratumArm
from abpilot.stats.summary import Basis, MetricSummary, summarise
from abpilot.store.base import MetricTotals, Store, VariantCounters

_ZERO = MetricTotals()


@dataclass(frozen=True, slots=True)
class VariantMetrics:
    key: str
    name: str
    is_control: bool
    weight: float
    assigned_units: int
    exposures: int
    unique_units: int
    metrics: Mapping[str, MetricSummary]


@dataclass(frozen=True, slots=True)
class ExperimentMetrics:
    experiment_id: str
    experiment_key: str
    status: ExperimentStatus
    variants: tuple[VariantMetrics, ...]


def experiment_metrics(store: Store, exp: Experiment) -> ExperimentMetrics:
    """Counters and per-metric summaries of every variant of ``exp``, summed over periods."""
    counters = store.get_counters(exp.id)
    variants = []
    for variant in exp.variants:
        counts = counters.get(variant.key, VariantCounters())
        summaries = {
            metric.key: summarise(counts.metrics.get(metric.key, _ZERO), counts)
            for metric in exp.metrics
        }
        variants.append(
            VariantMetrics(
                key=variant.key,
                name=variant.name,
                is_control=variant.is_control,
                weight=variant.weight,
                assigned_units=counts.assigned_units,
                exposures=counts.exposures,
                unique_units=counts.unique_units,
                metrics=summaries,
            )
        )
    return ExperimentMetrics(exp.id, exp.key, exp.status, tuple(variants))


def analyse_experiment(
    store: Store,
    exp: Experiment,
    *,
    metric: str | None = None,
    correction: Correction | str | None = None,
    sequential: bool | None = None,
    alpha: float | None = None,
) -> Analysis:
    """Every variant against the control; the request's options override the experiment's
    ``settings.analysis``. The multiple-comparison family is every variant on every metric."""
    metric_key = metric or exp.primary_metric.key
    if exp.metric(metric_key) is None:
        allowed = ", ".join(m.key for m in exp.metrics)
        raise ValidationError(
            f"experiment '{exp.key}' has no metric '{metric_key[:100]}' (metrics: {allowed})",
            field="metric",
        )
    metrics = experiment_metrics(store, exp)
    options = analysis_options(exp.settings).overridden(
        alpha=alpha, correction=correction, sequential=sequential
    )
    periods = _periods(store, exp)
    inputs = [
        MetricInput(
            key=m.key,
            binary=m.kind is MetricKind.BINARY,
            arms=tuple(_arm(v, m.key) for v in metrics.variants),
            strata=tuple(
                Stratum(
                    period=period,
                    weights=weights,
                    arms=tuple(_stratum_arm(counters.get(v.key), m.key) for v in exp.variants),
                )
                for period, weights, counters in periods
            ),
        )
        for m in exp.metrics
    ]
    return analyse(inputs, metric=metric_key, options=options)


def _periods(
    store: Store, exp: Experiment
) -> list[tuple[int, tuple[float, ...], Mapping[str, VariantCounters]]]:
    """(period, weights in force, counters) for every period with data, when the weights
    ever changed; empty for an experiment whose weights never changed."""
    changes = store.list_allocations(exp.id)
    if not changes:
        return []
    weights = {0: tuple(v.weight for v in exp.variants)}
    for change in changes:
        weights[change.period] = tuple(change.weights.get(v.key, 0.0) for v in exp.variants)
    by_period = store.get_period_counters(exp.id)
    return [(p, weights.get(p, weights[0]), by_period[p]) for p in sorted(by_period)]


def _arm(variant: VariantMetrics, metric: str) -> Arm:
    summary = variant.metrics[metric]
    successes = summary.count if summary.basis is Basis.EXPOSURES else summary.units
    return Arm(
        key=variant.key,
        is_control=variant.is_control,
        weight=variant.weight,
        n=summary.n,
        successes=successes,
        mean=summary.mean,
        variance=summary.variance,
    )


def _stratum_arm(counters: VariantCounters | None, metric: str) -> StratumArm:
    summary = summarise(
        (counters or VariantCounters()).metrics.get(metric, MetricTotals()),
        counters or VariantCounters(),
    )
    successes = summary.count if summary.basis is Basis.EXPOSURES else summary.units
    return StratumArm(summary.n, successes, summary.mean, summary.variance)
