"""The same simulated experiment analysed twice: posted to abpilot as events, and loaded into
warehouse tables (DuckDB, PostgreSQL, Snowflake's SQL through fakesnow, ClickHouse's through
chDB) and refreshed from the warehouse. Both analyses (every metric: a binary one, a sum, a
count, both adjusted by a covariate, a sum capped at an absolute cap and at a percentile, a
ratio) agree to 1e-9, field by field."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from abpilot.domain.inputs import EventInput, EventKind
from abpilot.service import ExperimentService
from abpilot.store.memory import MemoryStore
from tests.warehouse.engines import ENGINES, warehouse
from tests.warehouse.simulated import (
    ASSIGNMENT_SQL,
    KEY,
    ORDERS_SQL,
    VARIANTS,
    WINDOW_HOURS,
    Simulated,
    simulate,
)

METRICS = ("purchase", "revenue", "orders", "revenue_capped", "revenue_p90", "aov")
REVENUES = ("revenue", "revenue_capped", "revenue_p90")  # the same values, posted to each


def plain_metrics() -> list[dict[str, Any]]:
    return [
        {"key": "purchase", "kind": "binary", "covariate": "pre_revenue"},
        {"key": "revenue", "kind": "value", "covariate": "pre_revenue"},
        {"key": "orders", "kind": "value"},
        {
            "key": "revenue_capped",
            "kind": "value",
            "cap": {"absolute": 60.0},
            "covariate": "pre_revenue",
        },
        {
            "key": "revenue_p90",
            "kind": "value",
            "cap": {"percentile": 0.9},
            "covariate": "pre_revenue",
        },
        {"key": "aov", "kind": "ratio", "numerator": "revenue", "denominator": "orders"},
    ]


def warehouse_metrics() -> list[dict[str, Any]]:
    window = {"fact_source": "orders", "window_hours": WINDOW_HOURS}
    revenue = {"column": "amount", "aggregation": "sum", **window}
    fields = {
        "purchase": window,
        "revenue": revenue,
        "orders": {"aggregation": "count", **window},
        "revenue_capped": revenue,
        "revenue_p90": revenue,
    }
    return [{**m, **fields.get(m["key"], {})} for m in plain_metrics()]


def sources(service: ExperimentService) -> None:
    service.warehouse.put_source(
        {
            "name": "exposures",
            "kind": "assignment",
            "sql": ASSIGNMENT_SQL,
            "dimensions": ["country"],
        }
    )
    service.warehouse.put_source(
        {"name": "orders", "kind": "fact", "sql": ORDERS_SQL, "columns": ["amount"]}
    )


def post_events(
    service: ExperimentService,
    data: Simulated,
    dimensions: Callable[[str, str], dict[str, str]] | None = None,
) -> None:
    """Exposures in time order (the first names the unit's variant; with ``dimensions``, the
    unit's dimensions from its id and country), then per unit in its window: each order's
    amount (revenue, and the capped revenues), a 1 per order (orders), one purchase."""
    events: list[EventInput] = [
        EventInput(
            EventKind.EXPOSURE,
            KEY,
            unit,
            arm,
            covariates=None if x is None else {"pre_revenue": x},
            dimensions=None if dimensions is None else dimensions(unit, country),
        )
        for unit, exp, arm, _, country, x in sorted(
            data.exposures, key=lambda r: (r[3], r[0], r[2])
        )
        if exp == KEY
    ]
    converted: set[str] = set()
    for unit, _, amount in data.in_window():
        events.extend(
            EventInput(EventKind.CONVERSION, KEY, unit, metric=m, value=amount) for m in REVENUES
        )
        events.append(EventInput(EventKind.CONVERSION, KEY, unit, metric="orders", value=1.0))
        if unit not in converted:
            converted.add(unit)
            events.append(EventInput(EventKind.CONVERSION, KEY, unit, metric="purchase"))
    for start in range(0, len(events), 5000):
        service.record_events(events[start : start + 5000])


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal field by field, numbers to 1e-9 (relative, or absolute near 0)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        for f in dataclasses.fields(a):
            same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float) and not isinstance(a, bool):
        if math.isnan(a):
            assert math.isnan(b), path
        else:
            assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


@pytest.mark.parametrize("engine", ENGINES)
def test_events_and_the_warehouse_give_the_same_analysis(engine: str, tmp_path: Path) -> None:
    data = simulate(units=800, seed=11)
    events = ExperimentService(MemoryStore())
    events.create_experiment(
        key=KEY, variants=[{"key": v} for v in VARIANTS], metrics=plain_metrics()
    )
    events.start_experiment(KEY)
    post_events(events, data)
    with warehouse(engine, data, tmp_path) as url:
        service = ExperimentService(MemoryStore(), warehouse_url=url)
        sources(service)
        service.create_experiment(
            key=KEY,
            variants=[{"key": v} for v in VARIANTS],
            metrics=warehouse_metrics(),
            source="warehouse",
            assignment_source="exposures",
            dimension="country",
        )
        service.start_experiment(KEY)
        done = service.warehouse.refresh(KEY)
        service.close()
        assert done.row_counts["units"] == len(data.first())
        assert done.row_counts["fact_rows"]["orders"] == len(list(data.in_window()))
        # a fresh service on the same store reads the stored refresh
        for metric in METRICS:
            same(
                events.analyze_experiment(KEY, metric=metric),
                service.analyze_experiment(KEY, metric=metric),
                metric,
            )
        same(events.get_metrics(KEY).variants, service.get_metrics(KEY).variants)


SEGMENTED_SQL = (
    "SELECT user_id AS unit_id, experiment AS experiment_key, arm AS variant, "
    "exposed_at AS timestamp, country, pre_revenue, "
    "CASE WHEN pre_revenue > 30 THEN 'high' ELSE 'low' END AS spend FROM exposures"
)


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_segments_of_two_dimensions_are_the_same_from_events_and_the_warehouse(
    engine: str, tmp_path: Path
) -> None:
    """``dimensions`` (a list) on a warehouse experiment: the analysis per segment of each
    (``analyze_segments``, ``?dimension=``) equals the one of the same exposures posted with
    their ``dimensions``, to 1e-9."""
    data = simulate(units=600, seed=12)
    first = data.covariate()  # each unit's pre-period revenue at its first exposure
    events = ExperimentService(MemoryStore())
    events.create_experiment(
        key=KEY,
        variants=[{"key": v} for v in VARIANTS],
        metrics=plain_metrics(),
        dimensions=["country", "spend"],
    )
    events.start_experiment(KEY)
    post_events(events, data, dimensions=lambda unit, country: {
        "country": country, "spend": "high" if first[unit] > 30 else "low",
    })  # fmt: skip
    with warehouse(engine, data, tmp_path) as url:
        service = ExperimentService(MemoryStore(), warehouse_url=url)
        sources(service)
        service.warehouse.put_source(
            {"name": "segmented", "kind": "assignment", "sql": SEGMENTED_SQL}
        )
        service.create_experiment(
            key=KEY,
            variants=[{"key": v} for v in VARIANTS],
            metrics=warehouse_metrics(),
            source="warehouse",
            assignment_source="segmented",
            dimensions=["country", "spend"],
        )
        service.start_experiment(KEY)
        done = service.warehouse.refresh(KEY)
        service.close()
    assert done.segment_values() == {"country": ["de", "fr", "us"], "spend": ["high", "low"]}
    for dimension in ("country", "spend"):
        for metric in ("revenue", "purchase", "revenue_capped", "aov"):
            same(
                events.analyze_segments(KEY, dimension=dimension, metric=metric),
                service.analyze_segments(KEY, dimension=dimension, metric=metric),
                f"{dimension}.{metric}",
            )
    same(events.analyze_experiment(KEY), service.analyze_experiment(KEY))
