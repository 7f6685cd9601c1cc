"""REDIS_WAIT_REPLICAS on a Redis Cluster: an intake step is acknowledged only once the replica of
the slot's master holds it, so the replica answers with the same counters right away."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

import abpilot
from abpilot.store.base import EventKind
from tests.conftest import backend_url
from tests.redis_cluster import local_cluster


def test_acknowledged_steps_are_on_the_replica(tmp_path: Path) -> None:
    with backend_url("redis-cluster", tmp_path) as (url, options):
        service = abpilot.open(url, wait_replicas=1, wait_timeout_ms=5000, **options)
        experiment = service.create_experiment(
            key="waited", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
        )
        service.start_experiment("waited")
        counters = f"{options['prefix']}:{{{experiment.id}}}:counters"
        cluster = local_cluster()
        master = cluster.masters()[cluster.slot_owner(key_slot(counters.encode()))]
        replica_port = next(
            p
            for p in cluster.ports
            if cluster.cli(p, "role").split()[:3] == ["slave", "127.0.0.1", str(master)]
        )
        replica = redis.Redis(port=replica_port, decode_responses=True)
        for n in range(20):
            service.record_events(
                [abpilot.EventInput(EventKind.EXPOSURE, "waited", unit_id=f"u{n}")]
            )
            # READONLY lets a replica answer reads of its master's slots.
            replica.execute_command("READONLY")
            on_replica = replica.hgetall(counters)
            assert sum(int(v) for k, v in on_replica.items() if k.endswith("|exposures")) == n + 1
        replica.close()
        service.store.close()


def test_too_few_replicas_within_the_timeout_is_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with backend_url("redis-cluster", tmp_path) as (url, options):
        service = abpilot.open(url, wait_replicas=3, wait_timeout_ms=20, **options)
        service.create_experiment(
            key="few", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
        )
        service.start_experiment("few")
        with caplog.at_level(logging.WARNING, logger="abpilot.store"):
            service.record_events([abpilot.EventInput(EventKind.EXPOSURE, "few", unit_id="u")])
        assert "1 of 3 replicas acknowledged" in caplog.text
        variants = service.get_metrics("few").variants
        assert sum(v.exposures for v in variants) == 1
        service.store.close()
