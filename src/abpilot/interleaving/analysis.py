"""Credit clicks to rankers, and decide which ranker users prefer (pure).

Per impression the ranker with more credited clicks wins (equal credit, including no clicks, is a
tie). Team draft credits each click to the team of the clicked item. Balanced interleaving uses
Joachims' rule: with d the lowest clicked item of the list and k the smaller of its ranks in the
two rankings, each ranker is credited with the clicked items in its own top k.

Over impressions: the share of A among non-tied impressions, with a Wilson interval, and a
two-sided exact binomial (sign) test of "no preference" (share 0.5), from SciPy.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from abpilot.interleaving.methods import Method
from abpilot.stats.frequentist import Interval, wilson_interval


def credit(
    method: Method,
    items: Sequence[str],
    teams: Sequence[str],
    ranking_a: Sequence[str],
    ranking_b: Sequence[str],
    clicked: Collection[str],
) -> tuple[int, int]:
    """(clicks credited to A, clicks credited to B) for one impression."""
    if method is Method.TEAM_DRAFT:
        a = sum(
            1 for item, team in zip(items, teams, strict=True) if item in clicked and team == "a"
        )
        b = sum(
            1 for item, team in zip(items, teams, strict=True) if item in clicked and team == "b"
        )
        return a, b
    positions = [i for i, item in enumerate(items) if item in clicked]
    if not positions:
        return 0, 0
    lowest = items[max(positions)]
    rank_a = {item: r for r, item in enumerate(dict.fromkeys(ranking_a), start=1)}
    rank_b = {item: r for r, item in enumerate(dict.fromkeys(ranking_b), start=1)}
    k = min(rank_a.get(lowest, len(rank_a) + 1), rank_b.get(lowest, len(rank_b) + 1))
    a = sum(1 for item in clicked if rank_a.get(item, k + 1) <= k)
    b = sum(1 for item in clicked if rank_b.get(item, k + 1) <= k)
    return a, b


@dataclass(frozen=True, slots=True)
class InterleavingAnalysis:
    impressions: int
    wins_a: int
    wins_b: int
    ties: int
    preference_a: float | None  # wins_a / (wins_a + wins_b)
    preference_a_ci: Interval | None
    p_value: float | None  # two-sided binomial test of preference 0.5
    delta: float | None  # (wins_a + ties / 2) / impressions - 0.5, the usual summary
    winner: str | None  # "a", "b", or None while not significant at alpha
    alpha: float


def analyse_impressions(
    credits: Sequence[tuple[int, int]], *, alpha: float = 0.05
) -> InterleavingAnalysis:
    from scipy import stats

    wins_a = sum(1 for a, b in credits if a > b)
    wins_b = sum(1 for a, b in credits if b > a)
    n = len(credits)
    ties = n - wins_a - wins_b
    decided = wins_a + wins_b
    p_value = float(stats.binomtest(wins_a, decided, 0.5).pvalue) if decided else None
    share = wins_a / decided if decided else None
    winner = None
    if p_value is not None and p_value < alpha and share is not None:
        winner = "a" if share > 0.5 else "b"
    return InterleavingAnalysis(
        impressions=n,
        wins_a=wins_a,
        wins_b=wins_b,
        ties=ties,
        preference_a=share,
        preference_a_ci=wilson_interval(wins_a, decided, alpha) if decided else None,
        p_value=p_value,
        delta=(wins_a + ties / 2) / n - 0.5 if n else None,
        winner=winner,
        alpha=alpha,
    )
