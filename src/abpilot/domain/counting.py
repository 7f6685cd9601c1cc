"""The counting rules, once: how a batch of validated events becomes counter increments.

Every store counts through ``count_events`` (and ``count_assignment``); a store supplies only a
``CountingStep``, the handful of primitives its engine can do atomically inside one step (see
docs/architecture.md §2 and §6):

- SQL: one transaction, each primitive one bulk ``INSERT .. ON CONFLICT`` (``RETURNING`` gives
  what was new, or the totals a unit had);
- memory: the store's lock, writes kept until the step commits;
- Redis: answers from a snapshot read in one round trip, writes sent with the snapshot as
  expectations to one generic check-and-apply script (a conflict re-reads and counts again).

The rules, all decided here:

1. **Idempotent event ids.** An (experiment, event id) counts at most once: a repeat within the
   batch (the first stays) or an id claimed before is a duplicate.
2. **First assignment wins.** A unit without a stored assignment gets the (variant, period) of its
   first exposure in the batch; ``assigned_units`` grows by one for each assignment stored.
3. **Events count under the stored assignment**, whatever variant and period an event names (a
   client's idea, or a worker's hash on stale weights). A conversion of a unit never assigned
   keeps its own, unless it ``needs_assignment`` (the service did not read the unit's
   assignment): then the batch is refused with ``UnitNotAssigned`` and nothing is counted.
4. **Exposures and unique units.** Each exposure adds one to ``exposures``; a unit exposed for the
   first time adds one to ``unique_units`` of its assignment.
5. **Per-unit running totals.** A conversion of a unit adds to the unit's (count, total) for its
   metric. The variant's metric totals grow by the batch's count and sum, ``units`` by one when the
   unit had no conversion of that metric before, and ``sum_squares`` by T^2 - t^2 = V(2t + V) when
   the unit's total goes from t to T = t + V (in that form to avoid cancellation), so the per-unit
   variance is exact. A conversion without a unit adds its value and its square, and no unit.
6. **Finite totals.** A batch whose increments would not be finite is refused whole.
7. **Last event time.** Each experiment keeps the latest ``received_at`` of its counted events.

A new counter is added here (in ``CounterIncrements`` and the rule that fills it) and in the one
statement or script field per store that applies an increment. Two PostgreSQL statements and one
Redis script restate rules for one case each, for speed: ``ASSIGN_ONE`` (rule 2 for one
assignment) and ``EXPOSE_ONE`` (rules 1 to 4 and 7 for one plain exposure) in
``abpilot.store.sql.intake``, and Redis's ``EXPOSE_ONE`` (the same rules, the same case) in
``abpilot.store.redis.expose_one``; a rule changed here for those cases is changed there too, and
``tests/store/test_sql_expose_one.py`` and ``tests/store/test_redis_expose_one.py`` compare them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from abpilot.domain.derived_counting import DerivedCounting, derived_keys
from abpilot.domain.errors import UnitNotAssigned, ValidationError
from abpilot.domain.increments import (
    CounterIncrements,
    CountingStep,
    EventKey,
    UnitKey,
    UnitMetricKey,
    UnitTotals,
    VariantCounts,
    VariantKey,
    VariantMetricKey,
    add_totals,
    unit_increment,
)
from abpilot.domain.inputs import EventKind
from abpilot.domain.records import EventRecord, MetricTotals, StoredAssignment, as_utc

# Re-exported: the stores name the step's vocabulary through this module.
__all__ = [
    "BatchKeys",
    "Counted",
    "CounterIncrements",
    "CountingStep",
    "EventKey",
    "UnitKey",
    "UnitMetricKey",
    "UnitTotals",
    "VariantCounts",
    "VariantKey",
    "VariantMetricKey",
    "add_totals",
    "batch_keys",
    "count_assignment",
    "count_events",
    "count_exposure",
    "latest_received",
    "unit_increment",
]


@dataclass(frozen=True, slots=True)
class Counted:
    """What ``count_events`` did: events counted, duplicates dropped, and the assignment every
    named unit has after the step (``created`` holds those stored by this step)."""

    applied: int
    duplicates: int
    assignments: dict[UnitKey, StoredAssignment]
    created: frozenset[UnitKey]


@dataclass(frozen=True, slots=True)
class BatchKeys:
    """Everything a batch may read: what a store that answers from a snapshot must fetch."""

    event_ids: tuple[EventKey, ...]
    units: tuple[UnitKey, ...]
    unit_metrics: tuple[UnitMetricKey, ...]


def batch_keys(events: Sequence[EventRecord]) -> BatchKeys:
    ids: set[EventKey] = set()
    units: set[UnitKey] = set()
    unit_metrics: set[UnitMetricKey] = set()
    for event in events:
        if event.event_id is not None:
            ids.add((event.experiment_id, event.event_id))
        if event.unit_id is not None:
            units.add((event.experiment_id, event.unit_id))
            if event.kind is EventKind.CONVERSION:
                unit_metrics.add((event.experiment_id, event.unit_id, event.metric or ""))
    if any(e.rules is not None for e in events):
        unit_metrics |= derived_keys(list(events))
    return BatchKeys(tuple(sorted(ids)), tuple(sorted(units)), tuple(sorted(unit_metrics)))


def count_events(step: CountingStep, events: Sequence[EventRecord]) -> Counted:
    """Count a batch through ``step`` (rules 1 to 7 above). Raises ``ValidationError`` before
    the counters change if an increment would not be finite (``UnitNotAssigned`` if a
    conversion that ``needs_assignment`` finds none); the store's step then writes
    nothing (a SQL transaction rolls back, memory and Redis have not applied their writes)."""
    kept, duplicates = _split_duplicates(events)
    ids = sorted({(e.experiment_id, e.event_id) for e in kept if e.event_id is not None})
    claimed = step.claim_event_ids(ids) if ids else set()
    fresh = [e for e in kept if e.event_id is None or (e.experiment_id, e.event_id) in claimed]
    duplicates += len(kept) - len(fresh)
    first = _first_exposures(fresh)
    created = step.store_assignments(first) if first else set()
    assignments = {unit: first[unit] for unit in created}
    others = sorted(_unit_keys(fresh) - created)
    if others:
        assignments.update(step.read_assignments(others))
    # Plain dicts rather than Counter: a single exposure goes through here on every request.
    assigned: dict[VariantKey, int] = {}
    for unit in created:
        cell = (unit[0], *first[unit])
        assigned[cell] = assigned.get(cell, 0) + 1

    exposures: dict[VariantKey, int] = {}
    exposed: dict[UnitKey, VariantKey] = {}
    unit_deltas: dict[UnitMetricKey, tuple[VariantKey, list[float]]] = {}  # [count, total]
    anonymous: dict[VariantMetricKey, list[float]] = {}  # [count, sum, sum of squares]
    for event in fresh:
        exp, unit_id = event.experiment_id, event.unit_id
        found = None if unit_id is None else assignments.get((exp, unit_id))
        vkey = (exp, event.variant, event.period) if found is None else (exp, *found)
        if event.kind is EventKind.EXPOSURE:
            exposures[vkey] = exposures.get(vkey, 0) + 1
            if unit_id is not None:
                exposed.setdefault((exp, unit_id), vkey)
            continue
        metric, value = event.metric or "", event.value
        if found is None and event.needs_assignment and unit_id is not None:
            raise _not_assigned(exp, unit_id)
        if unit_id is not None:
            delta = unit_deltas.setdefault((exp, unit_id, metric), (vkey, [0, 0.0]))[1]
            delta[0] += 1
            delta[1] += value
        else:
            sums = anonymous.setdefault((*vkey, metric), [0, 0.0, 0.0])
            sums[0] += 1
            sums[1] += value
            sums[2] += value * value

    unique: dict[VariantKey, int] = {}
    newly: set[UnitKey] = set()
    if exposed:
        newly = step.mark_exposed(sorted(exposed))
        for unit in newly:
            unique[exposed[unit]] = unique.get(exposed[unit], 0) + 1
    increments = CounterIncrements()
    for vkey in sorted(assigned.keys() | exposures.keys() | unique.keys()):
        increments.variants[vkey] = VariantCounts(
            assigned.get(vkey, 0), exposures.get(vkey, 0), unique.get(vkey, 0)
        )
    for mkey, (count, total, squares) in anonymous.items():
        increments.add_metric(mkey, MetricTotals(int(count), 0, total, squares))
    rules = {e.experiment_id: e.rules for e in fresh if e.rules is not None}
    before: dict[UnitMetricKey, UnitTotals] = {}
    deltas = {key: UnitTotals(int(d[0]), d[1]) for key, (_, d) in sorted(unit_deltas.items())}
    if rules:  # issue 18's rules (``abpilot.domain.derived_counting``): one unit-totals call
        derive = DerivedCounting(rules, assignments, newly, frozenset(created))
        before = derive.read(step, fresh, deltas)
        moved = {key: (vkey, deltas[key]) for key, (vkey, _) in unit_deltas.items()}
        derive.add_to(increments, moved)
    elif deltas:
        before = step.add_unit_totals(deltas)
    for key, (vkey, _) in unit_deltas.items():
        increments.add_metric((*vkey, key[2]), unit_increment(before[key], deltas[key]))
    _check_finite(increments)
    increments.latest = latest_received(fresh)
    if increments.variants or increments.metrics or increments.latest:
        step.add_counters(increments)
    return Counted(len(fresh), duplicates, assignments, frozenset(created))


def count_assignment(
    step: CountingStep, experiment_id: str, unit_id: str, assignment: StoredAssignment
) -> tuple[StoredAssignment, bool]:
    """Store a unit's assignment if it has none (rule 2): the assignment it has after the step,
    and whether this step stored it."""
    unit = (experiment_id, unit_id)
    if step.store_assignments({unit: assignment}):
        key = (experiment_id, assignment.variant, assignment.period)
        step.add_counters(CounterIncrements({key: VariantCounts(1, 0, 0)}))
        return assignment, True
    return step.read_assignments([unit])[unit], False


def count_exposure(step: CountingStep, event: EventRecord) -> tuple[StoredAssignment, bool, bool]:
    """Assign and expose one unit in one step: the unit's assignment after the step, whether
    this step stored it, and whether the exposure counted (not a repeated event id). A repeated
    id still stores the unit's assignment if it has none."""
    assert event.kind is EventKind.EXPOSURE
    assert event.unit_id is not None
    unit = (event.experiment_id, event.unit_id)
    counted = count_events(step, [event])
    if unit in counted.assignments:
        return counted.assignments[unit], unit in counted.created, counted.applied == 1
    first = StoredAssignment(event.variant, event.period)
    stored, created = count_assignment(step, event.experiment_id, event.unit_id, first)
    return stored, created, False


