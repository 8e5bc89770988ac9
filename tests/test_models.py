"""Task JSON to models: the documented shape, the API's looseness, and nothing but typed errors."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gptunnel_async import Balance, MediaTask, ResponseDecodeError, Task, Usage
from gptunnel_async._download import MAX_RESULT_FILES, files_to_save
from gptunnel_async._sansio.responses import (
    decode_balance,
    decode_media_task,
    decode_task,
    media_error,
    structure,
)
from gptunnel_async.errors import BadRequestError, DownloadError
from gptunnel_async.models import MAX_ACTIONS, MAX_CLIPS, _task_hook, _usual_task, converter
from gptunnel_async.testing._scripts import MAX_CLIPS as MAX_SCRIPTED_CLIPS

from .conftest import task_json

T = TypeVar("T")

DOCUMENTED = (
    b'{"id": "65819c485337280001a609e7", "parentId": null, "object": "task",'
    b' "type": "@FaceSwap", "percent": 100, "status": "done",'
    b' "result": "https://storage.yandexcloud.net/a/b_faceswap_result.png", "error": null,'
    b' "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,'
    b' "prompt_cost": 0, "completion_cost": 0, "total_cost": 0}}'
)


def test_documented_task_object_decodes_to_every_field() -> None:
    task = decode_task(DOCUMENTED)
    assert task == Task(
        id="65819c485337280001a609e7",
        status="done",
        percent=100,
        parent_id=None,
        object="task",
        type="@FaceSwap",
        result="https://storage.yandexcloud.net/a/b_faceswap_result.png",
        error=None,
        usage=Usage(),
        actions=(),
    )
    assert task.is_done and task.is_terminal and not task.is_failed


def test_camel_case_parent_id_is_read() -> None:
    assert structure(Task, task_json(parentId="parent-7")).parent_id == "parent-7"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(42, 42), (41.6, 42), (12.4, 12), (None, 0), (-5, 0), (250, 100), ("missing", 0)],
)
def test_percent_is_an_int_from_0_to_100(raw: Any, expected: int) -> None:
    data = task_json()
    if raw == "missing":
        del data["percent"]
    else:
        data["percent"] = raw
    task = structure(Task, data)
    assert task.percent == expected
    assert type(task.percent) is int


def test_unknown_fields_are_ignored_and_unknown_statuses_kept() -> None:
    task = structure(Task, task_json(status="warming_up", brandNewField={"x": 1}))
    assert task.status == "warming_up"
    assert not task.is_terminal


@pytest.mark.parametrize("status", ["failed", "error", "fail", "cancelled", "canceled"])
def test_failure_statuses_are_terminal_failures(status: str) -> None:
    task = structure(Task, task_json(status=status))
    assert task.is_failed and task.is_terminal and not task.is_done


def test_error_object_becomes_its_message() -> None:
    task = structure(Task, task_json(status="failed", error={"message": "no face found"}))
    assert task.error == "no face found"


def test_actions_become_a_tuple_and_integer_ids_text() -> None:
    task = structure(Task, task_json(id=123, actions=["upsample1", "variation2"]))
    assert task.id == "123"
    assert task.actions == ("upsample1", "variation2")


def test_models_are_frozen() -> None:
    task = structure(Task, task_json())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        task.status = "done"  # type: ignore[misc]


def test_unstructure_writes_the_api_shape_back() -> None:
    original = task_json(status="done", percent=100)
    assert converter.unstructure(structure(Task, original))["parentId"] is None
    assert structure(Task, converter.unstructure(structure(Task, original))) == structure(
        Task, original
    )


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        b"",
        b"[1, 2]",
        b'"done"',
        b'{"status": "done"}',
        b'{"id": {"nested": 1}, "status": "done"}',
        b'{"id": "x", "status": null}',
        b'{"id": "x", "status": ["done"]}',
        b'{"id": null, "status": "done"}',
        b'{"error": {"message": "Unauthorized"}}',
        b"[" * 100_000,
    ],
)
def test_bodies_that_are_not_task_objects_raise_response_decode_error(body: bytes) -> None:
    with pytest.raises(ResponseDecodeError):
        decode_task(body, status_code=200)


@pytest.mark.parametrize(
    ("field", "value", "expected", "dropped"),
    [
        ("percent", "50", 50, False),
        ("percent", "42.6", 43, False),
        ("percent", " 42.6 ", 0, True),  # text around a number is not a number's text
        ("percent", "4_2", 0, True),
        ("percent", "\u0664\u0662", 0, True),  # Arabic-Indic 42
        ("percent", "1e400", 0, True),
        ("percent", "forty", 0, True),
        ("percent", float("nan"), 0, True),
        ("percent", {"value": 5}, 0, True),
        ("usage", [1], None, True),
        ("usage", {"total_tokens": "12"}, Usage(total_tokens=12), False),
        ("usage", {"total_tokens": "many", "total_cost": 2}, Usage(total_cost=2.0), True),
        ("actions", "upsample", (), True),
        ("parentId", {"id": 1}, None, True),
        ("result", ["https://a/b.png"], None, True),
        ("type", 3.5, None, True),
        ("object", [], "task", True),
    ],
)
def test_one_odd_optional_field_is_read_or_defaulted_and_the_task_survives(
    field: str, value: Any, expected: Any, dropped: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    data = task_json(status="done", percent=100)
    data[field] = value
    task = decode_task(json.dumps(data).encode())
    assert task.is_done and task.id == "task-1"
    name = {"parentId": "parent_id"}.get(field, field)
    assert getattr(task, name) == expected
    logged = [record.getMessage() for record in caplog.records]
    assert any(f"the {field_in_log(field, value)} field" in line for line in logged) is dropped


def field_in_log(field: str, value: Any) -> str:
    """The field a DEBUG line names: a Usage field for a bad number inside ``usage``."""
    return "total_tokens" if field == "usage" and isinstance(value, dict) else field


@pytest.mark.parametrize("result", [[1], {"audio_url": "x"}, ["not a link"]])
def test_unreadable_clips_leave_a_media_task_without_clips(result: Any) -> None:
    body = {"code": 0, "id": "m", "status": "done", "result": result}
    task = decode_media_task(json.dumps(body).encode())
    assert task.clips == () and task.urls == ()
    assert not task.is_done  # done with nothing to fetch: a wait reads on


def test_unreadable_music_clips_are_dropped_and_the_others_kept() -> None:
    body = {
        "code": 0,
        "id": "m",
        "status": "succeeded",
        "result": [
            {"audio_url": "https://a/1.mp3", "duration": "31.5"},
            "not a clip",
            {"audio_url": "https://a/2.mp3", "duration": "long"},
        ],
    }
    task = decode_media_task(json.dumps(body).encode())
    assert task.urls == ("https://a/1.mp3", "https://a/2.mp3")
    assert task.clips[0].duration == 31.5 and task.clips[1].duration is None


# -- long lists: the first ones are kept -----------------------------------------------------


def test_the_kept_clips_are_more_than_any_real_task_or_download_has() -> None:
    assert MAX_CLIPS > MAX_RESULT_FILES  # a cut list is still too long to save at once
    assert MAX_CLIPS > MAX_SCRIPTED_CLIPS + 1  # the emulator's most clips and a stub


@given(count=st.integers(0, 3 * MAX_CLIPS), kind=st.sampled_from(["link", "object", "odd"]))
def test_a_media_task_keeps_the_first_clips_of_a_long_list(count: int, kind: str) -> None:
    items: list[Any] = [
        {"link": f"https://a/{n}.mp3", "object": {"audio_url": f"https://a/{n}.mp3"}}.get(
            kind, [n] if n % 2 else f"https://a/{n}.mp3"
        )
        for n in range(count)
    ]
    task = decode_media_task(
        json.dumps({"code": 0, "id": "m", "status": "done", "result": items}).encode()
    )
    kept = range(min(count, MAX_CLIPS))
    readable = [n for n in kept if kind != "odd" or not n % 2]  # a list item is no clip
    assert task.urls == tuple(f"https://a/{n}.mp3" for n in readable)


@given(count=st.integers(0, 3 * MAX_ACTIONS), odd=st.booleans())
def test_a_task_keeps_the_first_actions_of_a_long_list(count: int, odd: bool) -> None:
    actions: list[Any] = [[n] if odd else f"upsamle_{n}" for n in range(count)]
    task = decode_task(json.dumps(task_json(status="done", actions=actions)).encode())
    assert task.actions == tuple(
        json.dumps([n]) if odd else f"upsamle_{n}" for n in range(min(count, MAX_ACTIONS))
    )


@pytest.mark.parametrize("field", ["result", "actions"])
def test_a_cut_list_is_logged_with_its_length(field: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    items = [f"https://a/{n}.mp3" for n in range(MAX_CLIPS + 5)]
    body = {"code": 0, "id": "m", "status": "done", field: items}
    decode = decode_media_task if field == "result" else decode_task
    decode(json.dumps(body).encode())
    what = "clips" if field == "result" else "actions"
    logged = [record.getMessage() for record in caplog.records]
    assert f"an answer lists {MAX_CLIPS + 5} {what}; the first 1000 are kept" in logged


def test_a_task_cut_to_its_first_clips_is_still_refused_as_too_many_files() -> None:
    items = [f"https://a/{n}.mp3" for n in range(5 * MAX_CLIPS)]
    task = decode_media_task(
        json.dumps({"code": 0, "id": "m", "status": "done", "result": items}).encode()
    )
    with pytest.raises(DownloadError, match=f"lists {MAX_CLIPS} result files, more than the 100"):
        files_to_save(task)


# -- values nested nearly as deep as the parser goes -----------------------------------------

TASK_BASE = {"id": "t1", "status": "done", "percent": 100, "result": "https://a/r.png"}
MEDIA_BASE = {"id": "t1", "status": "done", "code": 0, "url": "https://a/r.png"}
OPTIONAL_FIELDS: list[tuple[Any, dict[str, Any], str]] = [
    *((decode_task, TASK_BASE, field) for field in ("actions", "error", "usage", "percent")),
    *((decode_task, TASK_BASE, field) for field in ("parentId", "type", "object", "result")),
    *((decode_media_task, MEDIA_BASE, field) for field in ("result", "message", "cost")),
    *((decode_media_task, MEDIA_BASE, field) for field in ("created_at", "model", "url")),
]
SHAPES = ("list", "object", "error object", "mixed")


def nested(depth: int, shape: str) -> str:
    """JSON text of a value ``depth`` levels deep."""
    if shape == "list":
        return "[" * depth + "]" * depth
    if shape == "object":
        return '{"a":' * depth + '"x"' + "}" * depth
    if shape == "error object":  # an error object whose message is no text
        return '{"message":' + nested(depth - 1, "list") + "}"
    return '[{"a":' * (depth // 2) + "[]" + "}]" * (depth // 2)


def decoded(decode: Any, base: dict[str, Any], field: str, value: str) -> Any:
    """``decode`` of ``base`` with ``field`` set to the JSON text ``value``: one helper for
    probing and testing, so both parse at the same stack depth."""
    return decode((json.dumps(base)[:-1] + f', "{field}": {value}}}').encode(), 200)


def deepest_parsed(decode: Any, base: dict[str, Any], field: str, shape: str) -> int:
    """The deepest ``field`` that ``decode`` still parses from ``decoded``: deeper, the
    whole body is not JSON to Python's parser (its recursion limit, whatever the field)."""
    low, high = 1, 4 * sys.getrecursionlimit()
    while low + 1 < high:
        middle = (low + high) // 2
        try:
            decoded(decode, base, field, nested(middle, shape))
        except ResponseDecodeError as exc:
            if "is not JSON" in str(exc):
                high = middle
                continue
        low = middle
    return low


