"""Checks for text and JSON that crosses the boundary into storage."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from abpilot.domain.errors import ValidationError

MAX_JSON_BYTES = 64 * 1024


def check_text(value: str, *, field: str, max_length: int, required: bool = True) -> str:
    """Refuse empty (when required), overlong, or NUL-carrying strings (databases reject NUL)."""
    if required and not value.strip():
        raise ValidationError(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise ValidationError(
            f"{field} must be at most {max_length} characters (got {len(value)})", field=field
        )
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters", field=field)
    return value


def check_json_object(value: Mapping[str, Any], *, field: str) -> dict[str, Any]:
    """A JSON object of at most 64 KiB, without NUL characters or non-finite numbers."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must be a JSON object", field=field)
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise ValidationError(f"{field} must be plain JSON ({error})", field=field) from error
    if len(encoded.encode()) > MAX_JSON_BYTES:
        raise ValidationError(
            f"{field} must be at most {MAX_JSON_BYTES} bytes of JSON", field=field
        )
    if "\\u0000" in encoded or "\x00" in encoded:
        raise ValidationError(f"{field} must not contain NUL characters", field=field)
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def check_number(value: float, *, field: str, limit: float = 1e15) -> float:
    if not math.isfinite(value) or abs(value) > limit:
        raise ValidationError(
            f"{field} must be a finite number between {-limit:g} and {limit:g} (got {value})",
            field=field,
        )
    return float(value)


def check_section(raw: Any, where: str, known: Iterable[str]) -> Mapping[str, Any]:
    """A settings object (``settings.bandit``, say): an object whose keys are all ``known``."""
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where} must be an object", field=where)
    allowed = sorted(known)
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ValidationError(
            f"unknown {where} keys: {', '.join(unknown)} (known: {', '.join(allowed)})",
            field=f"{where}.{unknown[0]}",
        )
    return raw
