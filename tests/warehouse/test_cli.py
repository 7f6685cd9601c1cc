"""The warehouse from the CLI (``abpilot warehouse sources|refresh|check``, ``abpilot
analyze``), from a sources file loaded at start-up, and from the scheduler's job."""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import abpilot
from abpilot.api import create_app
from abpilot.cli import app
from abpilot.service import compose
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.warehouse.engines import warehouse
from tests.warehouse.simulated import ASSIGNMENT_SQL, KEY, ORDERS_SQL, VARIANTS, simulate

runner = CliRunner()
SOURCES = {
    "sources": [
        {"name": "exposures", "kind": "assignment", "sql": ASSIGNMENT_SQL},
        {"name": "orders", "kind": "fact", "sql": ORDERS_SQL, "columns": ["amount"]},
    ]
}
METRICS = [
    {"key": "revenue", "kind": "value", "fact_source": "orders", "column": "amount",
     "aggregation": "sum", "window_hours": 72},
]  # fmt: skip


def test_the_cli_stores_checks_and_refreshes(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump(SOURCES), encoding="utf-8")
    store = f"sqlite:///{tmp_path / 'abpilot.db'}"
    with warehouse("duckdb", simulate(units=150, seed=5), tmp_path) as url:
        env = {"WAREHOUSE_URL": url, "DATABASE_URL": store}
        listed = runner.invoke(app, ["warehouse", "sources", "--file", str(sources)], env=env)
        assert listed.exit_code == 0, listed.output
        assert "stored 2 source(s)" in listed.output
        assert "exposures" in listed.output
        with abpilot.open(store, warehouse_url=url) as service:
            service.create_experiment(
                key=KEY,
                variants=[{"key": v} for v in VARIANTS],
                metrics=METRICS,
                source="warehouse",
                assignment_source="exposures",
            )
            service.start_experiment(KEY)
        checked = runner.invoke(app, ["warehouse", "check"], env=env)
        assert checked.exit_code == 0, checked.output
        assert "ok exposures" in checked.output
        assert "ok orders" in checked.output
        refreshed = runner.invoke(app, ["warehouse", "refresh", KEY], env=env)
        assert refreshed.exit_code == 0, refreshed.output
        assert "150 units" in refreshed.output
        analysed = runner.invoke(app, ["analyze", KEY, "--json"], env=env)
        assert analysed.exit_code == 0, analysed.output
        assert '"units": 0' not in analysed.output
        bad = {"sources": [dict(SOURCES["sources"][1], sql="SELECT 1 AS unit_id")]}
        sources.write_text(yaml.safe_dump(bad), encoding="utf-8")
        refused = runner.invoke(app, ["warehouse", "sources", "--file", str(sources)], env=env)
        assert refused.exit_code == 2
        assert "no column 'timestamp'" in refused.output
        missing = runner.invoke(app, ["warehouse", "refresh", "nope"], env=env)
        assert missing.exit_code == 2


def test_sources_load_at_start_up_and_the_leader_refreshes(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump(SOURCES), encoding="utf-8")
    with warehouse("duckdb", simulate(units=120, seed=6), tmp_path) as url:
        settings = Settings(
            store="memory",
            scheduler_enabled=False,
            warehouse_url=url,
            warehouse_sources_file=sources,
        )
        store = MemoryStore()
        with TestClient(create_app(settings, store=store)) as client:
            names = [s["name"] for s in client.get("/api/v1/warehouse/sources").json()]
            assert names == ["exposures", "orders"]
        services = compose.build(store, settings)
        assert services.warehouse is not None
        services.experiments.create_experiment(
            key=KEY,
            variants=[{"key": v} for v in VARIANTS],
            metrics=METRICS,
            source="warehouse",
            assignment_source="exposures",
        )
        services.experiments.start_experiment(KEY)
        assert services.experiments.warehouse.state(KEY).refresh is None
        services.warehouse.job()
        state = services.experiments.warehouse.state(KEY)
        assert state.refresh is not None
        assert state.refresh.row_counts["units"] == 120
        without = compose.build(MemoryStore(), Settings(store="memory"))
        assert without.warehouse is None
