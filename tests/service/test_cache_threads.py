"""The experiment cache under threads, as a worker runs it: routes assign in the threadpool while
the scheduler thread recalculates every bandit (which drops the whole cache) and admins rename
experiments (which drop one).

A fixed amount of work on each thread, switched very often; the answers are checked against the
hash, never against the clock.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from abpilot.domain.assignment import NOT_IN_EXPERIMENT, Bucketing
from abpilot.domain.experiment import Experiment
from abpilot.service import ExperimentService
from abpilot.service.allocation import DailyInput
from abpilot.service.specs import ExperimentChanges
from abpilot.store.base import AllocationRecord
from abpilot.store.memory import MemoryStore
from tests.conftest import BARRIER_SECONDS

ASSIGNERS = 4
UNITS = 600  # per assigning thread
INVALIDATIONS = 400


@pytest.fixture(autouse=True)
def switch_often() -> Iterator[None]:
    """Let the interpreter switch threads every microsecond instead of every 5 ms, so that the
    threads interleave inside every few bytecodes of the cache code."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def running(service: ExperimentService, key: str, **options: object) -> None:
    service.create_experiment(
        key=key,
        variants=[{"key": "control", "weight": 0.3}, {"key": "b", "weight": 0.7}],
        **options,  # type: ignore[arg-type]
    )
    service.start_experiment(key)


def run_all(tasks: list[Callable[[], object]]) -> list[object]:
    """Run every task on its own thread, released together; re-raise the first failure."""
    barrier = threading.Barrier(len(tasks), timeout=BARRIER_SECONDS)

    def start(task: Callable[[], object]) -> object:
        barrier.wait()
        return task()

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(start, task) for task in tasks]
        return [future.result() for future in futures]


@pytest.mark.parametrize("cache_seconds", [0.0, 3600.0])
def test_assigning_while_the_cache_is_dropped_gives_every_answer(cache_seconds: float) -> None:
    service = ExperimentService(MemoryStore(), cache_seconds=cache_seconds)
    running(service, "ab")
    # A bandit in burn-in: recalculated every time, its weights stay the configured ones.
    running(service, "ads", type="bandit", settings={"bandit": {"min_exposures": 10**6}})
    expected = {key: Bucketing.for_experiment(service.get_experiment(key)) for key in ("ab", "ads")}

    def assign(worker: int) -> list[tuple[str, str, str | None]]:
        answers = []
        for i in range(UNITS):
            key = "ab" if i % 2 else "ads"
            unit = f"w{worker}-u{i}"
            by_id_or_key = key if i % 3 else service.get_experiment(key).id
            found = service.get_variant_for_user(by_id_or_key, unit)
            answers.append((key, unit, found.variant.key if found.variant else None))
        return answers

    def invalidate() -> None:
        for i in range(INVALIDATIONS):
            if i % 3 == 0:
                service.recalculate_all()  # the scheduler: drops the whole cache
            elif i % 3 == 1:
                service.lookup.clear()
            else:
                service.update_experiment("ab", ExperimentChanges(name=f"AB {i}"))

    tasks: list[Callable[[], object]] = [lambda w=w: assign(w) for w in range(ASSIGNERS)]
    results = run_all([*tasks, invalidate])
    answers = [a for result in results[:ASSIGNERS] for a in result]  # type: ignore[union-attr]
    assert len(answers) == ASSIGNERS * UNITS
    for key, unit, variant in answers:
        index = expected[key].variant_index(unit)
        assert index != NOT_IN_EXPERIMENT
        assert variant == ["control", "b"][index]
    assigned = sum(v.assigned_units for v in service.get_metrics("ab").variants)
    assert assigned == ASSIGNERS * UNITS // 2
    # What the cache holds afterwards is the experiment as stored now.
    assert service.get_cached_experiment("ab") == service.store.get_experiment(
        service.get_experiment("ab").id
    )


class PausingStore(MemoryStore):
    """A memory store that holds one chosen thread right after it read an experiment (or its
    latest weights), until the test lets it go: a slow read, placed where a race needs it."""

    def __init__(self) -> None:
        super().__init__()
        self.paused_thread: int | None = None
        self.pause_after = "get_experiment"
        self.read_done, self.go_on = threading.Event(), threading.Event()

    def _maybe_pause(self, method: str) -> None:
        if threading.get_ident() == self.paused_thread and method == self.pause_after:
            self.read_done.set()
            self.go_on.wait(timeout=30)

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        found = super().get_experiment(experiment_id)
        self._maybe_pause("get_experiment")
        return found

    def latest_allocation(self, experiment_id: str) -> AllocationRecord | None:
        found = super().latest_allocation(experiment_id)
        self._maybe_pause("latest_allocation")
        return found


@pytest.mark.parametrize("change", ["rename", "recalculate"])
def test_a_slow_load_does_not_put_back_what_this_worker_just_changed(change: str) -> None:
    store = PausingStore()
    store.pause_after = "get_experiment" if change == "rename" else "latest_allocation"
    service = ExperimentService(store, cache_seconds=3600)
    running(service, "ads", type="bandit")
    exp = service.get_experiment("ads")
    today = service.clock().date()  # data enough for the recalculation to move the weights
    daily = [DailyInput("control", 10_000, 100), DailyInput("b", 10_000, 500)]
    service.record_daily_metrics("ads", day=today, metrics=daily)
    service.lookup.clear()

    def slow_load() -> None:
        store.paused_thread = threading.get_ident()
        service.get_cached_experiment(exp.id)  # reads the experiment, then waits

    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(slow_load)
        try:
            assert store.read_done.wait(timeout=30)
            # Meanwhile, on another thread of this worker:
            if change == "rename":
                service.update_experiment("ads", ExperimentChanges(name="Renamed"))
            else:
                assert service.recalculate("ads").status == "updated"
        finally:
            store.go_on.set()
        loading.result()
    cached = service.lookup.cached(exp.id)
    if change == "rename":
        assert cached.experiment.name == "Renamed"
    else:
        assert cached.period == 1
