"""Contextual bandits: an arm per request from the context, learned from feedback (pure core).

- ``policy``: context keys, feedback rules, posteriors per (context, arm) with back-off to the
  pooled state, and the choice of an arm with its propensity (contextual Thompson sampling).
- ``offpolicy``: off-policy evaluation of the logged decisions (IPS, SNIPS, doubly robust).

Its other parts stay in their layers: the service ``abpilot.service.contextual``
(``service.contextual``: decide, feedback, stats, performance, off-policy evaluation); the REST
face ``api/routes/contextual.py`` with ``api/schemas/contextual.py``; the CLI verbs
``cli/contextual.py`` (``abpilot decide``, ``feedback``, ``bandit-stats``); the decision log and
the arm states in the stores (``store/sql/contextual.py``, ``store/redis/contextual.py``, the
memory store); its monitoring checks in ``abpilot.service.monitoring``.
"""
