"""Fixtures shared by the store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from abpilot.store.base import Store
from abpilot.store.factory import open_store
from tests.conftest import BACKENDS, backend_url


@pytest.fixture(params=BACKENDS)
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two separate, fresh stores of the same backend (export from one, import into the other)."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with (
        backend_url(request.param, tmp_path / "one") as (url, options),
        backend_url(request.param, tmp_path / "two") as (other_url, other_options),
    ):
        if request.param == "redis":  # one server, two prefixes
            assert options["prefix"] != other_options["prefix"]
        one, two = open_store(url, **options), open_store(other_url, **other_options)
        try:
            yield one, two
        finally:
            one.close()
            two.close()
