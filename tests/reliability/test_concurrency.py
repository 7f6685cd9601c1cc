"""Concurrency: `abpilot serve --workers 2` and 64 concurrent clients mixing assignments,
exposures, conversions (some resent) and batches. The final counts equal what was sent, and every
assignment, on whichever worker, equals the pure hash computed here.

The clients use ``httpx2`` (a test dependency, httpx's API): httpx's own AsyncClient spends about
5 ms of CPU per request with 64 connections in its pool, which would make the test measure the
client rather than the service."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import httpx2
import pytest

from abpilot.domain.assignment import NOT_IN_EXPERIMENT, Bucketing
from tests.conftest import SERVER_BACKENDS, backend_url
from tests.factories import make_experiment
from tests.reliability.harness import serving, store_env

# Extended stage of .ci/run (not the README command): a two-worker server and 64 concurrent clients.
pytestmark = pytest.mark.extended

KEY = "concurrency"
WEIGHTS = (0.2, 0.3, 0.5)
VARIANTS = ["control", "v1", "v2"]
TRAFFIC = 0.9
CLIENTS = 64
UNITS_PER_CLIENT = 4


def pure_variant(unit: str) -> str | None:
    """The variant from ``abpilot.domain.assignment`` alone (None: outside the traffic)."""
    experiment = make_experiment(KEY, weights=WEIGHTS, traffic_allocation=TRAFFIC)
    index = Bucketing.for_experiment(experiment).variant_index(unit)
    return None if index == NOT_IN_EXPERIMENT else VARIANTS[index]


class Tally:
    """What the clients had acknowledged, per variant."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {v: Counter() for v in VARIANTS}

    def add(self, variant: str, **increments: int) -> None:
        self.counts[variant].update(increments)


async def client_session(http: httpx2.AsyncClient, client: int, tally: Tally) -> None:
    """One client: per unit, one of four mixes of the endpoints (by the unit's index)."""
    for i in range(UNITS_PER_CLIENT):
        unit = f"k{client}-u{i}"
        expected = pure_variant(unit)
        mix = (client + i) % 4
        if mix in (0, 1):  # assign, expose, maybe convert (resent once: counted once)
            reply = await http.post(f"/experiments/{KEY}/assign", json={"unit_id": unit})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["in_experiment"] is (expected is not None), unit
            assert (body["variant"] or {}).get("key") == expected, unit
            if expected is None:
                continue
            tally.add(expected, assigned=1)
            exposure = {"unit_id": unit, "event_id": f"x-{unit}"}
            reply = await http.post(f"/experiments/{KEY}/exposures", json=exposure)
            assert reply.json() == {"received": 1, "applied": 1, "duplicates": 0}
            tally.add(expected, exposures=1, exposed=1)
            if mix == 0:
                conversion = {"unit_id": unit, "metric": "conversion", "event_id": f"c-{unit}"}
                for attempt in range(2):
                    reply = await http.post(f"/experiments/{KEY}/conversions", json=conversion)
                    assert reply.json()["duplicates"] == attempt, reply.text
                tally.add(expected, conversions=1)
        elif expected is None:  # an exposure outside the traffic is refused, nothing counts
            reply = await http.post(f"/experiments/{KEY}/exposures", json={"unit_id": unit})
            assert reply.status_code == 422, reply.text
        elif mix == 2:  # one batch: two exposures and a revenue conversion
            event: dict[str, object] = {"experiment_id": KEY, "unit_id": unit}
            events = [
                event | {"type": "exposure", "event_id": f"b1-{unit}"},
                event | {"type": "exposure", "event_id": f"b2-{unit}"},
                event | {"type": "conversion", "metric": "revenue", "value": 3.0},
            ]
            events[2]["event_id"] = f"br-{unit}"
            reply = await http.post("/events", json={"events": events})
            assert reply.json() == {"received": 3, "applied": 3, "duplicates": 0}, reply.text
            tally.add(expected, assigned=1, exposures=2, exposed=1, revenue=1)
        else:  # exposure and conversion without event ids (each call counts)
            for _ in range(2):
                reply = await http.post(f"/experiments/{KEY}/exposures", json={"unit_id": unit})
                assert reply.status_code == 200, reply.text
            conversion = {"unit_id": unit, "metric": "conversion"}
            reply = await http.post(f"/experiments/{KEY}/conversions", json=conversion)
            assert reply.status_code == 200, reply.text
            tally.add(expected, assigned=1, exposures=2, exposed=1, conversions=1)


async def run_clients(base: str) -> Tally:
    tally = Tally()
    limits = httpx2.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        await asyncio.gather(*(client_session(http, c, tally) for c in range(CLIENTS)))
    return tally


async def assignments(base: str, units: list[str]) -> dict[str, str | None]:
    """Every unit's assignment as the service answers it now, asked concurrently."""
    limits = httpx2.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=60) as http:

        async def ask(unit: str) -> str | None:
            reply = await http.post(f"/experiments/{KEY}/assign", json={"unit_id": unit})
            variant: dict[str, str] | None = reply.json()["variant"]
            return variant["key"] if variant else None

        found = await asyncio.gather(*(ask(u) for u in units))
    return dict(zip(units, found, strict=True))


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_concurrent_clients_count_exactly_and_assign_by_the_pure_hash(
    backend: str, tmp_path: Path
) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        env = store_env(backend, url, options) | {"SCHEDULER_ENABLED": "false"}
        with serving(env, tmp_path, "--workers", "2") as service:
            base = f"{service.url}/api/v1"
            body = {
                "key": KEY,
                "traffic_allocation": TRAFFIC,
                "variants": [
                    {"key": k, "weight": w} for k, w in zip(VARIANTS, WEIGHTS, strict=True)
                ],
                "metrics": [{"key": "conversion"}, {"key": "revenue", "kind": "value"}],
            }
            assert httpx.post(f"{base}/experiments", json=body).status_code == 201
            started = httpx.put(f"{base}/experiments/{KEY}/status", json={"status": "running"})
            assert started.status_code == 200

            tally = asyncio.run(run_clients(base))

            report = httpx.get(f"{base}/experiments/{KEY}/metrics").json()
            by_key = {v["key"]: v for v in report["variants"]}
            for variant, sent in tally.counts.items():
                seen = by_key[variant]
                assert seen["assigned_units"] == sent["assigned"], variant
                assert seen["unique_units"] == sent["exposed"], variant
                assert seen["exposures"] == sent["exposures"], variant
                conversion = seen["metrics"]["conversion"]
                assert conversion["count"] == conversion["units"] == sent["conversions"], variant
                revenue = seen["metrics"]["revenue"]
                assert revenue["count"] == sent["revenue"], variant
                assert revenue["sum"] == pytest.approx(3.0 * sent["revenue"]), variant
            assert sum(c["assigned"] for c in tally.counts.values()) > CLIENTS

            # Stored assignments (made by /assign or by a first exposure, on either worker)
            # are the pure hash, and so is the answer for units never seen.
            units = [f"k{c}-u{i}" for c in range(CLIENTS) for i in range(UNITS_PER_CLIENT)]
            units += [f"fresh-{i}" for i in range(64)]
            answered = asyncio.run(assignments(base, units))
            assert answered == {u: pure_variant(u) for u in units}
