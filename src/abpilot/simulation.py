"""Bandit simulation: the service's own allocation loop on a simulated Bernoulli world.

``simulate(rates, horizon=..., update_every=..., seed=...)`` runs a running ``bandit`` experiment on
a fresh memory-store ``ExperimentService`` exactly as production traffic would use it. Each round
of ``update_every`` new units:

1. every unit is assigned by ``service.get_variant_for_user`` (sticky, by the weights in force);
2. its conversion is drawn from Bernoulli(rate of the served arm) with a
   ``numpy.random.Generator(seed)``;
3. the round's exposures and conversions go to ``service.record_events`` in one batch;
4. ``service.recalculate(key)`` puts new Thompson weights in force when they changed.

Regret is the *expected* regret: each pull adds ``max(rates) - rates[served arm]``, whatever the
draw. The same seed gives the same result (assignment is a hash, the exact P(best) has no
randomness, and every draw comes from the seeded generator).

``abpilot simulate`` (see ``register``) runs several seeds with a progress bar, prints the mean and
standard deviation of the final regret, the share of pulls on the best arm and the final weights,
and with ``--plot`` draws regret and weights over time (needs ``abpilot[plot]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from abpilot.bandits.config import bandit_options
from abpilot.domain.errors import AbpilotError, ValidationError
from abpilot.domain.inputs import EventKind

if TYPE_CHECKING:  # the service is imported when a simulation runs, not with the CLI
    from abpilot.service import Assignment, ExperimentService

EXPERIMENT_KEY = "simulation"
MIN_ARMS, MAX_ARMS = 2, 20

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


_Array = TypeVar("_Array", bound=npt.NDArray[Any])


def _frozen(array: _Array) -> _Array:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, slots=True, eq=False)
class SimulationResult:
    """One simulated run. Arrays are read-only; round r covers pulls ``pulls_at[r-1]`` (0 for the
    first round) up to ``pulls_at[r]``."""

    rates: tuple[float, ...]
    horizon: int
    update_every: int
    seed: int
    pulls_at: IntArray
    """Total pulls at the end of each round (the update points), shape (rounds,)."""
    cumulative_regret: FloatArray
    """Expected cumulative regret at each update point, shape (rounds,)."""
    weights: FloatArray
    """Weights in force during each round (arm order), shape (rounds, arms)."""
    final_weights: tuple[float, ...]
    """Weights in force after the last recalculation."""
    pulls: IntArray
    """Pulls per arm over the whole run, shape (arms,)."""
    conversions: IntArray
    """Simulated conversions per arm, shape (arms,)."""

    @property
    def best_arm(self) -> int:
        return int(np.argmax(self.rates))

    @property
    def share_best(self) -> float:
        """Share of all pulls that went to the best arm."""
        return float(self.pulls[self.best_arm]) / self.horizon

    @property
    def final_regret(self) -> float:
        return float(self.cumulative_regret[-1])


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """Mean (and sample standard deviation) over runs of the same world."""

    runs: int
    regret_mean: float
    regret_std: float
    share_best_mean: float
    share_best_std: float
    pull_share: tuple[float, ...]
    final_weights: tuple[float, ...]
    final_weights_std: tuple[float, ...]


def check_rates(rates: Sequence[float]) -> tuple[float, ...]:
    """The rates as floats, or a ValidationError saying what is wrong."""
    if not MIN_ARMS <= len(rates) <= MAX_ARMS:
        raise ValidationError(
            f"a simulation needs {MIN_ARMS} to {MAX_ARMS} arm rates (got {len(rates)})",
            field="arms",
        )
    checked = tuple(float(r) for r in rates)
    for i, rate in enumerate(checked):
        if not 0.0 < rate < 1.0:
            raise ValidationError(
                f"arm rate {i + 1} must be strictly between 0 and 1 (got {rate!r})", field="arms"
            )
    return checked


def parse_rates(text: str) -> tuple[float, ...]:
    """Rates from a comma list such as ``0.032,0.042,0.038``."""
    parts = [p.strip() for p in text.split(",")]
    rates = []
    for part in parts:
        try:
            rates.append(float(part))
        except ValueError:
            raise ValidationError(
                f"--arms takes a comma-separated list of rates such as 0.032,0.042 "
                f"(could not read {part!r} as a number)",
                field="arms",
            ) from None
    return check_rates(rates)


def bandit_settings(
    arms: int, *, min_weight: float | None, min_exposures: int, prior: tuple[float, float]
) -> dict[str, object]:
    """``settings.bandit`` of the simulated experiment (checked as the service checks it);
    ``min_weight=None`` leaves the service's default floor for the number of arms."""
    raw: dict[str, object] = {
        "min_exposures": min_exposures,
        "prior_alpha": prior[0],
        "prior_beta": prior[1],
        "method": "exact",
    }
    if min_weight is not None:
        raw["min_weight"] = min_weight
    bandit_options({"bandit": raw}, arms=arms)
    return {"bandit": raw}


