"""`abpilot serve --workers 2` on PostgreSQL and Redis: both workers agree and count exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import backend_url
from tests.e2e.server import running_server

# Extended stage of .ci/run (not the README command): two-worker servers on PostgreSQL and Redis.
pytestmark = pytest.mark.extended

VARIANTS = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]


@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_two_workers_share_state(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        if backend == "redis":
            env = {"STORE": "redis", "REDIS_URL": url, "REDIS_PREFIX": options["prefix"]}
        else:
            env = {"STORE": "sql", "DATABASE_URL": url}
        with running_server(env, tmp_path, "--workers", "2") as server:
            base = f"{server}/api/v1"
            created = httpx.post(f"{base}/experiments", json={"key": "w", "variants": VARIANTS})
            assert created.status_code == 201
            httpx.put(f"{base}/experiments/w/status", json={"status": "running"})

            def assign_and_convert(unit: str) -> str:
                with httpx.Client(base_url=base) as client:
                    first = client.post("/experiments/w/assign", json={"unit_id": unit}).json()
                    again = client.post("/experiments/w/assign", json={"unit_id": unit}).json()
                    assert first == again
                    event = {"unit_id": unit, "event_id": f"c-{unit}"}
                    for _ in range(2):  # a retry after a lost reply
                        response = client.post("/experiments/w/conversions", json=event)
                        assert response.status_code == 200
                    variant: str = first["variant"]["key"]
                    return variant

            units = [f"user-{i}" for i in range(300)]
            with ThreadPoolExecutor(max_workers=16) as pool:
                variants = list(pool.map(assign_and_convert, units))
            metrics = httpx.get(f"{base}/experiments/w/metrics").json()["variants"]
            by_key = {v["key"]: v for v in metrics}
            for key in ("a", "b"):
                assert by_key[key]["assigned_units"] == variants.count(key)
                assert by_key[key]["metrics"]["conversion"]["count"] == variants.count(key)
