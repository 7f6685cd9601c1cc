"""What ``REDIS_WAIT_REPLICAS=1`` costs, and what a Redis Cluster costs, for intake.

Run ``python -m benchmarks.redis_wait [--quick]`` from the repository root (redis-server and
redis-cli installed). It starts its own servers on free ports: a master with one replica, and a
Redis Cluster of three masters with a replica each (``tests/redis_cluster.py``), so nothing is
shared with another benchmark. Workloads, in process through ``service.record_events``:

* single exposures (a batch of one event with an ``event_id``: the path of
  ``POST /experiments/{id}/exposures``), sent one after the other;
* batches of 1,000 events (800 exposures, 200 conversions, as ``benchmarks.intake``).

Rows compare, on the same servers in the same run, with rounds alternating and the best round
kept: the master with its replica and no WAIT (the reference) against the same with
``wait_replicas=1`` (each step acknowledged once the replica has it); and the cluster without
WAIT against the single master, then with WAIT against without. ``ratio`` is events/s divided
by the reference's (above 1.0x is faster).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import abpilot
from abpilot.service import EventInput
from abpilot.store.base import EventKind
from benchmarks.intake import BATCH, batch_events
from benchmarks.intake import EXPERIMENT_KEY as KEY


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    figure: str
    reference: str
    events: float
    reference_events: float

    @property
    def ratio(self) -> float:
        return self.events / self.reference_events


class Run:
    """A service on ``url`` with a running experiment."""

    def __init__(self, url: str, **options: Any) -> None:
        self.service = abpilot.open(url, prefix=f"bench-{uuid.uuid4().hex[:8]}", **options)
        self.service.create_experiment(
            key=KEY,
            variants=[{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
            metrics=[{"key": "conversion"}],
        )
        self.service.start_experiment(KEY)
        self.rounds = 0

    def singles(self, count: int) -> float:
        self.rounds += 1
        events = [
            [EventInput(EventKind.EXPOSURE, KEY, unit_id=f"s{self.rounds}-{n}", event_id=f"s{n}")]
            for n in range(count)
        ]
        started = time.perf_counter()
        for event in events:
            self.service.record_events(event)
        return count / (time.perf_counter() - started)

    def batches(self, count: int) -> float:
        self.rounds += 1
        prepared = [batch_events(f"b{self.rounds}-{n}") for n in range(count)]
        started = time.perf_counter()
        for batch in prepared:
            self.service.record_events(batch)
        return count * BATCH / (time.perf_counter() - started)


def best(runs: dict[str, Run], measure: Callable[[Run], float], rounds: int) -> dict[str, float]:
    """The best round of each run, rounds alternating between the runs."""
    found: dict[str, float] = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            found[name] = max(found[name], measure(run))
    return found


def measure(quick: bool) -> list[Row]:
    from tests.redis_cluster import local_cluster, master_with_replica, stop_local_cluster

    singles, batches, rounds = (300, 3, 2) if quick else (2000, 10, 5)
    rows = []
    try:
        with master_with_replica() as url:
            cluster_url = local_cluster().url
            runs = {
                "one": Run(url),
                "one+wait": Run(url, wait_replicas=1, wait_timeout_ms=1000),
                "cluster": Run(cluster_url),
                "cluster+wait": Run(cluster_url, wait_replicas=1, wait_timeout_ms=1000),
            }
            for workload, how in (
                ("single exposures", lambda r: r.singles(singles)),
                ("batches of 1,000", lambda r: r.batches(batches)),
            ):
                got = best(runs, how, rounds)
                for figure, reference, a, b in (
                    ("one master, WAIT 1", "one master", "one+wait", "one"),
                    ("cluster, no WAIT", "one master", "cluster", "one"),
                    ("cluster, WAIT 1", "cluster", "cluster+wait", "cluster"),
                ):
                    rows.append(Row(workload, figure, reference, got[a], got[b]))
            for run in runs.values():
                run.service.store.close()
    finally:
        stop_local_cluster()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    quick = parser.parse_args(argv).quick
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.redis_cluster
    print("| workload | figure | events/s | reference | events/s | ratio |")
    print("|---|---|---|---|---|---|")
    for row in measure(quick):
        print(
            f"| {row.workload} | {row.figure} | {row.events:,.0f} | {row.reference} | "
            f"{row.reference_events:,.0f} | {row.ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
