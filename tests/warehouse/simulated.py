"""One simulated experiment, as warehouse tables and as the events abpilot would ingest.

Units are exposed one or more times (a later exposure may name another variant: the first one
counts, as on the event path), some order within and some after the metric's window, and
each unit has a country (the dimension) and a pre-period revenue (the covariate, on every
exposure row; the first row's counts, and a unit's first row may lack it). Deterministic from a
seed.
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
    "exposed_at AS timestamp, country, pre_revenue FROM exposures"
)
ORDERS_SQL = "SELECT user_id AS unit_id, ordered_at AS timestamp, amount FROM orders"


@dataclass
class Simulated:
    """Rows of the ``exposures`` and ``orders`` tables (naive UTC times)."""

    exposures: list[tuple[str, str, str, datetime, str, float | None]] = field(default_factory=list)
    orders: list[tuple[str, datetime, float]] = field(default_factory=list)

    def first(self) -> dict[str, tuple[str, datetime, str]]:
        """Per unit of the experiment: (variant, first exposure, country)."""
        return {unit: (arm, at, country) for unit, (arm, at, country, _) in self._first().items()}

    def covariate(self) -> dict[str, float]:
        """Per unit of the experiment: the pre-period revenue of its first exposure (0 when
        that row has none)."""
        return {unit: x or 0.0 for unit, (_, _, _, x) in self._first().items()}

    def _first(self) -> dict[str, tuple[str, datetime, str, float | None]]:
        found: dict[str, tuple[str, datetime, str, float | None]] = {}
        for unit, exp, arm, at, country, x in sorted(
            self.exposures, key=lambda r: (r[0], r[3], r[2])
        ):
            if exp == KEY and unit not in found:
                found[unit] = (arm, at, country, x)
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
    facts = np.random.default_rng(seed + 1000)  # the covariate's draws, apart
    data = Simulated()
    for i in range(units):
        unit = f"u{i:05d}"
        arm = VARIANTS[int(rng.integers(0, 2))]
        country = COUNTRIES[int(rng.integers(0, 3))]
        at = START + timedelta(minutes=int(rng.integers(0, 60 * 24 * 5)))
        pre = round(float(facts.gamma(2.0, 15.0)), 2)
        data.exposures.append((unit, KEY, arm, at, country, None if facts.random() < 0.1 else pre))
        for _ in range(int(rng.poisson(0.6))):  # later exposures, sometimes another variant
            other = arm if rng.random() < 0.8 else VARIANTS[1 - VARIANTS.index(arm)]
            later = at + timedelta(minutes=int(rng.integers(1, 3000)))
            data.exposures.append((unit, KEY, other, later, country, pre + 1.0))
        if rng.random() < 0.05:  # in another experiment too
            data.exposures.append((unit, "other", "control", at, country, pre))
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
        sa.Column("pre_revenue", sa.Double()),
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
                {
                    "user_id": u,
                    "experiment": e,
                    "arm": a,
                    "exposed_at": t,
                    "country": c,
                    "pre_revenue": x,
                }
                for u, e, a, t, c, x in data.exposures
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


def unit_revenue(data: Simulated) -> dict[str, tuple[float, float]]:
    """Per converting unit: (revenue, orders) in its window."""
    found: dict[str, tuple[float, float]] = {}
    for unit, _, amount in data.in_window():
        revenue, orders = found.get(unit, (0.0, 0.0))
        found[unit] = (revenue + amount, orders + 1.0)
    return found


def derived_reference(data: Simulated, *, cap: float, quantile: float) -> dict[str, Any]:
    """The derived sums computed in NumPy from the unit-level data: the threshold of a
    ``quantile`` cap of revenue (``numpy.quantile``'s default, linear, of every exposed unit's
    revenue, 0 without an order), and per variant the covariate's (units, Σx, Σx²), revenue's
    Σxy, revenue's (Σ min(y, cap), Σ min(y, cap)²) at ``cap`` and at the threshold, and
    Σ revenue·orders."""
    first, covariate, per_unit = data.first(), data.covariate(), unit_revenue(data)
    pooled = np.array([per_unit.get(u, (0.0, 0.0))[0] for u in first])
    threshold = float(np.quantile(pooled, quantile))
    out: dict[str, Any] = {"threshold": threshold, "units": len(first)}
    for arm in VARIANTS:
        units = [u for u, (a, _, _) in first.items() if a == arm]
        x = np.array([covariate[u] for u in units])
        converting = [u for u in units if u in per_unit]
        y = np.array([per_unit[u][0] for u in converting])
        n = np.array([per_unit[u][1] for u in converting])
        xc = np.array([covariate[u] for u in converting])
        capped, at_threshold = np.minimum(y, cap), np.minimum(y, threshold)
        out[arm] = {
            "x": (len(units), float(x.sum()), float((x**2).sum())),
            "xy": float((xc * y).sum()),
            "capped": (float(capped.sum()), float((capped**2).sum())),
            "percentile": (float(at_threshold.sum()), float((at_threshold**2).sum())),
            "nd": float((y * n).sum()),
        }
    return out
