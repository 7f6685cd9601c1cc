"""Team-draft and balanced interleaving: the properties the methods define, and click credit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abpilot.interleaving import Method, analyse_impressions, balanced, credit, team_draft

POOL = [f"d{i}" for i in range(40)]


@st.composite
def two_rankings(draw: st.DrawFn) -> tuple[list[str], list[str], int]:
    a = draw(st.permutations(POOL))[: draw(st.integers(0, 25))]
    b = draw(st.permutations(POOL))[: draw(st.integers(0, 25))]
    return list(a), list(b), draw(st.integers(1, 30))


@settings(max_examples=300, deadline=None)
@given(case=two_rankings(), seed=st.integers(0, 2**32 - 1))
def test_team_draft_properties(case: tuple[list[str], list[str], int], seed: int) -> None:
    a, b, length = case
    merged = team_draft(a, b, length, np.random.default_rng(seed))
    items, teams = list(merged.items), list(merged.teams)
    assert len(items) == len(set(items))  # each item once
    assert len(items) == min(length, len(set(a) | set(b)))
    for team, ranking in (("a", a), ("b", b)):
        mine = [i for i, t in zip(items, teams, strict=True) if t == team]
        assert mine == sorted(mine, key=ranking.index)  # each team keeps its ranker's order
    # Every prefix is balanced up to one, as long as both rankers still had items to give.
    for n in range(1, len(items) + 1):
        prefix = teams[:n]
        left_a = [x for x in a if x not in items[: n - 1]]
        left_b = [x for x in b if x not in items[: n - 1]]
        if left_a and left_b:
            assert abs(prefix.count("a") - prefix.count("b")) <= 1


@settings(max_examples=200, deadline=None)
@given(case=two_rankings(), seed=st.integers(0, 2**32 - 1))
def test_balanced_shows_top_items_of_both(
    case: tuple[list[str], list[str], int], seed: int
) -> None:
    a, b, length = case
    merged = balanced(a, b, length, np.random.default_rng(seed))
    items = list(merged.items)
    assert len(items) == len(set(items))
    assert len(items) == min(length, len(set(a) | set(b)))
    # Whatever the coin, the top items of each ranker up to about half the list are shown.
    k = len(items) // 2
    assert set(a[:k]) <= set(items) or len(items) < length
    assert set(b[:k]) <= set(items) or len(items) < length


def test_duplicates_and_empty_rankings() -> None:
    rng = np.random.default_rng(0)
    merged = team_draft(["x", "x", "y"], [], 5, rng)
    assert merged.items == ("x", "y")
    assert merged.teams == ("a", "a")
    assert team_draft([], [], 5, rng).items == ()
    same = team_draft(["p", "q", "r"], ["p", "q", "r"], 3, rng)
    assert sorted(same.items) == ["p", "q", "r"]


def test_team_draft_credit_counts_each_teams_clicks() -> None:
    items, teams = ["d1", "d2", "d3", "d4"], ["a", "b", "b", "a"]
    assert credit(Method.TEAM_DRAFT, items, teams, [], [], {"d1", "d3", "d4"}) == (2, 1)
    assert credit(Method.TEAM_DRAFT, items, teams, [], [], set()) == (0, 0)


def test_balanced_credit_uses_the_top_k_rule() -> None:
    # Joachims (2002): A = (a1 a2 a3), B = (b1 a1 b2); the list b1 a1 a2 b2 ...
    a, b = ["a1", "a2", "a3"], ["b1", "a1", "b2"]
    items = ["b1", "a1", "a2", "b2", "a3"]
    teams = ["b", "a", "a", "b", "a"]
    # Clicks on a1 and a2: the lowest clicked is a2, rank 2 in A, absent from B: k = 2.
    # A's top 2 (a1, a2) holds 2 clicks, B's top 2 (b1, a1) holds 1.
    assert credit(Method.BALANCED, items, teams, a, b, {"a1", "a2"}) == (2, 1)
    # A click on b1 alone: k = 1; B's top 1 holds it, A's does not.
    assert credit(Method.BALANCED, items, teams, a, b, {"b1"}) == (0, 1)


def test_analysis_counts_wins_and_tests_against_half() -> None:
    credits = [(1, 0)] * 30 + [(0, 1)] * 10 + [(0, 0)] * 20 + [(1, 1)] * 5
    result = analyse_impressions(credits)
    assert (result.wins_a, result.wins_b, result.ties, result.impressions) == (30, 10, 25, 65)
    assert result.preference_a == pytest.approx(0.75)
    from scipy import stats

    assert result.p_value == pytest.approx(stats.binomtest(30, 40, 0.5).pvalue)
    assert result.winner == "a"
    assert result.delta == pytest.approx((30 + 12.5) / 65 - 0.5)
    assert analyse_impressions([]).p_value is None
