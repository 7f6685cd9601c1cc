"""Export and import keep everything: on every backend, a restored experiment reads back exactly as
the original, and later events count on it exactly as they would have on the original."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from abpilot.domain.errors import DuplicateKey
from abpilot.domain.experiment import Experiment
from abpilot.service.core import ExperimentService
from abpilot.store.base import (
    AllocationRecord,
    DailyRow,
    Decision,
    EventKind,
    EventRecord,
    FeedbackOutcome,
    Store,
)
from abpilot.store.memory import MemoryStore
from abpilot.store.state import ExperimentState
from tests.factories import make_experiment

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def exposure(
    exp: str,
    variant: str,
    unit: str | None,
    event_id: str | None,
    period: int = 0,
    at: datetime | None = T0,
) -> EventRecord:
    return EventRecord(
        EventKind.EXPOSURE,
        exp,
        variant,
        unit_id=unit,
        event_id=event_id,
        period=period,
        received_at=at,
    )


def conversion(
    exp: str,
    variant: str,
    unit: str | None,
    metric: str,
    value: float,
    event_id: str | None = None,
    period: int = 0,
) -> EventRecord:
    return EventRecord(
        EventKind.CONVERSION,
        exp,
        variant,
        unit,
        metric,
        value,
        event_id,
        period,
        received_at=T0 + timedelta(minutes=5),
    )


def record(store: Store, key: str = "checkout") -> Experiment:
    """An experiment with something in every part of its recorded state."""
    exp = make_experiment(key)
    store.create_experiment(exp)
    e = exp.id
    for n in range(6):
        store.assign(e, f"u{n}", "control" if n % 2 else "v1", 0)
    store.add_allocation(
        AllocationRecord(
            e,
            0,
            T0,
            {"control": 0.3, "v1": 0.7},
            "monte_carlo",
            2**32 - 1,
            "recalculate",
            {"inputs": {"control": [10, 2]}, "window_days": 14},
        )
    )
    store.apply_events(
        [
            exposure(e, "v1", "u0", "ev-1"),
            exposure(e, "control", "u1", "ev-2"),
            exposure(e, "v1", "u0", "ev-3"),
            exposure(e, "v1", "late|unit=é", "ev-4", period=1),  # assigned by its exposure
            exposure(e, "control", None, None, period=1),
            conversion(e, "v1", "u0", "revenue", 12.5, "ev-5"),
            conversion(e, "v1", "u0", "revenue", 0.1),
            conversion(e, "control", "u1", "conversion", 1.0, "ev-6"),
            conversion(e, "control", None, "revenue", 3.25, period=1),
        ]
    )
    store.record_daily_metrics(
        e,
        date(2026, 2, 27),
        [
            DailyRow(date(2026, 2, 27), "control", 1000, 31),
            DailyRow(date(2026, 2, 27), "v1", 990, 40),
        ],
        '{"date": "2026-02-27"}',
        T0 - timedelta(days=2),
    )
    store.record_daily_metrics(
        e,
        date(2026, 2, 27),
        [DailyRow(date(2026, 2, 27), "v1", 995, 41)],
        '{"again": true}',
        T0 - timedelta(days=1),
    )
    for n, (context, arm) in enumerate(
        [("device=mobile", "control"), ("device=desktop", "v1"), ("device=mobile", "v1")]
    ):
        store.record_decision(
            Decision(
                f"d{n}",
                e,
                f"u{n}",
                context,
                {"device": context.split("=")[1]},
                arm,
                0.25 + n / 10,
                "bandit",
                "exact",
                T0 + timedelta(seconds=n),
            )
        )
    store.apply_feedback(e, "d0", "click", FeedbackOutcome.SUCCESS, T0 + timedelta(hours=1))
    store.apply_feedback(e, "d1", "bounce/quick", FeedbackOutcome.FAILURE, T0 + timedelta(hours=2))
    store.apply_feedback(e, "d2", "view", FeedbackOutcome.NEUTRAL, T0 + timedelta(hours=3))
    return exp


def dump(store: Store, exp: Experiment) -> ExperimentState:
    stored = store.get_experiment(exp.id)
    assert stored is not None
    return ExperimentService(store).transfer.dump(stored)


def test_a_restored_experiment_reads_back_exactly(store: Store) -> None:
    reference = MemoryStore()
    exp = record(reference)
    original = dump(reference, exp)

    store.restore_experiment(original)

    assert dump(store, exp) == original
    assert store.get_experiment_id("checkout") == exp.id
    assert [e.id for e in store.list_experiments()] == [exp.id]


def test_what_a_store_recorded_survives_the_trip_out(store: Store) -> None:
    exp = record(store)
    copy = MemoryStore()
    copy.restore_experiment(dump(store, exp))
    assert dump(copy, exp) == dump(store, exp)


def test_later_events_count_as_they_would_have_on_the_original(store: Store) -> None:
    reference = MemoryStore()
    exp = record(reference)
    store.restore_experiment(dump(reference, exp))
    e = exp.id
    later = [
        exposure(e, "v1", "u0", "ev-1"),  # a retry of a counted event: a duplicate
        exposure(e, "control", "u1", "ev-new"),  # an exposed unit: not unique again
        exposure(e, "v1", "u2", "ev-new-2"),  # assigned, first exposure: unique
        conversion(e, "v1", "u0", "revenue", 2.0, "ev-5"),  # duplicate
        conversion(e, "v1", "u0", "revenue", 4.0),  # grows sum_squares from u0's total
        conversion(e, "control", "u1", "conversion", 1.0),  # a converting unit: not new
    ]
    assert store.apply_events(later) == reference.apply_events(later)
    assert store.assign(e, "u3", "v1") == reference.assign(e, "u3", "v1")  # first one wins
    assert store.get_period_counters(e) == reference.get_period_counters(e)
    store.apply_feedback(e, "d0", "click", FeedbackOutcome.SUCCESS, T0)  # applied before
    assert store.get_bandit_states(e) == reference.get_bandit_states(e)
    added = store.add_allocation(
        AllocationRecord(
            e, 0, T0 + timedelta(days=1), {"control": 0.5, "v1": 0.5}, "exact", 1, "recalculate"
        )
    )
    assert added.period == 2


def test_a_taken_id_or_key_is_refused_and_nothing_is_written(store: Store) -> None:
    reference = MemoryStore()
    state = dump(reference, record(reference))
    other = make_experiment("checkout")
    store.create_experiment(other)
    with pytest.raises(DuplicateKey):
        store.restore_experiment(state)  # same key, other id
    assert store.get_experiment(state.experiment.id) is None
    assert store.get_unit_state(state.experiment.id).assignments == {}
    assert store.get_daily_metrics(state.experiment.id) == []

    store.delete_experiment(other.id)
    store.restore_experiment(state)
    with pytest.raises(DuplicateKey):
        store.restore_experiment(state)  # same id
    assert dump(store, state.experiment) == state
