"""The analysis endpoints on every store: verdicts, reasons, degenerate data, sample size."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API, running


def seed(client: TestClient, key: str, plan: dict[str, int]) -> None:
    """Units per variant with given conversions: {"control": (units, converting), ...}."""
    events: list[dict[str, Any]] = []
    for variant, (units, converting) in plan.items():
        for i in range(units):
            unit = f"{variant}-{i}"
            events.append(
                {"type": "exposure", "experiment_id": key, "unit_id": unit, "variant": variant}
            )
            if i < converting:
                events.append(
                    {
                        "type": "conversion",
                        "experiment_id": key,
                        "unit_id": unit,
                        "metric": "conversion",
                    }
                )
                events.append(
                    {
                        "type": "conversion",
                        "experiment_id": key,
                        "unit_id": unit,
                        "metric": "revenue",
                        "value": 10.0 + (i % 5),
                    }
                )
    for start in range(0, len(events), 5_000):
        response = client.post(f"{API}/events", json={"events": events[start : start + 5_000]})
        assert response.status_code == 200, response.text


def analysis(client: TestClient, key: str = "button", query: str = "") -> dict[str, Any]:
    response = client.get(f"{API}/experiments/{key}/analysis{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def no_nan(value: Any) -> None:
    text = json.dumps(value)
    assert "NaN" not in text
    assert "Infinity" not in text


def test_winner_found_and_stored_on_completion(client: TestClient) -> None:
    running(client, settings={"analysis": {"sample_size_per_variant": 1000}})
    seed(client, "button", {"control": (1000, 100), "green": (1000, 160)})
    body = analysis(client)
    no_nan(body)
    assert body["reason"] == "winner_found"
    assert body["winner"]["key"] == "green"
    assert body["winner"]["relative_improvement"] == pytest.approx(0.6)
    green = body["variants"][1]
    assert (green["units"], green["conversions"], green["conversion_rate"]) == (1000, 160, 0.16)
    assert green["significant"] is True
    assert green["p_value_adjusted"] >= green["p_value"]
    assert green["ci"][0] < 0.16 < green["ci"][1]
    assert green["chance_to_beat_control"] > 0.99
    assert body["sample_size"] == {
        "required_per_variant": 1000,
        "progress": 1.0,
        "basis": "planned",
    }
    assert body["family_size"] == 1  # green on the primary metric (revenue is secondary)
    assert client.get(f"{API}/experiments/button/analyze").json() == body
    done = client.put(f"{API}/experiments/button/status", json={"status": "completed"}).json()
    assert done["winner"] == "green"  # completing stores the final analysis's winner


def test_python_end_experiment_stores_the_analysed_winner(client: TestClient) -> None:
    running(client, settings={"analysis": {"sample_size_per_variant": 1000}})
    seed(client, "button", {"control": (1000, 100), "green": (1000, 160)})
    service = client.app.state.service  # type: ignore[attr-defined]
    assert service.end_experiment("button").winner == "green"


def test_value_metric_adds_mean_and_variance(client: TestClient) -> None:
    running(client)
    seed(client, "button", {"control": (200, 20), "green": (200, 40)})
    body = analysis(client, query="?metric=revenue")
    assert (body["metric"], body["kind"], body["method"]) == ("revenue", "value", "welch_t")
    control, green = body["variants"]
    assert control["mean"] == pytest.approx(20 * 12 / 200)
    assert green["variance"] > 0
    assert green["p_value"] < 0.05


def test_sample_ratio_mismatch_blocks_the_winner(client: TestClient) -> None:
    running(client, settings={"analysis": {"sample_size_per_variant": 100}})
    seed(client, "button", {"control": (600, 60), "green": (1000, 200)})
    body = analysis(client)
    assert body["srm"]["flagged"] is True
    assert body["srm"]["p_value"] < 0.001
    assert (body["winner"], body["reason"]) == (None, "srm_detected")


def assign(client: TestClient, key: str, units: int) -> dict[str, list[str]]:
    """Assign ``units`` units through the API; the units of each variant."""
    by_variant: dict[str, list[str]] = {}
    for i in range(units):
        response = client.post(f"{API}/experiments/{key}/assign", json={"unit_id": f"u{i}"})
        assert response.status_code == 200, response.text
        by_variant.setdefault(response.json()["variant"]["key"], []).append(f"u{i}")
    return by_variant


def test_every_variant_is_measured_on_one_basis_and_mixed_populations_are_named(
    client: TestClient,
) -> None:
    """Exposures tracked for 10 units of green only, conversions of 50 units in each variant:
    green is not measured on exposed units while the control is on assigned units (a rate of
    5.0 against 0.26, blamed on SRM); both are on exposed units and the mix is the reason."""
    running(client)
    units = assign(client, "button", 400)
    events: list[dict[str, Any]] = [
        {"type": "exposure", "experiment_id": "button", "unit_id": unit}
        for unit in units["green"][:10]
    ]
    events += [
        {"type": "conversion", "experiment_id": "button", "unit_id": unit}
        for variant in ("control", "green")
        for unit in units[variant][:50]
    ]
    assert client.post(f"{API}/events", json={"events": events}).status_code == 200

    metrics = client.get(f"{API}/experiments/button/metrics").json()
    conversion = metrics["metrics"]["conversion"]
    assert conversion["basis"] == "exposed_units"
    assert conversion["mixed_populations"] == [
        f"control has {len(units['control'])} assigned units and 50 conversions but no exposed "
        "units"
    ]
    summaries = {v["key"]: v["metrics"]["conversion"] for v in metrics["variants"]}
    assert {s["basis"] for s in summaries.values()} == {"exposed_units"}
    assert (summaries["control"]["n"], summaries["green"]["n"]) == (0, 10)

    body = analysis(client)
    no_nan(body)
    assert (body["basis"], body["winner"], body["reason"]) == (
        "exposed_units",
        None,
        "mixed_populations",
    )
    assert "control has" in body["message"]
    assert "but no exposed units" in body["message"]
    assert [v["units"] for v in body["variants"]] == [0, 10]


def test_conversions_by_variant_after_assignment_are_counted(client: TestClient) -> None:
    """The OpenInsight style: units assigned, then conversions naming only the variant."""
    running(client)
    units = assign(client, "button", 100)
    for variant, n in (("control", 5), ("green", 10)):
        for _ in range(n):
            response = client.post(
                f"{API}/experiments/button/conversions", json={"variant": variant}
            )
            assert response.status_code == 200, response.text

    metrics = client.get(f"{API}/experiments/button/metrics").json()
    assert metrics["metrics"]["conversion"] == {
        "basis": "assigned_units",
        "mixed_populations": [],
    }
    for variant in metrics["variants"]:
        summary = variant["metrics"]["conversion"]
        assigned = len(units[variant["key"]])
        assert (summary["count"], summary["units"]) == (summary["conversions"], 0)
        assert summary["conversion_rate"] == pytest.approx(summary["conversions"] / assigned)

    body = analysis(client)
    assert body["basis"] == "assigned_units"
    assert [(v["key"], v["units"], v["conversions"]) for v in body["variants"]] == [
        ("control", len(units["control"]), 5),
        ("green", len(units["green"]), 10),
    ]
    assert body["variants"][1]["conversion_rate"] == pytest.approx(10 / len(units["green"]))
    # p = 0.044 for green: significant once the empty revenue metric no longer doubles it (the
    # secondary metrics are their own family), far from the planned size.
    assert body["reason"] == "sample_size_not_reached"
    assert "no conversions" not in body["message"]


def test_not_significant_and_sample_size_not_reached(client: TestClient) -> None:
    running(client)
    seed(client, "button", {"control": (300, 30), "green": (300, 33)})
    assert analysis(client)["reason"] == "not_significant"
    # tau: the effect size the always-valid test is tuned to (default: the 10% relative MDE,
    # 0.005 here, far below what 400 units per arm can resolve).
    running(client, "big", settings={"analysis": {"tau": 0.05}})
    seed(client, "big", {"control": (400, 20), "green": (400, 60)})
    body = analysis(client, "big")
    assert body["reason"] == "sample_size_not_reached"
    assert body["sample_size"]["basis"] == "observed_control"
    assert body["sample_size"]["progress"] < 1
    sequential = analysis(client, "big", "?sequential=true")
    assert (sequential["method"], sequential["reason"]) == ("msprt", "winner_found")


@pytest.mark.parametrize(
    "plan",
    [
        {},
        {"control": (5, 0), "green": (5, 5)},
        {"control": (50, 0), "green": (50, 0)},
        {"control": (50, 50), "green": (50, 50)},
    ],
    ids=["no_units", "few_units", "no_conversions", "all_converted"],
)
def test_degenerate_data_gives_a_reason_not_an_error(
    client: TestClient, plan: dict[str, tuple[int, int]]
) -> None:
    running(client)
    if plan:
        seed(client, "button", plan)
    for query in ("", "?metric=revenue", "?sequential=true", "?correction=bh"):
        body = analysis(client, query=query)
        no_nan(body)
        assert body["winner"] is None
        assert body["reason"] in {"insufficient_data", "not_significant"}
        assert body["message"]


def test_refusals(client: TestClient) -> None:
    running(client)
    assert client.get(f"{API}/experiments/nope/analysis").status_code == 404
    bad = [
        ("?metric=nope", "metric"),
        ("?correction=bonferroni", "correction"),
        ("?alpha=2", "alpha"),
        ("?sequential=maybe", "sequential"),
    ]
    for query, field in bad:
        response = client.get(f"{API}/experiments/button/analysis{query}")
        assert response.status_code == 422, query
        assert response.json()["error"]["field"] == field


def test_bad_analysis_settings_are_refused_at_creation(client: TestClient) -> None:
    from tests.api.conftest import experiment_body

    for settings, field in [
        ({"analysis": {"alpha": 5}}, "settings.analysis.alpha"),
        ({"analysis": {"correction": "fdr"}}, "correction"),
        ({"analysis": {"sample_size_per_variant": 1}}, "settings.analysis.sample_size_per_variant"),
        ({"analysis": {"bogus": 1}}, "settings.analysis.bogus"),
        ({"analysis": {"prior": [1]}}, "settings.analysis.prior"),
        ({"analysis": []}, "settings.analysis"),
    ]:
        response = client.post(f"{API}/experiments", json=experiment_body(settings=settings))
        assert response.status_code == 422, settings
        assert response.json()["error"]["field"] == field


def test_sample_size_endpoint() -> None:
    from abpilot.api import create_app
    from abpilot.settings import Settings

    with TestClient(create_app(Settings(store="memory"))) as client:
        plan = client.get(f"{API}/sample-size?baseline_rate=0.1&mde=0.2&relative=true").json()
        assert plan["required_per_variant"] == 3835
        assert plan["target"] == pytest.approx(0.12)
        three = client.get(f"{API}/sample-size?baseline_rate=0.1&mde=0.02&variants=3").json()
        assert three["comparison_alpha"] == 0.025
        assert three["required_per_variant"] > plan["required_per_variant"]
        mean = client.get(f"{API}/sample-size?standard_deviation=20&mde=2").json()
        # Closed form for a mean: n = 2 ((z_0.975 + z_0.8) sd / mde)^2.
        assert mean["required_per_variant"] == math.ceil(2 * ((1.959964 + 0.841621) * 10) ** 2)
        for query in (
            "mde=0.02",
            "baseline_rate=1.5&mde=0.1",
            "baseline_rate=0.5&mde=0.6",
            "baseline_rate=0.1&mde=0.02&variants=1",
            "baseline_rate=0.1",
        ):
            assert client.get(f"{API}/sample-size?{query}").status_code == 422, query
