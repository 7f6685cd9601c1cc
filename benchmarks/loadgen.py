"""A small closed-loop HTTP/1.1 load generator, run in its own process.

``python -m benchmarks.loadgen '<json spec>'`` prints one JSON object with the results. The spec::

    {"host": "127.0.0.1", "port": 8000, "connections": 8, "seconds": 2.0, "rounds": 3,
     "warm_up_seconds": 0.5,
     "targets": [{"name": "assign", "path": "/api/v1/...", "body": "{\\"unit_id\\": ..."}]}

Each target is driven by ``connections`` keep-alive connections, each sending one POST and
waiting for its answer before sending the next (closed loop, no pipelining), for ``seconds``.
``{unit}`` in a body becomes a unit id never sent before (target, round, connection and a
counter), so every assignment and exposure is a unit's first one. The targets run one after the
other in ``rounds`` rounds (after one untimed warm-up pass of each), so a change of load on the
machine hits every target alike. A target's figures are those of its best round (the most
requests per second, i.e. the least disturbed one), with the median rate of its rounds beside them
and every round's rate (``rates``, in round order), so a caller can pair two targets' same rounds.

Raw asyncio streams (on uvloop when installed) rather than an HTTP client library: the generator
shares the machine with the server, so it should spend as little CPU per request as it can.
Latency is measured per request from writing the request to reading the last byte of the answer.
A non-2xx answer counts as an error (and the first one is reported).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any


async def _connect(host: str, port: int, count: int) -> list[tuple[Any, Any]]:
    return [await asyncio.open_connection(host, port) for _ in range(count)]


async def run_target(
    host: str, port: int, target: dict[str, str], connections: int, seconds: float, tag: str
) -> dict[str, Any]:
    """Drive one target for ``seconds``; latencies in seconds, plus errors and elapsed time."""
    head = (
        f"POST {target['path']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    template = target["body"]
    latencies: list[float] = []
    errors = 0
    first_error = ""
    streams = await _connect(host, port, connections)
    deadline = time.perf_counter() + seconds

    async def drive(number: int, reader: asyncio.StreamReader, writer: Any) -> None:
        nonlocal errors, first_error
        count = 0
        clock = time.perf_counter
        while clock() < deadline:
            body = template.replace("{unit}", f"{tag}-{number}-{count}").encode()
            request = head + str(len(body)).encode() + b"\r\n\r\n" + body
            started = clock()
            writer.write(request)
            header = await reader.readuntil(b"\r\n\r\n")
            at = header.lower().find(b"content-length:")
            length = int(header[at + 15 : header.index(b"\r\n", at)]) if at >= 0 else 0
            answer = await reader.readexactly(length)
            latencies.append(clock() - started)
            status = int(header[9:12])
            if not 200 <= status < 300:
                errors += 1
                if not first_error:
                    first_error = f"{status} {answer[:300].decode(errors='replace')}"
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(n, r, w) for n, (r, w) in enumerate(streams)))
    elapsed = time.perf_counter() - started
    for _, writer in streams:
        writer.close()
    return {
        "latencies": latencies,
        "errors": errors,
        "first_error": first_error,
        "seconds": elapsed,
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in 0..1)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], int(spec["port"])
    connections, seconds = int(spec["connections"]), float(spec["seconds"])
    targets: list[dict[str, str]] = spec["targets"]
    for target in targets:
        await run_target(
            host, port, target, connections, float(spec["warm_up_seconds"]), f"{target['name']}-w"
        )
    rounds: dict[str, list[dict[str, Any]]] = {t["name"]: [] for t in targets}
    for round_number in range(int(spec["rounds"])):
        for target in targets:
            tag = f"{target['name']}-r{round_number}"
            rounds[target["name"]].append(
                await run_target(host, port, target, connections, seconds, tag)
            )
    summary: dict[str, Any] = {}
    for name, results in rounds.items():
        rates = [len(r["latencies"]) / r["seconds"] for r in results]
        best = results[rates.index(max(rates))]
        latencies = sorted(best["latencies"])
        summary[name] = {
            "requests": len(latencies),
            "seconds": best["seconds"],
            "per_second": max(rates),
            "median_per_second": statistics.median(rates),
            "rates": rates,  # per round, in order: paired with other targets' same round
            "p50_ms": percentile(latencies, 0.50) * 1e3,
            "p99_ms": percentile(latencies, 0.99) * 1e3,
            "errors": sum(r["errors"] for r in results),
            "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
        }
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    spec = json.loads(args[0])
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
