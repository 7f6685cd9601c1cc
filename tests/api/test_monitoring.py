"""Monitoring over REST on every store: the report now, the kept reports, and refusals."""

from __future__ import annotations

from datetime import UTC, time
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import API, running


def send(client: TestClient, key: str, split: dict[str, int], converting: int = 0) -> None:
    """Units exposed to each variant as ``split`` says; every tenth of the first ``converting``."""
    events: list[dict[str, Any]] = []
    for variant, n in split.items():
        for i in range(n):
            unit = f"{variant}-{i}"
            exposure = {"type": "exposure", "experiment_id": key, "unit_id": unit}
            events.append({**exposure, "variant": variant})
            if i < converting and i % 10 == 0:
                events.append({"type": "conversion", "experiment_id": key, "unit_id": unit})
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 200, response.text


def report(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/monitoring/report", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_report_of_a_healthy_and_a_broken_experiment(client: TestClient) -> None:
    assert report(client)["experiments"] == []
    running(client, "healthy")
    send(client, "healthy", {"control": 300, "green": 300}, converting=300)
    running(client, "broken")
    send(client, "broken", {"control": 300, "green": 30})
    running(client, "paused")  # only running experiments are checked
    client.put(f"{API}/experiments/paused/status", json={"status": "paused"})

    body = report(client, days=3)
    assert (body["days"], body["status"]) == (3, "alert")
    assert body["counts"] == {"ok": 1, "warning": 0, "alert": 1}
    by_key = {e["key"]: e for e in body["experiments"]}
    assert set(by_key) == {"healthy", "broken"}
    healthy, broken = by_key["healthy"], by_key["broken"]
    assert healthy["status"] == "ok"
    assert [c["name"] for c in healthy["checks"]] == [
        "srm",
        "stale",
        "conversions_exceed_exposures",
    ]
    srm = broken["checks"][0]
    assert (broken["status"], srm["name"], srm["status"]) == ("alert", "srm", "alert")
    assert srm["message"].startswith("Sample ratio mismatch: units split 300/30")
    assert srm["figures"]["observed"] == {"control": 300, "green": 30}
    assert broken["type"] == "ab_test"


def test_per_experiment_settings_and_their_refusal(client: TestClient) -> None:
    running(
        client,
        "guarded",
        settings={"monitoring": {"min_rate": 0.5, "guardrails": {"revenue": "decrease"}}},
    )
    send(client, "guarded", {"control": 120, "green": 120}, converting=120)
    checks = {c["name"]: c for c in report(client)["experiments"][0]["checks"]}
    assert checks["min_rate"]["status"] == "warning"
    assert checks["min_rate"]["message"].startswith("Every arm converts below 50.0%")
    assert checks["guardrail"]["status"] == "ok"

    bad = {"key": "bad", "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]}
    bad["settings"] = {"monitoring": {"guardrails": ["revenue"]}}
    refused = client.post(f"{API}/experiments", json=bad)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "settings.monitoring.guardrails[0]"


def test_days_out_of_range(client: TestClient) -> None:
    for days in (0, 367, "week"):
        response = client.get(f"{API}/monitoring/report", params={"days": days})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "days"


def test_kept_reports_newest_first(client: TestClient) -> None:
    assert client.get(f"{API}/monitoring/reports").json() == {"reports": []}
    running(client, "quiet")
    daily = client.app.state.monitoring  # type: ignore[attr-defined]
    daily.at = time(0, 0, tzinfo=UTC)  # due at any time of the day, once
    first = daily.run_if_due()
    assert first is not None
    assert daily.run_if_due() is None  # already ran today
    daily.monitor.keep(daily.monitor.report(days=1), keep=daily.keep)
    kept = client.get(f"{API}/monitoring/reports").json()["reports"]
    assert [r["days"] for r in kept] == [1, 7]
    assert kept[1]["experiments"][0]["key"] == "quiet"
    assert kept[0]["generated_at"] > kept[1]["generated_at"]
