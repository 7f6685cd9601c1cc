"""``abpilot keys create --role ...``: a new API key, and the API_KEYS entry that accepts it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="API keys (roles: admin, write, read).", no_args_is_help=True)
    app.add_typer(keys, name="keys")

    @keys.command()
    def create(
        role: Annotated[str, typer.Option(help="admin, write or read.")],
    ) -> None:
        """Print a new key once, and the hashed API_KEYS entry to configure (the key itself
        need not be stored anywhere on the server)."""
        from abpilot.api.auth import Role, hash_key, new_key

        if role.upper() not in Role.__members__:
            console.print(f"[red]--role must be admin, write or read (got {role!r})[/red]")
            raise typer.Exit(2)
        key = new_key()
        print(f"key: {key}")
        print(f"API_KEYS entry: {role.lower()}:sha256:{hash_key(key)}")
