"""Reading an experiment's results: counters and summaries per variant, and the analysis of
every variant against the control (within periods of constant weights once a bandit moved them).

Every variant of a metric is summarised on one basis (``abpilot.stats.summary``), in every period
too, so that no variant is measured on exposed units while another is measured on assigned units
or exposures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from abpilot import notebook
from abpilot.domain import derived
from abpilot.domain.errors import ValidationError
from abpilot.domain.experiment import (
    Experiment,
    ExperimentStatus,
    Metric,
    MetricKind,
    MetricRole,
)
from abpilot.monitoring.options import Harm, monitoring_options
from abpilot.service import capping
from abpilot.service.moments import covariate_moments, ratio_arm, ratio_moments, ratio_stratum
from abpilot.stats.analysis import Analysis, Arm, MetricInput, analyse
from abpilot.stats.corrections import Correction
from abpilot.stats.options import analysis_options
from abpilot.stats.segments import SegmentBreakdown, breakdown
from abpilot.stats.stratified import Stratum, StratumArm
from abpilot.stats.summary import (
    Basis,
    MetricPopulation,
    MetricSummary,
    summarise,
    summarise_metric,
)
from abpilot.store.base import AllocationRecord, MetricTotals, UnitMetricTotals, VariantCounters

if TYPE_CHECKING:
    from pandas import DataFrame

_ZERO = MetricTotals()


class CounterSource(Protocol):
    """What the analysis reads: a store, or the latest warehouse refresh of an experiment
    (``abpilot.warehouse.counters.RefreshCounters``)."""

    def get_counters(self, experiment_id: str) -> dict[str, VariantCounters]: ...

    def get_period_counters(self, experiment_id: str) -> dict[int, dict[str, VariantCounters]]: ...

    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]: ...

    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals: ...


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
class MetricBasis:
    """The population every variant of one metric is counted on, and why the variants' data do
    not measure the same population (empty when they do)."""

    basis: Basis
    mixed_populations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExperimentMetrics:
    experiment_id: str
    experiment_key: str
    status: ExperimentStatus
    variants: tuple[VariantMetrics, ...]
    metrics: Mapping[str, MetricBasis] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """A row per metric and variant, in a notebook (``abpilot.notebook``)."""
        mixed = {
            f"{key} is not measured on one population": "; ".join(basis.mixed_populations)
            for key, basis in self.metrics.items()
            if basis.mixed_populations
        }
        return notebook.table(
            f"Metrics of {self.experiment_key}",
            _metric_rows(self),
            note=str(self.status),
            details={**notebook.record(self), **mixed},
        )

    def to_frame(self) -> DataFrame:
        """A row per metric and variant, indexed by (``metric``, ``variant``): the variant's
        counters (the fields of ``VariantMetrics``) and the metric's summary (the fields of
        ``MetricSummary``). Needs pandas."""
        return notebook.frame(_metric_rows(self), index=["metric", "variant"])


def _metric_rows(metrics: ExperimentMetrics) -> list[dict[str, object]]:
    keys = dict.fromkeys(key for v in metrics.variants for key in v.metrics)
    return [
        {
            "metric": key,
            **notebook.record(v, skip=("metrics",), rename={"key": "variant"}),
            **notebook.record(v.metrics[key]),
        }
        for key in keys
        for v in metrics.variants
        if key in v.metrics
    ]


def metric_populations(
    exp: Experiment, counters: Mapping[str, VariantCounters]
) -> dict[str, MetricPopulation]:
    """Every metric of ``exp``: its variants' summaries (in order) on one basis."""
    keys = [v.key for v in exp.variants]
    return {m.key: summarise_metric(m.key, keys, counters) for m in exp.metrics}


def experiment_metrics(store: CounterSource, exp: Experiment) -> ExperimentMetrics:
    """Counters and per-metric summaries of every variant of ``exp``, summed over periods."""
    counters = store.get_counters(exp.id)
    populations = metric_populations(exp, counters)
    variants = []
    for i, variant in enumerate(exp.variants):
        counts = counters.get(variant.key, VariantCounters())
        summaries = {key: p.summaries[i] for key, p in populations.items()}
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
    return ExperimentMetrics(
        exp.id,
        exp.key,
        exp.status,
        tuple(variants),
        {key: MetricBasis(p.basis, p.mixed) for key, p in populations.items()},
    )


def analyse_experiment(
    store: CounterSource,
    exp: Experiment,
    *,
    metric: str | None = None,
    correction: Correction | str | None = None,
    sequential: bool | None = None,
    alpha: float | None = None,
) -> Analysis:
    """Every variant against the control; the request's options override the experiment's
    ``settings.analysis``. Multiple comparisons are corrected within two families: the primary
    (first) metric's variants, and the other metrics' variants together."""
    metric_key = _metric_key(exp, metric)
    metrics = experiment_metrics(store, exp)
    options = analysis_options(exp.settings).overridden(
        alpha=alpha, correction=correction, sequential=sequential
    )
    periods = _periods(store, exp)
    counters = store.get_counters(exp.id)
    inputs = []
    for m in exp.metrics:
        basis = metrics.metrics[m.key]
        cap = capping.capped(store, exp, m, basis.basis, counters, periods)
        inputs.append(
            _metric_input(
                exp,
                m,
                basis,
                cap.counters if cap else counters,
                cap.periods if cap else periods,
                cap,
            )
        )
    return analyse(inputs, metric=metric_key, options=options, watched=watched(exp, inputs))


