"""Monitoring of running experiments: the thresholds (``settings.monitoring`` over the
service-wide ``MONITOR_*`` defaults, ``options``) and the health checks (``checks``), pure.

Its other parts stay in their layers: the service gathers the checks' inputs
(``abpilot.service.monitoring``, ``Monitor``) and the scheduler runs them daily, keeping the
reports as documents of the store's ``monitoring`` namespace
(``abpilot.service.monitoring_daily``, built by ``abpilot.service.compose``); the REST face
``api/routes/monitoring.py`` with ``api/schemas/monitoring.py``; the CLI verb
``cli/monitoring.py`` (``abpilot monitor``)."""
