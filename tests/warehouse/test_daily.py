"""A bandit fed daily totals from the warehouse (the MAB API's flow): each refresh records the
days whose impressions and clicks changed, as a post of each day would; the allocation reads
them as it reads posted days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from abpilot.domain.errors import AbpilotError
from abpilot.service import ExperimentService
from abpilot.store.memory import MemoryStore

D1 = datetime.now(UTC).date() - timedelta(days=2)  # in the daily window, which ends today
D2 = datetime.now(UTC).date() - timedelta(days=1)
DAILY_SQL = (
    "SELECT experiment AS experiment_key, day, arm AS variant, shown AS impressions, "
    "clicked AS clicks FROM mab_daily"
)


def test_a_daily_source_feeds_the_bandit_s_days(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'mab.duckdb'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE mab_daily (experiment VARCHAR, day DATE, arm VARCHAR, shown BIGINT, "
            "clicked BIGINT)"
        )
        connection.exec_driver_sql(
            "INSERT INTO mab_daily VALUES "
            f"('banner', '{D1}', 'a', 600, 30), ('banner', '{D1}', 'b', 400, 40), "
            f"('banner', '{D2}', 'a', 500, 20), ('banner', '{D2}', 'b', 250, 30), "
            f"('banner', '{D2}', 'b', 250, 10), ('other', '{D2}', 'a', 9, 9)"
        )
    engine.dispose()
    service = ExperimentService(MemoryStore(), warehouse_url=url)
    service.warehouse.put_source({"name": "mab_daily", "kind": "daily", "sql": DAILY_SQL})
    service.create_experiment(
        key="banner",
        type="bandit",
        variants=[{"key": "a"}, {"key": "b"}],
        source="warehouse",
        daily_source="mab_daily",
    )
    service.start_experiment("banner")
    first = service.warehouse.refresh("banner")
    assert first.daily_days == (D1.isoformat(), D2.isoformat())
    _, days = service.get_history("banner")
    assert {(d.day, d.variant): (d.impressions, d.clicks) for d in days} == {
        (D1, "a"): (600, 30),
        (D1, "b"): (400, 40),
        (D2, "a"): (500, 20),
        (D2, "b"): (500, 40),
    }
    assert service.warehouse.refresh("banner").daily_days == ()  # nothing changed
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE mab_daily SET clicked = 45 WHERE arm = 'b' AND day = '{D1}'"
        )
    engine.dispose()
    assert service.warehouse.refresh("banner").daily_days == (D1.isoformat(),)
    allocation = service.get_allocation("banner")
    assert allocation.weights["b"] > allocation.weights["a"]
    # a daily source of the wrong type: refused, the recorded days kept
    bad = DAILY_SQL.replace("shown AS impressions", "CAST(shown AS VARCHAR) AS impressions")
    service.warehouse.put_source({"name": "mab_daily", "kind": "daily", "sql": bad})
    with pytest.raises(AbpilotError) as refused:
        service.warehouse.refresh("banner")
    assert refused.value.field == "columns.impressions"
    assert len(service.get_history("banner")[1]) == 4
    service.close()
