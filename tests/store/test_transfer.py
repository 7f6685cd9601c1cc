"""Export and import keep everything: on every backend, a restored experiment reads back exactly as
the original, and later events count on it exactly as they would have on the original."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from abpilot.domain.errors import DuplicateKey, ValidationError
from abpilot.domain.experiment import Experiment
from abpilot.service.allocation import DailyInput
from abpilot.service.core import ExperimentService
from abpilot.service.events import EventInput
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
from abpilot.store.redis import RedisStore
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
    store.apply_feedback(e, "d1", "stars", FeedbackOutcome.FAILURE, T0, rating=1.5)
    return exp


def dump(store: Store, exp: Experiment) -> ExperimentState:
    stored = store.get_experiment(exp.id)
    assert stored is not None
    return ExperimentService(store).transfer.dump(stored)


def same(store: Store, a: ExperimentState, b: ExperimentState) -> bool:
    """Equal; Redis without a dedupe window keeps no claim times (its ids sit in one set, read
    as claimed at the last event time), so there only the ids are compared."""
    if isinstance(store, RedisStore) and store.event_id_retention_days == 0:
        a, b = (
            dataclasses.replace(
                s,
                units=dataclasses.replace(s.units, event_ids=dict.fromkeys(s.units.event_ids, T0)),
            )
            for s in (a, b)
        )
    return a == b


def test_a_restored_experiment_reads_back_exactly(store: Store) -> None:
    reference = MemoryStore()
    exp = record(reference)
    original = dump(reference, exp)

    store.restore_experiment(original)

    assert same(store, dump(store, exp), original)
    assert store.get_experiment_id("checkout") == exp.id
    assert [e.id for e in store.list_experiments()] == [exp.id]


def test_what_a_store_recorded_survives_the_trip_out(store: Store) -> None:
    exp = record(store)
    copy = MemoryStore()
    copy.restore_experiment(dump(store, exp))
    assert same(store, dump(copy, exp), dump(store, exp))


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
    # Feedback by unit finds the restored decisions: u1's is d1, with its rating.
    restored = store.latest_unit_decision(e, "u1")
    assert restored == reference.latest_unit_decision(e, "u1")
    assert restored is not None
    assert (restored.id, restored.rating) == ("d1", 1.5)
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
    assert same(store, dump(store, state.experiment), state)


# every experiment type, export -> import -> export, on every backend ------------------------------

TYPES = ["ab_test", "bandit", "contextual_bandit", "interleaving"]
TWO_ARMS = [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]


def populate(service: ExperimentService, kind: str) -> str:
    """An experiment of type ``kind`` with everything that type records."""
    key = f"the-{kind.replace('_', '-')}"
    if kind == "ab_test":
        service.create_experiment(
            key=key,
            variants=TWO_ARMS,
            metrics=[{"key": "conversion"}, {"key": "revenue", "kind": "value"}],
        )
        service.start_experiment(key)
        events = []
        for n in range(30):
            unit = f"u{n}"
            service.get_variant_for_user(key, unit)
            events.append(EventInput(EventKind.EXPOSURE, key, unit, event_id=f"x{n}"))
            if n % 3 == 0:
                events.append(EventInput(EventKind.CONVERSION, key, unit, metric="conversion"))
                events.append(
                    EventInput(EventKind.CONVERSION, key, unit, metric="revenue", value=n / 4)
                )
        events.append(EventInput(EventKind.CONVERSION, key, variant="treatment", value=1.0))
        service.record_events(events)
    elif kind == "bandit":
        service.create_experiment(
            key=key,
            type="bandit",
            variants=TWO_ARMS,
            settings={"bandit": {"min_exposures": 100}},
        )
        service.start_experiment(key)
        today = service.clock().date()
        for days_ago, control, treatment in ((3, 30, 60), (2, 150, 20), (1, 20, 160)):
            day = today - timedelta(days=days_ago)
            rows = [DailyInput("control", 1000, control), DailyInput("treatment", 1000, treatment)]
            service.record_daily_metrics(key, day=day, metrics=rows)
            assert service.recalculate(key).status == "updated"
            service.get_variant_for_user(key, f"unit-{days_ago}")  # assigned in that period
        assert len(service.store.list_allocations(service.get_experiment(key).id)) == 3
    elif kind == "contextual_bandit":
        service.create_experiment(
            key=key,
            type="contextual_bandit",
            variants=TWO_ARMS,
            settings={
                "contextual": {
                    "attributes": {"device": ["mobile", "desktop"]},
                    "holdout": 0.2,
                    "control": {"weights": {"control": 0.5, "treatment": 0.5}},
                }
            },
        )
        service.start_experiment(key)
        for n in range(20):
            device = "mobile" if n % 2 else "desktop"
            decided = service.contextual.decide(key, unit_id=f"u{n}", context={"device": device})
            if n % 3 == 0:
                service.contextual.feedback(key, decision_id=decided.decision_id, event="click")
    else:
        service.create_experiment(key=key, type="interleaving", variants=TWO_ARMS)
        service.start_experiment(key)
        for n in range(6):
            shown = service.interleaving.interleave(
                key, unit_id=f"u{n}", ranking_a=["a", "b", "c"], ranking_b=["c", "d", "a"]
            )
            service.interleaving.record_clicks(
                key, impression_id=shown.impression_id, items=list(shown.items[: n % 3])
            )
    return key


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_survives_export_and_import_into_a_fresh_store_of_its_backend(
    two_stores: tuple[Store, Store], kind: str
) -> None:
    source, target = two_stores
    clock = lambda: T0  # noqa: E731 - a fixed moment: decisions do not expire, windows stay
    origin = ExperimentService(source, clock=clock)
    key = populate(origin, kind)
    first = origin.transfer.export()
    (entry,) = first["experiments"]
    if kind == "interleaving":
        assert {d["arm"] for d in entry["decisions"]} == {"impression"}
        assert entry["feedback"]
    if kind == "contextual_bandit":
        assert entry["decisions"]
        assert entry["feedback"]
    if kind == "bandit":
        assert len(entry["allocations"]) == 3
        assert len(entry["daily_metrics"]) == 6

    copy = ExperimentService(target, clock=clock)
    assert copy.transfer.import_(first).imported == [key]
    again = copy.transfer.export()
    assert {**again, "exported_at": None} == {**first, "exported_at": None}
    if kind == "interleaving":
        assert copy.interleaving.analyse(key) == origin.interleaving.analyse(key)
    elif kind == "contextual_bandit":
        assert copy.contextual.stats(key) == origin.contextual.stats(key)
    else:
        assert copy.analyze_experiment(key) == origin.analyze_experiment(key)


@pytest.mark.parametrize(
    ("where", "text"),
    [
        (("assignments", 0, 0), "unit\x00"),
        (("decisions", 0, "context", "time_of_day"), "eve\udfffning"),
    ],
)
def test_an_import_file_with_text_no_store_can_hold_is_refused_naming_it(
    two_stores: tuple[Store, Store], where: tuple[Any, ...], text: str
) -> None:
    """NUL (PostgreSQL refuses it) or a lone surrogate anywhere in an edited file is a
    ValidationError naming the place, before anything is written, on every backend."""
    source, target = two_stores
    origin = ExperimentService(source, clock=lambda: T0)
    kind = "ab_test" if where[0] == "assignments" else "contextual_bandit"
    populate(origin, kind)
    document = origin.transfer.export()
    node: Any = document["experiments"][0]
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = text
    copy = ExperimentService(target, clock=lambda: T0)
    with pytest.raises(ValidationError) as refused:
        copy.transfer.import_(document)
    assert refused.value.field == "experiments[0]." + ".".join(str(s) for s in where).replace(
        ".0", "[0]"
    )
    assert copy.list_experiments() == []
