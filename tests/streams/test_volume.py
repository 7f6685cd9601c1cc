"""A stream with redeliveries and malformed events ends with exact counters, on each bus.

10,000 events here (``tests/streams/scale_100k.py``, which `.ci/run` runs after the test
command, does the same with 100,000): two consumers share the stream; before they start, a third
takes 2.5% of the messages, applies them and dies without acknowledging (the bus delivers them
again after ack_wait); the producer re-sent another 2.5% (with their event ids); about 1% of the
events are malformed or refused. Every good event counts once, every bad one is a dead letter.
"""

from __future__ import annotations

import uuid

from abpilot.service import ExperimentService
from abpilot.streams.consumer import ConsumerThreads
from tests.streams.conftest import Bus
from tests.streams.workload import (
    check_counters,
    create_experiment,
    make_workload,
    markers,
    wait_until,
)


def run_volume(bus: Bus, service: ExperimentService, events: int) -> None:
    key = f"vol-{uuid.uuid4().hex[:8]}"
    create_experiment(service, key)
    workload = make_workload(key, events)
    assert workload.bad
    assert workload.resent
    bus.create_consumer()
    bus.publish(workload.messages)
    redelivered = bus.die_after_applying(service, len(workload.messages) // 40)
    assert redelivered > 0
    consumers = ConsumerThreads(service, bus.two_consumers())
    consumers.start()
    try:
        wait_until(bus.drained, seconds=300, what="draining the stream")
    finally:
        consumers.stop()
    check_counters(service, workload)
    dead = markers(bus.dead_letters())
    assert set(dead) == workload.bad


def test_ten_thousand_events_count_exactly(bus: Bus, service: ExperimentService) -> None:
    run_volume(bus, service, 10_000)
