"""Resident memory of ``abpilot serve``: idle, and after many assignments.

* **Reference**: a bare Python interpreter that only imports what a worker imports (uvicorn with
  uvloop and httptools, ``abpilot.api.app`` and the SQL store) and reads its own VmRSS.
* **Idle server**: the real ``abpilot serve --workers N`` (N = 1, 2) on a throwaway SQLite file,
  after start-up and a few ``/readyz`` calls; RSS summed over the whole process tree (the
  supervisor and its workers). RSS counts shared pages once per process, so the sum overstates
  what N workers add to the machine; the table also gives the unique set size (USS) sum.
* **After assignments**: the 1-worker server receives ``POST /api/v1/events`` batches of 10,000
  exposures of new units (each stores the unit's assignment, as ``/assign`` would), 1,000,000
  in all (``--quick``: 100,000), and its RSS is read again. Over single ``/assign`` requests this
  would take far too long at the rates the HTTP section measures; the batch route runs the same
  assignment write (first assignment wins, counted as ``assigned_units``) inside the same worker.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]

from benchmarks.common import server_environment, sqlite_url
from benchmarks.http_load import server, start_experiment

BATCH = 10_000
WORKER_IMPORTS = "import uvicorn, uvloop, httptools, abpilot.api.app, abpilot.store.sql"
EXPERIMENT_KEY = "memory-bench"


@dataclass(frozen=True, slots=True)
class Footprint:
    rss: int
    uss: int
    processes: int


@dataclass(frozen=True, slots=True)
class MemoryResult:
    bare_interpreter: int
    idle: dict[int, Footprint]
    """By worker count."""
    assignments: int
    after: Footprint
    before: Footprint
    seconds: float
    """Time to send the assignments (events/s over HTTP batches)."""
    assigned_units: int


def footprint(pid: int) -> Footprint:
    """RSS and USS summed over a process and all its descendants."""
    root = psutil.Process(pid)
    rss = uss = count = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        uss += info.uss
        count += 1
    return Footprint(rss, uss, count)


def bare_interpreter_rss() -> int:
    """VmRSS of a fresh interpreter after the imports a worker makes, and nothing else."""
    code = (
        f"{WORKER_IMPORTS}\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'): print(int(line.split()[1]) * 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return int(done.stdout.strip())


def settled_footprint(url: str, pid: int) -> Footprint:
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(20):
            client.get("/readyz")
    time.sleep(1.0)
    return footprint(pid)


def abpilot_serve(workers: int) -> list[str]:
    executable = Path(sys.executable).with_name("abpilot")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "abpilot"]
    return [*command, "serve", "--workers", str(workers)]


def send_assignments(url: str, total: int) -> tuple[float, int]:
    """Send ``total`` exposures of new units in batches; seconds taken, assigned units counted."""
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=300) as client:
        for start in range(0, total, BATCH):
            events = [
                {"type": "exposure", "experiment_id": EXPERIMENT_KEY, "unit_id": f"m-{i}"}
                for i in range(start, min(total, start + BATCH))
            ]
            client.post("/api/v1/events", json={"events": events}).raise_for_status()
        elapsed = time.perf_counter() - started
        metrics = client.get(f"/api/v1/experiments/{EXPERIMENT_KEY}/metrics").json()
    assigned = sum(int(v.get("assigned_units", 0)) for v in metrics["variants"])
    return elapsed, assigned


def measure(assignments: int) -> MemoryResult:
    bare = bare_interpreter_rss()
    idle: dict[int, Footprint] = {}
    for workers in (2, 1):
        with (
            sqlite_url() as (url, options),
            server(
                abpilot_serve(workers), server_environment(url, options), Path(url[10:]).parent
            ) as (base, pid),
        ):
            idle[workers] = settled_footprint(base, pid)
            if workers != 1:
                continue
            start_experiment(base, EXPERIMENT_KEY)
            before = settled_footprint(base, pid)
            seconds, assigned = send_assignments(base, assignments)
            after = settled_footprint(base, pid)
    return MemoryResult(bare, idle, assignments, after, before, seconds, assigned)
