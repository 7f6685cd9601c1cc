"""The ``abpilot`` command: serve the API, manage the schema, analyse, recalculate, simulate."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from abpilot.cli.common import StoreUrl, cli_settings
from abpilot.cli.contextual import register as register_contextual
from abpilot.cli.keys import register as register_keys
from abpilot.cli.monitoring import register as register_monitoring
from abpilot.cli.streams import register as register_streams
from abpilot.cli.transfer import register as register_transfer
from abpilot.cli.warehouse import register as register_warehouse
from abpilot.demo import register as register_demo
from abpilot.domain.errors import AbpilotError
from abpilot.simulation import register as register_simulate

if TYPE_CHECKING:
    from abpilot.service.compose import Services
    from abpilot.stats.analysis import Analysis
    from abpilot.stats.segments import SegmentBreakdown

app = typer.Typer(
    help="abpilot: experiments on live traffic, steered toward what works.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema (SQL stores).", no_args_is_help=True)
app.add_typer(db_app, name="db")
register_simulate(app)
console = Console()

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="SQL database URL (default: DATABASE_URL or SQLite)."),
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT, 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: 1).")] = None,
    database_url: DatabaseUrl = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Run the REST API (Swagger UI at /docs)."""
    import uvicorn

    # Workers are separate processes that build their own app from the environment.
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    settings = cli_settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    os.environ["HOST"], os.environ["PORT"] = host, str(port)  # what the workers' apps report
    if settings.store == "sql":
        # Migrate once here, so that several workers do not all start by migrating.
        from abpilot.store.sql import SqlStore

        SqlStore.from_url(settings.database_url).close()
    console.print(
        f"abpilot on http://{host}:{port} (store: {settings.store}, workers: {workers}); "
        f"API docs at http://{host}:{port}/docs\n{settings.store_choice()}",
        soft_wrap=True,
    )
    # With STREAM_CONSUMERS every worker also runs the stream consumers (abpilot.streams).
    factory = "abpilot.streams.app:create_app" if settings.stream_consumers else None
    uvicorn.run(
        factory or "abpilot.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        log_level="debug" if settings.debug else "info",
    )


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseUrl = None,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Bring the SQL schema to the latest revision (Alembic)."""
    from abpilot.store.sql import engine as sql_engine

    if database_url is None:
        settings = cli_settings()
        if settings.store != "sql":  # e.g. FeatureVisor Pilot's REDIS_HOST chose Redis
            console.print(
                f"nothing to upgrade: {settings.store_choice()} has no SQL schema", soft_wrap=True
            )
            return
    url = database_url or cli_settings().database_url
    engine = sql_engine.create_engine(url)
    try:
        sql_engine.upgrade(engine, revision)
        console.print(f"schema at revision {sql_engine.current_revision(engine)} ({_safe(url)})")
    finally:
        engine.dispose()


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the schema revision of the database."""
    from abpilot.store.sql import engine as sql_engine

    url = database_url or cli_settings().database_url
    engine = sql_engine.create_engine(url)
    try:
        console.print(sql_engine.current_revision(engine) or "empty (run: abpilot db upgrade)")
    finally:
        engine.dispose()


def _safe(url: str) -> str:
    """The URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _services(store_url: str | None) -> Services:
    """The services on the configured store, or on the one at ``store_url`` (REDIS_PREFIX
    applies to a Redis URL given on the command line too)."""
    from abpilot.service import compose

    settings = cli_settings()
    return compose.build(compose.open_store(settings, store_url), settings)


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _print_adjustment(result: Analysis) -> None:
    """Each variant's CUPED adjustment: theta, the variance reduction and the unadjusted lift
    and p-value beside the adjusted ones in the table."""
    for v in result.variants:
        if v.theta is None:
            continue
        unadjusted = "-" if v.unadjusted_lift is None else f"{v.unadjusted_lift:+.1%}"
        console.print(
            f"{v.key}: adjusted by {result.covariate} (theta {_fmt(v.theta)}, variance "
            f"reduction {_fmt(v.variance_reduction, '.1%')}); unadjusted lift {unadjusted}, "
            f"p {_fmt(v.unadjusted_p_value)}"
        )


def _print_segments(found: SegmentBreakdown) -> None:
    """Each segment's variants (lift, p-value corrected across segments), and the
    heterogeneity of each metric's effects."""
    for segment in found.segments:
        for v, p in zip(segment.analysis.variants, segment.p_values_across_segments, strict=True):
            if not v.is_control:
                lift = "-" if v.lift is None else f"{v.lift:+.1%}"
                console.print(
                    f"{found.dimension}={segment.value}: {v.key} {v.units} units, lift {lift}, "
                    f"p across segments {_fmt(p)}"
                )
    for h in found.heterogeneity:
        flag = " (heterogeneous)" if h.heterogeneous else ""
        console.print(f"{h.metric}/{h.variant}: Cochran's Q {_fmt(h.q)}, p {_fmt(h.p_value)}{flag}")