@settings(max_examples=300)
@given(
    case=st.sampled_from(OPTIONAL_FIELDS),
    shape=st.sampled_from(SHAPES),
    below=st.integers(0, 40),
)
def test_an_optional_field_nested_near_the_parsers_limit_never_fails_the_task(
    case: tuple[Any, dict[str, Any], str], shape: str, below: int
) -> None:
    decode, base, field = case
    depth = deepest_parsed(decode, base, field, shape) - below
    task = decoded(decode, base, field, nested(depth, shape))
    assert (task.id, task.status) == ("t1", "done")
    # a media task whose url or clips were that field may have no file to fetch yet
    assert task.is_done or (decode is decode_media_task and field in ("url", "result"))


@pytest.mark.parametrize("below", [0, 1, 2, 3, 5, 8, 13, 50])
@pytest.mark.parametrize(
    ("decode", "base", "field"),
    [
        (decode_task, TASK_BASE, "actions"),
        (decode_task, TASK_BASE, "error"),
        (decode_media_task, MEDIA_BASE, "message"),
    ],
)
def test_a_field_kept_as_json_text_is_read_or_dropped_near_the_parsers_limit(
    decode: Any, base: dict[str, Any], field: str, below: int, caplog: pytest.LogCaptureFixture
) -> None:
    depth = deepest_parsed(decode, base, field, "list") - below
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    task = decoded(decode, base, field, nested(depth, "list"))
    assert task.is_done
    dropped = any("RecursionError" in record.getMessage() for record in caplog.records)
    if dropped:
        assert getattr(task, field) in ((), None)
    elif field == "actions":  # its one item, as JSON text
        assert task.actions == (nested(depth - 1, "list"),)
    else:
        assert getattr(task, field) == nested(depth, "list")


