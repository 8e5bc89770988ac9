"""Answers with a trailing comma, as GPTunnel's docs print two of them (``/balance``'s
and a 401's): read as meant, and nothing else that is not JSON read at all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async._sansio.json_text import MAX_TRAILING_COMMAS, loads

json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def with_trailing_commas(value: Any, commas: list[int]) -> str:
    """``value`` as JSON with a trailing comma in each non-empty object and array,
    counted in ``commas``; strings keep their own ``,}`` and ``,]``."""
    if isinstance(value, list) and value:
        commas.append(1)
        return "[" + ", ".join(with_trailing_commas(item, commas) for item in value) + ",\n]"
    if isinstance(value, dict) and value:
        commas.append(1)
        items = (
            f"{json.dumps(key)}: {with_trailing_commas(item, commas)}"
            for key, item in value.items()
        )
        return "{" + ", ".join(items) + " , }"
    return json.dumps(value)


@given(json_documents, st.text(alphabet=",}] ", max_size=4))
def test_trailing_commas_are_dropped_and_nothing_else(value: Any, inside: str) -> None:
    """GPTunnel's docs print answers with a trailing comma: up to MAX_TRAILING_COMMAS
    of them are dropped, and the document reads as meant; more are still not JSON."""
    value = [value, {"text": f"a{inside}b,}}"}]  # commas inside a string stay
    commas: list[int] = []
    text = with_trailing_commas(value, commas)
    if len(commas) <= MAX_TRAILING_COMMAS:
        assert loads(text) == value
        assert loads(text.encode()) == value
    else:
        with pytest.raises(json.JSONDecodeError):
            loads(text)


@pytest.mark.parametrize("text", ["[,]", "{,}", '{"a": 1,,}', "[1,,]", '{"a": ,}', "[1,] x"])
def test_a_comma_that_is_not_trailing_is_still_not_json(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        loads(text)
