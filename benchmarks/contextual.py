"""Contextual-bandit decisions per second: abpilot in-process and over HTTP, next to MABWiser.

Run ``python -m benchmarks.contextual [--decisions N]``. One run, one process (plus the server for
the HTTP rows). Every row decides for the same stream of contexts: 6 arms, two attributes
(time_of_day x user_type = 8 contexts), after a warm-up of 3,000 decisions with feedback so the
posteriors are not flat. Rows:

- abpilot ``service.contextual.decide`` in-process, on the memory store and on SQLite (each
  decision computes exact P(best) for the context, draws the arm and logs the decision with its
  propensity in the store);
- abpilot over HTTP: ``POST /api/v1/experiments/{id}/decide`` against ``abpilot serve`` (one
  worker, memory store), one keep-alive client, sequential requests;
- MABWiser ``ThompsonSampling`` with one bandit per context (the same model as abpilot without
  back-off), and MABWiser ``LinTS`` with the two attributes one-hot encoded as features; both
  ``predict`` one request at a time, as a service would, after ``fit`` on the warm-up data.
  MABWiser logs nothing and computes no propensity.

``vs abpilot`` divides each row's decisions per second by abpilot's in-process memory-store rate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

import abpilot
from abpilot.service.core import ExperimentService

ARMS = ("svd", "embeddings", "graph", "item_cf", "long_tail", "serendipity")
TIMES = ("morning", "afternoon", "evening", "night")
USERS = ("new", "returning")
SETTINGS = {"contextual": {"attributes": {"time_of_day": list(TIMES), "user_type": list(USERS)}}}
WARM_UP = 3_000


def contexts(n: int, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    return [
        {"time_of_day": TIMES[int(t)], "user_type": USERS[int(u)]}
        for t, u in zip(rng.integers(0, 4, n), rng.integers(0, 2, n), strict=True)
    ]


def true_rate(context: dict[str, str], arm: str) -> float:
    return 0.05 + 0.03 * ((ARMS.index(arm) + TIMES.index(context["time_of_day"])) % 4)


def prepared(url: str) -> ExperimentService:
    service = abpilot.open(url)
    variants = [{"key": a, "weight": 1 / len(ARMS)} for a in ARMS]
    service.create_experiment(
        key="recs", type="contextual_bandit", variants=variants, settings=SETTINGS
    )
    service.start_experiment("recs")
    rng = np.random.default_rng(0)
    for context in contexts(WARM_UP, 1):
        decision = service.contextual.decide("recs", context=context)
        if rng.random() < true_rate(context, decision.arm.key):
            service.contextual.feedback("recs", decision_id=decision.decision_id, event="click")
    return service


def rate(run: Callable[[dict[str, str]], object], stream: list[dict[str, str]]) -> float:
    started = time.perf_counter()
    for context in stream:
        run(context)
    return len(stream) / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_rate(stream: list[dict[str, str]]) -> float:
    port = free_port()
    command = shutil.which("abpilot") or f"{sys.executable} -m abpilot"
    env = {**os.environ, "STORE": "memory", "SCHEDULER_ENABLED": "false"}
    server = subprocess.Popen(
        [*command.split(), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(200):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            variants = [{"key": a, "weight": 1 / len(ARMS)} for a in ARMS]
            body = {"key": "recs", "type": "contextual_bandit", "variants": variants}
            client.post("/api/v1/experiments", json={**body, "settings": SETTINGS})
            client.put("/api/v1/experiments/recs/status", json={"status": "running"})
            url = "/api/v1/experiments/recs/decide"
            return rate(lambda c: client.post(url, json={"context": c}).json(), stream)
    finally:
        server.terminate()
        server.wait(timeout=20)


def mabwiser_rates(stream: list[dict[str, str]]) -> tuple[float, float]:
    from mabwiser.mab import MAB, LearningPolicy

    rng = np.random.default_rng(0)
    warm = contexts(WARM_UP, 1)
    chosen = [ARMS[int(i)] for i in rng.integers(0, len(ARMS), WARM_UP)]
    rewards = [int(rng.random() < true_rate(c, a)) for c, a in zip(warm, chosen, strict=True)]

    per_context: dict[tuple[str, str], MAB] = {}
    for key in {(c["time_of_day"], c["user_type"]) for c in warm}:
        rows = [i for i, c in enumerate(warm) if (c["time_of_day"], c["user_type"]) == key]
        mab = MAB(list(ARMS), LearningPolicy.ThompsonSampling(), seed=0)
        mab.fit([chosen[i] for i in rows], [rewards[i] for i in rows])
        per_context[key] = mab
    ts = rate(lambda c: per_context[(c["time_of_day"], c["user_type"])].predict(), stream)

    def features(c: dict[str, str]) -> list[float]:
        return [float(c["time_of_day"] == t) for t in TIMES] + [float(c["user_type"] == "new")]

    lin = MAB(list(ARMS), LearningPolicy.LinTS(alpha=1.0), seed=0)
    lin.fit(chosen, rewards, [features(c) for c in warm])
    lints = rate(lambda c: lin.predict([features(c)]), stream)
    return ts, lints


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.contextual", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--decisions", type=int, default=3_000, help="timed decisions per row")
    args = parser.parse_args(argv)
    stream = contexts(args.decisions, 2)
    console = Console()
    rows: list[tuple[str, float]] = []
    memory = prepared("memory://")
    rows.append(
        (
            "abpilot in-process, memory store",
            rate(lambda c: memory.contextual.decide("recs", context=c), stream),
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        sqlite = prepared(f"sqlite:///{Path(folder) / 'bench.db'}")
        rows.append(
            (
                "abpilot in-process, SQLite",
                rate(lambda c: sqlite.contextual.decide("recs", context=c), stream),
            )
        )
        sqlite.store.close()
    rows.append(("abpilot over HTTP (1 worker, memory store)", http_rate(stream)))
    ts, lints = mabwiser_rates(stream)
    rows.append(("MABWiser ThompsonSampling, one per context", ts))
    rows.append(("MABWiser LinTS, one-hot context", lints))
    reference = rows[0][1]
    table = Table(title=f"Contextual decisions, {args.decisions:,} per row, 6 arms, 8 contexts")
    for column in ("path", "decisions/s", "µs/decision", "vs abpilot in-process"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, value in rows:
        table.add_row(name, f"{value:,.0f}", f"{1e6 / value:,.0f}", f"{value / reference:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
