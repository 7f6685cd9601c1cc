"""The counters of a capped metric (winsorization, issue 18) as the analysis reads them: each
variant's (and each period's) totals of the metric replaced by the totals of its units' totals
capped at one threshold for every variant.

- An absolute cap: the stores keep the capped sums incrementally (``derived.capped_totals``).
- A percentile cap: the threshold is the quantile of every unit's total, the units of every
  variant pooled, those of the population without a total counting as 0
  (``abpilot.stats.capping``), from the store's per-unit totals (``get_unit_totals``); the capped
  sums are then summed from those totals.

The metric's ``count`` and ``units`` (conversions, converting units) are kept: a cap changes
values, not who converted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from abpilot.domain import derived
from abpilot.domain.experiment import Experiment, Metric
from abpilot.domain.records import MetricTotals, UnitMetricTotals, VariantCounters
from abpilot.stats.capping import percentile_threshold
from abpilot.stats.summary import Basis, summarise

Periods = list[tuple[int, tuple[float, ...], Mapping[str, VariantCounters]]]


@dataclass(frozen=True, slots=True)
class Capped:
    """The cap used (None: no unit to take a percentile of), the quantile of a percentile cap,
    and the counters with the metric's totals capped, in total and per period."""

    cap: float | None
    percentile: float | None
    counters: Mapping[str, VariantCounters]
    periods: Periods


def _with(counters: VariantCounters, metric: str, totals: MetricTotals) -> VariantCounters:
    plain = counters.metrics.get(metric, MetricTotals())
    capped = replace(totals, count=plain.count, units=plain.units)
    return replace(counters, metrics={**counters.metrics, metric: capped})


class UnitTotalsSource(Protocol):
    """Where a percentile cap reads the units' totals: a store (a warehouse refresh has none)."""

    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals: ...


def capped(
    store: UnitTotalsSource,
    exp: Experiment,
    metric: Metric,
    basis: Basis,
    counters: Mapping[str, VariantCounters],
    periods: Periods,
) -> Capped | None:
    """The counters of a capped ``metric`` (None when it has no cap)."""
    if metric.cap_absolute is not None:

        def absolute(by_variant: Mapping[str, VariantCounters]) -> dict[str, VariantCounters]:
            return {
                key: _with(c, metric.key, derived.capped_totals(c, metric.key))
                for key, c in by_variant.items()
            }

        return Capped(
            metric.cap_absolute,
            None,
            absolute(counters),
            [(p, w, absolute(c)) for p, w, c in periods],
        )
    if metric.cap_percentile is None:
        return None
    units = store.get_unit_totals(exp.id, metric.key)
    totals = np.asarray(units.totals, dtype=np.float64)
    population = sum(summarise(MetricTotals(), c, basis).n for c in counters.values())
    threshold = percentile_threshold(
        totals,
        quantile=metric.cap_percentile,
        zero_units=max(0, population - totals.size),
        rng=np.random.default_rng(0),
    )
    cap = threshold.value
    values = totals if cap is None else np.minimum(totals, cap)
    unit_variants = np.asarray(units.variants, dtype=np.str_)
    unit_periods = np.asarray(units.periods, dtype=np.int64)

    def sums(variant: str, period: int | None) -> MetricTotals:
        chosen = unit_variants == variant
        if period is not None:
            chosen &= unit_periods == period
        array = values[chosen]
        return MetricTotals(sum=float(array.sum()), sum_squares=float(np.dot(array, array)))

    return Capped(
        cap,
        metric.cap_percentile,
        {key: _with(c, metric.key, sums(key, None)) for key, c in counters.items()},
        [
            (p, w, {key: _with(c, metric.key, sums(key, p)) for key, c in by.items()})
            for p, w, by in periods
        ],
    )
