"""Guardrails and the decision over REST: the metric fields, the analysis' ``guardrails``,
per-variant ``guardrail`` and ``decision``, completing against the decision, and bad input on
every new field answered with a 4xx naming it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API, PLAIN, running

GUARDRAIL = {
    "key": "latency",
    "kind": "value",
    "role": "guardrail",
    "higher_is_better": False,
    "margin": 0.05,
    "margin_relative": True,
}


def test_the_analysis_says_the_guardrails_and_the_decision(client: TestClient) -> None:
    made = running(client, metrics=[{"key": "conversion"}, GUARDRAIL])
    assert made["metrics"][1] == {"description": "", **GUARDRAIL, **PLAIN}
    assert made["metrics"][0]["role"] == "goal"
    url = f"{API}/experiments/button"
    events = [
        {"type": "exposure", "experiment_id": "button", "unit_id": f"u{i}", "variant": variant}
        for i, variant in enumerate(["control", "green"] * 20)
    ]
    assert client.post(f"{API}/events", json={"events": events}).status_code == 200
    analysis = client.get(f"{url}/analysis").json()
    assert analysis["decision"]["action"] == "continue"
    assert [r["code"] for r in analysis["decision"]["reasons"]] == ["insufficient_data"]
    assert analysis["decision"]["reasons"][0]["message"] == analysis["message"]
    assert [(g["metric"], g["variant"]) for g in analysis["guardrails"]] == [("latency", "green")]
    assert analysis["variants"][1]["guardrail"] is None  # conversion is no guardrail
    latency = client.get(f"{url}/analysis?metric=latency").json()
    assert latency["variants"][1]["guardrail"] == latency["guardrails"][0]
    assert latency["higher_is_better"] is False
    assert latency["decision"] == analysis["decision"]  # the primary metric's, whatever is read

    refused = client.post(f"{url}/end", json={"winner": "green"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "winner_not_supported"
    assert refused.json()["error"]["field"] == "winner"
    ended = client.put(
        f"{url}/status", json={"status": "completed", "winner": "green", "override": True}
    )
    assert ended.status_code == 200, ended.text
    completion = client.get(url).json()["settings"]["completion"]
    assert completion["override"] is True
    assert completion["decision"]["action"] == "continue"


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        ({"role": "owner"}, "metrics[1].role"),
        ({"role": "guardrail"}, "metrics[1].margin"),
        ({"role": "guardrail", "margin": -0.1}, "metrics[1].margin"),
        ({"role": "guardrail", "margin": "0.1"}, "metrics[1].margin"),
        (
            {"role": "guardrail", "margin": 0.1, "higher_is_better": "no"},
            "metrics[1].higher_is_better",
        ),
        ({"role": "guardrail", "margin": 0.1, "margin_relative": 1}, "metrics[1].margin_relative"),
        ({"margin": 0.1}, "metrics[1].margin"),
    ],
)
def test_bad_guardrail_fields_are_a_422_naming_the_field(
    client: TestClient, metric: dict[str, Any], field: str
) -> None:
    body = {
        "key": "bad",
        "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        "metrics": [{"key": "conversion"}, {"key": "latency", **metric}],
    }
    refused = client.post(f"{API}/experiments", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == field


def test_the_primary_metric_is_no_guardrail_and_completion_is_not_settable(
    client: TestClient,
) -> None:
    body = {
        "key": "bad",
        "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        "metrics": [{"key": "latency", "role": "guardrail", "margin": 1}],
    }
    refused = client.post(f"{API}/experiments", json=body)
    assert (refused.status_code, refused.json()["error"]["field"]) == (422, "metrics[0].role")
    forged = {**body, "metrics": [], "settings": {"completion": {"override": True}}}
    refused = client.post(f"{API}/experiments", json=forged)
    assert (refused.status_code, refused.json()["error"]["field"]) == (422, "settings.completion")


def test_bad_override_is_a_422(client: TestClient) -> None:
    running(client)
    url = f"{API}/experiments/button"
    for body in (
        {"status": "completed", "winner": "green", "override": "yes"},
        {"status": "paused", "override": True},
    ):
        refused = client.put(f"{url}/status", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == "override"
    refused = client.post(f"{url}/end", json={"override": 1})
    assert refused.status_code == 422
    assert client.get(url).json()["status"] == "running"
