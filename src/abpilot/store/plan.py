"""Turn a batch of events into aggregated increments, the same way for every backend.

Backends dedupe event ids, then apply a plan atomically with a handful of bulk upserts instead
of one statement per event. Aggregating per key first also keeps PostgreSQL's
``ON CONFLICT DO UPDATE`` legal (a statement may touch each row only once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from abpilot.store.base import (
    EventKind,
    EventRecord,
    MetricTotals,
    StoredAssignment,
    VariantCounters,
)
from abpilot.store.codec import as_utc

UnitKey = tuple[str, str]  # (experiment_id, unit_id)
UnitMetricKey = tuple[str, str, str]  # (experiment_id, unit_id, metric)
VariantKey = tuple[str, str, int]  # (experiment_id, variant, period)
VariantMetricKey = tuple[str, str, int, str]  # (experiment_id, variant, period, metric)


@dataclass(slots=True)
class UnitDelta:
    variant: str
    period: int
    count: int = 0
    total: float = 0.0


@dataclass(slots=True)
class EventPlan:
    """The increments of a batch whose events are already moved to their units' assignments
    (``to_assignments``): ``exposed_units`` holds each exposed unit's (variant, period)."""

    exposures: dict[VariantKey, int] = field(default_factory=dict)
    exposed_units: dict[UnitKey, tuple[str, int]] = field(default_factory=dict)
    unit_conversions: dict[UnitMetricKey, UnitDelta] = field(default_factory=dict)
    anonymous_conversions: dict[VariantMetricKey, MetricTotals] = field(default_factory=dict)


def split_duplicates(events: Sequence[EventRecord]) -> tuple[list[EventRecord], int]:
    """Drop repeats of an (experiment, event id) within the batch; the first one stays."""
    seen: set[tuple[str, str]] = set()
    kept: list[EventRecord] = []
    for event in events:
        if event.event_id is not None:
            key = (event.experiment_id, event.event_id)
            if key in seen:
                continue
            seen.add(key)
        kept.append(event)
    return kept, len(events) - len(kept)


def first_exposures(events: Iterable[EventRecord]) -> dict[UnitKey, StoredAssignment]:
    """The (variant, period) of each unit's first exposure in the batch: what is stored as the
    assignment of a unit that has none yet (first one wins)."""
    found: dict[UnitKey, StoredAssignment] = {}
    for event in events:
        if event.kind is EventKind.EXPOSURE and event.unit_id is not None:
            key = (event.experiment_id, event.unit_id)
            if key not in found:
                found[key] = StoredAssignment(event.variant, event.period)
    return found


def unit_keys(events: Iterable[EventRecord]) -> set[UnitKey]:
    """Every (experiment, unit) the events name."""
    return {(e.experiment_id, e.unit_id) for e in events if e.unit_id is not None}


def to_assignments(
    events: Sequence[EventRecord], assignments: Mapping[UnitKey, StoredAssignment]
) -> list[EventRecord]:
    """Each event of a unit moved to the unit's assignment, variant and period, whatever the
    event names (a client's idea, or a worker's hash on stale weights). ``assignments`` is what
    the store holds once the batch's first exposures are stored, read in the same atomic step.
    An event of a unit without one (a conversion of a unit never assigned) stays as it is."""
    resolved = list(events)
    for i, event in enumerate(resolved):
        if event.unit_id is None:
            continue
        found = assignments.get((event.experiment_id, event.unit_id))
        if found is not None and (found.variant != event.variant or found.period != event.period):
            resolved[i] = replace(event, variant=found.variant, period=found.period)
    return resolved


def add_totals(old: MetricTotals, inc: MetricTotals) -> MetricTotals:
    return MetricTotals(
        count=old.count + inc.count,
        units=old.units + inc.units,
        sum=old.sum + inc.sum,
        sum_squares=old.sum_squares + inc.sum_squares,
    )


def plan_events(events: Sequence[EventRecord]) -> EventPlan:
    plan = EventPlan()
    for event in events:
        exp, variant, unit, period = event.experiment_id, event.variant, event.unit_id, event.period
        if event.kind is EventKind.EXPOSURE:
            key = (exp, variant, period)
            plan.exposures[key] = plan.exposures.get(key, 0) + 1
            if unit is not None:
                plan.exposed_units.setdefault((exp, unit), (variant, period))
            continue
        metric = event.metric or ""
        if unit is not None:
            delta = plan.unit_conversions.setdefault(
                (exp, unit, metric), UnitDelta(variant, period)
            )
            delta.count += 1
            delta.total += event.value
        else:
            vkey = (exp, variant, period, metric)
            plan.anonymous_conversions[vkey] = add_totals(
                plan.anonymous_conversions.get(vkey, MetricTotals()),
                MetricTotals(1, 0, event.value, event.value * event.value),
            )
    return plan


def metric_increments(
    plan: EventPlan, unit_state_after: Mapping[UnitMetricKey, tuple[int, float]]
) -> dict[VariantMetricKey, MetricTotals]:
    """Variant-level increments, given each touched unit's (count, total) after the update.

    A unit whose count after the update equals this batch's count converted for the first time.
    Its total went from t = T - V to T, so the sum of squares grows by
    T^2 - t^2 = V(2t + V), computed in that form to avoid cancellation.
    """
    increments = dict(plan.anonymous_conversions)
    for key, delta in plan.unit_conversions.items():
        count_after, total_after = unit_state_after[key]
        total_before = total_after - delta.total
        vkey = (key[0], delta.variant, delta.period, key[2])
        increments[vkey] = add_totals(
            increments.get(vkey, MetricTotals()),
            MetricTotals(
                count=delta.count,
                units=1 if count_after == delta.count else 0,
                sum=delta.total,
                sum_squares=delta.total * (2.0 * total_before + delta.total),
            ),
        )
    return increments


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
            result[variant] = VariantCounters(
                assigned_units=old.assigned_units + c.assigned_units,
                exposures=old.exposures + c.exposures,
                unique_units=old.unique_units + c.unique_units,
                metrics=metrics,
            )
    return dict(sorted(result.items()))


@dataclass(slots=True)
class _CounterRow:
    assigned_units: int = 0
    exposures: int = 0
    unique_units: int = 0
    metrics: dict[str, MetricTotals] = field(default_factory=dict)


def group_counters(
    counts: Iterable[tuple[int, str, int, int, int]],
    totals: Iterable[tuple[int, str, str, MetricTotals]],
) -> dict[int, dict[str, VariantCounters]]:
    """Per-period counters from rows (period, variant, assigned, exposures, unique) and
    (period, variant, metric, totals)."""
    rows: dict[tuple[int, str], _CounterRow] = {}
    for period, variant, assigned, exposures, unique in counts:
        rows[(period, variant)] = _CounterRow(int(assigned), int(exposures), int(unique))
    for period, variant, metric, metric_totals in totals:
        rows.setdefault((period, variant), _CounterRow()).metrics[metric] = metric_totals
    result: dict[int, dict[str, VariantCounters]] = {}
    for (period, variant), row in sorted(rows.items()):
        result.setdefault(period, {})[variant] = VariantCounters(
            row.assigned_units, row.exposures, row.unique_units, row.metrics
        )
    return result


def latest_received(events: Iterable[EventRecord]) -> dict[str, datetime]:
    """Per experiment, the latest ``received_at`` (UTC) of these events; events without one
    are left out."""
    latest: dict[str, datetime] = {}
    for event in events:
        if event.received_at is None:
            continue
        moment = as_utc(event.received_at)
        if event.experiment_id not in latest or moment > latest[event.experiment_id]:
            latest[event.experiment_id] = moment
    return latest
