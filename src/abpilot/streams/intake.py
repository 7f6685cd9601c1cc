"""Stream intake, whatever the bus: read each message as ``POST /api/v1/events`` reads a body,
give an event without an ``event_id`` one derived from its message id, count the events through
the service's one intake path (``ExperimentService.record_events``), and set aside every event
that is malformed or refused as a ``DeadLetter`` with the reason, so it never blocks the events
behind it.

A message holds one event (an element of ``POST /api/v1/events``'s ``events``) or a batch in that
endpoint's shape (``{"events": [...]}``). The derived id of an event is its message id
(``nats:<stream>:<sequence>``, ``redis:<key>:<entry id>``), with ``/<index>`` for an event of a
batch message: a redelivered message gets the same ids, so its events count once.

``apply_messages`` counts what it can and returns the dead letters; the caller writes them
durably and only then acknowledges the messages. The service validates a batch whole and refuses
it at the first bad event, naming it (``events[i]``): that event becomes a dead letter and the
rest is applied again. A refusal that names no event (the store refusing the batch, as for
totals that would overflow) splits the batch in halves until the event it concerns stands alone.
A store out of reach (``StoreUnavailable``) is raised: nothing is acknowledged and the caller
tries the same messages again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pydantic

from abpilot.api.schemas.core import EventIn
from abpilot.domain.errors import AbpilotError, StoreUnavailable, UnitNotAssigned
from abpilot.domain.inputs import EventInput
from abpilot.domain.records import ApplyResult

MALFORMED = "malformed"
_EVENT_INDEX = re.compile(r"^events\[(\d+)\]")
_EVENTS = pydantic.TypeAdapter(list[Any])


class EventSink(Protocol):
    """What stream intake needs of the service: ``ExperimentService`` is one."""

    max_batch_events: int

    def record_events(
        self, events: Sequence[EventInput], *, field_prefix: str = ""
    ) -> ApplyResult: ...


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """A message as read from the bus: ``message_id`` is the same on every redelivery."""

    message_id: str
    data: bytes
    deliveries: int = 1  # how many times the bus has delivered it, this time included


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event (or a whole message, ``index`` None) that was not counted, and why."""

    message_id: str
    index: int | None
    code: str
    reason: str
    field: str | None
    event: object  # the event's JSON, or the message's text when it is not JSON

    @property
    def key(self) -> str:
        """What identifies the dead letter: a redelivered message may be dead-lettered again."""
        return self.message_id if self.index is None else f"{self.message_id}/{self.index}"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "message_id": self.message_id,
                "index": self.index,
                "code": self.code,
                "reason": self.reason,
                "field": self.field,
                "event": self.event,
            },
            ensure_ascii=False,
        ).encode()


@dataclass(slots=True)
class IntakeOutcome:
    messages: int = 0
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    retry: set[str] = field(default_factory=set)  # ids of messages to leave unacknowledged

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "events": self.events,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_letters": len(self.dead_letters),
            "retried": len(self.retry),
        }


@dataclass(frozen=True, slots=True)
class _Pending:
    message_id: str
    deliveries: int
    index: int | None
    event: EventInput
    raw: object


def apply_messages(
    sink: EventSink, messages: Sequence[StreamMessage], *, max_deliveries: int = 1
) -> IntakeOutcome:
    """Count the events of ``messages``; every event not counted is in the dead letters, or
    its message in ``retry``: a conversion refused because its unit has no assignment yet
    (its exposure may be in another consumer's batch, or not yet redelivered) while its message
    has been delivered fewer than ``max_deliveries`` times. The caller leaves a message to retry
    unacknowledged, so the bus delivers it again: the events of it that counted are then
    duplicates by their ids."""
    outcome = IntakeOutcome(messages=len(messages))
    pending: list[_Pending] = []
    for message in messages:
        pending.extend(_parse(message, outcome))
    outcome.events = len(pending) + len(outcome.dead_letters)
    size = max(1, sink.max_batch_events)
    for start in range(0, len(pending), size):
        _apply(sink, pending[start : start + size], outcome, max_deliveries)
    return outcome


def _parse(message: StreamMessage, outcome: IntakeOutcome) -> list[_Pending]:
    """The message's events, each checked by the REST API's own model; the bad ones (or the
    whole message, when it is not an event or a batch) go to the dead letters."""
    try:
        document = json.loads(message.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        text = message.data.decode("utf-8", errors="replace")
        outcome.dead_letters.append(
            DeadLetter(message.message_id, None, MALFORMED, f"not JSON: {error}", None, text)
        )
        return []
    if isinstance(document, dict) and "events" in document and "type" not in document:
        try:
            raws = _EVENTS.validate_python(document["events"])
        except pydantic.ValidationError:
            outcome.dead_letters.append(
                DeadLetter(
                    message.message_id,
                    None,
                    MALFORMED,
                    "events must be a list of events",
                    "events",
                    document,
                )
            )
            return []
        indexed: list[tuple[int | None, object]] = list(enumerate(raws))
    else:
        indexed = [(None, document)]
    found: list[_Pending] = []
    for index, raw in indexed:
        event_id = message.message_id if index is None else f"{message.message_id}/{index}"
        try:
            event = EventIn.model_validate(raw).to_input(event_id=event_id)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or None
            reason = f"{where}: {first['msg']}" if where else str(first["msg"])
            outcome.dead_letters.append(
                DeadLetter(message.message_id, index, MALFORMED, reason, where, raw)
            )
            continue
        found.append(_Pending(message.message_id, message.deliveries, index, event, raw))
    return found


def _apply(
    sink: EventSink, batch: list[_Pending], outcome: IntakeOutcome, max_deliveries: int
) -> None:
    """Apply ``batch``; drop each event the service names as refused, and split a batch
    refused without a name, until what remains is applied (or nothing remains)."""
    while batch:
        try:
            result = sink.record_events([p.event for p in batch], field_prefix="events")
        except StoreUnavailable:
            raise
        except AbpilotError as error:
            index = _event_index(error.field)
            if index is not None and index < len(batch):
                _set_aside(batch.pop(index), error, outcome, max_deliveries)
                continue
            if len(batch) == 1:
                _set_aside(batch[0], error, outcome, max_deliveries)
                return
            half = len(batch) // 2
            _apply(sink, batch[:half], outcome, max_deliveries)
            _apply(sink, batch[half:], outcome, max_deliveries)
            return
        outcome.applied += result.applied
        outcome.duplicates += result.duplicates
        return


def _set_aside(
    pending: _Pending, error: AbpilotError, outcome: IntakeOutcome, max_deliveries: int
) -> None:
    if isinstance(error, UnitNotAssigned) and pending.deliveries < max_deliveries:
        outcome.retry.add(pending.message_id)
    else:
        outcome.dead_letters.append(_dead(pending, error))


def _event_index(error_field: str | None) -> int | None:
    match = _EVENT_INDEX.match(error_field or "")
    return int(match.group(1)) if match else None


def _dead(pending: _Pending, error: AbpilotError) -> DeadLetter:
    where = error.field
    if where is not None:  # the position in the service's batch means nothing on the bus
        where = _EVENT_INDEX.sub("", where).lstrip(".") or None
    return DeadLetter(
        pending.message_id, pending.index, error.code, error.message, where, pending.raw
    )
