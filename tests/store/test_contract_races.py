"""The store contract under races: two clients of one store (two workers) doing conflicting
things at the same moment get the same answers on memory, SQLite, PostgreSQL and Redis.

Each race is started from two threads released together by a barrier and repeated a few times;
the assertions hold for every interleaving, so they never depend on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TypeVar

from abpilot.domain.errors import DuplicateKey
from abpilot.store.base import Store
from tests.conftest import StoreFactory
from tests.factories import make_experiment

ROUNDS = 8
T = TypeVar("T")


def race(one: Callable[[], T], two: Callable[[], T]) -> tuple[T, T]:
    """Run both at once (released together) and return their answers."""
    barrier = threading.Barrier(2)

    def run(action: Callable[[], T]) -> T:
        barrier.wait()
        return action()

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.submit(run, one), pool.submit(run, two)
        return first.result(), second.result()


def rename(client: Store, experiment_id: str, key: str) -> str:
    """Rename the experiment (version 1) to ``key``: "renamed", or how it was refused."""
    current = client.get_experiment(experiment_id)
    assert current is not None
    try:
        client.update_experiment(replace(current, key=key, version=2), expected_version=1)
    except DuplicateKey as error:
        return f"duplicate {error.field}: {error.message}"
    return "renamed"


def create(client: Store, key: str) -> str:
    try:
        client.create_experiment(make_experiment(key))
    except DuplicateKey as error:
        return f"duplicate {error.field}: {error.message}"
    return "created"


class TestKeyRaces:
    def test_two_renames_to_one_key_exactly_one_wins(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        for r in range(ROUNDS):
            a, b = make_experiment(f"a-{r}"), make_experiment(f"b-{r}")
            one.create_experiment(a)
            one.create_experiment(b)
            target = f"target-{r}"
            answers = race(partial(rename, one, a.id, target), partial(rename, two, b.id, target))
            assert sorted(answers) == [
                f"duplicate key: an experiment with key '{target}' already exists",
                "renamed",
            ]
            winner, loser = (a, b) if answers[0] == "renamed" else (b, a)
            assert two.get_experiment_id(target) == winner.id
            assert one.get_experiment(loser.id) == loser  # untouched: old key, old version
            assert one.get_experiment_id(loser.key) == loser.id

    def test_two_creations_of_one_key_exactly_one_wins(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        for r in range(ROUNDS):
            key = f"same-{r}"
            answers = race(partial(create, one, key), partial(create, two, key))
            assert sorted(answers) == [
                "created",
                f"duplicate key: an experiment with key '{key}' already exists",
            ]
        assert len(one.list_experiments()) == ROUNDS