@app.command()
def analyze(
    experiment: Annotated[str, typer.Argument(help="Experiment id or key.")],
    metric: Annotated[str | None, typer.Option(help="Metric (default: primary).")] = None,
    correction: Annotated[str | None, typer.Option(help="holm, bh or none.")] = None,
    sequential: Annotated[
        bool | None, typer.Option("--sequential/--fixed-horizon", help="Always-valid test.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    dimension: Annotated[
        str | None, typer.Option(help="A declared dimension: the analysis per segment too.")
    ] = None,
    store_url: StoreUrl = None,
) -> None:
    """Analyse an experiment: each variant against the control, and the verdict."""
    from abpilot.api.schemas.analysis import AnalysisRead, SegmentBreakdownRead

    service = _services(store_url).experiments
    segments = None
    try:
        result = service.analyze_experiment(
            experiment, metric=metric, correction=correction, sequential=sequential
        )
        experiment_id = service.get_experiment(experiment).id
        if dimension is not None:
            segments = service.analyze_segments(
                experiment,
                dimension=dimension,
                metric=metric,
                correction=correction,
                sequential=sequential,
            )
    except AbpilotError as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from None
    finally:
        service.close()
    if as_json:
        read = AnalysisRead.of(experiment_id, result)
        if segments is not None:
            read.segments = SegmentBreakdownRead.of(experiment_id, segments)
        typer.echo(read.model_dump_json(indent=2))
        return
    table = Table(title=f"{experiment}: {result.metric} ({result.method}, {result.correction})")
    for column in (
        "variant",
        "units",
        "conv.",
        "rate [CI]",
        "lift [CI]",
        "p adj.",
        "P(beat)",
        "P(best)",
        "loss",
    ):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for v in result.variants:
        ci = f" [{_fmt(v.ci[0], '.2%')}, {_fmt(v.ci[1], '.2%')}]" if v.ci else ""
        lift = "" if v.lift is None else f"{v.lift:+.1%}"
        if v.lift_ci:
            lift += f" [{v.lift_ci[0]:+.1%}, {v.lift_ci[1]:+.1%}]"
        table.add_row(
            v.key + (" (control)" if v.is_control else ""),
            str(v.units),
            str(v.conversions),
            _fmt(v.conversion_rate, ".2%") + ci,
            lift or "-",
            _fmt(v.p_value_adjusted),
            _fmt(v.chance_to_beat_control, ".1%"),
            _fmt(v.probability_best, ".1%"),
            _fmt(v.expected_loss),
        )
    console.print(table)
    if result.covariate:
        _print_adjustment(result)
    if segments is not None:
        _print_segments(segments)
    srm = "flagged" if result.srm.flagged else "ok"
    console.print(f"SRM: {srm} (p = {_fmt(result.srm.p_value)})")
    required = result.sample_size.required_per_variant
    console.print(
        f"Sample size: {required or '-'} per variant, progress "
        f"{_fmt(result.sample_size.progress, '.0%')}"
    )
    colour = "green" if result.winner else "yellow"
    console.print(f"[{colour}]{result.reason}: {result.message}[/{colour}]")
    for check in result.guardrails:
        verdict = (
            "harm beyond the margin ruled out"
            if check.harm_ruled_out
            else ("harm detected" if check.harm_detected else "harm not ruled out")
        )
        console.print(
            f"Guardrail {check.metric} ({check.variant}): {verdict} "
            f"(estimate {_fmt(check.estimate)}, bound {_fmt(check.bound)}, margin "
            f"{check.margin:g}{' relative' if check.margin_relative else ''}, "
            f"p = {_fmt(check.p_value)})"
        )
    if result.decision is not None:
        decision = result.decision
        target = f" {decision.variant}" if decision.variant else ""
        console.print(f"Decision: [bold]{decision.action}{target}[/bold]")
        for reason in decision.reasons:
            console.print(f"  {reason.code}: {reason.message}")


@app.command("sample-size")
def sample_size(
    mde: Annotated[float, typer.Option(help="Minimum detectable effect.")],
    baseline_rate: Annotated[float | None, typer.Option(help="Baseline conversion rate.")] = None,
    baseline_mean: Annotated[
        float | None, typer.Option(help="Baseline mean (value metric).")
    ] = None,
    standard_deviation: Annotated[
        float | None, typer.Option("--sd", help="Standard deviation (value metric).")
    ] = None,
    relative: Annotated[bool, typer.Option(help="The MDE is relative to the baseline.")] = False,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Power.")] = 0.8,
    variants: Annotated[int, typer.Option(help="Number of variants, control included.")] = 2,
) -> None:
    """Units per variant needed to detect the MDE."""
    from abpilot.stats.power import plan_sample_size

    try:
        plan = plan_sample_size(
            mde=mde,
            baseline_rate=baseline_rate,
            baseline_mean=baseline_mean,
            standard_deviation=standard_deviation,
            relative=relative,
            alpha=alpha,
            power=power,
            variants=variants,
        )
    except AbpilotError as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from None
    console.print(
        f"{plan.required_per_variant} units per variant, {plan.total} in all "
        f"({plan.baseline:.4g} -> {plan.target:.4g}, alpha {plan.alpha} "
        f"({plan.comparison_alpha:.4g} per comparison), power {plan.power})"
    )


@app.command()
def recalculate(
    experiment: Annotated[
        str | None, typer.Argument(help="Experiment id or key (default: every running bandit).")
    ] = None,
    store_url: StoreUrl = None,
) -> None:
    """Recalculate bandit weights now, as the scheduler does every UPDATE_INTERVAL_MINUTES."""
    service = _services(store_url).experiments
    try:
        outcomes = [service.recalculate(experiment)] if experiment else service.recalculate_all()
    except AbpilotError as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from None
    finally:
        service.close()
    table = Table(title="Recalculation")
    for column in ("experiment", "status", "period", "error"):
        table.add_column(column)
    for outcome in outcomes:
        table.add_row(outcome.key, outcome.status, str(outcome.period or "-"), outcome.error or "")
    console.print(table)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


register_contextual(app, _services)
register_monitoring(app, _services)
register_transfer(app, _services)
register_warehouse(app, _services)
register_streams(app, _services)
register_keys(app)
register_demo(app)
