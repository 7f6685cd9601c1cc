"""Team-draft and balanced interleaving of two rankings (pure).

Team draft (Radlinski, Kurup, Joachims 2008): the team with fewer picks so far (a coin flip on a
tie) adds its highest-ranked item not yet shown, so every prefix of the list holds as many items
of each team, up to one, while both rankers have items left; an item both rankers rank belongs to
the team that picked it first. Balanced interleaving (Joachims 2002): a coin flip decides which
ranker leads, then the list alternates between the rankers' next items, skipping items already
shown; clicks are credited by the top-k rule in ``analysis.credit``.

Duplicates inside one ranking are dropped after their first occurrence; an empty ranking simply
contributes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class Method(enum.StrEnum):
    TEAM_DRAFT = "team_draft"
    BALANCED = "balanced"


@dataclass(frozen=True, slots=True)
class Interleaved:
    items: tuple[str, ...]
    teams: tuple[str, ...]  # "a" or "b" per item: the ranker it was taken from


def _unique(ranking: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ranking))


def team_draft(
    ranking_a: Sequence[str], ranking_b: Sequence[str], length: int, rng: np.random.Generator
) -> Interleaved:
    a, b = _unique(ranking_a), _unique(ranking_b)
    shown: set[str] = set()
    items: list[str] = []
    teams: list[str] = []
    picks = {"a": 0, "b": 0}
    pointers = {"a": 0, "b": 0}
    rankings = {"a": a, "b": b}

    def next_item(team: str) -> str | None:
        ranking = rankings[team]
        while pointers[team] < len(ranking) and ranking[pointers[team]] in shown:
            pointers[team] += 1
        return ranking[pointers[team]] if pointers[team] < len(ranking) else None

    while len(items) < length:
        available = {t: next_item(t) for t in ("a", "b")}
        candidates = [t for t in ("a", "b") if available[t] is not None]
        if not candidates:
            break
        if len(candidates) == 1:
            team = candidates[0]
        elif picks["a"] != picks["b"]:
            team = "a" if picks["a"] < picks["b"] else "b"
        else:
            team = "a" if rng.random() < 0.5 else "b"
        item = available[team]
        assert item is not None
        items.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return Interleaved(tuple(items), tuple(teams))


def balanced(
    ranking_a: Sequence[str], ranking_b: Sequence[str], length: int, rng: np.random.Generator
) -> Interleaved:
    a, b = _unique(ranking_a), _unique(ranking_b)
    a_first = bool(rng.random() < 0.5)
    ka = kb = 0
    items: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    while len(items) < length and (ka < len(a) or kb < len(b)):
        take_a = kb >= len(b) or (ka < len(a) and (ka < kb or (ka == kb and a_first)))
        if take_a:
            item, team = a[ka], "a"
            ka += 1
        else:
            item, team = b[kb], "b"
            kb += 1
        if item not in shown:
            items.append(item)
            teams.append(team)
            shown.add(item)
    return Interleaved(tuple(items), tuple(teams))


def interleave(
    method: Method,
    ranking_a: Sequence[str],
    ranking_b: Sequence[str],
    length: int,
    rng: np.random.Generator,
) -> Interleaved:
    merge = team_draft if method is Method.TEAM_DRAFT else balanced
    return merge(ranking_a, ranking_b, length, rng)
