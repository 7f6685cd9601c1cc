"""One leader recalculates, however many service instances share the store."""

from __future__ import annotations

import time

import pytest

from abpilot.scheduler import Scheduler
from tests.conftest import StoreFactory


def run_for(schedulers: list[Scheduler], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for scheduler in schedulers:
            scheduler.step()
        time.sleep(0.01)


@pytest.mark.parametrize("store_factory", ["sqlite", "postgres", "redis"], indirect=True)
def test_only_the_leader_runs_and_another_takes_over(store_factory: StoreFactory) -> None:
    calls: list[str] = []
    one = Scheduler(
        store_factory(),
        lambda: calls.append("one"),
        name="recalculate",
        interval_seconds=0.1,
        tick_seconds=0.05,
    )
    two = Scheduler(
        store_factory(),
        lambda: calls.append("two"),
        name="recalculate",
        interval_seconds=0.1,
        tick_seconds=0.05,
    )
    run_for([one, two], 1.0)
    assert one.is_leader != two.is_leader
    leader, follower = (one, two) if one.is_leader else (two, one)
    assert leader.runs >= 5
    assert follower.runs == 0
    assert set(calls) == {"one" if leader is one else "two"}
    leader.stop()  # the leader goes away (its lease is released)
    run_for([follower], 0.5)
    assert follower.is_leader
    assert follower.runs >= 1
    follower.stop()


def test_scheduler_in_the_app_runs_recalculation() -> None:
    from fastapi.testclient import TestClient

    from abpilot.api import create_app
    from abpilot.settings import Settings

    settings = Settings(store="memory", update_interval_minutes=0.002)  # 0.12 s
    with TestClient(create_app(settings)) as client:
        scheduler = client.app.state.scheduler  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while scheduler.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scheduler.runs >= 2
