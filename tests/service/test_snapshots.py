"""Daily snapshots of the running experiments' counters (``abpilot.service.snapshots``), on
every store, with an injected clock: one per experiment per UTC day, cumulative, each variant's
lift and interval at that day the analysis' own on the same counts, units new per day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from abpilot.domain.inputs import EventInput
from abpilot.service import ExperimentService
from abpilot.service.snapshots import SNAPSHOT_TICK_SECONDS, Snapshots
from abpilot.store.base import EventKind, Store

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
METRICS = [{"key": "purchase"}, {"key": "revenue", "kind": "value"}]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def day_of_events(service: ExperimentService, day: int, units: int) -> None:
    """``units`` new units on ``day``; green converts more often than control."""
    events = []
    for i in range(units):
        unit = f"d{day}-u{i}"
        variant = service.get_variant_for_user("shop", unit).variant
        assert variant is not None
        events.append(EventInput(EventKind.EXPOSURE, "shop", unit))
        rate = 0.2 if variant.key == "green" else 0.1
        if (i * 7919 % 1000) / 1000 < rate:
            events.append(EventInput(EventKind.CONVERSION, "shop", unit, metric="purchase"))
            value = 10.0 + i % 7
            events.append(
                EventInput(EventKind.CONVERSION, "shop", unit, metric="revenue", value=value)
            )
    service.record_events(events)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: Store, clock: Clock) -> ExperimentService:
    made = ExperimentService(store, clock=clock, cache_seconds=0)
    made.create_experiment(
        key="shop",
        variants=[{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}],
        metrics=METRICS,
    )
    made.start_experiment("shop")
    return made


def test_one_snapshot_per_day_cumulative_with_the_analysis_lift(
    service: ExperimentService, clock: Clock
) -> None:
    snapshots = Snapshots(service)
    assert snapshots.take_if_due() == 1  # the day it starts: nothing counted yet
    for day, units in enumerate((400, 600, 500), start=1):
        day_of_events(service, day, units)
        assert snapshots.take_if_due() == 0  # today's is taken
        clock.now = START + timedelta(days=day)
        assert snapshots.take_if_due() == 1
    experiment, found = snapshots.read("shop")
    assert experiment.key == "shop"
    assert [s.day.isoformat() for s in found] == [
        "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05",
    ]  # fmt: skip
    units = [sum(v.units for v in s.variants) for s in found]
    assert units == [0, 400, 1000, 1500]
    new = [sum(v.new_units for v in s.variants) for s in found]
    assert new == [0, 400, 600, 500]
    # The last snapshot holds the counts now: the analysis' lift and interval on each metric.
    last = {v.key: v for v in found[-1].variants}
    for metric in ("purchase", "revenue"):
        analysed = {v.key: v for v in service.analyze_experiment("shop", metric=metric).variants}
        point = last["green"].metrics[metric]
        assert point.n == analysed["green"].units
        assert point.lift == pytest.approx(analysed["green"].lift, rel=1e-12)
        assert point.lift_ci == pytest.approx(analysed["green"].lift_ci, rel=1e-12)
        assert last["control"].metrics[metric].lift is None
    # An independent reference: the rates and the mean from the raw per-unit data.
    purchase = last["green"].metrics["purchase"]
    assert purchase.rate == pytest.approx(purchase.conversions / purchase.n)
    revenue = last["green"].metrics["revenue"]
    assert revenue.mean == pytest.approx(revenue.sum / revenue.n)
    assert np.isfinite(revenue.lift_ci).all()


def test_only_running_ab_tests_and_bandits_are_snapshotted(
    service: ExperimentService, clock: Clock
) -> None:
    arms = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
    service.create_experiment(key="ranking", type="interleaving", variants=arms)
    service.start_experiment("ranking")
    service.create_experiment(key="draft", variants=arms)
    service.create_experiment(key="arms", type="bandit", variants=arms)
    service.start_experiment("arms")
    service.pause_experiment("shop")
    snapshots = Snapshots(service)
    assert snapshots.take_if_due() == 1
    assert [len(snapshots.read(key)[1]) for key in ("shop", "ranking", "draft", "arms")] == [
        0, 0, 0, 1,
    ]  # fmt: skip
    assert snapshots.forget(service.get_experiment("arms").id) == 1
    assert snapshots.read("arms")[1] == []


def test_a_snapshot_document_that_cannot_be_read_is_skipped(
    service: ExperimentService, store: Store
) -> None:
    snapshots = Snapshots(service)
    snapshots.take("shop")
    experiment = service.get_experiment("shop")
    store.put_document(f"snapshots/{experiment.id}", "2026-01-01", "not json", "x", START)
    assert [s.day.isoformat() for s in snapshots.read("shop")[1]] == ["2026-03-02"]


def test_the_scheduler_of_a_process_takes_them_on_its_snapshot_lease(store: Store) -> None:
    from abpilot.service import compose
    from abpilot.settings import Settings

    services = compose.build(store, Settings(store="memory"))
    services.experiments.create_experiment(
        key="shop", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
    )
    services.experiments.start_experiment("shop")
    job = services.snapshotting
    seconds = [0.0]
    job.clock = lambda: seconds[0]  # the scheduler's monotonic clock, injected
    try:
        assert job.name == "snapshot"
        assert not job.step()  # a new leader waits one interval
        assert job.is_leader
        seconds[0] = SNAPSHOT_TICK_SECONDS
        assert job.step()
        assert len(services.snapshots.read("shop")[1]) == 1
    finally:
        job.stop()


def test_deleting_an_experiment_deletes_its_snapshots(store: Store) -> None:
    from abpilot.service import compose
    from abpilot.settings import Settings

    services = compose.build(store, Settings(store="memory"))
    made = services.experiments
    made.create_experiment(
        key="shop", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
    )
    made.start_experiment("shop")
    experiment_id = made.get_experiment("shop").id
    services.snapshots.take_if_due()
    assert store.list_documents(f"snapshots/{experiment_id}")
    made.set_status("shop", "paused")
    made.delete_experiment("shop")
    assert store.list_documents(f"snapshots/{experiment_id}") == []
