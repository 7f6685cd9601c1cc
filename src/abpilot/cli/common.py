"""What the CLI's command modules share: the ``--store-url`` option and running an action on the
opened services (built by ``abpilot.service.compose``), with domain errors printed in red (exit
code 2) and the store closed after."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from pydantic import AliasChoices
from rich.console import Console
from rich.markup import escape

from abpilot.domain.errors import AbpilotError

if TYPE_CHECKING:
    from abpilot.service import ExperimentService
    from abpilot.service.compose import Services
    from abpilot.settings import Settings

T = TypeVar("T")
console = Console()
StoreUrl = Annotated[
    str | None,
    typer.Option("--store-url", help="Store URL (default: from STORE / DATABASE_URL / REDIS_URL)."),
]
OpenServices = Callable[[str | None], "Services"]


def with_services(
    open_services: OpenServices, store_url: str | None, action: Callable[[Services], T]
) -> T:
    """``action(services)``; an ``AbpilotError`` becomes its message and exit code 2."""
    services = open_services(store_url)
    try:
        return action(services)
    except AbpilotError as error:
        fail(error.message + (f" ({error.field})" if error.field else ""))
    finally:
        services.experiments.close()


def with_service(
    open_services: OpenServices, store_url: str | None, action: Callable[[ExperimentService], T]
) -> T:
    """``with_services`` for an action on the experiment service alone."""
    return with_services(open_services, store_url, lambda services: action(services.experiments))


def cli_settings() -> Settings:
    """The settings from the environment; a bad one is its message and exit code 2, not a
    traceback (the message names the variable; values, which may be secrets, are not shown)."""
    import pydantic

    from abpilot.settings import Settings, get_settings

    try:
        return get_settings()
    except pydantic.ValidationError as error:
        problems = [
            f"{_variables(Settings, e['loc']) or 'settings'}: {e['msg']}" for e in error.errors()
        ]
        fail("invalid configuration: " + "; ".join(problems))


def _variables(settings: type[Settings], loc: tuple[int | str, ...]) -> str:
    """The environment variable(s) behind an error's location: ``PORT or API_PORT``."""
    name = ".".join(str(p) for p in loc)
    field = settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        return " or ".join(str(choice).upper() for choice in alias.choices)
    return name.upper()


def fail(message: str) -> NoReturn:
    """Print ``message`` in red and exit with code 2."""
    console.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(2)
