"""Python CPU per intake call on Redis, and the round trips of a single event.

``python -m benchmarks.intake_cpu`` (Redis on ``ABPILOT_BENCH_REDIS_URL``, a throwaway prefix):

* CPU time of this process (``time.process_time``, the best of 30 blocks of 4 calls) per
  ``service.record_events`` of a batch of 1,000 (``benchmarks.intake``'s batches) and per
  ``record_exposure`` of a new unit: what the service and the store's client cost in Python,
  less disturbed by other load on the machine than a rate;
* the Redis commands a single exposure of a new unit, and then its conversion, send once the
  definition is cached.

Run it with ``PYTHONPATH=<src>:.`` to compare two versions of abpilot on the same machine.
"""

from __future__ import annotations

import collections
import contextlib
import time
from typing import Any

from benchmarks.common import BACKENDS
from benchmarks.intake import EXPERIMENT_KEY, ServiceRun, batch_events


def main() -> None:
    with contextlib.ExitStack() as stack:
        url, options = stack.enter_context(BACKENDS["Redis"]())
        run = ServiceRun(url, options)
        stack.callback(run.close)
        service = run.service
        batches = iter([batch_events(f"cpu{i}") for i in range(120)])
        batch_ms = min(_block(lambda: service.record_events(next(batches)), 4) for _ in range(30))
        units = iter(range(10**9))

        def expose() -> None:
            service.record_exposure(experiment=EXPERIMENT_KEY, unit_id=f"s{next(units)}")

        single_us = min(_block(expose, 100) for _ in range(20)) * 1000
        print(f"batch of 1,000: {batch_ms:.2f} ms CPU; single exposure: {single_us:.0f} µs CPU")

        client = service.store._client  # type: ignore[attr-defined]
        sent: collections.Counter[str] = collections.Counter()
        execute = client.execute_command

        def counted(*args: Any, **options: Any) -> Any:
            sent[str(args[0])] += 1
            return execute(*args, **options)

        client.execute_command = counted
        service.record_exposure(experiment=EXPERIMENT_KEY, unit_id="round-trips")
        print(f"single exposure of a new unit: {dict(sent)}")
        sent.clear()
        service.record_conversion(experiment=EXPERIMENT_KEY, unit_id="round-trips")
        print(f"its conversion: {dict(sent)}")


def _block(call: Any, times: int) -> float:
    """Milliseconds of this process's CPU per call, over ``times`` calls."""
    started = time.process_time()
    for _ in range(times):
        call()
    return (time.process_time() - started) / times * 1000


if __name__ == "__main__":
    main()