def watched(exp: Experiment, inputs: list[MetricInput]) -> list[MetricInput]:
    """``settings.monitoring.guardrails`` (the older setting) folded into the guardrails: each
    metric listed that is no ``"role": "guardrail"`` is watched for harm with margin 0 (any
    harm counts), higher being better unless its harm is ``"increase"``; the decision does not
    read it (the setting never decided a launch), monitoring's ``guardrail_harm`` does."""
    section = exp.settings.get("monitoring")
    raw = section.get("guardrails") if isinstance(section, Mapping) else None
    if not raw:
        return []
    # Only this key is read: the other monitoring thresholds never fail an analysis.
    listed = monitoring_options({"monitoring": {"guardrails": raw}}).guardrails
    by_key = {m.key: m for m in inputs}
    return [
        replace(
            by_key[g.metric],
            margin=0.0,
            margin_relative=False,
            higher_is_better=g.harm is Harm.DECREASE,
        )
        for g in listed
        if g.metric in by_key and by_key[g.metric].margin is None
    ]


def _metric_key(exp: Experiment, metric: str | None) -> str:
    """The metric analysed (default: the primary); a ValidationError naming ``metric`` when
    the experiment has no such metric."""
    metric_key = metric or exp.primary_metric.key
    if exp.metric(metric_key) is None:
        allowed = ", ".join(m.key for m in exp.metrics)
        raise ValidationError(
            f"experiment '{exp.key}' has no metric '{metric_key[:100]}' (metrics: {allowed})",
            field="metric",
        )
    return metric_key


def segment_breakdown(
    store: CounterSource,
    exp: Experiment,
    *,
    dimension: str,
    metric: str | None = None,
    correction: Correction | str | None = None,
    sequential: bool | None = None,
    alpha: float | None = None,
) -> SegmentBreakdown:
    """``metric`` (default: the primary) analysed per segment of a declared ``dimension`` from
    its segment counters (the same options as ``analyse_experiment``; a capped metric at the
    threshold of the whole experiment, ``capping.segments``), BH across segments and
    Cochran's Q."""
    metric_key = _metric_key(exp, metric)
    if dimension not in exp.dimensions:
        declared = ", ".join(exp.dimensions) or "none"
        raise ValidationError(
            f"experiment '{exp.key}' has no dimension '{dimension[:100]}' (declared: {declared})",
            field="dimension",
        )
    options = analysis_options(exp.settings).overridden(
        alpha=alpha, correction=correction, sequential=sequential
    )
    overall = store.get_counters(exp.id)
    by_segment = derived.segments(overall, dimension, [m.key for m in exp.metrics])
    everyone = metric_populations(exp, overall)
    caps = {
        m.key: capping.segments(
            store, exp, m, dimension, by_segment, (everyone[m.key].basis, overall)
        )
        for m in exp.metrics
    }
    inputs = {}
    for value, counters in by_segment.items():
        populations = metric_populations(exp, counters)
        found = []
        for m in exp.metrics:
            basis = MetricBasis(populations[m.key].basis, populations[m.key].mixed)
            cap = caps[m.key].get(value)
            found.append(_metric_input(exp, m, basis, cap.counters if cap else counters, [], cap))
        inputs[value] = found
    return breakdown(dimension, inputs, metric=metric_key, options=options)


def _metric_input(
    exp: Experiment,
    m: Metric,
    basis: MetricBasis,
    counters: Mapping[str, VariantCounters],
    periods: list[tuple[int, tuple[float, ...], Mapping[str, VariantCounters]]],
    cap: capping.Capped | None,
) -> MetricInput:
    """What the analysis takes of metric ``m``: its arms (a capped metric's from its capped
    totals, a ratio's ratios), per period when weights changed, and its derived moments (a
    capped metric's cross sum is the capped one, ``abpilot.service.capping``; a ratio's
    periods hold each variant's ratio and delta-method variance, ``abpilot.service.moments``)."""
    arms = []
    for v in exp.variants:
        c = counters.get(v.key) or VariantCounters()
        summary = summarise(c.metrics.get(m.key, _ZERO), c, basis.basis)
        arms.append(
            Arm(
                key=v.key,
                is_control=v.is_control,
                weight=v.weight,
                n=summary.n,
                successes=summary.conversions,
                mean=summary.mean,
                variance=summary.variance,
                name=v.name,
            )
        )
    ratios = ratio_moments(exp, m, basis.basis, counters)
    if ratios:
        arms = [ratio_arm(a, r) for a, r in zip(arms, ratios, strict=True)]
    moments, by_period = covariate_moments(exp, m, basis.basis, counters, periods)
    strata = tuple(
        Stratum(
            period=period,
            weights=weights,
            arms=tuple(_stratum_arm(by.get(v.key), m.key, basis.basis) for v in exp.variants)
            if not ratios
            else tuple(ratio_stratum(r) for r in ratio_moments(exp, m, basis.basis, by)),
        )
        for period, weights, by in periods
    )
    return MetricInput(
        key=m.key,
        binary=m.kind is MetricKind.BINARY,
        arms=tuple(arms),
        ratio_moments=ratios,
        strata=strata,
        basis=basis.basis.value,
        mixed_populations=basis.mixed_populations,
        higher_is_better=m.higher_is_better,
        margin=m.margin if m.role is MetricRole.GUARDRAIL else None,
        margin_relative=m.margin_relative,
        covariate=m.covariate,
        covariate_moments=moments,
        covariate_periods=by_period,
        cap=None if cap is None else cap.cap,
        cap_percentile=None if cap is None else cap.percentile,
    )


def _periods(
    store: CounterSource, exp: Experiment
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


def _stratum_arm(counters: VariantCounters | None, metric: str, basis: Basis) -> StratumArm:
    """One variant in one period, on the basis of the whole experiment."""
    counts = counters or VariantCounters()
    summary = summarise(counts.metrics.get(metric, _ZERO), counts, basis)
    return StratumArm(summary.n, summary.conversions, summary.mean, summary.variance)
