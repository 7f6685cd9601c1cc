"""abpilot: experiments on live traffic, steered toward what works.

``abpilot.open(url)`` gives the service for in-process use on any store::

    import abpilot
    with abpilot.open("sqlite:///abpilot.db") as service:  # or postgresql://, redis://, memory://
        ...  # the store's connections are closed when the block ends (or call service.close())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from abpilot.version import __version__

if TYPE_CHECKING:
    from abpilot.client import Client, ClientAuthError, ClientError, ServiceUnavailable
    from abpilot.domain.errors import (
        AbpilotError,
        ConcurrentModification,
        Conflict,
        DuplicateKey,
        ExperimentNotFound,
        InvalidTransition,
        NotFound,
        StoreUnavailable,
        UnitNotAssigned,
        ValidationError,
        WrongStatus,
    )
    from abpilot.domain.experiment import (
        Experiment,
        ExperimentStatus,
        ExperimentType,
        Metric,
        MetricKind,
        Variant,
    )
    from abpilot.domain.inputs import EventInput, EventKind
    from abpilot.domain.records import ApplyResult
    from abpilot.service import (
        Assignment,
        ExperimentChanges,
        ExperimentMetrics,
        ExperimentService,
        VariantMetrics,
    )
    from abpilot.service.monitoring import Monitor

# Public names -> the module that defines them. They are imported on first use (PEP 562), so that
# ``import abpilot.cli`` or ``abpilot.settings`` does not load SciPy, statsmodels and the service.
_LAZY = {
    **dict.fromkeys(["Client", "ClientAuthError", "ClientError", "ServiceUnavailable"], "client"),
    **dict.fromkeys(
        [
            "AbpilotError",
            "ConcurrentModification",
            "Conflict",
            "DuplicateKey",
            "ExperimentNotFound",
            "InvalidTransition",
            "NotFound",
            "StoreUnavailable",
            "UnitNotAssigned",
            "ValidationError",
            "WrongStatus",
        ],
        "domain.errors",
    ),
    **dict.fromkeys(
        ["Experiment", "ExperimentStatus", "ExperimentType", "Metric", "MetricKind", "Variant"],
        "domain.experiment",
    ),
    **dict.fromkeys(
        [
            "Assignment",
            "ExperimentChanges",
            "ExperimentMetrics",
            "ExperimentService",
            "VariantMetrics",
        ],
        "service",
    ),
    "EventInput": "domain.inputs",  # light: the HTTP client takes it too
    "Monitor": "service.monitoring",
    **dict.fromkeys(["ApplyResult", "EventKind"], "store.base"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'abpilot' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"abpilot.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def open(url: str = "sqlite:///./abpilot.db", **options: Any) -> ExperimentService:
    """The service on the store at ``url``: ``sqlite:///path``, ``postgresql://...``,
    ``redis://...`` or ``memory://``. ``cache_seconds``, ``bandit_defaults`` (a
    ``BanditOptions``) and ``warehouse_url`` (warehouse-native experiments) go to the service,
    other options to the store (``prefix=`` for Redis).
    An option neither takes is a TypeError that lists the accepted ones."""
    from abpilot.service.compose import open_service

    return open_service(url, **options)


__all__ = [
    "AbpilotError",
    "ApplyResult",
    "Assignment",
    "Client",
    "ClientAuthError",
    "ClientError",
    "ConcurrentModification",
    "Conflict",
    "DuplicateKey",
    "EventInput",
    "EventKind",
    "Experiment",
    "ExperimentChanges",
    "ExperimentMetrics",
    "ExperimentNotFound",
    "ExperimentService",
    "ExperimentStatus",
    "ExperimentType",
    "InvalidTransition",
    "Metric",
    "MetricKind",
    "Monitor",
    "NotFound",
    "ServiceUnavailable",
    "StoreUnavailable",
    "UnitNotAssigned",
    "ValidationError",
    "Variant",
    "VariantMetrics",
    "WrongStatus",
    "__version__",
    "open",
]
