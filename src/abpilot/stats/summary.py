"""Per-variant summaries of a metric from the stored counters (n, sum, sum of squares).

The population ``n`` is counted on one basis for every variant of an experiment: its exposed
units when any variant has exposures with unit ids, else its assigned units when any variant has
assigned units, else (event-level mode, no unit ids at all) its exposures. Units that never
converted contribute a total of zero, so mean and variance are per unit of that population.

The conversions counted against ``n`` are the converting units; a variant whose conversions
carry no unit ids (event-level conversions, e.g. posted by variant after units were assigned)
counts its conversion events instead, as event-level mode does (the rate may then exceed 1, and
is flagged). When the variants' data do not measure the same population (a variant with data but
no population on the chosen basis, or unit-level conversions in some variants and event-level
ones in others), ``summarise_variants`` says so in ``mixed``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from abpilot.domain.records import MetricTotals, VariantCounters


class Basis(enum.StrEnum):
    EXPOSED_UNITS = "exposed_units"
    ASSIGNED_UNITS = "assigned_units"
    EXPOSURES = "exposures"
    NONE = "none"


UNIT_BASES = frozenset({Basis.EXPOSED_UNITS, Basis.ASSIGNED_UNITS})


@dataclass(frozen=True, slots=True)
class MetricSummary:
    count: int
    units: int
    sum: float
    sum_squares: float
    n: int
    basis: Basis
    mean: float | None
    variance: float | None
    conversions: int
    conversion_rate: float | None
    conversions_exceed_population: bool


@dataclass(frozen=True, slots=True)
class VariantData:
    key: str
    totals: MetricTotals
    counters: VariantCounters


@dataclass(frozen=True, slots=True)
class MetricPopulation:
    """One metric's summaries, in the variants' order, all on ``basis``; ``mixed`` explains, one
    sentence per problem, why the variants' data do not measure the same population."""

    basis: Basis
    summaries: tuple[MetricSummary, ...]
    mixed: tuple[str, ...]


def choose_basis(counters: Iterable[VariantCounters]) -> Basis:
    """Exposed units if any variant has some, else assigned units if any, else exposures."""
    found = list(counters)
    if any(c.unique_units > 0 for c in found):
        return Basis.EXPOSED_UNITS
    if any(c.assigned_units > 0 for c in found):
        return Basis.ASSIGNED_UNITS
    if any(c.exposures > 0 for c in found):
        return Basis.EXPOSURES
    return Basis.NONE


def population(counters: VariantCounters, basis: Basis | None = None) -> tuple[int, Basis]:
    """The variant's population on ``basis`` (by default the basis of this variant alone)."""
    basis = choose_basis([counters]) if basis is None else basis
    sizes = {
        Basis.EXPOSED_UNITS: counters.unique_units,
        Basis.ASSIGNED_UNITS: counters.assigned_units,
        Basis.EXPOSURES: counters.exposures,
        Basis.NONE: 0,
    }
    return sizes[basis], basis


def converted(totals: MetricTotals, basis: Basis) -> int:
    """Conversions counted against the population: converting units on a unit basis (conversion
    events when none of them carries a unit id), conversion events on an event-level basis."""
    if basis in UNIT_BASES and totals.units > 0:
        return totals.units
    return totals.count


def summarise(
    totals: MetricTotals, counters: VariantCounters, basis: Basis | None = None
) -> MetricSummary:
    """One variant's summary on ``basis`` (by default the basis of this variant alone; use
    ``summarise_variants`` to summarise an experiment's variants on one basis)."""
    n, basis = population(counters, basis)
    conversions = converted(totals, basis)
    mean = totals.sum / n if n > 0 else None
    variance = None
    if n >= 2:
        # Sample variance of per-unit totals; clipped at 0 against rounding in sum_squares.
        variance = max(0.0, (totals.sum_squares - totals.sum * totals.sum / n) / (n - 1))
    return MetricSummary(
        count=totals.count,
        units=totals.units,
        sum=totals.sum,
        sum_squares=totals.sum_squares,
        n=n,
        basis=basis,
        mean=mean,
        variance=variance,
        conversions=conversions,
        conversion_rate=conversions / n if n > 0 else None,
        conversions_exceed_population=conversions > n,
    )


def summarise_variants(variants: Sequence[VariantData]) -> MetricPopulation:
    """Every variant of one metric on the basis chosen once for all of them."""
    basis = choose_basis(v.counters for v in variants)
    summaries = tuple(summarise(v.totals, v.counters, basis) for v in variants)
    return MetricPopulation(basis, summaries, _mixed(variants, summaries, basis))


def summarise_metric(
    metric: str, variants: Sequence[str], counters: Mapping[str, VariantCounters]
) -> MetricPopulation:
    """``metric`` of the variants named (in that order) from their counters, on one basis."""
    data = []
    for key in variants:
        counts = counters.get(key, VariantCounters())
        data.append(VariantData(key, counts.metrics.get(metric, MetricTotals()), counts))
    return summarise_variants(data)


def _mixed(
    variants: Sequence[VariantData], summaries: Sequence[MetricSummary], basis: Basis
) -> tuple[str, ...]:
    if basis is Basis.NONE:
        return ()
    problems = []
    label = basis.value.replace("_", " ")
    for variant, summary in zip(variants, summaries, strict=True):
        c = variant.counters
        held = [
            f"{n} {what}"
            for n, what in (
                (c.assigned_units, "assigned units"),
                (c.exposures, "exposures"),
                (variant.totals.count, "conversions"),
            )
            if n > 0
        ]
        if summary.n == 0 and held:
            problems.append(f"{variant.key} has {' and '.join(held)} but no {label}")
    if basis in UNIT_BASES:
        by_unit = [v.key for v in variants if v.totals.units > 0]
        by_event = [v.key for v in variants if v.totals.count > 0 and v.totals.units == 0]
        if by_unit and by_event:
            problems.append(
                f"the conversions of {', '.join(by_event)} carry no unit ids while those of "
                f"{', '.join(by_unit)} do (converting units)"
            )
    return tuple(problems)
