"""One simulated experiment, as warehouse tables and as the events abpilot would ingest.

Units are exposed one or more times (a later exposure may name another variant: the first one
counts, as on the event path), some order within and some after the metric's window, and
each unit has a country (the dimension). Deterministic from a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

KEY = "checkout"
VARIANTS = ("control", "treatment")
WINDOW_HOURS = 72
START = datetime(2026, 3, 2, 8, 0, 0)
COUNTRIES = ("de", "fr", "us")

ASSIGNMENT_SQL = (
    "SELECT user_id AS unit_id, experiment AS experiment_key, arm AS variant, "
    "exposed_at AS timestamp, country FROM exposures"
)
ORDERS_SQL = "SELECT user_id AS unit_id, ordered_at AS timestamp, amount FROM orders"


@dataclass
class Simulated:
    """Rows of the ``exposures`` and ``orders`` tables (naive UTC times)."""

    exposures: list[tuple[str, str, str, datetime, str]] = field(default_factory=list)
    orders: list[tuple[str, datetime, float]] = field(default_factory=list)

    def first(self) -> dict[str, tuple[str, datetime, str]]:
        """Per unit of the experiment: (variant, first exposure, country)."""
        found: dict[str, tuple[str, datetime, str]] = {}
        for unit, exp, arm, at, country in sorted(self.exposures, key=lambda r: (r[0], r[3], r[2])):
            if exp == KEY and unit not in found:
                found[unit] = (arm, at, country)
        return found

    def in_window(self) -> Iterator[tuple[str, datetime, float]]:
        """The orders inside their unit's window."""
        first = self.first()
        for unit, at, amount in self.orders:
            if unit in first:
                start = first[unit][1]
                if start <= at < start + timedelta(hours=WINDOW_HOURS):
                    yield unit, at, amount


def simulate(units: int = 600, seed: int = 20) -> Simulated:
    rng = np.random.default_rng(seed)
    data = Simulated()
    for i in range(units):
        unit = f"u{i:05d}"
        arm = VARIANTS[int(rng.integers(0, 2))]
        country = COUNTRIES[int(rng.integers(0, 3))]
        at = START + timedelta(minutes=int(rng.integers(0, 60 * 24 * 5)))
        data.exposures.append((unit, KEY, arm, at, country))
        for _ in range(int(rng.poisson(0.6))):  # later exposures, sometimes another variant
            other = arm if rng.random() < 0.8 else VARIANTS[1 - VARIANTS.index(arm)]
            data.exposures.append(
                (unit, KEY, other, at + timedelta(minutes=int(rng.integers(1, 3000))), country)
            )
        if rng.random() < 0.05:  # in another experiment too
            data.exposures.append((unit, "other", "control", at, country))
        rate = 0.25 if arm == "control" else 0.32
        for _ in range(int(rng.random() < rate) * int(1 + rng.poisson(0.7))):
            hours = float(rng.exponential(40.0))
            amount = round(float(rng.lognormal(3.0, 0.8)), 2)
            data.orders.append((unit, at + timedelta(hours=hours), amount))
    for i in range(20):  # orders of units never exposed
        data.orders.append((f"x{i}", START + timedelta(hours=i), 10.0))
    return data


def tables(metadata: sa.MetaData, *, timestamp: sa.types.TypeEngine[Any] | None = None) -> None:
    stamp = timestamp if timestamp is not None else sa.DateTime()
    sa.Table(
        "exposures",
        metadata,
        sa.Column("user_id", sa.String(20)),
        sa.Column("experiment", sa.String(20)),
        sa.Column("arm", sa.String(20)),
        sa.Column("exposed_at", stamp),
        sa.Column("country", sa.String(4)),
    )
    sa.Table(
        "orders",
        metadata,
        sa.Column("user_id", sa.String(20)),
        sa.Column("ordered_at", stamp),
        sa.Column("amount", sa.Double()),
    )


def load(engine: sa.Engine, data: Simulated) -> None:
    """Create the tables and insert the rows through SQLAlchemy."""
    metadata = sa.MetaData()
    tables(metadata)
    metadata.create_all(engine, checkfirst=False)
    exposures, orders = metadata.tables["exposures"], metadata.tables["orders"]
    with engine.begin() as connection:
        connection.execute(
            exposures.insert(),
            [
                {"user_id": u, "experiment": e, "arm": a, "exposed_at": t, "country": c}
                for u, e, a, t, c in data.exposures
            ],
        )
        connection.execute(
            orders.insert(),
            [{"user_id": u, "ordered_at": t, "amount": v} for u, t, v in data.orders],
        )


def reference(data: Simulated, *, country: str | None = None) -> dict[str, dict[str, Any]]:
    """Per variant, computed in NumPy from the unit-level data: exposed units, exposures, and
    for revenue (sum of amounts in the window), orders (count) and purchase (any) the fact
    rows, converting units, Σy and Σy² of the per-unit totals."""
    first = data.first()
    out: dict[str, dict[str, Any]] = {}
    for arm in VARIANTS:
        units = [u for u, (a, _, c) in first.items() if a == arm and country in (None, c)]
        chosen = set(units)
        exposures = sum(1 for r in data.exposures if r[1] == KEY and r[0] in chosen)
        per_unit: dict[str, list[float]] = {}
        for unit, _, amount in data.in_window():
            if unit in chosen:
                per_unit.setdefault(unit, []).append(amount)
        revenue = np.array([sum(v) for v in per_unit.values()])
        orders = np.array([float(len(v)) for v in per_unit.values()])
        rows = int(orders.sum())
        out[arm] = {
            "units": len(units),
            "exposures": exposures,
            "revenue": (rows, len(per_unit), float(revenue.sum()), float((revenue**2).sum())),
            "orders": (rows, len(per_unit), float(orders.sum()), float((orders**2).sum())),
            "purchase": (len(per_unit), len(per_unit), float(len(per_unit)), float(len(per_unit))),
        }
    return out


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)
