"""The per-unit read of issue 18 (``get_unit_totals``: each converting unit's total of a metric
with its variant, period and covariate, what a percentile cap is computed from) at up to
1,000,000 units, on every store, next to a reference measured in the same run.

The experiment is written by ``restore_experiment`` (what an import does): N assigned units, each
with a total of ``revenue`` and a covariate fact. Then, alternating, rounds of:

* ``store.get_unit_totals(experiment, "revenue", "pre")``, checked to return all N units;
* the reference: the same rows read raw, with the store's own client and no abpilot code:
  memory, one pass over a dict of N (unit -> (count, total)); SQLite and PostgreSQL,
  ``SELECT unit_id, count, total FROM unit_metrics WHERE experiment_id = ? AND metric = ?``
  (sqlite3, psycopg 3); Redis, ``HGETALL`` of the experiment's ``units`` hash (redis-py).

``vs reference`` divides the read's time by the reference's (the read also joins the
assignment and the covariate). Each figure is the best round.

Run ``python -m benchmarks.unit_totals [--units N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import abpilot
from abpilot.domain.derived import covariate_cell
from abpilot.domain.experiment import (
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Metric,
    MetricKind,
    Variant,
)
from abpilot.store.base import Store, StoredAssignment
from abpilot.store.state import ExperimentState, UnitState
from benchmarks.common import BACKENDS, StoreUrl

METRIC, COVARIATE = "revenue", "pre"


@dataclass(frozen=True, slots=True)
class ReadRow:
    store: str
    units: int
    read_seconds: float
    reference_seconds: float
    reference: str


def state(units: int) -> ExperimentState:
    now = datetime.now(UTC)
    exp = Experiment(
        id=str(uuid.uuid4()),
        key=f"unit-totals-{uuid.uuid4().hex[:8]}",
        name="unit totals",
        type=ExperimentType.AB_TEST,
        status=ExperimentStatus.RUNNING,
        traffic_allocation=1.0,
        salt="unit-totals",
        variants=(Variant("control", "control", 0.5, is_control=True), Variant("v1", "v1", 0.5)),
        metrics=(Metric(METRIC, MetricKind.VALUE, covariate=COVARIATE, cap_percentile=0.99),),
        created_at=now,
        updated_at=now,
    )
    names = [f"unit-{i}" for i in range(units)]
    fact = covariate_cell(COVARIATE)
    totals: dict[tuple[str, str], tuple[int, float]] = {}
    for i, unit in enumerate(names):
        totals[(unit, METRIC)] = (1 + i % 3, float(i % 1000) / 10)
        totals[(unit, fact)] = (1, float(i % 97))
    return ExperimentState(
        experiment=exp,
        units=UnitState(
            assignments={
                u: StoredAssignment("control" if i % 2 else "v1", 0) for i, u in enumerate(names)
            },
            exposed=frozenset(names),
            totals=totals,
            event_ids=frozenset(),
        ),
        counters={},
        last_event_at=None,
        daily=[],
        raw=[],
        allocations=[],
        decisions=[],
        feedback=[],
        arm_states=[],
    )


def best(rounds: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


@contextlib.contextmanager
def memory_url() -> Iterator[StoreUrl]:
    yield "memory://", {}


@contextlib.contextmanager
def reference_reader(
    name: str,
    url: str,
    options: dict[str, str],
    store: Store,
    exp: str,
) -> Iterator[tuple[str, Callable[[], object]]]:
    if name == "memory":
        plain = dict(store._unit_totals)  # type: ignore[attr-defined]

        def read_dict() -> object:
            return [(u, c, t) for (e, u, m), (c, t) in plain.items() if e == exp and m == METRIC]

        yield "a pass over a dict of the (unit, metric) totals", read_dict
    elif name == "SQLite":
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        query = "SELECT unit_id, count, total FROM unit_metrics WHERE experiment_id=? AND metric=?"
        try:
            yield "raw sqlite3 SELECT", lambda: conn.execute(query, (exp, METRIC)).fetchall()
        finally:
            conn.close()
    elif name == "PostgreSQL":
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            query = (
                "SELECT unit_id, count, total FROM unit_metrics "
                "WHERE experiment_id=%s AND metric=%s"
            )
            yield "raw psycopg SELECT", lambda: conn.execute(query, (exp, METRIC)).fetchall()
    else:
        import redis

        client = redis.Redis.from_url(url)
        key = f"{options['prefix']}:{{{exp}}}:units"
        try:
            yield "redis-py HGETALL of the units hash", lambda: client.hgetall(key)
        finally:
            client.close()


def measure(
    name: str,
    opener: Callable[[], contextlib.AbstractContextManager[StoreUrl]],
    units: int,
    rounds: int,
) -> ReadRow:
    with opener() as (url, options):
        service = abpilot.open(url, **options)
        try:
            store = service.store
            restored = state(units)
            store.restore_experiment(restored)
            exp = restored.experiment.id
            got = store.get_unit_totals(exp, METRIC, COVARIATE)
            assert len(got.units) == units, (name, len(got.units))
            with reference_reader(name, url, options, store, exp) as (label, reference):
                assert len(reference()) in (units, 2 * units * 2)  # type: ignore[arg-type]
                read = reference_time = float("inf")
                for _ in range(rounds):  # alternating
                    read = min(read, best(1, lambda: store.get_unit_totals(exp, METRIC, COVARIATE)))
                    reference_time = min(reference_time, best(1, reference))
            return ReadRow(name, units, read, reference_time, label)
        finally:
            service.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma list of stores (memory, SQLite, PostgreSQL, Redis)")
    args = parser.parse_args(argv)
    stores: dict[str, Callable[[], contextlib.AbstractContextManager[StoreUrl]]] = {
        "memory": memory_url,
        **BACKENDS,
    }
    if args.only:
        stores = {k: v for k, v in stores.items() if k in args.only.split(",")}
    print("| store | units | get_unit_totals | reference | vs reference |")
    print("| --- | ---: | ---: | --- | ---: |")
    for name, opener in stores.items():
        try:
            row = measure(name, opener, args.units, args.rounds)
        except Exception as error:  # a server out of reach skips the row
            print(f"| {name} | {args.units:,} | - | skipped: {type(error).__name__}: {error} | - |")
            continue
        print(
            f"| {row.store} | {row.units:,} | {row.read_seconds:.2f} s | "
            f"{row.reference} {row.reference_seconds:.2f} s | "
            f"{row.read_seconds / row.reference_seconds:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
