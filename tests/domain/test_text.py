"""``check_text``: what the boundary takes as text and what it refuses, whichever way the check
is answered (plain ASCII text takes a one-expression path)."""

from __future__ import annotations

from typing import Any

import pytest

import abpilot
from abpilot.domain.errors import ValidationError
from abpilot.domain.text import check_text

TAKEN = ["u1", " padded ", "é-ünï", "x" * 8, "日本"]
REFUSED = [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    ("\t\n", "must not be empty"),
    ("x" * 9, "at most 8 characters (got 9)"),
    ("a\x00b", "NUL"),
    ("x\udfff", "lone surrogate U+DFFF at position 1"),
    (5, "must be a string"),
    (None, "must be a string"),
]


@pytest.mark.parametrize("value", TAKEN)
def test_text_is_taken_as_it_is(value: str) -> None:
    assert check_text(value, field="unit_id", max_length=8) is value


@pytest.mark.parametrize(("value", "says"), REFUSED)
def test_text_is_refused_naming_the_field_and_why(value: Any, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_text(value, field="unit_id", max_length=8)
    assert refused.value.field == "unit_id"
    assert says in str(refused.value)


def test_empty_text_is_taken_where_it_is_optional() -> None:
    assert check_text("", field="name", max_length=8, required=False) == ""


def test_a_batch_of_units_names_the_refused_one_by_its_index() -> None:
    service = abpilot.open("memory://")
    service.create_experiment(key="btn", variants=[{"key": "control"}, {"key": "treatment"}])
    service.start_experiment("btn")
    assert len(service.get_variants_for_users("btn", ["a", "b"])) == 2
    with pytest.raises(ValidationError) as refused:
        service.get_variants_for_users("btn", ["a", "b", " ", "d"])
    assert refused.value.field == "unit_ids[2]"
