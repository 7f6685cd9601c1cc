"""100,000 events through each bus, with 5% redeliveries (2.5% by a consumer that dies after
applying, 2.5% re-sent by the producer) and 1% malformed or refused, ending with exact counters.

Not collected by ``python -m pytest`` (the file name does not start with ``test_``): `.ci/run`
runs it by name after the test command, ``python -m pytest tests/streams/scale_100k.py``.
"""

from __future__ import annotations

from abpilot.service import ExperimentService
from tests.streams.conftest import Bus
from tests.streams.test_volume import run_volume


def test_a_hundred_thousand_events_count_exactly(bus: Bus, service: ExperimentService) -> None:
    run_volume(bus, service, 100_000)
