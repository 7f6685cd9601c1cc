"""Results in a notebook: an HTML table (``_repr_html_``, which Jupyter shows) and a pandas
DataFrame (``to_frame()``).

The result objects keep two thin methods that call this module: ``Analysis``
(``abpilot.stats.analysis``), ``ExperimentMetrics`` (``abpilot.service.reading``),
``AllocationResult`` (``abpilot.service.allocation``) and ``ContextualStats``
(``abpilot.service.contextual``). This module knows none of them: it reads any frozen dataclass
by its fields and their annotated types, so it imports nothing of abpilot and every layer may
call it, the pure statistics included (docs/architecture.md §1; a contract in pyproject.toml
keeps it so). Each layer's objects say only which of their parts are the rows and what the title
says; the rules of presentation live here once:

- a nested result (``srm``, ``winner``, ``performance``) becomes its fields, prefixed with its
  field's name (``srm_p_value``), also when it is None, so the columns do not depend on the data;
- an interval (a pair ``tuple[float, float]``) becomes ``<name>_low`` and ``<name>_high`` in a
  DataFrame and ``[low, high]`` in HTML; an enum its value;
- fields that hold several results (``Analysis.variants``) are the rows, not details.

pandas is an optional extra (``pip install 'abpilot[notebook]'``), imported only inside
:func:`frame`; the HTML needs only the standard library, and every piece of text in it is
escaped (experiment and variant keys may contain ``<``).
"""

from __future__ import annotations

import dataclasses
import enum
import html
import math
import types
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from pandas import DataFrame

INSTALL = "pip install 'abpilot[notebook]'"
Row = Mapping[str, object]


@dataclasses.dataclass(frozen=True, slots=True)
class Bounds:
    """An interval's ends in a row (None when the interval is undefined)."""

    low: float | None
    high: float | None


def record(
    item: DataclassInstance, *, skip: Collection[str] = (), rename: Mapping[str, str] | None = None
) -> dict[str, object]:
    """``item``'s fields as one flat row (the rules of the module docstring), without ``skip``;
    ``rename`` gives a top-level field another column name (``{"key": "variant"}``)."""
    row: dict[str, object] = {}
    _flatten(type(item), item, "", row, skip=skip, rename=rename or {})
    return row


def frame(rows: Iterable[Row], *, index: str | Sequence[str]) -> DataFrame:
    """The rows as a DataFrame indexed by ``index``; an interval is two columns."""
    try:
        import pandas as pd
    except ImportError as error:
        raise ImportError(
            f"to_frame() needs pandas, an optional extra of abpilot: {INSTALL}"
        ) from error
    flat = [_split_bounds(row) for row in rows]
    columns = list(dict.fromkeys(key for row in flat for key in row))
    data = pd.DataFrame(flat, columns=columns)
    return data.set_index(index if isinstance(index, str) else list(index))


def table(
    title: str,
    rows: Sequence[Row],
    *,
    note: str = "",
    details: Row | None = None,
) -> str:
    """An HTML table of ``rows`` under ``title`` and ``note``, with ``details`` (facts about the
    whole) folded below it. Columns empty in every row are left out."""
    columns = [
        key
        for key in dict.fromkeys(key for row in rows for key in row)
        if any(row.get(key) is not None for row in rows)
    ]
    head = "".join(f"<th>{_text(key)}</th>" for key in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_text(_cell(row.get(key)))}</td>" for key in columns) + "</tr>"
        for row in rows
    )
    parts = [
        '<div class="abpilot-result">',
        f"<p><strong>{_text(title)}</strong>" + (f": {_text(note)}" if note else "") + "</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
    ]
    if details:
        facts = "".join(
            f"<tr><th>{_text(key)}</th><td>{_text(_cell(value))}</td></tr>"
            for key, value in details.items()
            if value is not None
        )
        parts.append(f"<details><summary>details</summary><table>{facts}</table></details>")
    parts.append("</div>")
    return "".join(parts)


# reading dataclasses ---------------------------------------------------------------------------


def _flatten(
    cls: type[Any],
    item: object | None,
    prefix: str,
    row: dict[str, object],
    *,
    skip: Collection[str] = (),
    rename: Mapping[str, str] | None = None,
) -> None:
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        value = None if item is None else getattr(item, field.name)
        name = prefix + (rename or {}).get(field.name, field.name)
        shape = _shape(hints.get(field.name), value)
        if shape == "bounds":
            low, high = value if isinstance(value, tuple) else (None, None)
            row[name] = Bounds(low, high)
        elif isinstance(shape, type):
            _flatten(shape, value, f"{name}_", row)
        elif not _holds_results(value):
            row[name] = value.value if isinstance(value, enum.Enum) else value


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The resolved annotations of ``cls`` (none when a name in them cannot be resolved: the
    values then decide)."""
    try:
        return typing.get_type_hints(cls)
    except NameError:
        return {}


def _shape(hint: Any, value: object) -> type[Any] | str | None:
    """``"bounds"`` for an interval, the dataclass of a nested result, else None."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        args = typing.get_args(option)
        if typing.get_origin(option) is tuple and len(args) == 2 and args[1] is not Ellipsis:
            return "bounds"
        if isinstance(option, type) and dataclasses.is_dataclass(option):
            return option
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value)
    return None


def _holds_results(value: object) -> bool:
    """A collection of results (the rows of another table), not a value of this row."""
    if isinstance(value, Mapping):
        value = list(value.values())
    return isinstance(value, list | tuple) and any(dataclasses.is_dataclass(v) for v in value)


# presenting values ----------------------------------------------------------------------------


def _split_bounds(row: Row) -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in row.items():
        if isinstance(value, Bounds):
            flat[f"{key}_low"], flat[f"{key}_high"] = value.low, value.high
        else:
            flat[key] = value
    return flat


def _cell(value: object) -> str:
    """A value as the text of a table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, Bounds):
        return "" if value.low is None else f"[{_cell(value.low)}, {_cell(value.high)}]"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "; ".join(f"{key}: {_cell(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_cell(item) for item in value)
    return str(value)


def _number(value: float) -> str:
    """Four significant digits; large values in full with thousands separators."""
    if not math.isfinite(value) or abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:,.0f}"


def _text(value: str) -> str:
    return html.escape(value, quote=True)