def deeper(frames: int, call: Callable[[], T]) -> T:
    """``call()`` from ``frames`` more frames down the stack."""
    return deeper(frames - 1, call) if frames else call()


@pytest.mark.parametrize("frames", range(12))
@pytest.mark.parametrize(
    ("decode", "model", "base", "field"),
    [
        (decode_task, Task, TASK_BASE, "actions"),
        (decode_task, Task, TASK_BASE, "error"),
        (decode_media_task, MediaTask, MEDIA_BASE, "message"),
    ],
)
def test_a_task_parsed_nearly_as_deep_as_python_goes_is_built_from_any_stack_depth(
    decode: Any, model: type[Task | MediaTask], base: dict[str, Any], field: str, frames: int
) -> None:
    """Which nesting the parser takes but a hook cannot write out again depends on how
    much deeper the model is built than the body was parsed (the client builds it a
    frame deeper than a direct decode): from any depth, the task stands."""
    depth = deepest_parsed(decode, base, field, "list")
    data = json.loads(json.dumps(base)[:-1] + f', "{field}": {nested(depth, "list")}}}')
    task = deeper(frames, lambda: structure(model, data, 200))
    assert (task.id, task.is_done) == ("t1", True)


def deepest_loads(make: Callable[[int], str]) -> int:
    """The deepest ``make(depth)`` that ``json.loads`` parses, called from here."""
    low, high = 1, 4 * sys.getrecursionlimit()
    while low + 1 < high:
        middle = (low + high) // 2
        try:
            json.loads(make(middle))
        except RecursionError:
            high = middle
        else:
            low = middle
    return low


