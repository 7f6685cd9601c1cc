"""A master of a Redis Cluster crashes under traffic: its replica takes over and, with
``REDIS_WAIT_REPLICAS=1``, nothing acknowledged is lost and nothing is counted twice.

A cluster of its own (the shared one keeps its shape for the other tests). Two threads send
batches of ten exposures with event ids, each batch again after a 503 until it is acknowledged,
as a client would. Once traffic runs, the master holding the experiment's slot is SIGKILLed; the
cluster promotes its replica (node timeout 5 s), the killed node is started again and rejoins as
the new master's replica. Every batch is acknowledged in the end, and the counters are exact:
acknowledged steps were on the replica (WAIT), and a step applied but not acknowledged was sent
again under the same event ids.
"""

from __future__ import annotations

import threading
import time
import uuid

from redis.crc import key_slot

import abpilot
from abpilot.domain.errors import StoreUnavailable
from abpilot.store.base import EventKind
from tests.conftest import redis_cluster_url
from tests.redis_cluster import LocalCluster

THREADS, BATCHES, EVENTS = 2, 120, 10
RETRY_SECONDS = 120.0


def test_a_master_crash_loses_nothing_acknowledged() -> None:
    redis_cluster_url()  # skips (or fails under CI) without redis-server
    cluster = LocalCluster()
    try:
        cluster.start()
        prefix = f"abptest-{uuid.uuid4().hex[:12]}"
        options = {"prefix": prefix, "wait_replicas": 1, "wait_timeout_ms": 2000}
        service = abpilot.open(cluster.url, **options)
        experiment = service.create_experiment(
            key="crash", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
        )
        service.start_experiment("crash")
        slot = key_slot(f"{prefix}:{{{experiment.id}}}:counters".encode())
        master = cluster.masters()[cluster.slot_owner(slot)]
        acknowledged = [0] * THREADS
        retried = [0] * THREADS
        failures: list[BaseException] = []

        def send(thread: int) -> None:
            client = abpilot.open(cluster.url, **options)
            try:
                for n in range(BATCHES):
                    batch = [
                        abpilot.EventInput(
                            EventKind.EXPOSURE,
                            "crash",
                            unit_id=f"t{thread}-b{n}-u{e}",
                            event_id=f"t{thread}-b{n}-e{e}",
                        )
                        for e in range(EVENTS)
                    ]
                    deadline = time.monotonic() + RETRY_SECONDS
                    while True:
                        try:
                            client.record_events(batch)
                            break
                        except StoreUnavailable:
                            if time.monotonic() > deadline:
                                raise
                            retried[thread] += 1
                            time.sleep(0.2)
                    acknowledged[thread] += 1
                    time.sleep(0.01)
            except BaseException as error:  # reported by the main thread
                failures.append(error)
            finally:
                client.store.close()

        threads = [threading.Thread(target=send, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while sum(acknowledged) < THREADS * BATCHES // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.kill(master)
        deadline = time.monotonic() + 60
        while cluster.slot_owner_port(slot) == master and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cluster.slot_owner_port(slot) != master, "no replica took over"
        cluster.restart(master)
        for thread in threads:
            thread.join(timeout=300)
        assert not failures, failures
        assert acknowledged == [BATCHES] * THREADS
        assert sum(retried) > 0, "no client noticed the crash"
        variants = service.get_metrics("crash").variants
        assert sum(v.exposures for v in variants) == THREADS * BATCHES * EVENTS
        assert sum(v.unique_units for v in variants) == THREADS * BATCHES * EVENTS
        service.store.close()
    finally:
        cluster.stop()
