"""What a counting step adds and the primitives a store offers inside one atomic step: the
vocabulary ``abpilot.domain.counting`` (rules 1 to 7) and ``abpilot.domain.derived_counting``
(rules 8 to 13) share, so each builds on this module and not on the other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from abpilot.domain.records import METRIC_FIELDS, MetricTotals, StoredAssignment

EventKey = tuple[str, str]  # (experiment_id, event_id)
UnitKey = tuple[str, str]  # (experiment_id, unit_id)
UnitMetricKey = tuple[str, str, str]  # (experiment_id, unit_id, metric)
VariantKey = tuple[str, str, int]  # (experiment_id, variant, period)
VariantMetricKey = tuple[str, str, int, str]  # (experiment_id, variant, period, metric)


@dataclass(frozen=True, slots=True)
class UnitTotals:
    """A unit's running (count, total) for one metric."""

    count: int = 0
    total: float = 0.0


class VariantCounts(NamedTuple):
    """Increments of a variant's (per period) unit counters (a named tuple: one is built for
    every assignment, so it is cheap to make)."""

    assigned_units: int = 0
    exposures: int = 0
    unique_units: int = 0

    def plus(self, other: VariantCounts) -> VariantCounts:
        return VariantCounts(
            self.assigned_units + other.assigned_units,
            self.exposures + other.exposures,
            self.unique_units + other.unique_units,
        )


class CounterIncrements:
    """What a counted batch adds: per (experiment, variant, period) unit counters, per
    (experiment, variant, period, metric) totals, and per experiment the latest event time.
    (A plain class with slots: one is made for every stored assignment.)"""

    __slots__ = ("latest", "metrics", "variants")

    def __init__(
        self,
        variants: dict[VariantKey, VariantCounts] | None = None,
        metrics: dict[VariantMetricKey, MetricTotals] | None = None,
        latest: dict[str, datetime] | None = None,
    ) -> None:
        self.variants = {} if variants is None else variants
        self.metrics = {} if metrics is None else metrics
        self.latest = {} if latest is None else latest

    def add_variant(self, key: VariantKey, counts: VariantCounts) -> None:
        self.variants[key] = self.variants.get(key, VariantCounts()).plus(counts)

    def add_metric(self, key: VariantMetricKey, totals: MetricTotals) -> None:
        """Add to a metric's totals (every field of ``MetricTotals``: a new field is counted
        by every store without more code there, SQL needing only its column)."""
        known = self.metrics.get(key)
        self.metrics[key] = totals if known is None else add_totals(known, totals)


class CountingStep(Protocol):
    """The primitives a store offers inside one atomic step. Each takes keys sorted by the
    caller, so SQL transactions lock rows in one order."""

    def claim_event_ids(self, ids: Sequence[EventKey]) -> set[EventKey]:
        """Record these event ids; return those that were not recorded before."""
        ...

    def store_assignments(self, first: Mapping[UnitKey, StoredAssignment]) -> set[UnitKey]:
        """Store each unit's assignment where it has none; return the units stored now."""
        ...

    def read_assignments(self, units: Sequence[UnitKey]) -> dict[UnitKey, StoredAssignment]:
        """The stored assignments of these units, for those that have one."""
        ...

    def mark_exposed(self, units: Sequence[UnitKey]) -> set[UnitKey]:
        """Mark these units exposed; return those exposed for the first time."""
        ...

    def add_unit_totals(
        self, deltas: Mapping[UnitMetricKey, UnitTotals]
    ) -> dict[UnitMetricKey, UnitTotals]:
        """Add each delta to its unit's running totals; return the totals each had before."""
        ...

    def add_counters(self, increments: CounterIncrements) -> None:
        """Add the increments to the counters (atomically: by the engine, not read and
        written back) and move each experiment's last event time forward."""
        ...


def unit_increment(before: UnitTotals, delta: UnitTotals) -> MetricTotals:
    """A variant's metric totals grow by a unit's delta (rule 5): ``units`` by one if the unit
    had no conversion before, ``sum_squares`` by V(2t + V) for a total going from t to t + V."""
    return MetricTotals(
        count=delta.count,
        units=1 if before.count == 0 else 0,
        sum=delta.total,
        sum_squares=delta.total * (2.0 * before.total + delta.total),
    )


def add_totals(old: MetricTotals, inc: MetricTotals) -> MetricTotals:
    return MetricTotals(*[getattr(old, n) + getattr(inc, n) for n in _TOTALS])


_TOTALS = tuple(METRIC_FIELDS)  # MetricTotals' fields, in their order
