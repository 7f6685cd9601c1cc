"""The plan compiled by the dialects of engines the suite cannot run (BigQuery, Databricks),
and by those it runs, against reviewed snapshots in ``snapshots/``: a change to the plan or to
a dialect override shows as a diff to review. ``ABPILOT_UPDATE_SNAPSHOTS=1`` rewrites them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Dialect

from abpilot.warehouse.plan import build_plan
from abpilot.warehouse.spec import Source, SourceKind, warehouse_options
from tests.warehouse.test_engines import METRICS, SETTINGS

HERE = Path(__file__).parent / "snapshots"
SOURCES = {
    "exposures": Source(
        "exposures",
        SourceKind.ASSIGNMENT,
        "SELECT user_id AS unit_id, experiment AS experiment_key, arm AS variant, "
        "exposed_at AS timestamp, country, pre_revenue FROM analytics.exposures",
        dimensions=("country",),
    ),
    "orders": Source(
        "orders",
        SourceKind.FACT,
        "SELECT user_id AS unit_id, ordered_at AS timestamp, amount FROM analytics.orders",
    ),
    "orders_again": Source(
        "orders_again",
        SourceKind.FACT,
        "SELECT user_id AS unit_id, ordered_at AS timestamp FROM analytics.orders",
    ),
}


def _dialect(name: str) -> Dialect:
    if name == "bigquery":
        from sqlalchemy_bigquery import BigQueryDialect

        found: Any = BigQueryDialect()
    elif name == "databricks":
        from databricks.sqlalchemy import DatabricksDialect

        found = DatabricksDialect()
    elif name == "clickhousedb":
        from clickhouse_connect.cc_sqlalchemy.dialect import ClickHouseDialect

        found = ClickHouseDialect()
    elif name == "duckdb":
        from duckdb_engine import Dialect as DuckDBDialect

        found = DuckDBDialect()
    else:
        from sqlalchemy.dialects import postgresql

        found = postgresql.dialect()
    return found  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["bigquery", "databricks", "clickhousedb", "duckdb", "postgresql"])
def test_the_compiled_plan_matches_its_reviewed_snapshot(name: str) -> None:
    plan = build_plan(
        experiment_key="checkout",
        variants=("control", "treatment"),
        options=warehouse_options(SETTINGS, METRICS),
        sources=SOURCES,
    )
    compiled = plan.statement.compile(dialect=_dialect(name))
    text = str(compiled).strip() + "\n"
    assert "checkout" not in text  # every value abpilot adds is a bound parameter
    path = HERE / f"{name}.sql"
    if os.environ.get("ABPILOT_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(text, encoding="utf-8")
        if os.environ.get("ABPILOT_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"{path.name} was missing and has been written: review and commit it")
    assert text == path.read_text(encoding="utf-8")
