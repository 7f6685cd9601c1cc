"""Scheduler leadership: two `abpilot serve` instances on one store with a short recalculation
interval. The bandit's weight history gets one entry per interval (not one per instance), and
when the leader is SIGKILLed the other instance takes over within an interval plus the lease's
time to live.

The bandit has three identical arms and draws Monte Carlo samples with a fresh seed on every
run, so every recalculation changes the weights a little and leaves an entry in the history:
two leaders would show as two entries per interval."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import backend_url
from tests.reliability.harness import Service, store_env, wait_until

KEY = "leadership"
INTERVAL_MINUTES = 0.025
INTERVAL = INTERVAL_MINUTES * 60  # 1.5 s
TICK = INTERVAL / 3  # how often each instance wakes (abpilot.scheduler)
LEASE_TTL = 3 * TICK
# The handover deadline: the lease lapses (Redis; PostgreSQL frees it as the connection
# drops), the next tick takes it, the new leader waits one interval and runs on the next tick;
# plus slack for two busy CPUs.
HANDOVER_SECONDS = LEASE_TTL + TICK + INTERVAL + TICK + 2.0


def history(server: str) -> list[datetime]:
    """When each weight change was computed, oldest first."""
    found = httpx.get(f"{server}/api/v1/experiments/{KEY}/history", timeout=10)
    assert found.status_code == 200, found.text
    return [datetime.fromisoformat(c["computed_at"]) for c in found.json()["weight_changes"]]


def leads(service: Service) -> bool:
    """The instance's log says it holds the recalculation lease now."""
    log = service.log()
    return log.count("leading recalculate") > log.count("lost the recalculate lease")


def assert_one_run_per_interval(times: list[datetime]) -> None:
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    # Two leaders would interleave their runs: some gap would be at most half an interval.
    assert min(gaps) > INTERVAL / 2, f"two runs within one interval: gaps {gaps}"
    # And the one leader keeps running every interval (a run whose weights happened to round to
    # the same basis points leaves no entry, hence two intervals and a half).
    assert max(gaps) < 2.5 * INTERVAL, f"the leader skipped intervals: gaps {gaps}"


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
                seconds=3 * INTERVAL + 30,
                what="three recalculations",
                interval=0.2,
            )
            before = history(first)
            assert_one_run_per_interval(before)
            leaders = [i for i in instances if leads(i)]
            assert len(leaders) == 1, "exactly one instance should lead"
            (leader,) = leaders
            (survivor,) = [i for i in instances if i is not leader]

            leader.kill()
            killed_at = datetime.now(UTC)

            wait_until(
                lambda: len([t for t in history(survivor.url) if t > killed_at]) >= 3,
                seconds=HANDOVER_SECONDS + 3 * INTERVAL + 30,
                what="three recalculations by the surviving instance",
                interval=0.2,
            )
            times = history(survivor.url)
            after = [t for t in times if t > killed_at]
            taken_over = (after[0] - killed_at).total_seconds()
            assert taken_over <= HANDOVER_SECONDS, (
                f"the survivor first recalculated {taken_over:.1f} s after the leader died "
                f"(allowed: {HANDOVER_SECONDS:.1f} s)"
            )
            assert leads(survivor)
            assert_one_run_per_interval(after)
            # Nothing was run twice around the handover either.
            last_before = max(t for t in times if t <= killed_at)
            assert (after[0] - last_before).total_seconds() > INTERVAL / 2
        finally:
            for instance in instances:
                instance.stop()
