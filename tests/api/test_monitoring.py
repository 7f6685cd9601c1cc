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
    assert checks["guardrail_harm"]["status"] == "ok"

    bad = {"key": "bad", "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]}
    bad["settings"] = {"monitoring": {"guardrails": ["revenue"]}}
    refused = client.post(f"{API}/experiments", json=bad)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "settings.monitoring.guardrails[0]"


def test_each_check_says_whether_it_ran(client: TestClient) -> None:
    """A check that judged nothing is OK with ``ran`` false, so no face shows it as passed; the
    kept report keeps it."""
    running(client, "fresh")
    send(client, "fresh", {"control": 3, "green": 2})  # too few units for the sample ratio
    running(client, "busy")
    send(client, "busy", {"control": 300, "green": 300}, converting=300)
    by_key = {e["key"]: e for e in report(client)["experiments"]}
    fresh = {c["name"]: c for c in by_key["fresh"]["checks"]}
    busy = {c["name"]: c for c in by_key["busy"]["checks"]}
    assert (fresh["srm"]["status"], fresh["srm"]["ran"]) == ("ok", False)
    assert fresh["srm"]["message"].startswith("Too few units")
    assert (busy["srm"]["status"], busy["srm"]["ran"]) == ("ok", True)
    assert fresh["stale"]["ran"] is True  # an event arrived: its age was judged
    assert all(c["ran"] for c in busy.values())
    daily = client.app.state.monitoring  # type: ignore[attr-defined]
    daily.at = time(0, 0, tzinfo=UTC)
    assert daily.run_if_due() is not None
    (kept,) = client.get(f"{API}/monitoring/reports").json()["reports"]
    kept_fresh = next(e for e in kept["experiments"] if e["key"] == "fresh")
    assert kept_fresh["checks"][0] == {**fresh["srm"], "ran": False}


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


def contextual_traffic(client: TestClient, **monitoring: Any) -> None:
    """A contextual bandit whose 20 decisions got 2 successes and ratings averaging 3.0."""
    arms = [{"key": a, "weight": 0.5} for a in ("svd", "graph")]
    contextual = {"attributes": {"user_type": ["new", "returning"]}}
    settings = {"contextual": contextual, "monitoring": monitoring}
    running(client, "recs", type="contextual_bandit", variants=arms, metrics=[], settings=settings)
    for i in range(20):
        body = {"unit_id": f"user-{i}", "context": {"user_type": "new"}}
        assert client.post(f"{API}/experiments/recs/decide", json=body).status_code == 200
    feedback = [("thumbs-up", None)] * 2 + [("rating", 3.0)] * 6
    for i, (event, value) in enumerate(feedback):
        body = {"unit_id": f"user-{i}", "event": event, "value": value}
        response = client.post(f"{API}/experiments/recs/feedback", json=body)
        assert response.status_code == 200, response.text


def test_contextual_thresholds_per_experiment_on_every_store(client: TestClient) -> None:
    contextual_traffic(client, min_rate=0.10, min_avg_rating=3.5, min_units=5)
    (health,) = report(client)["experiments"]
    by_name = {c["name"]: c for c in health["checks"]}
    assert list(by_name) == ["arm_dominance", "min_rate", "min_avg_rating", "stale"]
    assert (by_name["min_rate"]["status"], by_name["min_rate"]["figures"]["successes"]) == (
        "ok",
        2,
    )  # 2 of 20 is 10%: exactly the minimum
    rating = by_name["min_avg_rating"]
    assert (rating["status"], rating["figures"]["ratings"]) == ("warning", 6)
    assert rating["figures"]["avg_rating"] == 3.0
    assert health["status"] == "warning"


def test_contextual_thresholds_from_the_environment_reach_the_report_and_the_daily_run(
    monkeypatch: Any,
) -> None:
    from abpilot.api import create_app
    from abpilot.settings import Settings

    monkeypatch.setenv("MONITOR_MIN_RATE", "0.15")
    monkeypatch.setenv("MONITOR_MIN_AVG_RATING", "3.5")
    monkeypatch.setenv("MONITOR_MAX_ARM_DOMINANCE", "0.9")
    with TestClient(create_app(Settings(store="memory", scheduler_enabled=False))) as client:
        contextual_traffic(client, min_units=5)
        checks = {c["name"]: c for c in report(client)["experiments"][0]["checks"]}
        assert checks["min_rate"]["status"] == "warning"  # 10% < 15%
        assert checks["min_rate"]["figures"]["min_rate"] == 0.15
        assert checks["min_avg_rating"]["figures"]["min_avg_rating"] == 3.5
        assert checks["arm_dominance"]["figures"]["max_arm_dominance"] == 0.9
        daily = client.app.state.monitoring  # type: ignore[attr-defined]
        daily.at = time(0, 0, tzinfo=UTC)
        assert daily.run_if_due() is not None
        (kept,) = client.get(f"{API}/monitoring/reports").json()["reports"]
        names = [c["name"] for c in kept["experiments"][0]["checks"]]
        assert names == ["arm_dominance", "min_rate", "min_avg_rating", "stale"]
