"""Monitoring of running experiments: the thresholds (``settings.monitoring`` over the
service-wide ``MONITOR_*`` defaults) and the health checks, pure. The service gathers their
inputs (``abpilot.service.monitoring``); the scheduler runs them daily
(``abpilot.service.monitoring_daily``)."""
