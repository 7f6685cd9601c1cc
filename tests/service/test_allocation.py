"""Batched ``recalculate_all`` gives what ``recalculate`` gives one experiment at a time.

Two services on two empty stores of the same backend get the same 50 running bandits and the same
data, on a fixed clock. One recalculates them all at once; the other calls ``recalculate`` for
each in turn, reporting a failure the way ``recalculate_all`` always has. Outcomes and stored
histories must then be equal.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import abpilot
from abpilot.domain.errors import AbpilotError, StoreUnavailable
from abpilot.domain.experiment import ExperimentStatus, ExperimentType
from abpilot.service import ExperimentService
from abpilot.service.allocation import DailyInput
from abpilot.store.base import AllocationRecord, EventKind, Store
from abpilot.store.factory import open_store
from tests.conftest import BACKENDS, BARRIER_SECONDS, StoreFactory, backend_url

MOMENT = datetime(2026, 5, 1, 12, tzinfo=UTC)
ARMS = ("control", "b", "c")
BANDITS = 50
BROKEN = 7  # its stored definition asks for a floor too large for three arms
Twins = tuple[ExperimentService, ExperimentService]


@contextlib.contextmanager
def twin_services(backend: str, tmp_path: Path) -> Iterator[Twins]:
    """Two services, each on its own empty store of ``backend``, with the same fixed clock."""
    with contextlib.ExitStack() as stack:
        services = []
        for name in ("batched", "single"):
            folder = tmp_path / name
            folder.mkdir()
            url, options = stack.enter_context(backend_url(backend, folder))
            store = open_store(url, **options)
            stack.callback(store.close)
            services.append(ExperimentService(store, clock=lambda: MOMENT))
        yield services[0], services[1]


@pytest.fixture(params=BACKENDS)
def twins(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Twins]:
    with twin_services(request.param, tmp_path) as services:
        yield services


def events(key: str, counts: dict[str, tuple[int, int]]) -> list[abpilot.EventInput]:
    """Event-level exposures and conversions: variant -> (exposures, conversions)."""
    found = []
    for variant, (exposures, conversions) in counts.items():
        found += [abpilot.EventInput(EventKind.EXPOSURE, key, variant=variant)] * exposures
        found += [abpilot.EventInput(EventKind.CONVERSION, key, variant=variant)] * conversions
    return found


def fill(service: ExperimentService) -> list[str]:
    """50 running bandits in several states, plus experiments ``recalculate_all`` skips;
    returns the running bandits' keys in the order they were created."""
    variants = [{"key": k, "weight": w} for k, w in zip(ARMS, (0.3, 0.3, 0.4), strict=True)]
    keys = []
    for i in range(BANDITS):
        key = f"bandit-{i:02d}"
        keys.append(key)
        service.create_experiment(key=key, type="bandit", variants=variants)
        service.start_experiment(key)
        if i % 5 == 0:  # burn-in: too few exposures, the configured weights stay
            service.record_events(events(key, dict.fromkeys(ARMS, (10, 1))))
        elif i % 5 == 1:  # daily intake
            service.record_daily_metrics(
                key,
                day=MOMENT.date() - timedelta(days=1),
                metrics=[DailyInput(a, 1_000, 30 + 10 * n + i) for n, a in enumerate(ARMS)],
            )
        else:  # events, a different leader each time
            counts = {a: (150 + i, 5 + (i * (n + 1)) % 23) for n, a in enumerate(ARMS)}
            service.record_events(events(key, counts))
        if i % 10 == 3:  # already recalculated: more data moves it to period 2
            service.recalculate(key)
            service.record_events(events(key, {"control": (200, 40)}))
        if i % 10 == 4:  # already recalculated, nothing new since: unchanged
            service.recalculate(key)
    broken = service.get_experiment(keys[BROKEN])
    settings = {"bandit": {"min_weight": 0.5}}
    service.store.update_experiment(
        replace(broken, settings=settings, version=broken.version + 1),
        expected_version=broken.version,
    )
    service.create_experiment(key="plain-ab", variants=variants)
    service.start_experiment("plain-ab")
    service.create_experiment(key="paused-bandit", type="bandit", variants=variants)
    service.start_experiment("paused-bandit")
    service.pause_experiment("paused-bandit")
    return keys