@pytest.mark.parametrize("frames", range(12))
@pytest.mark.parametrize("key", ["message", "expected", "received", "code"])
def test_a_validation_issue_text_too_deep_to_write_out_is_dropped(key: str, frames: int) -> None:
    def answer(depth: int) -> str:
        issue = f'{{"path": ["images", 0], "{key}": {nested(depth, "list")}}}'
        return f'{{"code": 3, "id": "t1", "message": "invalid", "issues": [{issue}]}}'

    data = json.loads(answer(deepest_loads(answer)))
    error = deeper(frames, lambda: media_error(3, data, 200))
    assert isinstance(error, BadRequestError) and error.issues[0].path == ("images", 0)
    text = getattr(error.issues[0], key)
    assert text is None or text.startswith("[[")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
TASK_KEYS = ("id", "status", "percent", "parentId", "object", "type", "result", "error")
task_like = st.fixed_dictionaries(
    {}, optional=dict.fromkeys((*TASK_KEYS, "usage", "actions"), json_values)
)


@given(st.one_of(json_values, task_like))
def test_any_json_value_decodes_to_a_task_or_raises_response_decode_error(value: Any) -> None:
    body = json.dumps(value).encode()
    try:
        task = decode_task(body)
    except ResponseDecodeError:
        return
    assert isinstance(task, Task)
    assert isinstance(task.id, str) and isinstance(task.status, str)
    assert type(task.percent) is int and 0 <= task.percent <= 100
    assert all(isinstance(action, str) for action in task.actions)


