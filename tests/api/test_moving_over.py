"""The requests of SONA, the Multi-Armed Bandit Optimization API and OpenInsight, sent to abpilot
with only host and port changed, on every store. The bodies are copied verbatim from each
system's documentation."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import API, GOAL

# SONA, "Quick Start", 2. Create an Experiment.
SONA_CREATE: dict[str, Any] = {
    "name": "lora_boost_test",
    "description": "Test LoRA boost factor",
    "traffic_allocation": 0.5,
    "variants": [
        {"name": "control", "weight": 0.5, "config": {"boost": 0.3}},
        {"name": "treatment", "weight": 0.5, "config": {"boost": 0.5}},
    ],
}
SONA_START = {"status": "running"}  # 3. Start Experiment.

# Multi-Armed Bandit Optimization API, "1. Criar Experimento" and "2. Registrar Métricas".
MAB_CREATE: dict[str, Any] = {
    "name": "homepage_cta_test",
    "description": "Testing CTA button variants",
    "variants": [
        {"name": "control", "is_control": True},
        {"name": "variant_a", "is_control": False},
        {"name": "variant_b", "is_control": False},
    ],
}
MAB_METRICS: dict[str, Any] = {
    "date": "2025-01-15",
    "metrics": [
        {"variant_name": "control", "impressions": 10000, "clicks": 320},
        {"variant_name": "variant_a", "impressions": 10000, "clicks": 420},
        {"variant_name": "variant_b", "impressions": 10000, "clicks": 380},
    ],
}

# OpenInsight's create_experiment arguments as a JSON body (its REST service takes them).
OPENINSIGHT_CREATE: dict[str, Any] = {
    "name": "Homepage Button Color Test",
    "variants": [
        {"name": "Blue Button", "description": "Standard blue button"},
        {"name": "Green Button", "description": "New green button"},
    ],
    "experiment_type": "ab_test",
    "traffic_allocation": 1.0,
    "description": "Testing whether a green CTA button performs better than our standard blue",
}


def created(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{API}/experiments", json=body)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def error(response: Any) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["field"]


# ---- SONA ------------------------------------------------------------------------------------


def test_sona_quick_start_as_documented(client: TestClient) -> None:
    experiment = created(client, SONA_CREATE)
    assert (experiment["key"], experiment["open_metrics"]) == ("lora_boost_test", True)
    assert [(v["key"], v["weight"], v["config"]) for v in experiment["variants"]] == [
        ("control", 0.5, {"boost": 0.3}),
        ("treatment", 0.5, {"boost": 0.5}),
    ]
    url = f"{API}/experiments/{experiment['id']}"
    assert client.put(f"{url}/status", json=SONA_START).status_code == 200
    # 4. The recommendation call assigns and records the exposure: /assign with expose.
    answers = [
        client.post(f"{url}/assign", json={"user_id": f"user-{i}", "expose": True}).json()
        for i in range(40)
    ]
    inside = [a for a in answers if a["in_experiment"]]
    assert 0 < len(inside) < 40  # traffic_allocation 0.5
    # 5. Record Conversions, the body as SONA documents it, for a user it assigned.
    user_id = inside[0]["unit_id"]
    conversion = {
        "experiment_id": experiment["id"],
        "user_id": user_id,
        "metric_name": "watch_completion",
        "value": 1.0,
    }
    recorded = client.post(f"{API}/experiments/conversions", json=conversion)
    assert recorded.json() == {"received": 1, "applied": 1, "duplicates": 0}
    # 6. Analyze Results.
    metrics = client.get(f"{url}/metrics").json()
    assert metrics["metrics"]["watch_completion"]["basis"] == "exposed_units"
    variants = {v["key"]: v for v in metrics["variants"]}
    assert sum(v["exposures"] for v in variants.values()) == len(inside)
    assert sum(v["unique_units"] for v in variants.values()) == len(inside)
    watched = variants[inside[0]["variant"]["key"]]["metrics"]["watch_completion"]
    assert (watched["units"], watched["conversions"]) == (1, 1)
    stored = client.get(url).json()["metrics"]
    assert stored[-1] == {"key": "watch_completion", "kind": "binary", "description": "", **GOAL}


def test_sona_example_two_weights_and_traffic(client: TestClient) -> None:
    """SONA's "Example 2" (three variants at 0.33/0.34/0.33, 80% of traffic) as a REST body."""
    body = {
        "name": "lora_boost_optimization",
        "traffic_allocation": 0.8,
        "variants": [
            {"name": "boost_0.3", "weight": 0.33, "config": {"lora_boost": 0.3}},
            {"name": "boost_0.5", "weight": 0.34, "config": {"lora_boost": 0.5}},
            {"name": "boost_0.7", "weight": 0.33, "config": {"lora_boost": 0.7}},
        ],
    }
    experiment = created(client, body)
    assert [v["key"] for v in experiment["variants"]] == ["boost_0.3", "boost_0.5", "boost_0.7"]


def test_a_taken_name_is_a_409_naming_the_key(client: TestClient) -> None:
    created(client, SONA_CREATE)
    again = client.post(f"{API}/experiments", json=SONA_CREATE)
    assert error(again) == (409, "duplicate_key", "key")
    assert "lora_boost_test" in again.json()["error"]["message"]


