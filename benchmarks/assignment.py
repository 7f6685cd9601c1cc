"""Assignment latency: abpilot next to the GrowthBook and FeatureVisor Python SDKs.

Run ``python -m benchmarks.assignment [--units N] [--repeat R] [--quick]``. One process, one
run, every row measured the same way:

* each row is a loop of N calls over the unit ids ``user-0 .. user-{N-1}``, timed with
  ``time.perf_counter_ns`` around the whole loop, with the garbage collector off during the loop
  (as ``timeit`` does); the table shows the best of R repeats (the least disturbed one) and the
  median repeat, as microseconds per call and calls per second (from the best). The Python
  ``for`` loop itself (a few tens of nanoseconds per call) is inside every figure;
* the repeats run in R rounds that time every row once each, so a load change on the machine
  hits all rows alike and the ratios between rows stay fair;
* batched rows make one call over all N ids; their figures are per unit (us/unit, units/s);
* a short untimed warm-up pass of every row runs first.

Rows:

1. abpilot deterministic: ``service.get_variant_for_user("btn", u, record=False)`` on
   ``abpilot.open("memory://")``: definition cache, traffic check, one MurmurHash3, no write.
2. abpilot recorded: the same call with ``record=True`` (the default). A fresh memory store per
   repeat, so every call is the unit's first one and writes its assignment.
3. abpilot batched: ``service.get_variants_for_users("btn", ids)`` over all N ids at once.
4. abpilot core: ``Bucketing.variant_index(u)`` (the hash alone) and
   ``Bucketing.variant_indices(ids)`` (vectorised), without the service around them.
5. GrowthBook: ``gb.set_attributes({"id": u})`` then ``gb.run(experiment)`` on one local
   ``GrowthBook()`` instance: no API host, no tracking callback, no sticky-bucket service.
6. FeatureVisor: ``f.get_variation(feature, {bucketBy: u})`` on an instance built from the v2
   production datafile of ``tests/fixtures/featurevisor/datafiles`` (``checkoutButton`` by default).

How to read the ratio columns: ``vs abpilot det`` is the row's time per call divided by row 1's
(measured in the same run, so machine speed cancels out): 2.0x means twice as slow as abpilot's
deterministic path, 0.1x means ten times faster. ``vs GrowthBook`` divides by row 5 in the same
way. The ``split %`` column is a correctness check on a sample of the ids (share of units per
variant, and the share outside the experiment's traffic when there is one); abpilot's rows must
also agree with each other unit by unit. The targets (abpilot deterministic <= 1.5 us/call,
batched >= 1,000,000 units/s) are printed as PASS/MISS, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurevisor import create_featurevisor
from growthbook import Experiment as GrowthBookExperiment
from growthbook import GrowthBook
from rich.console import Console
from rich.table import Table

import abpilot
from abpilot.domain.assignment import NOT_IN_EXPERIMENT, Bucketing
from benchmarks.common import machine_line, version

REPO = Path(__file__).resolve().parent.parent
DATAFILE = REPO / "tests" / "fixtures" / "featurevisor" / "datafiles" / "v2-production.json"
EXPERIMENT_KEY = "btn"
VARIANTS = [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]
TARGET_DETERMINISTIC_US = 1.5
TARGET_BATCHED_UNITS_PER_S = 1_000_000
WARM_UP_UNITS = 1_000
SPLIT_SAMPLE_UNITS = 20_000
PACKAGES = ("abpilot", "growthbook", "featurevisor", "mmh3", "numpy")

Loop = Callable[[], object]
"""The timed body: N calls (or one batched call over N units)."""


@dataclass(frozen=True, slots=True)
class Case:
    """One row: how to build its timed loop over some ids, and its assignments for the check."""

    key: str
    label: str
    call: str
    prepare: Callable[[Sequence[str]], Loop]
    """Untimed set-up run before every repeat; returns the loop to time."""
    assignments: Callable[[Sequence[str]], list[object]]
    """Assignment of each id (None outside the traffic), for the split and agreement checks."""


@dataclass(frozen=True, slots=True)
class Measurement:
    case: Case
    best_us: float
    median_us: float

    @property
    def per_second(self) -> float:
        return 1e6 / self.best_us


def started_service() -> abpilot.ExperimentService:
    """A memory-store service with the running 50/50 experiment ``btn`` at 100% traffic."""
    service = abpilot.open("memory://")
    service.create_experiment(key=EXPERIMENT_KEY, variants=VARIANTS, traffic_allocation=1.0)
    service.start_experiment(EXPERIMENT_KEY)
    return service


# abpilot ---------------------------------------------------------------------------------------


def abpilot_cases() -> list[Case]:
    service = started_service()
    experiment = service.get_experiment(EXPERIMENT_KEY)
    keys = [v.key for v in experiment.variants]
    bucketing = Bucketing.for_experiment(experiment)

    def deterministic(ids: Sequence[str]) -> Loop:
        get = service.get_variant_for_user

        def loop() -> None:
            for u in ids:
                get(EXPERIMENT_KEY, u, record=False)

        return loop

    def deterministic_keys(ids: Sequence[str]) -> list[object]:
        return [
            variant_key(service.get_variant_for_user(EXPERIMENT_KEY, u, record=False)) for u in ids
        ]

    def recorded(ids: Sequence[str]) -> Loop:
        # A fresh store per repeat: every unit is new, so every call writes its assignment.
        # The service's definition cache (1 s by default) is warmed by a call that writes nothing.
        fresh = started_service()
        fresh.get_variant_for_user(EXPERIMENT_KEY, "warm-up", record=False)
        get = fresh.get_variant_for_user

        def loop() -> None:
            for u in ids:
                get(EXPERIMENT_KEY, u)

        return loop

    def recorded_keys(ids: Sequence[str]) -> list[object]:
        fresh = started_service()
        result: list[object] = [
            variant_key(fresh.get_variant_for_user(EXPERIMENT_KEY, u)) for u in ids
        ]
        exp_id = fresh.get_experiment(EXPERIMENT_KEY).id
        written = sum(c.assigned_units for c in fresh.store.get_counters(exp_id).values())
        if written != len(set(ids)):
            raise RuntimeError(f"recorded path wrote {written} assignments for {len(ids)} units")
        return result

    def batched(ids: Sequence[str]) -> Loop:
        get_many = service.get_variants_for_users
        return lambda: get_many(EXPERIMENT_KEY, ids)

    def batched_keys(ids: Sequence[str]) -> list[object]:
        return list(service.get_variants_for_users(EXPERIMENT_KEY, ids))

    def core(ids: Sequence[str]) -> Loop:
        index = bucketing.variant_index

        def loop() -> None:
            for u in ids:
                index(u)

        return loop

    def index_keys(indices: Sequence[int]) -> list[object]:
        return [None if i == NOT_IN_EXPERIMENT else keys[i] for i in indices]

    def core_batched(ids: Sequence[str]) -> Loop:
        indices = bucketing.variant_indices
        return lambda: indices(ids)

    return [
        Case(
            "abpilot_det",
            "abpilot deterministic",
            'service.get_variant_for_user("btn", u, record=False)',
            deterministic,
            deterministic_keys,
        ),
        Case(
            "abpilot_recorded",
            "abpilot recorded (memory)",
            'service.get_variant_for_user("btn", u)  # first call per unit: writes',
            recorded,
            recorded_keys,
        ),
        Case(
            "abpilot_batched",
            "abpilot batched *",
            'service.get_variants_for_users("btn", ids)  # one call, N ids',
            batched,
            batched_keys,
        ),
        Case(
            "core",
            "abpilot core hash",
            "Bucketing.for_experiment(exp).variant_index(u)",
            core,
            lambda ids: index_keys([bucketing.variant_index(u) for u in ids]),
        ),
        Case(
            "core_batched",
            "abpilot core batched *",
            "Bucketing.for_experiment(exp).variant_indices(ids)  # one call, N ids",
            core_batched,
            lambda ids: index_keys(bucketing.variant_indices(ids).tolist()),
        ),
    ]


def variant_key(assignment: abpilot.Assignment) -> str | None:
    return assignment.variant.key if assignment.variant is not None else None


# GrowthBook ------------------------------------------------------------------------------------


def growthbook_case() -> Case:
    # Per request a server-side user switches the user with ``set_attributes`` and runs the
    # experiment. Reading growthbook 4.x: ``set_attributes`` only stores the dict and returns from
    # ``refresh_sticky_buckets`` at once without a sticky-bucket service (and refetches only in
    # remote-eval mode), and ``run`` skips the feature refresh without a client key, so one
    # shared instance is the cheapest correct way. A new ``GrowthBook(attributes=...)`` per request
    # (the pattern for concurrent requests sharing nothing) runs the whole constructor per call
    # and costs more. No ``on_experiment_viewed``: no tracking callback; no ``api_host``: no
    # network. The experiment is defined once, like abpilot's cached definition.
    gb = GrowthBook()
    experiment = GrowthBookExperiment(key=EXPERIMENT_KEY, variations=[0, 1])

    def prepare(ids: Sequence[str]) -> Loop:
        set_attributes = gb.set_attributes
        run = gb.run

        def loop() -> None:
            for u in ids:
                set_attributes({"id": u})
                run(experiment)

        return loop

    def assignments(ids: Sequence[str]) -> list[object]:
        out: list[object] = []
        for u in ids:
            gb.set_attributes({"id": u})
            result = gb.run(experiment)
            out.append(result.value if result.inExperiment else None)
        return out

    return Case(
        "growthbook",
        "GrowthBook run()",
        'gb.set_attributes({"id": u}); gb.run(experiment)'
        '  # experiment = Experiment(key="btn", variations=[0, 1]), built once',
        prepare,
        assignments,
    )


# FeatureVisor ----------------------------------------------------------------------------------


def featurevisor_case(feature: str) -> Case:
    datafile = json.loads(DATAFILE.read_text())
    definition = datafile["features"].get(feature)
    if definition is None or not definition.get("variations"):
        raise SystemExit(f"{DATAFILE} has no feature {feature!r} with variations")
    bucket_by = definition["bucketBy"]
    # bucketBy is an attribute name, a list of them (all used) or {"or": [...]} (first present).
    if isinstance(bucket_by, str):
        attributes = [bucket_by]
    elif isinstance(bucket_by, dict):
        attributes = list(bucket_by["or"][:1])
    else:
        attributes = list(bucket_by)
    # logLevel "warn": the SDK prints info diagnostics (datafile set, initialised) otherwise.
    instance = create_featurevisor({"datafile": datafile, "logLevel": "warn"})
    get_variation = instance.get_variation

    def context(u: str) -> dict[str, Any]:
        return dict.fromkeys(attributes, u)

    def prepare(ids: Sequence[str]) -> Loop:
        if attributes == ["userId"]:

            def loop() -> None:
                for u in ids:
                    get_variation(feature, {"userId": u})

        else:

            def loop() -> None:
                for u in ids:
                    get_variation(feature, context(u))

        return loop

    def assignments(ids: Sequence[str]) -> list[object]:
        return [get_variation(feature, context(u)) for u in ids]

    shown = "{" + ", ".join(f'"{a}": u' for a in attributes) + "}"
    return Case(
        "featurevisor",
        f"FeatureVisor {feature}",
        f'f.get_variation("{feature}", {shown})',
        prepare,
        assignments,
    )


# measuring -------------------------------------------------------------------------------------


def time_once(case: Case, ids: Sequence[str]) -> float:
    """Nanoseconds per call of one timed loop over ``ids`` (set-up untimed, collector off); a
    batched loop is one call over ``len(ids)`` units, so its figure comes out per unit."""
    loop = case.prepare(ids)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        loop()
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / len(ids)


def measure(
    cases: Sequence[Case], ids: Sequence[str], repeat: int, on_round: Callable[[int], None]
) -> list[Measurement]:
    """Best and median of ``repeat`` rounds, in microseconds per call. Each round times every
    case once, so a load change on the machine during the run hits all rows alike and the
    ratios between rows stay fair."""
    for case in cases:
        case.prepare(ids[:WARM_UP_UNITS])()
    samples: dict[str, list[float]] = {case.key: [] for case in cases}
    for round_number in range(repeat):
        on_round(round_number)
        for case in cases:
            samples[case.key].append(time_once(case, ids))
    return [
        Measurement(case, min(samples[case.key]) / 1e3, statistics.median(samples[case.key]) / 1e3)
        for case in cases
    ]


def split(assignments: Sequence[object]) -> str:
    """Share of units per variant (sorted by variant), plus the share left out of the traffic."""
    counts = Counter(assignments)
    total = len(assignments)
    out = counts.pop(None, 0)
    shares = "/".join(f"{100 * counts[k] / total:.1f}" for k in sorted(counts, key=str))
    return shares + (f" ({100 * out / total:.1f}% out)" if out else "")


# report ----------------------------------------------------------------------------------------


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x"


def target_cell(measurement: Measurement) -> str:
    key = measurement.case.key
    if key == "abpilot_det":
        ok = measurement.best_us <= TARGET_DETERMINISTIC_US
        return f"<= {TARGET_DETERMINISTIC_US} us " + status(ok)
    if key == "abpilot_batched":
        ok = measurement.per_second >= TARGET_BATCHED_UNITS_PER_S
        return f">= {TARGET_BATCHED_UNITS_PER_S / 1e6:g}M/s " + status(ok)
    return ""


def status(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]MISS[/]"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.assignment", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--units", type=int, help="units (calls) per loop; default 100000")
    parser.add_argument("--repeat", type=int, help="timed repeats per row, best shown; default 5")
    parser.add_argument("--quick", action="store_true", help="defaults of 10000 units, 2 repeats")
    parser.add_argument(
        "--featurevisor-feature",
        default="checkoutButton",
        help="feature of the v2 production datafile to evaluate (default checkoutButton)",
    )
    args = parser.parse_args(argv)
    args.units = args.units or (10_000 if args.quick else 100_000)
    args.repeat = args.repeat or (2 if args.quick else 5)
    if args.units < 1 or args.repeat < 1:
        parser.error("--units and --repeat must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=max(Console().width, 140))
    ids = [f"user-{i}" for i in range(args.units)]
    sample = ids[:SPLIT_SAMPLE_UNITS]

    console.print(
        f"[bold]abpilot assignment benchmark[/]: N={args.units:,} units per loop, "
        f"best of R={args.repeat} repeats"
    )
    console.print(machine_line())
    console.print("Packages: " + ", ".join(f"{p} {version(p)}" for p in PACKAGES))
    console.print()

    cases = [*abpilot_cases(), growthbook_case(), featurevisor_case(args.featurevisor_feature)]
    started = time.perf_counter()
    with console.status("measuring...") as progress:

        def on_round(number: int) -> None:
            progress.update(f"measuring: round {number + 1} of {args.repeat}...")

        results = measure(cases, ids, args.repeat, on_round)
    elapsed = time.perf_counter() - started
    by_key = {r.case.key: r for r in results}
    reference = by_key["abpilot_det"].best_us
    growthbook = by_key["growthbook"].best_us
    assignments = {case.key: case.assignments(sample) for case in cases}

    table = Table(
        title=f"Assignment latency, N={args.units:,}, best of {args.repeat} "
        "(* batched: one call over N ids, figures per unit)",
        title_justify="left",
    )
    for header in (
        "#",
        "path",
        "us/call",
        "median",
        "calls/s",
        "vs det",
        "vs GB",
        "split %",
        "target",
    ):
        left = header in ("path", "split %", "target")
        table.add_column(header, justify="left" if left else "right", no_wrap=True)
    for number, r in enumerate(results, start=1):
        table.add_row(
            str(number),
            r.case.label,
            f"{r.best_us:.3f}",
            f"{r.median_us:.3f}",
            f"{r.per_second:,.0f}",
            ratio(r.best_us, reference),
            ratio(r.best_us, growthbook),
            split(assignments[r.case.key]),
            target_cell(r),
        )
    console.print(table)

    console.print("[bold]Calls measured[/] (u = unit id, ids = all N unit ids):")
    for number, r in enumerate(results, start=1):
        console.print(f"  {number}. {r.case.call}", highlight=False, markup=False)

    console.print(
        f"split %: share of the first {len(sample):,} ids per variant, in variant order "
        "(control/treatment, 0/1), and the share outside the traffic if any."
    )
    abpilot_keys = [k for k in assignments if k.startswith(("abpilot", "core"))]
    agree = all(assignments[k] == assignments["abpilot_det"] for k in abpilot_keys)
    console.print(
        f"abpilot paths agree unit by unit on {len(sample):,} sampled units: "
        + ("[green]yes[/]" if agree else "[red]NO[/]")
    )
    det, batched = by_key["abpilot_det"], by_key["abpilot_batched"]
    console.print(
        f"Targets: abpilot deterministic {det.best_us:.3f} us/call "
        f"(<= {TARGET_DETERMINISTIC_US}) {status(det.best_us <= TARGET_DETERMINISTIC_US)}; "
        f"batched {batched.per_second:,.0f} units/s (>= {TARGET_BATCHED_UNITS_PER_S:,}) "
        f"{status(batched.per_second >= TARGET_BATCHED_UNITS_PER_S)}"
    )
    console.print(f"Measured in {elapsed:.1f} s.")


if __name__ == "__main__":
    main()
