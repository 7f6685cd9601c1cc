"""CLI verbs of contextual bandits: ``abpilot decide``, ``abpilot feedback``, ``abpilot
bandit-stats`` (thin faces on ``service.contextual``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from abpilot.cli.common import OpenServices, StoreUrl, console, with_service

if TYPE_CHECKING:
    from abpilot.service import ExperimentService

Experiment = Annotated[str, typer.Argument(help="Experiment id or key.")]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def register(app: typer.Typer, open_services: OpenServices) -> None:
    """Add the contextual-bandit commands to the ``abpilot`` CLI."""

    def run(store_url: str | None, action: Callable[[ExperimentService], None]) -> None:
        with_service(open_services, store_url, action)

    @app.command()
    def decide(
        experiment: Experiment,
        context: Annotated[
            list[str] | None, typer.Option("--context", "-c", help="attribute=value, repeatable.")
        ] = None,
        unit_id: Annotated[str | None, typer.Option(help="The unit (holdout is by unit).")] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """Pick an arm for a context and log the decision; prints it as JSON."""
        pairs = [c.split("=", 1) for c in context or []]
        if any(len(p) != 2 for p in pairs):
            console.print("[red]--context takes attribute=value[/red]")
            raise typer.Exit(2)

        def action(service: ExperimentService) -> None:
            found = service.contextual.decide(experiment, unit_id=unit_id, context=dict(pairs))
            console.print_json(
                json.dumps(
                    {
                        "decision_id": found.decision_id,
                        "arm": found.arm.key,
                        "config": dict(found.arm.config),
                        "propensity": found.propensity,
                        "policy": found.policy,
                        "context_key": found.context_key,
                    }
                )
            )

        run(store_url, action)

    @app.command()
    def feedback(
        experiment: Experiment,
        decision_id: Annotated[
            str | None, typer.Argument(help="The decision's id (leave out with --unit-id).")
        ] = None,
        event: Annotated[
            str | None, typer.Argument(help="click, rating, thumbs_up (or thumbs-up)...")
        ] = None,
        unit_id: Annotated[
            str | None,
            typer.Option(help="Instead of a decision id: the unit's latest decision."),
        ] = None,
        value: Annotated[float | None, typer.Option(help="The rating, for rating events.")] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """Apply feedback to a decision (once per event type): `abpilot feedback EXPERIMENT
        DECISION_ID EVENT`, or `abpilot feedback EXPERIMENT --unit-id UNIT EVENT`."""
        if unit_id is not None and event is None:
            decision_id, event = None, decision_id  # the one argument given is the event
        if event is None:
            console.print("[red]give DECISION_ID EVENT, or --unit-id UNIT EVENT[/red]")
            raise typer.Exit(2)

        def action(service: ExperimentService) -> None:
            assert event is not None
            result = service.contextual.feedback(
                experiment, decision_id=decision_id, unit_id=unit_id, event=event, value=value
            )
            state = "applied" if result.applied else "already applied"
            console.print(f"{result.outcome.value} ({state}) on decision {result.decision_id}")

        run(store_url, action)

    @app.command("bandit-stats")
    def bandit_stats(
        experiment: Experiment,
        days: Annotated[float | None, typer.Option(help="Only the last N days.")] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """Success rates per arm and context, and the bandit against the control holdout."""

        def action(service: ExperimentService) -> None:
            stats = service.contextual.stats(experiment, days=days)
            table = Table(title=f"Contextual bandit: {stats.overall.decisions} decisions")
            for column in ("context", "arm", "decisions", "selected", "success rate", "best"):
                table.add_column(column)
            for arm in stats.arms:
                rate = arm.performance
                table.add_row(
                    "(all)",
                    arm.arm,
                    str(rate.decisions),
                    _pct(arm.selection_rate),
                    _pct(rate.success_rate),
                    "",
                )
            for context in stats.contexts:
                for arm in context.arms:
                    rate = arm.performance
                    table.add_row(
                        context.context_key,
                        arm.arm,
                        str(rate.decisions),
                        _pct(arm.selection_rate),
                        _pct(rate.success_rate),
                        "best" if arm.arm == context.best_arm else "",
                    )
            console.print(table)
            p = stats.policies
            line = f"bandit {_pct(p.bandit.success_rate)} ({p.bandit.decisions} decisions)"
            if p.control is not None and p.comparison is not None:
                line += f" vs control {_pct(p.control.success_rate)} ({p.control.decisions})"
                if p.comparison.p_value is not None:
                    line += (
                        f"; difference {_pct(p.comparison.difference)}, "
                        f"p = {p.comparison.p_value:.3g}"
                    )
            console.print(line)

        run(store_url, action)
