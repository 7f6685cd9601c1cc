"""Storage behind one protocol: SQL (SQLite, PostgreSQL), Redis and memory."""

from abpilot.store.base import (
    AllocationRecord,
    ApplyResult,
    AssignResult,
    DailyRow,
    EventKind,
    EventRecord,
    Lease,
    MetricTotals,
    RawMetrics,
    Store,
    StoredAssignment,
    VariantCounters,
)
from abpilot.store.factory import open_store

__all__ = [
    "AllocationRecord",
    "ApplyResult",
    "AssignResult",
    "DailyRow",
    "EventKind",
    "EventRecord",
    "Lease",
    "MetricTotals",
    "RawMetrics",
    "Store",
    "StoredAssignment",
    "VariantCounters",
    "open_store",
]
