"""In-process store: for tests and the embedded Python API (``abpilot.open("memory://")``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime

from abpilot.domain.counting import (
    CounterIncrements,
    EventKey,
    UnitKey,
    UnitMetricKey,
    UnitTotals,
    VariantKey,
    VariantMetricKey,
    add_totals,
    count_assignment,
    count_events,
    count_exposure,
)
from abpilot.domain.derived import covariate_cell
from abpilot.domain.errors import (
    ConcurrentModification,
    DefinitionChanged,
    DuplicateKey,
    ExperimentNotFound,
    NotFound,
)
from abpilot.domain.experiment import Experiment, ExperimentStatus
from abpilot.store.base import (
    GLOBAL_CONTEXT,
    AllocationRecord,
    ApplyResult,
    ArmState,
    AssignResult,
    DailyRow,
    Decision,
    Document,
    EventRecord,
    FeedbackOutcome,
    MetricTotals,
    RawMetrics,
    StoredAssignment,
    UnitMetricTotals,
    VariantCounters,
    check_context_key,
    experiment_taken,
    period_taken,
)
from abpilot.store.codec import as_utc
from abpilot.store.counters import group_counters, stored_cells, sum_periods
from abpilot.store.defaults import StoreDefaults
from abpilot.store.event_ids import check_retention, claim_time, window_start
from abpilot.store.state import ExperimentState, UnitState


class MemoryLease:
    def __init__(self, store: MemoryStore, name: str, ttl_seconds: float) -> None:
        self.store, self.name, self.ttl = store, name, ttl_seconds

    def renew(self) -> bool:
        with self.store._lock:
            holder = self.store._leases.get(self.name)
            if holder is None or holder[0] is not self:
                return False
            self.store._leases[self.name] = (self, time.monotonic() + self.ttl)
            return True

    def release(self) -> None:
        with self.store._lock:
            holder = self.store._leases.get(self.name)
            if holder is not None and holder[0] is self:
                del self.store._leases[self.name]


class MemoryStore(StoreDefaults):
    """Everything in dictionaries behind one lock: each operation is atomic in this process."""

    def __init__(self, *, event_id_retention_days: int = 0) -> None:
        self.event_id_retention_days = check_retention(event_id_retention_days)
        # Reentrant: assign_and_expose holds it across assign and apply_events.
        self._lock = threading.RLock()
        self._experiments: dict[str, Experiment] = {}
        self._assignments: dict[str, dict[str, StoredAssignment]] = {}
        self._exposed: dict[str, set[str]] = {}
        self._unit_totals: dict[UnitMetricKey, tuple[int, float]] = {}
        self._variant_counts: dict[VariantKey, list[int]] = {}
        self._metric_totals: dict[VariantMetricKey, MetricTotals] = {}
        self._event_ids: dict[str, dict[str, datetime]] = {}  # id -> when it was claimed
        self._last_event_at: dict[str, datetime] = {}
        self._daily: dict[str, dict[tuple[date, str], DailyRow]] = {}
        self._raw: dict[str, list[RawMetrics]] = {}
        self._allocations: dict[str, list[AllocationRecord]] = {}
        self._leases: dict[str, tuple[MemoryLease, float]] = {}
        self._documents: dict[tuple[str, str], Document] = {}
        self._decisions: dict[str, dict[str, Decision]] = {}
        self._feedback: dict[str, set[tuple[str, str]]] = {}  # (decision id, event)
        self._unit_decisions: dict[str, dict[str, str]] = {}  # unit -> its latest decision id
        self._arm_states: dict[str, dict[tuple[str, str], ArmState]] = {}  # (context, arm)

    def create_experiment(self, experiment: Experiment) -> None:
        with self._lock:
            if experiment.id in self._experiments:
                raise experiment_taken("id", experiment.id)
            self._check_key_free(experiment.key, experiment.id)
            self._experiments[experiment.id] = experiment

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        return self._experiments.get(experiment_id)

    def get_experiment_id(self, key: str) -> str | None:
        return next((e.id for e in self._experiments.values() if e.key == key), None)

    def list_experiments(self, status: ExperimentStatus | None = None) -> list[Experiment]:
        experiments = sorted(self._experiments.values(), key=lambda e: (e.created_at, e.id))
        return [e for e in experiments if status is None or e.status is status]

    def update_experiment(self, experiment: Experiment, *, expected_version: int) -> None:
        with self._lock:
            current = self._experiments.get(experiment.id)
            if current is None:
                raise ExperimentNotFound(f"experiment {experiment.id} does not exist")
            if current.version != expected_version:
                raise ConcurrentModification(
                    f"experiment '{current.key}' was changed by someone else; reload and retry"
                )
            self._check_key_free(experiment.key, experiment.id)
            self._experiments[experiment.id] = experiment

    def delete_experiment(self, experiment_id: str) -> bool:
        with self._lock:
            if self._experiments.pop(experiment_id, None) is None:
                return False
            for per_experiment in (
                self._assignments,
                self._exposed,
                self._event_ids,
                self._last_event_at,
                self._daily,
                self._raw,
                self._allocations,
                self._decisions,
                self._feedback,
                self._unit_decisions,
                self._arm_states,
            ):
                per_experiment.pop(experiment_id, None)
            for unit_key in [k for k in self._unit_totals if k[0] == experiment_id]:
                del self._unit_totals[unit_key]
            for variant_key in [k for k in self._variant_counts if k[0] == experiment_id]:
                del self._variant_counts[variant_key]
            for metric_key in [k for k in self._metric_totals if k[0] == experiment_id]:
                del self._metric_totals[metric_key]
            return True

    def assign(
        self, experiment_id: str, unit_id: str, variant: str, period: int = 0
    ) -> AssignResult:
        with self._lock:
            first = StoredAssignment(variant, period)
            step = _DirectStep(self, None)
            stored, created = count_assignment(step, experiment_id, unit_id, first)
            return AssignResult(stored.variant, created, stored.period)

    def assign_and_expose(self, event: EventRecord) -> AssignResult:
        with self._lock:
            if event.rules is not None:  # unit facts and derived sums: may be refused whole
                buffered = _MemoryStep(self, claim_time([event]))
                stored, created, counted = count_exposure(buffered, event)
                buffered.commit()
            else:
                direct = _DirectStep(self, event.received_at)
                stored, created, counted = count_exposure(direct, event)
            return AssignResult(stored.variant, created, stored.period, exposed=counted)

    def get_assignments(
        self, experiment_id: str, unit_ids: Iterable[str]
    ) -> dict[str, StoredAssignment]:
        units = self._assignments.get(experiment_id, {})
        return {u: units[u] for u in unit_ids if u in units}

    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        with self._lock:
            step = _MemoryStep(self, claim_time(events))
            counted = count_events(step, events)
            step.commit()
            return ApplyResult(applied=counted.applied, duplicates=counted.duplicates)

    def apply_current_events(
        self, events: Sequence[EventRecord], versions: Mapping[str, int]
    ) -> ApplyResult:
        # Replaces the default to check the definitions under the same lock as the counting.
        with self._lock:
            for experiment_id, version in versions.items():
                stored = self._experiments.get(experiment_id)
                if stored is None or stored.version != version:
                    raise DefinitionChanged(experiment_id)
            return self.apply_events(events)

    def last_event_at(self, experiment_id: str) -> datetime | None:
        return self._last_event_at.get(experiment_id)

    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals:
        fact = None if covariate is None else covariate_cell(covariate)
        found = UnitMetricTotals()
        with self._lock:
            assigned = self._assignments.get(experiment_id, {})
            for (e, unit, m), (count, total) in self._unit_totals.items():
                if e == experiment_id and m == metric and count > 0 and unit in assigned:
                    x = self._unit_totals.get((e, unit, fact), (0, 0.0)) if fact else (0, 0.0)
                    found.add(unit, assigned[unit], count, total, x[1] if x[0] else 0.0)
        return found

    def prune_event_ids(self, *, now: datetime, limit: int) -> int:
        start = window_start(now, self.event_id_retention_days)
        if start is None:
            return 0
        removed = 0
        with self._lock:  # one batch under the lock; intake goes on between batches
            for ids in self._event_ids.values():
                old = [i for i, at in ids.items() if at < start][: limit - removed]
                for event_id in old:
                    del ids[event_id]
                removed += len(old)
                if removed >= limit:
                    break
        return removed

    def get_counters_many(
        self, experiment_ids: Iterable[str]
    ) -> dict[str, dict[str, VariantCounters]]:
        # Faster than the default: one pass over every counter for all the ids, where the
        # default would pass over all of them once per experiment.
        return {e: sum_periods(c) for e, c in self._period_counters(set(experiment_ids)).items()}

    def get_period_counters(self, experiment_id: str) -> dict[int, dict[str, VariantCounters]]:
        return self._period_counters({experiment_id}).get(experiment_id, {})

    def _period_counters(
        self, wanted: set[str]
    ) -> dict[str, dict[int, dict[str, VariantCounters]]]:
        """Per-period counters of the wanted experiments that have any, in one pass."""
        counts: dict[str, list[tuple[int, str, int, int, int]]] = {}
        totals: dict[str, list[tuple[int, str, str, MetricTotals]]] = {}
        with self._lock:
            for (e, v, p), c in self._variant_counts.items():
                if e in wanted:
                    counts.setdefault(e, []).append((p, v, c[0], c[1], c[2]))
            for (e, v, p, m), t in self._metric_totals.items():
                if e in wanted:
                    totals.setdefault(e, []).append((p, v, m, t))
        return {
            e: group_counters(counts.get(e, []), totals.get(e, []))
            for e in sorted(counts.keys() | totals.keys())
        }

    def record_daily_metrics(
        self,
        experiment_id: str,
        day: date,
        rows: Sequence[DailyRow],
        payload: str,
        received_at: datetime,
    ) -> None:
        with self._lock:
            self._raw.setdefault(experiment_id, []).append(RawMetrics(received_at, day, payload))
            daily = self._daily.setdefault(experiment_id, {})
            for row in rows:
                daily[(row.day, row.variant)] = row

    def get_daily_metrics(self, experiment_id: str) -> list[DailyRow]:
        return [row for _, row in sorted(self._daily.get(experiment_id, {}).items())]

    def get_raw_metrics(self, experiment_id: str) -> list[RawMetrics]:
        return list(self._raw.get(experiment_id, []))

    def add_allocation(
        self, record: AllocationRecord, *, expected_period: int | None = None
    ) -> AllocationRecord:
        expected = None if expected_period is None else {record.experiment_id: expected_period}
        return self._append([record], expected)[0]

    def add_allocations(
        self,
        records: Sequence[AllocationRecord],
        *,
        expected_periods: Mapping[str, int] | None = None,
    ) -> list[AllocationRecord]:
        return self._append(records, expected_periods)

    def _append(
        self, records: Sequence[AllocationRecord], expected_periods: Mapping[str, int] | None
    ) -> list[AllocationRecord]:
        with self._lock:
            for experiment_id, expected in (expected_periods or {}).items():
                latest = len(self._allocations.get(experiment_id, []))
                if latest != expected:
                    raise period_taken(experiment_id, expected, latest)
            stored = []
            for record in records:
                history = self._allocations.setdefault(record.experiment_id, [])
                stored.append(replace(record, period=len(history) + 1))
                history.append(stored[-1])
            return stored

    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]:
        return list(self._allocations.get(experiment_id, []))

    def latest_allocation(self, experiment_id: str) -> AllocationRecord | None:
        history = self._allocations.get(experiment_id)
        return history[-1] if history else None

    def record_decision(self, decision: Decision) -> None:
        check_context_key(decision)
        with self._lock:
            stored = self._decisions.setdefault(decision.experiment_id, {})
            if decision.id in stored:
                raise DuplicateKey(
                    f"decision '{decision.id}' already exists in experiment "
                    f"{decision.experiment_id}",
                    field="id",
                )
            stored[decision.id] = replace(
                decision,
                context=dict(decision.context),
                decided_at=as_utc(decision.decided_at),
                successes=0,
                failures=0,
                rating=None,
            )
            self._note_unit_decision(stored[decision.id])
            self._count_arm(decision, "pulls", decision.decided_at)

    def get_decision(self, experiment_id: str, decision_id: str) -> Decision | None:
        with self._lock:
            return self._decisions.get(experiment_id, {}).get(decision_id)

    def apply_feedback(
        self,
        experiment_id: str,
        decision_id: str,
        event: str,
        outcome: FeedbackOutcome,
        at: datetime,
        rating: float | None = None,
    ) -> bool:
        with self._lock:
            decision = self._decisions.get(experiment_id, {}).get(decision_id)
            if decision is None:
                raise NotFound(
                    f"decision '{decision_id}' does not exist in experiment {experiment_id}",
                    field="decision_id",
                )
            seen = self._feedback.setdefault(experiment_id, set())
            if (decision_id, event) in seen:
                return False
            seen.add((decision_id, event))
            counted = decision if rating is None else replace(decision, rating=float(rating))
            if outcome is FeedbackOutcome.SUCCESS:
                counted = replace(counted, successes=decision.successes + 1)
                self._count_arm(decision, "successes", at)
            elif outcome is FeedbackOutcome.FAILURE:
                counted = replace(counted, failures=decision.failures + 1)
                self._count_arm(decision, "failures", at)
            self._decisions[experiment_id][decision_id] = counted
            return True

    def get_bandit_states(self, experiment_id: str) -> list[ArmState]:
        with self._lock:
            states = self._arm_states.get(experiment_id, {})
            return [states[key] for key in sorted(states)]

    def list_decisions(self, experiment_id: str, since: datetime | None = None) -> list[Decision]:
        with self._lock:
            found = list(self._decisions.get(experiment_id, {}).values())
        if since is not None:
            found = [d for d in found if d.decided_at >= as_utc(since)]
        return sorted(found, key=lambda d: (d.decided_at, d.id))

    def latest_unit_decision(self, experiment_id: str, unit_id: str) -> Decision | None:
        with self._lock:
            found = self._unit_decisions.get(experiment_id, {}).get(unit_id)
            return None if found is None else self._decisions[experiment_id][found]

    def list_feedback(self, experiment_id: str) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._feedback.get(experiment_id, set()))

    def get_unit_state(self, experiment_id: str) -> UnitState:
        with self._lock:
            return UnitState(
                assignments=dict(self._assignments.get(experiment_id, {})),
                exposed=frozenset(self._exposed.get(experiment_id, set())),
                totals={
                    (unit, metric): totals
                    for (e, unit, metric), totals in self._unit_totals.items()
                    if e == experiment_id
                },
                event_ids=dict(self._event_ids.get(experiment_id, {})),
            )

    def restore_experiment(self, state: ExperimentState) -> None:
        exp = state.experiment.id
        with self._lock:
            if exp in self._experiments:
                raise experiment_taken("id", exp)
            self._check_key_free(state.experiment.key, exp)
            self._experiments[exp] = state.experiment
            self._assignments[exp] = dict(state.units.assignments)
            self._exposed[exp] = set(state.units.exposed)
            for (unit, metric), totals in state.units.totals.items():
                self._unit_totals[(exp, unit, metric)] = totals
            self._event_ids[exp] = {i: as_utc(at) for i, at in state.units.event_ids.items()}
            for period, by_variant in state.counters.items():
                for variant, c in by_variant.items():
                    counts = [c.assigned_units, c.exposures, c.unique_units]
                    if any(counts):
                        self._variant_counts[(exp, variant, period)] = counts
                    for metric, metric_totals in stored_cells(c).items():
                        self._metric_totals[(exp, variant, period, metric)] = metric_totals
            if state.last_event_at is not None:
                self._last_event_at[exp] = as_utc(state.last_event_at)
            self._daily[exp] = {(row.day, row.variant): row for row in state.daily}
            self._raw[exp] = list(state.raw)
            self._allocations[exp] = [replace(r, experiment_id=exp) for r in state.allocations]
            self._decisions[exp] = {d.id: replace(d, experiment_id=exp) for d in state.decisions}
            for restored in self._decisions[exp].values():
                self._note_unit_decision(restored)
            self._feedback[exp] = set(state.feedback)
            self._arm_states[exp] = {(a.context_key, a.arm): a for a in state.arm_states}

    def put_document(
        self, namespace: str, key: str, content: str, digest: str, updated_at: datetime
    ) -> Document:
        with self._lock:
            stored = self._documents.get((namespace, key))
            if stored is not None and stored.digest == digest:
                return stored
            version = 1 if stored is None else stored.version + 1
            document = Document(namespace, key, content, digest, as_utc(updated_at), version)
            self._documents[(namespace, key)] = document
            return document

    def get_document(self, namespace: str, key: str) -> Document | None:
        return self._documents.get((namespace, key))

    def list_documents(self, namespace: str) -> list[Document]:
        with self._lock:
            found = [d for (n, _), d in self._documents.items() if n == namespace]
        return sorted(found, key=lambda d: d.key)

    def delete_document(self, namespace: str, key: str) -> bool:
        with self._lock:
            return self._documents.pop((namespace, key), None) is not None

    def try_lead(self, name: str, ttl_seconds: float) -> MemoryLease | None:
        with self._lock:
            holder = self._leases.get(name)
            if holder is not None and holder[1] > time.monotonic():
                return None
            lease = MemoryLease(self, name, ttl_seconds)
            self._leases[name] = (lease, time.monotonic() + ttl_seconds)
            return lease

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def _add_counters(self, increments: CounterIncrements) -> None:
        for key, inc in increments.variants.items():
            counts = self._variant_counts.get(key)
            if counts is None:
                self._variant_counts[key] = list(inc)
            else:
                counts[0] += inc.assigned_units
                counts[1] += inc.exposures
                counts[2] += inc.unique_units
        if increments.metrics:
            for vkey, totals in increments.metrics.items():
                self._metric_totals[vkey] = add_totals(
                    self._metric_totals.get(vkey, MetricTotals()), totals
                )
        if increments.latest:
            for exp, moment in increments.latest.items():
                if exp not in self._last_event_at or moment > self._last_event_at[exp]:
                    self._last_event_at[exp] = moment

    def _note_unit_decision(self, decision: Decision) -> None:
        """Make ``decision`` its unit's latest if it is later (by time, then id)."""
        if decision.unit_id is None:
            return
        units = self._unit_decisions.setdefault(decision.experiment_id, {})
        current = units.get(decision.unit_id)
        if current is not None:
            known = self._decisions[decision.experiment_id][current]
            if (known.decided_at, known.id) >= (decision.decided_at, decision.id):
                return
        units[decision.unit_id] = decision.id

    def _count_arm(self, decision: Decision, counter: str, at: datetime) -> None:
        """Add 1 to ``counter`` of the decision's arm in its context and in the global one."""
        states = self._arm_states.setdefault(decision.experiment_id, {})
        for key in ((decision.context_key, decision.arm), (GLOBAL_CONTEXT, decision.arm)):
            state = states.get(key) or ArmState(
                *key, pulls=0, successes=0, failures=0, updated_at=None
            )
            states[key] = replace(
                state, **{counter: getattr(state, counter) + 1}, updated_at=as_utc(at)
            )

    def _check_key_free(self, key: str, own_id: str) -> None:
        for other in self._experiments.values():
            if other.key == key and other.id != own_id:
                raise experiment_taken("key", key)


