"""Daily snapshots go with their experiment through export and import, on every backend: the
same days, the same cumulative figures (checked against counts of the events sent), the same
documents; a file with a bad snapshot row is refused naming the row, before anything is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from abpilot.domain.errors import ValidationError
from abpilot.domain.inputs import EventInput
from abpilot.service import ExperimentService
from abpilot.service.snapshots import Snapshots
from abpilot.store.base import EventKind, Store
from abpilot.store.memory import MemoryStore

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


Sent = dict[str, tuple[list[str], list[float]]]  # variant -> (units, revenue values)


def three_days(service: ExperimentService, clock: Clock) -> list[Sent]:
    """An A/B test with a snapshot at the end of each of three days; per day, per variant, the
    units that had come so far and the revenue values they had sent (one per converting unit)."""
    service.create_experiment(
        key="shop",
        variants=[{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}],
        metrics=[{"key": "revenue", "kind": "value"}],
    )
    service.start_experiment("shop")
    snapshots = Snapshots(service)
    sent: Sent = {}
    days = []
    for day in range(3):
        events = []
        for i in range(12 + 5 * day):
            unit = f"d{day}-u{i}"
            variant = service.get_variant_for_user("shop", unit).variant
            assert variant is not None
            events.append(EventInput(EventKind.EXPOSURE, "shop", unit))
            units, values = sent.setdefault(variant.key, ([], []))
            units.append(unit)
            if i % 3 == day % 3:
                value = 2.5 + i
                events.append(
                    EventInput(EventKind.CONVERSION, "shop", unit, metric="revenue", value=value)
                )
                values.append(value)
        service.record_events(events)
        assert snapshots.take("shop")
        days.append({k: (list(u), list(v)) for k, (u, v) in sent.items()})
        clock.now += timedelta(days=1)
    return days


def test_snapshots_survive_export_and_import_on_every_backend(
    two_stores: tuple[Store, Store],
) -> None:
    source, target = two_stores
    clock = Clock()
    origin = ExperimentService(source, clock=clock, cache_seconds=0)
    days = three_days(origin, clock)
    document = origin.transfer.export()
    (entry,) = document["experiments"]
    assert [s["date"] for s in entry["snapshots"]] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    for sent, snapshot in zip(days, entry["snapshots"], strict=True):
        assert {row["key"] for row in snapshot["variants"]} == {"control", "green"}
        for row in snapshot["variants"]:
            units, values = sent[row["key"]]
            assert row["units"] == len(units)
            revenue = row["metrics"]["revenue"]
            assert revenue["conversions"] == len(values)
            assert revenue["sum"] == pytest.approx(np.sum(values))
            assert revenue["sum_squares"] == pytest.approx(np.sum(np.square(values)))

    experiment_id = entry["definition"]["id"]
    # A snapshot left behind in the target by an earlier life of the same id is not kept.
    target.put_document(f"snapshots/{experiment_id}", "2026-01-01", "{}", "stale", START)
    copy = ExperimentService(target, clock=clock, cache_seconds=0)
    assert copy.transfer.import_(document).imported == ["shop"]

    def stored(store: Store) -> list[tuple[str, str, str]]:
        found = store.list_documents(f"snapshots/{experiment_id}")
        return [(d.key, d.content, d.digest) for d in found]

    assert stored(target) == stored(source)
    assert Snapshots(copy).read("shop") == Snapshots(origin).read("shop")
    again = copy.transfer.export()
    assert {**again, "exported_at": None} == {**document, "exported_at": None}


@pytest.fixture(scope="module")
def exported() -> dict[str, Any]:
    clock = Clock()
    origin = ExperimentService(MemoryStore(), clock=clock, cache_seconds=0)
    three_days(origin, clock)
    return origin.transfer.export()


def broken(document: dict[str, Any], change: str) -> dict[str, Any]:
    edited: dict[str, Any] = json.loads(json.dumps(document))
    snapshots = edited["experiments"][0]["snapshots"]
    if change == "variant":
        snapshots[0]["variants"][0]["key"] = "ghost"
    elif change == "negative":
        snapshots[1]["variants"][1]["units"] = -3
    elif change == "day_twice":
        snapshots[2]["date"] = snapshots[1]["date"]
        snapshots[2]["taken_at"] = snapshots[1]["taken_at"]
    elif change == "other_day":
        snapshots[0]["taken_at"] = snapshots[1]["taken_at"]
    elif change == "variant_twice":
        snapshots[0]["variants"][1]["key"] = snapshots[0]["variants"][0]["key"]
    elif change == "extra":
        snapshots[0]["variants"][0]["metrics"]["revenue"]["mean"] = 1.0
    elif change == "as_document":
        edited["documents"].append(
            {
                "namespace": f"snapshots/{edited['experiments'][0]['definition']['id']}",
                "key": "2026-03-09",
                "content": "{}",
                "digest": "x",
                "updated_at": "2026-03-09T00:00:00Z",
            }
        )
    return edited


# Validation reads only the file and runs before the first write, the same code on every
# backend: the refusals are checked on the memory store (the round trip above runs on all).
@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ("variant", "experiments[0].snapshots[0].variants[0].key", "unknown variant 'ghost'"),
        ("negative", "experiments[0].snapshots[1].variants[1].units", "greater than or equal"),
        ("day_twice", "experiments[0].snapshots", "appears twice"),
        ("other_day", "experiments[0].snapshots[0].taken_at", "taken on that day"),
        ("variant_twice", "experiments[0].snapshots[0].variants", "appears twice"),
        ("extra", "experiments[0].snapshots[0].variants[0].metrics.revenue.mean", "Extra"),
        ("as_document", "documents[0].namespace", "experiments[].snapshots"),
    ],
)
def test_a_bad_snapshot_row_is_refused_naming_it_and_nothing_is_written(
    exported: dict[str, Any], change: str, field: str, message: str
) -> None:
    target = MemoryStore()
    copy = ExperimentService(target, clock=Clock())
    with pytest.raises(ValidationError) as refused:
        copy.transfer.import_(broken(exported, change))
    assert refused.value.field == field
    assert message in refused.value.message
    assert copy.list_experiments() == []
    experiment_id = exported["experiments"][0]["definition"]["id"]
    assert target.list_documents(f"snapshots/{experiment_id}") == []


def test_a_file_from_before_snapshots_were_exported_still_imports(
    exported: dict[str, Any],
) -> None:
    older: dict[str, Any] = json.loads(json.dumps(exported))
    del older["experiments"][0]["snapshots"]
    copy = ExperimentService(MemoryStore(), clock=Clock())
    assert copy.transfer.import_(older).imported == ["shop"]
    assert Snapshots(copy).read("shop")[1] == []
