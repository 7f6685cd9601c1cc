"""Counters read back: rows of a store's counter tables (or hashes) grouped per period and
variant, and summed over periods. How events become counters is ``abpilot.domain.counting``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from abpilot.domain.counting import add_totals
from abpilot.domain.derived import is_reserved
from abpilot.domain.records import MetricTotals, VariantCounters


def sum_periods(
    by_period: Mapping[int, Mapping[str, VariantCounters]],
) -> dict[str, VariantCounters]:
    """Counters per variant, summed over periods."""
    result: dict[str, VariantCounters] = {}
    for counters in by_period.values():
        for variant, c in counters.items():
            old = result.get(variant, VariantCounters())
            metrics = dict(old.metrics)
            for metric, totals in c.metrics.items():
                metrics[metric] = add_totals(metrics.get(metric, MetricTotals()), totals)
            derived = dict(old.derived)
            for cell, totals in c.derived.items():
                derived[cell] = add_totals(derived.get(cell, MetricTotals()), totals)
            result[variant] = VariantCounters(
                assigned_units=old.assigned_units + c.assigned_units,
                exposures=old.exposures + c.exposures,
                unique_units=old.unique_units + c.unique_units,
                metrics=metrics,
                derived=derived,
            )
    return dict(sorted(result.items()))


@dataclass(slots=True)
class _CounterRow:
    assigned_units: int = 0
    exposures: int = 0
    unique_units: int = 0
    metrics: dict[str, MetricTotals] = field(default_factory=dict)
    derived: dict[str, MetricTotals] = field(default_factory=dict)


def group_counters(
    counts: Iterable[tuple[int, str, int, int, int]],
    totals: Iterable[tuple[int, str, str, MetricTotals]],
) -> dict[int, dict[str, VariantCounters]]:
    """Per-period counters from rows (period, variant, assigned, exposures, unique) and
    (period, variant, metric, totals); reserved cells (``abpilot.domain.derived``) go to
    ``derived``, never to ``metrics``."""
    rows: dict[tuple[int, str], _CounterRow] = {}
    for period, variant, assigned, exposures, unique in counts:
        rows[(period, variant)] = _CounterRow(int(assigned), int(exposures), int(unique))
    for period, variant, metric, metric_totals in totals:
        row = rows.setdefault((period, variant), _CounterRow())
        (row.derived if is_reserved(metric) else row.metrics)[metric] = metric_totals
    result: dict[int, dict[str, VariantCounters]] = {}
    for (period, variant), row in sorted(rows.items()):
        result.setdefault(period, {})[variant] = VariantCounters(
            row.assigned_units, row.exposures, row.unique_units, row.metrics, row.derived
        )
    return result


def stored_cells(counters: VariantCounters) -> dict[str, MetricTotals]:
    """Every metric cell a store keeps for ``counters``: the user's metrics and the derived
    ones (what a restore writes back)."""
    return {**counters.metrics, **counters.derived}
