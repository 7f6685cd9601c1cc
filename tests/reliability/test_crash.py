"""Crash during intake: `abpilot serve --workers 2` is SIGKILLed (with its workers) while several
client processes stream events with event ids, then restarted on the same port. The clients
resend whatever was not acknowledged until it is; afterwards every event counts exactly once.

Each client sends the first half of its stream freely (the kill may land mid-request) and the
second half only once the server is dead, and the server comes back only after a client has been
refused: so the clients always meet the crash, however fast the first half went."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import Manager
from pathlib import Path
from threading import Event

import httpx
import pytest

from abpilot.domain.assignment import Bucketing
from tests.conftest import SERVER_BACKENDS, backend_url
from tests.factories import make_experiment
from tests.reliability.harness import Service, answers, store_env, wait_until

# Extended stage of .ci/run (not the README command): SIGKILL of a two-worker server.
pytestmark = pytest.mark.extended

KEY = "crash"
WEIGHTS = (0.3, 0.7)
CLIENTS = 4
UNITS_PER_CLIENT = 40
RETRY_SECONDS = 60.0


def send_until_acknowledged(http: httpx.Client, path: str, body: object, refused: Event) -> int:
    """POST until a 2xx; returns the attempts it took. A 4xx is a bug, never retried. A failed
    connection sets `refused`."""
    deadline = time.monotonic() + RETRY_SECONDS
    attempts = 0
    while True:
        attempts += 1
        try:
            response = http.post(path, json=body)
        except httpx.TransportError:
            response = None
            refused.set()
        if response is not None and response.is_success:
            return attempts
        if response is not None and response.status_code < 500:
            raise AssertionError(f"{path} {body}: {response.status_code} {response.text}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} {body} was not acknowledged in {RETRY_SECONDS} s")
        time.sleep(0.05)


def stream(server: str, client: int, killed: Event, refused: Event) -> int:
    """One client process: per unit an exposure, every second unit a conversion, every fifth a
    batch (a second exposure and a revenue conversion); the second half of the units only after
    `killed`. Returns how many sends were retried."""
    retried = 0
    with httpx.Client(base_url=f"{server}/api/v1", timeout=10) as http:
        for i in range(UNITS_PER_CLIENT):
            if i == UNITS_PER_CLIENT // 2 and not killed.wait(timeout=RETRY_SECONDS):
                raise AssertionError("the server was not killed")
            unit = f"c{client}-u{i}"
            sends: list[tuple[str, object]] = [
                (f"/experiments/{KEY}/exposures", {"unit_id": unit, "event_id": f"x-{unit}"})
            ]
            if i % 2 == 0:
                conversion = {"unit_id": unit, "metric": "conversion", "event_id": f"c-{unit}"}
                sends.append((f"/experiments/{KEY}/conversions", conversion))
            if i % 5 == 0:
                events: list[dict[str, object]] = [
                    {"type": "exposure", "experiment_id": KEY, "unit_id": unit},
                    {
                        "type": "conversion",
                        "experiment_id": KEY,
                        "unit_id": unit,
                        "metric": "revenue",
                        "value": 2.5,
                    },
                ]
                events[0]["event_id"], events[1]["event_id"] = f"bx-{unit}", f"br-{unit}"
                sends.append(("/events", {"events": events}))
            for path, body in sends:
                retried += send_until_acknowledged(http, path, body, refused) - 1
    return retried


def expected_counts() -> dict[str, Counter[str]]:
    """Per variant, from the pure assignment function: what the streams must add up to."""
    bucketing = Bucketing.for_experiment(make_experiment(KEY, weights=WEIGHTS))
    keys = ["control", "v1"]
    counts: dict[str, Counter[str]] = {k: Counter() for k in keys}
    for client in range(CLIENTS):
        for i in range(UNITS_PER_CLIENT):
            variant = keys[bucketing.variant_index(f"c{client}-u{i}")]
            counts[variant]["units"] += 1
            counts[variant]["exposures"] += 1 + (i % 5 == 0)
            counts[variant]["conversions"] += i % 2 == 0
            counts[variant]["revenue"] += i % 5 == 0
    return counts


def exposures_so_far(base: str) -> int:
    try:
        response = httpx.get(f"{base}/experiments/{KEY}/metrics", timeout=5)
    except httpx.TransportError:
        return 0
    if response.status_code != 200:
        return 0
    return sum(v["exposures"] for v in response.json()["variants"])


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_events_acknowledged_across_a_sigkill_count_exactly_once(
    backend: str, tmp_path: Path
) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        env = store_env(backend, url, options) | {"SCHEDULER_ENABLED": "false"}
        service = Service(env, tmp_path, "--workers", "2").start()
        base = f"{service.url}/api/v1"
        try:
            variants = [
                {"key": "control", "weight": WEIGHTS[0]},
                {"key": "v1", "weight": WEIGHTS[1]},
            ]
            metrics = [{"key": "conversion"}, {"key": "revenue", "kind": "value"}]
            body = {"key": KEY, "variants": variants, "metrics": metrics}
            assert httpx.post(f"{base}/experiments", json=body).status_code == 201
            started = httpx.put(f"{base}/experiments/{KEY}/status", json={"status": "running"})
            assert started.status_code == 200

            with Manager() as manager, ProcessPoolExecutor(max_workers=CLIENTS) as pool:
                killed, refused = manager.Event(), manager.Event()
                clients = [
                    pool.submit(stream, service.url, c, killed, refused) for c in range(CLIENTS)
                ]
                # Mid-stream: a quarter of the exposures are in, the clients are still sending.
                wait_until(
                    lambda: exposures_so_far(base) >= CLIENTS * UNITS_PER_CLIENT // 4,
                    seconds=60,
                    what="a quarter of the exposures arriving",
                )
                service.kill()
                wait_until(
                    lambda: not answers(f"{service.url}/healthz"),
                    seconds=10,
                    what="the killed server going silent",
                )
                killed.set()
                assert refused.wait(timeout=RETRY_SECONDS), "no client met the dead server"
                service.start()
                retried = sum(c.result(timeout=120) for c in clients)
            assert retried > 0, "no client noticed the crash"

            report = httpx.get(f"{base}/experiments/{KEY}/metrics").json()
            by_key = {v["key"]: v for v in report["variants"]}
            for key, expected in expected_counts().items():
                seen = by_key[key]
                assert seen["assigned_units"] == expected["units"], key
                assert seen["unique_units"] == expected["units"], key
                assert seen["exposures"] == expected["exposures"], key
                conversion = seen["metrics"]["conversion"]
                assert conversion["count"] == conversion["units"] == expected["conversions"], key
                revenue = seen["metrics"]["revenue"]
                assert revenue["count"] == revenue["units"] == expected["revenue"], key
                assert revenue["sum"] == pytest.approx(2.5 * expected["revenue"]), key
            # A worker's first analysis loads SciPy and statsmodels (seconds on a busy machine).
            analysis = httpx.get(f"{base}/experiments/{KEY}/analysis", timeout=60).json()
            units = {v["key"]: v["units"] for v in analysis["variants"]}
            assert units == {k: c["units"] for k, c in expected_counts().items()}
        finally:
            service.stop()
