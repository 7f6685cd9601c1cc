"""``abpilot.Client``: the service's verbs over HTTP, for programs that talk to a running server.

Every verb returns the server's JSON as plain Python (a ``dict``; a ``list`` of them for lists;
``None`` for deletes and ``ready``), the bodies the REST API documents. Errors arrive typed (see
``abpilot.client_errors``): the domain error of the body's ``code``, ``ClientAuthError`` for 401 and
403, ``ServiceUnavailable`` when the server cannot be reached, ``ClientError`` for anything else.

Retries (``retries`` times, after ``backoff`` * 1, 2, 4, ... seconds) follow a failed connection, a
timeout or a 502/503/504, only where resending cannot count anything twice: reads, status changes,
deletes, assignment, daily intake, interleaving, clicks, feedback (applied once per decision and
event) and event posts. Every exposure and conversion carries an ``event_id`` (the client makes a
UUID when the caller gives none), so a resent event is acknowledged as a duplicate. Creating or
changing an experiment, deciding and recalculating are never resent, except after a failed
connection (the request never left).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import httpx

from abpilot.client_errors import (
    RETRY_STATUSES,
    ClientAuthError,
    ClientError,
    ServiceUnavailable,
    error_from,
)
from abpilot.domain.inputs import DailyInput, EventInput, aliased
from abpilot.version import __version__

__all__ = ["Client", "ClientAuthError", "ClientError", "ServiceUnavailable"]

API_PREFIX = "/api/v1"
JSON = dict[str, Any]


def _at(experiment_ref: str, suffix: str = "") -> str:
    """The path of an experiment (by id or key) or of one of its routes."""
    return f"/experiments/{quote(experiment_ref, safe='')}{suffix}"


def _time(value: datetime | date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, date) else value


def _dropped_none(**fields: Any) -> JSON:
    return {k: v for k, v in fields.items() if v is not None}


def _event(event: EventInput | Mapping[str, Any]) -> JSON:
    """An event in the REST batch shape, with an ``event_id`` (a new UUID if it had none)."""
    if isinstance(event, EventInput):
        body = asdict(event)
        body["type"] = event.kind.value
        body["experiment_id"] = body.pop("experiment")
        del body["kind"]
    else:
        body = dict(event)
    body["timestamp"] = _time(body.get("timestamp"))
    if body.get("event_id") is None:
        body["event_id"] = str(uuid.uuid4())
    return _dropped_none(**body)


class Client:
    """A synchronous client of a running abpilot server (``base_url`` is its root, e.g.
    ``http://localhost:8000``). Use it as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {base_url!r})")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more (got {retries})")
        if backoff < 0:
            raise ValueError(f"backoff must be 0 or more seconds (got {backoff})")
        headers = {"User-Agent": f"abpilot-client/{__version__}"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # transport -------------------------------------------------------------------------------

    def _send(
        self, method: str, url: str, *, retry: bool, body: Any = None, params: JSON | None = None
    ) -> tuple[httpx.Response, bool]:
        """The response, and whether the request was sent more than once."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, url, json=body, params=params)
            except httpx.TransportError as error:
                never_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt < self.retries and (retry or never_sent):
                    attempt = self._wait(attempt)
                    continue
                outcome = "" if never_sent else " (it may or may not have been applied)"
                raise ServiceUnavailable(
                    f"{method} {url} failed after {attempt + 1} attempt(s){outcome}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if retry and response.status_code in RETRY_STATUSES and attempt < self.retries:
                attempt = self._wait(attempt)
                continue
            return response, attempt > 0

    def _wait(self, attempt: int) -> int:
        time.sleep(self.backoff * 2**attempt)
        return attempt + 1

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if not response.is_success:
            raise error_from(response)
        return None if response.status_code == 204 else response.json()

    def _call(
        self, method: str, path: str, *, retry: bool, body: Any = None, params: JSON | None = None
    ) -> JSON:
        """A call under ``/api/v1`` that answers a JSON object."""
        response, _ = self._send(method, API_PREFIX + path, retry=retry, body=body, params=params)
        found: JSON = self._json(response)
        return found

    def _call_list(
        self, method: str, path: str, *, retry: bool, params: JSON | None = None
    ) -> list[JSON]:
        response, _ = self._send(method, API_PREFIX + path, retry=retry, params=params)
        found: list[JSON] = self._json(response)
        return found

    # experiments -----------------------------------------------------------------------------

    def create_experiment(
        self,
        *,
        key: str | None = None,
        variants: Sequence[Mapping[str, Any]],
        name: str | None = None,
        type: str | None = None,
        description: str = "",
        traffic_allocation: float = 1.0,
        metrics: Sequence[Mapping[str, Any]] = (),
        salt: str | None = None,
        settings: Mapping[str, Any] | None = None,
        experiment_type: str | None = None,
        dimensions: Sequence[str] | None = None,
    ) -> JSON:
        """Never resent on a 503 or a timeout: it may have been created. Without ``key`` the
        server makes one from ``name``; ``experiment_type`` is an alias of ``type``."""
        body = _dropped_none(
            key=key,
            name=name,
            type=type,
            experiment_type=experiment_type,
            description=description,
            traffic_allocation=traffic_allocation,
            variants=[dict(v) for v in variants],
            metrics=[dict(m) for m in metrics],
            salt=salt,
            settings=dict(settings or {}),
            dimensions=None if dimensions is None else list(dimensions),
        )
        return self._call("POST", "/experiments", retry=False, body=body)

    def get_experiment(self, experiment: str) -> JSON:
        """By id or key."""
        return self._call("GET", _at(experiment), retry=True)

    def list_experiments(self, status: str | None = None) -> list[JSON]:
        return self._call_list(
            "GET", "/experiments", retry=True, params=_dropped_none(status=status)
        )

    def update_experiment(
        self,
        experiment: str,
        *,
        name: str | None = None,
        description: str | None = None,
        traffic_allocation: float | None = None,
        variants: Sequence[Mapping[str, Any]] | None = None,
        metrics: Sequence[Mapping[str, Any]] | None = None,
        salt: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> JSON:
        """Change the fields given (None leaves a field as it is)."""
        body = _dropped_none(
            name=name,
            description=description,
            traffic_allocation=traffic_allocation,
            variants=None if variants is None else [dict(v) for v in variants],
            metrics=None if metrics is None else [dict(m) for m in metrics],
            salt=salt,
            settings=None if settings is None else dict(settings),
        )
        return self._call("PATCH", _at(experiment), retry=False, body=body)

    def delete_experiment(self, experiment: str) -> None:
        """Delete it and all it recorded. A 404 on a resent request means an earlier attempt,
        whose reply was lost, already deleted it: that counts as done."""
        response, resent = self._send("DELETE", API_PREFIX + _at(experiment), retry=True)
        if not (resent and response.status_code == 404):
            self._json(response)

    def set_status(
        self, experiment: str, status: str, *, winner: str | None = None, override: bool = False
    ) -> JSON:
        """Move through the lifecycle (``override``: complete with a winner the analysis'
        decision does not support). A 409 on a resent request whose target is already in
        force (an earlier attempt's reply was lost) answers with the experiment as it is."""
        url = API_PREFIX + _at(experiment, "/status")
        body = _dropped_none(status=status, winner=winner, override=override or None)
        response, resent = self._send("PUT", url, retry=True, body=body)
        if resent and response.status_code == 409:
            current = self.get_experiment(experiment)
            if current["status"] == status and winner in (None, current["winner"]):
                return current
        found: JSON = self._json(response)
        return found

    def start_experiment(self, experiment: str) -> JSON:
        return self.set_status(experiment, "running")

    def pause_experiment(self, experiment: str) -> JSON:
        return self.set_status(experiment, "paused")

    def resume_experiment(self, experiment: str) -> JSON:
        return self.set_status(experiment, "running")

    def end_experiment(
        self, experiment: str, *, winner: str | None = None, override: bool = False
    ) -> JSON:
        """Complete it with ``winner`` (``override`` when the analysis' decision does not support
        it), or else (the server decides) the variant the decision ships."""
        return self.set_status(experiment, "completed", winner=winner, override=override)

    # assignment and events -------------------------------------------------------------------

    def get_variant_for_user(
        self,
        experiment: str,
        unit_id: str,
        *,
        expose: bool = False,
        event_id: str | None = None,
        covariates: Mapping[str, float] | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> JSON:
        """The unit's variant, stored (the first assignment wins, so resending is harmless).
        With ``expose`` its exposure is counted in the same step; ``event_id`` defaults to a
        new UUID then, so a resent request counts once. ``covariates`` and ``dimensions``
        describe the unit at its exposure (its first exposure's are kept)."""
        body: JSON = {"unit_id": unit_id}
        if expose:
            body.update(expose=True, event_id=event_id or str(uuid.uuid4()))
        elif event_id is not None:
            body["event_id"] = event_id  # the server refuses it without expose
        for name, facts in (("covariates", covariates), ("dimensions", dimensions)):
            if facts is not None:
                body[name] = dict(facts)  # the server refuses them without expose
        return self._call("POST", _at(experiment, "/assign"), retry=True, body=body)

    def record_exposure(
        self,
        *,
        experiment: str | None = None,
        unit_id: str | None = None,
        variant: str | None = None,
        event_id: str | None = None,
        timestamp: datetime | str | None = None,
        experiment_id: str | None = None,
        variant_id: str | None = None,
        covariates: Mapping[str, float] | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> JSON:
        """``{"received", "applied", "duplicates"}``; ``event_id`` defaults to a new UUID.
        ``experiment_id`` and ``variant_id`` are aliases of ``experiment`` and ``variant``
        (OpenInsight's names), as in the Python API. ``covariates`` and ``dimensions``
        describe the unit (its first exposure's are kept)."""
        ref = aliased(experiment, experiment_id, "experiment", "experiment_id", required=True)
        variant = aliased(variant, variant_id, "variant", "variant_id")
        facts = {
            "covariates": None if covariates is None else dict(covariates),
            "dimensions": None if dimensions is None else dict(dimensions),
        }
        body = _event(
            {
                "unit_id": unit_id,
                "variant": variant,
                "event_id": event_id,
                "timestamp": timestamp,
                **facts,
            }
        )
        return self._call("POST", _at(ref, "/exposures"), retry=True, body=body)

    def record_conversion(
        self,
        *,
        experiment: str | None = None,
        unit_id: str | None = None,
        variant: str | None = None,
        metric: str | None = None,
        value: float | None = None,
        event_id: str | None = None,
        timestamp: datetime | str | None = None,
        experiment_id: str | None = None,
        variant_id: str | None = None,
    ) -> JSON:
        """``{"received", "applied", "duplicates"}``; ``event_id`` defaults to a new UUID.
        ``experiment_id`` and ``variant_id`` are aliases of ``experiment`` and ``variant``
        (OpenInsight's names), as in the Python API."""
        ref = aliased(experiment, experiment_id, "experiment", "experiment_id", required=True)
        variant = aliased(variant, variant_id, "variant", "variant_id")
        fields = {"unit_id": unit_id, "variant": variant, "metric": metric, "value": value}
        body = _event({**fields, "event_id": event_id, "timestamp": timestamp})
        return self._call("POST", _at(ref, "/conversions"), retry=True, body=body)

    def record_events(self, events: Sequence[EventInput | Mapping[str, Any]]) -> JSON:
        """A batch, all counted or none: ``EventInput`` objects or REST-shaped dicts (``type``,
        ``experiment_id``, ...). Each event without an ``event_id`` gets a new UUID."""
        body = {"events": [_event(e) for e in events]}
        return self._call("POST", "/events", retry=True, body=body)

    def get_metrics(self, experiment: str) -> JSON:
        return self._call("GET", _at(experiment, "/metrics"), retry=True)

    def analyze_experiment(
        self,
        experiment: str,
        *,
        metric: str | None = None,
        correction: str | None = None,
        sequential: bool | None = None,
        alpha: float | None = None,
    ) -> JSON:
        """The analysis (the interleaving analysis for an interleaving experiment)."""
        params = _dropped_none(
            metric=metric,
            correction=correction,
            sequential=None if sequential is None else str(sequential).lower(),
            alpha=alpha,
        )
        return self._call("GET", _at(experiment, "/analysis"), retry=True, params=params)

    # bandits ---------------------------------------------------------------------------------

    def get_allocation(self, experiment: str) -> JSON:
        return self._call("GET", _at(experiment, "/allocation"), retry=True)

    def recalculate(self, experiment: str) -> JSON:
        return self._call("POST", _at(experiment, "/recalculate"), retry=False)

    def recalculate_all(self) -> list[JSON]:
        return self._call_list("POST", "/recalculate", retry=False)

    def record_daily_metrics(
        self, experiment: str, *, day: date | str, metrics: Sequence[DailyInput | Mapping[str, Any]]
    ) -> JSON:
        """A day's impressions and clicks per variant (``DailyInput`` or dicts with
        ``variant_name``, ``impressions``, ``clicks``); a later post for the day replaces it."""
        rows = [
            {"variant_name": m.variant, "impressions": m.impressions, "clicks": m.clicks}
            if isinstance(m, DailyInput)
            else dict(m)
            for m in metrics
        ]
        body = {"date": _time(day), "metrics": rows}
        return self._call("POST", _at(experiment, "/metrics"), retry=True, body=body)

    def get_history(self, experiment: str) -> JSON:
        """``{"experiment_id", "weight_changes", "daily_metrics"}``."""
        return self._call("GET", _at(experiment, "/history"), retry=True)

    # contextual bandits ----------------------------------------------------------------------

    def decide(
        self, experiment: str, *, unit_id: str | None = None, context: Mapping[str, Any]
    ) -> JSON:
        """An arm for this context; each call logs a decision, so it is never resent."""
        body = _dropped_none(unit_id=unit_id, context=dict(context))
        return self._call("POST", _at(experiment, "/decide"), retry=False, body=body)

    def feedback(
        self,
        experiment: str,
        *,
        decision_id: str | None = None,
        unit_id: str | None = None,
        event: str,
        value: float | None = None,
    ) -> JSON:
        """Applied at most once per decision and event (``applied: false`` for a repeat); by
        ``unit_id`` instead of ``decision_id``, to the unit's latest decision."""
        body = _dropped_none(decision_id=decision_id, unit_id=unit_id, event=event, value=value)
        return self._call("POST", _at(experiment, "/feedback"), retry=True, body=body)

    def bandit_stats(self, experiment: str, *, days: float | None = None) -> JSON:
        params = _dropped_none(days=days)
        return self._call("GET", _at(experiment, "/bandit/stats"), retry=True, params=params)

    def performance(self, experiment: str, *, days: int = 30) -> JSON:
        params = {"days": days}
        return self._call("GET", _at(experiment, "/performance"), retry=True, params=params)

    def offpolicy(self, experiment: str, *, policy: str = "control") -> JSON:
        params = {"policy": policy}
        return self._call("GET", _at(experiment, "/offpolicy"), retry=True, params=params)

    # interleaving ----------------------------------------------------------------------------

    def interleave(
        self,
        experiment: str,
        *,
        unit_id: str | None = None,
        ranking_a: Sequence[str],
        ranking_b: Sequence[str],
        length: int | None = None,
        seed: str | None = None,
    ) -> JSON:
        """One merged list; the same request gives the same list and id, so resending is safe."""
        body = _dropped_none(
            unit_id=unit_id,
            ranking_a=list(ranking_a),
            ranking_b=list(ranking_b),
            length=length,
            seed=seed,
        )
        return self._call("POST", _at(experiment, "/interleave"), retry=True, body=body)

    def record_clicks(self, experiment: str, *, impression_id: str, items: Sequence[str]) -> JSON:
        """A repeated click on an item counts once, so resending is safe."""
        body = {"impression_id": impression_id, "items": list(items)}
        return self._call("POST", _at(experiment, "/clicks"), retry=True, body=body)

    # health ----------------------------------------------------------------------------------

    def ready(self) -> None:
        """Return when the server and its store answer; raise ``StoreUnavailable`` (or
        ``ServiceUnavailable``) when they do not."""
        response, _ = self._send("GET", "/readyz", retry=True)
        self._json(response)
