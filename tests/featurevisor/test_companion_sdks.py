"""Datafiles served by the companion, evaluated by the official JavaScript SDKs: @featurevisor/sdk
1.x on v1 datafiles (one built in the test by @featurevisor/cli 1.11.1), 2.x on v2."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from abpilot.api import create_app
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.featurevisor.node_sdk import (
    build_v1_project,
    evaluate,
    require_node,
)
from tests.fixtures import FEATUREVISOR_DATAFILES, FEATUREVISOR_PROJECT_V1

USERS = 100_000


@pytest.fixture
def datafiles(tmp_path: Path) -> Path:
    require_node()
    root = tmp_path / "datafiles"
    built = build_v1_project(FEATUREVISOR_PROJECT_V1, tmp_path / "build")
    shutil.copytree(built, root / "built")  # built/production/datafile-tag-all.json, ...
    shutil.copy(FEATUREVISOR_DATAFILES / "v2-production.json", root / "v2.json")
    return root


@pytest.fixture
def client(datafiles: Path) -> Iterator[TestClient]:
    settings = Settings(store="memory", datafiles_dir=datafiles, scheduler_enabled=False)
    with TestClient(create_app(settings, store=MemoryStore())) as test_client:
        yield test_client


def learn(client: TestClient, datafile: str, feature: str, good: str, other: str) -> None:
    for variation, conversions in ((good, 40), (other, 4)):
        for kind, n in (("expose", 150), ("convert", conversions)):
            for _ in range(n):
                body = {"datafile": datafile, "features": {feature: variation}}
                assert client.post(f"/{kind}", json=body).status_code == 200
    assert "updated" in {o["status"] for o in client.post("/recalculate").json()}


def served(client: TestClient, path: str, into: Path) -> Path:
    response = client.get(f"/datafile/{path}")
    assert response.status_code == 200
    into.write_bytes(response.content)
    return into


@pytest.mark.parametrize(
    ("sdk", "path", "attributes", "percentage"),
    [
        (1, "built/production/datafile-tag-all.json", {"country": "de"}, 80_000),
        (1, "built/production/datafile-tag-all.json", {"country": "nl"}, 100_000),
        (2, "v2.json", {"country": "de"}, 80_000),
        (2, "v2.json", {"country": "nl"}, 100_000),
    ],
)
def test_the_official_sdk_follows_the_learned_split(
    client: TestClient,
    tmp_path: Path,
    sdk: int,
    path: str,
    attributes: dict[str, str],
    percentage: int,
) -> None:
    before = evaluate(
        sdk, served(client, path, tmp_path / "before.json"), "checkoutButton", USERS, attributes
    )
    learn(client, path, "checkoutButton", good="treatment", other="control")
    document = served(client, path, tmp_path / "after.json")
    doc = json.loads(document.read_text())
    features = doc["features"]
    feature = (
        next(f for f in features if f["key"] == "checkoutButton")
        if isinstance(features, list)
        else features["checkoutButton"]
    )
    learned = {v["value"]: v["weight"] / 100 for v in feature["variations"]}
    after = evaluate(sdk, document, "checkoutButton", USERS, attributes)
    assert after["sdk"].startswith(f"@featurevisor/sdk@{sdk}.")
    counts = after["counts"]
    included = USERS - counts.get("null", 0)
    # Users outside the rule's percentage stay outside; inside, the split is the learned one.
    assert counts.get("null", 0) == before["counts"].get("null", 0)
    assert included / USERS == pytest.approx(percentage / 100_000, abs=0.005)
    for value, weight in learned.items():
        assert counts.get(value, 0) / included == pytest.approx(weight, abs=0.005)
    assert learned["treatment"] > 0.9
