"""``abpilot demo``: three experiments on simulated users, in a throwaway SQLite file.

1. An A/B test of two button colours (green converts a little better) over 14 simulated days, a
   snapshot of its counters at the end of each, so the dashboard draws its results over time.
2. A bandit choosing among three prices from daily impressions and clicks, over 14 simulated days:
   the weights move toward the best price day by day (each change dated on its simulated day).
3. A contextual bandit choosing among recommendation algorithms per time of day and user type,
   with a 20% holdout on a random policy, then the bandit against the holdout.

Everything goes through the same service the API uses, on a clock that walks through the
simulated days; ``--serve`` then starts the API and the dashboard on the same file.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import abpilot
from abpilot.domain.inputs import EventKind

if TYPE_CHECKING:  # the service is imported when the demo runs, not with the CLI
    from abpilot.service.allocation import DailyInput
    from abpilot.service.core import ExperimentService

DAYS = 14

console = Console()

BUTTON_RATES = {"blue": 0.100, "green": 0.118}
PRICE_RATES = {"price_9": 0.040, "price_12": 0.052, "price_15": 0.031}
ALGORITHMS = ("svd", "embeddings", "graph", "item_cf")
TIMES = ("morning", "evening")
USERS = ("new", "returning")


def algorithm_rate(time_of_day: str, user_type: str, algorithm: str) -> float:
    """The simulated world: the best algorithm depends on the context."""
    best = {
        ("morning", "new"): "graph",
        ("morning", "returning"): "svd",
        ("evening", "new"): "embeddings",
        ("evening", "returning"): "item_cf",
    }[(time_of_day, user_type)]
    return 0.22 if algorithm == best else 0.08


def as_posted(row: DailyInput) -> dict[str, object]:
    """A daily row as the intake API receives it (kept as the raw payload)."""
    return {"variant_name": row.variant, "impressions": row.impressions, "clicks": row.clicks}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


class SimulatedClock:
    """The service's clock during the demo: it starts DAYS days ago and the demo moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run_ab_test(
    service: ExperimentService, rng: np.random.Generator, users: int, clock: SimulatedClock
) -> None:
    from abpilot.service.events import EventInput
    from abpilot.service.snapshots import Snapshots

    service.create_experiment(
        key="button-colour",
        name="Checkout button colour",
        variants=[
            {"key": "blue", "weight": 0.5, "config": {"colour": "#1f6feb"}},
            {"key": "green", "weight": 0.5, "config": {"colour": "#2da44e"}},
        ],
        metrics=[{"key": "purchase"}],
        settings={"analysis": {"sample_size_per_variant": users // 2 - users // 20}},
    )
    service.start_experiment("button-colour")
    snapshots = Snapshots(service)
    snapshots.take("button-colour")
    started = clock.now
    per_day = -(-users // DAYS)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("A/B test: simulated shoppers", total=users)
        for start in range(0, users, per_day):
            day = start // per_day
            clock.now = started + timedelta(days=day, hours=12)
            events = []
            for i in range(start, min(start + per_day, users)):
                unit = f"shopper-{i}"
                assignment = service.get_variant_for_user("button-colour", unit)
                assert assignment.variant is not None
                events.append(EventInput(EventKind.EXPOSURE, "button-colour", unit))
                if rng.random() < BUTTON_RATES[assignment.variant.key]:
                    events.append(EventInput(EventKind.CONVERSION, "button-colour", unit))
            service.record_events(events)
            clock.now = started + timedelta(days=day + 1)
            snapshots.take("button-colour")  # the day's cumulative counters
            progress.advance(task, min(per_day, users - start))
    analysis = service.analyze_experiment("button-colour")
    table = Table(title="1. A/B test: checkout button colour")
    for column in ("variant", "users", "purchases", "rate (95% CI)", "vs blue", "p-value"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for arm in analysis.variants:
        ci = f"{pct(arm.conversion_rate)} ({pct(arm.ci[0])}-{pct(arm.ci[1])})" if arm.ci else "-"
        table.add_row(
            arm.key,
            str(arm.units),
            str(arm.conversions),
            ci,
            pct(arm.lift) if arm.lift is not None else "control",
            f"{arm.p_value:.3g}" if arm.p_value is not None else "",
        )
    console.print(table)
    console.print(f"Verdict: {analysis.message}\n")


def run_bandit(
    service: ExperimentService, rng: np.random.Generator, days: int, clock: SimulatedClock
) -> None:
    from abpilot.service.allocation import DailyInput

    service.create_experiment(
        key="pricing",
        name="Subscription price",
        type="bandit",
        variants=[
            {"key": key, "weight": round(1 / 3, 6) if key != "price_9" else 1 - 2 * round(1 / 3, 6)}
            for key in PRICE_RATES
        ],
        metrics=[{"key": "subscribe"}],
        settings={"bandit": {"min_exposures": 500}},
    )
    started = clock.now
    service.start_experiment("pricing")
    table = Table(title="2. Bandit: subscription price, weights after each simulated day")
    table.add_column("day")
    for key in PRICE_RATES:
        table.add_column(f"{key} (true {PRICE_RATES[key]:.1%})", justify="right")
    experiment = service.get_experiment("pricing")
    experiment_id = experiment.id
    weights = {v.key: v.weight for v in experiment.variants}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Bandit: simulated days", total=days)
        for d in range(days):
            day = (started + timedelta(days=d)).date()
            clock.now = started + timedelta(days=d + 1)  # posted the next morning
            visitors = 1_500
            rows = []
            for key, rate in PRICE_RATES.items():
                shown = int(rng.binomial(visitors, weights[key]))
                rows.append(DailyInput(key, shown, int(rng.binomial(shown, rate))))
            service.record_daily_metrics(
                "pricing",
                day=day,
                metrics=rows,
                payload={
                    "date": day.isoformat(),
                    "metrics": [as_posted(r) for r in rows],
                },
            )
            service.recalculate("pricing")
            latest = service.store.latest_allocation(experiment_id)
            if latest is not None:
                weights = dict(latest.weights)
            table.add_row(day.isoformat(), *(pct(weights[k]) for k in PRICE_RATES))
            progress.advance(task)
    console.print(table)
    console.print("The weights moved toward price_12, the price with the best conversion rate.\n")


def run_contextual(service: ExperimentService, rng: np.random.Generator, decisions: int) -> None:
    service.create_experiment(
        key="recommender",
        name="Recommendation algorithm",
        type="contextual_bandit",
        variants=[{"key": a, "weight": 0.25, "config": {"model": a}} for a in ALGORITHMS],
        settings={
            "contextual": {
                "attributes": {"time_of_day": list(TIMES), "user_type": list(USERS)},
                "holdout": 0.2,
                "control": {"weights": dict.fromkeys(ALGORITHMS, 0.25)},
            }
        },
    )
    service.start_experiment("recommender")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Contextual bandit: simulated requests", total=decisions)
        for i in range(decisions):
            request = {
                "time_of_day": TIMES[int(rng.integers(2))],
                "user_type": USERS[int(rng.integers(2))],
            }
            decision = service.contextual.decide(
                "recommender", unit_id=f"reader-{i % 2_000}", context=request
            )
            rate = algorithm_rate(request["time_of_day"], request["user_type"], decision.arm.key)
            if rng.random() < rate:
                service.contextual.feedback(
                    "recommender", decision_id=decision.decision_id, event="click"
                )
            progress.advance(task)
    stats = service.contextual.stats("recommender")
    table = Table(title="3. Contextual bandit: the best algorithm per context")
    for column in ("context", "decisions", "click rate", "learned best", "true best"):
        table.add_column(column, justify="left" if column == "context" else "right")
    for context in stats.contexts:
        parts = dict(part.split("=") for part in context.context_key.split("|"))
        truth = max(
            ALGORITHMS, key=lambda a: algorithm_rate(parts["time_of_day"], parts["user_type"], a)
        )
        table.add_row(
            context.context_key,
            str(context.performance.decisions),
            pct(context.performance.success_rate),
            context.best_arm,
            truth,
        )
    console.print(table)
    p = stats.policies
    line = f"Bandit click rate {pct(p.bandit.success_rate)}"
    if p.control is not None:
        line += f" against {pct(p.control.success_rate)} for the random holdout"
        if p.comparison is not None and p.comparison.p_value is not None:
            line += f" (p = {p.comparison.p_value:.2g})"
    console.print(line + ".\n")


def demo_command(
    serve: Annotated[bool, typer.Option(help="Then serve the API and the dashboard.")] = False,
    database: Annotated[
        Path | None, typer.Option(help="SQLite file to use (default: a throwaway one).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
    users: Annotated[
        int, typer.Option(min=100, help="Simulated shoppers in the A/B test.")
    ] = 8_000,
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 7,
) -> None:
    """Three experiments on simulated users: an A/B test, a pricing bandit, a contextual bandit."""
    path = database or Path(tempfile.mkdtemp(prefix="abpilot-demo-")) / "demo.db"
    if path.exists():
        console.print(f"[red]{path} already exists; the demo needs a new file[/red]")
        raise typer.Exit(2)
    url = f"sqlite:///{path}"
    rng = np.random.default_rng(seed)
    console.print(f"[bold]abpilot demo[/bold] on {path}\n")
    from abpilot.service.core import ExperimentService

    with abpilot.open(url) as opened:
        start = datetime.now(UTC).replace(hour=0, minute=5, second=0, microsecond=0)
        clock = SimulatedClock(start - timedelta(days=DAYS))
        service = ExperimentService(opened.store, clock=clock)
        run_ab_test(service, rng, users, clock)
        clock.now = start - timedelta(days=DAYS)
        run_bandit(service, rng, days=DAYS, clock=clock)
        clock.now = datetime.now(UTC)
        run_contextual(service, rng, decisions=4_000)
    if serve:
        import uvicorn

        from abpilot.api import create_app
        from abpilot.settings import Settings

        console.print(f"Dashboard: http://127.0.0.1:{port}/dashboard  (API docs at /docs)")
        settings = Settings(store="sql", database_url=url, port=port)
        uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    else:
        console.print("Run [bold]abpilot demo --serve[/bold] to explore these in the dashboard.")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
