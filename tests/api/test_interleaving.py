"""Interleaving over REST on every store: impressions, clicks, analysis and refusals."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API, running

RANKERS = [{"key": "bm25", "weight": 0.5}, {"key": "neural", "weight": 0.5}]
A = ["d1", "d2", "d3", "d4", "d5"]
B = ["d3", "d6", "d1", "d7", "d8"]


@pytest.fixture
def search(client: TestClient) -> dict[str, Any]:
    return running(client, "search", type="interleaving", variants=RANKERS, metrics=[])


def show(client: TestClient, **body: Any) -> dict[str, Any]:
    request = {"unit_id": "u1", "ranking_a": A, "ranking_b": B, "length": 6, **body}
    response = client.post(f"{API}/experiments/search/interleave", json=request)
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


def test_round_trip(client: TestClient, search: dict[str, Any]) -> None:
    first = show(client)
    items = [i["item"] for i in first["items"]]
    assert len(items) == 6
    assert len(set(items)) == 6
    assert {i["team"] for i in first["items"]} == {"a", "b"}
    assert first["method"] == "team_draft"
    assert show(client) == first  # a reload shows the same list under the same id
    other = show(client, seed="second-visit")
    assert other["impression_id"] != first["impression_id"]

    team = {i["item"]: i["team"] for i in first["items"]}
    a_item = next(i for i, t in team.items() if t == "a")
    url = f"{API}/experiments/search/clicks"
    click = {"impression_id": first["impression_id"], "items": [a_item]}
    assert client.post(url, json=click).json()["credited"] == 1
    again = client.post(url, json=click).json()
    assert (again["credited"], again["repeated"]) == (0, 1)  # counted once

    analysis = client.get(f"{API}/experiments/search/analysis").json()
    assert analysis["type"] == "interleaving"
    assert (analysis["impressions"], analysis["wins_a"], analysis["wins_b"]) == (2, 1, 0)
    assert analysis["ties"] == 1
    assert analysis["winner"] is None


def test_refusals(client: TestClient, search: dict[str, Any]) -> None:
    shown = show(client)
    url = f"{API}/experiments/search/clicks"
    unknown = client.post(url, json={"impression_id": shown["impression_id"], "items": ["zz"]})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "items[0]"
    missing = client.post(url, json={"impression_id": "nope", "items": ["d1"]})
    assert missing.status_code == 404
    empty = client.post(
        f"{API}/experiments/search/interleave", json={"ranking_a": [], "ranking_b": []}
    )
    assert empty.status_code == 422
    analysis = client.get(f"{API}/experiments/search/analysis").json()
    assert analysis["wins_a"] + analysis["wins_b"] == 0  # nothing was credited


def test_more_than_two_rankers_is_refused(client: TestClient) -> None:
    body = {
        "key": "three",
        "type": "interleaving",
        "variants": [{"key": k, "weight": 1 / 3} for k in ("x", "y", "z")],
    }
    response = client.post(f"{API}/experiments", json=body)
    assert response.status_code == 422
    assert "exactly two rankers" in response.json()["error"]["message"]


def test_balanced_method(client: TestClient) -> None:
    settings = {"interleaving": {"method": "balanced"}}
    running(client, "bal", type="interleaving", variants=RANKERS, metrics=[], settings=settings)
    request = {"unit_id": "u", "ranking_a": A, "ranking_b": B}
    shown = client.post(f"{API}/experiments/bal/interleave", json=request).json()
    assert shown["method"] == "balanced"
    assert {i["item"] for i in shown["items"]} == set(A) | set(B)


def test_items_as_long_as_allowed_are_clicked_counted_and_exported(
    client: TestClient, search: dict[str, Any]
) -> None:
    """Items may be 256 characters (URLs, say); their clicks are stored by position, so no
    event column overflows (PostgreSQL refused clicks on items over 94 characters)."""
    long_a = [f"https://example.com/{'a' * 220}/{i}" for i in range(4)]
    long_b = [f"https://example.com/{'b' * 220}/{i}" for i in range(4)]
    assert all(len(item) <= 256 for item in long_a + long_b)
    shown = show(client, ranking_a=long_a, ranking_b=long_b, length=4)
    team = {i["item"]: i["team"] for i in shown["items"]}
    clicked = [next(i for i, t in team.items() if t == "b")]
    answer = client.post(
        f"{API}/experiments/search/clicks",
        json={"impression_id": shown["impression_id"], "items": clicked},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["credited"] == 1
    analysis = client.get(f"{API}/experiments/search/analysis").json()
    assert (analysis["impressions"], analysis["wins_a"], analysis["wins_b"]) == (1, 0, 1)
    service = client.app.state.service  # type: ignore[attr-defined]
    (exported,) = service.transfer.export()["experiments"]
    position = [i["item"] for i in shown["items"]].index(clicked[0])
    assert exported["feedback"] == [[shown["impression_id"], f"clicked:{position}"]]
