"""Child processes for the tests that write to one store from many processes at once.

They start from a forkserver that has imported abpilot, the stores' drivers and the test helpers
once: each child is a fork of that clean, single-threaded server, so it starts in milliseconds
(``spawn`` imports everything again in every child, seconds each on two cores) and, unlike a
fork of the pytest process itself, inherits no open connections, locks or threads.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import ForkServerContext

PRELOAD = [
    "abpilot",
    "abpilot.store.factory",
    "abpilot.store.memory",
    "abpilot.store.redis",
    "abpilot.store.sql",
    "psycopg",
    "tests.conftest",
    "tests.factories",
]


def process_context() -> ForkServerContext:
    """The multiprocessing context to start writer processes with."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context
