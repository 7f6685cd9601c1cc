"""The query plan on real engines: DuckDB, PostgreSQL, Snowflake's SQL (fakesnow), ClickHouse's
SQL (chDB). Each holds the simulated tables; the plan's aggregates equal those computed in
NumPy from the unit-level rows (``simulated.reference``), overall and per dimension value."""

from __future__ import annotations

from pathlib import Path

import pytest

from abpilot.warehouse.engine import open_engine, run
from abpilot.warehouse.plan import Row, build_plan, counters_of
from abpilot.warehouse.spec import Source, SourceKind, warehouse_options
from tests.warehouse.engines import ENGINES, warehouse
from tests.warehouse.simulated import (
    ASSIGNMENT_SQL,
    COUNTRIES,
    KEY,
    ORDERS_SQL,
    VARIANTS,
    WINDOW_HOURS,
    reference,
    simulate,
)

SOURCES = {
    "exposures": Source(
        "exposures", SourceKind.ASSIGNMENT, ASSIGNMENT_SQL, dimensions=("country",)
    ),
    "orders": Source("orders", SourceKind.FACT, ORDERS_SQL),
}
SETTINGS = {
    "warehouse": {
        "assignment_source": "exposures",
        "dimension": "country",
        "metrics": {
            "purchase": {"fact_source": "orders", "window_hours": WINDOW_HOURS},
            "revenue": {
                "fact_source": "orders",
                "column": "amount",
                "aggregation": "sum",
                "window_hours": WINDOW_HOURS,
            },
            "orders": {
                "fact_source": "orders",
                "aggregation": "count",
                "window_hours": WINDOW_HOURS,
            },
        },
    }
}
METRICS = [("purchase", True), ("revenue", False), ("orders", False)]


def _check(rows: list[Row], expected: dict[str, dict[str, object]], **which: str) -> None:
    counters = counters_of(rows, **which)
    for arm in VARIANTS:
        got, want = counters[arm], expected[arm]
        assert got.unique_units == got.assigned_units == want["units"]
        assert got.exposures == want["exposures"]
        for metric, _ in METRICS:
            totals = got.metrics[metric]
            count, units, total, squares = want[metric]  # type: ignore[misc]
            assert (totals.count, totals.units) == (count, units), metric
            assert totals.sum == pytest.approx(total, rel=1e-12), metric
            assert totals.sum_squares == pytest.approx(squares, rel=1e-12), metric


@pytest.mark.parametrize("name", ENGINES)
def test_the_plan_gives_the_unit_level_sums_on_every_engine(name: str, tmp_path: Path) -> None:
    data = simulate(units=300, seed=7)
    with warehouse(name, data, tmp_path) as url:
        engine = open_engine(url)
        try:
            plan = build_plan(
                experiment_key=KEY,
                variants=VARIANTS,
                options=warehouse_options(SETTINGS, METRICS),
                sources=SOURCES,
            )
            rows = [Row.read(r) for r in run(engine, plan.statement, timeout_seconds=120, what="t")]
        finally:
            engine.dispose()
    _check(rows, reference(data))
    for country in COUNTRIES:
        _check(rows, reference(data, country=country), dimension=country)
    assert {r.day for r in rows} == {at.date().isoformat() for (_, at, _) in data.first().values()}