FIELD_VALUES = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.just(""),
    st.booleans(),
    st.integers(-3, 103),
    st.integers(),
    st.integers(min_value=2**1023, max_value=2**1100),
    st.floats(),
    st.sampled_from((math.nan, math.inf, -math.inf)),
    st.lists(st.text(max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
USAGE_KEYS = tuple(field.name for field in attrs.fields(Usage))
TOKENS, COSTS = USAGE_KEYS[:3], USAGE_KEYS[3:]
texts = st.text(max_size=4)
usual_usage = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(TOKENS, st.integers()),
        **dict.fromkeys(COSTS, st.integers() | st.floats(allow_nan=False, allow_infinity=False)),
    },
)
odd_usage = st.tuples(usual_usage, st.sampled_from(USAGE_KEYS), FIELD_VALUES).map(
    lambda drawn: {**drawn[0], drawn[1]: drawn[2]}
)
usual_task = st.fixed_dictionaries(
    {"id": texts, "status": texts},
    optional={
        "percent": st.integers(0, 100),
        "parentId": st.none() | texts,
        "object": texts,
        "type": st.none() | texts,
        "result": st.none() | texts,
        "error": st.none() | texts,
        "usage": st.none() | usual_usage | odd_usage,
        "actions": st.none() | st.just([]),
    },
)
task_shaped = usual_task | st.tuples(
    usual_task, st.sampled_from((*TASK_KEYS, "usage", "actions")), FIELD_VALUES
).map(lambda drawn: {**drawn[0], drawn[1]: drawn[2]})
"""The usual answer, and the usual answer with one field of another type."""
LENIENT = _task_hook(converter)
"""The converter's own reading of a task, without the quick one for the usual answer."""


def _typed(value: Any) -> Any:
    """A model's fields with their types, nested: ``0`` and ``0.0`` are equal, not the same."""
    if attrs.has(type(value)):
        fields = attrs.fields(type(value))
        return type(value), tuple(_typed(getattr(value, field.name)) for field in fields)
    return type(value), value


@settings(max_examples=500, deadline=None)
@given(task_shaped)
@example({"id": "a", "status": "b", "usage": {"total_cost": math.nan}})
@example({"id": "a", "status": "b", "usage": {"prompt_cost": -math.inf}})
@example({"id": "a", "status": "b", "usage": {"completion_cost": 2**1100}})
@example({"id": "a", "status": "b", "usage": {"total_tokens": True}})
@example({"id": "a", "status": "b", "usage": {"prompt_cost": True}})
@example({"id": "a", "status": "b", "percent": True, "error": ""})
@example({"id": "a", "status": "b", "object": None, "actions": ["x"]})
def test_the_usual_answers_quick_reading_is_the_converters(value: dict[str, Any]) -> None:
    quick = _usual_task(value)
    if quick is None:  # not the usual answer: the converter reads it
        return
    assert _typed(quick) == _typed(LENIENT(value, Task))
    assert quick.status is sys.intern(quick.status) and quick.object is sys.intern(quick.object)


