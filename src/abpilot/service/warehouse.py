"""Warehouse-native analysis (issue 20), the service part: sources kept in the store's
documents and checked against the warehouse, refreshes run one at a time per experiment with a
timeout, and the latest refresh read as counters by the analysis (``core`` reads them through
``RefreshCounters`` instead of the store's counters for a ``"source": "warehouse"``
experiment, so both go through the same statistics).

The warehouse is ``WAREHOUSE_URL`` (any SQLAlchemy URL), opened on first use; without one,
the operations that need it answer 409 ``warehouse_unavailable``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abpilot.domain.errors import AbpilotError, NotFound, ValidationError
from abpilot.domain.experiment import Experiment, ExperimentStatus
from abpilot.domain.text import check_text
from abpilot.service.lookup import ExperimentLookup
from abpilot.service.warehouse_runs import checked_plan, record_daily_totals
from abpilot.warehouse.counters import RefreshCounters
from abpilot.warehouse.engine import (
    WarehouseError,
    WarehouseUnavailable,
    check_types,
    describe,
    open_engine,
    run,
    safe_url,
)
from abpilot.warehouse.plan import Row
from abpilot.warehouse.refresh import (
    FAILURES,
    REFRESHES,
    SOURCES,
    Failure,
    Refresh,
    latest_failure,
    latest_refresh,
)
from abpilot.warehouse.spec import (
    Source,
    SourceKind,
    WarehouseOptions,
    is_warehouse,
    source_from,
    warehouse_options,
)

log = logging.getLogger("abpilot.warehouse")
DEFAULT_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """A source as the warehouse sees it: its columns, the Python types of a sample, and the
    problem found (None when the source is usable)."""

    source: Source
    columns: tuple[str, ...] = ()
    types: Mapping[str, str] | None = None
    problem: str | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshState:
    """An experiment's latest refresh (None before the first success) and latest failure (None
    when the last refresh succeeded)."""

    experiment_id: str
    refresh: Refresh | None
    failure: Failure | None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class WarehouseService:
    """Sources, checks and refreshes on ``lookup``'s store against the warehouse at ``url``."""

    def __init__(
        self,
        lookup: ExperimentLookup,
        *,
        url: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.lookup = lookup
        self.store = lookup.store
        self.url = url
        self.timeout_seconds = timeout_seconds
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._running: set[str] = set()
        self._running_lock = threading.Lock()

    # the warehouse ---------------------------------------------------------------------------

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def engine(self) -> Any:
        if not self.url:
            raise WarehouseUnavailable(
                "no warehouse is configured: set WAREHOUSE_URL (a SQLAlchemy URL such as "
                "duckdb:///path.duckdb)",
                field="WAREHOUSE_URL",
            )
        with self._engine_lock:
            if self._engine is None:
                self._engine = open_engine(self.url)
                log.info("warehouse: %s", safe_url(self.url))
            return self._engine

    def close(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # sources ---------------------------------------------------------------------------------

    def put_source(self, raw: Mapping[str, Any], *, where: str = "") -> Source:
        """Create or replace a source after running its query with no row in the warehouse
        (a missing column or a failing query is a 422 naming it; nothing is stored then)."""
        source = source_from(raw, where)
        describe(self.engine(), source, field=f"{where}sql")
        content = _json(source.to_json())
        self.store.put_document(
            SOURCES, source.name, content, _digest(content), self.lookup.clock()
        )
        return source

    def put_sources(self, raws: Iterable[Mapping[str, Any]]) -> list[Source]:
        """Several sources: all checked first, then all stored."""
        checked = [source_from(raw, f"sources[{i}].") for i, raw in enumerate(raws)]
        engine = self.engine()
        for i, source in enumerate(checked):
            describe(engine, source, field=f"sources[{i}].sql")
        for source in checked:
            content = _json(source.to_json())
            self.store.put_document(
                SOURCES, source.name, content, _digest(content), self.lookup.clock()
            )
        return checked

    def load_file(self, path: Path) -> list[Source]:
        """The sources of a YAML file (``sources:`` a list of sources), stored."""
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ValidationError(
                f"cannot read the sources file {path}: {str(error)[:300]}", field="sources"
            ) from None
        raws = data.get("sources") if isinstance(data, Mapping) else None
        if not isinstance(raws, list):
            raise ValidationError(
                f"the sources file {path} must hold 'sources:', a list of sources",
                field="sources",
            )
        return self.put_sources(raws)

    def list_sources(self) -> list[Source]:
        return [_source(d.content) for d in self.store.list_documents(SOURCES)]

    def get_source(self, name: str) -> Source:
        check_text(name, field="source", max_length=100)
        found = self.store.get_document(SOURCES, name)
        if found is None:
            raise NotFound(f"no warehouse source '{name[:100]}'", field="source")
        return _source(found.content)

    def delete_source(self, name: str) -> None:
        check_text(name, field="source", max_length=100)
        if not self.store.delete_document(SOURCES, name):
            raise NotFound(f"no warehouse source '{name[:100]}'", field="source")

    def check(self, name: str | None = None) -> list[SourceCheck]:
        """Every source (or the one named) against the warehouse: columns present, and the
        types of a sample usable (``timestamp`` a time, the value columns metrics read
        numbers). Problems are reported, not raised."""
        sources = [self.get_source(name)] if name is not None else self.list_sources()
        value_columns = self._value_columns()
        engine = self.engine()
        found = []
        for source in sources:
            try:
                columns = describe(engine, source)
                values = sorted(value_columns.get(source.name, set()))
                missing = [c for c in values if c.lower() not in {x.lower() for x in columns}]
                if missing:
                    raise WarehouseError(
                        f"source '{source.name}' has no column '{missing[0]}', which a metric "
                        "reads",
                        field=f"columns.{missing[0]}",
                    )
                types = check_types(engine, source, values)
                found.append(SourceCheck(source, columns, types))
            except AbpilotError as error:
                found.append(SourceCheck(source, problem=error.message, field=error.field))
        return found

    def _value_columns(self) -> dict[str, set[str]]:
        """The value columns each fact source's metrics read, over every experiment."""
        found: dict[str, set[str]] = {}
        for exp in self.store.list_experiments():
            if is_warehouse(exp.settings):
                for spec in _options(exp).metrics.values():
                    if spec.column:
                        found.setdefault(spec.fact_source, set()).add(spec.column)
        return found

    # refreshes -------------------------------------------------------------------------------

    def refresh(self, experiment: str) -> Refresh:
        """Run the experiment's plan in the warehouse and store its aggregates as the latest
        refresh. One at a time per experiment (a second one meanwhile is a 409); a failure is
        recorded with its reason, keeps the previous refresh, and is raised."""
        exp = self.lookup.get(experiment)
        options = self._options_of(exp)
        with self._running_lock:
            if exp.id in self._running:
                raise WarehouseUnavailable(
                    f"a refresh of '{exp.key}' is already running", field="experiment_id"
                )
            self._running.add(exp.id)
        lease = self.store.try_lead(f"warehouse-refresh-{exp.id}", self.timeout_seconds + 60)
        try:
            if lease is None:
                raise WarehouseUnavailable(
                    f"a refresh of '{exp.key}' is already running (on another worker)",
                    field="experiment_id",
                )
            try:
                done = self._run_refresh(exp, options)
            except AbpilotError as error:
                failure = Failure(
                    exp.id, self.lookup.clock(), error.code, error.message, error.field
                )
                content = failure.to_json()
                self.store.put_document(
                    FAILURES, exp.id, content, _digest(content), failure.failed_at
                )
                log.warning("warehouse refresh of %s failed: %s", exp.key, error.message)
                raise
            content = done.to_json()
            self.store.put_document(REFRESHES, exp.id, content, _digest(content), done.refreshed_at)
            self.store.delete_document(FAILURES, exp.id)
            return done
        finally:
            if lease is not None:
                lease.release()
            with self._running_lock:
                self._running.discard(exp.id)

    def start_refresh(self, experiment: str) -> str:
        """Start a refresh in a thread of this process, off the caller's path; the experiment's
        id. A refresh already running here is a 409 at once; its outcome (the refresh, or the
        failure) is in ``state`` when it ends."""
        exp = self.lookup.get(experiment)
        self._options_of(exp)
        with self._running_lock:
            if exp.id in self._running:
                raise WarehouseUnavailable(
                    f"a refresh of '{exp.key}' is already running", field="experiment_id"
                )

        def work() -> None:
            try:
                self.refresh(exp.id)
            except AbpilotError:
                pass  # recorded as the experiment's failure by ``refresh``
            except Exception:  # the thread must not die silently
                log.exception("warehouse refresh of %s failed", exp.key)

        threading.Thread(target=work, name=f"warehouse-refresh-{exp.key}", daemon=True).start()
        return exp.id

    def _options_of(self, exp: Experiment) -> WarehouseOptions:
        if not is_warehouse(exp.settings):
            raise ValidationError(
                f"experiment '{exp.key}' is analysed from the events it ingests, not from the "
                "warehouse (create it with source 'warehouse')",
                field="source",
            )
        return _options(exp)

    def _run_refresh(self, exp: Experiment, options: WarehouseOptions) -> Refresh:
        engine = self.engine()
        started = time.monotonic()
        sql: list[str] = []
        parameters: dict[str, Any] = {}
        rows: tuple[Row, ...] = ()
        if options.assignment_source is not None:
            statement = checked_plan(engine, exp, options, self._source_of)
            compiled = statement.compile(engine)
            sql.append(str(compiled))
            parameters.update({k: _plain(v) for k, v in compiled.params.items()})
            raw_rows = run(
                engine,
                statement,
                timeout_seconds=self.timeout_seconds,
                what=f"the refresh of '{exp.key}'",
            )
            rows = tuple(Row.read(r) for r in raw_rows)
        daily_rows, days = 0, tuple[str, ...]()
        if options.daily_source is not None:
            source = self._source_of(options.daily_source, SourceKind.DAILY, "daily_source")
            daily_rows, days, daily_sql = record_daily_totals(
                engine,
                exp,
                source,
                timeout_seconds=max(1.0, self.timeout_seconds - (time.monotonic() - started)),
                stored=self.store.get_daily_metrics(exp.id),
                record=self.lookup.allocator.record_daily,
            )
            sql.append(daily_sql)
        return Refresh(
            experiment_id=exp.id,
            refreshed_at=self.lookup.clock(),
            seconds=time.monotonic() - started,
            sql=";\n".join(sql),
            parameters=parameters,
            rows=rows,
            dialect=engine.dialect.name,
            daily_rows=daily_rows,
            daily_days=days,
            dimensions=options.dimensions,
        )

    def _source_of(self, name: str, kind: SourceKind, field: str) -> Source:
        found = self.store.get_document(SOURCES, name)
        if found is None:
            raise WarehouseError(f"no warehouse source '{name}'", field=field)
        source = _source(found.content)
        if source.kind is not kind:
            raise WarehouseError(
                f"source '{name}' is a {source.kind.value} source; {field} names a "
                f"{kind.value} source",
                field=field,
            )
        return source

    def state(self, experiment: str) -> RefreshState:
        exp = self.lookup.get(experiment)
        self._options_of(exp)
        return RefreshState(exp.id, self.latest(exp.id), self._failure(exp.id))

    def latest(self, experiment_id: str) -> Refresh | None:
        return latest_refresh(self.store, experiment_id)

    def _failure(self, experiment_id: str) -> Failure | None:
        return latest_failure(self.store, experiment_id)

    def counters(self, exp: Experiment) -> RefreshCounters:
        """What the analysis of a warehouse experiment reads: its latest refresh."""
        return RefreshCounters(self.store, self.latest(exp.id))

    def refresh_running(self) -> list[tuple[str, str | None]]:
        """The scheduler's job: refresh every running warehouse experiment; one failing does
        not stop the others. (key, error message or None) per experiment."""
        if not self.configured:
            return []
        outcomes: list[tuple[str, str | None]] = []
        for exp in self.store.list_experiments(ExperimentStatus.RUNNING):
            if not is_warehouse(exp.settings):
                continue
            try:
                self.refresh(exp.id)
                outcomes.append((exp.key, None))
            except AbpilotError as error:
                outcomes.append((exp.key, error.message))
        return outcomes


def _options(exp: Experiment) -> WarehouseOptions:
    return warehouse_options(exp.settings, exp.metrics, exp.dimensions)


def _source(content: str) -> Source:
    import json

    return source_from(json.loads(content))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)
