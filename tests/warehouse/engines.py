"""The warehouses the tests run on, each a context manager giving a SQLAlchemy URL of an
engine holding the simulated tables: DuckDB (a file), PostgreSQL (a schema of the real server,
as tests/conftest.py makes them), Snowflake's SQL through fakesnow (DuckDB behind the
Snowflake connector), ClickHouse's SQL through chdb (in process, ``clickhousedb+chdb://``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import postgres_schema_url
from tests.warehouse.simulated import Simulated, load

ENGINES = ("duckdb", "postgresql", "snowflake", "clickhouse")


@contextlib.contextmanager
def warehouse(name: str, data: Simulated, tmp_path: Path) -> Iterator[str]:
    makers: dict[str, Callable[[Simulated, Path], contextlib.AbstractContextManager[str]]] = {
        "duckdb": _duckdb,
        "postgresql": _postgresql,
        "snowflake": _snowflake,
        "clickhouse": _clickhouse,
    }
    with makers[name](data, tmp_path) as url:
        yield url


@contextlib.contextmanager
def _duckdb(data: Simulated, tmp_path: Path) -> Iterator[str]:
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    engine = sa.create_engine(url)
    load(engine, data)
    engine.dispose()
    yield url


@contextlib.contextmanager
def _postgresql(data: Simulated, tmp_path: Path) -> Iterator[str]:
    with postgres_schema_url() as url:
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        load(engine, data)
        engine.dispose()
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextlib.contextmanager
def _snowflake(data: Simulated, tmp_path: Path) -> Iterator[str]:
    import fakesnow

    import tests.warehouse.fakesnow_dialect  # noqa: F401 - registers snowflake+fakesnow

    (tmp_path / "snow").mkdir()
    with fakesnow.patch(db_path=str(tmp_path / "snow"), create_database_on_connect=True):
        url = "snowflake+fakesnow://user:password@account/analytics/public"
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS analytics.public")
        load(engine, data)
        engine.dispose()
        yield url


@contextlib.contextmanager
def _clickhouse(data: Simulated, tmp_path: Path) -> Iterator[str]:
    from abpilot.warehouse import chdb as chdb_dialect

    path = tmp_path / "clickhouse"
    url = f"clickhousedb+chdb:///{path}"
    connection = chdb_dialect.connect(str(path))
    try:
        cursor = connection.cursor()
        cursor.execute(
            "CREATE TABLE exposures (user_id String, experiment String, arm String, "
            "exposed_at DateTime64(6), country String, pre_revenue Nullable(Float64)) "
            "ENGINE = MergeTree ORDER BY user_id"
        )
        cursor.execute(
            "CREATE TABLE orders (user_id String, ordered_at DateTime64(6), amount Float64) "
            "ENGINE = MergeTree ORDER BY user_id"
        )
        _insert(
            cursor,
            "exposures",
            [(u, e, a, t.isoformat(sep=" "), c, x) for u, e, a, t, c, x in data.exposures],
        )
        _insert(cursor, "orders", [(u, t.isoformat(sep=" "), v) for u, t, v in data.orders])
    finally:
        connection.close()
    yield url


def _insert(cursor: object, table: str, rows: list[tuple[object, ...]]) -> None:
    def literal(value: object) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return repr(value)

    for start in range(0, len(rows), 500):
        values = ", ".join(
            "(" + ", ".join(literal(v) for v in row) + ")" for row in rows[start : start + 500]
        )
        cursor.execute(f"INSERT INTO {table} VALUES {values}")  # type: ignore[attr-defined]
