"""The FeatureVisor companion under `abpilot serve --workers 2` on every shared store: several
client processes post exposures and conversions at once; every one counts exactly once."""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import backend_url
from tests.e2e.server import running_server
from tests.fixtures import FEATUREVISOR_DATAFILES

# Extended stage of .ci/run (not the README command): two-worker servers, client processes.
pytestmark = pytest.mark.extended

DATAFILE = "production/datafile.json"
PER_CLIENT = 100


def post_events(server: str, client: int) -> int:
    """One client process: exposures for both variations, conversions for one, with retries."""
    with httpx.Client(base_url=server, timeout=30) as http:
        for i in range(PER_CLIENT):
            variation = "treatment" if i % 2 else "control"
            body = {"datafile": DATAFILE, "features": {"checkoutButton": variation}}
            assert http.post("/expose", json=body).status_code == 200
            if variation == "treatment":
                event = {**body, "event_id": f"c-{client}-{i}"}
                for _ in range(2):  # a retry after a lost reply counts once
                    assert http.post("/convert", json=event).status_code == 200
    return client


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_concurrent_exposures_from_several_processes_count_exactly(
    backend: str, tmp_path: Path
) -> None:
    datafiles = tmp_path / "datafiles"
    (datafiles / "production").mkdir(parents=True)
    shutil.copy(FEATUREVISOR_DATAFILES / "v2-production.json", datafiles / DATAFILE)
    with backend_url(backend, tmp_path) as (url, options):
        env = {"DATAFILES_DIR": str(datafiles), "SCHEDULER_ENABLED": "false"}
        if backend == "redis":
            env |= {"STORE": "redis", "REDIS_URL": url, "REDIS_PREFIX": options["prefix"]}
        else:
            env |= {"STORE": "sql", "DATABASE_URL": url}
        with running_server(env, tmp_path, "--workers", "2") as server:
            clients = 4
            with ProcessPoolExecutor(max_workers=clients) as pool:
                done = list(pool.map(post_events, [server] * clients, range(clients)))
            assert done == list(range(clients))
            stats = httpx.get(f"{server}/stats", params={"feature": "checkoutButton"}).json()
            (feature,) = stats["features"]
            by_value = {v["value"]: v for v in feature["variations"]}
            half = clients * PER_CLIENT // 2
            assert by_value["control"]["exposures"] == half
            assert by_value["treatment"]["exposures"] == half
            assert by_value["treatment"]["conversions"] == half
            assert by_value["control"]["conversions"] == 0
            # Both workers serve the same document.
            etags = {httpx.get(f"{server}/datafile/{DATAFILE}").headers["etag"] for _ in range(6)}
            assert len(etags) == 1
