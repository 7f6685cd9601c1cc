"""HTTP assign and single exposure against the same server's bare endpoints.

For each store (SQLite, PostgreSQL, Redis; each a throwaway one) and 1 and 2 uvicorn workers, a
server runs ``benchmarks.http_app:create`` (abpilot's app as ``abpilot serve`` builds it, plus the
bare reference endpoints) in a subprocess, and ``benchmarks.loadgen`` drives it from another
subprocess. Four targets, measured in interleaved rounds:

* ``POST /api/v1/experiments/http-bench/assign`` ``{"unit_id": <new unit>}``: the real route
  (hash, store the first assignment, answer the variant);
* ``POST /bench/bare/experiments/http-bench/assign``, the same body: parse, answer a constant;
* ``POST /api/v1/experiments/http-bench/exposures`` ``{"unit_id": <new unit>}``: the real route
  (read the experiment, validate, store the hashed assignment, count the exposure and the unit);
* ``POST /bench/bare/experiments/http-bench/exposures``, the same body, answered with a constant.

``real / bare`` divides the real route's requests per second by its bare twin's: 0.25x means the
route serves a quarter of the requests the framework alone could on that server. Each figure is
the target's best round (requests/s, with the p50 and p99 latency of that round); the median
round's rate is kept too.

``HttpRow.paired_ratio`` is the ratio the report states: in each round the real route runs right
after its bare twin, so the two see the same load on the machine; the ratio of each such pair,
and the median of the rounds' ratios. On this 2-core machine, shared by the server, the load
generator and the store, the rate of one endpoint moves by up to a third between rounds; a
ratio of two best rounds, which may come from different moments, moved by up to 0.7x between
runs of the same code, where the median of paired rounds moves by about 0.1x.

The load generator opens ``connections`` (8) per server worker: 8 for one worker, 16 for two.
Uvicorn's workers share one listening socket and each accepts what it can, so 8 connections
split unevenly over two workers (6 and 2, or 8 and 0), and the 2-worker rows' round ratios
scattered from 0.3x to 1.4x; a bare endpoint whose connections land on one worker is measured
at half the machine, which flattered the 2-worker ratios.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import BACKENDS, server_environment
from benchmarks.http_app import BARE_PREFIX

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT_KEY = "http-bench"
ROUTES = ("assign", "exposures")
WORKER_COUNTS = (1, 2)


@dataclass(frozen=True, slots=True)
class LoadSettings:
    connections: int
    seconds: float
    rounds: int
    warm_up_seconds: float


@dataclass(frozen=True, slots=True)
class Figure:
    """One target's figures: requests/s and latency percentiles over all its rounds."""

    requests: int
    per_second: float
    median_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    first_error: str
    rates: tuple[float, ...] = ()  # requests/s of each round, in round order

    @classmethod
    def of(cls, found: dict[str, Any]) -> Figure:
        return cls(
            found["requests"],
            found["per_second"],
            found["median_per_second"],
            found["p50_ms"],
            found["p99_ms"],
            found["errors"],
            found["first_error"],
            tuple(found.get("rates", ())),
        )


@dataclass(frozen=True, slots=True)
class HttpRow:
    store: str
    workers: int
    route: str
    real: Figure | None = None
    bare: Figure | None = None
    note: str = ""

    def round_ratios(self) -> list[float]:
        """real / bare of each round (the two measured back to back)."""
        if self.real is None or self.bare is None:
            return []
        return [r / b for r, b in zip(self.real.rates, self.bare.rates, strict=True) if b > 0]

    def paired_ratio(self) -> float | None:
        """The median of the rounds' real / bare (see the module's docstring)."""
        ratios = self.round_ratios()
        return statistics.median(ratios) if ratios else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}): {tail(log)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not become ready in {timeout:.0f} s: {tail(log)}")


def tail(log: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def server(
    command: Sequence[str], env: dict[str, str], cwd: Path = REPO
) -> Iterator[tuple[str, int]]:
    """Run a server command (``--port`` is appended) with ``env`` added to the environment;
    yield its base URL and process id. Its access log goes to /dev/null, its errors to a
    temporary file that is quoted if it fails to start."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="abpilot-bench-server-") as folder:
        log = Path(folder) / "server.log"
        with log.open("wb") as errors:
            process = subprocess.Popen(
                [*command, "--port", str(port)],
                env={**os.environ, **env},
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                wait_ready(url, process, log)
                yield url, process.pid
            finally:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def bench_server_command(workers: int) -> list[str]:
    return [sys.executable, "-m", "benchmarks.http_server", "--workers", str(workers)]


def start_experiment(url: str, key: str = EXPERIMENT_KEY) -> None:
    """Create and start a 50/50 A/B test through the API."""
    body = {
        "key": key,
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
        "metrics": [{"key": "conversion"}],
    }
    with httpx.Client(base_url=url, timeout=30) as client:
        client.post("/api/v1/experiments", json=body).raise_for_status()
        client.put(
            f"/api/v1/experiments/{key}/status", json={"status": "running"}
        ).raise_for_status()


def targets() -> list[dict[str, str]]:
    body = '{"unit_id": "{unit}"}'
    found = []
    for route in ROUTES:
        path = f"/experiments/{EXPERIMENT_KEY}/{route}"
        found.append({"name": f"bare {route}", "path": BARE_PREFIX + path, "body": body})
        found.append({"name": route, "path": "/api/v1" + path, "body": body})
    return found


def drive(url: str, load: LoadSettings, workers: int = 1) -> dict[str, Any]:
    """Run the load generator in its own process against ``url`` (``load.connections`` per
    server worker); its JSON summary."""
    port = int(url.rsplit(":", 1)[1])
    found = targets()
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "connections": load.connections * workers,
        "seconds": load.seconds,
        "rounds": load.rounds,
        "warm_up_seconds": load.warm_up_seconds,
        "targets": found,
    }
    budget = 120 + 2 * len(found) * (load.rounds * load.seconds + load.warm_up_seconds)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=budget,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure_store(store: str, workers: int, load: LoadSettings) -> list[HttpRow]:
    try:
        with contextlib.ExitStack() as stack:
            try:
                url, options = stack.enter_context(BACKENDS[store]())
            except Exception as error:  # a server out of reach skips the rows
                note = f"skipped: {type(error).__name__}: {error}"
                return [HttpRow(store, workers, route, note=note) for route in ROUTES]
            env = server_environment(url, options)
            base, _pid = stack.enter_context(server(bench_server_command(workers), env))
            start_experiment(base)
            time.sleep(1.0 if workers > 1 else 0.2)  # every worker up and its cache warm
            found = drive(base, load, workers)
    except Exception as error:  # any failure is reported in the store's rows
        note = f"error: {type(error).__name__}: {error}"
        return [HttpRow(store, workers, route, note=note) for route in ROUTES]
    return [
        HttpRow(store, workers, route, Figure.of(found[route]), Figure.of(found[f"bare {route}"]))
        for route in ROUTES
    ]


def measure_all(load: LoadSettings, stores: Sequence[str] = tuple(BACKENDS)) -> list[HttpRow]:
    rows: list[HttpRow] = []
    for store in stores:
        for workers in WORKER_COUNTS:
            rows += measure_store(store, workers, load)
    return rows
