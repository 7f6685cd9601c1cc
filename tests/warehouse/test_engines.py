"""The query plan on real engines: DuckDB, PostgreSQL, Snowflake's SQL (fakesnow), ClickHouse's
SQL (chDB). Each holds the simulated tables; the plan's aggregates equal those computed in
NumPy from the unit-level rows (``simulated.reference``), overall and per dimension value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from abpilot.domain import derived
from abpilot.domain.experiment import Metric, MetricKind
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
    derived_reference,
    reference,
    simulate,
)

SOURCES = {
    "exposures": Source(
        "exposures", SourceKind.ASSIGNMENT, ASSIGNMENT_SQL, dimensions=("country",)
    ),
    "orders": Source("orders", SourceKind.FACT, ORDERS_SQL),
    # the same rows as another source: a ratio whose parts are in two per-unit CTEs
    "orders_again": Source("orders_again", SourceKind.FACT, ORDERS_SQL),
}
CAP, QUANTILE = 60.0, 0.9
_REVENUE = {
    "fact_source": "orders",
    "column": "amount",
    "aggregation": "sum",
    "window_hours": WINDOW_HOURS,
}
SETTINGS = {
    "warehouse": {
        "assignment_source": "exposures",
        "dimension": "country",
        "metrics": {
            "purchase": {"fact_source": "orders", "window_hours": WINDOW_HOURS},
            "revenue": _REVENUE,
            "orders": {
                "fact_source": "orders",
                "aggregation": "count",
                "window_hours": WINDOW_HOURS,
            },
            "revenue_capped": _REVENUE,
            "revenue_p90": _REVENUE,
            "items": {
                "fact_source": "orders_again",
                "aggregation": "count",
                "window_hours": WINDOW_HOURS,
            },
        },
    }
}
PLAIN = ("purchase", "revenue", "orders")  # compared with ``reference``
METRICS = [
    Metric("purchase", MetricKind.BINARY, covariate="pre_revenue"),
    Metric("revenue", MetricKind.VALUE, covariate="pre_revenue"),
    Metric("orders", MetricKind.VALUE),
    Metric("revenue_capped", MetricKind.VALUE, cap_absolute=CAP),
    Metric("revenue_p90", MetricKind.VALUE, cap_percentile=QUANTILE),
    Metric("items", MetricKind.VALUE),
    Metric("aov", MetricKind.RATIO, numerator="revenue", denominator="orders"),
    Metric("aov_joined", MetricKind.RATIO, numerator="revenue", denominator="items"),
]


def _check(rows: list[Row], expected: dict[str, dict[str, object]], **which: str) -> None:
    counters = counters_of(rows, **which)
    for arm in VARIANTS:
        got, want = counters[arm], expected[arm]
        assert got.unique_units == got.assigned_units == want["units"]
        assert got.exposures == want["exposures"]
        for metric in PLAIN:
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
    _check_derived(rows, derived_reference(data, cap=CAP, quantile=QUANTILE))
    for country in COUNTRIES:
        _check(rows, reference(data, country=country), dimension=country)
    assert {r.day for r in rows if r.variant} == {
        at.date().isoformat() for (_, at, _) in data.first().values()
    }


def _check_derived(rows: list[Row], expected: dict[str, Any]) -> None:
    """The derived cells against NumPy on the unit-level rows: covariate sums, Σxy, capped
    sums (absolute, and at the percentile threshold computed in the warehouse), Σ N·D."""
    counters = counters_of(rows)
    kept = derived.kept_threshold(counters.values(), "revenue_p90")
    assert kept is not None
    assert (kept.count, kept.units) == (1, expected["units"])
    assert kept.sum == pytest.approx(expected["threshold"], rel=1e-12)
    for arm in VARIANTS:
        got, want = counters[arm], expected[arm]
        x = derived.covariate_sums(got, "pre_revenue")
        assert x.units == want["x"][0]
        assert (x.sum, x.sum_squares) == pytest.approx(want["x"][1:], rel=1e-12)
        assert derived.cross_sum(got, "revenue") == pytest.approx(want["xy"], rel=1e-12)
        capped = derived.capped_totals(got, "revenue_capped")
        assert (capped.sum, capped.sum_squares) == pytest.approx(want["capped"], rel=1e-12)
        at = derived.capped_totals(got, "revenue_p90")
        assert (at.sum, at.sum_squares) == pytest.approx(want["percentile"], rel=1e-12)
        for ratio in ("aov", "aov_joined"):
            assert derived.ratio_cross_sum(got, ratio) == pytest.approx(want["nd"], rel=1e-12)
        assert set(got.metrics) == {m.key for m in METRICS if m.kind is not MetricKind.RATIO}
