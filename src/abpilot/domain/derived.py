"""The one codec of the derived counters (issue 18): names of the reserved cells the counting
core keeps beside the user's metrics, and the readers that give them back typed.

Derived sums are kept as metric cells (``MetricTotals``) whose names start with ``~``, which a
metric key cannot hold, so every store keeps and adds them as it keeps any metric cell, with no
new table, column or script. Names carry a short digest of the metric, covariate or dimension
(10 hex digits) so they fit every store's key length; readers take the names and hash them.
``group_counters`` moves reserved cells from ``VariantCounters.metrics`` to
``VariantCounters.derived``: they never show as user metrics. Per (variant, period):

- ``~x:<cov>``: covariate sums over exposed units: ``units``, ``sum`` Σx, ``sum_squares`` Σx²;
- ``~xy:<metric>``: ``sum`` Σxy, x the metric's covariate, y the unit's total;
- ``~cap:<metric>``: ``sum`` and ``sum_squares`` of the units' totals capped at the absolute cap;
- ``~cxy:<metric>``: ``sum`` Σ min(y, c)·x, for a metric with an absolute cap and a covariate;
- ``~nd:<ratio>``: ``sum`` Σ(N·D) over units of the ratio's per-unit totals;
- ``~pct:<metric>``: a percentile cap's threshold (``sum``; ``count`` 1 when there is one,
  ``units`` the units it is the quantile of), the same in every variant: kept only by a
  warehouse refresh, which computes the threshold in the warehouse (the stores' is computed
  from their per-unit totals at analysis);
- ``~g:<dim>:<slot>:<inner>``: the same counters of one segment (slot: the value's admission
  number, -1 for ``other``); inner ``#`` holds its ``count`` of exposures and
  ``units`` of unique units, ``m:<metric>`` a metric's totals, and any derived name above;
- ``~n:<dim>:<slot>:<value>``: ``count`` 1 where the value was admitted (its name).

Unit facts and the segment bookkeeping are rows of the per-unit totals (``UnitTotals``) under
reserved metric names: ``(unit, ~x:<cov>)`` holds (1, x), ``(unit, ~d:<dim>)`` (1, slot),
``(value, ~v:<dim>)`` (n, slot + 1) and ``(dim digest, ~slots)`` (values admitted so far, 0).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace

from abpilot.domain.records import MetricTotals, VariantCounters
from abpilot.domain.rules import OTHER

RESERVED = "~"
EXPOSURES = "#"
SLOTS = "~slots"
OTHER_SLOT = -1  # the slot of the values past a dimension's limit


@functools.cache
def short(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=5).hexdigest()


def is_reserved(name: str) -> bool:
    return name.startswith(RESERVED)


def covariate_cell(covariate: str) -> str:
    return f"~x:{short(covariate)}"


def cross_cell(metric: str) -> str:
    return f"~xy:{short(metric)}"


def capped_cell(metric: str) -> str:
    return f"~cap:{short(metric)}"


def capped_cross_cell(metric: str) -> str:
    return f"~cxy:{short(metric)}"


def ratio_cell(metric: str) -> str:
    return f"~nd:{short(metric)}"


def threshold_cell(metric: str) -> str:
    return f"~pct:{short(metric)}"


def metric_inner(metric: str) -> str:
    return f"m:{short(metric)}"


def segment_cell(dimension: str, slot: int, inner: str) -> str:
    return f"~g:{short(dimension)}:{slot}:{inner}"


def value_name_cell(dimension: str, slot: int, value: str) -> str:
    return f"~n:{short(dimension)}:{slot}:{value}"


def dimension_fact(dimension: str) -> str:
    return f"~d:{short(dimension)}"


def value_row(dimension: str) -> str:
    return f"~v:{short(dimension)}"


# Readers ----------------------------------------------------------------------------------


def covariate_sums(counters: VariantCounters, covariate: str) -> MetricTotals:
    """Exposed units (``units``), Σx (``sum``) and Σx² (``sum_squares``) of a covariate."""
    return counters.derived.get(covariate_cell(covariate), MetricTotals())


def cross_sum(counters: VariantCounters, metric: str) -> float:
    """Σ x·y over units: y the unit's total of ``metric``, x its covariate."""
    return counters.derived.get(cross_cell(metric), MetricTotals()).sum


def capped_totals(counters: VariantCounters, metric: str) -> MetricTotals:
    """The metric's totals with every unit's total capped: ``sum`` and ``sum_squares``."""
    return counters.derived.get(capped_cell(metric), MetricTotals())


def capped_cross_sum(counters: VariantCounters, metric: str) -> float:
    """Σ min(y, c)·x over units: y the unit's total of ``metric``, c its absolute cap."""
    return counters.derived.get(capped_cross_cell(metric), MetricTotals()).sum


def with_cross_sum(counters: VariantCounters, metric: str, value: float) -> VariantCounters:
    """``counters`` with Σxy of ``metric`` replaced by ``value`` (a capped metric's, read as
    its cross sum by the analysis)."""
    derived = {**counters.derived, cross_cell(metric): MetricTotals(sum=value)}
    return replace(counters, derived=derived)


def ratio_cross_sum(counters: VariantCounters, ratio: str) -> float:
    """Σ N·D over units of a ratio metric's numerator and denominator totals."""
    return counters.derived.get(ratio_cell(ratio), MetricTotals()).sum


def kept_threshold(counters: Iterable[VariantCounters], metric: str) -> MetricTotals | None:
    """A percentile cap's threshold kept with the counters (a warehouse refresh's), or None."""
    for c in counters:
        found = c.derived.get(threshold_cell(metric))
        if found is not None:
            return found
    return None


def segment_values(counters: Iterable[VariantCounters], dimension: str) -> dict[int, str]:
    """Slot -> value of a dimension, from the name cells of any of ``counters``."""
    prefix = f"~n:{short(dimension)}:"
    names = {OTHER_SLOT: OTHER}
    for c in counters:
        for cell in c.derived:
            if cell.startswith(prefix):
                slot, _, value = cell[len(prefix) :].partition(":")
                names[int(slot)] = value
    return names


def segments(
    by_variant: Mapping[str, VariantCounters], dimension: str, metrics: Iterable[str]
) -> dict[str, dict[str, VariantCounters]]:
    """Per segment value (``other`` for those past the limit), per variant: the counters of the
    units with that value (exposures, unique units, the metrics named, derived sums; no
    ``assigned_units``). Units without the dimension are in no segment."""
    names = segment_values(by_variant.values(), dimension)
    inner_metric = {metric_inner(m): m for m in metrics}
    prefix = f"~g:{short(dimension)}:"
    found: dict[str, dict[str, VariantCounters]] = {}
    for variant, c in by_variant.items():
        cells: dict[int, dict[str, MetricTotals]] = {}
        for cell, totals in c.derived.items():
            if cell.startswith(prefix):
                slot, _, inner = cell[len(prefix) :].partition(":")
                cells.setdefault(int(slot), {})[inner] = totals
        for number, inner_cells in sorted(cells.items()):
            units = inner_cells.get(EXPOSURES, MetricTotals())
            found.setdefault(names.get(number, f"#{number}"), {})[variant] = VariantCounters(
                exposures=units.count,
                unique_units=units.units,
                metrics={inner_metric[k]: t for k, t in inner_cells.items() if k in inner_metric},
                derived={k: t for k, t in inner_cells.items() if is_reserved(k)},
            )
    return dict(sorted(found.items()))
