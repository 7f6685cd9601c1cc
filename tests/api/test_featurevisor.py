"""The FeatureVisor companion over HTTP on every store: datafiles served with learned weights,
exposures and conversions, stats, recalculation, reloads and refusals."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import featurevisor
import pytest
from fastapi.testclient import TestClient

from abpilot.api import create_app
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.conftest import StoreFactory
from tests.fixtures import FEATUREVISOR_DATAFILES

V2 = "production/v2.json"
V1 = "production/v1.json"


@pytest.fixture
def datafiles(tmp_path: Path) -> Path:
    root = tmp_path / "datafiles"
    (root / "production").mkdir(parents=True)
    shutil.copy(FEATUREVISOR_DATAFILES / "v2-production.json", root / V2)
    shutil.copy(FEATUREVISOR_DATAFILES / "v1-production.json", root / V1)
    return root


@pytest.fixture
def client(store_factory: StoreFactory, datafiles: Path) -> Iterator[TestClient]:
    settings = Settings(
        store="memory",
        datafiles_dir=datafiles,
        scheduler_enabled=False,
        experiment_cache_seconds=0,
        min_exposures_for_update=100,
    )
    with TestClient(create_app(settings, store=store_factory())) as test_client:
        yield test_client


def feed(client: TestClient, path: str, feature: str, counts: dict[str, tuple[int, int]]) -> None:
    """``counts``: variation -> (exposures, conversions), sent in event-level form."""
    for variation, (exposures, conversions) in counts.items():
        for kind, n in (("expose", exposures), ("convert", conversions)):
            for _ in range(n):
                body = {"datafile": path, "features": {feature: variation}}
                response = client.post(f"/{kind}", json=body)
                assert response.status_code == 200, response.text


def split(datafile: dict[str, Any], feature: str, users: int = 100_000) -> dict[str | None, float]:
    sdk = featurevisor.create_featurevisor({"datafile": datafile, "logLevel": "fatal"})
    seen: dict[str | None, float] = {}
    for i in range(users):
        variation = sdk.get_variation(feature, {"userId": f"user-{i}", "country": "de"})
        seen[variation] = seen.get(variation, 0) + 1 / users
    return seen


def test_the_split_moves_toward_the_better_variation(client: TestClient) -> None:
    first = client.get(f"/datafile/{V2}")
    assert first.status_code == 200
    assert first.headers["cache-control"].startswith("public")
    assert first.json() == json.loads((FEATUREVISOR_DATAFILES / "v2-production.json").read_text())

    feed(client, V2, "checkoutButton", {"control": (150, 5), "treatment": (150, 30)})
    stats = client.get("/stats", params={"datafile": V2, "feature": "checkoutButton"}).json()
    (feature,) = stats["features"]
    by_value = {v["value"]: v for v in feature["variations"]}
    assert by_value["treatment"]["exposures"] == 150
    assert by_value["treatment"]["conversions"] == 30
    assert by_value["treatment"]["conversion_rate"] == pytest.approx(0.2)
    assert by_value["treatment"]["probability_best"] > 0.99
    assert by_value["treatment"]["weight"] == 0.5  # nothing recalculated yet
    assert (feature["period"], feature["updated_at"], feature["burn_in"]) == (0, None, False)

    outcomes = client.post("/recalculate").json()
    assert {o["status"] for o in outcomes} >= {"updated"}
    served = client.get(f"/datafile/{V2}")
    assert served.headers["etag"] != first.headers["etag"]
    document = served.json()
    assert document["revision"] == "1.1"
    weights = {
        v["value"]: v["weight"] for v in document["features"]["checkoutButton"]["variations"]
    }
    assert weights["treatment"] >= 98.0  # percent, floored at 1% for control
    # Within the 80% "everyone" rule, treatment's buckets are its learned share.
    rule = document["features"]["checkoutButton"]["traffic"][1]
    held = sum(
        a["range"][1] - a["range"][0] for a in rule["allocation"] if a["variation"] == "treatment"
    )
    assert held / rule["percentage"] == pytest.approx(weights["treatment"] / 100, abs=1e-4)

    # An unchanged datafile answers 304 to its ETag.
    again = client.get(f"/datafile/{V2}", headers={"If-None-Match": served.headers["etag"]})
    assert again.status_code == 304
    stats = client.get("/stats", params={"feature": "checkoutButton", "datafile": V2}).json()
    assert stats["features"][0]["period"] == 1
    assert stats["features"][0]["updated_at"] is not None


def test_the_official_python_sdk_follows_the_served_datafile(datafiles: Path) -> None:
    settings = Settings(store="memory", datafiles_dir=datafiles, scheduler_enabled=False)
    with TestClient(create_app(settings, store=MemoryStore())) as client:
        feed(client, V2, "checkoutButton", {"control": (150, 5), "treatment": (150, 30)})
        client.post("/recalculate")
        document = client.get(f"/datafile/{V2}").json()
    variations = document["features"]["checkoutButton"]["variations"]
    learned = {v["value"]: v["weight"] / 100 for v in variations}["treatment"]
    shares = split(document, "checkoutButton")
    assert shares[None] == pytest.approx(0.2, abs=0.005)
    assert shares["treatment"] / (1 - shares[None]) == pytest.approx(learned, abs=0.005)


def test_v1_datafiles_are_served_too(client: TestClient) -> None:
    feed(client, V1, "pricingPage", {"control": (120, 2), "b": (120, 20), "c": (120, 3)})
    client.post("/recalculate")
    document = client.get(f"/datafile/{V1}").json()
    assert document["schemaVersion"] == "1"
    pricing = next(f for f in document["features"] if f["key"] == "pricingPage")
    weights = {v["value"]: v["weight"] for v in pricing["variations"]}
    assert weights["b"] > 90
    assert sum(weights.values()) == pytest.approx(100)
    ranges = pricing["traffic"][0]["allocation"]
    b_share = sum(a["range"][1] - a["range"][0] for a in ranges if a["variation"] == "b")
    assert b_share / 100_000 == pytest.approx(weights["b"] / 100, abs=1e-4)


def test_burn_in_keeps_the_build(client: TestClient) -> None:
    feed(client, V2, "checkoutButton", {"control": (99, 0), "treatment": (99, 50)})
    assert {o["status"] for o in client.post("/recalculate").json()} == {"unchanged"}
    stats = client.get("/stats", params={"feature": "checkoutButton", "datafile": V2}).json()
    assert stats["features"][0]["burn_in"] is True
    assert client.get(f"/datafile/{V2}").json()["revision"] == "1"


def test_event_ids_count_once_and_units_count_where_they_first_were(client: TestClient) -> None:
    body = {"datafile": V2, "features": {"checkoutButton": "control"}, "event_id": "e-1"}
    assert client.post("/expose", json=body).json() == {
        "received": 1,
        "applied": 1,
        "duplicates": 0,
    }
    assert client.post("/expose", json=body).json() == {
        "received": 1,
        "applied": 0,
        "duplicates": 1,
    }
    unit = {"datafile": V2, "unit_id": "user-7"}
    client.post("/expose", json={**unit, "features": {"checkoutButton": "treatment"}})
    # After a weight change the SDK may move user-7; it still counts under its first variation.
    client.post("/expose", json={**unit, "features": {"checkoutButton": "control"}})
    client.post("/convert", json={**unit, "features": {"checkoutButton": "control"}})
    stats = client.get("/stats", params={"feature": "checkoutButton", "datafile": V2}).json()
    by_value = {v["value"]: v for v in stats["features"][0]["variations"]}
    assert (by_value["treatment"]["exposures"], by_value["treatment"]["conversions"]) == (2, 1)
    assert (by_value["control"]["exposures"], by_value["control"]["conversions"]) == (1, 0)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"datafile": "nope.json", "features": {"checkoutButton": "control"}}, "datafile", "nope"),
        ({"datafile": V2, "features": {"missing": "control"}}, "features.missing", "no feature"),
        (
            {"datafile": V2, "features": {"checkoutButton": "control", "pricingPage": "zzz"}},
            "features.pricingPage",
            "no variation 'zzz'",
        ),
        ({"datafile": V2, "features": {}}, "features", "at least 1"),
    ],
)
def test_unknown_names_are_refused_and_nothing_is_counted(
    client: TestClient, body: dict[str, Any], field: str, message: str
) -> None:
    response = client.post("/expose", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert message in error["message"]
    stats = client.get("/stats").json()
    assert all(v["exposures"] == 0 for f in stats["features"] for v in f["variations"])


@pytest.mark.parametrize(
    "path",
    [
        "../v2.json",
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2fproduction%2fv2.json",
        "//etc/passwd",
        "production/v2.json%00",
        "production\\v2.json",
        "outside.json",
        "link.json",
    ],
)
def test_paths_outside_the_registry_are_404(client: TestClient, datafiles: Path, path: str) -> None:
    (datafiles.parent / "outside.json").write_text(
        (FEATUREVISOR_DATAFILES / "v2-production.json").read_text()
    )
    (datafiles / "link.json").symlink_to(datafiles.parent / "outside.json")
    client.app.state.companion.sync()  # type: ignore[attr-defined]
    assert client.get("/stats").json()["datafiles"] == [V1, V2]  # the link was not followed
    response = client.get(f"/datafile/{path}")
    assert response.status_code == 404
    assert "error" in response.json()


def test_a_broken_build_is_reported_and_the_last_good_one_served(
    client: TestClient, datafiles: Path
) -> None:
    before = client.get(f"/datafile/{V2}").json()
    (datafiles / V2).write_text('{"schemaVersion": "2", "features": ')
    client.app.state.companion.sync()  # type: ignore[attr-defined]
    stats = client.get("/stats").json()
    (issue,) = stats["issues"]
    assert issue["datafile"] == V2
    assert "not valid JSON" in issue["message"]
    assert client.get(f"/datafile/{V2}").json() == before


def test_a_new_build_keeps_learned_weights_unless_variations_changed(
    client: TestClient, datafiles: Path
) -> None:
    feed(client, V2, "checkoutButton", {"control": (150, 5), "treatment": (150, 30)})
    feed(client, V2, "pricingPage", {"control": (120, 2), "b": (120, 20), "c": (120, 3)})
    client.post("/recalculate")
    build = json.loads((FEATUREVISOR_DATAFILES / "v2-production.json").read_text())
    build["revision"] = "2"
    pricing = build["features"]["pricingPage"]
    pricing["variations"].append({"value": "d", "weight": 0})
    (datafiles / V2).write_text(json.dumps(build))
    companion = client.app.state.companion  # type: ignore[attr-defined]
    assert companion.sync() == [V2]
    document = client.get(f"/datafile/{V2}").json()
    assert document["revision"] == "2.1"  # checkoutButton keeps its one weight change
    checkout = {
        v["value"]: v["weight"] for v in document["features"]["checkoutButton"]["variations"]
    }
    assert checkout["treatment"] > 90
    # pricingPage has new variations: a new experiment, back to the build's ranges.
    assert document["features"]["pricingPage"]["traffic"] == pricing["traffic"]
    stats = client.get("/stats", params={"datafile": V2}).json()
    assert {f["feature"] for f in stats["features"]} == {"checkoutButton", "pricingPage"}
    new_pricing = next(f for f in stats["features"] if f["feature"] == "pricingPage")
    assert [v["value"] for v in new_pricing["variations"]] == ["control", "b", "c", "d"]
    assert all(v["exposures"] == 0 for v in new_pricing["variations"])
    completed = client.get("/api/v1/experiments", params={"status": "completed"}).json()
    assert len(completed) == 1
