"""Typed domain errors. The API maps each one to an HTTP status in a single handler."""

from __future__ import annotations


class AbpilotError(Exception):
    """Base class: carries a stable machine-readable code and the offending field, if any."""

    code = "error"
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(AbpilotError):
    """The input is malformed or violates a rule (HTTP 422)."""

    code = "validation_error"
    status_code = 422


class NotFound(AbpilotError):
    """Something named in the request does not exist (HTTP 404)."""

    code = "not_found"
    status_code = 404


class ExperimentNotFound(NotFound):
    code = "experiment_not_found"


class UnitNotAssigned(NotFound):
    code = "unit_not_assigned"
    # (experiment id, unit id) when the counting step refused it (``needs_assignment``).
    unit: tuple[str, str] | None = None


class Conflict(AbpilotError):
    """The request is valid but conflicts with the current state (HTTP 409)."""

    code = "conflict"
    status_code = 409


class DuplicateKey(Conflict):
    code = "duplicate_key"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class WrongStatus(Conflict):
    code = "wrong_status"


class EventsNotIngested(Conflict):
    """Events posted to an experiment analysed from the warehouse (they would never count)."""

    code = "events_not_ingested"


class ConcurrentModification(Conflict):
    code = "concurrent_modification"


class DefinitionChanged(ConcurrentModification):
    """A store refused to count events resolved against a definition of ``experiment_id`` that
    is no longer the stored one (changed, or deleted, by another worker): nothing was counted.
    The service reads the definition again and resolves the events anew."""

    def __init__(self, experiment_id: str) -> None:
        super().__init__(
            f"experiment {experiment_id} was changed while its events were counted; retry",
            field="experiment_id",
        )
        self.experiment_id = experiment_id


class WinnerNotSupported(Conflict):
    """Completing with a winner the analysis' decision does not support, without override."""

    code = "winner_not_supported"


class StoreUnavailable(AbpilotError):
    """The backing store cannot be reached (HTTP 503)."""

    code = "store_unavailable"
    status_code = 503
