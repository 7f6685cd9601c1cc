"""Minimal-movement layouts: exact shares, and only the total variation distance moves."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abpilot.featurevisor.datafile import Segment
from abpilot.featurevisor.layout import integer_shares, merge, moved_buckets, rebalance, shares

VARIATIONS = ("a", "b", "c", "d")


def contiguous(weights: list[float], space: int, start: int = 0) -> list[Segment]:
    """The CLI's layout: one range per variation, in order, from ``start``."""
    out, at = [], start
    for variation, n in zip(VARIATIONS, integer_shares(space, weights), strict=False):
        out.append(Segment(variation, at, at + n))
        at += n
    return out


weights_strategy = st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    old=weights_strategy,
    steps=st.lists(weights_strategy, min_size=1, max_size=6),
    space=st.integers(1_000, 100_000),
)
def test_each_change_moves_exactly_the_total_variation_distance(
    old: list[float], steps: list[list[float]], space: int
) -> None:
    layout = contiguous(old, space)
    for new in steps:
        target = dict(zip(VARIATIONS, integer_shares(space, new), strict=True))
        before = dict(
            zip(
                VARIATIONS, (shares(layout, VARIATIONS)[v] * space for v in VARIATIONS), strict=True
            )
        )
        after = rebalance(layout, VARIATIONS, dict(zip(VARIATIONS, new, strict=True)))
        # The space is the same buckets, and each variation holds exactly its target.
        assert sum(s.length for s in after) == space
        assert min(s.start for s in after) == 0
        assert max(s.end for s in after) == space
        for left, right in itertools.pairwise(after):
            assert left.end == right.start
        held = {v: sum(s.length for s in after if s.variation == v) for v in VARIATIONS}
        assert held == target
        # Moved buckets = 0.5 * sum |held - target| (the total variation distance of the space).
        tvd = sum(abs(round(before[v]) - target[v]) for v in VARIATIONS) / 2
        assert moved_buckets(layout, after) == tvd
        layout = after


def test_a_gap_in_the_space_stays_a_gap() -> None:
    layout = [Segment("a", 0, 30_000), Segment("b", 50_000, 80_000)]
    after = rebalance(layout, ("a", "b"), {"a": 0.25, "b": 0.75})
    assert after == [
        Segment("a", 0, 15_000),
        Segment("b", 15_000, 30_000),
        Segment("b", 50_000, 80_000),
    ]


def test_shrinking_gives_up_the_end_of_the_last_range() -> None:
    layout = [Segment("a", 0, 50_000), Segment("b", 50_000, 100_000)]
    after = rebalance(layout, ("a", "b"), {"a": 0.7, "b": 0.3})
    assert after == [
        Segment("a", 0, 50_000),
        Segment("b", 50_000, 80_000),
        Segment("a", 80_000, 100_000),
    ]
    back = rebalance(after, ("a", "b"), {"a": 0.2, "b": 0.8})
    assert back == [Segment("a", 0, 20_000), Segment("b", 20_000, 100_000)]  # joined again
    assert moved_buckets(after, back) == 50_000


def test_a_three_way_change_splits_ranges_rather_than_relaying() -> None:
    layout = [Segment("a", 0, 40_000), Segment("b", 40_000, 80_000), Segment("c", 80_000, 100_000)]
    after = rebalance(layout, ("a", "b", "c"), {"a": 0.2, "b": 0.4, "c": 0.4})
    # a gives up its last 20,000 buckets to c; b keeps all of its buckets.
    assert after == [
        Segment("a", 0, 20_000),
        Segment("c", 20_000, 40_000),
        Segment("b", 40_000, 80_000),
        Segment("c", 80_000, 100_000),
    ]
    assert moved_buckets(layout, after) == 20_000


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [(100, [1, 1, 1], [34, 33, 33]), (10_000, [0.5, 0.5], [5_000, 5_000]), (0, [1, 2], [0, 0])],
)
def test_integer_shares_sum_to_the_total(
    total: int, weights: list[float], expected: list[int]
) -> None:
    assert integer_shares(total, weights) == expected


def test_merge_joins_touching_ranges_of_one_variation() -> None:
    parts = [Segment("a", 10, 20), Segment("a", 0, 10), Segment("b", 20, 30)]
    assert merge(parts) == [Segment("a", 0, 20), Segment("b", 20, 30)]
