"""The counters of a capped metric (winsorization, issue 18) as the analysis reads them: each
variant's (and each period's, or each segment's) totals of the metric replaced by the totals of
its units' totals capped at ONE threshold for every variant, period and segment.

- An absolute cap: the stores keep the capped sums incrementally (``derived.capped_totals``),
  and Σ min(y, c)·x for a metric with a covariate (``derived.capped_cross_sum``), per segment
  too.
- A percentile cap kept with the counters (a warehouse refresh computes the threshold and the
  capped sums, Σ min(y, c)·x too, in the warehouse: ``derived.kept_threshold``): read like an
  absolute cap's.
- Otherwise a percentile cap: the threshold is the quantile of every unit's total, the units of
  every variant pooled, those of the population without a total counting as 0
  (``abpilot.stats.capping``), from the store's per-unit totals (``get_unit_totals``, with the
  covariate of an adjusted metric); the capped sums (and Σ min(y, c)·x) per variant and period
  are then summed from those totals. Within segments (``segments``) the threshold is the same
  overall one, applied to each segment's units: a unit's segment is its dimension fact, the
  reserved per-unit row ``(unit, ~d:<dim>)`` holding its slot, read by the same per-unit read.

For a metric with a covariate the capped cross sum replaces Σxy in the counters handed on, so
the covariate adjustment (``abpilot.stats.cuped``) adjusts the capped values. The metric's
``count`` and ``units`` (conversions, converting units) are kept: a cap changes values, not who
converted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from abpilot.domain import derived
from abpilot.domain.experiment import Experiment, Metric
from abpilot.domain.records import MetricTotals, UnitMetricTotals, VariantCounters
from abpilot.stats.capping import percentile_threshold
from abpilot.stats.summary import Basis, summarise

Periods = list[tuple[int, tuple[float, ...], Mapping[str, VariantCounters]]]
NO_SEGMENT = -2  # a unit without the dimension (OTHER_SLOT, -1, is the segment "other")


@dataclass(frozen=True, slots=True)
class Capped:
    """The cap used (None: no unit to take a percentile of), the quantile of a percentile cap,
    and the counters with the metric's totals capped, in total and per period."""

    cap: float | None
    percentile: float | None
    counters: Mapping[str, VariantCounters]
    periods: Periods


def _with(
    counters: VariantCounters, metric: Metric, totals: MetricTotals, cross: float
) -> VariantCounters:
    """``counters`` with ``metric``'s totals capped (its count and units kept) and, for an
    adjusted metric, its cross sum Σxy the capped one."""
    plain = counters.metrics.get(metric.key, MetricTotals())
    capped = replace(totals, count=plain.count, units=plain.units)
    found = replace(counters, metrics={**counters.metrics, metric.key: capped})
    return derived.with_cross_sum(found, metric.key, cross) if metric.covariate else found


class UnitTotalsSource(Protocol):
    """Where a percentile cap reads the units' totals: a store (a warehouse refresh has none)."""

    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals: ...


def _absolute(
    metric: Metric, by_variant: Mapping[str, VariantCounters]
) -> dict[str, VariantCounters]:
    return {
        key: _with(
            c,
            metric,
            derived.capped_totals(c, metric.key),
            derived.capped_cross_sum(c, metric.key),
        )
        for key, c in by_variant.items()
    }


@dataclass(frozen=True, slots=True)
class CappedUnits:
    """The converting units of a percentile-capped metric: each one's id, variant (an index
    into ``variant_keys``), period, total capped at ``cap`` and covariate (0 without one)."""

    cap: float | None
    units: tuple[str, ...]
    variant_keys: tuple[str, ...]
    variants: NDArray[np.intp]
    periods: NDArray[np.int64]
    values: NDArray[np.float64]
    covariates: NDArray[np.float64]

    def sums(
        self, variant: str, period: int | None = None, where: NDArray[np.bool_] | None = None
    ) -> tuple[MetricTotals, float]:
        """The capped totals and Σ min(y, c)·x of ``variant``'s units (in ``period``, and among
        ``where`` when given)."""
        if variant not in self.variant_keys:
            return MetricTotals(), 0.0
        mask = self.variants == self.variant_keys.index(variant)
        if period is not None:
            mask &= self.periods == period
        if where is not None:
            mask &= where
        values = self.values[mask]
        totals = MetricTotals(sum=float(values.sum()), sum_squares=float(np.dot(values, values)))
        return totals, float(np.dot(values, self.covariates[mask]))


