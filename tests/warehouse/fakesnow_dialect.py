"""A minimal SQLAlchemy dialect named ``snowflake`` on fakesnow's Snowflake connector, for the
tests: ``snowflake+fakesnow://``. snowflake-sqlalchemy cannot be installed beside fakesnow here
(its 2.1 release, the first for SQLAlchemy 2.1, needs snowflake-connector-python 5, which
fakesnow 0.12 cannot import), so the plan is compiled by SQLAlchemy's generic compiler under the
dialect name ``snowflake``: the plan's Snowflake overrides (``DATEADD``) apply, everything else
it writes is ANSI SQL that Snowflake (and fakesnow's translation of it) reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.engine import URL
from sqlalchemy.engine.default import DefaultDialect


class FakesnowDialect(DefaultDialect):
    name = "snowflake"
    driver = "fakesnow"
    paramstyle = "pyformat"
    default_paramstyle = "pyformat"
    supports_statement_cache = False
    supports_native_boolean = True
    supports_native_decimal = True

    @classmethod
    def import_dbapi(cls) -> Any:
        import snowflake.connector

        return snowflake.connector

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        database, _, schema = (url.database or "").partition("/")
        return [], {
            "user": url.username or "user",
            "password": url.password or "password",
            "account": url.host or "account",
            "database": database,
            "schema": schema or "public",
        }

    def _get_default_schema_name(self, connection: Any) -> str:
        return "public"

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        return (0,)

    def get_isolation_level(self, dbapi_connection: Any) -> str:
        return "AUTOCOMMIT"

    def do_ping(self, dbapi_connection: Any) -> bool:
        return True


registry.register("snowflake.fakesnow", "tests.warehouse.fakesnow_dialect", "FakesnowDialect")
