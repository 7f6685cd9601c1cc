"""The service layer: every operation a user performs, on a Store."""

from abpilot.service.core import Assignment, ExperimentService
from abpilot.service.events import EventInput
from abpilot.service.reading import ExperimentMetrics, VariantMetrics
from abpilot.service.specs import ExperimentChanges

__all__ = [
    "Assignment",
    "EventInput",
    "ExperimentChanges",
    "ExperimentMetrics",
    "ExperimentService",
    "VariantMetrics",
]
