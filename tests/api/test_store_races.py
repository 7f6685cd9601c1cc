"""Races between workers reach the REST API as the same 409 on every store, never as a 500."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from abpilot.api import create_app
from abpilot.settings import Settings
from abpilot.store.factory import open_store
from abpilot.store.sql import SqlStore
from tests.api.conftest import API, experiment_body
from tests.conftest import BARRIER_SECONDS, StoreFactory, backend_url


def worker(store_factory: StoreFactory) -> TestClient:
    """One worker of the service: its own app on its own client of the shared store."""
    return TestClient(create_app(Settings(store="memory"), store=store_factory()))


def post(client: TestClient, key: str, barrier: threading.Barrier) -> Any:
    barrier.wait()
    return client.post(f"{API}/experiments", json=experiment_body(key))


def test_two_workers_creating_one_key_give_201_and_409(store_factory: StoreFactory) -> None:
    with worker(store_factory) as one, worker(store_factory) as two:
        for n, client in enumerate((one, two)):  # each app builds its models before the race
            assert client.post(f"{API}/experiments", json=experiment_body(f"warm-{n}")).is_success
        for r in range(6):
            barrier = threading.Barrier(2, timeout=BARRIER_SECONDS)
            with ThreadPoolExecutor(max_workers=2) as pool:
                answers = list(pool.map(post, (one, two), [f"same-{r}"] * 2, [barrier] * 2))
            assert sorted(a.status_code for a in answers) == [201, 409]
            refused = next(a for a in answers if a.status_code == 409).json()["error"]
            assert (refused["code"], refused["field"]) == ("duplicate_key", "key")
            assert refused["message"] == f"an experiment with key 'same-{r}' already exists"
        assert len(one.get(f"{API}/experiments").json()) == 2 + 6


@pytest.fixture(params=["sqlite", "postgres"])
def sql_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    with backend_url(request.param, tmp_path) as (url, options):
        store = open_store(url, **options)
        with TestClient(create_app(Settings(store="memory"), store=store)) as client:
            yield client
        store.close()


def test_a_key_taken_after_the_check_is_a_409_not_a_500(
    sql_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sql_client.post(f"{API}/experiments", json=experiment_body("taken")).status_code == 201
    # The race lost deterministically: the other worker's insert lands after this one's check,
    # so only the database's unique constraint sees it.
    monkeypatch.setattr(SqlStore, "_check_key_free", lambda self, conn, key, own_id: None)
    response = sql_client.post(f"{API}/experiments", json=experiment_body("taken"))
    assert response.status_code == 409, response.text
    assert response.json()["error"] == {
        "code": "duplicate_key",
        "field": "key",
        "message": "an experiment with key 'taken' already exists",
    }
    assert [e["key"] for e in sql_client.get(f"{API}/experiments").json()] == ["taken"]