def test_declared_metrics_refuse_until_patched_while_running(client: TestClient) -> None:
    """An experiment that declares its metrics refuses SONA's watch_completion, until a PATCH
    adds it (allowed while running; nobody changes variant)."""
    body = {**SONA_CREATE, "metrics": [{"key": "click_through"}]}
    experiment = created(client, body)
    url = f"{API}/experiments/{experiment['id']}"
    client.put(f"{url}/status", json=SONA_START)
    units = [f"user-{i}" for i in range(30)]
    before = [client.post(f"{url}/assign", json={"unit_id": u}).json() for u in units]
    user = next(a["unit_id"] for a in before if a["in_experiment"])
    conversion = {
        "experiment_id": experiment["id"],
        "user_id": user,
        "metric_name": "watch_completion",
        "value": 1.0,
    }
    refused = client.post(f"{API}/experiments/conversions", json=conversion)
    assert error(refused) == (422, "validation_error", "metric")
    both = [{"key": "click_through"}, {"key": "watch_completion"}]
    patched = client.patch(url, json={"metrics": both})
    assert patched.status_code == 200, patched.text
    assert [client.post(f"{url}/assign", json={"unit_id": u}).json() for u in units] == before
    assert client.post(f"{API}/experiments/conversions", json=conversion).status_code == 200
    dropped = client.patch(url, json={"metrics": [{"key": "watch_completion"}]})
    assert error(dropped) == (409, "wrong_status", "metrics[0]")


def test_assign_names_the_unit_field_it_refuses(client: TestClient) -> None:
    experiment = created(client, SONA_CREATE)
    url = f"{API}/experiments/{experiment['key']}"
    client.put(f"{url}/status", json=SONA_START)
    cases = [
        ({}, "unit_id"),
        ({"unit_id": "a", "user_id": "b"}, "user_id"),
        ({"user_id": "a", "event_id": "e-1"}, "event_id"),
        ({"user_id": ""}, "user_id"),
    ]
    for body, field in cases:
        assert error(client.post(f"{url}/assign", json=body)) == (
            422,
            "validation_error",
            field,
        ), body
    metrics = client.get(f"{url}/metrics").json()
    assert all(v["assigned_units"] == 0 for v in metrics["variants"])


# ---- Multi-Armed Bandit Optimization API -----------------------------------------------------


def test_mab_create_body_with_the_bandit_type(client: TestClient) -> None:
    experiment = created(client, {**MAB_CREATE, "type": "bandit"})
    assert (experiment["key"], experiment["type"]) == ("homepage_cta_test", "bandit")
    assert [(v["key"], v["is_control"], v["weight"]) for v in experiment["variants"]] == [
        ("control", True, 0.3334),
        ("variant_a", False, 0.3333),
        ("variant_b", False, 0.3333),
    ]
    url = f"{API}/experiments/{experiment['id']}"
    assert client.put(f"{url}/status", json={"status": "running"}).status_code == 200
    posted = client.post(f"{url}/metrics", json=MAB_METRICS)
    assert posted.status_code == 200, posted.text
    allocation = client.get(f"{url}/allocation").json()
    assert allocation["experiment_name"] == "homepage_cta_test"
    shares = [a["allocation_percentage"] for a in allocation["allocations"]]
    assert round(sum(shares), 6) == 100
    history = client.get(f"{url}/history").json()
    assert len(history["daily_metrics"]) == 3


# ---- OpenInsight -----------------------------------------------------------------------------


def test_openinsight_rest_routes(client: TestClient) -> None:
    experiment = created(client, OPENINSIGHT_CREATE)
    assert experiment["key"] == "homepage-button-color-test"
    url = f"{API}/experiments/{experiment['id']}"
    client.put(f"{url}/status", json={"status": "running"})
    assigned = client.post(f"{url}/assign", json={"user_id": "user123"}).json()
    variant = assigned["variant"]["key"]
    convert = client.post(f"{url}/convert", json={"unit_id": "user123", "value": 1})
    assert convert.json() == {"received": 1, "applied": 1, "duplicates": 0}
    metrics = {v["key"]: v for v in client.get(f"{url}/metrics").json()["variants"]}
    assert metrics[variant]["metrics"]["conversion"]["units"] == 1
    assert client.get(f"{url}/analyze").json()["metric"] == "conversion"
    ended = client.post(f"{url}/end")
    assert ended.status_code == 200, ended.text
    assert (ended.json()["status"], ended.json()["winner"]) == ("completed", None)
    assert error(client.post(f"{url}/end")) == (409, "invalid_transition", "status")


def test_end_names_the_winner_or_refuses_an_unknown_one(client: TestClient) -> None:
    experiment = created(client, OPENINSIGHT_CREATE)
    url = f"{API}/experiments/{experiment['key']}"
    client.put(f"{url}/status", json={"status": "running"})
    unknown = client.post(f"{url}/end", json={"winner": "red-button"})
    assert error(unknown) == (422, "validation_error", "winner")
    assert client.get(url).json()["status"] == "running"
    ended = client.post(f"{url}/end", json={"winner": "green-button", "override": True}).json()
    assert (ended["status"], ended["winner"]) == ("completed", "green-button")


def test_what_cannot_be_derived_is_a_422_naming_the_field(client: TestClient) -> None:
    two = [{"name": "a", "weight": 1.0}, {"name": "b"}]
    cases = [
        ({"variants": [{"name": "a"}, {"name": "b"}]}, "key"),
        ({**OPENINSIGHT_CREATE, "name": "¿?"}, "key"),
        ({**OPENINSIGHT_CREATE, "experiment_type": "split"}, "experiment_type"),
        ({**OPENINSIGHT_CREATE, "type": "bandit"}, "experiment_type"),
        ({**SONA_CREATE, "variants": two}, "variants[1].weight"),
        ({**SONA_CREATE, "variants": [{"name": "A"}, {"name": "a"}]}, "variants[1].key"),
        ({**SONA_CREATE, "variants": [{"key": "a b"}, {"name": "b"}]}, "variants[0].key"),
    ]
    for body, field in cases:
        assert error(client.post(f"{API}/experiments", json=body)) == (
            422,
            "validation_error",
            field,
        ), body
    assert client.get(f"{API}/experiments").json() == []
