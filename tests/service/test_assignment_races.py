"""Two workers with different ideas of a unit's variant: the stored assignment decides.

Worker two loads a bandit (period 0 weights) and resolves the unit's exposure (no assignment
yet). Then, before worker two writes, the weights change (period 1) and worker one assigns the
unit on them. Worker two counts the exposure it hashed on the old weights: the store counts it
under the assignment worker one stored, in its period, not under the variant worker two hashed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from abpilot.domain.assignment import Bucketing
from abpilot.service import ExperimentService
from abpilot.store.base import AllocationRecord, StoredAssignment
from tests.conftest import StoreFactory

OLD, NEW = {"control": 0.5, "b": 0.5}, {"control": 0.05, "b": 0.95}


class OtherWorkerAfterRead:
    """Worker two's store: right after it reads assignments, or (when it reads none, its
    definitions cached) just before it counts, ``meanwhile`` runs once (worker one's write,
    landing between worker two's resolving the event and its write)."""

    def __init__(self, store: Any, meanwhile: Callable[[], object]) -> None:
        self._store, self._meanwhile = store, [meanwhile]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get_assignments(
        self, experiment_id: str, unit_ids: Iterable[str]
    ) -> dict[str, StoredAssignment]:
        found: dict[str, StoredAssignment] = self._store.get_assignments(experiment_id, unit_ids)
        if self._meanwhile:
            self._meanwhile.pop()()
        return found

    def apply_current_events(self, events: Any, versions: Any) -> Any:
        if self._meanwhile:
            self._meanwhile.pop()()
        return self._store.apply_current_events(events, versions)


def test_an_assignment_stored_between_a_workers_read_and_write_wins(
    store_factory: StoreFactory,
) -> None:
    one = ExperimentService(store_factory())
    variants = [{"key": k, "weight": w} for k, w in OLD.items()]
    exp = one.create_experiment(key="ads", type="bandit", variants=variants)
    one.start_experiment("ads")
    running = one.get_experiment("ads")
    # A unit the two weightings put in different arms.
    old, new = (Bucketing.for_experiment(running, tuple(w.values())) for w in (OLD, NEW))
    unit = next(
        u for u in (f"u{i}" for i in range(1_000)) if old.variant_index(u) != new.variant_index(u)
    )
    stale_variant = running.variants[old.variant_index(unit)].key
    fresh_variant = running.variants[new.variant_index(unit)].key

    store_two = store_factory()
    two = ExperimentService(store_two)

    def meanwhile() -> None:
        when = datetime(2026, 5, 1, tzinfo=UTC)
        one.store.add_allocation(AllocationRecord(exp.id, 0, when, NEW, "exact", None, "events"))
        one.lookup.clear()  # worker one sees the new weights at once
        assigned = one.get_variant_for_user("ads", unit)
        assert assigned.variant is not None
        assert assigned.variant.key == fresh_variant

    two.store = OtherWorkerAfterRead(store_two, meanwhile)  # type: ignore[assignment]
    result = two.record_exposure(experiment="ads", unit_id=unit)
    assert (result.applied, result.duplicates) == (1, 0)
    two.record_conversion(experiment="ads", unit_id=unit)

    assert one.store.get_assignments(exp.id, [unit]) == {unit: (fresh_variant, 1)}
    by_period = one.store.get_period_counters(exp.id)
    assert list(by_period) == [1]
    counted = by_period[1][fresh_variant]
    assert (counted.assigned_units, counted.exposures, counted.unique_units) == (1, 1, 1)
    assert counted.metrics["conversion"].count == 1
    assert stale_variant not in by_period[1]
