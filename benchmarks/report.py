"""All of abpilot's benchmark figures in one table, each next to a reference from the same run.

Run ``python -m benchmarks.report [--quick] [--only SECTIONS] [--markdown FILE]`` from the
repository root with the ``bench`` extra installed, PostgreSQL and Redis running (a server out of
reach skips its rows). ``--quick`` is a short smoke run (about 2 minutes); the full run takes
about 23 minutes on 2 cores (the analysis at 1,000,000 units is half of it). ``--stores Redis``
(a comma list) limits the ``http`` and ``intake`` sections to those stores. Sections, in order:

1. ``http``: assign and single exposure over HTTP against the same server's bare endpoint
   (``benchmarks.http_load``), for SQLite, PostgreSQL and Redis, 1 and 2 uvicorn workers;
2. ``intake``: batch intake through ``service.record_events`` against each store's own upsert
   ceiling (``benchmarks.intake``);
3. ``assignment``: in-process assignment against the GrowthBook and FeatureVisor Python SDKs
   (the cases and the interleaved best-of-R timing of ``benchmarks.assignment``);
4. ``bandits``: exact P(best) against Monte Carlo, and the served loop's regret, best-arm share
   and time per pull against MABWiser's Thompson sampling (``benchmarks.bandits``, short runs:
   the full figures are ``python -m benchmarks.bandits``);
5. ``memory``: resident memory of ``abpilot serve`` idle and after many assignments
   (``benchmarks.memory``);
6. ``analysis``: the analysis and the segment analysis of an experiment with 1,000,000 units
   (3 variants, 4 metrics, a 10-value dimension) on every store against NumPy on the unit-level
   arrays, answers checked equal first (``benchmarks.analysis``; 20,000 units with ``--quick``).
   The load alone takes several minutes: leave it out with ``--only`` for a short run.

``ratio`` is always the figure divided by its reference, in the row's unit: for requests or
events per second above 1.0x is faster than the reference, for microseconds or megabytes above
1.0x is more than the reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks import analysis, assignment, bandits, http_load, intake, memory
from benchmarks.common import (
    BACKENDS,
    cpu_model,
    memory_total,
    os_name,
    postgres_version,
    redis_version,
    version,
)

SECTIONS = ("http", "intake", "assignment", "bandits", "memory", "analysis")
PACKAGES = (
    "abpilot",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "sqlalchemy",
    "psycopg",
    "redis",
    "mmh3",
    "numpy",
    "scipy",
    "growthbook",
    "featurevisor",
    "mabwiser",
    "psutil",
)
MB = 1024**2


@dataclass(frozen=True, slots=True)
class Sizes:
    http: http_load.LoadSettings
    intake_batches: int
    intake_rounds: int
    redis_requests: int
    units: int
    repeat: int
    seeds: int
    horizon_divisor: int
    assignments: int
    analysis_units: int
    stores: tuple[str, ...] = tuple(BACKENDS)  # the stores of the http and intake sections


QUICK = Sizes(
    http_load.LoadSettings(8, 1.0, 1, 0.3), 5, 1, 50_000, 10_000, 2, 2, 10, 100_000, 20_000
)
FULL = Sizes(
    http_load.LoadSettings(8, 2.5, 5, 1.0), 20, 3, 200_000, 100_000, 5, 6, 4, 1_000_000, 1_000_000
)


@dataclass(frozen=True, slots=True)
class Row:
    section: str
    figure: str
    value: str
    reference: str
    reference_value: str
    ratio: float | None
    note: str = ""


def ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


# sections -------------------------------------------------------------------------------------


def http_rows(sizes: Sizes, console: Console) -> list[Row]:
    load = sizes.http
    rows = []
    with console.status("HTTP: starting servers...") as progress:
        for store in sizes.stores:
            for workers in http_load.WORKER_COUNTS:
                progress.update(f"HTTP: {store}, {workers} worker(s)...")
                rows += http_load.measure_store(store, workers, load)
    out = []
    for row in rows:
        name = "assign" if row.route == "assign" else "single exposure"
        figure = f"{name}, {row.store}, {row.workers} worker{'s' if row.workers > 1 else ''}"
        reference = f"bare {row.route} endpoint, same server"
        if row.real is None or row.bare is None:
            out.append(Row("HTTP", figure, "-", reference, "-", None, row.note))
            continue
        errors = row.real.errors + row.bare.errors
        rounds = " ".join(f"{r:.2f}" for r in row.round_ratios())
        note = f"rounds {rounds}; best rounds {row.real.per_second / row.bare.per_second:.2f}x"
        if errors:
            note += f"; {errors} errors, first: {row.real.first_error or row.bare.first_error}"
        out.append(
            Row(
                "HTTP",
                figure,
                http_cell(row.real),
                reference,
                http_cell(row.bare),
                row.paired_ratio(),
                note,
            )
        )
    return out


def http_cell(figure: http_load.Figure) -> str:
    return f"{figure.per_second:,.0f} req/s, p50 {figure.p50_ms:.1f} / p99 {figure.p99_ms:.1f} ms"


def intake_rows(sizes: Sizes, console: Console) -> list[Row]:
    out = []
    for store in sizes.stores:
        with console.status(f"batch intake: {store}..."):
            row = intake.measure_store(
                store, sizes.intake_batches, sizes.intake_rounds, sizes.redis_requests
            )
        figure = f"record_events, {store} (batches of {intake.BATCH:,})"
        if row.service is None or row.ceiling is None:
            out.append(Row("intake", figure, "-", row.ceiling_label or "-", "-", None, row.note))
            continue
        out.append(
            Row(
                "intake",
                figure,
                f"{row.service:,.0f} events/s",
                row.ceiling_label,
                f"{row.ceiling:,.0f} upserts/s",
                row.service / row.ceiling,
            )
        )
        if row.same_writes is not None:
            out.append(
                Row(
                    "intake",
                    figure,
                    f"{row.service:,.0f} events/s",
                    "the same writes by hand, one transaction per batch"
                    if store != "Redis"
                    else "the same writes by hand, one MULTI/EXEC pipeline per batch",
                    f"{row.same_writes:,.0f} events/s",
                    row.service / row.same_writes,
                )
            )
        if row.python_client is not None:
            out.append(
                Row(
                    "intake",
                    f"record_events, {store} (batches of {intake.BATCH:,})",
                    f"{row.service:,.0f} events/s",
                    f"redis-py pipelines of {intake.BATCH:,} HINCRBY",
                    f"{row.python_client:,.0f} upserts/s",
                    row.service / row.python_client,
                )
            )
    if "Redis" not in sizes.stores:
        return out
    with console.status("batch intake: Redis, dedupe window..."):
        window = intake.measure_window(sizes.intake_batches, sizes.intake_rounds)
    figure = f"record_events, Redis, {intake.WINDOW_DAYS}-day dedupe window"
    if isinstance(window, str):
        out.append(Row("intake", figure, "-", "ids kept forever", "-", None, window))
    else:
        out.append(
            Row(
                "intake",
                figure,
                f"{window[0]:,.0f} events/s",
                "the same, ids kept forever (window 0), alternating rounds",
                f"{window[1]:,.0f} events/s",
                window[0] / window[1],
            )
        )
    return out


def assignment_rows(sizes: Sizes, console: Console) -> list[Row]:
    cases = [
        *assignment.abpilot_cases(),
        assignment.growthbook_case(),
        assignment.featurevisor_case("checkoutButton"),
    ]
    ids = [f"user-{i}" for i in range(sizes.units)]
    with console.status("in-process assignment...") as progress:
        results = assignment.measure(
            cases,
            ids,
            sizes.repeat,
            lambda n: progress.update(f"in-process assignment: round {n + 1}/{sizes.repeat}"),
        )
    by_key = {r.case.key: r for r in results}
    gb, fv = by_key["growthbook"], by_key["featurevisor"]
    best = f"N={sizes.units:,}, best of {sizes.repeat}"

    def row(key: str, figure: str, reference: assignment.Measurement, label: str) -> Row:
        found = by_key[key]
        return Row(
            "assignment",
            figure,
            f"{found.best_us:.2f} µs/call",
            label,
            f"{reference.best_us:.2f} µs/call",
            found.best_us / reference.best_us,
            best,
        )

    growthbook = "GrowthBook set_attributes + run()"
    return [
        row("abpilot_det", "get_variant_for_user(record=False)", gb, growthbook),
        row(
            "abpilot_det",
            "get_variant_for_user(record=False)",
            fv,
            "FeatureVisor get_variation(checkoutButton)",
        ),
        row("abpilot_recorded", "get_variant_for_user() (memory store, writes)", gb, growthbook),
        row("abpilot_batched", "get_variants_for_users() per unit", gb, growthbook),
    ]


def bandit_rows(sizes: Sizes, console: Console) -> list[Row]:
    with console.status("bandits: P(best)..."):
        exact_s, mc_s, max_diff = bandits.pbest_measure(10)
    out = [
        Row(
            "bandits",
            "allocation: exact P(best), 10 arms",
            f"{exact_s * 1e3:.3f} ms",
            "Monte Carlo P(best), 10,000 draws",
            f"{mc_s * 1e3:.3f} ms",
            exact_s / mc_s,
            f"max |diff| {max_diff:.4f}",
        )
    ]
    scenarios = [
        bandits.Scenario(s.name, s.rates, s.horizon // sizes.horizon_divisor)
        for s in bandits.SCENARIOS
    ]
    workers = min(2, os.cpu_count() or 1)
    results = bandits.regret_runs(scenarios, sizes.seeds, workers, 1, console)
    served_seconds = mab_seconds = 0.0
    pulls = 0
    for i, scenario in enumerate(scenarios):
        served, reference = results[(i, "served")], results[(i, "mabwiser")]
        served_regret = sum(r.regret for r in served) / len(served)
        mab_regret = sum(r.regret for r in reference) / len(reference)
        served_seconds += sum(r.seconds for r in served)
        mab_seconds += sum(r.seconds for r in reference)
        pulls += scenario.horizon * sizes.seeds
        out.append(
            Row(
                "bandits",
                f"regret, {scenario.name}, {scenario.horizon:,} pulls, {sizes.seeds} seeds",
                f"{served_regret:.1f}",
                "MABWiser ThompsonSampling (per decision)",
                f"{mab_regret:.1f}",
                served_regret / mab_regret,
                f"best-arm share {bandits.share(served):.1%} vs {bandits.share(reference):.1%}; "
                f"floor cost ≥ {bandits.floor_cost(scenario):.1f}",
            )
        )
    out.append(
        Row(
            "bandits",
            "served loop time per pull (all scenarios)",
            f"{served_seconds / pulls * 1e6:.1f} µs",
            "MABWiser predict + partial_fit per decision",
            f"{mab_seconds / pulls * 1e6:.1f} µs",
            served_seconds / mab_seconds,
        )
    )
    return out


def memory_rows(sizes: Sizes, console: Console) -> list[Row]:
    with console.status(f"memory: idle servers, then {sizes.assignments:,} assignments..."):
        found = memory.measure(sizes.assignments)
    one, two = found.idle[1], found.idle[2]
    bare = f"bare interpreter, worker imports ({memory.WORKER_IMPORTS.removeprefix('import ')})"
    rate = found.assignments / found.seconds
    out = [
        Row(
            "memory",
            "abpilot serve idle, 1 worker (SQLite): RSS",
            megabytes(one.rss),
            bare,
            megabytes(found.bare_interpreter),
            one.rss / found.bare_interpreter,
            f"USS {megabytes(one.uss)}",
        ),
        Row(
            "memory",
            f"abpilot serve idle, 2 workers: RSS sum over {two.processes} processes",
            megabytes(two.rss),
            "abpilot serve idle, 1 worker",
            megabytes(one.rss),
            two.rss / one.rss,
            f"USS sum {megabytes(two.uss)} (vs {megabytes(one.uss)})",
        ),
        Row(
            "memory",
            f"1 worker after {found.assignments:,} assignments: RSS",
            megabytes(found.after.rss),
            "the same worker before them",
            megabytes(found.before.rss),
            found.after.rss / found.before.rss,
            f"sent as POST /api/v1/events batches of {memory.BATCH:,} exposures of new units, "
            f"{rate:,.0f} events/s; {found.assigned_units:,} assigned units counted",
        ),
    ]
    return out


def analysis_rows(sizes: Sizes, console: Console) -> list[Row]:
    with console.status(f"analysis: loading {sizes.analysis_units:,} units...") as progress:
        found = analysis.measure_all(sizes.analysis_units, 3, report=progress.update)
    reference = "NumPy on the unit-level arrays, same numbers"
    out = []
    for row in found:
        note = f"answers agree with NumPy to {row.agreement:.1e} (max relative difference)"
        for name, seconds, numpy_seconds in (
            ("analysis", row.analysis_seconds, row.numpy_analysis_seconds),
            (
                f"segment analysis ({analysis.DIMENSION})",
                row.segments_seconds,
                row.numpy_segments_seconds,
            ),
        ):
            out.append(
                Row(
                    "analysis",
                    f"{name}, {row.store}, {row.units:,} units",
                    analysis.seconds_text(seconds),
                    reference,
                    analysis.seconds_text(numpy_seconds),
                    None if seconds is None else seconds / numpy_seconds,
                    row.note or note,
                )
            )
    return out


def megabytes(size: int) -> str:
    return f"{size / MB:,.0f} MB"


# output ---------------------------------------------------------------------------------------


def header_lines(quick: bool) -> list[str]:
    pg, rd = postgres_version(), redis_version()
    return [
        f"abpilot benchmark report{' (--quick)' if quick else ''}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {memory_total()}, {os_name()}",
        f"Python {platform.python_version()} ({platform.python_implementation()}); "
        f"PostgreSQL {pg or 'unreachable'}; Redis {rd or 'unreachable'}",
        "Packages: " + ", ".join(f"{p} {version(p)}" for p in PACKAGES),
    ]


def table(rows: Sequence[Row]) -> Table:
    out = Table(
        title="abpilot benchmarks: each figure next to a reference measured in the same run "
        "(ratio = figure / reference)",
        title_justify="left",
    )
    for header in ("#", "section", "figure", "value", "reference", "ref. value", "ratio", "note"):
        right = header in ("#", "value", "ref. value", "ratio")
        out.add_column(header, justify="right" if right else "left", overflow="fold")
    for number, row in enumerate(rows, start=1):
        out.add_row(
            str(number),
            row.section,
            escape(row.figure),
            row.value,
            escape(row.reference),
            row.reference_value,
            ratio_text(row.ratio),
            escape(row.note),
        )
    return out


def markdown(rows: Sequence[Row], header: Sequence[str]) -> str:
    lines = [f"{line}  " for line in header]
    lines += [
        "",
        "| # | section | figure | value | reference (same run) | ref. value | ratio | note |",
        "|---:|---|---|---:|---|---:|---:|---|",
    ]
    for number, row in enumerate(rows, start=1):
        cells = [
            str(number),
            row.section,
            row.figure,
            row.value,
            row.reference,
            row.reference_value,
            ratio_text(row.ratio),
            row.note,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~2 minutes)")
    parser.add_argument("--only", help=f"comma list of sections ({', '.join(SECTIONS)})")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument(
        "--stores", help=f"comma list of stores for http and intake ({', '.join(BACKENDS)})"
    )
    args = parser.parse_args(argv)
    args.stores = tuple(s.strip() for s in (args.stores or ",".join(BACKENDS)).split(","))
    if unknown := set(args.stores) - set(BACKENDS):
        parser.error(f"unknown stores {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    args.sections = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",")]
    if unknown := set(args.sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = dataclasses.replace(QUICK if args.quick else FULL, stores=args.stores)
    console = Console(width=max(Console().width, 200))
    header = header_lines(args.quick)
    for line in header:
        console.print(line, highlight=False)
    started = time.perf_counter()
    rows: list[Row] = []
    runners = {
        "http": http_rows,
        "intake": intake_rows,
        "assignment": assignment_rows,
        "bandits": bandit_rows,
        "memory": memory_rows,
        "analysis": analysis_rows,
    }
    for section in SECTIONS:
        if section in args.sections:
            section_started = time.perf_counter()
            rows += runners[section](sizes, console)
            console.print(f"{section}: {time.perf_counter() - section_started:.0f} s")
    console.print()
    console.print(table(rows))
    elapsed = time.perf_counter() - started
    console.print(
        f"HTTP: {sizes.http.connections} keep-alive connections per server worker from a "
        f"separate load-generator process, {sizes.http.rounds} interleaved round(s) of "
        f"{sizes.http.seconds:g} s per endpoint, the best round's figures shown; the ratio is "
        "the median of the rounds' real / bare, each pair measured back to back; the load "
        "generator shares the machine's CPUs with the server."
    )
    console.print(f"Total time: {elapsed:.0f} s")
    if args.markdown is not None:
        header.append(f"Total time: {elapsed:.0f} s")
        args.markdown.write_text(markdown(rows, header))
        console.print(f"Markdown table written to {args.markdown}")


if __name__ == "__main__":
    main()
