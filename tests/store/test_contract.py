"""The contract every store keeps: run on memory, SQLite, PostgreSQL and Redis alike."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from abpilot.domain.errors import ConcurrentModification, DuplicateKey, NotFound, ValidationError
from abpilot.domain.experiment import ExperimentStatus, Metric, MetricKind
from abpilot.store.base import (
    GLOBAL_CONTEXT,
    AllocationRecord,
    ArmState,
    AssignResult,
    DailyRow,
    Decision,
    Document,
    EventKind,
    EventRecord,
    FeedbackOutcome,
    MetricTotals,
    Store,
)
from abpilot.store.memory import MemoryStore
from tests.conftest import BARRIER_SECONDS, SHARED_BACKENDS, StoreFactory, backend_url
from tests.factories import make_experiment
from tests.processes import process_context

EXPOSURE, CONVERSION = EventKind.EXPOSURE, EventKind.CONVERSION


def exposure(
    exp: str, variant: str, unit: str | None = None, event_id: str | None = None
) -> EventRecord:
    return EventRecord(EXPOSURE, exp, variant, unit_id=unit, event_id=event_id)


def conversion(
    exp: str,
    variant: str,
    unit: str | None = None,
    *,
    metric: str = "conversion",
    value: float = 1.0,
    event_id: str | None = None,
) -> EventRecord:
    return EventRecord(CONVERSION, exp, variant, unit, metric, value, event_id)


class TestExperiments:
    def test_round_trip_keeps_every_field(self, store: Store) -> None:
        exp = make_experiment(
            description="two buttons", started_at=datetime(2026, 1, 2, tzinfo=UTC)
        )
        store.create_experiment(exp)
        assert store.get_experiment(exp.id) == exp
        assert store.get_experiment_id("checkout") == exp.id

    def test_open_metrics_round_trips_and_metrics_grow(self, store: Store) -> None:
        exp = make_experiment(open_metrics=True, metrics=(Metric("conversion"),))
        store.create_experiment(exp)
        assert store.get_experiment(exp.id) == exp
        grown = replace(exp, metrics=(*exp.metrics, Metric("watch", MetricKind.VALUE)), version=2)
        store.update_experiment(grown, expected_version=1)
        assert store.get_experiment(exp.id) == grown
        with pytest.raises(ConcurrentModification):  # a second registration on the old version
            store.update_experiment(
                replace(exp, metrics=(*exp.metrics, Metric("other")), version=2),
                expected_version=1,
            )
        assert store.list_experiments() == [grown]

    def test_unknown_experiment_is_none(self, store: Store) -> None:
        assert store.get_experiment("nope") is None
        assert store.get_experiment_id("nope") is None

    def test_duplicate_key_is_refused(self, store: Store) -> None:
        store.create_experiment(make_experiment("same"))
        with pytest.raises(DuplicateKey):
            store.create_experiment(make_experiment("same"))
        assert len(store.list_experiments()) == 1

    def test_list_filters_by_status_oldest_first(self, store: Store) -> None:
        a = make_experiment("a", created_at=datetime(2026, 1, 1, tzinfo=UTC))
        b = make_experiment(
            "b", status=ExperimentStatus.DRAFT, created_at=datetime(2026, 1, 3, tzinfo=UTC)
        )
        c = make_experiment("c", created_at=datetime(2026, 1, 2, tzinfo=UTC))
        for exp in (b, a, c):
            store.create_experiment(exp)
        assert [e.key for e in store.list_experiments()] == ["a", "c", "b"]
        assert [e.key for e in store.list_experiments(ExperimentStatus.RUNNING)] == ["a", "c"]
        assert [e.key for e in store.list_experiments(ExperimentStatus.DRAFT)] == ["b"]

    def test_update_is_optimistic(self, store: Store) -> None:
        exp = make_experiment(status=ExperimentStatus.DRAFT)
        store.create_experiment(exp)
        moved = replace(exp, status=ExperimentStatus.RUNNING, version=2, name="Renamed")
        store.update_experiment(moved, expected_version=1)
        assert store.get_experiment(exp.id) == moved
        with pytest.raises(ConcurrentModification):
            store.update_experiment(replace(exp, version=2), expected_version=1)
        assert store.get_experiment(exp.id) == moved

    def test_update_to_taken_key_is_refused(self, store: Store) -> None:
        store.create_experiment(make_experiment("taken"))
        exp = make_experiment("mine")
        store.create_experiment(exp)
        with pytest.raises(DuplicateKey):
            store.update_experiment(replace(exp, key="taken", version=2), expected_version=1)
        assert store.get_experiment_id("mine") == exp.id

    def test_update_can_change_variants(self, store: Store) -> None:
        exp = make_experiment(status=ExperimentStatus.DRAFT)
        store.create_experiment(exp)
        three = make_experiment(weights=(0.2, 0.3, 0.5), id=exp.id, version=2)
        store.update_experiment(three, expected_version=1)
        assert store.get_experiment(exp.id) == three

    def test_delete_removes_everything(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.assign(exp.id, "u1", "control")
        store.apply_events([conversion(exp.id, "control", "u1", event_id="e1")])
        assert store.delete_experiment(exp.id)
        assert store.get_experiment(exp.id) is None
        assert store.get_experiment_id(exp.key) is None
        assert store.get_counters(exp.id) == {}
        assert not store.delete_experiment(exp.id)
        again = make_experiment(id=exp.id)
        store.create_experiment(again)
        assert store.get_assignments(exp.id, ["u1"]) == {}
        result = store.apply_events([conversion(exp.id, "control", event_id="e1")])
        assert result.applied == 1


class TestAssignments:
    def test_first_assignment_wins(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        first = store.assign(exp.id, "user-1", "v1")
        second = store.assign(exp.id, "user-1", "control")
        assert (first.variant, first.created) == ("v1", True)
        assert (second.variant, second.created) == ("v1", False)
        assert store.get_assignments(exp.id, ["user-1", "user-2"]) == {"user-1": ("v1", 0)}
        assert store.get_counters(exp.id)["v1"].assigned_units == 1

    def test_assigned_units_count_distinct_units(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        for unit in ["a", "b", "c", "a", "b"]:
            store.assign(exp.id, unit, "control")
        store.assign(exp.id, "d", "v1")
        counters = store.get_counters(exp.id)
        assert counters["control"].assigned_units == 3
        assert counters["v1"].assigned_units == 1

    def test_assignments_are_per_experiment(self, store: Store) -> None:
        a, b = make_experiment("a"), make_experiment("b")
        store.create_experiment(a)
        store.create_experiment(b)
        store.assign(a.id, "u", "v1")
        assert store.get_assignments(b.id, ["u"]) == {}

    def test_unit_ids_keep_unicode_and_separators(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        odd = ["ユーザー:1", "a|b", "x{y}z", "with space", "ends:"]
        for unit in odd:
            store.assign(exp.id, unit, "v1")
        assert store.get_assignments(exp.id, odd) == dict.fromkeys(odd, ("v1", 0))


class TestAssignAndExpose:
    """``assign_and_expose``: the assignment and the exposure in one atomic step, as SONA's
    recommendation call does (``POST …/assign`` with ``"expose": true``)."""

    T1 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

    def test_a_new_unit_is_assigned_and_exposed(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        event = replace(exposure(exp.id, "v1", "u1"), period=0, received_at=self.T1)
        result = store.assign_and_expose(event)
        assert (result.variant, result.created, result.period, result.exposed) == (
            "v1",
            True,
            0,
            True,
        )
        assert store.get_assignments(exp.id, ["u1"]) == {"u1": ("v1", 0)}
        counters = store.get_counters(exp.id)["v1"]
        assert (counters.assigned_units, counters.exposures, counters.unique_units) == (1, 1, 1)
        assert store.last_event_at(exp.id) == self.T1

    def test_the_stored_assignment_wins_and_takes_the_exposure(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.assign(exp.id, "u1", "control", period=0)
        again = store.assign_and_expose(exposure(exp.id, "v1", "u1"))
        store.assign_and_expose(exposure(exp.id, "v1", "u1"))
        assert (again.variant, again.created, again.exposed) == ("control", False, True)
        counters = store.get_counters(exp.id)
        assert "v1" not in counters or counters["v1"].exposures == 0
        control = counters["control"]
        assert (control.assigned_units, control.exposures, control.unique_units) == (1, 2, 1)

    def test_a_repeated_event_id_counts_once(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        first = store.assign_and_expose(exposure(exp.id, "v1", "u1", event_id="rec-1"))
        again = store.assign_and_expose(exposure(exp.id, "control", "u1", event_id="rec-1"))
        assert (first.exposed, again.exposed, again.variant) == (True, False, "v1")
        # The id is shared with the batch path: a batch resending it is a duplicate too.
        resent = store.apply_events([exposure(exp.id, "v1", "u1", event_id="rec-1")])
        assert (resent.applied, resent.duplicates) == (0, 1)
        assert store.get_counters(exp.id)["v1"].exposures == 1

    def test_counts_what_assign_then_apply_events_counts(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        one, two = make_experiment("one"), make_experiment("two")
        store.create_experiment(one)
        store.create_experiment(two)
        calls = [("u1", "v1"), ("u2", "control"), ("u1", "control"), ("u3", "v1"), ("u2", "v1")]
        for unit, variant in calls:
            store.assign_and_expose(exposure(one.id, variant, unit))
            stored = store.assign(two.id, unit, variant)
            store.apply_events([exposure(two.id, stored.variant, unit)])
        assert store.get_period_counters(one.id) == store.get_period_counters(two.id)
        units = ["u1", "u2", "u3"]
        assert store.get_assignments(one.id, units) == store.get_assignments(two.id, units)

    @pytest.mark.parametrize("expose", [True, False], ids=["assign_and_expose", "assign"])
    def test_concurrent_calls_assign_each_unit_once(
        self, store_factory: StoreFactory, expose: bool
    ) -> None:
        """Four clients racing to assign (and expose) the same 10 units with different variants:
        each unit's first assignment wins, every client is told the winner, each unit counts
        once in its winner's ``assigned_units``, and every exposure counts."""
        from concurrent.futures import ThreadPoolExecutor

        exp = make_experiment()
        store_factory().create_experiment(exp)
        clients = [store_factory() for _ in range(4)]
        calls = [(f"u{i % 10}", "control" if i % 3 else "v1") for i in range(60)]

        def call(item: tuple[int, tuple[str, str]]) -> AssignResult:
            client, (unit, variant) = clients[item[0] % 4], item[1]
            if expose:
                return client.assign_and_expose(exposure(exp.id, variant, unit))
            return client.assign(exp.id, unit, variant)

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(call, enumerate(calls)))
        assert sum(r.created for r in results) == 10
        stored = clients[0].get_assignments(exp.id, [f"u{i}" for i in range(10)])
        for (unit, _), result in zip(calls, results, strict=True):
            assert (result.variant, result.period) == stored[unit]
        counters = clients[0].get_counters(exp.id)
        for key in ("control", "v1"):
            won = sum(1 for a in stored.values() if a.variant == key)
            assert (counters[key].assigned_units if key in counters else 0) == won
        assert sum(c.unique_units for c in counters.values()) == (10 if expose else 0)
        assert sum(c.exposures for c in counters.values()) == (60 if expose else 0)


