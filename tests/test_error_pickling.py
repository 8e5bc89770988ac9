"""Every exception survives pickle (and copy) with its type, text and attributes: bots hand
errors across process pools and task queues."""

from __future__ import annotations

import copy
import inspect
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import NOT_GIVEN, MediaTask, NotGiven, Task, errors

texts = st.text(max_size=40)
optional_texts = st.none() | texts
statuses = st.integers(min_value=100, max_value=599)
seconds = st.floats(allow_nan=False)
tasks = st.builds(
    Task,
    id=texts,
    status=texts,
    percent=st.integers(0, 100),
    error=optional_texts,
    result=optional_texts,
    actions=st.lists(texts, max_size=3).map(tuple),
) | st.builds(MediaTask, id=texts, status=texts, code=st.integers(), message=optional_texts)


def api_errors(cls: type[errors.APIError]) -> st.SearchStrategy[errors.APIError]:
    return st.builds(
        cls,
        texts,
        status_code=statuses,
        type=optional_texts,
        param=optional_texts,
        code=optional_texts,
        retry_after=st.none() | seconds,
    )


def message_only(cls: type[errors.GPTunnelError]) -> st.SearchStrategy[errors.GPTunnelError]:
    return st.builds(cls, texts)


SPECIAL: dict[type[errors.GPTunnelError], st.SearchStrategy[Any]] = {
    errors.APITimeoutError: st.builds(
        errors.APITimeoutError, texts, status_code=st.none() | statuses
    ),
    errors.ResponseDecodeError: st.builds(
        errors.ResponseDecodeError, texts, status_code=st.none() | statuses, body=texts
    ),
    errors.TaskFailedError: st.builds(errors.TaskFailedError, tasks),
    errors.WaitTimeoutError: st.builds(
        errors.WaitTimeoutError,
        texts,
        st.floats(0, 1e6),
        st.none() | tasks,
        st.none() | api_errors(errors.ServerError) | message_only(errors.APIConnectionError),
    ),
}


def every_error_class() -> list[type[errors.GPTunnelError]]:
    return [
        cls
        for name in errors.__all__
        if inspect.isclass(cls := getattr(errors, name)) and issubclass(cls, BaseException)
    ]


def instances_of(cls: type[errors.GPTunnelError]) -> st.SearchStrategy[Any]:
    if cls in SPECIAL:
        return SPECIAL[cls]
    if issubclass(cls, errors.APIError):
        return api_errors(cls)
    return message_only(cls)


def comparable(value: object) -> object:
    """``value``, with an exception in it (a ``last_error``) as its type, args and
    attributes: exceptions compare by identity, and a restored one is a new object."""
    if isinstance(value, BaseException):
        return type(value), value.args, comparable(vars(value))
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    return value


def assert_same(restored: BaseException, original: BaseException) -> None:
    assert type(restored) is type(original)
    assert str(restored) == str(original)
    assert restored.args == original.args
    assert comparable(vars(restored)) == comparable(vars(original))


def test_the_strategies_cover_each_class_with_a_constructor_of_its_own() -> None:
    """A class with its own ``__init__`` needs its own strategy, or its attributes go untried."""
    own_init = {cls for cls in every_error_class() if "__init__" in vars(cls)}
    assert own_init <= {errors.GPTunnelError, errors.APIError, *SPECIAL}


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_every_error_survives_pickle_with_its_attributes(
    cls: type[errors.GPTunnelError], data: st.DataObject
) -> None:
    error = data.draw(instances_of(cls))
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert_same(pickle.loads(pickle.dumps(error, protocol)), error)
    assert_same(copy.copy(error), error)
    assert_same(copy.deepcopy(error), error)


def test_notes_added_to_an_error_survive_pickle() -> None:
    error = errors.RateLimitError("slow down", status_code=429, retry_after=3.0)
    error.add_note("while reading task-1")
    restored = pickle.loads(pickle.dumps(error))
    assert restored.__notes__ == ["while reading task-1"]
    assert restored.retry_after == 3.0


def test_not_given_keeps_its_identity_and_is_falsy() -> None:
    assert pickle.loads(pickle.dumps(NOT_GIVEN)) is NOT_GIVEN
    assert copy.deepcopy(NOT_GIVEN) is NOT_GIVEN
    assert list(NotGiven) == [NOT_GIVEN]
    assert not NOT_GIVEN
    assert repr(NOT_GIVEN) == "NOT_GIVEN"
