"""One leader recalculates, however many service instances share the store."""

from __future__ import annotations

import time

import pytest

from abpilot.scheduler import Scheduler
from tests.conftest import StoreFactory

INTERVAL = 60.0
# Leases last 3 ticks (30 s) of real time: far longer than the test, so only stop() ends one.
TICK = 10.0


class FakeClock:
    """The schedulers' monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("store_factory", ["sqlite", "postgres", "redis"], indirect=True)
def test_only_the_leader_runs_once_per_interval_and_another_takes_over(
    store_factory: StoreFactory,
) -> None:
    clock = FakeClock()
    calls: list[str] = []

    def instance(name: str) -> Scheduler:
        return Scheduler(
            store_factory(),  # its own client, as another worker or host has
            lambda: calls.append(name),
            name="recalculate",
            interval_seconds=INTERVAL,
            tick_seconds=TICK,
            clock=clock,
        )

    one, two = instance("one"), instance("two")
    assert not one.step()  # takes the lease; a new leader waits one interval
    assert not two.step()
    assert one.is_leader
    assert not two.is_leader
    for _ in range(5):
        clock.now += INTERVAL - 1
        assert not one.step()  # not due yet
        assert not two.step()
        clock.now += 1
        assert one.step()
        assert not two.step()
        assert not one.step()  # once per interval, however often it ticks
    assert (one.runs, two.runs) == (5, 0)
    assert calls == ["one"] * 5
    one.stop()  # the leader goes away (its lease is released)
    assert not two.step()  # takes the lease, and waits one interval
    assert two.is_leader
    clock.now += INTERVAL - 1
    assert not two.step()
    clock.now += 1
    assert two.step()
    assert calls == ["one"] * 5 + ["two"]
    two.stop()


def test_scheduler_in_the_app_runs_recalculation() -> None:
    from fastapi.testclient import TestClient

    from abpilot.api import create_app
    from abpilot.settings import Settings

    settings = Settings(store="memory", update_interval_minutes=0.002)  # 0.12 s
    with TestClient(create_app(settings)) as client:
        scheduler = client.app.state.scheduler  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60  # against a hang only: it runs every 0.12 s
        while scheduler.runs < 2:
            assert time.monotonic() < deadline, f"{scheduler.runs} recalculations in 60 s"
            time.sleep(0.05)
