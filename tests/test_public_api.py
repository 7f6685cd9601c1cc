"""The names users import from the package root stay importable."""

from __future__ import annotations

import abpilot

PUBLIC = {
    "open",
    "ExperimentService",
    "Experiment",
    "Variant",
    "Metric",
    "MetricKind",
    "ExperimentStatus",
    "ExperimentType",
    "Assignment",
    "EventInput",
    "EventKind",
    "ExperimentChanges",
    "ExperimentMetrics",
    "VariantMetrics",
    "ApplyResult",
    "AbpilotError",
    "ValidationError",
    "NotFound",
    "ExperimentNotFound",
    "UnitNotAssigned",
    "Conflict",
    "DuplicateKey",
    "InvalidTransition",
    "WrongStatus",
    "ConcurrentModification",
    "StoreUnavailable",
    "Client",
    "ClientError",
    "ClientAuthError",
    "ServiceUnavailable",
    "Monitor",
    "__version__",
}


def test_public_names_are_exported() -> None:
    assert set(abpilot.__all__) >= PUBLIC
    for name in PUBLIC:
        assert hasattr(abpilot, name), name


def test_service_verbs() -> None:
    verbs = {
        "create_experiment",
        "get_experiment",
        "list_experiments",
        "update_experiment",
        "delete_experiment",
        "set_status",
        "start_experiment",
        "pause_experiment",
        "resume_experiment",
        "end_experiment",
        "get_variant_for_user",
        "get_variants_for_users",
        "record_exposure",
        "record_conversion",
        "record_events",
        "get_metrics",
    }
    assert verbs <= set(dir(abpilot.ExperimentService))


def test_client_verbs() -> None:
    verbs = {
        "create_experiment",
        "get_experiment",
        "list_experiments",
        "update_experiment",
        "delete_experiment",
        "set_status",
        "start_experiment",
        "pause_experiment",
        "resume_experiment",
        "end_experiment",
        "get_variant_for_user",
        "record_exposure",
        "record_conversion",
        "record_events",
        "get_metrics",
        "analyze_experiment",
        "get_allocation",
        "recalculate",
        "recalculate_all",
        "record_daily_metrics",
        "get_history",
        "decide",
        "feedback",
        "bandit_stats",
        "interleave",
        "record_clicks",
        "ready",
        "close",
    }
    assert verbs <= set(dir(abpilot.Client))
