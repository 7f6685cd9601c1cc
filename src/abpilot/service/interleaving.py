"""Interleaving experiments: merge two rankers' lists per impression, credit clicks, analyse.

Storage reuses the store's decision log, which is exactly the primitive interleaving needs: an
impression is a logged decision (id, unit, the shown items and their teams, the rankings' top
items, in ``context``) and a click is feedback with the event ``clicked:<position>`` (the item's
place in the shown list, so an event stays short whatever the item's length; older data holds
``click:<item>``, still read), recorded at most once per (impression, item) atomically on every
backend. The decision's successes and failures
count clicks on team A's and team B's items; the analysis reads the clicked items themselves
(``list_feedback``), which balanced interleaving's credit rule needs.

An impression's id is a hash of (experiment, unit, seed, rankings, length), and its coin flips are
seeded by that id, so a reload of the same request shows the same list under the same id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abpilot.domain.errors import DuplicateKey, NotFound, ValidationError
from abpilot.domain.experiment import Experiment, ExperimentType
from abpilot.domain.text import check_text
from abpilot.interleaving.analysis import InterleavingAnalysis, analyse_impressions, credit
from abpilot.interleaving.methods import Method, interleave
from abpilot.interleaving.options import MAX_LENGTH, InterleavingOptions, interleaving_options
from abpilot.service.events import check_running
from abpilot.service.lookup import ExperimentLookup
from abpilot.store.base import Decision, FeedbackOutcome

CONTEXT_KEY = "interleaving"
IMPRESSION = "impression"  # the arm of every impression (a decision of the log)
MAX_ITEMS = 1_000
CLICK = "click:"  # older events name the item
CLICKED = "clicked:"  # events name the item's position in the shown list


@dataclass(frozen=True, slots=True)
class Impression:
    impression_id: str
    experiment_id: str
    unit_id: str | None
    method: Method
    items: tuple[str, ...]
    teams: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClickResult:
    impression_id: str
    credited: int  # clicks newly counted
    repeated: int  # clicks already counted


def _ranking(value: Sequence[str], name: str) -> list[str]:
    if len(value) > MAX_ITEMS:
        raise ValidationError(f"{name} holds at most {MAX_ITEMS} items", field=name)
    for i, item in enumerate(value):
        check_text(item, field=f"{name}[{i}]", max_length=256)
    return list(value)


class InterleavingService:
    """Impressions, clicks and analysis of ``interleaving`` experiments."""

    def __init__(self, lookup: ExperimentLookup) -> None:
        self.lookup = lookup
        self.store = lookup.store

    def _experiment(self, experiment_ref: str) -> tuple[Experiment, InterleavingOptions]:
        exp = self.lookup.get(experiment_ref)
        if exp.type is not ExperimentType.INTERLEAVING:
            raise ValidationError(
                f"experiment '{exp.key}' is a {exp.type} experiment; impressions and clicks are "
                "for interleaving experiments",
                field="type",
            )
        return exp, interleaving_options(exp.settings, len(exp.variants))

    def interleave(
        self,
        experiment: str,
        *,
        unit_id: str | None,
        ranking_a: Sequence[str],
        ranking_b: Sequence[str],
        length: int | None = None,
        seed: str | None = None,
    ) -> Impression:
        exp, options = self._experiment(experiment)
        check_running(exp, "impressions are served")
        a, b = _ranking(ranking_a, "ranking_a"), _ranking(ranking_b, "ranking_b")
        if not a and not b:
            raise ValidationError("both rankings are empty: nothing to show", field="ranking_a")
        if unit_id is not None:
            check_text(unit_id, field="unit_id", max_length=256)
        if seed is not None:
            check_text(seed, field="seed", max_length=256)
        size = options.length if length is None else length
        if not 1 <= size <= MAX_LENGTH:
            raise ValidationError(f"length must be from 1 to {MAX_LENGTH}", field="length")
        identity = json.dumps([exp.id, unit_id, seed, a[:size], b[:size], size])
        impression_id = hashlib.sha256(identity.encode()).hexdigest()[:32]
        merged = interleave(
            options.method, a, b, size, np.random.default_rng(list(impression_id.encode()))
        )
        decision = Decision(
            id=impression_id,
            experiment_id=exp.id,
            unit_id=unit_id,
            context_key=CONTEXT_KEY,
            context={
                "items": json.dumps(merged.items),
                "teams": "".join(merged.teams),
                "ranking_a": json.dumps(a[:size]),
                "ranking_b": json.dumps(b[:size]),
            },
            arm=IMPRESSION,
            propensity=1.0,
            policy="interleaving",
            method=options.method.value,
            decided_at=self.lookup.clock(),
        )
        with contextlib.suppress(DuplicateKey):  # the same request again: already logged
            self.store.record_decision(decision)
        return Impression(
            impression_id, exp.id, unit_id, options.method, merged.items, merged.teams
        )

    def record_clicks(
        self, experiment: str, *, impression_id: str, items: Sequence[str]
    ) -> ClickResult:
        """Credit clicks on items of an impression; a repeated click on an item counts once."""
        exp, _ = self._experiment(experiment)
        check_running(exp, "clicks are accepted")
        check_text(impression_id, field="impression_id", max_length=100)
        decision = self.store.get_decision(exp.id, impression_id)
        if decision is None:
            raise NotFound(
                f"experiment '{exp.key}' has no impression '{impression_id[:100]}'",
                field="impression_id",
            )
        shown = json.loads(decision.context["items"])
        teams = dict(zip(shown, decision.context["teams"], strict=True))
        for i, item in enumerate(items):
            if item not in teams:
                raise ValidationError(
                    f"item '{str(item)[:100]}' was not shown in impression '{impression_id}'",
                    field=f"items[{i}]",
                )
        credited = 0
        now = self.lookup.clock()
        position = {item: i for i, item in enumerate(shown)}
        for item in dict.fromkeys(items):
            outcome = FeedbackOutcome.SUCCESS if teams[item] == "a" else FeedbackOutcome.FAILURE
            event = f"{CLICKED}{position[item]}"
            credited += self.store.apply_feedback(exp.id, impression_id, event, outcome, now)
        return ClickResult(impression_id, credited, len(items) - credited)

    def analyse(self, experiment: str, *, alpha: float = 0.05) -> InterleavingAnalysis:
        exp, _ = self._experiment(experiment)
        events: dict[str, list[str]] = {}
        for decision_id, event in self.store.list_feedback(exp.id):
            events.setdefault(decision_id, []).append(event)
        credits = []
        for d in self.store.list_decisions(exp.id):
            context = d.context
            shown = json.loads(context["items"])
            credits.append(
                credit(
                    Method(d.method),
                    shown,
                    list(context["teams"]),
                    json.loads(context["ranking_a"]),
                    json.loads(context["ranking_b"]),
                    _clicked_items(shown, events.get(d.id, [])),
                )
            )
        return analyse_impressions(credits, alpha=alpha)


def _clicked_items(shown: Sequence[str], events: Sequence[str]) -> set[str]:
    """The items an impression's click events name, by position (or by item, in older data)."""
    clicked = set()
    for event in events:
        if event.startswith(CLICKED):
            position = int(event[len(CLICKED) :])
            if 0 <= position < len(shown):
                clicked.add(shown[position])
        elif event.startswith(CLICK):
            clicked.add(event[len(CLICK) :])
    return clicked
