"""Bandit benchmarks: P(best), recalculation at scale, the served loop's regret next to MABWiser.

Run ``python -m benchmarks.bandits [--quick] [--only pbest,recalc,regret] [--workers N]``. One
process (plus ``--workers`` processes for the regret runs), one run; every ratio divides two
figures measured in that same run, so the machine's speed cancels out.

1. **P(best)**: ``probability_best_exact`` (one vectorised quadrature) against
   ``probability_best_monte_carlo`` with 10,000 joint draws, for K = 3, 10 and 100 arms whose Beta
   posteriors are (1 + s, 99 + 10000 - s) with s spread evenly over 300..480. Time per call is the
   median of single calls (at least 5 calls and 0.3 s per row). ``exact / MC`` is the exact
   method's time divided by Monte Carlo's (0.5x: exact takes half the time); ``max |diff|`` is the
   largest absolute difference between the two probability vectors, i.e. Monte Carlo's error
   (about sqrt(p(1-p)/10000) <= 0.005). Target: exact with K = 10 under 1 ms.
2. **Recalculation**: N (10,000; ``--quick`` 1,000) running bandit experiments with 3 arms and
   10..29 exposures per arm with some conversions (event-level events sent through
   ``service.record_events`` in batches of 10,000; ``min_exposures`` is 10 so that every
   experiment leaves burn-in and computes real Thompson weights), then ``service.recalculate_all()``
   is timed on SQLite (a throwaway file), PostgreSQL (a fresh schema, dropped after) and Redis (a
   fresh key prefix, deleted after). The reference row is ``allocate()`` on the same counts with
   no store at all, so ``vs pure`` is the store's overhead factor (10x: the store-backed
   recalculation takes ten times the pure computation). Target: all N in under 10 s. A server that
   cannot be reached gives "skipped: <reason>"; a backend that fails shows its error.
3. **Regret**: the served loop (``abpilot.simulation.simulate``: a memory-store service, units
   assigned by ``get_variant_for_user``, events through ``record_events``, ``recalculate`` every
   1,000 units, with the service defaults: burn-in of 100 exposures per arm at equal weights, the
   default floor of 1% per arm or 2% / arms for more than two arms, exact P(best)) next to
   MABWiser's ``ThompsonSampling`` (Beta(1, 1) priors, no floor) updated after every decision
   (``predict`` then ``partial_fit`` of that one decision).
   With ``--mabwiser-batch B`` MABWiser instead draws B decisions from one posterior and fits
   them together; the output says which was used. Scenarios: rates [0.032, 0.042, 0.038] over
   100,000 pulls, 10 arms 0.01..0.05 over 200,000 and [0.10, 0.11] over 50,000, 20 seeds each
   (``--quick``: 3 seeds, horizons / 10). Regret is expected regret (best rate minus the served
   arm's rate, per pull). ``served / MABWiser`` divides the mean final regrets (target <= 1.2:
   the service's batched, floored loop loses at most 20% more than per-decision Thompson
   sampling). ``floor cost`` is a lower bound of the regret the default floor alone forces on
   the served loop after the first round (floor x sum of gaps x pulls); where it is a large part
   of the served regret, the floor, not the learning, sets the ratio. ``us/pull`` is each
   method's run time (measured inside its worker) per pull.

The default run takes about 10 to 15 minutes on 2 cores, ``--quick`` about 1 to 2 minutes.
Targets are printed as PASS/MISS, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import abpilot
from abpilot.bandits.config import BanditOptions
from abpilot.bandits.thompson import (
    ArmData,
    allocate,
    probability_best_exact,
    probability_best_monte_carlo,
    round_weights,
)
from abpilot.simulation import simulate
from abpilot.store.base import EventKind
from benchmarks.common import BACKENDS, machine_line, server_versions, version

PACKAGES = ("abpilot", "numpy", "scipy", "mabwiser", "sqlalchemy", "psycopg", "redis")
SECTIONS = ("pbest", "recalc", "regret")

MC_SAMPLES = 10_000
PBEST_ARMS = (3, 10, 100)
TARGET_EXACT_K10_S = 1e-3
RECALC_ARMS = (("a", 0.10), ("b", 0.13), ("c", 0.12))
RECALC_MIN_EXPOSURES = 10
TARGET_RECALC_S = 10.0
TARGET_RECALC_EXPERIMENTS = 10_000
UPDATE_EVERY = 1_000
TARGET_REGRET_RATIO = 1.2


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    rates: tuple[float, ...]
    horizon: int


SCENARIOS = (
    Scenario("3 arms .032/.042/.038", (0.032, 0.042, 0.038), 100_000),
    Scenario("10 arms .01..0.05", tuple(np.linspace(0.01, 0.05, 10).round(4).tolist()), 200_000),
    Scenario("2 arms .10/.11", (0.10, 0.11), 50_000),
)


def status(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]MISS[/]"


# 1. P(best) -------------------------------------------------------------------------------------


def per_call_seconds(
    call: Callable[[], object], *, min_calls: int = 5, min_time: float = 0.3
) -> float:
    """Median duration of single calls, after one untimed warm-up call."""
    call()
    durations: list[float] = []
    started = time.perf_counter()
    while len(durations) < min_calls or time.perf_counter() - started < min_time:
        t0 = time.perf_counter()
        call()
        durations.append(time.perf_counter() - t0)
    return statistics.median(durations)


def pbest_measure(k: int) -> tuple[float, float, float]:
    """Seconds per call of exact P(best) and of Monte Carlo for ``k`` arms, and the largest
    absolute difference between their probability vectors."""
    successes = np.linspace(300, 480, k).round().astype(int)
    posteriors = [(1.0 + s, 99.0 + 10_000 - s) for s in successes.tolist()]
    rng = np.random.default_rng(k)
    exact_s = per_call_seconds(partial(probability_best_exact, posteriors))
    mc_s = per_call_seconds(partial(probability_best_monte_carlo, posteriors, MC_SAMPLES, rng))
    exact = np.asarray(probability_best_exact(posteriors))
    mc = np.asarray(probability_best_monte_carlo(posteriors, MC_SAMPLES, rng))
    return exact_s, mc_s, float(np.abs(exact - mc).max())


def pbest_table() -> Table:
    table = Table(
        title="P(best): exact quadrature vs Monte Carlo (10,000 draws)", title_justify="left"
    )
    for header in ("K arms", "exact", "Monte Carlo", "exact / MC", "max |diff|", "target"):
        table.add_column(header, justify="right")
    for k in PBEST_ARMS:
        exact_s, mc_s, max_diff = pbest_measure(k)
        target = ""
        if k == 10:
            target = f"< 1 ms {status(exact_s < TARGET_EXACT_K10_S)}"
        table.add_row(
            str(k),
            milliseconds(exact_s),
            milliseconds(mc_s),
            f"{exact_s / mc_s:.2f}x",
            f"{max_diff:.4f}",
            target,
        )
    return table


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


# 2. Recalculation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecalcRow:
    backend: str
    setup_s: float | None = None
    recalc_s: float | None = None
    outcomes: str = ""
    note: str = ""


def recalc_counts(n: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.int64]]:
    """(n, arms, 2): exposures (10..29) and conversions per arm of each experiment."""
    rng = np.random.default_rng(seed)
    exposures = rng.integers(RECALC_MIN_EXPOSURES, 30, size=(n, len(RECALC_ARMS)))
    rates = np.array([rate for _, rate in RECALC_ARMS])
    conversions = rng.binomial(exposures, rates)
    return np.stack([exposures, conversions], axis=2).astype(np.int64)


def pure_recalc_seconds(counts: np.ndarray[Any, np.dtype[np.int64]]) -> float:
    """The reference: ``allocate()`` for every experiment on the same counts, no store."""
    config = BanditOptions(min_exposures=RECALC_MIN_EXPOSURES).thompson()
    configured = round_weights([1 / len(RECALC_ARMS)] * len(RECALC_ARMS))
    keys = [key for key, _ in RECALC_ARMS]
    rows = counts.tolist()
    started = time.perf_counter()
    for experiment in rows:
        arms = [ArmData(k, e, c) for k, (e, c) in zip(keys, experiment, strict=True)]
        allocate(arms, config, configured=configured)
    return time.perf_counter() - started


def fill_store(
    service: abpilot.ExperimentService, counts: np.ndarray[Any, np.dtype[np.int64]]
) -> None:
    """Create and start one bandit per row of ``counts`` and send its events in big batches."""
    weights = round_weights([1 / len(RECALC_ARMS)] * len(RECALC_ARMS))
    variants = [{"key": k, "weight": w} for (k, _), w in zip(RECALC_ARMS, weights, strict=True)]
    settings = {"bandit": {"min_exposures": RECALC_MIN_EXPOSURES}}
    batch: list[abpilot.EventInput] = []
    exposure, conversion = EventKind.EXPOSURE, EventKind.CONVERSION
    for i, experiment in enumerate(counts.tolist()):
        created = service.create_experiment(
            key=f"bench-{i:05d}", type="bandit", variants=variants, settings=settings
        )
        service.start_experiment(created.id)
        for (key, _), (exposures, conversions) in zip(RECALC_ARMS, experiment, strict=True):
            # Event-level mode (no unit ids): one event per exposure or conversion.
            batch += [abpilot.EventInput(exposure, created.id, variant=key)] * exposures
            batch += [abpilot.EventInput(conversion, created.id, variant=key)] * conversions
        if len(batch) >= service.max_batch_events - 100:
            service.record_events(batch)
            batch = []
    if batch:
        service.record_events(batch)


def recalc_backend(name: str, counts: np.ndarray[Any, np.dtype[np.int64]]) -> RecalcRow:
    """Set up a fresh store of backend ``name``, time ``recalculate_all``, clean up."""
    try:
        with contextlib.ExitStack() as stack:
            try:
                url, options = stack.enter_context(BACKENDS[name]())
            except Exception as error:  # a server out of reach skips the row
                return RecalcRow(name, note=f"skipped: {type(error).__name__}: {error}")
            service = abpilot.open(url, **options)
            stack.callback(service.store.close)
            started = time.perf_counter()
            fill_store(service, counts)
            setup = time.perf_counter() - started
            started = time.perf_counter()
            outcomes = service.recalculate_all()
            elapsed = time.perf_counter() - started
    except Exception as error:  # any failure is reported in the backend's row
        return RecalcRow(name, note=f"error: {type(error).__name__}: {error}")
    tally = Counter(o.status for o in outcomes)
    failed = next((o.error for o in outcomes if o.status == "failed"), None)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(tally.items()))
    return RecalcRow(name, setup, elapsed, summary, f"first failure: {failed}" if failed else "")


def recalc_table(n: int, console: Console) -> Table:
    counts = recalc_counts(n)
    pure = pure_recalc_seconds(counts)
    rows = []
    for name in BACKENDS:
        with console.status(f"recalculation: setting up {n:,} experiments on {name}..."):
            rows.append(recalc_backend(name, counts))
    table = Table(title=f"recalculate_all() of {n:,} running 3-arm bandits", title_justify="left")
    for header in ("store", "setup", "recalculate_all", "per experiment", "vs pure", "outcomes"):
        table.add_column(header, justify="left" if header in {"store", "outcomes"} else "right")
    target = TARGET_RECALC_S * n / TARGET_RECALC_EXPERIMENTS
    scaled = "" if n == TARGET_RECALC_EXPERIMENTS else " (10 s per 10,000)"
    table.add_column(f"target < {target:g} s{scaled}")
    table.add_row(
        "pure allocate() (reference)", "-", f"{pure:.2f} s", f"{pure / n * 1e3:.3f} ms", "1.00x"
    )
    for row in rows:
        if row.recalc_s is None:
            table.add_row(row.backend, "-", "-", "-", "-", escape(row.note[:160]), "")
            continue
        table.add_row(
            row.backend,
            f"{row.setup_s:.1f} s",
            f"{row.recalc_s:.2f} s",
            f"{row.recalc_s / n * 1e3:.3f} ms",
            f"{row.recalc_s / pure:.1f}x",
            escape((row.outcomes + (f"; {row.note}" if row.note else ""))[:160]),
            status(row.recalc_s < target),
        )
    return table


# 3. Regret --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    regret: float
    share_best: float
    seconds: float


def served_run(rates: tuple[float, ...], horizon: int, seed: int) -> RunResult:
    started = time.perf_counter()
    result = simulate(rates, horizon=horizon, update_every=UPDATE_EVERY, seed=seed)
    return RunResult(result.final_regret, result.share_best, time.perf_counter() - started)


def mabwiser_run(rates: tuple[float, ...], horizon: int, seed: int, batch: int) -> RunResult:
    """MABWiser Thompson sampling: ``predict`` one decision, then ``partial_fit`` it (batch 1),
    or ``predict`` B decisions from one posterior and ``partial_fit`` them together."""
    from mabwiser.mab import MAB, LearningPolicy  # type: ignore[import-untyped]

    started = time.perf_counter()
    k = len(rates)
    rate = np.asarray(rates)
    mab = MAB(list(range(k)), LearningPolicy.ThompsonSampling(), seed=seed)
    mab.fit(np.array([], dtype=np.int64), np.array([], dtype=np.float64))  # no data: Beta(1, 1)
    draws = np.random.default_rng([seed, 1]).random(horizon)  # the world's rewards
    pulls = np.zeros(k, dtype=np.int64)
    if batch == 1:
        for t in range(horizon):
            arm = int(mab.predict())
            mab.partial_fit([arm], [float(draws[t] < rate[arm])])
            pulls[arm] += 1
    else:
        for start in range(0, horizon, batch):
            n = min(batch, horizon - start)
            arms = np.asarray(mab.predict(np.zeros((n, 1))) if n > 1 else [mab.predict()])
            rewards = (draws[start : start + n] < rate[arms]).astype(np.float64)
            mab.partial_fit(arms, rewards)
            pulls += np.bincount(arms, minlength=k)
    regret = float(pulls @ (rate.max() - rate))
    best = int(np.argmax(rate))
    return RunResult(regret, float(pulls[best]) / horizon, time.perf_counter() - started)


RegretResults = dict[tuple[int, str], list[RunResult]]
"""Runs by (scenario index, "served" or "mabwiser"), one per seed."""


def regret_runs(
    scenarios: Sequence[Scenario], seeds: int, workers: int, batch: int, console: Console
) -> RegretResults:
    """Every seed of every scenario, for the served loop and for MABWiser, on ``workers``
    processes."""
    jobs: dict[tuple[int, str], list[Future[RunResult]]] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # Longest jobs first, so the workers finish together.
        for i, scenario in sorted(enumerate(scenarios), key=lambda s: -s[1].horizon):
            jobs[(i, "mabwiser")] = [
                pool.submit(mabwiser_run, scenario.rates, scenario.horizon, s, batch)
                for s in range(seeds)
            ]
            jobs[(i, "served")] = [
                pool.submit(served_run, scenario.rates, scenario.horizon, s) for s in range(seeds)
            ]
        total = sum(len(f) for f in jobs.values())
        with console.status("regret runs...") as progress:
            while (done := sum(f.done() for fs in jobs.values() for f in fs)) < total:
                progress.update(f"regret runs: {done}/{total} done ({workers} workers)")
                time.sleep(0.5)
        return {key: [f.result() for f in futures] for key, futures in jobs.items()}


def floor_cost(scenario: Scenario) -> float:
    """Lower bound of the regret the default floor alone forces after the first round."""
    rate = np.asarray(scenario.rates)
    return (
        BanditOptions().floor(len(scenario.rates))
        * float((rate.max() - rate).sum())
        * (scenario.horizon - UPDATE_EVERY)
    )


def regret_table(
    scenarios: Sequence[Scenario], seeds: int, workers: int, batch: int, console: Console
) -> Table:
    results = regret_runs(scenarios, seeds, workers, batch, console)
    how = "updated per decision" if batch == 1 else f"partial_fit every {batch} decisions"
    table = Table(
        title=f"Cumulative expected regret, mean of {seeds} seeds: served loop (update every "
        f"{UPDATE_EVERY:,}) vs MABWiser ThompsonSampling ({how})",
        title_justify="left",
    )
    for header in (
        "scenario",
        "pulls",
        "served",
        "MABWiser",
        "served / MABWiser",
        "floor cost",
        "best-arm share s / M",
        "us/pull s / M",
    ):
        table.add_column(header, justify="left" if header == "scenario" else "right")
    for i, scenario in enumerate(scenarios):
        served, reference = results[(i, "served")], results[(i, "mabwiser")]
        served_regret = statistics.fmean(r.regret for r in served)
        mab_regret = statistics.fmean(r.regret for r in reference)
        ratio = served_regret / mab_regret
        floor = floor_cost(scenario)
        table.add_row(
            scenario.name,
            f"{scenario.horizon:,}",
            f"{served_regret:.1f} ± {stdev(r.regret for r in served):.1f}",
            f"{mab_regret:.1f} ± {stdev(r.regret for r in reference):.1f}",
            f"{ratio:.2f}x {status(ratio <= TARGET_REGRET_RATIO)}",
            f"≥ {floor:.1f}",
            f"{share(served):.1%} / {share(reference):.1%}",
            f"{per_pull_us(served, scenario.horizon):.1f} / "
            f"{per_pull_us(reference, scenario.horizon):.1f}",
        )
    return table


def stdev(values: Iterator[float] | Sequence[float]) -> float:
    data = list(values)
    return statistics.stdev(data) if len(data) > 1 else 0.0


def share(runs: Sequence[RunResult]) -> float:
    return statistics.fmean(r.share_best for r in runs)


def per_pull_us(runs: Sequence[RunResult], horizon: int) -> float:
    return sum(r.seconds for r in runs) / (len(runs) * horizon) * 1e6


# report -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bandits", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--quick", action="store_true", help="1,000 experiments; 3 seeds, horizons / 10"
    )
    parser.add_argument("--only", help=f"comma list of sections to run ({', '.join(SECTIONS)})")
    parser.add_argument("--experiments", type=int, help="recalculation: experiments per store")
    parser.add_argument("--seeds", type=int, help="regret: seeds per scenario and method")
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="regret: processes"
    )
    parser.add_argument(
        "--mabwiser-batch",
        type=int,
        default=1,
        help="regret: decisions per MABWiser partial_fit (default 1: per decision)",
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",")]
    if unknown := set(args.sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.experiments = args.experiments or (1_000 if args.quick else 10_000)
    args.seeds = args.seeds or (3 if args.quick else 20)
    if min(args.experiments, args.seeds, args.workers, args.mabwiser_batch) < 1:
        parser.error("--experiments, --seeds, --workers and --mabwiser-batch must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=max(Console().width, 150))
    started = time.perf_counter()
    console.print(f"[bold]abpilot bandit benchmarks[/]{' (--quick)' if args.quick else ''}")
    console.print(machine_line())
    console.print("Packages: " + ", ".join(f"{p} {version(p)}" for p in PACKAGES))
    console.print(f"Servers: {server_versions()}")
    console.print()
    if "pbest" in args.sections:
        console.print(pbest_table())
        console.print()
    if "recalc" in args.sections:
        section = time.perf_counter()
        console.print(recalc_table(args.experiments, console))
        console.print(f"(section time {time.perf_counter() - section:.0f} s)\n")
    if "regret" in args.sections:
        section = time.perf_counter()
        divisor = 10 if args.quick else 1
        scenarios = [Scenario(s.name, s.rates, s.horizon // divisor) for s in SCENARIOS]
        console.print(
            regret_table(scenarios, args.seeds, args.workers, args.mabwiser_batch, console)
        )
        if args.mabwiser_batch > 1:
            console.print(
                f"[yellow]MABWiser was batched: it drew {args.mabwiser_batch} decisions from one "
                "posterior before each partial_fit (a handicap for the reference).[/]"
            )
        console.print(
            f"(section time {time.perf_counter() - section:.0f} s on {args.workers} workers)\n"
        )
    console.print(f"Total time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
