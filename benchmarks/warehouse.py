"""A warehouse refresh in DuckDB: abpilot's generated plan next to a hand-written DuckDB query
computing the same sums, in the same run.

Run ``python -m benchmarks.warehouse [--exposures N] [--facts M] [--repeat R]``; the sizes
default to 10,000,000 exposures and 50,000,000 fact rows (``ABPILOT_BENCH_WAREHOUSE_EXPOSURES``
and ``ABPILOT_BENCH_WAREHOUSE_FACTS`` set smaller ones, ``--quick`` is 1,000,000 and 5,000,000).

The data is made in DuckDB (a file in a temporary folder): ``exposures`` (user, experiment,
arm, time, country; a third of the users exposed twice, 5% of the rows in another experiment)
and ``orders`` (user, time, amount) spread over two weeks. The refresh has two metrics over
``orders`` (a binary ``purchase`` and the ``revenue`` sum, 72 h windows) and the ``country``
dimension, so both queries give per (arm, day, country) the units and exposures, and per metric
the converting units, fact rows, Σy and Σy².

Rows, each the best of R repeats run in alternating rounds (so a load change on the shared
machine hits both alike):

1. hand-written: one DuckDB query (``arg_min`` for the first exposure, one join, ``GROUP BY
   ALL``) on a DuckDB connection of the same engine, its rows fetched.
2. abpilot refresh: ``service.warehouse.refresh`` on a memory store: the sources checked (a
   ``LIMIT 0`` describe and a 100-row type sample per source), the plan compiled and run through
   SQLAlchemy and duckdb-engine, the rows read and the refresh stored.

With ``--derived``, a third row: the plan of the same experiment with issue 18's derived sums
computed in the warehouse (both metrics adjusted by the users' ``pre_revenue``, the revenue
capped at 50 and at its 0.99 percentile, an order count and the revenue per order, a ratio),
run on the same engine; its ratio is to row 2, the plain refresh of the same run. Its plain
cells are checked equal to the hand-written query's first.

``ratio`` is row 2's time over row 1's (target: at most 1.5x). ``python peak`` is the peak of
Python allocations during the refresh (``tracemalloc``): what crosses into abpilot is the
aggregate rows, so it does not grow with the data (DuckDB's own memory is native and not in
it). The two results are checked equal (same cells, sums to 1e-9) before any figure prints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

import abpilot
from abpilot.domain.experiment import Metric, MetricKind
from abpilot.warehouse.engine import run
from abpilot.warehouse.plan import Row, build_plan
from abpilot.warehouse.spec import Source, SourceKind, warehouse_options

HAND_WRITTEN = """
WITH first AS (
    SELECT user_id, arg_min(arm, exposed_at) AS arm, min(exposed_at) AS first_at,
           arg_min(country, exposed_at) AS country, count(*) AS exposures
    FROM exposures WHERE experiment = 'checkout' GROUP BY user_id
), per_unit AS (
    SELECT f.user_id, f.arm, CAST(f.first_at AS DATE) AS day, f.country,
           count(*) AS rows, sum(o.amount) AS revenue
    FROM first f JOIN orders o ON o.user_id = f.user_id
        AND o.ordered_at >= f.first_at AND o.ordered_at < f.first_at + INTERVAL 72 HOUR
    GROUP BY ALL
)
SELECT '' AS metric, arm, CAST(first_at AS DATE) AS day, country, count(*) AS units,
       sum(exposures) AS exposures, 0 AS count, 0.0 AS sum, 0.0 AS sum_squares
FROM first GROUP BY ALL
UNION ALL
SELECT 'purchase', arm, day, country, count(*), 0, count(*), count(*), count(*)
FROM per_unit GROUP BY ALL
UNION ALL
SELECT 'revenue', arm, day, country, count(*), 0, sum(rows), sum(revenue),
       sum(revenue * revenue)
