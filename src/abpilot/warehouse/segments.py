"""A refresh's rows per dimension value as the segment cells of ``abpilot.domain.derived``
(``~g:<dim>:<slot>:<inner>`` and the names ``~n:<dim>:<slot>:<value>``), the form a store's
counting core keeps for ingested events, so ``GET .../analysis?dimension=`` (the service's
``segment_breakdown``) reads a warehouse experiment's segments through the same code.

Each dimension's values get slots in sorted order, the first ``MAX_SEGMENTS`` their own and
the rest the segment ``other`` (a store admits them in arrival order instead; a refresh has
no order of arrival). Units without a value are in no segment, as on the event path. A
segment holds its exposures and units, its metrics and its derived cells but a percentile
cap's threshold (caps within segments are absolute only, as for events)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from abpilot.domain import derived
from abpilot.domain.records import MetricTotals, VariantCounters
from abpilot.domain.rules import MAX_SEGMENTS
from abpilot.warehouse.plan import Row, counters_of


def segment_cells(
    rows: Sequence[Row], dimensions: Sequence[str], *, limit: int = MAX_SEGMENTS
) -> dict[str, dict[str, MetricTotals]]:
    """Per variant, the segment cells of every dimension (``dimensions`` names the rows'
    dimension values in order)."""
    found: dict[str, dict[str, MetricTotals]] = {}
    for k, name in enumerate(dimensions):
        values = sorted({v for row in rows if row.variant and (v := _value(row, k))})
        slots: list[tuple[int, Iterable[str]]] = [(i, (v,)) for i, v in enumerate(values[:limit])]
        if len(values) > limit:
            slots.append((derived.OTHER_SLOT, frozenset(values[limit:])))
        for slot, members in slots:
            chosen = frozenset(members)
            for variant, c in counters_of(rows, segment=(k, chosen)).items():
                found.setdefault(variant, {}).update(_cells(name, slot, c))
            if slot != derived.OTHER_SLOT:
                (value,) = chosen
                for cells in found.values():
                    cells[derived.value_name_cell(name, slot, value)] = MetricTotals(count=1)
    names = {c for cells in found.values() for c in cells if c.startswith("~n:")}
    for cells in found.values():  # every variant names every slot
        cells.update(dict.fromkeys(names - cells.keys(), MetricTotals(count=1)))
    return found


def _cells(dimension: str, slot: int, c: VariantCounters) -> Mapping[str, MetricTotals]:
    cells = {
        derived.segment_cell(dimension, slot, derived.EXPOSURES): MetricTotals(
            count=c.exposures, units=c.unique_units
        )
    }
    for metric, totals in c.metrics.items():
        cells[derived.segment_cell(dimension, slot, derived.metric_inner(metric))] = totals
    for cell, totals in c.derived.items():
        if not cell.startswith("~pct:"):
            cells[derived.segment_cell(dimension, slot, cell)] = totals
    return cells


def _value(row: Row, k: int) -> str:
    values = row.values
    return values[k] if k < len(values) else ""