def plain_exposure(events: Sequence[EventRecord], versions: Mapping[str, int]) -> bool:
    """Whether ``events`` is the one case the stores count with a statement or script of its own
    (``EXPOSE_ONE`` on PostgreSQL and Redis): one exposure of a unit, without the issue-18 facts
    or rules, with an event id that is not empty, of an experiment whose definition version is
    checked (``versions``)."""
    if len(events) != 1:
        return False
    event = events[0]
    return (
        event.kind is EventKind.EXPOSURE
        and event.unit_id is not None
        and event.rules is None
        and event.covariates is None
        and event.dimensions is None
        and event.event_id != ""  # Redis's script takes '' for "no id"
        and event.experiment_id in versions
    )


def latest_received(events: Iterable[EventRecord]) -> dict[str, datetime]:
    """Per experiment, the latest ``received_at`` (UTC) of these events; events without one
    are left out."""
    latest: dict[str, datetime] = {}
    seen: tuple[str, datetime | None] = ("", None)  # a batch's events share one time
    for event in events:
        at = event.received_at
        if at is None or (at is seen[1] and event.experiment_id == seen[0]):
            continue
        seen = (event.experiment_id, at)
        moment = as_utc(at)
        if event.experiment_id not in latest or moment > latest[event.experiment_id]:
            latest[event.experiment_id] = moment
    return latest


