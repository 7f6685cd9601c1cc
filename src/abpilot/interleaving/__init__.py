"""Interleaving: compare two rankers by merging their lists and crediting clicks (pure core):
``methods`` (team-draft and balanced interleaving), ``analysis`` (click credit, the preference
test), ``options`` (``settings.interleaving``).

Its other parts stay in their layers: the service ``abpilot.service.interleaving``
(``service.interleaving``: interleave, record clicks, analyse; impressions and clicks are kept in
the stores' decision log); the REST face ``api/routes/interleaving.py`` with
``api/schemas/interleaving.py``; its staleness check in ``abpilot.service.monitoring``."""

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
