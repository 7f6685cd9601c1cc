"""Experiments over REST: create, read, change in draft, delete, lifecycle, refusals."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API, GOAL, experiment_body, running


def error_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    assert set(body) >= {"code", "message", "field"}
    return body


def test_create_returns_the_experiment(client: TestClient) -> None:
    response = client.post(f"{API}/experiments", json=experiment_body(description="ünïcode ✓"))
    assert response.status_code == 201
    body = response.json()
    assert body["key"] == "button"
    assert body["status"] == "draft"
    assert body["type"] == "ab_test"
    assert body["salt"] == "button"
    assert body["traffic_allocation"] == 1.0
    assert body["description"] == "ünïcode ✓"
    assert [v["is_control"] for v in body["variants"]] == [True, False]
    assert body["variants"][1]["config"] == {"colour": "green", "size": [1, 2]}
    assert [m["kind"] for m in body["metrics"]] == ["binary", "value"]
    assert client.get(f"{API}/experiments/{body['id']}").json() == body
    assert client.get(f"{API}/experiments/button").json() == body


def test_default_metric_is_binary_conversion(client: TestClient) -> None:
    body = experiment_body()
    del body["metrics"]
    created = client.post(f"{API}/experiments", json=body).json()
    conversion = {"key": "conversion", "kind": "binary", "description": "", **GOAL}
    assert created["metrics"] == [conversion]


@pytest.mark.parametrize("kind", ["bandit", "contextual_bandit", "interleaving"])
def test_every_type_is_accepted(client: TestClient, kind: str) -> None:
    assert client.post(f"{API}/experiments", json=experiment_body(type=kind)).status_code == 201


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.4}]},
            "variants",
            "sum to 1.0",
        ),
        ({"variants": [{"key": "a", "weight": 1.0}]}, "variants", ""),
        (
            {
                "variants": [
                    {"key": "a", "weight": 0.5, "is_control": True},
                    {"key": "b", "weight": 0.5, "is_control": True},
                ]
            },
            "variants",
            "control",
        ),
        (
            {"variants": [{"key": "a", "weight": 0.5}, {"key": "a", "weight": 0.5}]},
            "variants[1].key",
            "unique",
        ),
        (
            {"variants": [{"key": "a", "weight": "x"}, {"key": "b", "weight": 0.5}]},
            "variants[0].weight",
            "",
        ),
        ({"traffic_allocation": 0}, "traffic_allocation", "(0, 1]"),
        ({"traffic_allocation": 1.5}, "traffic_allocation", "(0, 1]"),
        ({"type": "magic"}, "type", ""),
        ({"key": "bad key"}, "key", ""),
        ({"name": "x" * 201}, "name", ""),
        ({"metrics": [{"key": "m", "kind": "count"}]}, "metrics[0].kind", ""),
        ({"unexpected": 1}, "unexpected", ""),
        (
            {
                "variants": [
                    {"key": "a", "weight": 0.5, "config": {"x": "\u0000"}},
                    {"key": "b", "weight": 0.5},
                ]
            },
            "variants[0].config",
            "NUL",
        ),
        ({"name": "nul\u0000name"}, "name", "NUL"),
    ],
)
def test_bad_definitions_are_refused_with_the_field(
    client: TestClient, change: dict[str, Any], field: str, words: str
) -> None:
    response = client.post(f"{API}/experiments", json=experiment_body(**change))
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["field"] == field
    assert words in error["message"]
    assert client.get(f"{API}/experiments").json() == []


def test_duplicate_key_conflicts(client: TestClient) -> None:
    client.post(f"{API}/experiments", json=experiment_body())
    response = client.post(f"{API}/experiments", json=experiment_body())
    assert response.status_code == 409
    assert error_of(response)["code"] == "duplicate_key"


def test_unknown_experiment_is_404_everywhere(client: TestClient) -> None:
    for method, path, body in [
        ("GET", "nope", None),
        ("PATCH", "nope", {"name": "x"}),
        ("DELETE", "nope", None),
        ("PUT", "nope/status", {"status": "running"}),
        ("POST", "nope/assign", {"unit_id": "u"}),
        ("POST", "nope/exposures", {"unit_id": "u"}),
        ("POST", "nope/conversions", {"unit_id": "u"}),
        ("GET", "nope/metrics", None),
    ]:
        response = client.request(method, f"{API}/experiments/{path}", json=body)
        assert response.status_code == 404, (method, path)
        assert error_of(response)["code"] == "experiment_not_found"


def test_lifecycle(client: TestClient) -> None:
    client.post(f"{API}/experiments", json=experiment_body())

    def move(status: str, **extra: Any) -> Any:
        return client.put(f"{API}/experiments/button/status", json={"status": status, **extra})

    assert move("paused").status_code == 409
    started = move("running").json()
    assert started["status"] == "running"
    assert started["started_at"] is not None
    assert move("paused").json()["status"] == "paused"
    assert move("running").json()["status"] == "running"
    refused = move("draft")
    assert refused.status_code == 409
    assert "running to draft" in error_of(refused)["message"]
    assert move("completed", winner="nope").status_code == 422
    unsupported = move("completed", winner="green")
    assert unsupported.status_code == 409
    assert error_of(unsupported)["code"] == "winner_not_supported"
    done = move("completed", winner="green", override=True).json()
    assert (done["status"], done["winner"]) == ("completed", "green")
    assert done["ended_at"] is not None
    assert move("running").status_code == 409
    assert move("sleeping").status_code == 422


def test_list_filters_by_status(client: TestClient) -> None:
    client.post(f"{API}/experiments", json=experiment_body("a"))
    running(client, "b")
    assert [e["key"] for e in client.get(f"{API}/experiments").json()] == ["a", "b"]
    assert [e["key"] for e in client.get(f"{API}/experiments?status=running").json()] == ["b"]
    assert client.get(f"{API}/experiments?status=bogus").status_code == 422


def test_patch_changes_a_draft(client: TestClient) -> None:
    client.post(f"{API}/experiments", json=experiment_body())
    three = [{"key": k, "weight": w} for k, w in [("a", 0.2), ("b", 0.3), ("c", 0.5)]]
    response = client.patch(
        f"{API}/experiments/button",
        json={"variants": three, "traffic_allocation": 0.5, "salt": "s2", "name": "Renamed"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [v["key"] for v in body["variants"]] == ["a", "b", "c"]
    assert (body["traffic_allocation"], body["salt"], body["name"]) == (0.5, "s2", "Renamed")
    assert body["version"] == 2


def test_patch_of_a_running_experiment_only_renames(client: TestClient) -> None:
    running(client)
    refused = client.patch(f"{API}/experiments/button", json={"traffic_allocation": 0.5})
    assert refused.status_code == 409
    assert "draft" in error_of(refused)["message"]
    assert client.get(f"{API}/experiments/button").json()["traffic_allocation"] == 1.0
    renamed = client.patch(f"{API}/experiments/button", json={"name": "New name"})
    assert renamed.json()["name"] == "New name"


def test_patch_refuses_bad_weights_and_keeps_the_old_ones(client: TestClient) -> None:
    client.post(f"{API}/experiments", json=experiment_body())
    bad = [{"key": "a", "weight": 0.7}, {"key": "b", "weight": 0.7}]
    assert client.patch(f"{API}/experiments/button", json={"variants": bad}).status_code == 422
    variants = client.get(f"{API}/experiments/button").json()["variants"]
    assert [v["key"] for v in variants] == ["control", "green"]


def test_delete(client: TestClient) -> None:
    running(client)
    refused = client.delete(f"{API}/experiments/button")
    assert refused.status_code == 409
    client.put(f"{API}/experiments/button/status", json={"status": "paused"})
    assert client.delete(f"{API}/experiments/button").status_code == 204
    assert client.get(f"{API}/experiments/button").status_code == 404


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/experiments/{experiment_id}/assign" in paths
    assert "/api/v1/events" in paths


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert error_of(client.get(f"{API}/nothing-here"))["code"] == "not_found"
    assert error_of(client.put(f"{API}/experiments"))["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"key": "k", "traffic_allocation": 1e400, "variants": []}',
        b'{"key": "k", "traffic_allocation": NaN, "variants": []}',
        b'{"key": "k", "traffic_allocation": Infinity, "variants": []}',
        b'{"key": "k", "traffic_allocation": 1' + b"0" * 5000 + b', "variants": []}',
        b'{"key": "k", "variants": [{"key": "a", "weight": 0.5, "config": {"x": NaN}},'
        b' {"key": "b", "weight": 0.5}]}',
        b"[" * 100_000,
        b"{not json",
        b"",
        b"\xff\xfe",
        b'"just a string"',
        b"null",
    ],
)
def test_hostile_json_is_a_4xx_and_creates_nothing(client: TestClient, raw: bytes) -> None:
    response = client.post(
        f"{API}/experiments", content=raw, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()
    assert client.get(f"{API}/experiments").json() == []


def test_ten_megabyte_body_is_413(client: TestClient) -> None:
    body = b'{"key": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = client.post(
        f"{API}/experiments", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"

    def chunks() -> Any:
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    streamed = client.post(
        f"{API}/experiments", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
