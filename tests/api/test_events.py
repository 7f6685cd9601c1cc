"""Assignment and event intake over REST, on every store."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from abpilot.domain.assignment import Bucketing
from tests.api.conftest import API, running
from tests.factories import make_experiment


def metrics(client: TestClient, key: str = "button") -> dict[str, Any]:
    body = client.get(f"{API}/experiments/{key}/metrics").json()
    return {v["key"]: v for v in body["variants"]}


def assign(client: TestClient, unit: str, key: str = "button") -> Any:
    return client.post(f"{API}/experiments/{key}/assign", json={"unit_id": unit})


def test_assignment_is_stable_and_matches_the_hash(client: TestClient) -> None:
    exp = running(client)
    bucketing = Bucketing.for_experiment(make_experiment("button", salt="button"))
    for unit in [f"user-{i}" for i in range(40)] + ["ユーザー 1"]:
        first = assign(client, unit).json()
        assert assign(client, unit).json() == first
        assert first["experiment_id"] == exp["id"]
        assert first["in_experiment"] is True
        expected = ["control", "green"][bucketing.variant_index(unit)]
        assert first["variant"]["key"] == expected
    green = assign(client, "user-1").json()["variant"]
    if green["key"] == "green":
        assert green["config"] == {"colour": "green", "size": [1, 2]}
    counts = metrics(client)
    assert counts["control"]["assigned_units"] + counts["green"]["assigned_units"] == 41


def test_units_outside_the_traffic_get_no_variant(client: TestClient) -> None:
    running(client, traffic_allocation=0.1)
    answers = [assign(client, f"u{i}").json() for i in range(200)]
    outside = [a for a in answers if not a["in_experiment"]]
    assert 150 < len(outside) < 200
    assert all(a["variant"] is None for a in outside)
    counts = metrics(client)
    total = counts["control"]["assigned_units"] + counts["green"]["assigned_units"]
    assert total == 200 - len(outside)


def test_assignment_needs_a_running_experiment(client: TestClient) -> None:
    running(client)
    client.put(f"{API}/experiments/button/status", json={"status": "paused"})
    response = assign(client, "u1")
    assert response.status_code == 409
    assert "paused" in response.json()["error"]["message"]
    assert assign(client, "").status_code == 422
    assert assign(client, "x" * 257).status_code == 422


def test_exposures_and_conversions_per_unit(client: TestClient) -> None:
    running(client)
    variant = assign(client, "alice").json()["variant"]["key"]
    url = f"{API}/experiments/button"
    assert client.post(f"{url}/exposures", json={"unit_id": "alice"}).json() == {
        "received": 1,
        "applied": 1,
        "duplicates": 0,
    }
    client.post(f"{url}/exposures", json={"unit_id": "alice"})
    client.post(f"{url}/conversions", json={"unit_id": "alice", "metric": "conversion"})
    for value in (10.0, 5.5):
        client.post(
            f"{url}/conversions", json={"unit_id": "alice", "metric": "revenue", "value": value}
        )
    row = metrics(client)[variant]
    assert (row["exposures"], row["unique_units"], row["assigned_units"]) == (2, 1, 1)
    conversion = row["metrics"]["conversion"]
    assert (conversion["count"], conversion["units"], conversion["conversion_rate"]) == (1, 1, 1.0)
    revenue = row["metrics"]["revenue"]
    assert (revenue["count"], revenue["units"], revenue["sum"]) == (2, 1, 15.5)
    assert revenue["sum_squares"] == pytest.approx(15.5**2)
    assert revenue["basis"] == "exposed_units"


def test_mean_and_variance_are_per_exposed_unit(client: TestClient) -> None:
    running(client)
    url = f"{API}/experiments/button"
    totals = {"u1": 10.0, "u2": 0.0, "u3": 4.0, "u4": 0.0}
    units = {u: assign(client, u).json()["variant"]["key"] for u in totals}
    for unit, total in totals.items():
        client.post(f"{url}/exposures", json={"unit_id": unit})
        if total:
            client.post(
                f"{url}/conversions", json={"unit_id": unit, "metric": "revenue", "value": total}
            )
    import statistics

    rows = metrics(client)
    for variant in ("control", "green"):
        values = [t for u, t in totals.items() if units[u] == variant]
        revenue = rows[variant]["metrics"]["revenue"]
        if len(values) >= 2:
            assert revenue["mean"] == pytest.approx(statistics.mean(values))
            assert revenue["variance"] == pytest.approx(statistics.variance(values))


def test_exposure_without_assignment_stores_the_hashed_variant(client: TestClient) -> None:
    running(client)
    client.post(f"{API}/experiments/button/exposures", json={"unit_id": "bob"})
    stored = assign(client, "bob").json()["variant"]["key"]
    assert metrics(client)[stored]["unique_units"] == 1


def test_event_level_mode_without_unit_ids(client: TestClient) -> None:
    running(client)
    url = f"{API}/experiments/button"
    for _ in range(4):
        client.post(f"{url}/exposures", json={"variant": "green"})
    client.post(f"{url}/conversions", json={"variant": "green"})
    row = metrics(client)["green"]["metrics"]["conversion"]
    assert (row["count"], row["basis"], row["conversion_rate"]) == (1, "exposures", 0.25)


def test_sona_conversion_shape(client: TestClient) -> None:
    exp = running(client)
    variant = assign(client, "carol").json()["variant"]["key"]
    body = {"experiment_id": exp["id"], "user_id": "carol", "metric_name": "revenue", "value": 3}
    assert client.post(f"{API}/experiments/conversions", json=body).status_code == 200
    assert metrics(client)[variant]["metrics"]["revenue"]["sum"] == 3.0


def test_event_id_makes_retries_count_once(client: TestClient) -> None:
    running(client)
    variant = assign(client, "dave").json()["variant"]["key"]
    body = {"unit_id": "dave", "metric": "revenue", "value": 7, "event_id": "order-77"}
    first = client.post(f"{API}/experiments/button/conversions", json=body).json()
    again = client.post(f"{API}/experiments/button/conversions", json=body).json()
    assert (first["applied"], again["applied"], again["duplicates"]) == (1, 0, 1)
    assert metrics(client)[variant]["metrics"]["revenue"]["count"] == 1


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"unit_id": "stranger"}, 404, "unit_not_assigned", "unit_id"),
        ({"unit_id": "erin", "metric": "signups"}, 422, "validation_error", "metric"),
        ({"unit_id": "erin", "metric": "revenue"}, 422, "validation_error", "value"),
        ({"variant": "purple"}, 422, "validation_error", "variant"),
        ({}, 422, "validation_error", "variant"),
        ({"unit_id": "erin", "value": "lots"}, 422, "validation_error", "value"),
        ({"unit_id": "erin", "value": 1e16}, 422, "validation_error", "value"),
        (
            {"unit_id": "erin", "timestamp": "2999-01-01T00:00:00Z"},
            422,
            "validation_error",
            "timestamp",
        ),
        ({"unit_id": "erin", "timestamp": "yesterday"}, 422, "validation_error", "timestamp"),
        ({"unit_id": "erin", "event_id": ""}, 422, "validation_error", "event_id"),
    ],
)
def test_refused_conversions_count_nothing(
    client: TestClient, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    running(client)
    assign(client, "erin")
    before = metrics(client)
    response = client.post(f"{API}/experiments/button/conversions", json=body)
    assert response.status_code == status, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (code, field)
    assert metrics(client) == before


def test_events_naming_another_variant_than_assigned_count_under_the_assigned_one(
    client: TestClient,
) -> None:
    """The unit's stored assignment decides, as it does in the store when another worker stored
    it meanwhile: the reply is the usual one and nothing counts under the named variant."""
    running(client)
    variant = assign(client, "frank").json()["variant"]["key"]
    other = "green" if variant == "control" else "control"
    url = f"{API}/experiments/button"
    for kind in ("exposures", "conversions"):
        response = client.post(f"{url}/{kind}", json={"unit_id": "frank", "variant": other})
        assert response.json() == {"received": 1, "applied": 1, "duplicates": 0}
    counts = metrics(client)
    assert (counts[variant]["exposures"], counts[variant]["unique_units"]) == (1, 1)
    assert counts[variant]["metrics"]["conversion"]["count"] == 1
    assert counts[other]["exposures"] == 0
    assert counts[other]["metrics"]["conversion"]["count"] == 0


def test_events_need_a_running_experiment(client: TestClient) -> None:
    running(client)
    assign(client, "gina")
    client.put(f"{API}/experiments/button/status", json={"status": "completed"})
    response = client.post(f"{API}/experiments/button/exposures", json={"unit_id": "gina"})
    assert response.status_code == 409
    assert "completed" in response.json()["error"]["message"]


def batch(client: TestClient, events: list[dict[str, Any]]) -> Any:
    return client.post(f"{API}/events", json={"events": events})


def test_batch_applies_all_across_experiments(
    client: TestClient, request: pytest.FixtureRequest
) -> None:
    running(client, "a")
    running(client, "b")
    events = [
        {"type": "exposure", "experiment_id": "a", "unit_id": "u1"},
        {"type": "conversion", "experiment_id": "a", "unit_id": "u1", "event_id": "e1"},
        {"type": "conversion", "experiment_id": "a", "unit_id": "u1", "event_id": "e1"},
        {"type": "exposure", "experiment_id": "b", "variant": "green"},
        {
            "type": "conversion",
            "experiment_id": "b",
            "variant": "green",
            "metric": "revenue",
            "value": 2.5,
        },
    ]
    expected: dict[str, Any] = {"received": 5, "applied": 4, "duplicates": 1}
    if request.node.callspec.params["store_factory"] == "redis-cluster":
        expected["atomic"] = "per_experiment"  # one slot per experiment (README)
    assert batch(client, events).json() == expected
    a_variant = assign(client, "u1", "a").json()["variant"]["key"]
    assert metrics(client, "a")[a_variant]["metrics"]["conversion"]["count"] == 1
    assert metrics(client, "b")["green"]["metrics"]["revenue"]["sum"] == 2.5


def test_batch_is_all_or_nothing(client: TestClient) -> None:
    running(client)
    good = [{"type": "exposure", "experiment_id": "button", "unit_id": f"u{i}"} for i in range(50)]
    for bad, field in [
        (
            {"type": "conversion", "experiment_id": "button", "unit_id": "never"},
            "events[50].unit_id",
        ),
        ({"type": "exposure", "experiment_id": "missing", "unit_id": "x"}, "events[50]"),
        ({"type": "exposure", "experiment_id": "button", "variant": "nope"}, "events[50].variant"),
        ({"type": "click", "experiment_id": "button"}, "events[50].type"),
    ]:
        response = batch(client, [*good, bad])
        assert 400 <= response.status_code < 500
        assert response.json()["error"]["field"].startswith(field), response.json()
    assert all(v["exposures"] == 0 for v in metrics(client).values())


def test_batch_conversion_may_follow_its_exposure(client: TestClient) -> None:
    running(client)
    events = [
        {"type": "exposure", "experiment_id": "button", "unit_id": "new-user"},
        {"type": "conversion", "experiment_id": "button", "unit_id": "new-user"},
    ]
    assert batch(client, events).json()["applied"] == 2


def test_batch_limit(client: TestClient) -> None:
    running(client)
    event = {"type": "exposure", "experiment_id": "button", "variant": "green"}
    assert batch(client, [event] * 10_000).json()["applied"] == 10_000
    response = batch(client, [event] * 10_001)
    assert response.status_code == 422
    assert "at most 10000" in response.json()["error"]["message"]
    assert metrics(client)["green"]["exposures"] == 10_000
