"""Many processes writing to one store at once give exact counts (docs/architecture.md §6,
atomic counters).

Eight processes each send 500 events through the service, in batches, retry every batch once
(as a client would after a timeout), and all send the same shared event ids at the same moment.

Eight processes also convert the same 20 units at once, so that every batch races the others
for the same units' running totals: the units' sums of squares stay exact.

Eight processes also put one shared document: first all the same digest at the same moment (one
write), then each a series of digests of its own (every put a change).

Eight processes apply contextual-bandit feedback to the same 50 decisions at once: all the same
("click", success) event, and each a failure event of its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import abpilot
from abpilot.store.base import GLOBAL_CONTEXT, Decision, EventKind, FeedbackOutcome
from abpilot.store.factory import open_store
from tests.conftest import BARRIER_SECONDS, SHARED_BACKENDS, backend_url
from tests.factories import make_experiment
from tests.processes import process_context

PROCESSES = 8
UNITS_PER_PROCESS = 250  # one exposure and one conversion each: 500 events per process
SHARED_IDS = 20
BATCH = 50
EXPOSURE, CONVERSION = EventKind.EXPOSURE, EventKind.CONVERSION


def run_together(target: Any, url: str, options: dict[str, Any]) -> None:
    """Run ``target(url, options, w, barrier)`` in PROCESSES processes at once; each must exit
    cleanly."""
    context = process_context()
    barrier = context.Barrier(PROCESSES, timeout=BARRIER_SECONDS)
    processes = [
        context.Process(target=target, args=(url, options, w, barrier)) for w in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
        assert process.exitcode == 0


def value_of(i: int) -> float:
    return float(i % 7 + 1) + 0.25


def worker(url: str, options: dict[str, Any], w: int, barrier: Any) -> None:
    service = abpilot.open(url, **options)
    events = []
    for i in range(UNITS_PER_PROCESS):
        unit = f"p{w}-u{i}"
        events.append(abpilot.EventInput(EXPOSURE, "race", unit_id=unit, event_id=f"p{w}-x{i}"))
        events.append(
            abpilot.EventInput(
                CONVERSION,
                "race",
                unit_id=unit,
                metric="revenue",
                value=value_of(i),
                event_id=f"p{w}-c{i}",
            )
        )
    barrier.wait()
    shared = [
        abpilot.EventInput(EXPOSURE, "race", variant="control", event_id=f"shared-{k}")
        for k in range(SHARED_IDS)
    ]
    service.record_events(shared)
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        service.record_events(chunk)
        service.record_events(chunk)  # the retry: all duplicates
    service.store.close()


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_exact_counts_from_eight_processes(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        service = abpilot.open(url, **options)
        service.create_experiment(
            key="race",
            variants=[{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
            metrics=[{"key": "revenue", "kind": "value"}],
        )
        service.start_experiment("race")
        run_together(worker, url, options)
        variants = service.get_metrics("race").variants
        values = [value_of(i) for i in range(UNITS_PER_PROCESS)]
        assert sum(v.exposures for v in variants) == PROCESSES * UNITS_PER_PROCESS + SHARED_IDS
        assert sum(v.unique_units for v in variants) == PROCESSES * UNITS_PER_PROCESS
        assert sum(v.assigned_units for v in variants) == PROCESSES * UNITS_PER_PROCESS
        revenue = [v.metrics["revenue"] for v in variants]
        assert sum(r.count for r in revenue) == PROCESSES * UNITS_PER_PROCESS
        assert sum(r.units for r in revenue) == PROCESSES * UNITS_PER_PROCESS
        assert sum(r.sum for r in revenue) == pytest.approx(PROCESSES * sum(values))
        assert sum(r.sum_squares for r in revenue) == pytest.approx(
            PROCESSES * sum(v * v for v in values)
        )
        service.store.close()


SHARED_UNITS, ROUNDS, SHARED_BATCH = 20, 10, 5


def shared_worker(url: str, options: dict[str, Any], w: int, barrier: Any) -> None:
    service = abpilot.open(url, **options)
    barrier.wait()
    for r in range(ROUNDS):
        events = [
            abpilot.EventInput(
                CONVERSION,
                "shared",
                unit_id=f"s{k}",
                metric="revenue",
                value=value_of(r + k),
                event_id=f"p{w}-r{r}-s{k}",
            )
            for k in range(SHARED_UNITS)
        ]
        for start in range(0, len(events), SHARED_BATCH):
            service.record_events(events[start : start + SHARED_BATCH])
    service.close()


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_exact_unit_totals_when_processes_convert_the_same_units(
    backend: str, tmp_path: Path
) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        service = abpilot.open(url, **options)
        service.create_experiment(
            key="shared",
            variants=[{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
            metrics=[{"key": "revenue", "kind": "value"}],
        )
        service.start_experiment("shared")
        service.record_events(
            [abpilot.EventInput(EXPOSURE, "shared", unit_id=f"s{k}") for k in range(SHARED_UNITS)]
        )
        run_together(shared_worker, url, options)
        # Each unit's total T is what all processes added to it; a variant's sum of squares is
        # the sum of its units' T^2, whatever order the batches were counted in.
        totals = [
            PROCESSES * sum(value_of(r + k) for r in range(ROUNDS)) for k in range(SHARED_UNITS)
        ]
        revenue = [v.metrics["revenue"] for v in service.get_metrics("shared").variants]
        assert sum(r.count for r in revenue) == PROCESSES * ROUNDS * SHARED_UNITS
        assert sum(r.units for r in revenue) == SHARED_UNITS
        assert sum(r.sum for r in revenue) == pytest.approx(sum(totals), rel=1e-12)
        assert sum(r.sum_squares for r in revenue) == pytest.approx(
            sum(t * t for t in totals), rel=1e-12
        )
        service.close()


DOCUMENT_PUTS = 25
NAMESPACE, KEY = "featurevisor", "production/datafile-tag-all.json"


def datafile(digest: str) -> str:
    """The content put with ``digest``: a few kilobytes, so that writes take a moment."""
    return json.dumps({"revision": digest, "features": [f"feature-{i}" for i in range(500)]})


def document_worker(url: str, options: dict[str, Any], w: int, barrier: Any, out: Any) -> None:
    store = open_store(url, **options)
    barrier.wait()
    shared = store.put_document(NAMESPACE, KEY, datafile("shared"), "shared", datetime.now(UTC))
    barrier.wait()  # every shared put is done before the first change
    versions = []
    for i in range(DOCUMENT_PUTS):
        digest = f"{w}-{i}"
        put = store.put_document(NAMESPACE, KEY, datafile(digest), digest, datetime.now(UTC))
        versions.append(put.version)
    store.close()
    out.put((w, shared.version, versions))


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_document_versions_from_eight_processes(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)  # migrates once, before the workers start
        context = process_context()
        barrier, out = context.Barrier(PROCESSES, timeout=BARRIER_SECONDS), context.Queue()
        processes = [
            context.Process(target=document_worker, args=(url, options, w, barrier, out))
            for w in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        results = [out.get(timeout=240) for _ in processes]
        for process in processes:
            process.join(timeout=240)
            assert process.exitcode == 0
        assert [shared for _, shared, _ in results] == [1] * PROCESSES
        changes = PROCESSES * DOCUMENT_PUTS
        returned = sorted(v for _, _, versions in results for v in versions)
        assert returned == list(range(2, changes + 2))  # consecutive: none lost, none repeated
        for _, _, versions in results:
            assert versions == sorted(versions)
        final = store.get_document(NAMESPACE, KEY)
        assert final is not None
        assert final.version == 1 + changes
        last = next(
            f"{w}-{i}"
            for w, _, versions in results
            for i, v in enumerate(versions)
            if v == 1 + changes
        )
        assert (final.digest, final.content) == (last, datafile(last))  # the last writer's
        store.close()


DECISIONS = 50
CONTEXTS = ("time_of_day=evening|user_type=new", "time_of_day=morning|user_type=returning")


def feedback_worker(
    url: str, options: dict[str, Any], experiment_id: str, w: int, barrier: Any, out: Any
) -> None:
    store = open_store(url, **options)
    barrier.wait()
    clicks, ratings = [], []
    for d in range(DECISIONS):
        now = datetime.now(UTC)
        success = FeedbackOutcome.SUCCESS
        clicks.append(store.apply_feedback(experiment_id, f"d{d}", "click", success, now))
        failure = FeedbackOutcome.FAILURE
        ratings.append(store.apply_feedback(experiment_id, f"d{d}", f"rating-{w}", failure, now))
    store.close()
    out.put((w, clicks, ratings))


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_exact_feedback_from_eight_processes(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)  # migrates once, before the workers start
        exp = make_experiment()
        store.create_experiment(exp)
        for d in range(DECISIONS):
            store.record_decision(
                Decision(
                    id=f"d{d}",
                    experiment_id=exp.id,
                    unit_id=f"u{d}",
                    context_key=CONTEXTS[d % 2],
                    context={},
                    arm="control" if d % 3 == 0 else "v1",
                    propensity=0.5,
                    policy="bandit",
                    method="exact",
                    decided_at=datetime.now(UTC),
                )
            )
        context = process_context()
        barrier, out = context.Barrier(PROCESSES, timeout=BARRIER_SECONDS), context.Queue()
        processes = [
            context.Process(target=feedback_worker, args=(url, options, exp.id, w, barrier, out))
            for w in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        results = [out.get(timeout=240) for _ in processes]
        for process in processes:
            process.join(timeout=240)
            assert process.exitcode == 0
        for d in range(DECISIONS):  # exactly one process applied each decision's click
            assert sum(clicks[d] for _, clicks, _ in results) == 1
        assert all(all(ratings) for _, _, ratings in results)  # every own event applied
        for found in store.list_decisions(exp.id):
            assert (found.successes, found.failures) == (1, PROCESSES)
        states = store.get_bandit_states(exp.id)
        pooled = [s for s in states if s.context_key == GLOBAL_CONTEXT]
        per_context = [s for s in states if s.context_key != GLOBAL_CONTEXT]
        for group in (pooled, per_context):
            assert sum(s.pulls for s in group) == DECISIONS
            assert sum(s.successes for s in group) == DECISIONS
            assert sum(s.failures for s in group) == DECISIONS * PROCESSES
        assert len(per_context) == 4
        store.close()
