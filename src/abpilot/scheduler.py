"""Periodic recalculation on one leader across every worker and host.

Each service process runs a ``Scheduler`` thread. Leadership is a lease from the store (a
PostgreSQL advisory lock, a Redis key with a TTL, a lock file beside SQLite): only the holder
recalculates. The thread wakes every ``tick`` seconds, renews its lease, and runs the job once
``interval`` seconds have passed since it last ran; a lease lost (a dead leader's Redis key
expiring, its database session closing) is taken by another process within a tick or two, and
the new leader runs the job one interval later. A failing job (the store down, a bug) is logged
and the thread lives on, so it neither stops recalculating nor keeps a lease it no longer uses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from abpilot.domain.errors import AbpilotError
from abpilot.store.base import LeaderStore, Lease

log = logging.getLogger("abpilot.scheduler")


class Scheduler:
    def __init__(
        self,
        store: LeaderStore,
        job: Callable[[], object],
        *,
        name: str,
        interval_seconds: float,
        tick_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (seconds, monotonic) decides when the job is due; tests pass a fake one."""
        self.store, self.job, self.name = store, job, name
        self.clock = clock
        self.interval = interval_seconds
        self.tick = tick_seconds if tick_seconds is not None else min(interval_seconds / 3, 10.0)
        self.runs = 0
        self._lease: Lease | None = None
        self._last_run: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._lease is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"abpilot-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def step(self) -> bool:
        """One tick: hold or take the lease, and run the job when it is due. True if it ran."""
        try:
            if self._lease is not None and not self._lease.renew():
                log.warning("lost the %s lease", self.name)
                lost, self._lease = self._lease, None
                lost.release()  # frees what it holds (its database connection) if anything
            if self._lease is None:
                self._lease = self.store.try_lead(self.name, ttl_seconds=3 * self.tick)
                if self._lease is not None:
                    log.info("leading %s", self.name)
                    # A new leader waits one interval, as the previous one may have just run.
                    self._last_run = self.clock()
            due = self._last_run is None or self.clock() - self._last_run >= self.interval
            if self._lease is None or not due:
                return False
            self._last_run = self.clock()
            self.job()
            self.runs += 1
            return True
        except AbpilotError as error:
            log.error("%s did not run: %s", self.name, error.message)
            return False

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.step()
            except Exception:  # the thread must live on: a dead one would keep its lease
                log.exception("%s failed; trying again in %.1f s", self.name, self.tick)


class Repeater:
    """Run ``job`` every ``interval_seconds`` in a thread of this process (no leadership: for
    work each process does for itself, such as noticing a new datafile build on its disk)."""

    def __init__(self, job: Callable[[], object], *, name: str, interval_seconds: float) -> None:
        self.job, self.name, self.interval_seconds = job, name, interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"abpilot-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.job()
            except Exception:  # a failing run is logged; the next one may succeed
                log.exception("%s failed", self.name)
