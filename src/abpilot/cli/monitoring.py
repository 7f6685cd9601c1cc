"""CLI verb of monitoring: ``abpilot monitor`` (a thin face on ``abpilot.service.monitoring``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from abpilot.cli.common import OpenServices, StoreUrl, console, with_services
from abpilot.monitoring.options import DEFAULT_DAYS

if TYPE_CHECKING:
    from abpilot.service.monitoring import Report

COLOURS = {"ok": "green", "warning": "yellow", "alert": "red"}  # by monitoring.checks.Status


def _table(report: Report) -> Table:
    counts = ", ".join(f"{n} {status}" for status, n in report.counts.items())
    table = Table(title=f"Monitoring ({counts or 'no running experiments'})")
    for column in ("experiment", "type", "status", "findings"):
        table.add_column(column)
    for health in report.experiments:
        colour = COLOURS[health.status]
        findings = [
            f"[{COLOURS[c.status]}]{c.name}[/]: {escape(c.message)}"
            for c in health.checks
            if c.status != "ok"
        ]
        table.add_row(
            escape(health.key),
            health.type,
            f"[{colour}]{health.status}[/]",
            "\n".join(findings) or "every check ok",
        )
    return table


def register(app: typer.Typer, open_services: OpenServices) -> None:
    """Add ``abpilot monitor`` to the ``abpilot`` CLI."""

    @app.command()
    def monitor(
        days: Annotated[
            int, typer.Option(help="Days that figures about a time range cover.")
        ] = DEFAULT_DAYS,
        output: Annotated[
            Path | None, typer.Option(help="Also write the report as JSON to this file.")
        ] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """Check every running experiment: sample ratio mismatch, arm dominance (bandits),
        minimum rate, staleness, conversions above exposures, guardrails. Exit code 1 when an
        experiment is in alert, else 0 (warnings are printed but do not fail)."""
        from abpilot.monitoring.checks import Status
        from abpilot.service.monitoring import report_to_dict

        report = with_services(
            open_services, store_url, lambda services: services.monitor.report(days=days)
        )
        console.print(_table(report))
        if output is not None:
            text = json.dumps(report_to_dict(report), indent=2, ensure_ascii=False)
            output.write_text(text + "\n", encoding="utf-8")
            console.print(f"report written to {escape(str(output))}")
        raise typer.Exit(1 if report.status is Status.ALERT else 0)
