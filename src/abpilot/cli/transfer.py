"""``abpilot export`` and ``abpilot import``: experiments with everything recorded for them, to and
from the versioned JSON document (thin faces on ``service.transfer``)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from abpilot.cli.common import OpenServices, StoreUrl, console, fail, with_service

if TYPE_CHECKING:
    from abpilot.service import ExperimentService


def register(app: typer.Typer, open_services: OpenServices) -> None:
    """Add ``export`` and ``import`` to the ``abpilot`` CLI."""

    @app.command("export")
    def export_(
        output: Annotated[
            Path, typer.Option("--output", "-o", help="File to write ('-' for standard output).")
        ],
        experiment: Annotated[
            list[str] | None,
            typer.Option("--experiment", "-e", help="Id or key; repeatable (default: all)."),
        ] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """Write experiments (all, or those named) with their counters, assignments, weight
        history, daily metrics, contextual decisions and the shared documents to a JSON file
        that `abpilot import` reads into any store. Export while no traffic arrives for an
        exact snapshot."""
        document = with_service(
            open_services, store_url, lambda s: s.transfer.export(experiment or None)
        )
        text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
        if str(output) == "-":
            sys.stdout.write(text)
            return
        _write_atomically(output, text)
        console.print(
            f"exported {len(document['experiments'])} experiment(s) and "
            f"{len(document['documents'])} document(s) to {escape(str(output))}"
        )

    @app.command("import")
    def import_(
        source: Annotated[Path, typer.Argument(help="An `abpilot export` file ('-': stdin).")],
        skip_existing: Annotated[
            bool,
            typer.Option(help="Leave experiments whose id or key exists; import the others."),
        ] = False,
        store_url: StoreUrl = None,
    ) -> None:
        """Read an export file into the store. The whole file is checked first; an experiment
        whose id or key exists stops the import before anything is written (unless
        --skip-existing), and each experiment is restored in one atomic step."""
        document = _read(source)

        def action(service: ExperimentService) -> Any:
            return service.transfer.import_(document, skip_existing=skip_existing)

        result = with_service(open_services, store_url, action)
        console.print(
            f"imported {len(result.imported)} experiment(s)"
            + (f", skipped {len(result.skipped)} already present" if result.skipped else "")
            + f", {result.documents} document(s)"
        )
        for key in result.skipped:
            console.print(f"  skipped: {escape(key)}")


def _read(source: Path) -> Any:
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as error:
        fail(f"cannot read {source}: {error.strerror or error}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        fail(f"{source} is not a JSON file: {error}")


def _write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename: a failed export leaves no half-written file."""
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror or error}")
