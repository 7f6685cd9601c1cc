"""OFREP and the FeatureVisor companion: the companion's feature experiments are not OFREP flags.

The official FeatureVisor SDKs choose a unit's variation from the served datafile (their own hash,
segments and rules), and ``/expose`` counts a unit under its first recorded variation. An OFREP
evaluation by abpilot's hash would record a variation the SDK never showed, so a bulk evaluation
leaves those experiments out and a single one is refused; ``/expose`` then counts what the SDK
(the official Python SDK ``featurevisor``) shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import featurevisor
import pytest
from fastapi.testclient import TestClient

from abpilot.api import create_app
from abpilot.domain.errors import Conflict
from abpilot.settings import Settings
from tests.api.datafile_sample import DATAFILE, FEATURE
from tests.conftest import StoreFactory

API = "/api/v1"
OFREP = "/ofrep/v1/evaluate/flags"
PATH = "production/v2.json"
UNITS = [f"user-{i}" for i in range(40)]  # user-13 is control for the SDK


@pytest.fixture
def client(store_factory: StoreFactory, tmp_path: Path) -> Iterator[TestClient]:
    root = tmp_path / "datafiles"
    (root / "production").mkdir(parents=True)
    (root / PATH).write_text(json.dumps(DATAFILE))
    settings = Settings(
        store="memory", datafiles_dir=root, scheduler_enabled=False, experiment_cache_seconds=0
    )
    with TestClient(create_app(settings, store=store_factory())) as test_client:
        yield test_client


def sdk_variations(client: TestClient) -> dict[str, str]:
    """What the official Python SDK shows each unit, from the datafile the companion serves."""
    served = client.get(f"/datafile/{PATH}")
    assert served.status_code == 200
    sdk = featurevisor.create_featurevisor({"datafile": served.json(), "logLevel": "fatal"})
    shown = {u: sdk.get_variation(FEATURE, {"userId": u}) for u in UNITS}
    assert set(shown.values()) == {"control", "treatment"}
    return {u: str(v) for u, v in shown.items()}


def feature_stats(client: TestClient) -> dict[str, Any]:
    stats = client.get("/stats", params={"datafile": PATH, "feature": FEATURE})
    assert stats.status_code == 200, stats.text
    (feature,) = stats.json()["features"]
    return dict(feature)


def test_after_a_bulk_evaluation_expose_counts_what_the_sdk_shows(client: TestClient) -> None:
    created = client.post(
        f"{API}/experiments",
        json={
            "key": "checkout",
            "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        },
    )
    assert created.status_code == 201, created.text
    client.put(f"{API}/experiments/checkout/status", json={"status": "running"})
    shown = sdk_variations(client)
    assert shown["user-13"] == "control"

    for unit in UNITS:
        bulk = client.post(OFREP, json={"context": {"targetingKey": unit, "userId": unit}})
        assert bulk.status_code == 200, bulk.text
        assert [f["key"] for f in bulk.json()["flags"]] == ["checkout"]
    for unit in UNITS:
        body = {"datafile": PATH, "unit_id": unit, "features": {FEATURE: shown[unit]}}
        assert client.post("/expose", json=body).status_code == 200

    counted = {v["value"]: v["exposures"] for v in feature_stats(client)["variations"]}
    expected = {value: list(shown.values()).count(value) for value in ("control", "treatment")}
    assert counted == expected


def test_a_single_evaluation_of_a_feature_experiment_is_refused_and_records_nothing(
    client: TestClient,
) -> None:
    key = feature_stats(client)["experiment_key"]
    assert key.startswith("fv-")
    response = client.post(f"{OFREP}/{key}", json={"context": {"targetingKey": "user-13"}})
    assert response.status_code == 400
    assert response.json()["key"] == key
    assert response.json()["errorCode"] == "GENERAL"
    assert "evaluated by the FeatureVisor SDKs" in response.json()["errorDetails"]
    metrics = client.get(f"{API}/experiments/{key}/metrics").json()
    assert sum(v["assigned_units"] for v in metrics["variants"]) == 0

    # user-13 is then counted where the SDK puts it (control), not where abpilot's hash would.
    shown = sdk_variations(client)["user-13"]
    body = {"datafile": PATH, "unit_id": "user-13", "features": {FEATURE: shown}}
    assert client.post("/expose", json=body).status_code == 200
    counted = {v["value"]: v["exposures"] for v in feature_stats(client)["variations"]}
    assert counted == {"control": 1, "treatment": 0}


def test_the_api_never_assigns_a_feature_experiments_units_by_abpilots_hash(
    client: TestClient,
) -> None:
    """``/assign``, an exposure without a variation and the Python API refuse (409), so no
    stored assignment can disagree with the SDK; ``/expose`` then counts what the SDK shows."""
    key = feature_stats(client)["experiment_key"]
    assigned = client.post(f"{API}/experiments/{key}/assign", json={"unit_id": "user-13"})
    assert assigned.status_code == 409, assigned.text
    assert "FeatureVisor SDKs" in assigned.json()["error"]["message"]
    exposed = client.post(f"{API}/experiments/{key}/exposures", json={"unit_id": "user-13"})
    assert exposed.status_code == 409, exposed.text
    service = client.app.state.service  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        service.get_variant_for_user(key, "user-13", record=False)
    metrics = client.get(f"{API}/experiments/{key}/metrics").json()
    assert sum(v["assigned_units"] for v in metrics["variants"]) == 0

    shown = sdk_variations(client)["user-13"]
    body = {"datafile": PATH, "unit_id": "user-13", "features": {FEATURE: shown}}
    assert client.post("/expose", json=body).status_code == 200
    counted = {v["value"]: v["exposures"] for v in feature_stats(client)["variations"]}
    assert counted == {"control": 1, "treatment": 0}
