"""A batch spanning experiments on a Redis Cluster: counted all or none per experiment, and the
reply says so; the same batch on one experiment keeps the plain reply."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from abpilot.api import create_app
from abpilot.settings import Settings
from abpilot.store.factory import open_store
from tests.api.conftest import running
from tests.conftest import backend_url


def test_a_batch_over_two_experiments_says_it_was_applied_per_experiment(tmp_path: Path) -> None:
    with backend_url("redis-cluster", tmp_path) as (url, options):
        store = open_store(url, **options)
        with TestClient(create_app(Settings(store="memory"), store=store)) as client:
            first, second = running(client, "first"), running(client, "second")
            events = [
                {
                    "type": "exposure",
                    "experiment_id": exp["id"],
                    "unit_id": unit,
                    "event_id": f"e{n}",
                }
                for n, (exp, unit) in enumerate(
                    ((first, "u1"), (second, "u1"), (second, "u2")), start=1
                )
            ]
            reply = client.post("/api/v1/events", json={"events": events})
            assert reply.status_code == 200, reply.text
            assert reply.json() == {
                "received": 3,
                "applied": 3,
                "duplicates": 0,
                "atomic": "per_experiment",
            }
            alone = client.post("/api/v1/events", json={"events": events[1:]})
            assert alone.json() == {"received": 2, "applied": 0, "duplicates": 2}
            for key, exposures in (("first", 1), ("second", 2)):
                metrics = client.get(f"/api/v1/experiments/{key}/metrics").json()
                assert sum(v["exposures"] for v in metrics["variants"]) == exposures
        store.close()