def simulate(
    rates: Sequence[float],
    *,
    horizon: int,
    update_every: int,
    seed: int,
    min_weight: float | None = None,
    min_exposures: int = 100,
    prior: tuple[float, float] = (1.0, 1.0),
    on_round: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run the service's allocation loop for ``horizon`` pulls (see the module docstring).

    ``on_round(r)`` is called after each round (for progress bars)."""
    from abpilot.bandits.thompson import round_weights
    from abpilot.service import EventInput, ExperimentService
    from abpilot.store.factory import open_store

    checked = check_rates(rates)
    if horizon < 1 or update_every < 1:
        raise ValidationError("horizon and update_every must be at least 1", field="horizon")
    k = len(checked)
    keys = [f"arm{i}" for i in range(k)]
    index = {key: i for i, key in enumerate(keys)}
    rate = np.asarray(checked)
    gap = rate.max() - rate
    # One batch per round: an exposure for every unit plus at most one conversion each.
    service = ExperimentService(
        open_store("memory://"), max_batch_events=max(10_000, 2 * update_every)
    )
    initial = round_weights([1.0 / k] * k)
    service.create_experiment(
        key=EXPERIMENT_KEY,
        type="bandit",
        variants=[{"key": key, "weight": w} for key, w in zip(keys, initial, strict=True)],
        metrics=[],
        salt=f"simulation-{seed}",
        settings=bandit_settings(
            k, min_weight=min_weight, min_exposures=min_exposures, prior=prior
        ),
    )
    service.start_experiment(EXPERIMENT_KEY)
    rng = np.random.default_rng(seed)
    rounds = math.ceil(horizon / update_every)
    pulls_at = np.zeros(rounds, dtype=np.int64)
    regret = np.zeros(rounds, dtype=np.float64)
    weights = np.zeros((rounds, k), dtype=np.float64)
    pulls = np.zeros(k, dtype=np.int64)
    conversions = np.zeros(k, dtype=np.int64)
    assign = service.get_variant_for_user
    exposure, conversion = EventKind.EXPOSURE, EventKind.CONVERSION
    done, total_regret = 0, 0.0
    for r in range(rounds):
        weights[r] = _weights_in_force(service)
        units = [f"u{i}" for i in range(done, min(done + update_every, horizon))]
        served = np.fromiter(
            (index[_served(assign(EXPERIMENT_KEY, u))] for u in units),
            dtype=np.int64,
            count=len(units),
        )
        converted = rng.random(len(units)) < rate[served]
        events = [EventInput(exposure, EXPERIMENT_KEY, unit_id=u) for u in units]
        events += [
            EventInput(conversion, EXPERIMENT_KEY, unit_id=units[i])
            for i in np.flatnonzero(converted).tolist()
        ]
        service.record_events(events)
        service.recalculate(EXPERIMENT_KEY)
        pulls += np.bincount(served, minlength=k)
        conversions += np.bincount(served[converted], minlength=k)
        done += len(units)
        total_regret += float(gap[served].sum())
        pulls_at[r], regret[r] = done, total_regret
        if on_round is not None:
            on_round(r)
    final = tuple(float(w) for w in _weights_in_force(service))
    return SimulationResult(
        rates=checked,
        horizon=horizon,
        update_every=update_every,
        seed=seed,
        pulls_at=_frozen(pulls_at),
        cumulative_regret=_frozen(regret),
        weights=_frozen(weights),
        final_weights=final,
        pulls=_frozen(pulls),
        conversions=_frozen(conversions),
    )


def _served(assignment: Assignment) -> str:
    if assignment.variant is None:  # traffic is 100%: every unit is in
        raise RuntimeError("the simulated experiment left a unit unassigned")
    return assignment.variant.key


def _weights_in_force(service: ExperimentService) -> tuple[float, ...]:
    _, weights = service.allocator.weights_in_force(service.get_experiment(EXPERIMENT_KEY))
    return weights


def summarise_runs(results: Sequence[SimulationResult]) -> SimulationSummary:
    """Mean and standard deviation (ddof 1; 0 for one run) of the runs' final figures."""
    ddof = 1 if len(results) > 1 else 0
    regret = np.array([r.final_regret for r in results])
    share = np.array([r.share_best for r in results])
    pulls = np.stack([r.pulls / r.horizon for r in results])
    final = np.array([r.final_weights for r in results])
    return SimulationSummary(
        runs=len(results),
        regret_mean=float(regret.mean()),
        regret_std=float(regret.std(ddof=ddof)),
        share_best_mean=float(share.mean()),
        share_best_std=float(share.std(ddof=ddof)),
        pull_share=tuple(pulls.mean(axis=0).tolist()),
        final_weights=tuple(final.mean(axis=0).tolist()),
        final_weights_std=tuple(final.std(axis=0, ddof=ddof).tolist()),
    )


def plot_runs(results: Sequence[SimulationResult], path: Path) -> None:
    """PNG with two panels: mean cumulative regret over pulls with a band of one standard
    deviation, and the mean weights in force per arm over pulls. Needs matplotlib (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    first = results[0]
    x = np.concatenate([[0], first.pulls_at])
    regrets = np.stack([np.concatenate([[0.0], r.cumulative_regret]) for r in results])
    mean, std = regrets.mean(axis=0), regrets.std(axis=0)
    weights = np.stack(
        [np.vstack([r.weights, np.asarray(r.final_weights)[None, :]]) for r in results]
    ).mean(axis=0)
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    regret_axes, weight_axes = figure.subplots(1, 2)
    regret_axes.plot(x, mean, color="C0", label=f"mean of {len(results)} runs")
    regret_axes.fill_between(x, mean - std, mean + std, color="C0", alpha=0.25, label="± 1 sd")
    regret_axes.set(
        title="Cumulative expected regret", xlabel="pulls", ylabel="regret (conversions lost)"
    )
    regret_axes.legend(loc="upper left")
    best = first.best_arm
    for i, rate in enumerate(first.rates):
        label = f"arm{i} ({rate:.4g}{', best' if i == best else ''})"
        weight_axes.step(x, weights[:, i], where="post", label=label)
    weight_axes.set(
        title=f"Weights in force (mean; update every {first.update_every} pulls)",
        xlabel="pulls",
        ylabel="weight",
        ylim=(0, 1),
    )
    weight_axes.legend(loc="center right", fontsize="small")
    figure.savefig(path, dpi=110)


# CLI ------------------------------------------------------------------------------------------


def simulate_command(
    arms: Annotated[
        str, typer.Option(help="True conversion rate of each arm, comma-separated (2 to 20).")
    ],
    horizon: Annotated[int, typer.Option(min=1, help="Pulls (units) per run.")] = 100_000,
    update_every: Annotated[
        int, typer.Option(min=1, help="Units between two recalculations.")
    ] = 1_000,
    seeds: Annotated[int, typer.Option(min=1, help="Runs, with seeds 0..N-1.")] = 20,
    min_weight: Annotated[
        float | None,
        typer.Option(help="Weight floor per arm (default: 1%, or 2% / arms for more than two)."),
    ] = None,
    min_exposures: Annotated[
        int, typer.Option(min=0, help="Burn-in: exposures every arm needs before weights move.")
    ] = 100,
    plot: Annotated[
        Path | None, typer.Option(help="Save regret and weights over time as a PNG here.")
    ] = None,
) -> None:
    """Run the service's bandit loop on a simulated Bernoulli world and report the regret."""
    console = Console()
    try:
        rates = parse_rates(arms)
        bandit_settings(
            len(rates), min_weight=min_weight, min_exposures=min_exposures, prior=(1, 1)
        )
    except AbpilotError as error:
        console.print(f"[red]{escape(error.message)}[/red]")
        raise typer.Exit(2) from None
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            console.print("[red]--plot needs matplotlib: install abpilot\\[plot][/red]")
            raise typer.Exit(2) from None
    rounds = math.ceil(horizon / update_every)
    results = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("simulating", total=seeds * rounds)
        for seed in range(seeds):
            progress.update(task, description=f"seed {seed + 1}/{seeds}")
            results.append(
                simulate(
                    rates,
                    horizon=horizon,
                    update_every=update_every,
                    seed=seed,
                    min_weight=min_weight,
                    min_exposures=min_exposures,
                    on_round=lambda _r: progress.advance(task),
                )
            )
    summary = summarise_runs(results)
    console.print(_summary_table(summary, results[0], seeds))
    console.print(_arms_table(summary, rates))
    if plot is not None:
        plot_runs(results, plot)
        console.print(f"plot saved to {plot}")


def _summary_table(summary: SimulationSummary, first: SimulationResult, seeds: int) -> Table:
    table = Table(
        title=f"{seeds} runs × {first.horizon:,} pulls, update every {first.update_every:,}"
    )
    for column in ("", "mean", "std"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row(
        "final cumulative regret", f"{summary.regret_mean:.1f}", f"{summary.regret_std:.1f}"
    )
    table.add_row(
        f"share of pulls on the best arm (arm{first.best_arm})",
        f"{summary.share_best_mean:.1%}",
        f"{summary.share_best_std:.1%}",
    )
    return table


def _arms_table(summary: SimulationSummary, rates: Sequence[float]) -> Table:
    table = Table(title="Arms (means over runs)")
    for column in ("arm", "rate", "share of pulls", "final weight", "std"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    best = int(np.argmax(rates))
    for i, rate in enumerate(rates):
        table.add_row(
            f"arm{i}" + (" (best)" if i == best else ""),
            f"{rate:.4g}",
            f"{summary.pull_share[i]:.1%}",
            f"{summary.final_weights[i]:.4f}",
            f"{summary.final_weights_std[i]:.4f}",
        )
    return table


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to the ``abpilot`` CLI."""
    app.command("simulate")(simulate_command)