class _MemoryStep:
    """The counting primitives on the store's dictionaries, under its lock (held by the caller).
    Writes wait in the step until ``commit``, so a batch refused by the counting rules changes
    nothing; reads see the step's own writes."""

    __slots__ = (
        "_assigned",
        "_claimed_at",
        "_exposed",
        "_ids",
        "_increments",
        "_store",
        "_unit_deltas",
    )

    def __init__(self, store: MemoryStore, claimed_at: datetime) -> None:
        self._store, self._claimed_at = store, claimed_at
        self._ids: set[EventKey] = set()
        self._assigned: dict[UnitKey, StoredAssignment] = {}
        self._exposed: set[UnitKey] = set()
        self._unit_deltas: list[tuple[UnitMetricKey, UnitTotals]] = []
        self._increments: list[CounterIncrements] = []

    def claim_event_ids(self, ids: Sequence[EventKey]) -> set[EventKey]:
        known = self._store._event_ids
        new = {k for k in ids if k not in self._ids and k[1] not in known.get(k[0], ())}
        self._ids |= new
        return new

    def store_assignments(self, first: Mapping[UnitKey, StoredAssignment]) -> set[UnitKey]:
        stored = self._store._assignments
        new = {
            unit: a
            for unit, a in first.items()
            if unit not in self._assigned and unit[1] not in stored.get(unit[0], ())
        }
        self._assigned.update(new)
        return set(new)

    def read_assignments(self, units: Sequence[UnitKey]) -> dict[UnitKey, StoredAssignment]:
        stored = self._store._assignments
        found: dict[UnitKey, StoredAssignment] = {}
        for unit in units:
            a = self._assigned.get(unit) or stored.get(unit[0], {}).get(unit[1])
            if a is not None:
                found[unit] = a
        return found

    def mark_exposed(self, units: Sequence[UnitKey]) -> set[UnitKey]:
        known = self._store._exposed
        new = {k for k in units if k not in self._exposed and k[1] not in known.get(k[0], ())}
        self._exposed |= new
        return new

    def add_unit_totals(
        self, deltas: Mapping[UnitMetricKey, UnitTotals]
    ) -> dict[UnitMetricKey, UnitTotals]:
        totals = self._store._unit_totals
        self._unit_deltas.extend(deltas.items())
        return {key: UnitTotals(*totals.get(key, (0, 0.0))) for key in deltas}

    def add_counters(self, increments: CounterIncrements) -> None:
        self._increments.append(increments)

    def commit(self) -> None:
        store = self._store
        for exp, event_id in self._ids:
            store._event_ids.setdefault(exp, {})[event_id] = self._claimed_at
        for (exp, unit), assignment in self._assigned.items():
            store._assignments.setdefault(exp, {})[unit] = assignment
        for exp, unit in self._exposed:
            store._exposed.setdefault(exp, set()).add(unit)
        for key, delta in self._unit_deltas:
            count, total = store._unit_totals.get(key, (0, 0.0))
            store._unit_totals[key] = (count + delta.count, total + delta.total)
        for increments in self._increments:
            store._add_counters(increments)


