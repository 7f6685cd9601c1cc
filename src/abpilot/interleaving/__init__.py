"""Interleaving: compare two rankers by merging their lists and crediting clicks (pure core)."""

from abpilot.interleaving.analysis import InterleavingAnalysis, analyse_impressions, credit
from abpilot.interleaving.methods import Interleaved, Method, balanced, team_draft

__all__ = [
    "Interleaved",
    "InterleavingAnalysis",
    "Method",
    "analyse_impressions",
    "balanced",
    "credit",
    "team_draft",
]