def running_bandits(service: ExperimentService) -> list[str]:
    """Keys in the order ``recalculate_all`` takes them (all were created at the same moment,
    so the store orders them by id)."""
    running = service.store.list_experiments(ExperimentStatus.RUNNING)
    return [e.key for e in running if e.type is ExperimentType.BANDIT]


def one_by_one(service: ExperimentService, keys: list[str]) -> list[tuple[Any, ...]]:
    """``recalculate`` for each key in turn, a failure reported as ``recalculate_all`` does."""
    outcomes: list[tuple[Any, ...]] = []
    for key in keys:
        try:
            o = service.recalculate(key)
            outcomes.append((o.key, o.status, o.period, o.error))
        except (AbpilotError, ArithmeticError, ValueError) as error:
            outcomes.append((key, "failed", None, str(error)))
    return outcomes


def histories(service: ExperimentService, keys: list[str]) -> dict[str, list[AllocationRecord]]:
    """Every stored weight change per key, without the (store-specific) experiment id."""
    found = {}
    for key in keys:
        experiment_id = service.store.get_experiment_id(key)
        assert experiment_id is not None
        found[key] = [
            replace(r, experiment_id="") for r in service.store.list_allocations(experiment_id)
        ]
    return found


@pytest.mark.parametrize("chunk_size", [500, 7])
def test_recalculate_all_equals_recalculate_one_by_one(twins: Twins, chunk_size: int) -> None:
    batched, single = twins
    batched.allocator.chunk_size = chunk_size  # 7: several chunks, the last one short
    keys = fill(batched)
    assert fill(single) == keys
    outcomes = [(o.key, o.status, o.period, o.error) for o in batched.recalculate_all()]
    assert [key for key, *_ in outcomes] == running_bandits(batched)
    assert outcomes == one_by_one(single, [key for key, *_ in outcomes])
    statuses = {status for _, status, _, _ in outcomes}
    assert statuses == {"updated", "unchanged", "failed"}
    assert [key for key, status, _, _ in outcomes if status == "failed"] == [keys[BROKEN]]
    assert {period for _, _, period, _ in outcomes} == {None, 1, 2}
    assert histories(batched, keys) == histories(single, keys)
    sources = {r.source for h in histories(batched, keys).values() for r in h}
    assert sources == {"daily", "events"}
    # A second round changes nothing anywhere.
    again = [(o.key, o.status, o.period, o.error) for o in batched.recalculate_all()]
    assert again == one_by_one(single, [key for key, *_ in again])
    assert histories(batched, keys) == histories(single, keys)


def failing_additions(store: Store, monkeypatch: pytest.MonkeyPatch, experiment_id: str) -> None:
    """``add_allocation`` of one experiment fails as an unreachable store would."""
    original = store.add_allocation

    def add_allocation(record: AllocationRecord, **options: Any) -> AllocationRecord:
        if record.experiment_id == experiment_id:
            raise StoreUnavailable("simulated outage")
        return original(record, **options)

    monkeypatch.setattr(store, "add_allocation", add_allocation)


def test_a_failed_batch_write_is_retried_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with twin_services("memory", tmp_path) as (batched, single):
        keys = fill(batched)
        fill(single)
        victim = keys[12]
        for service in (batched, single):
            failing_additions(service.store, monkeypatch, service.get_experiment(victim).id)

        def add_allocations(records: list[AllocationRecord], **options: Any) -> Any:
            raise StoreUnavailable("simulated outage")

        monkeypatch.setattr(batched.store, "add_allocations", add_allocations)
        outcomes = [(o.key, o.status, o.period, o.error) for o in batched.recalculate_all()]
        assert outcomes == one_by_one(single, [key for key, *_ in outcomes])
        assert (victim, "failed", None, "simulated outage") in outcomes
        assert histories(batched, keys) == histories(single, keys)


def test_a_batch_stored_without_an_answer_is_not_stored_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with twin_services("memory", tmp_path) as (batched, single):
        keys = fill(batched)
        fill(single)
        original = batched.store.add_allocations

        def add_allocations(records: list[AllocationRecord], **options: Any) -> Any:
            original(records, **options)
            raise StoreUnavailable("connection lost before the answer came")

        monkeypatch.setattr(batched.store, "add_allocations", add_allocations)
        outcomes = [(o.key, o.status, o.period, o.error) for o in batched.recalculate_all()]
        assert outcomes == one_by_one(single, [key for key, *_ in outcomes])
        assert histories(batched, keys) == histories(single, keys)


