"""The store contract under races: two clients of one store (two workers) doing conflicting
things at the same moment get the same answers on memory, SQLite, PostgreSQL and Redis.

Each race is started from two threads released together by a barrier and repeated a few times;
the assertions hold for every interleaving, so they never depend on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import pytest

from abpilot.domain.errors import ConcurrentModification, DuplicateKey
from abpilot.store.base import AllocationRecord, EventKind, EventRecord, MetricTotals, Store
from tests.conftest import BARRIER_SECONDS, StoreFactory
from tests.factories import make_experiment

ROUNDS = 8
T = TypeVar("T")


def race(one: Callable[[], T], two: Callable[[], T]) -> tuple[T, T]:
    """Run both at once (released together) and return their answers."""
    barrier = threading.Barrier(2, timeout=BARRIER_SECONDS)

    def run(action: Callable[[], T]) -> T:
        barrier.wait()
        return action()

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.submit(run, one), pool.submit(run, two)
        return first.result(), second.result()


def rename(client: Store, experiment_id: str, key: str) -> str:
    """Rename the experiment (version 1) to ``key``: "renamed", or how it was refused."""
    current = client.get_experiment(experiment_id)
    assert current is not None
    try:
        client.update_experiment(replace(current, key=key, version=2), expected_version=1)
    except DuplicateKey as error:
        return f"duplicate {error.field}: {error.message}"
    return "renamed"


def create(client: Store, key: str) -> str:
    try:
        client.create_experiment(make_experiment(key))
    except DuplicateKey as error:
        return f"duplicate {error.field}: {error.message}"
    return "created"


class TestKeyRaces:
    def test_two_renames_to_one_key_exactly_one_wins(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        for r in range(ROUNDS):
            a, b = make_experiment(f"a-{r}"), make_experiment(f"b-{r}")
            one.create_experiment(a)
            one.create_experiment(b)
            target = f"target-{r}"
            answers = race(partial(rename, one, a.id, target), partial(rename, two, b.id, target))
            assert sorted(answers) == [
                f"duplicate key: an experiment with key '{target}' already exists",
                "renamed",
            ]
            winner, loser = (a, b) if answers[0] == "renamed" else (b, a)
            assert two.get_experiment_id(target) == winner.id
            assert one.get_experiment(loser.id) == loser  # untouched: old key, old version
            assert one.get_experiment_id(loser.key) == loser.id

    def test_two_creations_of_one_key_exactly_one_wins(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        for r in range(ROUNDS):
            key = f"same-{r}"
            answers = race(partial(create, one, key), partial(create, two, key))
            assert sorted(answers) == [
                "created",
                f"duplicate key: an experiment with key '{key}' already exists",
            ]
        assert len(one.list_experiments()) == ROUNDS


def allocation(experiment_id: str, control: float = 0.25) -> AllocationRecord:
    return AllocationRecord(
        experiment_id=experiment_id,
        period=0,
        computed_at=datetime(2025, 2, 1, 12, tzinfo=UTC),
        weights={"control": control, "v1": 1 - control},
        method="exact",
        seed=None,
        source="events",
    )


def add(client: Store, record: AllocationRecord, expected: int) -> str:
    """Add ``record`` if its experiment is still at period ``expected``: its new period, or
    how it was refused."""
    try:
        return f"period {client.add_allocation(record, expected_period=expected).period}"
    except ConcurrentModification as error:
        return f"refused {error.field}"


class TestAllocationCompareAndSet:
    def test_a_stale_expectation_stores_nothing(self, store: Store) -> None:
        a, b = make_experiment("a"), make_experiment("b")
        store.create_experiment(a)
        store.create_experiment(b)
        assert add(store, allocation(a.id), expected=0) == "period 1"
        assert add(store, allocation(a.id, 0.5), expected=0) == "refused period"
        assert add(store, allocation(a.id, 0.5), expected=2) == "refused period"
        assert add(store, allocation(a.id, 0.5), expected=1) == "period 2"
        assert [r.weights["control"] for r in store.list_allocations(a.id)] == [0.25, 0.5]
        # A batch is refused whole when one of its experiments moved on, even one it only
        # names in its expectations.
        for expected in ({a.id: 1, b.id: 0}, {a.id: 2, b.id: 0, "other": 1}):
            with pytest.raises(ConcurrentModification):
                store.add_allocations(
                    [allocation(a.id), allocation(b.id)], expected_periods=expected
                )
        assert (len(store.list_allocations(a.id)), store.list_allocations(b.id)) == (2, [])
        stored = store.add_allocations(
            [allocation(a.id), allocation(b.id), allocation(a.id)],
            expected_periods={a.id: 2, b.id: 0, "other": 0},
        )
        assert [(r.experiment_id, r.period) for r in stored] == [(a.id, 3), (b.id, 1), (a.id, 4)]
        # Without expectations an addition takes the next period, as before.
        assert store.add_allocation(allocation(b.id)).period == 2

    def test_two_clients_adding_the_next_period_at_once_store_one(
        self, store_factory: StoreFactory
    ) -> None:
        one, two = store_factory(), store_factory()
        exp = make_experiment()
        one.create_experiment(exp)
        for r in range(ROUNDS):
            answers = race(
                partial(add, one, allocation(exp.id, 0.1), r),
                partial(add, two, allocation(exp.id, 0.2), r),
            )
            assert sorted(answers) == [f"period {r + 1}", "refused period"]
            winner = 0.1 if answers[0] == f"period {r + 1}" else 0.2
            assert one.latest_allocation(exp.id) == replace(
                allocation(exp.id, winner), period=r + 1
            )
        assert [r.period for r in two.list_allocations(exp.id)] == list(range(1, ROUNDS + 1))

    def test_two_clients_adding_batches_at_once_store_one(
        self, store_factory: StoreFactory
    ) -> None:
        one, two = store_factory(), store_factory()
        a, b = make_experiment("a"), make_experiment("b")
        for exp in (a, b):
            one.create_experiment(exp)

        def batch(client: Store, expected: int) -> str:
            try:
                stored = client.add_allocations(
                    [allocation(a.id), allocation(b.id)],
                    expected_periods={a.id: expected, b.id: expected},
                )
            except ConcurrentModification:
                return "refused"
            return f"periods {[r.period for r in stored]}"

        for r in range(ROUNDS):
            answers = race(partial(batch, one, r), partial(batch, two, r))
            assert sorted(answers) == [f"periods {[r + 1, r + 1]}", "refused"]
        for exp in (a, b):
            assert len(one.list_allocations(exp.id)) == ROUNDS


def exposure(exp: str, variant: str, unit: str, period: int = 0) -> EventRecord:
    return EventRecord(EventKind.EXPOSURE, exp, variant, unit_id=unit, period=period)


def conversion(exp: str, variant: str, unit: str, value: float, period: int = 0) -> EventRecord:
    return EventRecord(
        EventKind.CONVERSION, exp, variant, unit, "revenue", value=value, period=period
    )


def counts(store: Store, experiment_id: str) -> dict[tuple[int, str], tuple[int, ...]]:
    """(period, variant) -> (assigned units, exposures, unique units, revenue count, revenue
    units, revenue sum): only the non-empty ones."""
    found = {}
    for period, by_variant in store.get_period_counters(experiment_id).items():
        for variant, c in by_variant.items():
            revenue = c.metrics.get("revenue", MetricTotals())
            row = (c.assigned_units, c.exposures, c.unique_units)
            row += (revenue.count, revenue.units, int(revenue.sum))
            if any(row):
                found[(period, variant)] = row
    return found


class TestEventsCountUnderTheStoredAssignment:
    """An event of a unit with a stored assignment counts under it (variant and period), whatever
    variant the event names; a unit without one gets its first exposure's (first one wins)."""

    def test_an_event_naming_another_variant_counts_under_the_assigned_one(
        self, store: Store
    ) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.assign(exp.id, "u", "control", period=0)
        result = store.apply_events(
            [exposure(exp.id, "v1", "u", period=2), conversion(exp.id, "v1", "u", 5.0, period=2)]
        )
        assert (result.applied, result.duplicates) == (2, 0)
        assert counts(store, exp.id) == {(0, "control"): (1, 1, 1, 1, 1, 5)}
        assert store.get_assignments(exp.id, ["u"]) == {"u": ("control", 0)}

    def test_a_new_unit_gets_its_first_exposure_for_the_whole_batch(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.apply_events(
            [
                conversion(exp.id, "control", "u", 2.0),  # before the exposure, same batch
                exposure(exp.id, "v1", "u", period=1),
                exposure(exp.id, "control", "u"),
                conversion(exp.id, "control", "u", 3.0),
            ]
        )
        assert store.get_assignments(exp.id, ["u"]) == {"u": ("v1", 1)}
        assert counts(store, exp.id) == {(1, "v1"): (1, 2, 1, 2, 1, 5)}

    def test_two_clients_with_different_weights_count_under_the_stored_assignment(
        self, store_factory: StoreFactory
    ) -> None:
        """Worker one assigned the unit on the new weights (period 1); worker two, on stale
        weights, hashed it to another variant in period 0 and sends what it hashed."""
        one, two = store_factory(), store_factory()
        exp = make_experiment()
        one.create_experiment(exp)
        assert one.assign(exp.id, "u", "v1", period=1).created
        two.apply_events([exposure(exp.id, "control", "u"), exposure(exp.id, "control", "u")])
        two.apply_events([conversion(exp.id, "control", "u", 4.0)])
        assert counts(one, exp.id) == {(1, "v1"): (1, 2, 1, 1, 1, 4)}

    def test_two_clients_exposing_a_new_unit_at_once_count_under_one_variant(
        self, store_factory: StoreFactory
    ) -> None:
        one, two = store_factory(), store_factory()
        for r in range(ROUNDS):
            exp = make_experiment(f"race-{r}")
            one.create_experiment(exp)
            race(
                partial(one.apply_events, [exposure(exp.id, "control", "u")]),
                partial(two.apply_events, [exposure(exp.id, "v1", "u", period=1)]),
            )
            stored = one.get_assignments(exp.id, ["u"])["u"]
            assert stored in {("control", 0), ("v1", 1)}
            assert counts(two, exp.id) == {(stored.period, stored.variant): (1, 2, 1, 0, 0, 0)}
