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


HEAVY = ("numpy", "scipy", "statsmodels")


def heavy_modules_after(code: str) -> list[str]:
    """The statistics modules a fresh interpreter has loaded after running ``code``."""
    import json
    import os
    import subprocess
    import sys

    probe = (
        f"{code}; import json, sys; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_the_http_client_loads_no_statistics() -> None:
    """A client-only program (``abpilot.Client`` with its ``EventInput``/``DailyInput`` records)
    starts without NumPy, SciPy or statsmodels."""
    assert heavy_modules_after("import abpilot.client") == []
    assert heavy_modules_after("import abpilot; abpilot.Client; abpilot.EventInput") == []
    assert heavy_modules_after("from abpilot.domain.inputs import DailyInput, EventInput") == []


def test_input_records_keep_their_old_import_paths() -> None:
    from abpilot.client import DailyInput as ClientDaily
    from abpilot.client import EventInput as ClientEvent
    from abpilot.domain.inputs import DailyInput, EventInput, EventKind
    from abpilot.service import EventInput as ServiceEvent
    from abpilot.service.allocation import DailyInput as AllocationDaily
    from abpilot.service.events import EventInput as EventsEvent
    from abpilot.store.base import EventKind as StoreEventKind

    assert ClientEvent is ServiceEvent is EventsEvent is EventInput is abpilot.EventInput
    assert ClientDaily is AllocationDaily is DailyInput
    assert StoreEventKind is EventKind is abpilot.EventKind
