"""Bandit experiments over REST on every store: daily intake, allocation, recalculation,
history, and sticky assignment across a weight change."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scipy import integrate, stats

from tests.api.conftest import API, running

TODAY = datetime.now(UTC).date()
ARMS = [
    {"key": "control", "weight": 0.34},
    {"key": "variant_a", "weight": 0.33},
    {"key": "variant_b", "weight": 0.33},
]


def bandit(client: TestClient, key: str = "ads", **bandit_settings: Any) -> dict[str, Any]:
    settings = {"bandit": {"prior_alpha": 1, "prior_beta": 99, **bandit_settings}}
    return running(client, key, type="bandit", variants=ARMS, metrics=[], settings=settings)


def post_day(
    client: TestClient,
    day: date,
    clicks: dict[str, int],
    key: str = "ads",
    impressions: int = 10_000,
) -> Any:
    body = {
        "date": day.isoformat(),
        "metrics": [
            {"variant_name": v, "impressions": impressions, "clicks": c} for v, c in clicks.items()
        ],
    }
    return client.post(f"{API}/experiments/{key}/metrics", json=body)


def reference_shares(arms: list[tuple[int, int]], prior: tuple[int, int]) -> list[float]:
    dists = [stats.beta(prior[0] + s, prior[1] + n - s) for s, n in arms]
    shares = []
    for i, d in enumerate(dists):

        def f(x: float, i: int = i) -> float:
            return float(
                dists[i].pdf(x) * math.prod(o.cdf(x) for j, o in enumerate(dists) if j != i)
            )

        shares.append(integrate.quad(f, d.ppf(1e-15), d.isf(1e-15), epsabs=1e-14, limit=400)[0])
    return shares


def test_seed_example_gives_the_exact_probabilities(client: TestClient) -> None:
    bandit(client, min_weight=0)
    for days_ago in range(14):
        day = TODAY - timedelta(days=days_ago)
        clicks = {"control": 320, "variant_a": 420, "variant_b": 380}
        assert post_day(client, day, clicks).status_code == 200
    body = client.get(f"{API}/experiments/ads/allocation").json()
    assert (body["algorithm"], body["method"], body["source"]) == (
        "thompson_sampling",
        "exact",
        "daily",
    )
    assert body["window_days"] == 14
    arms = {a["variant_name"]: a for a in body["allocations"]}
    assert arms["control"]["metrics"] == {"impressions": 140_000, "clicks": 4480, "ctr": 0.032}
    shares = reference_shares([(4480, 140_000), (5880, 140_000), (5320, 140_000)], (1, 99))
    for arm, share in zip(body["allocations"], shares, strict=True):
        assert arm["allocation_percentage"] == round(share * 100, 2)
        assert arm["window_days"] == 14
        assert arm["fallback"] == "none"
    assert sum(a["allocation_percentage"] for a in body["allocations"]) == pytest.approx(100)


def test_close_arms_share_traffic_by_probability(client: TestClient) -> None:
    bandit(client, min_weight=0)
    for days_ago in range(3):
        post_day(
            client,
            TODAY - timedelta(days=days_ago),
            {"control": 100, "variant_a": 108, "variant_b": 104},
        )
    body = client.get(f"{API}/experiments/ads/allocation").json()
    shares = reference_shares([(300, 30_000), (324, 30_000), (312, 30_000)], (1, 99))
    percentages = [a["allocation_percentage"] for a in body["allocations"]]
    assert percentages == pytest.approx([s * 100 for s in shares], abs=0.01)
    assert sum(percentages) == pytest.approx(100, abs=1e-9)
    assert 5 < percentages[0] < percentages[2] < percentages[1]


def test_windows_and_prior_fallback_are_reported(client: TestClient) -> None:
    bandit(client, min_weight=0.01)
    post_day(client, TODAY - timedelta(days=20), {"variant_a": 300}, impressions=5000)
    post_day(client, TODAY, {"control": 30}, impressions=1000)
    arms = {
        a["variant_name"]: a
        for a in client.get(f"{API}/experiments/ads/allocation").json()["allocations"]
    }
    assert (arms["control"]["window_days"], arms["control"]["fallback"]) == (14, "none")
    assert (arms["variant_a"]["window_days"], arms["variant_a"]["fallback"]) == (30, "widened")
    assert (arms["variant_b"]["window_days"], arms["variant_b"]["fallback"]) == (None, "prior")
    assert arms["variant_b"]["metrics"]["impressions"] == 0


def test_reposting_a_date_replaces_it_and_keeps_the_raw_log(client: TestClient) -> None:
    bandit(client)
    post_day(client, TODAY, {"control": 300, "variant_a": 400})
    again = post_day(client, TODAY, {"control": 310, "variant_a": 410})
    assert again.status_code == 200
    history = client.get(f"{API}/experiments/ads/history").json()
    rows = {r["variant_name"]: r for r in history["daily_metrics"]}
    assert (rows["control"]["clicks"], rows["variant_a"]["clicks"]) == (310, 410)
    assert len(history["daily_metrics"]) == 2
    service = client.app.state.service  # type: ignore[attr-defined]
    raw = service.store.get_raw_metrics(service.get_experiment("ads").id)
    assert len(raw) == 2
    assert '"clicks": 300' in raw[0].payload


@pytest.mark.parametrize(
    ("metrics", "day", "field", "words"),
    [
        (
            [{"variant_name": "control", "impressions": 10, "clicks": 11}],
            TODAY,
            "metrics[0].clicks",
            "exceed",
        ),
        (
            [{"variant_name": "control", "impressions": -1, "clicks": 0}],
            TODAY,
            "metrics[0].impressions",
            "",
        ),
        (
            [{"variant_name": "control", "impressions": 10, "clicks": -1}],
            TODAY,
            "metrics[0].clicks",
            "",
        ),
        (
            [{"variant_name": "mystery", "impressions": 10, "clicks": 1}],
            TODAY,
            "metrics[0].variant_name",
            "no variant",
        ),
        (
            [{"variant_name": "control", "impressions": 10, "clicks": 1}],
            TODAY + timedelta(days=1),
            "date",
            "future",
        ),
        (
            [
                {"variant_name": "control", "impressions": 10, "clicks": 1},
                {"variant_name": "control", "impressions": 20, "clicks": 1},
            ],
            TODAY,
            "metrics[1].variant_name",
            "twice",
        ),
        ([], TODAY, "metrics", ""),
    ],
)
def test_intake_refusals_store_nothing(
    client: TestClient, metrics: list[dict[str, Any]], day: date, field: str, words: str
) -> None:
    bandit(client)
    response = client.post(
        f"{API}/experiments/ads/metrics", json={"date": day.isoformat(), "metrics": metrics}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert words in response.json()["error"]["message"]
    assert client.get(f"{API}/experiments/ads/history").json()["daily_metrics"] == []


def test_intake_and_recalculation_are_for_running_bandits(client: TestClient) -> None:
    running(client, "plain")
    assert post_day(client, TODAY, {"control": 1}, key="plain").status_code == 409
    assert client.post(f"{API}/experiments/plain/recalculate").status_code == 409
    assert client.get(f"{API}/experiments/plain/allocation").status_code == 409
    bandit(client)
    client.put(f"{API}/experiments/ads/status", json={"status": "paused"})
    assert post_day(client, TODAY, {"control": 1}).status_code == 409
    assert client.post(f"{API}/experiments/ads/recalculate").status_code == 409


def test_bad_bandit_settings_are_refused(client: TestClient) -> None:
    from tests.api.conftest import experiment_body

    for bandit_settings, field in [
        ({"min_weight": 0.6}, "settings.bandit.min_weight"),
        ({"method": "ucb"}, "settings.bandit.method"),
        ({"prior_alpha": 0}, "settings.bandit.prior_alpha"),
        ({"window_days": 30, "max_window_days": 14}, "settings.bandit.max_window_days"),
        ({"metric": "revenue_typo"}, "settings.bandit.metric"),
        ({"surprise": True}, "settings.bandit.surprise"),
    ]:
        body = experiment_body(type="bandit", settings={"bandit": bandit_settings})
        response = client.post(f"{API}/experiments", json=body)
        assert response.status_code == 422, bandit_settings
        assert response.json()["error"]["field"] == field


def events_for(
    client: TestClient, key: str, variant: str, units: int, converting: int, prefix: str
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(units):
        unit = f"{prefix}-{variant}-{i}"
        events.append(
            {"type": "exposure", "experiment_id": key, "unit_id": unit, "variant": variant}
        )
        if i < converting:
            events.append({"type": "conversion", "experiment_id": key, "unit_id": unit})
    return events


def test_event_driven_bandit_moves_new_units_only(client: TestClient) -> None:
    arms = [{"key": "control", "weight": 0.5}, {"key": "better", "weight": 0.5}]
    running(
        client,
        "live",
        type="bandit",
        variants=arms,
        metrics=[],
        settings={"bandit": {"min_exposures": 100}},
    )
    early = [f"early-{i}" for i in range(200)]
    before = {
        u: client.post(f"{API}/experiments/live/assign", json={"unit_id": u}).json()["variant"][
            "key"
        ]
        for u in early
    }
    assert 70 < sum(v == "better" for v in before.values()) < 130
    burn_in = client.post(f"{API}/experiments/live/recalculate").json()
    assert burn_in["status"] == "unchanged"  # under 100 exposures per arm: configured weights
    events = events_for(client, "live", "control", 400, 20, "w")
    events += events_for(client, "live", "better", 400, 80, "w")
    assert client.post(f"{API}/events", json={"events": events}).status_code == 200
    outcome = client.post(f"{API}/experiments/live/recalculate").json()
    assert (outcome["status"], outcome["period"]) == ("updated", 1)
    allocation = client.get(f"{API}/experiments/live/allocation").json()
    shares = {a["variant_name"]: a["allocation_percentage"] for a in allocation["allocations"]}
    assert shares == {"control": 1.0, "better": 99.0}
    after = {
        u: client.post(f"{API}/experiments/live/assign", json={"unit_id": u}).json()["variant"][
            "key"
        ]
        for u in early
    }
    assert after == before  # sticky: nobody already assigned moves
    newcomers = [
        client.post(f"{API}/experiments/live/assign", json={"unit_id": f"new-{i}"}).json()[
            "variant"
        ]["key"]
        for i in range(300)
    ]
    assert newcomers.count("better") > 280
    again = client.post(f"{API}/experiments/live/recalculate").json()
    assert again["status"] == "unchanged"
    history = client.get(f"{API}/experiments/live/history").json()
    (change,) = history["weight_changes"]
    assert change["weights"] == {"control": 0.01, "better": 0.99}
    assert change["details"]["arms"]["better"]["successes"] == 80
    assert (change["method"], change["source"], change["period"]) == ("exact", "events", 1)


def test_recalculate_all_isolates_failures(client: TestClient, monkeypatch: Any) -> None:
    bandit(client, "one", min_weight=0)
    bandit(client, "two", min_weight=0)
    running(client, "not-a-bandit")
    for key in ("one", "two"):
        post_day(client, TODAY, {"control": 300, "variant_a": 500, "variant_b": 310}, key=key)
    allocator = client.app.state.service.allocator  # type: ignore[attr-defined]
    original = allocator.compute

    def flaky(experiment: Any, counters: Any, *daily: Any) -> Any:
        if experiment.key == "one":
            raise ValueError("simulated failure")
        return original(experiment, counters, *daily)

    monkeypatch.setattr(allocator, "compute", flaky)
    outcomes = {o["key"]: o for o in client.post(f"{API}/recalculate").json()}
    assert set(outcomes) == {"one", "two"}
    assert outcomes["one"]["status"] == "failed"
    assert "simulated failure" in outcomes["one"]["error"]
    assert (outcomes["two"]["status"], outcomes["two"]["period"]) == ("updated", 1)


@pytest.mark.parametrize(("arms", "floor"), [(2, 1.0), (3, 0.67), (10, 0.2)])
def test_default_floor_is_one_percent_per_arm_within_two_percent_in_all(
    client: TestClient, arms: int, floor: float
) -> None:
    variants = [{"key": f"arm{i}", "weight": 1 / arms} for i in range(arms)]
    variants[0]["weight"] += 1 - sum(v["weight"] for v in variants)
    running(client, "many", type="bandit", variants=variants, metrics=[])
    # arm0 converts at 5%, every other arm at 1%: all but arm0 end at the floor.
    clicks = {f"arm{i}": 500 if i == 0 else 100 for i in range(arms)}
    assert post_day(client, TODAY, clicks, key="many").status_code == 200
    shares = [
        a["allocation_percentage"]
        for a in client.get(f"{API}/experiments/many/allocation").json()["allocations"]
    ]
    assert shares[1:] == [floor] * (arms - 1)
    assert shares[0] == pytest.approx(100 - floor * (arms - 1))


def test_a_configured_floor_is_kept_per_arm_whatever_the_number_of_arms(
    client: TestClient,
) -> None:
    variants = [{"key": f"arm{i}", "weight": 0.1} for i in range(10)]
    settings = {"bandit": {"min_weight": 0.01}}
    running(client, "many", type="bandit", variants=variants, metrics=[], settings=settings)
    clicks = {f"arm{i}": 500 if i == 0 else 100 for i in range(10)}
    assert post_day(client, TODAY, clicks, key="many").status_code == 200
    body = client.get(f"{API}/experiments/many/allocation").json()
    assert [a["allocation_percentage"] for a in body["allocations"]] == [91.0] + [1.0] * 9
