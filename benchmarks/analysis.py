"""The analysis of an experiment with 1,000,000 units (issue 18), on every store, next to the same
computation done by NumPy on the unit-level arrays in the same run.

The experiment (``benchmarks.analysis_data``): 3 variants, 4 metrics (one adjusted by a
covariate, one plain, one ratio, one capped at a percentile) and a 10-value dimension. It is
loaded once, untimed, into a memory store through ``service.record_events`` (batches of at most
10,000 events: each unit's exposure with its covariate and country, then its conversions), and
copied into SQLite, PostgreSQL and Redis by ``store.restore_experiment`` of the memory store's
``transfer.dump`` (what ``abpilot import`` does). Then, per store, in alternating rounds:

* ``analysis``: ``service.analyze_experiment(id)``, what ``GET .../analysis`` calls (every
  metric's inputs, the percentile cap read from the per-unit totals, the comparisons);
* ``segments``: ``service.analyze_segments(id, dimension="country")``, what ``?dimension=``
  adds;
* the NumPy reference of each (``reference_analysis``, ``reference_segments``) on the arrays.

Before a time is reported, the store's answers on every metric (the figures of
``analysis_data``: units, means, variances, differences, CUPED theta and unadjusted difference,
the cap) are compared with the reference: ``agreement`` is the largest relative difference, and a
store whose answers differ by more than ``TOLERANCE`` reports no time. Each time is the best
round. Run ``python -m benchmarks.analysis [--units N] [--rounds R] [--only STORES]``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import abpilot
from abpilot.service.core import ExperimentService
from abpilot.stats.analysis import Analysis
from benchmarks.analysis_data import (
    DIMENSION,
    METRICS,
    Numbers,
    Population,
    definition,
    event_batches,
    population,
    reference_analysis,
    reference_segments,
)
from benchmarks.common import BACKENDS, StoreUrl

TOLERANCE = 1e-6
BATCH = 9_000  # events per batch, so a unit's events never push one past 10,000
FIELDS = ("units", "mean", "variance", "difference", "unadjusted_difference", "theta")


@dataclass(frozen=True, slots=True)
class AnalysisRow:
    store: str
    units: int
    analysis_seconds: float | None
    segments_seconds: float | None
    numpy_analysis_seconds: float
    numpy_segments_seconds: float
    agreement: float
    note: str = ""


def numbers_of(scope: str, analysis: Analysis) -> Numbers:
    """The figures of one metric's analysis that the reference computes."""
    found: Numbers = {}
    for v in analysis.variants:
        for name in FIELDS:
            value = getattr(v, name)
            if value is not None:
                found[(scope, analysis.metric, v.key, name)] = float(value)
    if analysis.cap is not None:
        found[(scope, analysis.metric, "", "cap")] = analysis.cap
    return found


def answers(service: ExperimentService, experiment: str) -> Numbers:
    """Every metric of the analysis and of the segment analysis, as ``numbers_of`` reads them."""
    found: Numbers = {}
    for metric in METRICS:
        found |= numbers_of("all", service.analyze_experiment(experiment, metric=metric))
        breakdown = service.analyze_segments(experiment, dimension=DIMENSION, metric=metric)
        for segment in breakdown.segments:
            found |= numbers_of(segment.value, segment.analysis)
    return found


def largest_difference(got: Numbers, expected: Numbers) -> float:
    """The largest relative difference over every figure (inf when one side lacks a figure)."""
    if got.keys() != expected.keys():
        missing = sorted(got.keys() ^ expected.keys())
        print(f"figures on one side only ({len(missing)}), e.g. {missing[:3]}")
        return math.inf
    worst = 0.0
    for key, value in expected.items():
        scale = max(abs(value), abs(got[key]))
        if scale > 0:
            worst = max(worst, abs(got[key] - value) / scale)
    return worst


def timed(seconds: list[float], action: Callable[[], object]) -> None:
    start = time.perf_counter()
    action()
    seconds.append(time.perf_counter() - start)


def load(pop: Population) -> tuple[ExperimentService, str, float]:
    """A memory-store service with the experiment loaded; its id and the load's seconds."""
    service = abpilot.open("memory://")
    exp = service.create_experiment(**definition())
    service.start_experiment(exp.id)
    start = time.perf_counter()
    for batch in event_batches(pop, exp.id, BATCH):
        service.record_events(batch)
    return service, exp.id, time.perf_counter() - start


# redis-py's default 5 s socket timeout is shorter than one MULTI/EXEC restoring 1,000,000 units.
RESTORE_OPTIONS = {"socket_timeout": 3600.0}


