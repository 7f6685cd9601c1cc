"""The warehouse faces over REST: sources (admin only, checked on creation), experiments with
``"source": "warehouse"``, refreshes, and hostile sources: a missing column, wrong types, a
failing query, a timeout. Clear 4xx errors naming the field; the previous refresh is kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from abpilot.api import create_app
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.warehouse.engines import warehouse
from tests.warehouse.simulated import ASSIGNMENT_SQL, KEY, ORDERS_SQL, VARIANTS, simulate

API = "/api/v1"
ADMIN = {"X-API-Key": "adm-key"}
WRITER = {"X-API-Key": "wr-key"}


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with warehouse("duckdb", simulate(units=200, seed=3), tmp_path) as found:
        yield found


def client_for(url: str | None, **settings: Any) -> TestClient:
    app = create_app(
        Settings(
            store="memory",
            scheduler_enabled=False,
            api_keys="admin:adm-key, write:wr-key",
            warehouse_url=url,
            **settings,
        ),
        store=MemoryStore(),
    )
    return TestClient(app)


ASSIGNMENT = {
    "name": "exposures",
    "kind": "assignment",
    "sql": ASSIGNMENT_SQL,
    "dimensions": ["country"],
}
ORDERS = {"name": "orders", "kind": "fact", "sql": ORDERS_SQL}


def experiment(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": KEY,
        "variants": [{"key": v} for v in VARIANTS],
        "source": "warehouse",
        "assignment_source": "exposures",
        "metrics": [
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
    }
    body.update(overrides)
    return body


def ready(client: TestClient) -> None:
    for source in (ASSIGNMENT, ORDERS):
        answer = client.post(f"{API}/warehouse/sources", json=source, headers=ADMIN)
        assert answer.status_code == 201, answer.text
    created = client.post(f"{API}/experiments", json=experiment(), headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["source"] == "warehouse"
    started = client.put(
        f"{API}/experiments/{KEY}/status", json={"status": "running"}, headers=ADMIN
    )
    assert started.status_code == 200, started.text


def error(answer: Any) -> dict[str, Any]:
    found: dict[str, Any] = answer.json()["error"]
    return found


def test_sources_are_admin_writes_checked_in_the_warehouse(url: str) -> None:
    with client_for(url) as client:
        refused = client.post(f"{API}/warehouse/sources", json=ASSIGNMENT, headers=WRITER)
        assert refused.status_code == 403
        missing = dict(
            ASSIGNMENT, sql="SELECT user_id AS unit_id, exposed_at AS timestamp FROM exposures"
        )
        answer = client.post(f"{API}/warehouse/sources", json=missing, headers=ADMIN)
        assert answer.status_code == 422
        assert error(answer)["field"] == "columns.experiment_key"
        assert "no column 'experiment_key'" in error(answer)["message"]
        failing = dict(ORDERS, sql="SELECT * FROM no_such_table")
        answer = client.post(f"{API}/warehouse/sources", json=failing, headers=ADMIN)
        assert answer.status_code == 422
        assert error(answer)["field"] == "sql"
        assert "no_such_table" in error(answer)["message"]
        two = dict(ORDERS, sql="SELECT 1; DROP TABLE orders")
        answer = client.post(f"{API}/warehouse/sources", json=two, headers=ADMIN)
        assert (answer.status_code, error(answer)["field"]) == (422, "sql")
        assert client.get(f"{API}/warehouse/sources", headers=ADMIN).json() == []
        stored = client.post(f"{API}/warehouse/sources", json=ASSIGNMENT, headers=ADMIN)
        assert stored.status_code == 201
        listed = client.get(f"{API}/warehouse/sources", headers=WRITER).json()
        assert [s["name"] for s in listed] == ["exposures"]


def test_a_refresh_feeds_the_analysis_and_a_failed_one_keeps_the_previous(url: str) -> None:
    with client_for(url) as client:
        ready(client)
        before = client.get(f"{API}/experiments/{KEY}/analysis", headers=ADMIN).json()
        assert all(v["units"] == 0 for v in before["variants"])
        done = client.post(f"{API}/experiments/{KEY}/refresh", headers=ADMIN)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["row_counts"]["units"] > 0
        assert "first_exposure" in body["sql"]
        assert body["parameters"]["experiment_key"] == KEY
        assert KEY not in body["sql"]  # a bound parameter, not in the text
        analysis = client.get(f"{API}/experiments/{KEY}/analysis", headers=ADMIN).json()
        assert sum(v["units"] for v in analysis["variants"]) == body["row_counts"]["units"]
        # wrong types: amount as text
        bad = dict(
            ORDERS,
            sql="SELECT user_id AS unit_id, ordered_at AS timestamp, "
            "CAST(amount AS VARCHAR) || 'EUR' AS amount FROM orders",
        )
        assert client.post(f"{API}/warehouse/sources", json=bad, headers=ADMIN).status_code == 201
        failed = client.post(f"{API}/experiments/{KEY}/refresh", headers=ADMIN)
        assert failed.status_code == 422
        assert error(failed)["field"] == "columns.amount"
        state = client.get(f"{API}/experiments/{KEY}/refresh", headers=ADMIN).json()
        assert state["refresh"]["refreshed_at"] == body["refreshed_at"]
        assert state["failure"]["field"] == "columns.amount"
        again = client.get(f"{API}/experiments/{KEY}/analysis", headers=ADMIN).json()
        assert again["variants"] == analysis["variants"]
        # a query that fails at run time (a missing column of the metric)
        gone = dict(ORDERS, sql="SELECT user_id AS unit_id, ordered_at AS timestamp FROM orders")
        assert client.post(f"{API}/warehouse/sources", json=gone, headers=ADMIN).status_code == 201
        failed = client.post(f"{API}/experiments/{KEY}/refresh", headers=ADMIN)
        assert (failed.status_code, error(failed)["field"]) == (422, "columns.amount")
        # back to a good source: the failure is cleared
        assert (
            client.post(f"{API}/warehouse/sources", json=ORDERS, headers=ADMIN).status_code == 201
        )
        assert client.post(f"{API}/experiments/{KEY}/refresh", headers=ADMIN).status_code == 200
        state = client.get(f"{API}/experiments/{KEY}/refresh", headers=ADMIN).json()
        assert state["failure"] is None


def test_a_refresh_that_runs_too_long_is_stopped_and_the_previous_kept(url: str) -> None:
    with client_for(url, warehouse_timeout_seconds=1.0) as client:
        ready(client)
        assert client.post(f"{API}/experiments/{KEY}/refresh", headers=ADMIN).status_code == 200
        slow = dict(
            ORDERS,
            sql="SELECT o.user_id AS unit_id, o.ordered_at AS timestamp, o.amount + r.range AS "
            "amount FROM orders o, range(2000000000) r",
        )
        assert client.post(f"{API}/warehouse/sources", json=slow, headers=ADMIN).status_code == 201
        stopped = client.post(f"{API}/experiments/{KEY}/refresh", headers=ADMIN)
        assert stopped.status_code == 409
        assert error(stopped)["code"] == "warehouse_timeout"
        state = client.get(f"{API}/experiments/{KEY}/refresh", headers=ADMIN).json()
        assert state["refresh"] is not None
        assert state["failure"]["code"] == "warehouse_timeout"


def test_bad_warehouse_experiments_are_refused_naming_the_field(url: str) -> None:
    with client_for(url) as client:
        no_source = experiment(assignment_source=None)
        answer = client.post(f"{API}/experiments", json=no_source, headers=ADMIN)
        assert (answer.status_code, error(answer)["field"]) == (422, "assignment_source")
        metrics = [{"key": "revenue", "kind": "value", "column": "amount"}]
        answer = client.post(f"{API}/experiments", json=experiment(metrics=metrics), headers=ADMIN)
        assert (answer.status_code, error(answer)["field"]) == (422, "metrics[0].fact_source")
        metrics = [{"key": "revenue", "kind": "value", "fact_source": "orders"}]
        answer = client.post(f"{API}/experiments", json=experiment(metrics=metrics), headers=ADMIN)
        assert (answer.status_code, error(answer)["field"]) == (422, "metrics[0].column")
        events = experiment(source=None, assignment_source=None)
        answer = client.post(f"{API}/experiments", json=events, headers=ADMIN)
        assert (answer.status_code, error(answer)["field"]) == (422, "metrics[0].fact_source")
        plain = {"key": "plain", "variants": [{"key": "a"}, {"key": "b"}]}
        assert client.post(f"{API}/experiments", json=plain, headers=ADMIN).status_code == 201
        answer = client.post(f"{API}/experiments/plain/refresh", headers=ADMIN)
        assert (answer.status_code, error(answer)["field"]) == (422, "source")
        assert client.get(f"{API}/experiments", headers=ADMIN).json()[0]["key"] == "plain"


def test_without_a_warehouse_the_routes_say_so() -> None:
    with client_for(None) as client:
        answer = client.post(f"{API}/warehouse/sources", json=ASSIGNMENT, headers=ADMIN)
        assert answer.status_code == 409
        assert error(answer)["field"] == "WAREHOUSE_URL"


def test_a_refresh_can_run_off_the_request_path(url: str) -> None:
    import time

    with client_for(url) as client:
        ready(client)
        started = client.post(f"{API}/experiments/{KEY}/refresh?wait=false", headers=ADMIN)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 60
        state = started.json()
        while state["refresh"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
            state = client.get(f"{API}/experiments/{KEY}/refresh", headers=ADMIN).json()
        assert state["refresh"]["row_counts"]["units"] > 0
        assert state["failure"] is None


def test_dimensions_break_a_warehouse_analysis_down_and_dimension_is_their_alias(
    url: str,
) -> None:
    with client_for(url) as client:
        for source in (ASSIGNMENT, ORDERS):
            assert client.post(f"{API}/warehouse/sources", json=source, headers=ADMIN).is_success
        both = client.post(
            f"{API}/experiments",
            json=experiment(dimension="country", dimensions=["country", "arm"]),
            headers=ADMIN,
        )
        assert (both.status_code, error(both)["field"]) == (422, "dimension")
        not_a_column = client.post(
            f"{API}/experiments", json=experiment(dimensions=["country-code"]), headers=ADMIN
        )
        assert (not_a_column.status_code, error(not_a_column)["field"]) == (422, "dimensions[0]")
        aliased = client.post(f"{API}/experiments", json=experiment(dimension="country"),
                              headers=ADMIN)  # fmt: skip
        assert aliased.status_code == 201, aliased.text
        assert aliased.json()["dimensions"] == ["country"]  # shown as the list
        client.put(f"{API}/experiments/{KEY}/status", json={"status": "running"}, headers=ADMIN)
        done = client.post(f"{API}/experiments/{KEY}/refresh", headers=ADMIN)
        assert done.status_code == 200, done.text
        assert done.json()["segments"] == {"country": ["de", "fr", "us"]}
        found = client.get(
            f"{API}/experiments/{KEY}/analysis", params={"dimension": "country"}, headers=ADMIN
        )
        assert found.status_code == 200, found.text
        segments = found.json()["segments"]["segments"]
        assert [s["value"] for s in segments] == ["de", "fr", "us"]
        overall = found.json()["variants"]
        by_segment = [sum(v["units"] for v in s["analysis"]["variants"]) for s in segments]
        assert sum(by_segment) == sum(v["units"] for v in overall)
        unknown = client.get(
            f"{API}/experiments/{KEY}/analysis", params={"dimension": "arm"}, headers=ADMIN
        )
        assert (unknown.status_code, error(unknown)["field"]) == (422, "dimension")
