"""Wall and CPU time of the three intake paths in process, on each store.

``python -m benchmarks.intake_paths [SQLite PostgreSQL Redis]`` (the stores of
``benchmarks.common.BACKENDS``, throwaway ones, as ``benchmarks.intake`` opens them) runs the
service in this process and prints, per store, the best round of:

* ``record_events`` of a batch of 1,000 (``benchmarks.intake``'s batches: 800 new exposures,
  200 conversions, all with event ids), 4 rounds of 5 batches;
* ``record_exposure`` of a new unit, 5 rounds of 300;
* ``get_variant_for_user`` (the assignment stored) of a new unit, 5 rounds of 300;

each as wall time / CPU time of this process per call. The CPU is what the service and the
store's client cost in Python; the difference to the wall is waiting for the store. No HTTP,
no threads: ``benchmarks.http_load`` measures the same paths behind uvicorn. Run it with
``PYTHONPATH=<src>:.`` to compare two versions of abpilot on the same machine.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks.common import BACKENDS
from benchmarks.intake import EXPERIMENT_KEY, ServiceRun, batch_events

BATCH_ROUNDS, BATCHES = 4, 5
SINGLE_ROUNDS, SINGLES = 5, 300


def best(rounds: int, calls: int, call: Callable[[int, int], object]) -> tuple[float, float]:
    """The best round's (wall, CPU) seconds per call; ``call(round, i)``."""
    found = (float("inf"), float("inf"))
    for number in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(calls):
            call(number, i)
        per_call = ((time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls)
        found = min(found, per_call)
    return found


def measure(store: str) -> str:
    with contextlib.ExitStack() as stack:
        try:
            url, options = stack.enter_context(BACKENDS[store]())
        except Exception as error:  # a server out of reach skips the store
            return f"{store}: skipped: {type(error).__name__}: {error}"
        run = ServiceRun(url, options)
        stack.callback(run.close)
        service = run.service
        batches = [batch_events(f"paths{i}") for i in range(BATCHES * (BATCH_ROUNDS + 1))]
        for batch in batches[:BATCHES]:  # warm: caches, prepared statements, the script
            service.record_events(batch)
        rest = batches[BATCHES:]
        batched = best(
            BATCH_ROUNDS, BATCHES, lambda r, i: service.record_events(rest[r * BATCHES + i])
        )
        for i in range(50):
            service.record_exposure(experiment=EXPERIMENT_KEY, unit_id=f"warm{i}")
        single = best(
            SINGLE_ROUNDS,
            SINGLES,
            lambda r, i: service.record_exposure(experiment=EXPERIMENT_KEY, unit_id=f"s{r}-{i}"),
        )
        assign = best(
            SINGLE_ROUNDS,
            SINGLES,
            lambda r, i: service.get_variant_for_user(EXPERIMENT_KEY, f"a{r}-{i}"),
        )
    return (
        f"{store}: batch of 1,000 {batched[0] * 1e3:.1f} / {batched[1] * 1e3:.1f} ms; "
        f"single exposure {single[0] * 1e6:.0f} / {single[1] * 1e6:.0f} µs; "
        f"assign {assign[0] * 1e6:.0f} / {assign[1] * 1e6:.0f} µs (wall / CPU per call)"
    )


def main(stores: Sequence[str]) -> None:
    for store in stores or BACKENDS:
        print(measure(store), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