@contextlib.contextmanager
def copied(
    source: ExperimentService, experiment: str, url: StoreUrl
) -> Iterator[tuple[ExperimentService, float]]:
    """A service on ``url`` holding a copy of ``experiment`` (restored from the source's
    dump, through a client with a long socket timeout on Redis), with the seconds the restore
    took."""
    state = source.transfer.dump(source.get_experiment(experiment))
    redis = url[0].startswith("redis")
    loader = abpilot.open(url[0], **url[1], **(RESTORE_OPTIONS if redis else {}))
    try:
        start = time.perf_counter()
        loader.store.restore_experiment(state)
        seconds = time.perf_counter() - start
    finally:
        loader.close()
    service = abpilot.open(url[0], **url[1])
    try:
        yield service, seconds
    finally:
        service.close()


def measure(
    name: str,
    service: ExperimentService,
    experiment: str,
    pop: Population,
    rounds: int,
    expected: Numbers,
) -> AnalysisRow:
    """Check the store's answers, then time alternating rounds (none when they disagree)."""
    service.analyze_experiment(experiment)  # loads SciPy, warms caches
    agreement = largest_difference(answers(service, experiment), expected)
    times: dict[str, list[float]] = {k: [] for k in ("a", "s", "na", "ns")}
    if agreement <= TOLERANCE:
        for _ in range(rounds):
            timed(times["a"], lambda: service.analyze_experiment(experiment))
            timed(times["na"], lambda: reference_analysis(pop))
            timed(times["s"], lambda: service.analyze_segments(experiment, dimension=DIMENSION))
            timed(times["ns"], lambda: reference_segments(pop))
    else:
        timed(times["na"], lambda: reference_analysis(pop))
        timed(times["ns"], lambda: reference_segments(pop))
    return AnalysisRow(
        name,
        pop.size,
        min(times["a"], default=None),
        min(times["s"], default=None),
        min(times["na"]),
        min(times["ns"]),
        agreement,
        "" if agreement <= TOLERANCE else f"answers differ from NumPy (> {TOLERANCE:g}): no time",
    )


def expected_numbers(pop: Population) -> Numbers:
    return reference_analysis(pop) | reference_segments(pop)


def measure_all(
    units: int,
    rounds: int,
    stores: Sequence[str] = ("memory", *BACKENDS),
    report: Callable[[str], None] = print,
) -> list[AnalysisRow]:
    """Every store's row; a store out of reach is left out with a line through ``report``."""
    pop = population(units)
    expected = expected_numbers(pop)
    source, experiment, seconds = load(pop)
    report(f"loaded {units:,} units into the memory store in {seconds:.0f} s")
    rows = []
    try:
        if "memory" in stores:
            rows.append(measure("memory", source, experiment, pop, rounds, expected))
            report(row_line(rows[-1]))
        for name, opener in BACKENDS.items():
            if name not in stores:
                continue
            try:
                with opener() as url, copied(source, experiment, url) as (service, restore):
                    report(f"{name}: restored in {restore:.0f} s")
                    rows.append(measure(name, service, experiment, pop, rounds, expected))
                    report(row_line(rows[-1]))
            except Exception as error:  # a server out of reach skips its row
                report(f"{name}: skipped ({type(error).__name__}: {error})")
    finally:
        source.close()
    return rows


def seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def ratio_text(value: float | None, reference: float) -> str:
    return "-" if value is None else f"{value / reference:.1f}x"


HEADER = (
    "| store | units | analysis | NumPy | ratio | segments | NumPy | ratio | agreement |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def row_line(row: AnalysisRow) -> str:
    return (
        f"| {row.store} | {row.units:,} | {seconds_text(row.analysis_seconds)} | "
        f"{seconds_text(row.numpy_analysis_seconds)} | "
        f"{ratio_text(row.analysis_seconds, row.numpy_analysis_seconds)} | "
        f"{seconds_text(row.segments_seconds)} | {seconds_text(row.numpy_segments_seconds)} | "
        f"{ratio_text(row.segments_seconds, row.numpy_segments_seconds)} | "
        f"{row.agreement:.1e} |" + (f" {row.note}" if row.note else "")
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma list of stores (memory, SQLite, PostgreSQL, Redis)")
    args = parser.parse_args(argv)
    stores = args.only.split(",") if args.only else ["memory", *BACKENDS]
    started = time.perf_counter()
    rows = measure_all(args.units, args.rounds, stores, lambda line: print(line, flush=True))
    print()
    print(HEADER)
    for row in rows:
        print(row_line(row))
    print(f"\nTotal time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