class TestCounters:
    def test_exposures_and_unique_units(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.apply_events(
            [
                exposure(exp.id, "control", "u1"),
                exposure(exp.id, "control", "u1"),
                exposure(exp.id, "control", "u2"),
                exposure(exp.id, "v1"),
                exposure(exp.id, "v1"),
            ]
        )
        counters = store.get_counters(exp.id)
        assert (counters["control"].exposures, counters["control"].unique_units) == (3, 2)
        assert (counters["v1"].exposures, counters["v1"].unique_units) == (2, 0)

    def test_exposure_stores_missing_assignment_once(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.assign(exp.id, "old", "control")
        store.apply_events([exposure(exp.id, "control", "old"), exposure(exp.id, "v1", "new")])
        assert store.get_assignments(exp.id, ["old", "new"]) == {
            "old": ("control", 0),
            "new": ("v1", 0),
        }
        counters = store.get_counters(exp.id)
        assert counters["control"].assigned_units == 1
        assert counters["v1"].assigned_units == 1

    def test_per_unit_sums_and_sums_of_squares(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.apply_events([conversion(exp.id, "v1", "a", metric="revenue", value=10.0)])
        store.apply_events(
            [
                conversion(exp.id, "v1", "a", metric="revenue", value=5.0),
                conversion(exp.id, "v1", "b", metric="revenue", value=2.5),
                conversion(exp.id, "v1", "a", metric="revenue", value=-3.0),
            ]
        )
        store.apply_events([conversion(exp.id, "v1", "c", metric="revenue", value=0.0)])
        totals = store.get_counters(exp.id)["v1"].metrics["revenue"]
        per_unit = {"a": 12.0, "b": 2.5, "c": 0.0}
        assert totals.count == 5
        assert totals.units == 3
        assert totals.sum == pytest.approx(sum(per_unit.values()))
        assert totals.sum_squares == pytest.approx(sum(t * t for t in per_unit.values()))

    def test_binary_conversion_counts_units_once(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        for _ in range(3):
            store.apply_events([conversion(exp.id, "control", "u1")])
        store.apply_events([conversion(exp.id, "control", "u2")])
        totals = store.get_counters(exp.id)["control"].metrics["conversion"]
        assert (totals.count, totals.units) == (4, 2)
        assert totals.sum_squares == pytest.approx(3**2 + 1**2)

    def test_anonymous_conversions_count_events(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.apply_events(
            [
                conversion(exp.id, "v1", metric="revenue", value=2.0),
                conversion(exp.id, "v1", metric="revenue", value=3.0),
            ]
        )
        assert store.get_counters(exp.id)["v1"].metrics["revenue"] == MetricTotals(
            count=2, units=0, sum=5.0, sum_squares=13.0
        )

    def test_metrics_are_separate(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.apply_events(
            [
                conversion(exp.id, "v1", "u", metric="conversion"),
                conversion(exp.id, "v1", "u", metric="revenue", value=9.5),
            ]
        )
        metrics = store.get_counters(exp.id)["v1"].metrics
        assert metrics["conversion"] == MetricTotals(1, 1, 1.0, 1.0)
        assert metrics["revenue"] == MetricTotals(1, 1, 9.5, 90.25)

    def test_two_clients_see_the_same_counts(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        exp = make_experiment()
        one.create_experiment(exp)
        one.apply_events([conversion(exp.id, "v1", "u", metric="revenue", value=4.0)])
        two.apply_events([conversion(exp.id, "v1", "u", metric="revenue", value=6.0)])
        totals = one.get_counters(exp.id)["v1"].metrics["revenue"]
        assert (totals.units, totals.sum, totals.sum_squares) == (1, 10.0, 100.0)

    def test_floats_survive_exactly(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.apply_events([conversion(exp.id, "v1", "u", metric="revenue", value=0.1)])
        store.apply_events([conversion(exp.id, "v1", "u", metric="revenue", value=0.2)])
        totals = store.get_counters(exp.id)["v1"].metrics["revenue"]
        assert math.isclose(totals.sum, 0.1 + 0.2, rel_tol=1e-15)
        assert math.isclose(totals.sum_squares, (0.1 + 0.2) ** 2, rel_tol=1e-12)


class TestIdempotency:
    def test_repeated_event_id_counts_once(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        first = store.apply_events([conversion(exp.id, "v1", "u", value=1.0, event_id="evt-1")])
        again = store.apply_events([conversion(exp.id, "v1", "u", value=1.0, event_id="evt-1")])
        assert (first.applied, first.duplicates) == (1, 0)
        assert (again.applied, again.duplicates) == (0, 1)
        assert store.get_counters(exp.id)["v1"].metrics["conversion"].count == 1

    def test_duplicates_inside_one_batch(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        result = store.apply_events(
            [
                exposure(exp.id, "v1", "u", event_id="x"),
                exposure(exp.id, "v1", "u", event_id="x"),
                exposure(exp.id, "v1", "u"),
                exposure(exp.id, "v1", "u"),
            ]
        )
        assert (result.applied, result.duplicates) == (3, 1)
        assert store.get_counters(exp.id)["v1"].exposures == 3

    def test_event_ids_are_scoped_per_experiment(self, store: Store) -> None:
        a, b = make_experiment("a"), make_experiment("b")
        store.create_experiment(a)
        store.create_experiment(b)
        store.apply_events([exposure(a.id, "v1", event_id="same")])
        result = store.apply_events([exposure(b.id, "v1", event_id="same")])
        assert result.applied == 1

    def test_batch_across_experiments(self, store: Store) -> None:
        a, b = make_experiment("a"), make_experiment("b")
        store.create_experiment(a)
        store.create_experiment(b)
        result = store.apply_events(
            [
                exposure(a.id, "control", "u"),
                conversion(b.id, "v1", "u", event_id="1"),
                conversion(a.id, "control", "u", metric="revenue", value=3.0),
            ]
        )
        assert (result.applied, result.duplicates) == (3, 0)
        assert store.get_counters(a.id)["control"].metrics["revenue"].sum == 3.0
        assert store.get_counters(b.id)["v1"].metrics["conversion"].count == 1

    def test_empty_batch(self, store: Store) -> None:
        assert store.apply_events([]).applied == 0


class TestLastEventAt:
    """The time the last counted event was received: what monitoring's staleness check reads."""

    T1 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)

    def test_moves_forward_only(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        assert store.last_event_at(exp.id) is None
        store.apply_events([replace(exposure(exp.id, "control", "u1"), received_at=self.T1)])
        assert store.last_event_at(exp.id) == self.T1
        earlier = self.T1 - timedelta(hours=1)
        store.apply_events([replace(conversion(exp.id, "control", "u1"), received_at=earlier)])
        assert store.last_event_at(exp.id) == self.T1
        later = (self.T1 + timedelta(hours=2)).astimezone(timezone(timedelta(hours=-5)))
        store.apply_events([replace(exposure(exp.id, "v1"), received_at=later)])
        found = store.last_event_at(exp.id)
        assert found == later
        assert found is not None
        assert found.utcoffset() == timedelta(0)

    def test_latest_counted_event_of_a_batch(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        t2, t3 = self.T1 + timedelta(minutes=1), self.T1 + timedelta(minutes=2)
        store.apply_events([replace(exposure(exp.id, "v1", event_id="seen"), received_at=self.T1)])
        store.apply_events(
            [
                replace(exposure(exp.id, "v1", "u"), received_at=t2),
                replace(exposure(exp.id, "v1", event_id="seen"), received_at=t3),  # repeated
                exposure(exp.id, "v1"),  # no time: leaves it alone
            ]
        )
        assert store.last_event_at(exp.id) == t2

    def test_repeats_and_timeless_events_leave_it_alone(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.apply_events([exposure(exp.id, "v1", "u")])
        assert store.last_event_at(exp.id) is None
        store.apply_events([replace(exposure(exp.id, "v1", event_id="e"), received_at=self.T1)])
        later = self.T1 + timedelta(days=1)
        repeated = store.apply_events(
            [replace(exposure(exp.id, "v1", event_id="e"), received_at=later)]
        )
        assert repeated.duplicates == 1
        assert store.last_event_at(exp.id) == self.T1

    def test_per_experiment_shared_and_deleted(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        a, b = make_experiment("a"), make_experiment("b")
        one.create_experiment(a)
        one.create_experiment(b)
        later = self.T1 + timedelta(seconds=1)
        one.apply_events(
            [
                replace(exposure(a.id, "v1"), received_at=self.T1),
                replace(conversion(b.id, "v1"), received_at=later),
            ]
        )
        assert (two.last_event_at(a.id), two.last_event_at(b.id)) == (self.T1, later)
        assert two.delete_experiment(a.id)
        assert one.last_event_at(a.id) is None
        assert one.last_event_at(b.id) == later


class TestPeriods:
    def test_assignment_keeps_its_first_period(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        assert store.assign(exp.id, "u", "v1", period=2).period == 2
        again = store.assign(exp.id, "u", "control", period=5)
        assert (again.variant, again.period, again.created) == ("v1", 2, False)
        assert store.get_assignments(exp.id, ["u"]) == {"u": ("v1", 2)}

    def test_counters_are_kept_per_period_and_summed(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.assign(exp.id, "early", "v1", period=0)
        store.apply_events(
            [
                EventRecord(EXPOSURE, exp.id, "v1", "early", period=0),
                EventRecord(EXPOSURE, exp.id, "v1", "late", period=1),
                EventRecord(CONVERSION, exp.id, "v1", "late", "revenue", 4.0, period=1),
                EventRecord(CONVERSION, exp.id, "v1", "early", "revenue", 2.0, period=0),
                EventRecord(EXPOSURE, exp.id, "control", None, period=1),
            ]
        )
        by_period = store.get_period_counters(exp.id)
        assert set(by_period) == {0, 1}
        assert by_period[0]["v1"].unique_units == 1
        assert by_period[1]["v1"].assigned_units == 1
        assert by_period[1]["v1"].metrics["revenue"] == MetricTotals(1, 1, 4.0, 16.0)
        assert by_period[1]["control"].exposures == 1
        assert store.get_assignments(exp.id, ["late"]) == {"late": ("v1", 1)}
        total = store.get_counters(exp.id)
        assert (total["v1"].exposures, total["v1"].unique_units, total["v1"].assigned_units) == (
            2,
            2,
            2,
        )
        assert total["v1"].metrics["revenue"] == MetricTotals(2, 2, 6.0, 20.0)


class TestDailyMetrics:
    def test_rows_replace_and_raw_payloads_append(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        day, other = date(2025, 1, 15), date(2025, 1, 14)
        at = datetime(2025, 1, 16, 8, tzinfo=UTC)
        store.record_daily_metrics(
            exp.id,
            day,
            [DailyRow(day, "control", 10_000, 320), DailyRow(day, "v1", 10_000, 350)],
            '{"first": true}',
            at,
        )
        store.record_daily_metrics(exp.id, other, [DailyRow(other, "v1", 900, 30)], "{}", at)
        store.record_daily_metrics(
            exp.id, day, [DailyRow(day, "v1", 10_500, 360)], '{"second": true}', at
        )
        assert store.get_daily_metrics(exp.id) == [
            DailyRow(other, "v1", 900, 30),
            DailyRow(day, "control", 10_000, 320),
            DailyRow(day, "v1", 10_500, 360),
        ]
        raw = store.get_raw_metrics(exp.id)
        assert [r.payload for r in raw] == ['{"first": true}', "{}", '{"second": true}']
        assert [r.day for r in raw] == [day, other, day]
        assert raw[0].received_at == at
        assert store.get_daily_metrics("other") == []

    def test_delete_removes_daily_and_history(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        day = date(2025, 1, 15)
        store.record_daily_metrics(
            exp.id, day, [DailyRow(day, "v1", 5, 1)], "{}", datetime.now(UTC)
        )
        store.add_allocation(allocation(exp.id))
        store.delete_experiment(exp.id)
        assert store.get_daily_metrics(exp.id) == []
        assert store.get_raw_metrics(exp.id) == []
        assert store.list_allocations(exp.id) == []


def allocation(experiment_id: str, weights: dict[str, float] | None = None) -> AllocationRecord:
    return AllocationRecord(
        experiment_id=experiment_id,
        period=0,
        computed_at=datetime(2025, 2, 1, 12, tzinfo=UTC),
        weights=weights or {"control": 0.25, "v1": 0.75},
        method="exact",
        seed=None,
        source="events",
        details={"arms": {"control": {"trials": 100, "successes": 3}}, "note": "ünï"},
    )


class TestAllocations:
    def test_periods_count_up(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        assert store.latest_allocation(exp.id) is None
        first = store.add_allocation(allocation(exp.id))
        second = store.add_allocation(allocation(exp.id, {"control": 0.1, "v1": 0.9}))
        assert (first.period, second.period) == (1, 2)
        assert store.list_allocations(exp.id) == [first, second]
        assert store.latest_allocation(exp.id) == second
        assert second.weights == {"control": 0.1, "v1": 0.9}
        assert second.details["note"] == "ünï"

    def test_seed_survives(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        record = replace(allocation(exp.id), method="monte_carlo", seed=2**32 - 1)
        assert store.add_allocation(record).seed == 2**32 - 1
        assert store.list_allocations(exp.id)[0].seed == 2**32 - 1

    def test_concurrent_additions_take_distinct_periods(self, store_factory: StoreFactory) -> None:
        from concurrent.futures import ThreadPoolExecutor

        exp = make_experiment()
        first = store_factory()
        first.create_experiment(exp)
        clients = [store_factory() for _ in range(4)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            periods = list(
                pool.map(
                    lambda i: clients[i % 4].add_allocation(allocation(exp.id)).period, range(20)
                )
            )
        assert sorted(periods) == list(range(1, 21))


class TestBatches:
    """The ``*_many`` reads and ``add_allocations`` give what the one-experiment methods give."""

    def test_empty_input(self, store: Store) -> None:
        assert store.get_counters_many([]) == {}
        assert store.get_daily_metrics_many([]) == {}
        assert store.latest_allocations([]) == {}
        assert store.add_allocations([]) == []

    def test_unknown_and_quiet_experiments_are_absent(self, store: Store) -> None:
        quiet = make_experiment("quiet")
        store.create_experiment(quiet)
        ids = [quiet.id, "unknown"]
        assert store.get_counters_many(ids) == {}
        assert store.get_daily_metrics_many(ids) == {}
        assert store.latest_allocations(ids) == {}

    def test_reads_equal_the_single_reads(self, store: Store) -> None:
        a, b, quiet = make_experiment("a"), make_experiment("b"), make_experiment("quiet")
        for exp in (a, b, quiet):
            store.create_experiment(exp)
        store.apply_events(
            [
                EventRecord(EXPOSURE, a.id, "v1", "u1", period=0),
                EventRecord(EXPOSURE, a.id, "v1", "u2", period=1),
                EventRecord(CONVERSION, a.id, "v1", "u2", "revenue", 4.0, period=1),
                EventRecord(EXPOSURE, a.id, "control", None, period=1),
                exposure(b.id, "control", "u1"),
                conversion(b.id, "control", "u1"),
                conversion(b.id, "v1", metric="revenue", value=2.5),
            ]
        )
        day, at = date(2025, 1, 15), datetime(2025, 1, 16, tzinfo=UTC)
        store.record_daily_metrics(a.id, day, [DailyRow(day, "v1", 90, 9)], "{}", at)
        store.record_daily_metrics(
            b.id, day, [DailyRow(day, "v1", 50, 5), DailyRow(day, "control", 40, 2)], "{}", at
        )
        earlier = date(2025, 1, 14)
        store.record_daily_metrics(b.id, earlier, [DailyRow(earlier, "v1", 7, 1)], "{}", at)
        store.add_allocation(allocation(a.id))
        store.add_allocation(allocation(a.id, {"control": 0.1, "v1": 0.9}))
        store.add_allocation(allocation(b.id))
        ids = [a.id, quiet.id, b.id, "unknown", a.id]
        counters = store.get_counters_many(iter(ids))  # any iterable, repeats allowed
        assert counters == {a.id: store.get_counters(a.id), b.id: store.get_counters(b.id)}
        assert counters[a.id]["v1"].metrics["revenue"] == MetricTotals(1, 1, 4.0, 16.0)
        assert store.get_daily_metrics_many(iter(ids)) == {
            a.id: store.get_daily_metrics(a.id),
            b.id: store.get_daily_metrics(b.id),
        }
        latest = store.latest_allocations(iter(ids))
        assert latest == {a.id: store.latest_allocation(a.id), b.id: store.latest_allocation(b.id)}
        assert (latest[a.id].period, latest[b.id].period) == (2, 1)

    def test_many_ids_span_several_chunks(self, store: Store) -> None:
        found = [make_experiment(f"e{i}") for i in range(3)]
        day, at = date(2025, 1, 15), datetime(2025, 1, 16, tzinfo=UTC)
        for i, exp in enumerate(found):
            store.create_experiment(exp)
            store.apply_events([exposure(exp.id, "control")] * (i + 1))
            store.record_daily_metrics(exp.id, day, [DailyRow(day, "v1", i, 0)], "{}", at)
            store.add_allocation(allocation(exp.id))
        ids = [f"unknown-{i}" for i in range(1_200)]
        for position, exp in zip((0, 600, 1_199), found, strict=True):
            ids.insert(position, exp.id)
        counters = store.get_counters_many(ids)
        assert {e: c["control"].exposures for e, c in counters.items()} == {
            exp.id: i + 1 for i, exp in enumerate(found)
        }
        assert set(store.get_daily_metrics_many(ids)) == {exp.id for exp in found}
        assert {e: r.period for e, r in store.latest_allocations(ids).items()} == {
            exp.id: 1 for exp in found
        }

    def test_added_records_take_the_next_periods_in_order(self, store: Store) -> None:
        a, b = make_experiment("a"), make_experiment("b")
        for exp in (a, b):
            store.create_experiment(exp)
        assert store.add_allocation(allocation(a.id)).period == 1
        records = [
            allocation(a.id, {"control": 0.2, "v1": 0.8}),
            replace(allocation(b.id), method="monte_carlo", seed=2**32 - 1),
            allocation(a.id, {"control": 0.3, "v1": 0.7}),
        ]
        stored = store.add_allocations(records)
        assert [(r.experiment_id, r.period) for r in stored] == [(a.id, 2), (b.id, 1), (a.id, 3)]
        assert stored == [replace(r, period=p) for r, p in zip(records, (2, 1, 3), strict=True)]
        assert store.list_allocations(a.id)[1:] == [stored[0], stored[2]]
        assert store.list_allocations(b.id) == [stored[1]]
        assert store.latest_allocations([a.id, b.id]) == {a.id: stored[2], b.id: stored[1]}
        assert store.add_allocation(allocation(b.id)).period == 2

    def test_batches_span_chunks(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("abpilot.store.sql.common.CHUNK", 2)  # SQL: several IN (...) each
        found = [make_experiment(f"e{i}") for i in range(5)]
        for exp in found:
            store.create_experiment(exp)
            store.apply_events([exposure(exp.id, "v1")])
        store.add_allocation(allocation(found[3].id))
        records = [allocation(exp.id) for exp in (*found, found[0], found[4])]
        periods = [r.period for r in store.add_allocations(records)]
        assert periods == [1, 1, 1, 2, 1, 2, 2]
        ids = [exp.id for exp in found]
        assert {e: r.period for e, r in store.latest_allocations(ids).items()} == dict(
            zip(ids, (2, 1, 1, 2, 2), strict=True)
        )
        assert set(store.get_counters_many(ids)) == set(ids)

    def test_a_failing_batch_stores_nothing(self, store: Store) -> None:
        if isinstance(store, MemoryStore):
            pytest.skip("the memory store keeps records as they are: nothing in a batch can fail")
        exp = make_experiment()
        store.create_experiment(exp)
        unencodable = replace(allocation(exp.id), details={"when": object()})
        with pytest.raises(Exception, match="not JSON serializable"):
            store.add_allocations([allocation(exp.id), unencodable])
        assert store.list_allocations(exp.id) == []
        assert store.add_allocations([allocation(exp.id)])[0].period == 1

    def test_concurrent_batches_take_distinct_consecutive_periods(
        self, store_factory: StoreFactory
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        a, b = make_experiment("a"), make_experiment("b")
        first = store_factory()
        for exp in (a, b):
            first.create_experiment(exp)
        clients = [store_factory() for _ in range(4)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            batches = list(
                pool.map(
                    lambda i: clients[i % 4].add_allocations(
                        [allocation(a.id), allocation(b.id), allocation(a.id)]
                    ),
                    range(12),
                )
            )
        assert_consecutive(batches, {a.id: 24, b.id: 12})
        assert len(first.list_allocations(a.id)) == 24


def assert_consecutive(
    batches: Sequence[Sequence[AllocationRecord]], expected: dict[str, int]
) -> None:
    """Every period 1..n of each experiment given out once, and a batch's records of one
    experiment next to each other."""
    periods: dict[str, list[int]] = {}
    for batch in batches:
        mine: dict[str, list[int]] = {}
        for record in batch:
            mine.setdefault(record.experiment_id, []).append(record.period)
        for experiment_id, taken in mine.items():
            assert taken == list(range(taken[0], taken[0] + len(taken)))
            periods.setdefault(experiment_id, []).extend(taken)
    assert {e: sorted(p) for e, p in periods.items()} == {
        e: list(range(1, n + 1)) for e, n in expected.items()
    }


BATCH_PROCESSES, BATCHES_PER_PROCESS = 6, 10


def allocation_worker(
    url: str, options: dict[str, Any], ids: tuple[str, str], barrier: Any, out: Any
) -> None:
    from abpilot.store.factory import open_store

    store = open_store(url, **options)
    a, b = ids
    barrier.wait()
    batches = []
    try:
        for _ in range(BATCHES_PER_PROCESS):
            batches.append(store.add_allocations([allocation(a), allocation(b), allocation(a)]))
            batches.append([store.add_allocation(allocation(b))])  # single additions interleave
    except Exception as error:  # reported to the test at once, rather than a silent exit
        out.put(f"{type(error).__name__}: {error}")
        raise
    finally:
        store.close()
    out.put(batches)


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_batches_from_several_processes_take_consecutive_periods(
    backend: str, tmp_path: Path
) -> None:
    from abpilot.store.factory import open_store

    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)  # migrates once, before the workers start
        a, b = make_experiment("a"), make_experiment("b")
        for exp in (a, b):
            store.create_experiment(exp)
        context = process_context()
        barrier, out = context.Barrier(BATCH_PROCESSES, timeout=BARRIER_SECONDS), context.Queue()
        processes = [
            context.Process(
                target=allocation_worker, args=(url, options, (a.id, b.id), barrier, out)
            )
            for _ in range(BATCH_PROCESSES)
        ]
        for process in processes:
            process.start()
        results = [out.get(timeout=240) for _ in processes]
        for process in processes:
            process.join(timeout=240)
        assert [r for r in results if isinstance(r, str)] == []  # no worker failed
        assert [p.exitcode for p in processes] == [0] * BATCH_PROCESSES
        runs = BATCH_PROCESSES * BATCHES_PER_PROCESS
        assert_consecutive(
            [batch for batches in results for batch in batches], {a.id: 2 * runs, b.id: 2 * runs}
        )
        assert [r.period for r in store.list_allocations(a.id)] == list(range(1, 2 * runs + 1))
        store.close()


class TestLeadership:
    def test_one_leader_at_a_time(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        lease = one.try_lead("recalculate", ttl_seconds=30)
        assert lease is not None
        assert two.try_lead("recalculate", ttl_seconds=30) is None
        assert one.try_lead("recalculate", ttl_seconds=30) is None
        assert two.try_lead("monitor", ttl_seconds=30) is not None
        assert lease.renew()
        lease.release()
        taken = two.try_lead("recalculate", ttl_seconds=30)
        assert taken is not None
        taken.release()


def sha256(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def datafile(revision: int, size: int = 1000) -> str:
    """A FeatureVisor-like datafile (camelCase, non-ASCII) of roughly ``size`` bytes."""
    features = [
        {"key": f"feature-{i}", "bucketBy": "userId", "description": f"Größe {i} — ✓ 日本"}
        for i in range(max(1, size // 90))
    ]
    return json.dumps({"schemaVersion": "1", "revision": str(revision), "features": features})


def put(
    store: Store, namespace: str, key: str, content: str, at: datetime | None = None
) -> Document:
    moment = at or datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    return store.put_document(namespace, key, content, sha256(content), moment)


class TestDocuments:
    def test_large_non_ascii_document_round_trips(self, store: Store) -> None:
        content = datafile(1, size=1_000_000)
        assert len(content.encode()) > 1_000_000
        at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
        key = "production/datafile-tag-all.json"
        stored = store.put_document("featurevisor", key, content, sha256(content), at)
        expected = Document("featurevisor", key, content, sha256(content), at, 1)
        assert stored == expected
        assert store.get_document("featurevisor", key) == expected

    def test_same_digest_writes_nothing(self, store: Store) -> None:
        content = datafile(1)
        first = put(store, "fv", "a.json", content, datetime(2026, 3, 1, tzinfo=UTC))
        again = put(store, "fv", "a.json", content, datetime(2026, 3, 2, tzinfo=UTC))
        assert again == first
        assert (again.version, again.updated_at) == (1, datetime(2026, 3, 1, tzinfo=UTC))
        assert store.get_document("fv", "a.json") == first

    def test_changed_digest_replaces_and_bumps_the_version(self, store: Store) -> None:
        put(store, "fv", "a.json", datafile(1), datetime(2026, 3, 1, tzinfo=UTC))
        put(store, "fv", "a.json", datafile(1), datetime(2026, 3, 2, tzinfo=UTC))
        later = datetime(2026, 3, 3, tzinfo=UTC)
        second = put(store, "fv", "a.json", datafile(2), later)
        third = put(store, "fv", "a.json", datafile(3), later + timedelta(days=1))
        assert (second.version, second.content, second.updated_at) == (2, datafile(2), later)
        assert third.version == 3
        assert store.get_document("fv", "a.json") == third

    def test_updated_at_comes_back_in_utc(self, store: Store) -> None:
        paris = datetime(2026, 3, 1, 13, 30, tzinfo=timezone(timedelta(hours=1)))
        stored = put(store, "fv", "a.json", "{}", paris)
        for document in (stored, store.get_document("fv", "a.json")):
            assert document is not None
            assert document.updated_at == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
            assert document.updated_at.utcoffset() == timedelta(0)

    def test_list_is_sorted_by_key_and_per_namespace(self, store: Store) -> None:
        keys = ["production/b.json", "B.json", "a.json", "production/a.json", "ü.json"]
        for key in keys:
            put(store, "fv", key, f"content of {key}")
        put(store, "other", "a.json", "elsewhere")
        listed = store.list_documents("fv")
        assert [d.key for d in listed] == sorted(keys)  # code point order: "B" before "a"
        assert {d.namespace for d in listed} == {"fv"}
        assert listed[0] == store.get_document("fv", "B.json")
        assert [d.content for d in store.list_documents("other")] == ["elsewhere"]
        assert store.list_documents("none") == []

    def test_names_with_separators_stay_apart(self, store: Store) -> None:
        names = [("a:b", "c"), ("a", "b:c"), ("{x}", "y"), ("%7Bx%7D", "y"), ("", "k{}:%")]
        for namespace, key in names:
            put(store, namespace, key, f"{namespace}|{key}")
        for namespace, key in names:
            document = store.get_document(namespace, key)
            assert document is not None
            assert document.content == f"{namespace}|{key}"
            assert store.list_documents(namespace) == [document]

    def test_delete(self, store: Store) -> None:
        put(store, "fv", "a.json", "{}")
        put(store, "fv", "b.json", "{}")
        assert store.delete_document("fv", "a.json")
        assert not store.delete_document("fv", "a.json")
        assert store.get_document("fv", "a.json") is None
        assert [d.key for d in store.list_documents("fv")] == ["b.json"]
        assert put(store, "fv", "a.json", "{}").version == 1

    def test_missing_document_is_none(self, store: Store) -> None:
        assert store.get_document("fv", "nope.json") is None
        assert not store.delete_document("fv", "nope.json")

    def test_deleting_an_experiment_keeps_documents(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        stored = put(store, exp.id, exp.key, "{}")
        assert store.delete_experiment(exp.id)
        assert store.get_document(exp.id, exp.key) == stored

    def test_two_clients_share_documents(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        put(one, "fv", "a.json", datafile(1))
        assert put(two, "fv", "a.json", datafile(2)).version == 2
        assert one.get_document("fv", "a.json") == two.get_document("fv", "a.json")


SUCCESS, FAILURE, NEUTRAL = (
    FeedbackOutcome.SUCCESS,
    FeedbackOutcome.FAILURE,
    FeedbackOutcome.NEUTRAL,
)
EVENING, MORNING = "time_of_day=evening|user_type=new", "time_of_day=morning|user_type=new"
T0 = datetime(2026, 4, 1, 18, 30, 0, 123456, tzinfo=UTC)


def decision(
    experiment_id: str,
    decision_id: str,
    *,
    context_key: str = EVENING,
    arm: str = "v1",
    at: datetime = T0,
    **changes: Any,
) -> Decision:
    attributes = dict(part.split("=", 1) for part in context_key.split("|"))
    record = Decision(
        id=decision_id,
        experiment_id=experiment_id,
        unit_id=f"user-{decision_id}",
        context_key=context_key,
        context=attributes,
        arm=arm,
        propensity=0.7321,
        policy="bandit",
        method="exact",
        decided_at=at,
    )
    return replace(record, **changes)


def state(context_key: str, arm: str, pulls: int, s: int, f: int, at: datetime) -> ArmState:
    return ArmState(context_key, arm, pulls, s, f, at)


class TestContextual:
    def test_decision_round_trips(self, store: Store) -> None:
        exp, other = make_experiment("a"), make_experiment("b")
        store.create_experiment(exp)
        store.create_experiment(other)
        paris = datetime(2026, 4, 1, 20, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
        context = {"ville": "Zürich — 東京", "note": 'a|b="c" {x}', "time_of_day": "evening"}
        first = decision(exp.id, "d1", context=context, at=paris, successes=5, failures=2)
        anonymous = decision(exp.id, "d2", unit_id=None, policy="control", method="fixed")
        store.record_decision(first)
        store.record_decision(anonymous)
        store.record_decision(decision(other.id, "d1", arm="control"))  # ids are per experiment
        stored = store.get_decision(exp.id, "d1")
        assert stored == replace(first, decided_at=T0, successes=0, failures=0)
        assert stored is not None
        assert stored.decided_at.utcoffset() == timedelta(0)
        assert store.get_decision(exp.id, "d2") == anonymous
        assert store.get_decision(other.id, "d1") == decision(other.id, "d1", arm="control")
        assert store.get_decision(exp.id, "nope") is None
        assert store.get_decision("nope", "d1") is None

    def test_duplicate_decision_id_is_refused_and_changes_nothing(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        first = decision(exp.id, "d1")
        store.record_decision(first)
        with pytest.raises(DuplicateKey):
            store.record_decision(decision(exp.id, "d1", context_key=MORNING, arm="control"))
        assert store.get_decision(exp.id, "d1") == first
        assert store.list_decisions(exp.id) == [first]
        assert store.get_bandit_states(exp.id) == [
            state(GLOBAL_CONTEXT, "v1", 1, 0, 0, T0),
            state(EVENING, "v1", 1, 0, 0, T0),
        ]

    def test_the_global_context_key_is_refused(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        with pytest.raises(ValidationError):
            store.record_decision(replace(decision(exp.id, "d1"), context_key=GLOBAL_CONTEXT))
        assert store.get_decision(exp.id, "d1") is None
        assert store.get_bandit_states(exp.id) == []

    def test_pulls_count_in_the_context_and_globally(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        later = T0 + timedelta(minutes=5)
        store.record_decision(decision(exp.id, "d1", arm="v1"))
        store.record_decision(decision(exp.id, "d2", arm="v1", at=later))
        store.record_decision(decision(exp.id, "d3", arm="control"))
        store.record_decision(decision(exp.id, "d4", arm="v1", context_key=MORNING))
        assert store.get_bandit_states(exp.id) == [
            state(GLOBAL_CONTEXT, "control", 1, 0, 0, T0),
            state(GLOBAL_CONTEXT, "v1", 3, 0, 0, T0),  # d4 came last, decided at T0
            state(EVENING, "control", 1, 0, 0, T0),
            state(EVENING, "v1", 2, 0, 0, later),
            state(MORNING, "v1", 1, 0, 0, T0),
        ]

    def test_feedback_counts_successes_and_failures_not_neutral(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.record_decision(decision(exp.id, "d1"))
        store.record_decision(decision(exp.id, "d2", context_key=MORNING))
        t1, t2, t3 = (T0 + timedelta(seconds=n) for n in (1, 2, 3))
        assert store.apply_feedback(exp.id, "d1", "click", SUCCESS, t1)
        assert store.apply_feedback(exp.id, "d1", "thumbs_down", FAILURE, t2)
        assert store.apply_feedback(exp.id, "d2", "thumbs_up", SUCCESS, t1)
        assert store.apply_feedback(exp.id, "d2", "rating", NEUTRAL, t3)
        assert store.get_decision(exp.id, "d1") == decision(exp.id, "d1", successes=1, failures=1)
        assert store.get_decision(exp.id, "d2") == decision(
            exp.id, "d2", context_key=MORNING, successes=1
        )
        assert store.get_bandit_states(exp.id) == [
            state(GLOBAL_CONTEXT, "v1", 2, 2, 1, t1),  # updated_at is the last one applied
            state(EVENING, "v1", 1, 1, 1, t2),
            state(MORNING, "v1", 1, 1, 0, t1),  # the neutral rating left it alone
        ]
        assert not store.apply_feedback(exp.id, "d2", "rating", SUCCESS, t3)  # counted once

    def test_the_same_event_twice_changes_nothing(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.record_decision(decision(exp.id, "d1"))
        assert store.apply_feedback(exp.id, "d1", "click", SUCCESS, T0)
        before = (store.get_decision(exp.id, "d1"), store.get_bandit_states(exp.id))
        later = T0 + timedelta(hours=1)
        assert not store.apply_feedback(exp.id, "d1", "click", SUCCESS, later)
        assert not store.apply_feedback(exp.id, "d1", "click", FAILURE, later)
        assert (store.get_decision(exp.id, "d1"), store.get_bandit_states(exp.id)) == before

    def test_events_are_per_decision_and_keep_separators(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        for decision_id in ("d", "d|x"):
            store.record_decision(decision(exp.id, decision_id))
        assert store.apply_feedback(exp.id, "d", "x|click", SUCCESS, T0)
        assert store.apply_feedback(exp.id, "d|x", "click", SUCCESS, T0)  # not "d" + "x|click"
        assert store.apply_feedback(exp.id, "d", 'ünï ["/]', SUCCESS, T0)
        assert not store.apply_feedback(exp.id, "d", 'ünï ["/]', SUCCESS, T0)
        assert [d.successes for d in store.list_decisions(exp.id)] == [2, 1]
        assert store.list_feedback(exp.id) == [
            ("d", "x|click"),
            ("d", 'ünï ["/]'),
            ("d|x", "click"),
        ]

    def test_unknown_decision_is_not_found_and_records_nothing(self, store: Store) -> None:
        exp, other = make_experiment("a"), make_experiment("b")
        store.create_experiment(exp)
        store.create_experiment(other)
        store.record_decision(decision(other.id, "d1"))
        with pytest.raises(NotFound):
            store.apply_feedback(exp.id, "d1", "click", SUCCESS, T0)
        with pytest.raises(NotFound):
            store.apply_feedback("nope", "d1", "click", NEUTRAL, T0)
        store.record_decision(decision(exp.id, "d1"))
        assert store.apply_feedback(exp.id, "d1", "click", SUCCESS, T0)
        assert store.get_bandit_states(exp.id)[0] == state(GLOBAL_CONTEXT, "v1", 1, 1, 0, T0)
        assert store.get_bandit_states(other.id)[0] == state(GLOBAL_CONTEXT, "v1", 1, 0, 0, T0)

    def test_list_decisions_since_oldest_first_ties_by_id(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        t1, t2 = T0 + timedelta(microseconds=1), T0 + timedelta(days=400)
        for decision_id, at in [("c", t2), ("b", t1), ("z", T0), ("a", t1), ("y", T0)]:
            store.record_decision(decision(exp.id, decision_id, at=at))
        store.apply_feedback(exp.id, "a", "click", SUCCESS, t2)
        assert [d.id for d in store.list_decisions(exp.id)] == ["y", "z", "a", "b", "c"]
        assert [d.id for d in store.list_decisions(exp.id, since=t1)] == ["a", "b", "c"]
        tokyo = t1.astimezone(timezone(timedelta(hours=9)))
        assert [d.id for d in store.list_decisions(exp.id, since=tokyo)] == ["a", "b", "c"]
        assert [d.id for d in store.list_decisions(exp.id, since=t2)] == ["c"]
        assert store.list_decisions(exp.id, since=t2 + timedelta(microseconds=1)) == []
        assert store.list_decisions(exp.id, since=t1)[0].successes == 1
        assert store.list_decisions("nope") == []

    def test_states_are_sorted_by_context_then_arm(self, store: Store) -> None:
        exp = make_experiment(weights=(0.25, 0.25, 0.5))
        store.create_experiment(exp)
        contexts = ["user_type=new", "a=1", "B=1", 'page=/home|q="ü\\"']
        for n, context_key in enumerate(contexts):
            for arm in ("v2", "control", "v1"):
                store.record_decision(
                    decision(exp.id, f"{n}-{arm}", context_key=context_key, arm=arm)
                )
        keys = [(s.context_key, s.arm) for s in store.get_bandit_states(exp.id)]
        assert keys == sorted(keys)
        assert keys[:3] == [
            (GLOBAL_CONTEXT, "control"),
            (GLOBAL_CONTEXT, "v1"),
            (GLOBAL_CONTEXT, "v2"),
        ]
        assert [k for k, _ in keys[3::3]] == ["B=1", "a=1", 'page=/home|q="ü\\"', "user_type=new"]
        assert {s.pulls for s in store.get_bandit_states(exp.id)[3:]} == {1}

    def test_delete_removes_decisions_feedback_and_states(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.record_decision(decision(exp.id, "d1"))
        store.apply_feedback(exp.id, "d1", "click", SUCCESS, T0)
        assert store.delete_experiment(exp.id)
        assert store.get_decision(exp.id, "d1") is None
        assert store.list_decisions(exp.id) == []
        assert store.get_bandit_states(exp.id) == []
        store.create_experiment(make_experiment(id=exp.id))
        store.record_decision(decision(exp.id, "d1"))  # the id is free again
        assert store.apply_feedback(exp.id, "d1", "click", SUCCESS, T0)  # and its event
        assert store.get_bandit_states(exp.id)[0] == state(GLOBAL_CONTEXT, "v1", 1, 1, 0, T0)

    def test_a_units_latest_decision(self, store: Store) -> None:
        """Feedback that names a unit (Bandit Selector's "user 1 gave thumbs up") goes to the
        unit's latest decision: by decision time whatever the order of recording, of equal
        times the greatest id, per experiment and unit, with its counts."""
        exp, other = make_experiment("a"), make_experiment("b")
        store.create_experiment(exp)
        store.create_experiment(other)
        t1, t2 = T0 + timedelta(microseconds=1), T0 + timedelta(hours=2)
        store.record_decision(decision(exp.id, "late", unit_id="u1", at=t2))
        store.record_decision(decision(exp.id, "early", unit_id="u1", at=t1))  # recorded after
        store.record_decision(decision(exp.id, "u2-a", unit_id="u2", at=T0))
        store.record_decision(decision(exp.id, "u2-b", unit_id="u2", at=T0))  # a tie: greatest id
        store.record_decision(decision(exp.id, "u2-0", unit_id="u2", at=T0))
        store.record_decision(decision(exp.id, "anon", unit_id=None, at=t2 + timedelta(hours=1)))
        store.record_decision(decision(other.id, "newest", unit_id="u1", at=t2 + timedelta(1)))
        store.apply_feedback(exp.id, "late", "click", SUCCESS, t2)
        latest = store.latest_unit_decision(exp.id, "u1")
        assert latest == decision(exp.id, "late", unit_id="u1", at=t2, successes=1)
        assert store.get_decision(exp.id, "late") == latest
        found = store.latest_unit_decision(exp.id, "u2")
        assert found is not None
        assert found.id == "u2-b"
        assert store.latest_unit_decision(exp.id, "user-anon") is None  # anonymous: no unit
        assert store.latest_unit_decision(exp.id, "nobody") is None
        assert store.latest_unit_decision("nope", "u1") is None
        newest = store.latest_unit_decision(other.id, "u1")
        assert newest is not None
        assert newest.id == "newest"
        store.record_decision(decision(exp.id, "later", unit_id="u1", at=t2 + timedelta(days=1)))
        moved = store.latest_unit_decision(exp.id, "u1")
        assert moved is not None
        assert moved.id == "later"

    def test_unit_ids_are_kept_exactly(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        units = ["1", "01", " 1", 'ü|é="x"', "a" * 256]
        for n, unit in enumerate(units):
            store.record_decision(decision(exp.id, f"d{n}", unit_id=unit))
        for n, unit in enumerate(units):
            found = store.latest_unit_decision(exp.id, unit)
            assert found is not None
            assert (found.id, found.unit_id) == (f"d{n}", unit)

    def test_deleting_forgets_the_units_decisions(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        store.record_decision(decision(exp.id, "d1", unit_id="u1"))
        assert store.delete_experiment(exp.id)
        assert store.latest_unit_decision(exp.id, "u1") is None
        store.create_experiment(make_experiment(id=exp.id))
        store.record_decision(decision(exp.id, "d2", unit_id="u1", at=T0 - timedelta(days=9)))
        found = store.latest_unit_decision(exp.id, "u1")
        assert found is not None
        assert found.id == "d2"

    def test_a_rating_is_kept_with_its_feedback(self, store: Store) -> None:
        exp = make_experiment()
        store.create_experiment(exp)
        for decision_id in ("d1", "d2", "d3"):
            store.record_decision(decision(exp.id, decision_id))
        assert store.apply_feedback(exp.id, "d1", "rating", SUCCESS, T0, rating=4.5)
        assert store.apply_feedback(exp.id, "d2", "rating", NEUTRAL, T0, rating=3.25)
        assert store.apply_feedback(exp.id, "d2", "click", SUCCESS, T0)  # no rating: kept
        assert not store.apply_feedback(exp.id, "d1", "rating", FAILURE, T0, rating=1.0)
        assert store.get_decision(exp.id, "d1") == decision(exp.id, "d1", successes=1, rating=4.5)
        assert [(d.rating, d.successes) for d in store.list_decisions(exp.id)] == [
            (4.5, 1),
            (3.25, 1),
            (None, 0),
        ]
        latest = store.latest_unit_decision(exp.id, "user-d2")
        assert latest is not None
        assert latest.rating == 3.25
        with pytest.raises(NotFound):
            store.apply_feedback(exp.id, "ghost", "rating", SUCCESS, T0, rating=5.0)

    def test_two_clients_see_the_same_state(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        exp = make_experiment()
        one.create_experiment(exp)
        one.record_decision(decision(exp.id, "d1"))
        assert two.apply_feedback(exp.id, "d1", "click", SUCCESS, T0)
        assert not one.apply_feedback(exp.id, "d1", "click", SUCCESS, T0)
        with pytest.raises(DuplicateKey):
            two.record_decision(decision(exp.id, "d1"))
        assert one.get_decision(exp.id, "d1") == two.get_decision(exp.id, "d1")
        assert one.get_bandit_states(exp.id) == two.get_bandit_states(exp.id)
        assert one.list_decisions(exp.id) == two.list_decisions(exp.id)
        assert [d.successes for d in two.list_decisions(exp.id)] == [1]


def test_ping(store: Store) -> None:
    store.ping()
