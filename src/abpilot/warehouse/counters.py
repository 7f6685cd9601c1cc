"""The counters of an experiment's latest refresh as the analysis reads a store's
(``abpilot.service.reading.CounterSource``): what ``ExperimentService`` analyses for an
experiment analysed from the warehouse, through every line of the statistics the events take."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from abpilot.domain.errors import ValidationError
from abpilot.domain.records import AllocationRecord, UnitMetricTotals, VariantCounters
from abpilot.warehouse.refresh import Refresh
from abpilot.warehouse.segments import segment_cells


class Allocations(Protocol):
    """Where the allocation periods are kept (the store)."""

    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]: ...


class RefreshCounters:
    """The counters of the latest refresh (none before the first): one period (0) holding
    every unit, the derived cells computed in the warehouse, and the segment cells of each
    dimension; allocation periods come from the store."""

    def __init__(self, store: Allocations, refresh: Refresh | None) -> None:
        self._store = store
        self._counters = refresh.counters() if refresh is not None else {}
        if refresh is not None and refresh.dimensions:  # the segments, as a store keeps them
            cells = segment_cells(refresh.rows, refresh.dimensions)
            self._counters = {
                variant: replace(c, derived={**c.derived, **cells.get(variant, {})})
                for variant, c in self._counters.items()
            }

    def get_counters(self, experiment_id: str) -> dict[str, VariantCounters]:
        return dict(self._counters)

    def get_period_counters(self, experiment_id: str) -> dict[int, dict[str, VariantCounters]]:
        return {0: dict(self._counters)} if self._counters else {}

    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]:
        return self._store.list_allocations(experiment_id)

    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals:
        """Only aggregates leave the warehouse: a percentile cap's threshold comes with the
        refresh (``derived.kept_threshold``); one without it predates the cap."""
        raise ValidationError(
            f"metric '{metric[:100]}': the latest refresh has no threshold for its percentile "
            "cap (it ran before the cap was set); refresh the experiment",
            field="cap",
        )
