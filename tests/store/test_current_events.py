"""``apply_current_events``: counting only while each definition is the one the events were
resolved against, and a conversion that needs an assignment refused in the counting step."""

from __future__ import annotations

from dataclasses import replace

import pytest

from abpilot.domain.errors import DefinitionChanged, UnitNotAssigned
from abpilot.domain.experiment import ExperimentStatus
from abpilot.store.base import EventKind, EventRecord, Store
from tests.factories import make_experiment


def exposures(experiment_id: str, *units: str) -> list[EventRecord]:
    return [EventRecord(EventKind.EXPOSURE, experiment_id, "control", u) for u in units]


def total_exposures(store: Store, experiment_id: str) -> int:
    return sum(c.exposures for c in store.get_counters(experiment_id).values())


def test_counts_while_the_definition_is_the_one_read(store: Store) -> None:
    exp = make_experiment("current")
    store.create_experiment(exp)
    done = store.apply_current_events(exposures(exp.id, "a", "b"), {exp.id: exp.version})
    assert (done.applied, total_exposures(store, exp.id)) == (2, 2)


def test_a_changed_definition_counts_nothing(store: Store) -> None:
    exp = make_experiment("changed")
    store.create_experiment(exp)
    store.apply_events(exposures(exp.id, "known"))
    ended = replace(exp, status=ExperimentStatus.COMPLETED, version=exp.version + 1)
    store.update_experiment(ended, expected_version=exp.version)
    for units in (("new",), ("known",), ("known", "new")):  # a guess, a read, both
        with pytest.raises(DefinitionChanged) as refused:
            store.apply_current_events(exposures(exp.id, *units), {exp.id: exp.version})
        assert refused.value.experiment_id == exp.id
    assert total_exposures(store, exp.id) == 1
    assert store.get_assignments(exp.id, ["new"]) == {}


def test_a_deleted_definition_counts_nothing(store: Store) -> None:
    exp = make_experiment("gone")
    store.create_experiment(exp)
    store.delete_experiment(exp.id)
    with pytest.raises(DefinitionChanged):
        store.apply_current_events(exposures(exp.id, "a"), {exp.id: exp.version})
    assert store.get_counters(exp.id) == {}


def test_a_conversion_needing_an_assignment_is_refused_without_one(store: Store) -> None:
    exp = make_experiment("needs")
    store.create_experiment(exp)
    store.apply_events(exposures(exp.id, "seen"))

    def conversion(unit: str) -> EventRecord:
        return EventRecord(
            EventKind.CONVERSION, exp.id, "", unit, "revenue", 2.0, needs_assignment=True
        )

    batch = [*exposures(exp.id, "other"), conversion("seen"), conversion("stranger")]
    for attempt in range(2):  # the second after a batch that guessed right
        with pytest.raises(UnitNotAssigned) as refused:
            store.apply_current_events(batch, {exp.id: exp.version})
        assert refused.value.unit == (exp.id, "stranger"), attempt
    assert total_exposures(store, exp.id) == 1
    assert store.get_assignments(exp.id, ["other"]) == {}
    # An exposure earlier in the batch assigns the unit; a stored assignment does too.
    batch = [*exposures(exp.id, "stranger"), conversion("stranger"), conversion("seen")]
    assert store.apply_current_events(batch, {exp.id: exp.version}).applied == 3
    counted = store.get_counters(exp.id)["control"].metrics["revenue"]
    assert (counted.count, counted.units, counted.sum) == (2, 2, 4.0)