def test_a_failed_batch_read_is_retried_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with twin_services("memory", tmp_path) as (batched, single):
        keys = fill(batched)
        fill(single)

        def get_counters_many(ids: list[str]) -> dict[str, Any]:
            raise StoreUnavailable("simulated outage")

        monkeypatch.setattr(batched.store, "get_counters_many", get_counters_many)
        outcomes = [(o.key, o.status, o.period, o.error) for o in batched.recalculate_all()]
        assert outcomes == one_by_one(single, [key for key, *_ in outcomes])
        assert histories(batched, keys) == histories(single, keys)


class WriteAfter:
    """A worker's store where ``before_write`` runs just before each weight change is written:
    the other worker's recalculation, landing between this one's read and its write."""

    def __init__(self, store: Store, before_write: Callable[[], object]) -> None:
        self._store, self._before_write = store, [before_write]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def add_allocation(self, record: AllocationRecord, **options: Any) -> AllocationRecord:
        self._other_worker_first()
        return self._store.add_allocation(record, **options)

    def add_allocations(self, records: list[AllocationRecord], **options: Any) -> Any:
        self._other_worker_first()
        return self._store.add_allocations(records, **options)

    def _other_worker_first(self) -> None:
        if self._before_write:
            self._before_write.pop()()


def two_workers(store_factory: StoreFactory) -> tuple[ExperimentService, ExperimentService]:
    one = ExperimentService(store_factory(), clock=lambda: MOMENT)
    later = MOMENT + timedelta(seconds=1)  # the same day, but not the same moment
    two = ExperimentService(store_factory(), clock=lambda: later)
    variants = [{"key": k, "weight": w} for k, w in zip(ARMS, (0.3, 0.3, 0.4), strict=True)]
    one.create_experiment(key="ads", type="bandit", variants=variants)
    one.start_experiment("ads")
    return one, two


def post_day(service: ExperimentService, days_ago: int, clicks: tuple[int, int, int]) -> None:
    service.record_daily_metrics(
        "ads",
        day=MOMENT.date() - timedelta(days=days_ago),
        metrics=[DailyInput(a, 1_000, c) for a, c in zip(ARMS, clicks, strict=True)],
    )


@pytest.mark.parametrize("batched", [False, True], ids=["recalculate", "recalculate_all"])
def test_a_worker_that_loses_the_race_to_recalculate_reports_unchanged(
    store_factory: StoreFactory, batched: bool
) -> None:
    one, two = two_workers(store_factory)
    post_day(one, 1, (30, 60, 40))
    winner: list[Any] = []
    one.allocator.store = WriteAfter(one.store, lambda: winner.append(two.recalculate("ads")))
    outcomes = one.recalculate_all() if batched else [one.recalculate("ads")]
    assert [(o.status, o.period, o.error) for o in outcomes] == [("unchanged", None, None)]
    assert [(o.status, o.period) for o in winner] == [("updated", 1)]
    assert [r.period for r in two.store.list_allocations(one.get_experiment("ads").id)] == [1]


@pytest.mark.parametrize("batched", [False, True], ids=["recalculate", "recalculate_all"])
def test_two_workers_recalculating_at_once_store_one_period(
    store_factory: StoreFactory, batched: bool
) -> None:
    one, two = two_workers(store_factory)
    for r in range(6):
        # Yesterday's figures again, with the other leader: new weights each round.
        post_day(one, 1, (30, 60, 40) if r % 2 else (60, 30, 40))
        barrier = threading.Barrier(2, timeout=BARRIER_SECONDS)

        def recalculate(worker: ExperimentService, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            outcomes = worker.recalculate_all() if batched else [worker.recalculate("ads")]
            return " ".join(f"{o.status} {o.period}" for o in outcomes)

        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = sorted(pool.map(recalculate, (one, two)))
        assert answers == ["unchanged None", f"updated {r + 1}"]
    history = one.store.list_allocations(one.get_experiment("ads").id)
    assert [r.period for r in history] == list(range(1, 7))
