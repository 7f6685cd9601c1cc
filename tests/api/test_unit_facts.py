"""Issue 18's inputs over REST: covariates and dimensions on exposures, covariate, cap and ratio
metrics, experiment dimensions. Each is shown by GET, bad input is a 422 naming the field and
stores nothing, and the unit's first exposure counts its facts."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from abpilot.domain import derived
from abpilot.domain.rules import MAX_COVARIATES, MAX_DIMENSIONS
from tests.api.conftest import API, experiment_body, running

METRICS = [
    {"key": "revenue", "kind": "value", "covariate": "pre_revenue", "cap": {"absolute": 500}},
    {"key": "orders", "kind": "binary", "covariate": "pre_orders"},
    {"key": "big", "kind": "value", "cap": {"percentile": 0.99}},
    {"key": "rpo", "kind": "ratio", "numerator": "revenue", "denominator": "orders"},
]


def test_the_new_fields_round_trip(client: TestClient) -> None:
    created = running(client, metrics=METRICS, dimensions=["country", "platform"])
    shown = client.get(f"{API}/experiments/button").json()
    assert shown == created
    assert shown["dimensions"] == ["country", "platform"]
    got = {m["key"]: m for m in shown["metrics"]}
    assert got["revenue"]["covariate"] == "pre_revenue"
    assert got["revenue"]["cap"] == {"absolute": 500}
    assert got["big"]["cap"] == {"percentile": 0.99}
    assert (got["rpo"]["kind"], got["rpo"]["numerator"], got["rpo"]["denominator"]) == (
        "ratio",
        "revenue",
        "orders",
    )
    assert got["orders"]["cap"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metrics": [{"key": "a", "kind": "binary", "cap": {"absolute": 5}}]}, "metrics[0].cap"),
        ({"metrics": [{"key": "a", "kind": "value", "cap": {"absolute": -1}}]}, "absolute"),
        ({"metrics": [{"key": "a", "kind": "value", "cap": {"percentile": 1.5}}]}, "percentile"),
        ({"metrics": [{"key": "a", "kind": "value", "cap": {"both": 1}}]}, "metrics[0].cap"),
        ({"metrics": [{"key": "a", "covariate": "not ok"}]}, "metrics[0].covariate"),
        ({"metrics": [{"key": "a"}, {"key": "r", "kind": "ratio", "numerator": "a"}]}, "denom"),
        (
            {
                "metrics": [
                    {"key": "a"},
                    {"key": "r", "kind": "ratio", "numerator": "x", "denominator": "a"},
                ]
            },
            "metrics[1].numerator",
        ),
        ({"metrics": [{"key": "a", "numerator": "a"}]}, "metrics[0].numerator"),
        ({"dimensions": ["a", "a"]}, "dimensions"),
        ({"dimensions": [f"d{i}" for i in range(MAX_DIMENSIONS + 1)]}, "dimensions"),
        ({"dimensions": ["bad name"]}, "dimensions[0]"),
    ],
)
def test_bad_definitions_are_refused(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    response = client.post(f"{API}/experiments", json=experiment_body(**change))
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["field"]
    assert client.get(f"{API}/experiments").json() == []


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        ({"covariates": {"pre_revenue": "12"}}, "covariates.pre_revenue"),
        ({"covariates": {"bad name": 1}}, "covariates"),
        ({"covariates": [1]}, "covariates"),
        ({"covariates": {f"c{i}": 1 for i in range(MAX_COVARIATES + 1)}}, "covariates"),
        ({"dimensions": {"country": 3}}, "dimensions.country"),
        ({"dimensions": {"country": "a|b"}}, "dimensions.country"),
        ({"dimensions": {"country": "x" * 65}}, "dimensions.country"),
    ],
)
def test_bad_unit_facts_are_refused_on_every_path(
    client: TestClient, facts: dict[str, Any], field: str
) -> None:
    running(client, metrics=METRICS, dimensions=["country"])
    paths = [
        (f"{API}/experiments/button/exposures", {"unit_id": "u", **facts}, field),
        (f"{API}/experiments/button/assign", {"unit_id": "u", "expose": True, **facts}, field),
        (
            f"{API}/events",
            {"events": [{"type": "exposure", "experiment_id": "button", "unit_id": "u", **facts}]},
            f"events[0].{field}",
        ),
    ]
    for path, body, named in paths:
        response = client.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["field"].startswith(named), response.json()
    metrics = client.get(f"{API}/experiments/button/metrics").json()
    assert all(v["exposures"] == 0 and v["assigned_units"] == 0 for v in metrics["variants"])


def test_facts_need_an_exposure(client: TestClient) -> None:
    running(client, metrics=METRICS)
    conversion = {"unit_id": "u", "metric": "orders", "covariates": {"pre_orders": 1}}
    response = client.post(f"{API}/experiments/button/conversions", json=conversion)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "covariates"
    assigned = client.post(
        f"{API}/experiments/button/assign", json={"unit_id": "u", "dimensions": {"c": "x"}}
    )
    assert assigned.status_code == 422
    assert assigned.json()["error"]["field"] == "dimensions"


def test_the_first_exposure_counts_its_facts(client: TestClient) -> None:
    exp = running(client, metrics=METRICS, dimensions=["country"])
    first = {"unit_id": "u", "covariates": {"pre_revenue": 4.0}, "dimensions": {"country": "nl"}}
    assert client.post(f"{API}/experiments/button/exposures", json=first).status_code == 200
    later = {"unit_id": "u", "expose": True, "covariates": {"pre_revenue": 99.0}}
    assert client.post(f"{API}/experiments/button/assign", json=later).status_code == 200
    conversion = {"unit_id": "u", "metric": "revenue", "value": 600}
    assert client.post(f"{API}/experiments/button/conversions", json=conversion).status_code == 200
    store = client.app.state.service.store  # type: ignore[attr-defined]
    counters = store.get_counters(exp["id"])
    (variant,) = counters.values()
    assert set(variant.metrics) == {"revenue"}  # no reserved cell shows as a metric
    assert derived.covariate_sums(variant, "pre_revenue").sum == 4.0
    assert derived.cross_sum(variant, "revenue") == 2400.0
    assert derived.capped_totals(variant, "revenue").sum == 500.0
    nl = derived.segments(counters, "country", ["revenue"])["nl"]
    assert next(iter(nl.values())).exposures == 2
    shown = client.get(f"{API}/experiments/button/metrics").json()
    assert {m for v in shown["variants"] for m in v["metrics"]} == {
        "revenue",
        "orders",
        "big",
        "rpo",
    }
