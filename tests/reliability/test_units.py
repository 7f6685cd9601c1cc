"""In-process checks of the behaviour the end-to-end reliability tests rely on: the FeatureVisor
companion serves its last known datafile while the store is down and writes builds it saw during
an outage once the store is back; the scheduler thread survives a failing job and gives up a
lease it lost."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from abpilot.domain.errors import StoreUnavailable
from abpilot.scheduler import Scheduler
from abpilot.service import ExperimentService
from abpilot.service.companion import NAMESPACE, Companion
from abpilot.store.memory import MemoryStore
from tests.fixtures import FEATUREVISOR_DATAFILES

PATH = "production/datafile.json"


class FlakyStore:
    """A memory store that can be taken down: every call then raises StoreUnavailable."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("the store is down (test)")
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def datafiles(tmp_path: Path) -> Path:
    root = tmp_path / "datafiles"
    (root / "production").mkdir(parents=True)
    shutil.copy(FEATUREVISOR_DATAFILES / "v2-production.json", root / PATH)
    return root


def companion_on(store: FlakyStore, datafiles: Path) -> Companion:
    service = ExperimentService(store, cache_seconds=0)
    return Companion(service, datafiles, cache_seconds=0)


def test_the_last_known_datafile_is_served_while_the_store_is_down(datafiles: Path) -> None:
    store = FlakyStore()
    companion = companion_on(store, datafiles)
    assert companion.sync() == [PATH]
    served = companion.datafile(PATH)

    store.down = True
    assert companion.datafile(PATH) == served  # rendered at sync, before any request
    with pytest.raises(StoreUnavailable):
        companion.datafile("production/never-served.json")
    with pytest.raises(StoreUnavailable):
        companion.expose(datafile=PATH, features={"checkoutButton": "treatment"})

    store.down = False
    assert companion.datafile(PATH) == served


def test_a_worker_that_never_served_has_the_datafile_from_its_sync(datafiles: Path) -> None:
    store = FlakyStore()
    companion_on(store, datafiles).sync()  # another worker wrote the build
    second = companion_on(store, datafiles)
    second.sync()  # nothing changed in the store, but the build is rendered here too
    store.down = True
    assert json.loads(second.datafile(PATH).body)["revision"].startswith(
        json.loads((datafiles / PATH).read_text())["revision"]
    )


def test_recalculating_keeps_the_last_known_datafile(datafiles: Path) -> None:
    store = FlakyStore()
    companion = companion_on(store, datafiles)
    companion.sync()
    served = companion.datafile(PATH)
    companion.recalculate()
    store.down = True
    assert companion.datafile(PATH) == served


def test_a_build_seen_during_an_outage_is_stored_once_the_store_is_back(
    datafiles: Path,
) -> None:
    store = FlakyStore()
    companion = companion_on(store, datafiles)
    companion.sync()
    build = json.loads((datafiles / PATH).read_text())
    build["revision"] = "next"
    store.down = True
    (datafiles / PATH).write_text(json.dumps(build))
    assert companion.sync() == []  # refused, and kept for later
    assert companion.sync() == []
    store.down = False
    assert companion.sync() == [PATH]
    stored = store.get_document(NAMESPACE, PATH)
    assert json.loads(stored.content)["revision"] == "next"
    assert json.loads(companion.datafile(PATH).body)["revision"].startswith("next")
    assert companion.sync() == []


class Lease:
    def __init__(self) -> None:
        self.renewals, self.released = 0, False

    def renew(self) -> bool:
        self.renewals += 1
        return self.renewals < 2  # lost at the second renewal

    def release(self) -> None:
        self.released = True


def test_a_lost_lease_is_released_and_leadership_taken_again() -> None:
    leases: list[Lease] = []

    class Leading:
        """Only the leadership role: all a scheduler asks of its store."""

        def try_lead(self, name: str, ttl_seconds: float) -> Lease:
            leases.append(Lease())
            return leases[-1]

    scheduler = Scheduler(Leading(), lambda: None, name="job", interval_seconds=60, tick_seconds=60)
    for _ in range(3):
        scheduler.step()
    assert len(leases) == 2
    assert leases[0].released
    assert not leases[1].released
    assert scheduler.is_leader


def test_the_scheduler_thread_survives_a_failing_job() -> None:
    runs: list[int] = []

    def job() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("a bug, not a store error")

    scheduler = Scheduler(MemoryStore(), job, name="job", interval_seconds=0.02, tick_seconds=0.01)
    scheduler.start()
    try:
        deadline = time.monotonic() + 60  # against a hang only: it runs every 0.02 s
        while len(runs) < 3:
            assert time.monotonic() < deadline, f"{len(runs)} runs in 60 s"
            time.sleep(0.01)
    finally:
        scheduler.stop()
