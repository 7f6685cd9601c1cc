"""Counting stays exact while ``redis-cli --cluster reshard`` moves the slots of live experiments.

Four experiments take batches spanning all of them from four threads (every batch is sent twice,
as a client retrying after a timeout would) while every slot of the master holding the first
experiment is moved to another master, and then back. redis-py follows MOVED and ASK; a step
the cluster answers TRYAGAIN (its keys split between two nodes mid-move) is called again, and
nothing is written until it runs whole. Half the threads wait for replicas after each step
(``WAIT`` on the slot owner's connection). Afterwards every counter is exact.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from redis.crc import key_slot

import abpilot
from abpilot.store.base import EventKind
from tests.conftest import backend_url
from tests.redis_cluster import local_cluster

EXPERIMENTS = 4
THREADS = 4
BATCHES = 60  # per thread, while the slots move, and more until the move is over
PER_EXPERIMENT = 5  # units per experiment per batch: an exposure and a conversion each


def batch(thread: int, n: int) -> list[abpilot.EventInput]:
    events = []
    for e in range(EXPERIMENTS):
        for u in range(PER_EXPERIMENT):
            unit = f"t{thread}-b{n}-u{u}"
            events.append(
                abpilot.EventInput(
                    EventKind.EXPOSURE, f"exp{e}", unit_id=unit, event_id=f"{unit}-e{e}-x"
                )
            )
            events.append(
                abpilot.EventInput(
                    EventKind.CONVERSION,
                    f"exp{e}",
                    unit_id=unit,
                    metric="revenue",
                    value=float(u + 1),
                    event_id=f"{unit}-e{e}-c",
                )
            )
    return events


def test_counts_are_exact_across_a_resharding(tmp_path: Path) -> None:
    with backend_url("redis-cluster", tmp_path) as (url, options):
        service = abpilot.open(url, **options)
        ids = []
        for e in range(EXPERIMENTS):
            experiment = service.create_experiment(
                key=f"exp{e}",
                variants=[{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
                metrics=[{"key": "revenue", "kind": "value"}],
            )
            service.start_experiment(f"exp{e}")
            ids.append(experiment.id)
        cluster = local_cluster()
        source = cluster.slot_owner(key_slot(f"{options['prefix']}:{{{ids[0]}}}:x".encode()))
        target = next(m for m in cluster.masters() if m != source)
        moving = threading.Event()
        moving.set()
        sent = [0] * THREADS
        failures: list[BaseException] = []

        def send(thread: int) -> None:
            # Odd threads wait for the replica (REDIS_WAIT_REPLICAS), following MOVED and ASK
            # themselves: the script and WAIT must share one connection.
            waiting = {"wait_replicas": 1, "wait_timeout_ms": 5000} if thread % 2 else {}
            client = abpilot.open(url, **options, **waiting)
            try:
                n = 0
                while n < BATCHES or moving.is_set():
                    events = batch(thread, n)
                    client.record_events(events)
                    client.record_events(events)  # the retry: all duplicates
                    n += 1
                sent[thread] = n
            except BaseException as error:  # reported by the main thread
                failures.append(error)
            finally:
                client.store.close()

        threads = [threading.Thread(target=send, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        try:
            owned = cluster.slot_count(source)
            cluster.reshard(source, target, owned)
            moved = cluster.slot_owner(key_slot(f"{options['prefix']}:{{{ids[0]}}}:x".encode()))
            assert moved == target
            cluster.reshard(target, source, owned)
        finally:
            moving.clear()
            for thread in threads:
                thread.join(timeout=300)
        assert not failures, failures
        assert all(n >= BATCHES for n in sent)

        units = sum(sent) * PER_EXPERIMENT
        revenue = sum(float(u + 1) for u in range(PER_EXPERIMENT)) * sum(sent)
        for e in range(EXPERIMENTS):
            variants = service.get_metrics(f"exp{e}").variants
            assert sum(v.exposures for v in variants) == units
            assert sum(v.unique_units for v in variants) == units
            assert sum(v.assigned_units for v in variants) == units
            totals = [v.metrics["revenue"] for v in variants]
            assert sum(t.count for t in totals) == units
            assert sum(t.units for t in totals) == units
            assert sum(t.sum for t in totals) == pytest.approx(revenue)
        service.store.close()
