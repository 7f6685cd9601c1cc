"""Assignment is a pure function of (salt, experiment key, unit id) and the weights."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mmh3
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from abpilot.domain.assignment import NOT_IN_EXPERIMENT, Bucketing, bucket, bucket_bounds
from tests.factories import make_experiment

UNITS = [f"user-{i}" for i in range(100_000)]


def test_bucket_is_murmur3_scaled_to_ten_thousand() -> None:
    # Closed form from docs/architecture.md §5: floor(hash / 2^32 * 10000) of "{salt}.{key}.{unit}".
    for text in ["checkout.checkout.user-123", "s.k.ünïcode", ""]:
        expected = int(mmh3.hash(text, 0, signed=False) / 2**32 * 10_000)
        assert bucket(text) == expected
    assert (
        bucket("checkout.checkout.user-123")
        == mmh3.hash("checkout.checkout.user-123", signed=False) * 10_000 // 2**32
    )


def test_variant_follows_bucket_and_cumulative_weights() -> None:
    exp = make_experiment(weights=(0.2, 0.3, 0.5))
    bucketing = Bucketing.for_experiment(exp)
    for unit in UNITS[:2_000]:
        b = bucket(f"{exp.salt}.{exp.key}.{unit}")
        expected = 0 if b < 2_000 else 1 if b < 5_000 else 2
        assert bucketing.variant_index(unit) == expected


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.1, 0.9), (0.2, 0.3, 0.5), (0.25,) * 4])
def test_split_is_within_one_percent_of_weights(weights: tuple[float, ...]) -> None:
    indices = Bucketing.for_experiment(make_experiment(weights=weights)).variant_indices(UNITS)
    shares = np.bincount(indices, minlength=len(weights)) / len(UNITS)
    assert np.all(np.abs(shares - np.array(weights)) < 0.01)


def test_traffic_allocation_admits_its_share() -> None:
    bucketing = Bucketing.for_experiment(make_experiment(traffic_allocation=0.3))
    share_in = np.mean(bucketing.variant_indices(UNITS) != NOT_IN_EXPERIMENT)
    assert abs(share_in - 0.3) < 0.01


def test_raising_traffic_keeps_included_units_in_their_variant() -> None:
    exp = make_experiment(weights=(0.3, 0.7), traffic_allocation=0.2)
    before = Bucketing.for_experiment(exp).variant_indices(UNITS)
    after = Bucketing.for_experiment(replace(exp, traffic_allocation=0.5)).variant_indices(UNITS)
    included = before != NOT_IN_EXPERIMENT
    assert np.array_equal(before[included], after[included])
    assert np.mean(after != NOT_IN_EXPERIMENT) > np.mean(included) + 0.25


def test_traffic_gate_is_independent_of_variant() -> None:
    # With a shared hash, a 50% gate would admit only the low buckets, i.e. mostly control.
    bucketing = Bucketing.for_experiment(make_experiment(traffic_allocation=0.5))
    indices = bucketing.variant_indices(UNITS)
    admitted = indices[indices != NOT_IN_EXPERIMENT]
    assert abs(np.mean(admitted == 0) - 0.5) < 0.01


def test_changing_salt_reshuffles() -> None:
    exp = make_experiment()
    a = Bucketing.for_experiment(exp).variant_indices(UNITS[:10_000])
    b = Bucketing.for_experiment(replace(exp, salt="other")).variant_indices(UNITS[:10_000])
    assert 0.4 < np.mean(a != b) < 0.6


def test_batch_equals_single_calls() -> None:
    exp = make_experiment(weights=(0.2, 0.3, 0.5), traffic_allocation=0.7)
    bucketing = Bucketing.for_experiment(exp)
    units = [*UNITS[:5_000], "", "ユーザー", "a.b.c"]
    assert bucketing.variant_indices(units).tolist() == [bucketing.variant_index(u) for u in units]


def test_same_answer_in_another_process() -> None:
    # Python's own hash() is salted per process; the assignment must not be.
    exp = make_experiment(weights=(0.2, 0.3, 0.5))
    here = Bucketing.for_experiment(exp).variant_indices(UNITS[:1_000]).tolist()
    code = (
        "from tests.factories import make_experiment;"
        "from abpilot.domain.assignment import Bucketing;"
        "import json;"
        "b = Bucketing.for_experiment(make_experiment(weights=(0.2, 0.3, 0.5), id='x'));"
        "print(json.dumps(b.variant_indices([f'user-{i}' for i in range(1000)]).tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=Path(__file__).parents[2],
    )
    assert json.loads(out.stdout) == here


@given(st.lists(st.floats(min_value=0.001, max_value=1.0), min_size=2, max_size=20))
def test_bounds_end_at_ten_thousand_and_never_decrease(raw: list[float]) -> None:
    total = sum(raw)
    bounds = bucket_bounds([w / total for w in raw])
    assert bounds[-1] == 10_000
    assert all(a <= b for a, b in itertools.pairwise(bounds))
