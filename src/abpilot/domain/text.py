"""Checks for text and JSON that crosses the boundary into hashing, storage or logs.

Every face (REST, OFREP, the FeatureVisor endpoints, the CLI, the Python API, import files) hands
user text to the service, and the service checks it here before any hash or store call:

- text must be encodable as UTF-8: a lone UTF-16 surrogate (``"\\udfff"``, which JSON's ``\\u``
  escapes and Python strings can carry) is refused, since it can be neither hashed nor stored;
- text must not hold NUL, which PostgreSQL refuses;
- JSON documents (variant configs, settings, payloads) must be plain JSON of at most
  ``MAX_JSON_BYTES`` bytes and ``MAX_JSON_DEPTH`` levels of nesting: nothing that cannot be read
  back, rendered and served may ever be stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from abpilot.domain.errors import ValidationError

MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be hashed or stored as text, or None when it can."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return (
                f"must be valid Unicode text (it holds a lone surrogate"
                f" U+{ord(value[error.start]):04X} at position {error.start})"
            )
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def safe_text(value: str) -> str:
    """``value`` with anything UTF-8 cannot carry escaped (for error messages and logs)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def plain_text(value: object, max_length: int) -> bool:
    """Whether ``value`` is text ``check_text`` takes without looking further: ASCII, not blank,
    at most ``max_length`` long, without NUL. The common case, answered in one expression (every
    assignment asks); anything else goes through ``check_text``'s checks one by one."""
    return (
        type(value) is str
        and value.isascii()
        and len(value) <= max_length
        and "\x00" not in value
        and bool(value)
        and not value.isspace()
    )


def check_text(value: str, *, field: str, max_length: int, required: bool = True) -> str:
    """Refuse non-strings, empty (when required), overlong, unencodable or NUL-carrying text."""
    if plain_text(value, max_length):
        return value
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    if required and not value.strip():
        raise ValidationError(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise ValidationError(
            f"{field} must be at most {max_length} characters (got {len(value)})", field=field
        )
    problem = text_problem(value)
    if problem:
        raise ValidationError(f"{field} {problem}", field=field)
    return value


def check_json_object(value: Mapping[str, Any], *, field: str) -> dict[str, Any]:
    """A JSON object of at most 64 KiB and 32 levels, of valid text and finite numbers only."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must be a JSON object", field=field)
    check_json_value(value, field=field)
    encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
    if len(encoded.encode()) > MAX_JSON_BYTES:
        raise ValidationError(
            f"{field} must be at most {MAX_JSON_BYTES} bytes of JSON", field=field
        )
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def check_json_value(value: Any, *, field: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse anything but plain JSON: objects with text keys, lists, text, finite numbers,
    booleans and null, nested at most ``max_depth`` levels. The error's field is ``field`` (the
    request's field); its message names the path inside it."""
    found = json_problem(value, root=field, max_depth=max_depth)
    if found is not None:
        where, problem = found
        raise ValidationError(f"{where} {problem}", field=field)


def json_problem(
    value: Any, *, root: str = "", max_depth: int | None = MAX_JSON_DEPTH
) -> tuple[str, str] | None:
    """The first (path, problem) that keeps ``value`` from being plain JSON a store can hold,
    or None. Paths read ``root.key[0].key``; ``max_depth`` None sets no depth limit."""
    stack: list[tuple[Any, str, int]] = [(value, root, 1)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, Mapping | list | tuple):
            if max_depth is not None and depth > max_depth:
                return where, f"is nested deeper than {max_depth} levels of JSON objects and lists"
            if isinstance(node, Mapping):
                for key, item in node.items():
                    if not isinstance(key, str):
                        return where, "keys must be strings"
                    problem = text_problem(key)
                    if problem:
                        return where, f"has a key that {problem}"
                    stack.append((item, f"{where}.{key}" if where else key, depth + 1))
            else:
                stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(node))
        elif isinstance(node, str):
            problem = text_problem(node)
            if problem:
                return where, problem
        elif isinstance(node, bool) or node is None or isinstance(node, int):
            continue
        elif isinstance(node, float):
            if not math.isfinite(node):
                return where, f"must be a finite number (got {node})"
        else:
            return where, f"must be plain JSON (got {type(node).__name__})"
    return None


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
