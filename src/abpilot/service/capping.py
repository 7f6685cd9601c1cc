"""The counters of a capped metric (winsorization, issue 18) as the analysis reads them: each
variant's (and each period's) totals of the metric replaced by the totals of its units' totals
capped at one threshold for every variant.

- An absolute cap: the stores keep the capped sums incrementally (``derived.capped_totals``).
- A percentile cap kept with the counters (a warehouse refresh computes the threshold and the
  capped sums in the warehouse: ``derived.kept_threshold`` and ``derived.capped_totals``).
- Otherwise a percentile cap: the threshold is the quantile of every unit's total, the units
  of every variant pooled, those of the population without a total counting as 0
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

    def kept(by_variant: Mapping[str, VariantCounters]) -> dict[str, VariantCounters]:
        return {
            key: _with(c, metric.key, derived.capped_totals(c, metric.key))
            for key, c in by_variant.items()
        }

    if metric.cap_absolute is not None:
        return Capped(
            metric.cap_absolute, None, kept(counters), [(p, w, kept(c)) for p, w, c in periods]
        )
    if metric.cap_percentile is None:
        return None
    kept_threshold = derived.kept_threshold(counters.values(), metric.key)
    if kept_threshold is not None:
        return Capped(
            kept_threshold.sum if kept_threshold.count else None,
            metric.cap_percentile,
            kept(counters),
            [(p, w, kept(c)) for p, w, c in periods],
        )
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
    cells: dict[tuple[str, int], list[float]] = {}
    for variant, period, value in zip(units.variants, units.periods, values, strict=True):
        cells.setdefault((variant, period), []).append(float(value))

    def sums(variant: str, period: int | None) -> MetricTotals:
        found = [
            v
            for (key, p), vs in cells.items()
            if key == variant and period in (None, p)
            for v in vs
        ]
        array = np.asarray(found, dtype=np.float64)
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
