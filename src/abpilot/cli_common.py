"""What the CLI's command modules share: the ``--store-url`` option and running an action on an
opened service, with domain errors printed in red (exit code 2) and the store closed after."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from abpilot.domain.errors import AbpilotError

if TYPE_CHECKING:
    from abpilot.service import ExperimentService
    from abpilot.settings import Settings

T = TypeVar("T")
console = Console()
StoreUrl = Annotated[
    str | None,
    typer.Option("--store-url", help="Store URL (default: from STORE / DATABASE_URL / REDIS_URL)."),
]
OpenService = Callable[[str | None], "ExperimentService"]


def with_service(
    open_service: OpenService, store_url: str | None, action: Callable[[ExperimentService], T]
) -> T:
    """``action(service)``; an ``AbpilotError`` becomes its message and exit code 2."""
    service = open_service(store_url)
    try:
        return action(service)
    except AbpilotError as error:
        fail(error.message + (f" ({error.field})" if error.field else ""))
    finally:
        service.close()


def cli_settings() -> Settings:
    """The settings from the environment; a bad one is its message and exit code 2, not a
    traceback (the message names the variable; values, which may be secrets, are not shown)."""
    import pydantic

    from abpilot.settings import get_settings

    try:
        return get_settings()
    except pydantic.ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in error.errors()
        ]
        fail("invalid configuration: " + "; ".join(problems))


def fail(message: str) -> NoReturn:
    """Print ``message`` in red and exit with code 2."""
    console.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(2)
