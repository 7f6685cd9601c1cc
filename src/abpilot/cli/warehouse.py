"""CLI verbs of warehouse-native analysis: ``abpilot warehouse sources|refresh|check`` (a thin
face on ``abpilot.service.warehouse``; the warehouse is WAREHOUSE_URL)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from abpilot.cli.common import OpenServices, StoreUrl, console, with_services

if TYPE_CHECKING:
    from abpilot.service.compose import Services


def register(app: typer.Typer, open_services: OpenServices) -> None:
    """Add ``abpilot warehouse ...`` to the ``abpilot`` CLI."""
    group = typer.Typer(
        help="Warehouse-native analysis: sources, checks, refreshes (WAREHOUSE_URL).",
        no_args_is_help=True,
    )
    app.add_typer(group, name="warehouse")

    @group.command()
    def sources(
        file: Annotated[
            Path | None,
            typer.Option(help="A YAML file of sources ('sources:', a list) to check and store."),
        ] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """List the sources (after storing those of --file, each checked in the warehouse)."""

        def action(services: Services) -> None:
            warehouse = services.experiments.warehouse
            if file is not None:
                stored = warehouse.load_file(file)
                console.print(f"stored {len(stored)} source(s) from {escape(str(file))}")
            table = Table(title="Warehouse sources")
            for column in ("name", "kind", "dimensions", "sql"):
                table.add_column(column)
            for source in warehouse.list_sources():
                sql = " ".join(source.sql.split())
                table.add_row(
                    escape(source.name),
                    source.kind.value,
                    ", ".join(source.dimensions) or "-",
                    escape(sql if len(sql) <= 80 else sql[:77] + "..."),
                )
            console.print(table)

        with_services(open_services, store_url, action)

    @group.command()
    def refresh(
        experiment: Annotated[str, typer.Argument(help="Experiment id or key.")],
        store_url: StoreUrl = None,
    ) -> None:
        """Run the experiment's query plan in the warehouse and store its aggregates."""

        def action(services: Services) -> None:
            done = services.experiments.warehouse.refresh(experiment)
            counts = done.row_counts
            console.print(
                f"refreshed {escape(experiment)} in {done.seconds:.2f} s ({done.dialect}): "
                f"{counts['units']} units, {counts['exposures']} exposures, fact rows "
                + ", ".join(f"{k} {v}" for k, v in counts["fact_rows"].items())
            )

        with_services(open_services, store_url, action)

    @group.command()
    def check(
        source: Annotated[str | None, typer.Argument(help="One source (default: all).")] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """Check the sources in the warehouse: columns present, types usable. Exit code 1
        when one has a problem."""

        def action(services: Services) -> bool:
            found = services.experiments.warehouse.check(source)
            for item in found:
                if item.problem is None:
                    console.print(
                        f"[green]ok[/green] {escape(item.source.name)}: "
                        + escape(", ".join(item.columns))
                    )
                else:
                    console.print(
                        f"[red]problem[/red] {escape(item.source.name)}: " + escape(item.problem)
                    )
            return all(item.problem is None for item in found)

        if not with_services(open_services, store_url, action):
            raise typer.Exit(1)
