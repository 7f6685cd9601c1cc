"""The FeatureVisor companion: datafiles served with learned weights, fed by exposures and
conversions (docs/architecture.md §5).

Each feature with two or more variations in a datafile is a running ``bandit`` experiment of the
core service, keyed by a hash of (datafile path, feature key, variations), so its counters,
recalculation (and the scheduler), history and analysis are the same as any bandit's. A feature
whose variations change in a new build gets a new experiment (the old one is completed); one whose
variations stay keeps its learned weights.

Datafiles live in the store (namespace ``featurevisor``), so every worker and host serves the
same revision; a worker that sees a new build on disk writes it there. The served document is the
build with the feature's weight changes replayed into its ranges (``featurevisor.render``), its
revision ``<build revision>.<number of weight changes>``.

The SDKs must keep working while the store is down: each worker keeps the last document it
rendered per datafile (rendered once when a build is synced, then on every request) and serves it
while the store cannot be reached. A build seen on disk during an outage is written to the store
once it is back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from abpilot.domain.errors import (
    AbpilotError,
    Conflict,
    DuplicateKey,
    NotFound,
    StoreUnavailable,
    ValidationError,
)
from abpilot.domain.experiment import Experiment, ExperimentStatus, ExperimentType
from abpilot.domain.text import safe_text, text_problem
from abpilot.featurevisor.datafile import Datafile, Feature
from abpilot.featurevisor.registry import DiskRegistry, LoadedDatafile, LoadIssue, read_datafile
from abpilot.featurevisor.render import render
from abpilot.service.allocation import AllocationResult, RecalculationOutcome
from abpilot.service.companion_features import (
    METRIC,
    FeatureStats,
    experiment_key,
    feature_experiment,
    feature_stats,
    variant_keys,
    variations_of,
)
from abpilot.service.events import EventInput
from abpilot.service.lookup import ExperimentLookup
from abpilot.service.specs import check_unit_id
from abpilot.store.base import ApplyResult, Document, EventKind

NAMESPACE = "featurevisor"
log = logging.getLogger("abpilot.featurevisor")


class DatafileNotFound(NotFound):
    code = "datafile_not_found"


@dataclass(frozen=True, slots=True)
class ServedDatafile:
    path: str
    body: bytes
    etag: str
    revision: str


@dataclass(frozen=True, slots=True)
class _Entry:
    """A stored datafile, parsed, and the feature experiments it maps to."""

    document: Document
    parsed: Datafile
    raw: dict[str, Any]
    loaded_at: float


class FeatureExperiments(Protocol):
    """The experiment operations the companion runs its features on (``ExperimentService``
    has them)."""

    @property
    def lookup(self) -> ExperimentLookup: ...

    def list_experiments(
        self, status: ExperimentStatus | str | None = None
    ) -> list[Experiment]: ...

    def create_experiment(
        self,
        *,
        key: str | None = None,
        variants: Sequence[Mapping[str, Any]],
        name: str | None = None,
        type: ExperimentType | str | None = None,
        description: str = "",
        metrics: Sequence[Mapping[str, Any]] = (),
        settings: Mapping[str, Any] | None = None,
    ) -> Experiment: ...

    def start_experiment(self, experiment: str) -> Experiment: ...

    def end_experiment(self, experiment: str) -> Experiment: ...

    def record_events(self, events: Sequence[EventInput]) -> ApplyResult: ...

    def recalculate(self, experiment: str) -> RecalculationOutcome: ...

    def get_allocation(self, experiment: str) -> AllocationResult: ...


class Companion:
    """FeatureVisor Pilot-compatible operations on the experiment service."""

    def __init__(
        self,
        service: FeatureExperiments,
        datafiles_dir: Path | None,
        *,
        cache_seconds: float = 1.0,
    ) -> None:
        self.service = service
        self.lookup = service.lookup
        self.store = service.lookup.store
        self.disk = DiskRegistry(datafiles_dir) if datafiles_dir is not None else None
        self.cache_seconds = cache_seconds
        self._entries: dict[str, _Entry] = {}
        self._served: dict[tuple[str, int, tuple[int, ...]], ServedDatafile] = {}
        # path -> (when rendered, document): the fresh cache and the last known document.
        self._served_at: dict[str, tuple[float, ServedDatafile]] = {}
        self._stale: set[str] = set()  # paths served from the last known document right now
        self._unsynced: dict[str, LoadedDatafile] = {}  # builds the store has not taken yet
        self._lock = threading.Lock()

    # loading ---------------------------------------------------------------------------------

    def sync(self) -> list[str]:
        """Read new or changed datafiles from disk into the store, set up their features'
        experiments and render them (so this worker has a document to serve should the store
        become unreachable). Returns the paths that changed in the store.

        While the store cannot be reached, the builds not yet written are kept and written by a
        later call (the disk registry reports a build only once)."""
        if self.disk is None:
            return []
        pending = dict(self._unsynced)
        pending.update((loaded.path, loaded) for loaded in self.disk.scan(self.lookup.clock()))
        self._unsynced = pending
        changed = []
        for path, loaded in list(pending.items()):
            try:
                if self._put_build(loaded):
                    changed.append(path)
                self._ensure_experiments(loaded)
            except StoreUnavailable as error:
                log.warning(
                    "%d datafile(s) not synced yet, retried on the next poll: %s",
                    len(self._unsynced),
                    error.message,
                )
                return changed
            del self._unsynced[path]
            self._warm(path)
        return changed

    def _put_build(self, loaded: LoadedDatafile) -> bool:
        """Write a build into the store unless it holds it already; True when it was written."""
        stored = self.store.get_document(NAMESPACE, loaded.path)
        if stored is not None and stored.digest == loaded.digest:
            return False
        self.store.put_document(
            NAMESPACE, loaded.path, loaded.content, loaded.digest, self.lookup.clock()
        )
        return True

    def _warm(self, path: str) -> None:
        """Render ``path`` now, so that a last known document exists before the first request."""
        self._expire(path)  # render the build now, not the cached document
        try:
            self.datafile(path)
        except AbpilotError as error:
            log.warning("datafile %s could not be rendered yet: %s", path, error.message)

    @property
    def issues(self) -> list[LoadIssue]:
        return list(self.disk.issues.values()) if self.disk is not None else []

    def _ensure_experiments(self, loaded: LoadedDatafile) -> None:
        wanted = {}
        for feature in loaded.parsed.features.values():
            if feature.adaptive:
                wanted[feature.key] = self._ensure_feature(loaded.path, feature)
        for experiment in self.service.list_experiments(ExperimentStatus.RUNNING):
            origin = experiment.settings.get("featurevisor")
            if not isinstance(origin, Mapping) or origin.get("datafile") != loaded.path:
                continue
            if wanted.get(str(origin.get("feature"))) != experiment.key:
                self.service.end_experiment(experiment.id)  # its variations changed or it left

    def _ensure_feature(self, path: str, feature: Feature) -> str:
        key = experiment_key(path, feature)
        if self.store.get_experiment_id(key) is None:
            with contextlib.suppress(DuplicateKey):  # another worker created it first
                self._create_feature_experiment(key, path, feature)
        if self.lookup.get(key).status is ExperimentStatus.DRAFT:
            with contextlib.suppress(Conflict):  # another worker started it first
                self.service.start_experiment(key)
        return key

    def _create_feature_experiment(self, key: str, path: str, feature: Feature) -> None:
        self.service.create_experiment(**feature_experiment(key, path, feature))

    # serving ---------------------------------------------------------------------------------

    def paths(self) -> list[str]:
        return [d.key for d in self.store.list_documents(NAMESPACE)]

    def datafile(self, path: str) -> ServedDatafile:
        """The stored build of ``path`` with learned weights written in; while the store cannot
        be reached, the last document this worker rendered for ``path`` (StoreUnavailable when
        it has none)."""
        now = time.monotonic()
        hit = self._served_at.get(path)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        try:
            served = self._render(path)
        except StoreUnavailable as error:
            if hit is None:
                raise
            if path not in self._stale:
                self._stale.add(path)
                log.warning(
                    "serving the last known datafile %s (revision %s) while the store is "
                    "unavailable: %s",
                    path,
                    hit[1].revision,
                    error.message,
                )
            return hit[1]
        if path in self._stale:
            self._stale.discard(path)
            log.info("datafile %s is rendered from the store again", path)
        self._served_at[path] = (now, served)
        return served

    def _render(self, path: str) -> ServedDatafile:
        entry = self._entry(path)
        experiments = self._experiments(entry)
        history: dict[str, list[dict[str, float]]] = {}
        periods = []
        for feature, experiment in experiments.items():
            records = self.store.list_allocations(experiment.id)
            values = dict(variations_of(experiment))
            history[feature] = [
                {values[k]: w for k, w in r.weights.items() if k in values} for r in records
            ]
            periods.append(len(records))
        cache_key = (path, entry.document.version, tuple(periods))
        served = self._served.get(cache_key)
        if served is None:
            revision = f"{entry.parsed.revision}.{sum(periods)}"
            document = render(entry.raw, entry.parsed, history, revision)
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            served = ServedDatafile(path, body, etag, str(document.get("revision")))
            with self._lock:
                self._served = {k: v for k, v in self._served.items() if k[0] != path}
                self._served[cache_key] = served
        return served

    def _entry(self, path: str) -> _Entry:
        cached = self._entries.get(path)
        now = time.monotonic()
        if cached is not None and now - cached.loaded_at < self.cache_seconds:
            return cached
        # Text no file name can hold (NUL, a lone surrogate) names no served datafile: answered
        # as unknown before the store sees it, so every store answers the same.
        document = None if text_problem(path) else self.store.get_document(NAMESPACE, path)
        if document is None:
            raise DatafileNotFound(
                f"no datafile '{safe_text(path[:200])}' is served", field="datafile"
            )
        if cached is not None and cached.document.digest == document.digest:
            entry = _Entry(document, cached.parsed, cached.raw, now)
        else:
            loaded = read_datafile(path, document.content)
            entry = _Entry(document, loaded.parsed, json.loads(document.content), now)
        self._entries[path] = entry
        return entry

    def _experiments(self, entry: _Entry) -> dict[str, Experiment]:
        found = {}
        for feature in entry.parsed.features.values():
            if not feature.adaptive:
                continue
            experiment_id = self.store.get_experiment_id(
                experiment_key(entry.document.key, feature)
            )
            experiment = self.store.get_experiment(experiment_id) if experiment_id else None
            if experiment is not None:
                found[feature.key] = experiment
        return found

    # events ----------------------------------------------------------------------------------

    def expose(
        self,
        *,
        datafile: str,
        features: Mapping[str, str],
        unit_id: str | None = None,
        event_id: str | None = None,
    ) -> ApplyResult:
        return self._record(EventKind.EXPOSURE, datafile, features, unit_id, event_id)

    def convert(
        self,
        *,
        datafile: str,
        features: Mapping[str, str],
        unit_id: str | None = None,
        event_id: str | None = None,
    ) -> ApplyResult:
        return self._record(EventKind.CONVERSION, datafile, features, unit_id, event_id)

    def _record(
        self,
        kind: EventKind,
        datafile: str,
        features: Mapping[str, str],
        unit_id: str | None,
        event_id: str | None,
    ) -> ApplyResult:
        if not features:
            raise ValidationError("features must name at least one feature", field="features")
        if unit_id is not None:  # checked before the store looks its assignment up
            check_unit_id(unit_id)
        try:
            entry = self._entry(datafile)
        except DatafileNotFound as error:  # a name in the body, not the resource: 422
            raise ValidationError(error.message, field="datafile") from None
        experiments = self._experiments(entry)
        events = []
        for feature_key, value in features.items():
            where = f"features.{feature_key[:100]}"
            feature = entry.parsed.features.get(feature_key)
            if feature is None:
                raise ValidationError(
                    f"datafile '{datafile}' has no feature '{feature_key[:100]}'", field=where
                )
            if feature_key not in experiments:
                raise ValidationError(
                    f"feature '{feature_key}' has no variations to learn from (it needs two or "
                    "more and a rule that buckets among them)",
                    field=where,
                )
            if value not in feature.variations:
                raise ValidationError(
                    f"feature '{feature_key}' has no variation {str(value)[:100]!r} "
                    f"(variations: {', '.join(feature.variations)})",
                    field=where,
                )
            experiment = experiments[feature_key]
            variant = variant_keys(feature)[value]
            if unit_id is not None:
                stored = self.store.get_assignments(experiment.id, [unit_id]).get(unit_id)
                if stored is not None:
                    # Counted where the unit first was (intention to treat): a weight change may
                    # have moved the unit since, and its outcome belongs to its first variation.
                    variant = stored.variant
            events.append(
                EventInput(
                    kind,
                    experiment.id,
                    unit_id=unit_id,
                    variant=variant,
                    metric=METRIC if kind is EventKind.CONVERSION else None,
                    event_id=event_id,
                )
            )
        return self.service.record_events(events)

    # learning --------------------------------------------------------------------------------

    def experiments(self, datafile: str | None = None) -> list[Experiment]:
        """The running feature experiments (of one datafile)."""
        found = []
        for experiment in self.service.list_experiments(ExperimentStatus.RUNNING):
            origin = experiment.settings.get("featurevisor")
            if isinstance(origin, Mapping) and datafile in (None, origin.get("datafile")):
                found.append(experiment)
        return found

    def recalculate(self) -> list[RecalculationOutcome]:
        """Recalculate every feature now; one failing feature does not stop the others."""
        outcomes = []
        for experiment in self.experiments():
            try:
                outcomes.append(self.service.recalculate(experiment.id))
            except AbpilotError as error:
                outcomes.append(
                    RecalculationOutcome(
                        experiment.id, experiment.key, "failed", None, error.message
                    )
                )
        self._expire(*self._served_at)
        return outcomes

    def _expire(self, *paths: str) -> None:
        """Render ``paths`` again on their next request, keeping them as last known documents."""
        with self._lock:
            for path in paths:
                hit = self._served_at.get(path)
                if hit is not None:
                    self._served_at[path] = (float("-inf"), hit[1])

    def stats(self, datafile: str | None = None, feature: str | None = None) -> list[FeatureStats]:
        if datafile is not None:
            self._entry(datafile)  # 404 for an unknown datafile
        out = []
        for experiment in self.experiments(datafile):
            origin = experiment.settings["featurevisor"]
            if feature is not None and origin.get("feature") != feature:
                continue
            out.append(
                feature_stats(
                    experiment,
                    counters=self.store.get_counters(experiment.id),
                    allocation=self.service.get_allocation(experiment.id),
                    latest=self.store.latest_allocation(experiment.id),
                )
            )
        if feature is not None and not out:
            raise NotFound(f"no feature '{feature[:100]}' is learned", field="feature")
        return out
