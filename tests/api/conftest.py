from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from abpilot.api import create_app
from abpilot.domain.records import AllocationRecord
from abpilot.settings import Settings
from tests.conftest import StoreFactory

API = "/api/v1"
# What a metric reads back with when it is no guardrail (the defaults of the guardrail fields).
# What a metric reads back with when it has no covariate, cap or ratio parts (issue 18).
PLAIN = {"covariate": None, "cap": None, "numerator": None, "denominator": None}
GOAL = {
    "role": "goal",
    "higher_is_better": True,
    "margin": None,
    "margin_relative": False,
    **PLAIN,
}


@pytest.fixture
def client(store_factory: StoreFactory) -> Iterator[TestClient]:
    app = create_app(Settings(store="memory"), store=store_factory())
    with TestClient(app) as test_client:
        yield test_client


def experiment_body(key: str = "button", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "name": "Button colour",
        "variants": [
            {"key": "control", "weight": 0.5, "config": {"colour": "blue"}},
            {"key": "green", "weight": 0.5, "config": {"colour": "green", "size": [1, 2]}},
        ],
        "metrics": [{"key": "conversion"}, {"key": "revenue", "kind": "value"}],
    }
    body.update(overrides)
    return body


def running(client: TestClient, key: str = "button", **overrides: Any) -> dict[str, Any]:
    created = client.post(f"{API}/experiments", json=experiment_body(key, **overrides))
    assert created.status_code == 201, created.text
    started = client.put(f"{API}/experiments/{key}/status", json={"status": "running"})
    assert started.status_code == 200, started.text
    body: dict[str, Any] = started.json()
    return body


def new_weights(client: TestClient, exp: Mapping[str, Any], weights: dict[str, float]) -> None:
    """New weights for a running bandit, stored as another worker's recalculation stores them
    (a new period of constant weights), and seen by this worker as once its cached definition
    expires (``EXPERIMENT_CACHE_SECONDS``)."""
    service = client.app.state.service  # type: ignore[attr-defined]
    service.store.add_allocation(
        AllocationRecord(
            experiment_id=exp["id"],
            period=0,
            computed_at=datetime(2025, 2, 1, tzinfo=UTC),
            weights=weights,
            method="exact",
            seed=None,
            source="test",
        )
    )
    service.lookup.forget(exp["id"])
