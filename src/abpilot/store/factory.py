"""Open a store from a URL: ``sqlite:///path``, ``postgresql://...``, ``redis://...``, ``memory://``."""

from __future__ import annotations

from typing import Any

from abpilot.domain.errors import ValidationError
from abpilot.store.base import Store


def open_store(url: str, **options: Any) -> Store:
    """Return the store for ``url``. SQL stores are migrated to the latest schema on open
    unless ``migrate=False`` is passed."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from abpilot.store.memory import MemoryStore

        return MemoryStore()
    if scheme in {"redis", "rediss", "unix"}:
        from abpilot.store.redis import RedisStore

        return RedisStore.from_url(url, **options)
    if scheme.startswith(("sqlite", "postgresql", "postgres")):
        from abpilot.store.sql import SqlStore

        return SqlStore.from_url(url, **options)
    raise ValidationError(
        f"unsupported store URL scheme '{scheme}' (use sqlite:///, postgresql://, redis:// "
        "or memory://)",
        field="url",
    )
