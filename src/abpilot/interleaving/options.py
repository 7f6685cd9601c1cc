"""Settings of an interleaving experiment, checked when it is created (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from abpilot.domain.errors import ValidationError
from abpilot.interleaving.methods import Method

MAX_LENGTH = 100
DEFAULT_LENGTH = 10


@dataclass(frozen=True, slots=True)
class InterleavingOptions:
    method: Method = Method.TEAM_DRAFT
    length: int = DEFAULT_LENGTH


def interleaving_options(settings: Mapping[str, Any], variants: int) -> InterleavingOptions:
    """Check an interleaving experiment's shape and ``settings.interleaving``."""
    if variants != 2:
        raise ValidationError(
            f"an interleaving experiment compares exactly two rankers (got {variants} variants); "
            "multileaving is not supported",
            field="variants",
        )
    raw = settings.get("interleaving", {})
    where = "settings.interleaving"
    if not isinstance(raw, Mapping) or set(raw) - {"method", "length"}:
        raise ValidationError(f"{where} takes 'method' and 'length' only", field=where)
    method = raw.get("method", Method.TEAM_DRAFT.value)
    if method not in {m.value for m in Method}:
        raise ValidationError(
            f"{where}.method must be 'team_draft' or 'balanced' (got {method!r})",
            field=f"{where}.method",
        )
    length = raw.get("length", DEFAULT_LENGTH)
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
        raise ValidationError(
            f"{where}.length must be an integer from 1 to {MAX_LENGTH}", field=f"{where}.length"
        )
    return InterleavingOptions(Method(method), length)