def _split_duplicates(events: Sequence[EventRecord]) -> tuple[list[EventRecord], int]:
    """Drop repeats of an (experiment, event id) within the batch; the first one stays."""
    seen: set[EventKey] = set()
    kept: list[EventRecord] = []
    for event in events:
        if event.event_id is not None:
            key = (event.experiment_id, event.event_id)
            if key in seen:
                continue
            seen.add(key)
        kept.append(event)
    return kept, len(events) - len(kept)


def _first_exposures(events: Iterable[EventRecord]) -> dict[UnitKey, StoredAssignment]:
    """The (variant, period) of each unit's first exposure in the batch."""
    found: dict[UnitKey, StoredAssignment] = {}
    for event in events:
        if event.kind is EventKind.EXPOSURE and event.unit_id is not None:
            key = (event.experiment_id, event.unit_id)
            if key not in found:  # a StoredAssignment, without its Python-level constructor
                found[key] = tuple.__new__(StoredAssignment, (event.variant, event.period))
    return dict(sorted(found.items()))


def _unit_keys(events: Iterable[EventRecord]) -> set[UnitKey]:
    return {(e.experiment_id, e.unit_id) for e in events if e.unit_id is not None}


def _not_assigned(experiment_id: str, unit_id: str) -> UnitNotAssigned:
    error = UnitNotAssigned(
        f"unit '{unit_id}' was never assigned in experiment {experiment_id}; assign it or "
        "record its exposure first",
        field="unit_id",
    )
    error.unit = (experiment_id, unit_id)
    return error


def _check_finite(increments: CounterIncrements) -> None:
    for totals in increments.metrics.values():
        if not (math.isfinite(totals.sum) and math.isfinite(totals.sum_squares)):
            message = "event values are too large: a metric total would overflow"
            raise ValidationError(message, field="value")
