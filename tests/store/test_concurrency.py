"""Many processes writing to one store at once give exact counts (DESIGN.md 4, counters).

Eight processes each send 500 events through the service, in batches, retry every batch once
(as a client would after a timeout), and all send the same shared event ids at the same moment.

Eight processes also put one shared document: first all the same digest at the same moment (one
write), then each a series of digests of its own (every put a change).
"""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import abpilot
from abpilot.store.base import EventKind
from abpilot.store.factory import open_store
from tests.conftest import backend_url

PROCESSES = 8
UNITS_PER_PROCESS = 250  # one exposure and one conversion each: 500 events per process
SHARED_IDS = 20
BATCH = 50
EXPOSURE, CONVERSION = EventKind.EXPOSURE, EventKind.CONVERSION


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


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_exact_counts_from_eight_processes(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        service = abpilot.open(url, **options)
        service.create_experiment(
            key="race",
            variants=[{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
            metrics=[{"key": "revenue", "kind": "value"}],
        )
        service.start_experiment("race")
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(PROCESSES)
        processes = [
            context.Process(target=worker, args=(url, options, w, barrier))
            for w in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=240)
            assert process.exitcode == 0
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


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_document_versions_from_eight_processes(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)  # migrates once, before the workers start
        context = multiprocessing.get_context("spawn")
        barrier, out = context.Barrier(PROCESSES), context.Queue()
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