def percentile_units(
    store: UnitTotalsSource,
    exp: Experiment,
    metric: Metric,
    basis: Basis,
    counters: Mapping[str, VariantCounters],
) -> CappedUnits:
    """The threshold of a percentile-capped ``metric`` over the whole experiment (``counters``
    summed over periods, every variant; the population on ``basis`` gives the zero units), and
    every converting unit's capped total."""
    assert metric.cap_percentile is not None
    units = store.get_unit_totals(exp.id, metric.key, metric.covariate)
    totals = np.asarray(units.totals, dtype=np.float64)
    population = sum(summarise(MetricTotals(), c, basis).n for c in counters.values())
    threshold = percentile_threshold(
        totals,
        quantile=metric.cap_percentile,
        zero_units=max(0, population - totals.size),
        rng=np.random.default_rng(0),
    )
    cap = threshold.value
    keys = tuple(dict.fromkeys(units.variants))
    index = {key: i for i, key in enumerate(keys)}
    return CappedUnits(
        cap,
        tuple(units.units),
        keys,
        np.fromiter((index[v] for v in units.variants), dtype=np.intp, count=totals.size),
        np.asarray(units.periods, dtype=np.int64),
        totals if cap is None else np.minimum(totals, cap),
        np.asarray(units.covariates, dtype=np.float64),
    )


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
        return Capped(
            metric.cap_absolute,
            None,
            _absolute(metric, counters),
            [(p, w, _absolute(metric, c)) for p, w, c in periods],
        )
    if metric.cap_percentile is None:
        return None
    kept = derived.kept_threshold(counters.values(), metric.key)
    if kept is not None:
        return Capped(
            kept.sum if kept.count else None,
            metric.cap_percentile,
            _absolute(metric, counters),
            [(p, w, _absolute(metric, c)) for p, w, c in periods],
        )
    units = percentile_units(store, exp, metric, basis, counters)
    return Capped(
        units.cap,
        metric.cap_percentile,
        {key: _with(c, metric, *units.sums(key)) for key, c in counters.items()},
        [
            (p, w, {key: _with(c, metric, *units.sums(key, p)) for key, c in by.items()})
            for p, w, by in periods
        ],
    )


def segments(
    store: UnitTotalsSource,
    exp: Experiment,
    metric: Metric,
    dimension: str,
    by_segment: Mapping[str, Mapping[str, VariantCounters]],
    overall: tuple[Basis, Mapping[str, VariantCounters]],
) -> dict[str, Capped]:
    """Each segment's counters of a capped ``metric`` (none without a cap): an absolute cap from
    the segment's capped sums; a percentile cap at the threshold of the whole experiment
    (``overall``: the basis and counters it is taken over), summed over the segment's units."""
    if metric.cap_absolute is not None:
        return {
            value: Capped(metric.cap_absolute, None, _absolute(metric, counters), [])
            for value, counters in by_segment.items()
        }
    if metric.cap_percentile is None:
        return {}
    kept = derived.kept_threshold(overall[1].values(), metric.key)
    if kept is not None:  # a warehouse refresh capped each segment's units at the overall one
        cap = kept.sum if kept.count else None
        return {
            value: Capped(cap, metric.cap_percentile, _absolute(metric, counters), [])
            for value, counters in by_segment.items()
        }
    units = percentile_units(store, exp, metric, *overall)
    names = derived.segment_values(overall[1].values(), dimension)
    facts = store.get_unit_totals(exp.id, derived.dimension_fact(dimension))
    slot_of = dict(zip(facts.units, facts.totals, strict=True))
    slots = np.fromiter(
        (slot_of.get(unit, NO_SEGMENT) for unit in units.units),
        dtype=np.float64,
        count=len(units.units),
    ).astype(np.int64)
    # Slots named as ``derived.segments`` names them; a unit without the dimension is in none.
    numbers = {value: slot for slot, value in names.items()}
    found = {}
    for value, counters in by_segment.items():
        slot = numbers.get(value, int(value[1:]) if value.startswith("#") else NO_SEGMENT)
        where = slots == slot
        found[value] = Capped(
            units.cap,
            metric.cap_percentile,
            {key: _with(c, metric, *units.sums(key, where=where)) for key, c in counters.items()},
            [],
        )
    return found
