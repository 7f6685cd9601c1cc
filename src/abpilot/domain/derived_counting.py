"""The counting rules of issue 18, run by ``count_events`` for experiments with rules
(``EventRecord.rules``): unit facts, covariate sums, capped totals, ratio cross sums and
segments, all through the same primitives (the stores get no new rule). Names of the cells
are ``abpilot.domain.derived``'s.

8. **Unit facts at first exposure.** The exposure that marks a unit exposed stores its
   covariates (those a metric uses) and, per declared dimension, its segment; later exposures'
   facts are ignored (first wins, like the assignment). A missing covariate counts as 0.
9. **Covariate sums.** A newly exposed unit adds 1, x and x² to ``~x:<cov>`` of its assignment.
10. **Cross sums.** A unit's total of a metric with a covariate growing by v adds v·x; a unit
    newly exposed adds t·x for its total t so far (it converted before its first exposure).
    A binary metric's y is 1 once the unit converted (0/1 per unit, as the analysis reads its
    converting units): its first conversion adds x, later ones nothing, whatever their values.
11. **Absolute caps.** A total going from t to T adds min(T,c) − min(t,c) and
    min(T,c)² − min(t,c)²; with a covariate, (min(T,c) − min(t,c))·x to ``~cxy`` (a unit newly
    exposed adds min(t,c)·x for its total t so far).
12. **Ratio cross sums.** A unit moving from (N, D) to (N + a, D + b) adds aD + bN + ab (the
    partner's before-total is read even when it has no delta).
13. **Segments.** A unit's every increment (exposures, unique unit, metric totals, derived sums)
    is also added to its segment cell of each declared dimension; at its first exposure its
    totals so far join the segment. A dimension's first ``MAX_SEGMENTS`` values (admitted in
    the order stores count them) get a slot each, the rest the slot of ``other``: a value's row
    counts its admissions, a per-dimension row counts the slots taken, both read and added in
    the step (locked rows in SQL, checked fields in Redis, the lock in memory).

All unit rows a step reads are added in ONE ``add_unit_totals`` call (deltas, and zero deltas
to read), sorted, so SQL locks them in one order and concurrent steps stay exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from abpilot.domain import derived as cells
from abpilot.domain.increments import (
    CounterIncrements,
    CountingStep,
    UnitKey,
    UnitMetricKey,
    UnitTotals,
    VariantKey,
    unit_increment,
)
from abpilot.domain.inputs import EventKind
from abpilot.domain.records import EventRecord, MetricTotals, StoredAssignment
from abpilot.domain.rules import ExperimentRules

ZERO = UnitTotals()
Contribution = tuple[str, MetricTotals, bool]  # (inner cell, increment, also to the variant)


def _backfill(rules: ExperimentRules) -> tuple[str, ...]:
    """The metrics whose totals so far a newly exposed unit reads: all when it joins segments,
    else those with a covariate."""
    return rules.metrics if rules.dimensions else tuple(sorted(rules.covariates))


def derived_keys(events: Sequence[EventRecord]) -> set[UnitMetricKey]:
    """Every unit row the rules may read for ``events`` (a superset): what Redis fetches."""
    keys: set[UnitMetricKey] = set()
    for e in events:
        rules, unit = e.rules, e.unit_id
        if rules is None or rules.empty or unit is None:
            continue
        exp = e.experiment_id
        keys.update((exp, unit, cells.dimension_fact(d)) for d in rules.dimensions)
        if e.kind is EventKind.EXPOSURE:
            keys.update((exp, unit, cells.covariate_cell(c)) for c in rules.covariate_names)
            keys.update((exp, unit, m) for m in _backfill(rules))
            for dim, value in (e.dimensions or {}).items():
                if dim in rules.dimensions:
                    keys.add((exp, value, cells.value_row(dim)))
                    keys.add((exp, cells.short(dim), cells.SLOTS))
        else:
            metric = e.metric or ""
            if metric in rules.covariates:
                keys.add((exp, unit, cells.covariate_cell(rules.covariates[metric])))
            keys.update((exp, unit, p) for p in rules.partners(metric))
    return keys


@dataclass(slots=True)
class DerivedCounting:
    """One batch's derived counting: ``read`` does the batch's single unit-totals call (the
    deltas given and every row the rules read), ``add_to`` adds the derived increments."""

    rules: Mapping[str, ExperimentRules]
    assignments: Mapping[UnitKey, StoredAssignment]
    newly: set[UnitKey]
    created: frozenset[UnitKey] | set[UnitKey]
    first: dict[UnitKey, EventRecord] = field(default_factory=dict)
    exposures: dict[UnitKey, int] = field(default_factory=dict)
    slots: dict[tuple[str, str, str], int] = field(default_factory=dict)
    names: list[tuple[VariantKey, str]] = field(default_factory=list)
    before: dict[UnitMetricKey, UnitTotals] = field(default_factory=dict)

    def read(
        self,
        step: CountingStep,
        fresh: Sequence[EventRecord],
        deltas: Mapping[UnitMetricKey, UnitTotals],
    ) -> dict[UnitMetricKey, UnitTotals]:
        for e in fresh:
            if (
                e.kind is EventKind.EXPOSURE
                and e.unit_id is not None
                and e.experiment_id in self.rules
            ):
                unit = (e.experiment_id, e.unit_id)
                self.first.setdefault(unit, e)
                self.exposures[unit] = self.exposures.get(unit, 0) + 1
        self._admit(step)
        rows: dict[UnitMetricKey, UnitTotals] = dict(deltas)
        zero = ZERO
        for unit in sorted(self.newly):
            rules = self.rules.get(unit[0])
            if rules is None:
                continue
            exp, unit_id = unit
            event = self.first[unit]
            for cov in rules.covariate_names:
                x = (event.covariates or {}).get(cov)
                if x is not None:
                    rows[(exp, unit_id, cells.covariate_cell(cov))] = UnitTotals(1, float(x))
            for dim in rules.dimensions:
                slot = self._slot(unit, dim)
                if slot is not None:
                    rows[(exp, unit_id, cells.dimension_fact(dim))] = UnitTotals(1, float(slot))
            if unit not in self.created:
                for metric in _backfill(rules):
                    rows.setdefault((exp, unit_id, metric), zero)
        touched = {(k[0], k[1]) for k in deltas} | set(self.exposures)
        for unit in touched - self.newly:
            rules = self.rules.get(unit[0])
            if rules is not None:
                for dim in rules.dimensions:
                    rows.setdefault((*unit, cells.dimension_fact(dim)), zero)
        for exp, unit_id, metric in list(deltas):
            rules = self.rules.get(exp)
            if rules is None:
                continue
            if metric in rules.covariates and (exp, unit_id) not in self.newly:
                cov = cells.covariate_cell(rules.covariates[metric])
                rows.setdefault((exp, unit_id, cov), zero)
            for partner in rules.partners(metric):
                rows.setdefault((exp, unit_id, partner), zero)
        self.before = step.add_unit_totals(dict(sorted(rows.items())))
        return self.before

    def _slot(self, unit: UnitKey, dim: str) -> int | None:
        value = (self.first[unit].dimensions or {}).get(dim)
        return None if value is None else self.slots[(unit[0], dim, value)]

    def _admit(self, step: CountingStep) -> None:
        """Give every dimension value of the newly exposed units its slot (rule 13)."""
        wanted: dict[tuple[str, str, str], VariantKey] = {}
        for unit in sorted(self.newly):
            rules = self.rules.get(unit[0])
            if rules is None or not rules.dimensions:
                continue
            for dim, value in sorted((self.first[unit].dimensions or {}).items()):
                if dim in rules.dimensions:
                    wanted.setdefault((unit[0], dim, value), (unit[0], *self.assignments[unit]))
        if not wanted:
            return
        rows = {(e, v, cells.value_row(d)): (e, d, v) for e, d, v in wanted}
        before = step.add_unit_totals({k: UnitTotals(1, 0.0) for k in sorted(rows)})
        new: dict[tuple[str, str], list[str]] = {}
        for key, (exp, dim, value) in rows.items():
            if before[key].count > 0:
                self.slots[(exp, dim, value)] = int(before[key].total) - 1
            else:
                new.setdefault((exp, dim), []).append(value)
        if not new:
            return
        counters = {(e, cells.short(d), cells.SLOTS): (e, d) for e, d in new}
        taken = step.add_unit_totals(
            {k: UnitTotals(len(new[counters[k]]), 0.0) for k in sorted(counters)}
        )
        marks: dict[UnitMetricKey, UnitTotals] = {}
        for key, (exp, dim) in counters.items():
            limit = self.rules[exp].segments
            for i, value in enumerate(sorted(new[(exp, dim)])):
                slot = taken[key].count + i
                slot = slot if slot < limit else cells.OTHER_SLOT
                self.slots[(exp, dim, value)] = slot
                marks[(exp, value, cells.value_row(dim))] = UnitTotals(0, float(slot + 1))
                if slot != cells.OTHER_SLOT:
                    name = cells.value_name_cell(dim, slot, value)
                    self.names.append((wanted[(exp, dim, value)], name))
        step.add_unit_totals(dict(sorted(marks.items())))

    def add_to(
        self,
        increments: CounterIncrements,
        unit_deltas: Mapping[UnitMetricKey, tuple[VariantKey, UnitTotals]],
    ) -> None:
        """Add the derived increments (rules 9 to 13) to ``increments``."""
        before = self.before
        for vkey, name in self.names:
            increments.add_metric((*vkey, name), MetricTotals(count=1))
        per_unit: dict[UnitKey, list[Contribution]] = {}
        vkeys: dict[UnitKey, VariantKey] = {}
        for (exp, unit_id, metric), (vkey, delta) in unit_deltas.items():
            rules = self.rules.get(exp)
            if rules is None:
                continue
            unit = (exp, unit_id)
            vkeys.setdefault(unit, vkey)
            out = per_unit.setdefault(unit, [])
            old = before[(exp, unit_id, metric)]
            out.append((cells.metric_inner(metric), unit_increment(old, delta), False))
            if metric in rules.covariates:
                x = self._covariate(unit, rules.covariates[metric])
                y = _cross_y(metric, rules, old, delta)
                out.append((cells.cross_cell(metric), MetricTotals(sum=y * x), True))
            if metric in rules.caps:
                capped = _capped(old, delta, rules.caps[metric])
                out.append((cells.capped_cell(metric), capped, True))
                if metric in rules.covariates:
                    x = self._covariate(unit, rules.covariates[metric])
                    cross = MetricTotals(sum=capped.sum * x)
                    out.append((cells.capped_cross_cell(metric), cross, True))
        for unit, out in per_unit.items():
            self._ratios(unit, out, unit_deltas)
        for unit in self.newly:
            rules = self.rules.get(unit[0])
            if rules is None:
                continue
            vkeys[unit] = (unit[0], *self.assignments[unit])
            out = per_unit.setdefault(unit, [])
            for cov in rules.covariate_names:
                x = self._covariate(unit, cov)
                out.append((cells.covariate_cell(cov), MetricTotals(0, 1, x, x * x), True))
            if unit not in self.created:
                self._backfill(unit, rules, out)
        for unit, n in self.exposures.items():
            vkeys.setdefault(unit, (unit[0], *self.assignments[unit]))
            units = 1 if unit in self.newly else 0
            per_unit.setdefault(unit, []).append((cells.EXPOSURES, MetricTotals(n, units), False))
        for unit, out in per_unit.items():
            vkey, segments = vkeys[unit], self._segments(unit)
            for inner, totals, overall in out:
                if overall:
                    increments.add_metric((*vkey, inner), totals)
                for dim, slot in segments:
                    increments.add_metric((*vkey, cells.segment_cell(dim, slot, inner)), totals)

    def _covariate(self, unit: UnitKey, cov: str) -> float:
        if unit in self.newly:
            return float((self.first[unit].covariates or {}).get(cov, 0.0))
        found = self.before.get((*unit, cells.covariate_cell(cov)))
        return float(found.total) if found is not None and found.count > 0 else 0.0

    def _segments(self, unit: UnitKey) -> list[tuple[str, int]]:
        rules = self.rules[unit[0]]
        found = []
        for dim in rules.dimensions:
            if unit in self.newly:
                slot = self._slot(unit, dim)
            else:
                fact = self.before.get((*unit, cells.dimension_fact(dim)))
                slot = int(fact.total) if fact is not None and fact.count > 0 else None
            if slot is not None:
                found.append((dim, slot))
        return found

    def _ratios(
        self,
        unit: UnitKey,
        out: list[Contribution],
        unit_deltas: Mapping[UnitMetricKey, tuple[VariantKey, UnitTotals]],
    ) -> None:
        exp, unit_id = unit
        zero = ZERO
        for ratio, (num, den) in self.rules[exp].ratios.items():
            n_key, d_key = (exp, unit_id, num), (exp, unit_id, den)
            if n_key not in unit_deltas and d_key not in unit_deltas:
                continue
            a = unit_deltas[n_key][1].total if n_key in unit_deltas else 0.0
            b = unit_deltas[d_key][1].total if d_key in unit_deltas else 0.0
            n, d = self.before.get(n_key, zero).total, self.before.get(d_key, zero).total
            out.append((cells.ratio_cell(ratio), MetricTotals(sum=a * d + b * n + a * b), True))

    def _backfill(self, unit: UnitKey, rules: ExperimentRules, out: list[Contribution]) -> None:
        """A unit exposed after converting: its totals so far join its segments, and t·x its
        cross sums (rules 10 and 13)."""
        prior = {m: self.before.get((*unit, m), ZERO) for m in _backfill(rules)}
        for metric, old in prior.items():
            if old.count == 0:
                continue
            t = old.total
            out.append((cells.metric_inner(metric), MetricTotals(old.count, 1, t, t * t), False))
            if metric in rules.covariates:
                x = self._covariate(unit, rules.covariates[metric])
                y = _cross_y(metric, rules, ZERO, old)
                out.append((cells.cross_cell(metric), MetricTotals(sum=y * x), True))
            if metric in rules.caps:
                capped = min(t, rules.caps[metric])
                totals = MetricTotals(old.count, 1, capped, capped * capped)
                out.append((cells.capped_cell(metric), totals, False))
                if metric in rules.covariates:
                    x = self._covariate(unit, rules.covariates[metric])
                    cross = MetricTotals(sum=capped * x)
                    out.append((cells.capped_cross_cell(metric), cross, True))
        if rules.dimensions:
            for ratio, (num, den) in rules.ratios.items():
                n, d = prior.get(num), prior.get(den)
                if n is not None and d is not None:
                    value = n.total * d.total
                    out.append((cells.ratio_cell(ratio), MetricTotals(sum=value), False))


def _cross_y(metric: str, rules: ExperimentRules, before: UnitTotals, delta: UnitTotals) -> float:
    """What a unit's y grows by when its totals of an adjusted ``metric`` go from ``before`` by
    ``delta`` (rule 10): the values' sum, or for a binary metric 1 at its first conversion."""
    if metric in rules.binary:
        return 1.0 if before.count == 0 and delta.count > 0 else 0.0
    return delta.total


def _capped(before: UnitTotals, delta: UnitTotals, cap: float) -> MetricTotals:
    t, total = before.total, before.total + delta.total
    low, high = min(t, cap), min(total, cap)
    return MetricTotals(
        count=delta.count,
        units=1 if before.count == 0 else 0,
        sum=high - low,
        sum_squares=high * high - low * low,
    )