class _DirectStep:
    """The counting primitives writing straight to the store's dictionaries (under its lock),
    for an assignment or one exposure: the rules refuse only a batch whose metric totals would
    overflow, and these carry no metric, so there is nothing to hold back."""

    __slots__ = ("_claimed_at", "_store")

    def __init__(self, store: MemoryStore, claimed_at: datetime | None) -> None:
        self._store, self._claimed_at = store, claimed_at

    def claim_event_ids(self, ids: Sequence[EventKey]) -> set[EventKey]:
        known = self._store._event_ids
        new = {k for k in ids if k[1] not in known.get(k[0], ())}
        at = claim_time([]) if self._claimed_at is None else as_utc(self._claimed_at)
        for exp, event_id in new:
            known.setdefault(exp, {})[event_id] = at
        return new

    def store_assignments(self, first: Mapping[UnitKey, StoredAssignment]) -> set[UnitKey]:
        stored = self._store._assignments
        new: set[UnitKey] = set()
        for key, assignment in first.items():
            units = stored.get(key[0])
            if units is None:
                units = stored[key[0]] = {}
            if key[1] not in units:
                units[key[1]] = assignment
                new.add(key)
        return new

    def read_assignments(self, units: Sequence[UnitKey]) -> dict[UnitKey, StoredAssignment]:
        stored = self._store._assignments
        return {u: a for u in units if (a := stored.get(u[0], {}).get(u[1])) is not None}

    def mark_exposed(self, units: Sequence[UnitKey]) -> set[UnitKey]:
        known = self._store._exposed
        new = {k for k in units if k[1] not in known.get(k[0], ())}
        for exp, unit in new:
            known.setdefault(exp, set()).add(unit)
        return new

    def add_unit_totals(
        self, deltas: Mapping[UnitMetricKey, UnitTotals]
    ) -> dict[UnitMetricKey, UnitTotals]:
        raise AssertionError("an assignment or an exposure adds to no unit totals")

    def add_counters(self, increments: CounterIncrements) -> None:
        self._store._add_counters(increments)
