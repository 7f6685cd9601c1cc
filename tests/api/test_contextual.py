"""Contextual bandits over REST on every store: decide, feedback, stats, performance,
off-policy evaluation, and the refusals."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API, running

ARMS = [
    {"key": a, "weight": 0.25, "config": {"model": a}}
    for a in ("svd", "graph", "item_cf", "serendipity")
]
SETTINGS = {
    "contextual": {
        "attributes": {"time_of_day": ["morning", "evening"], "user_type": ["new", "returning"]},
        "holdout": 0.25,
        "control": {"weights": {"svd": 0.5, "graph": 0.5, "item_cf": 0.0, "serendipity": 0.0}},
    }
}
CONTEXT = {"time_of_day": "evening", "user_type": "new"}


@pytest.fixture
def recs(client: TestClient) -> dict[str, Any]:
    return running(
        client, "recs", type="contextual_bandit", variants=ARMS, metrics=[], settings=SETTINGS
    )


def decide(client: TestClient, unit: str, context: dict[str, str] = CONTEXT) -> dict[str, Any]:
    response = client.post(
        f"{API}/experiments/recs/decide", json={"unit_id": unit, "context": context}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_decide_feedback_and_stats(client: TestClient, recs: dict[str, Any]) -> None:
    decisions = [decide(client, f"user-{i}") for i in range(60)]
    first = decisions[0]
    assert set(first) >= {"decision_id", "arm", "config", "propensity", "policy", "context_key"}
    assert first["context_key"] == "time_of_day=evening|user_type=new"
    assert first["config"] == {"model": first["arm"]}
    for d in decisions:
        assert 0 < d["propensity"] <= 1
        if d["policy"] == "control":
            assert d["arm"] in {"svd", "graph"}
            assert d["propensity"] == 0.5
            assert d["method"] == "fixed"
    assert {d["policy"] for d in decisions} == {"bandit", "control"}
    again = decide(client, "user-0")  # the holdout is by unit
    assert again["policy"] == first["policy"]

    url = f"{API}/experiments/recs/feedback"
    click = {"decision_id": first["decision_id"], "event": "click"}
    assert client.post(url, json=click).json() == {**click, "outcome": "success", "applied": True}
    assert client.post(url, json=click).json()["applied"] is False
    rating = {"decision_id": decisions[1]["decision_id"], "event": "rating", "value": 3.0}
    assert client.post(url, json=rating).json()["outcome"] == "neutral"

    stats = client.get(f"{API}/experiments/recs/bandit/stats").json()
    assert stats["overall"]["decisions"] == 61
    assert stats["overall"]["successes"] == 1
    assert sum(a["selection_rate"] for a in stats["arms"]) == pytest.approx(1.0)
    (context,) = stats["contexts"]
    assert context["context_key"] == "time_of_day=evening|user_type=new"
    comparison = stats["bandit_vs_control"]
    assert comparison["bandit"]["decisions"] + comparison["control"]["decisions"] == 61
    assert comparison["method"] == "fisher_exact"

    days = client.get(f"{API}/experiments/recs/performance", params={"days": 7}).json()["days"]
    assert len(days) == 1
    assert days[0]["overall"]["decisions"] == 61

    for policy in ("control", "uniform", "greedy", "arm:svd"):
        response = client.get(f"{API}/experiments/recs/offpolicy", params={"policy": policy})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["decisions"] == 61
        assert body["ips"]["ci"][0] <= body["ips"]["value"] <= body["ips"]["ci"][1]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        (
            "decide",
            {"context": {"time_of_day": "noon", "user_type": "new"}},
            422,
            "context.time_of_day",
        ),
        ("decide", {"context": {"time_of_day": "evening"}}, 422, "context.user_type"),
        ("decide", {"context": CONTEXT, "extra": 1}, 422, "extra"),
        ("feedback", {"decision_id": "nope", "event": "click"}, 404, "decision_id"),
        ("feedback", {"decision_id": "x", "event": "purchase"}, 422, "event"),
        ("feedback", {"decision_id": "x", "event": "rating"}, 422, "value"),
        ("feedback", {"unit_id": "nobody", "event": "thumbs-up"}, 404, "unit_id"),
        ("feedback", {"unit_id": "u", "decision_id": "x", "event": "click"}, 422, "unit_id"),
        ("feedback", {"event": "click"}, 422, "decision_id"),
        ("feedback", {"unit_id": "", "event": "click"}, 422, "unit_id"),
    ],
)
def test_refusals_name_the_field(
    client: TestClient,
    recs: dict[str, Any],
    path: str,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    response = client.post(f"{API}/experiments/recs/{path}", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_feedback_by_unit_and_hyphenated_events(client: TestClient, recs: dict[str, Any]) -> None:
    """Bandit Selector's `POST /analytics/track/thumbs-up {"user_id": 1}`, on every store: the
    unit's latest decision gets it, named in the answer."""
    decide(client, "1")
    latest = decide(client, "1")
    decide(client, "2")
    url = f"{API}/experiments/recs/feedback"
    response = client.post(url, json={"unit_id": "1", "event": "thumbs-up"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "decision_id": latest["decision_id"],
        "event": "thumbs_up",
        "outcome": "success",
        "applied": True,
    }
    repeat = client.post(url, json={"unit_id": "1", "event": "thumbs_up"}).json()
    assert (repeat["decision_id"], repeat["applied"]) == (latest["decision_id"], False)
    rated = client.post(url, json={"unit_id": "2", "event": "rating", "value": 1.5}).json()
    assert rated["outcome"] == "failure"
    stats = client.get(f"{API}/experiments/recs/bandit/stats").json()
    assert (stats["overall"]["decisions"], stats["overall"]["successes"]) == (3, 1)


def test_only_contextual_experiments_decide(client: TestClient) -> None:
    running(client, "plain")
    response = client.post(f"{API}/experiments/plain/decide", json={"context": {}})
    assert response.status_code == 422
    assert "contextual_bandit" in response.json()["error"]["message"]


def test_bad_settings_are_refused_at_creation(client: TestClient) -> None:
    body = {
        "key": "bad",
        "type": "contextual_bandit",
        "variants": ARMS,
        "settings": {"contextual": {"holdout": 0.2}},
    }
    response = client.post(f"{API}/experiments", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "settings.contextual.control"
