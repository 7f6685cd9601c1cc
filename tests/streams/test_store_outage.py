"""The store out of reach while a consumer runs: nothing is dead-lettered, nothing acknowledged,
and once a throwaway Redis store is back (same port, its append-only file) every event counts
exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

import abpilot
from abpilot.streams.consumer import ConsumerThreads
from tests.reliability.harness import throwaway_redis
from tests.streams.conftest import Bus
from tests.streams.workload import (
    check_counters,
    create_experiment,
    make_workload,
    markers,
    wait_until,
)

# Extended stage of .ci/run (not the README command): a throwaway Redis taken down under a consumer.
pytestmark = pytest.mark.extended


def test_a_store_outage_loses_nothing_and_dead_letters_nothing(bus: Bus, tmp_path: Path) -> None:
    with throwaway_redis(tmp_path / "store") as server:
        service = abpilot.open(server.url, prefix="outage")
        try:
            create_experiment(service, "outage")
            workload = make_workload("outage", 2_000, seed=11)
            bus.create_consumer()
            consumers = ConsumerThreads(service, bus.two_consumers())
            consumers.start()
            try:
                server.kill()
                bus.publish(workload.messages)
                wait_until(
                    lambda: bus.pending() > 0, seconds=60, what="the consumers holding messages"
                )
                assert bus.dead_letters() == []  # bad events wait too: nothing was parsed apart
                server.start()
                wait_until(bus.drained, seconds=180, what="draining once the store is back")
            finally:
                consumers.stop()
            check_counters(service, workload)
            assert set(markers(bus.dead_letters())) == workload.bad
        finally:
            service.close()
