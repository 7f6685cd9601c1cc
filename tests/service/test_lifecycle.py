"""The service and the app close what they open: the service is a context manager that closes
its store, and the app's start-up closes an opened store even when a later step fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import abpilot
from abpilot.api import app as app_module
from abpilot.api import create_app
from abpilot.service import ExperimentService
from abpilot.service.companion import Companion
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore

VARIANTS = [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}]


class CountingStore(MemoryStore):
    """A memory store that counts how often it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


def test_service_as_a_context_manager_closes_its_store_once() -> None:
    store = CountingStore()
    with ExperimentService(store) as service:
        assert not service.closed
        service.create_experiment(key="button", name="Button", variants=VARIANTS)
    assert service.closed
    assert store.closes == 1
    service.close()  # idempotent
    assert store.closes == 1


def test_service_closes_its_store_when_the_block_raises() -> None:
    store = CountingStore()
    with pytest.raises(RuntimeError), ExperimentService(store):
        raise RuntimeError("boom")
    assert store.closes == 1


def test_open_returns_a_service_usable_in_a_with_block(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with abpilot.open(url) as service:
        service.create_experiment(key="button", name="Button", variants=VARIANTS)
    assert service.closed
    with abpilot.open(url) as again:  # the data outlived the closed service
        assert again.get_experiment("button").key == "button"


def test_app_shutdown_closes_the_store_it_opened_but_not_a_given_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = CountingStore()
    monkeypatch.setattr(app_module, "_open", lambda settings: opened)
    with TestClient(create_app(Settings(store="memory", scheduler_enabled=False))) as client:
        assert client.get("/readyz").status_code == 200
        assert opened.closes == 0
    assert opened.closes == 1

    given = CountingStore()
    with TestClient(create_app(Settings(store="memory"), store=given)):
        pass
    assert given.closes == 0  # the caller's store: the caller closes it


def test_a_failing_start_up_step_still_closes_the_opened_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    opened = CountingStore()
    monkeypatch.setattr(app_module, "_open", lambda settings: opened)

    def broken_sync(self: Companion) -> list[str]:
        raise RuntimeError("datafiles unreadable")

    monkeypatch.setattr(Companion, "sync", broken_sync)
    settings = Settings(store="memory", scheduler_enabled=False, datafiles_dir=tmp_path)
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="datafiles unreadable"), TestClient(app):
        pass  # pragma: no cover - start-up fails
    assert opened.closes == 1


def test_blocking_start_up_work_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Opening the store (SQL migrations) and the first datafile sync run in a worker thread:
    no event loop runs in the thread that does them."""
    seen: list[str] = []

    def loop_state() -> str:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return "no loop"
        return "on the loop"

    def open_store(settings: Settings) -> MemoryStore:
        seen.append(f"open: {loop_state()}")
        return MemoryStore()

    real_sync = Companion.sync

    def sync(self: Companion) -> list[str]:
        seen.append(f"sync: {loop_state()}")
        return real_sync(self)

    monkeypatch.setattr(app_module, "_open", open_store)
    monkeypatch.setattr(Companion, "sync", sync)
    settings = Settings(
        store="memory",
        scheduler_enabled=False,
        datafiles_dir=tmp_path,
        datafiles_poll_seconds=3600,
    )
    with TestClient(create_app(settings)):
        pass
    assert seen == ["open: no loop", "sync: no loop"]