FROM per_unit GROUP BY ALL
"""


def make_data(path: Path, exposures: int, facts: int) -> None:
    users = max(1, exposures * 2 // 3)
    with duckdb.connect(str(path)) as db:
        db.execute(
            f"""CREATE TABLE exposures AS
            SELECT 'u' || (i % {users}) AS user_id,
                   CASE WHEN hash(i) % 20 = 0 THEN 'other' ELSE 'checkout' END AS experiment,
                   CASE WHEN hash(i % {users}) % 2 = 0 THEN 'control' ELSE 'green' END AS arm,
                   TIMESTAMP '2026-03-01' + to_seconds(CAST(hash(i * 3) % 864000 AS BIGINT))
                       AS exposed_at,
                   ['de', 'fr', 'us'][CAST(hash(i % {users}) % 3 AS INTEGER) + 1] AS country,
                   CAST(hash((i % {users}) * 17) % 5000 AS DOUBLE) / 100.0 AS pre_revenue
            FROM range({exposures}) t(i)"""
        )
        db.execute(
            f"""CREATE TABLE orders AS
            SELECT 'u' || (hash(j) % {users}) AS user_id,
                   TIMESTAMP '2026-03-01' + to_seconds(CAST(hash(j * 7) % 1209600 AS BIGINT))
                       AS ordered_at,
                   CAST(hash(j * 13) % 10000 AS DOUBLE) / 100.0 AS amount
            FROM range({facts}) t(j)"""
        )


def hand_written(service: abpilot.ExperimentService) -> list[tuple[Any, ...]]:
    """The hand-written query on a DuckDB connection of the same engine (DuckDB lets one
    process open a file with one configuration only)."""
    connection = service.warehouse.engine().raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(HAND_WRITTEN)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows
    finally:
        connection.close()


def set_up(path: Path) -> abpilot.ExperimentService:
    service = abpilot.open("memory://", warehouse_url=f"duckdb:///{path}")
    service.warehouse.put_source(
        {
            "name": "exposures",
            "kind": "assignment",
            "sql": "SELECT user_id AS unit_id, experiment AS experiment_key, arm AS variant, "
            "exposed_at AS timestamp, country FROM exposures",
            "dimensions": ["country"],
        }
    )
    service.warehouse.put_source(
        {
            "name": "orders",
            "kind": "fact",
            "sql": "SELECT user_id AS unit_id, ordered_at AS timestamp, amount FROM orders",
        }
    )
    service.create_experiment(
        key="checkout",
        variants=[{"key": "control"}, {"key": "green"}],
        source="warehouse",
        assignment_source="exposures",
        dimension="country",
        metrics=[
            {"key": "purchase", "fact_source": "orders", "window_hours": 72},
            {
                "key": "revenue",
                "kind": "value",
                "fact_source": "orders",
                "column": "amount",
                "aggregation": "sum",
                "window_hours": 72,
            },
        ],
    )
    return service


DERIVED_METRICS = [
    Metric("purchase", MetricKind.BINARY, covariate="pre_revenue"),
    Metric("revenue", MetricKind.VALUE, covariate="pre_revenue"),
    Metric("revenue_capped", MetricKind.VALUE, cap_absolute=50.0),
    Metric("revenue_p99", MetricKind.VALUE, cap_percentile=0.99),
    Metric("orders", MetricKind.VALUE),
    Metric("per_order", MetricKind.RATIO, numerator="revenue", denominator="orders"),
]


def derived_plan(service: abpilot.ExperimentService) -> Any:
    """The plan of the experiment with the derived sums (``DERIVED_METRICS``)."""
    revenue = {"fact_source": "orders", "column": "amount", "aggregation": "sum"}
    window = {"window_hours": 72}
    settings = {
        "warehouse": {
            "assignment_source": "exposures",
            "metrics": {
                "purchase": {"fact_source": "orders", **window},
                "revenue": {**revenue, **window},
                "revenue_capped": {**revenue, **window},
                "revenue_p99": {**revenue, **window},
                "orders": {"fact_source": "orders", "aggregation": "count", **window},
            },
        }
    }
    sql = "SELECT user_id AS unit_id, experiment AS experiment_key, arm AS variant, "
    sources = {
        "exposures": Source(
            "exposures",
            SourceKind.ASSIGNMENT,
            sql + "exposed_at AS timestamp, country, pre_revenue FROM exposures",
        ),
        "orders": Source(
            "orders",
            SourceKind.FACT,
            "SELECT user_id AS unit_id, ordered_at AS timestamp, amount FROM orders",
        ),
    }
    return build_plan(
        experiment_key="checkout",
        variants=["control", "green"],
        options=warehouse_options(settings, DERIVED_METRICS, ["country"]),
        sources=sources,
    ).statement


def _cells(rows: Any) -> dict[tuple[str, str, str, str], tuple[float, ...]]:
    return {
        (str(r[0]), str(r[1]), str(r[2])[:10], str(r[3])): tuple(float(x) for x in r[4:])
        for r in rows
    }


def check_same(hand: list[tuple[Any, ...]], rows: Iterable[Row]) -> None:
    ours = _cells(r.to_json() for r in rows)
    theirs = _cells(hand)
    assert ours.keys() == theirs.keys(), "the two queries give different cells"
    for key, values in theirs.items():
        for a, b in zip(values, ours[key], strict=True):
            assert abs(a - b) <= 1e-9 * max(1.0, abs(a)), (key, values, ours[key])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M exposures, 5M facts")
    parser.add_argument("--exposures", type=int, default=None)
    parser.add_argument("--facts", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--derived", action="store_true", help="a row with the derived sums")
    args = parser.parse_args(argv)
    exposures = args.exposures or int(
        os.environ.get("ABPILOT_BENCH_WAREHOUSE_EXPOSURES", 1_000_000 if args.quick else 10_000_000)
    )
    facts = args.facts or int(
        os.environ.get("ABPILOT_BENCH_WAREHOUSE_FACTS", 5_000_000 if args.quick else 50_000_000)
    )
    with tempfile.TemporaryDirectory(prefix="abpbench-wh-") as folder:
        path = Path(folder) / "warehouse.duckdb"
        started = time.perf_counter()
        make_data(path, exposures, facts)
        made = time.perf_counter() - started
        print(f"data: {exposures:,} exposures, {facts:,} fact rows, made in {made:.1f} s")
        service = set_up(path)
        hand_times: list[float] = []
        ours_times: list[float] = []
        peaks: list[int] = []
        derived_times: list[float] = []
        derived_rows = 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            hand = hand_written(service)
            hand_times.append(time.perf_counter() - t0)
            tracemalloc.start()
            t0 = time.perf_counter()
            refreshed = service.warehouse.refresh("checkout")
            ours_times.append(time.perf_counter() - t0)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            check_same(hand, refreshed.rows)
            if args.derived:
                statement = derived_plan(service)
                t0 = time.perf_counter()
                raw = run(service.warehouse.engine(), statement, timeout_seconds=3600, what="b")
                derived_times.append(time.perf_counter() - t0)
                rows = [Row.read(r) for r in raw]
                derived_rows = len(rows)
                plain = [r for r in rows if r.metric in ("", "purchase", "revenue")]
                check_same(hand, plain)
        service.close()
    best_hand, best_ours = min(hand_times), min(ours_times)
    result = {
        "exposures": exposures,
        "facts": facts,
        "hand_written_s": best_hand,
        "hand_written_median_s": statistics.median(hand_times),
        "abpilot_s": best_ours,
        "abpilot_median_s": statistics.median(ours_times),
        "ratio": best_ours / best_hand,
        "python_peak_mib": max(peaks) / 2**20,
        "result_rows": len(refreshed.rows),
    }
    print(f"{'row':<16}{'best s':>10}{'median s':>10}{'ratio':>8}")
    print(
        f"{'hand-written':<16}{best_hand:>10.2f}{result['hand_written_median_s']:>10.2f}{1:>8.2f}"
    )
    print(
        f"{'abpilot refresh':<16}{best_ours:>10.2f}{result['abpilot_median_s']:>10.2f}"
        f"{result['ratio']:>8.2f}"
    )
    if derived_times:
        result["derived_s"] = min(derived_times)
        result["derived_median_s"] = statistics.median(derived_times)
        result["derived_ratio"] = result["derived_s"] / best_ours
        print(
            f"{'derived plan':<16}{result['derived_s']:>10.2f}{result['derived_median_s']:>10.2f}"
            f"{result['derived_ratio']:>8.2f}  (to the refresh; {derived_rows} rows)"
        )
    verdict = "PASS" if result["ratio"] <= 1.5 else "MISS"
    print(
        f"target ratio <= 1.5: {verdict}; python peak during a refresh "
        f"{result['python_peak_mib']:.1f} MiB for {result['result_rows']} aggregate rows"
    )
    return result


if __name__ == "__main__":
    main()
