"""A worker that has only assigned and ingested has not loaded SciPy or statsmodels (nor pandas,
which statsmodels pulls in): the statistics load on the first analysis or recalculation. Checked
in a fresh interpreter that builds the app on a SQLite store and drives it through TestClient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("scipy", "statsmodels", "pandas")

WORKER = """
import json, sys
from fastapi.testclient import TestClient
from abpilot.api.app import create_app
from abpilot.settings import Settings

heavy = {heavy!r}
loaded = lambda: [m for m in heavy if m in sys.modules]
seen = {{}}
settings = Settings(store="sql", database_url={url!r})
with TestClient(create_app(settings)) as client:
    seen["started"] = loaded()
    body = {{
        "key": "light",
        "variants": [{{"key": "control", "weight": 0.5}}, {{"key": "treatment", "weight": 0.5}}],
        "metrics": [{{"key": "conversion"}}, {{"key": "revenue", "kind": "value"}}],
    }}
    client.post("/api/v1/experiments", json=body).raise_for_status()
    client.put("/api/v1/experiments/light/status", json={{"status": "running"}}).raise_for_status()
    for n in range(20):
        assigned = client.post("/api/v1/experiments/light/assign", json={{"unit_id": f"u{{n}}"}})
        assigned.raise_for_status()
    events = [
        {{"type": "exposure", "experiment_id": "light", "unit_id": f"u{{n}}", "event_id": str(n)}}
        for n in range(20)
    ] + [
        {{"type": "conversion", "experiment_id": "light", "unit_id": f"u{{n}}", "metric": "revenue",
          "value": 2.5}}
        for n in range(0, 20, 3)
    ]
    client.post("/api/v1/events", json={{"events": events}}).raise_for_status()
    client.get("/api/v1/experiments/light/metrics").raise_for_status()
    seen["assigned_and_ingested"] = loaded()
    client.get("/api/v1/experiments/light/analysis").raise_for_status()
    seen["analysed"] = loaded()
print(json.dumps(seen))
"""


def test_a_worker_that_assigned_and_ingested_has_not_loaded_the_statistics(
    tmp_path: Path,
) -> None:
    code = WORKER.format(heavy=HEAVY, url=f"sqlite:///{tmp_path / 'light.db'}")
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["started"] == []
    assert seen["assigned_and_ingested"] == []
    # The first analysis loads them: the check above would see them had anything loaded them.
    assert set(seen["analysed"]) >= {"scipy", "statsmodels"}
