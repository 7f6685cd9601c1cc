"""Scheduler leadership: two `abpilot serve` instances on one store with a short recalculation
interval. Only the instance that holds the lease recalculates, and when it is SIGKILLed the
other instance takes over.

Who ran what is read from the instances' logs, not from the clock: each instance logs every
weight change it stores with its period, so the periods logged by the two instances must be
the bandit's history exactly, each period once, the first instance's before the second's.
The bandit has three identical arms and draws Monte Carlo samples with a fresh seed on every
run, so every recalculation changes the weights a little and leaves an entry in the history.
How often the leader runs and how soon a survivor takes over are the scheduler's, checked with
an injected clock in tests/service/test_scheduler.py; the Redis lease's TTL is checked in
tests/store/test_redis_store.py."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import backend_url
from tests.reliability.harness import Service, store_env, wait_until

# Extended stage of .ci/run (not the README command): two servers waiting out lease intervals.
pytestmark = pytest.mark.extended

KEY = "leadership"
INTERVAL_MINUTES = 0.025
INTERVAL = INTERVAL_MINUTES * 60  # 1.5 s
# Deadlines against a hang only: three runs need about three intervals.
WAIT_SECONDS = 3 * INTERVAL + 60
STORED = re.compile(rf"experiment {KEY}: weights .*? \(period (\d+)\)")


def history(server: str) -> list[int]:
    """The periods of the bandit's weight changes, oldest first."""
    found = httpx.get(f"{server}/api/v1/experiments/{KEY}/history", timeout=10)
    assert found.status_code == 200, found.text
    return [change["period"] for change in found.json()["weight_changes"]]


def stored_by(service: Service) -> list[int]:
    """The periods of the weight changes this instance computed and stored, in order."""
    return [int(period) for period in STORED.findall(service.log())]


def leads(service: Service) -> bool:
    """The instance's log says it holds the recalculation lease now."""
    log = service.log()
    return log.count("leading recalculate") > log.count("lost the recalculate lease")


@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_one_leader_recalculates_once_per_interval_and_a_survivor_takes_over(
    backend: str, tmp_path: Path
) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        env = store_env(backend, url, options) | {
            "UPDATE_INTERVAL_MINUTES": str(INTERVAL_MINUTES),
            "SCHEDULER_ENABLED": "true",
        }
        instances = [Service(env, tmp_path), Service(env, tmp_path)]
        try:
            for instance in instances:
                instance.start(wait=False)
            for instance in instances:
                instance.wait_ready()
            first = instances[0].url
            bandit = {
                "key": KEY,
                "type": "bandit",
                "variants": [{"key": k, "weight": 1 / 3} for k in ("a", "b", "c")],
                "settings": {
                    "bandit": {"min_exposures": 0, "method": "monte_carlo", "samples": 200_000}
                },
            }
            created = httpx.post(f"{first}/api/v1/experiments", json=bandit)
            assert created.status_code == 201, created.text
            started = httpx.put(
                f"{first}/api/v1/experiments/{KEY}/status", json={"status": "running"}
            )
            assert started.status_code == 200

            wait_until(
                lambda: len(history(first)) >= 3,
                seconds=WAIT_SECONDS,
                what="three recalculations",
                interval=0.2,
            )
            leaders = [i for i in instances if leads(i)]
            assert len(leaders) == 1, "exactly one instance should lead"
            (leader,) = leaders
            (survivor,) = [i for i in instances if i is not leader]
            assert stored_by(survivor) == [], "the instance that does not lead recalculated"

            leader.kill()
            by_leader = stored_by(leader)  # all of them: it is dead
            assert len(by_leader) >= 3
            wait_until(
                lambda: len(stored_by(survivor)) >= 3,
                seconds=WAIT_SECONDS,
                what="three recalculations by the surviving instance",
                interval=0.2,
            )
            assert leads(survivor)
            by_survivor = stored_by(survivor)
            every = by_leader + by_survivor
            # Each period was computed once, by one instance, the survivor's after the leader's,
            # and these are the bandit's history (which may have gone on since the log was read).
            assert every == list(range(every[0], every[0] + len(every))), (by_leader, by_survivor)
            assert [p for p in history(survivor.url) if p <= every[-1]] == every
        finally:
            for instance in instances:
                instance.stop()