def test_the_documented_answers_take_the_quick_reading() -> None:
    for value in (json.loads(DOCUMENTED), task_json(status="running"), {"id": "a", "status": "b"}):
        quick = _usual_task(value)
        assert quick is not None and _typed(quick) == _typed(LENIENT(value, Task))


def test_repeated_texts_are_shared_between_tasks() -> None:
    """Thousands of waits hold a task each: what repeats is kept once (see performance.md)."""
    first, second = (
        decode_task(json.dumps(task_json(id=f"t{n}", status="running")).encode()) for n in (1, 2)
    )
    assert first.status is second.status
    assert first.object is second.object
    assert first.type is second.type


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_credit_limit_leaves_a_balance_that_is_read(credit_limit: Any) -> None:
    """``creditLimit`` is optional: one that is not a finite number is 0, as every
    unreadable optional field takes its default. It made the whole balance a
    ResponseDecodeError, so ``client.balance()`` showed nothing."""
    body = {"orgId": "org", "object": "balance", "balance": -51.5, "creditLimit": credit_limit}
    balance = decode_balance(json.dumps(body).encode(), 200)
    assert (balance.org_id, balance.balance) == ("org", -51.5)
    number = (
        isinstance(credit_limit, int | float)
        and not isinstance(credit_limit, bool)
        and abs(credit_limit) < float("inf")
    )
    expected = float(credit_limit) if number else None
    if isinstance(credit_limit, str):
        try:
            parsed = float(credit_limit)
        except ValueError:
            parsed = None
        expected = parsed if parsed is not None and abs(parsed) < float("inf") else None
    assert balance.credit_limit == (0.0 if expected is None else expected)


@pytest.mark.parametrize("value", [None, "plenty", [1], {"rub": 5}, True, "nan"])
def test_a_balance_that_is_not_a_number_is_not_read_as_zero(value: Any) -> None:
    """The balance itself is required: null was read as 0.0 rubles, a balance the
    server never reported."""
    body = {"orgId": "org", "object": "balance", "balance": value, "creditLimit": 10}
    with pytest.raises(ResponseDecodeError, match="balance"):
        decode_balance(json.dumps(body).encode(), 200)


def test_the_documented_balance_still_reads() -> None:
    body = b'{"orgId": "o", "object": "balance", "balance": -51.54397, "creditLimit": 15000}'
    assert decode_balance(body, 200) == Balance(org_id="o", balance=-51.54397, credit_limit=15000)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"status": "done"}, "its 'id' field is missing"),
        ({"id": None, "status": "done"}, "its 'id' field is unreadable: expected a string"),
        ({"id": 1.5, "status": "done"}, "its 'id' field is unreadable: expected a string"),
        ({"id": "x"}, "its 'status' field is missing"),
        ({"id": "x", "status": ["done"]}, "its 'status' field is unreadable"),
    ],
)
def test_a_task_without_a_usable_id_or_status_names_the_field(
    body: dict[str, Any], said: str
) -> None:
    """The error said ``KeyError('id')`` or ``TypeError('expected a string, got
    NoneType')``, not which field of the answer was at fault."""
    with pytest.raises(ResponseDecodeError) as caught:
        decode_task(json.dumps(body).encode(), 200)
    assert f"the answer is not a Task object: {said}" in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=200), st.text(max_size=30) | st.none())
def test_an_api_error_object_sent_with_200_is_shown_masked(message: str, kind: str | None) -> None:
    """An ``{"error": {...}}`` body with a 2xx status is no task; the error's text says
    what the server said (its key masked), not only that ``id`` is missing."""
    secret = "sk-" + "K" * 29
    body = {"error": {"message": f"{message} {secret}", "type": kind}}
    with pytest.raises(ResponseDecodeError) as caught:
        decode_task(json.dumps(body).encode(), 200, secret=secret)
    text = str(caught.value)
    assert "its 'id' field is missing; it is an API error: " in text
    assert secret not in text and secret not in repr(caught.value.body)
