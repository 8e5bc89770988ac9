"""An integer longer than Python reads (over ``sys.get_int_max_str_digits()`` digits,
4,300 by default), anywhere in JSON another party wrote — an answer, an error body, a
webhook, a value in the fleet's store — is read as the out-of-range number ``1e999`` is:
an optional field drops it or takes its default, a required one is a typed error, and
no message tells the user to call ``sys.set_int_max_str_digits``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptunnel_async import (
    BadRequestError,
    GPTunnelClient,
    GPTunnelError,
    MediaTask,
    ResponseDecodeError,
    Task,
)
from gptunnel_async._sansio.json_text import loads
from gptunnel_async._sansio.responses import (
    decode_any_task,
    decode_media_task,
    decode_task,
    error_from_response,
)
from gptunnel_async.errors import APIError, StoreDataError
from gptunnel_async.fleet._decode import notice, outcome, record
from gptunnel_async.fleet._records import Outcome
from gptunnel_async.webhooks import WebhookReceiver, parse_webhook

from .conftest import ScriptedAPI, media_json, task_json
from .test_webhooks import receiver as receiver

LIMIT = sys.get_int_max_str_digits()
SECRET = "a-secret-of-more-than-sixteen-characters"


class Huge:
    """Where a document holds an integer of ``digits`` digits (over the limit)."""

    def __init__(self, digits: int, negative: bool) -> None:
        self.digits = digits
        self.negative = negative

    def literal(self) -> str:
        return ("-" if self.negative else "") + "7" * self.digits

    def as_overflow(self) -> str:
        """The same number as JSON writes one beyond the float range."""
        return "-1e999" if self.negative else "1e999"


huge_ints = st.builds(Huge, st.integers(LIMIT + 1, 3 * LIMIT), st.booleans())


def render(value: Any, huge: Callable[[Huge], str]) -> bytes:
    """``value`` as JSON text, each ``Huge`` written by ``huge``."""
    found: list[Huge] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Huge):
            found.append(item)
            return f"@@huge-{len(found) - 1}@@"
        if isinstance(item, dict):
            return {key: mark(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [mark(inner) for inner in item]
        return item

    text = json.dumps(mark(value))
    for number, item in enumerate(found):
        text = text.replace(f'"@@huge-{number}@@"', huge(item), 1)
    return text.encode()


def both(value: Any) -> tuple[bytes, bytes]:
    """``value`` with over-long integers, and with ``±1e999`` in their places."""
    return render(value, Huge.literal), render(value, Huge.as_overflow)


def outcome_of(decode: Callable[[bytes], Any], body: bytes) -> Any:
    """What ``decode`` makes of ``body``: the model, or the typed error's class, text and
    fields (its ``body`` excerpt aside: the raw text differs)."""
    try:
        return decode(body)
    except GPTunnelError as error:
        fields = {k: v for k, v in vars(error).items() if k != "body"}
        return type(error), str(error), fields


def same_reading(decode: Callable[[bytes], Any], value: Any) -> None:
    """``decode`` makes the same of ``value`` with over-long integers as with ``±1e999``,
    and never advises raising Python's limit."""
    with_digits, with_overflow = both(value)
    read = outcome_of(decode, with_digits)
    assert read == outcome_of(decode, with_overflow)
    assert "set_int_max_str_digits" not in repr(read)


json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
with_huge = st.recursive(
    json_leaves | huge_ints,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
TASK_FIELDS = ("id", "status", "percent", "parentId", "type", "result", "error", "actions", "usage")
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "total_cost")
MEDIA_FIELDS = ("id", "status", "code", "url", "created_at", "cost", "model", "message", "result")


def _task_with(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with over-long integers (or anything holding them) put into some fields."""
    return st.fixed_dictionaries(
        {}, optional=dict.fromkeys((*TASK_FIELDS, *MEDIA_FIELDS, "extra"), with_huge)
    ).map(lambda changes: {**base, **changes})


usage_with_huge = st.fixed_dictionaries({}, optional=dict.fromkeys(USAGE_FIELDS, huge_ints))
tasks_with_huge = (
    _task_with(task_json(status="done", percent=100))
    | _task_with(media_json(status="done"))
    | usage_with_huge.map(lambda usage: task_json(status="done", usage=usage))
    | huge_ints.map(lambda number: task_json(status="done", percent=number))
)


@settings(max_examples=300)
@given(tasks_with_huge, st.sampled_from([decode_task, decode_media_task, decode_any_task]))
def test_an_over_long_integer_in_an_answer_reads_as_an_out_of_range_number(
    value: dict[str, Any], decode: Callable[[bytes], Any]
) -> None:
    same_reading(decode, value)


error_messages = st.sampled_from(["bad", "no"]) | huge_ints | st.lists(huge_ints, min_size=1)
error_fields = st.fixed_dictionaries(
    {"message": error_messages},
    optional=dict.fromkeys(("type", "param", "code", "extra"), with_huge),
)


@settings(max_examples=100)
@given(error_fields, st.sampled_from([400, 401, 402, 404, 408, 429, 500, 418]))
def test_an_over_long_integer_in_an_error_body_reads_as_an_out_of_range_number(
    fields: dict[str, Any], status: int
) -> None:
    """The body's fields are kept (before, the whole body was shown raw instead)."""

    def error(body: bytes) -> Any:
        raise error_from_response(status, {}, body)

    same_reading(error, {"error": fields})


@settings(max_examples=100)
@given(tasks_with_huge)
def test_an_over_long_integer_in_a_webhook_reads_as_an_out_of_range_number(
    value: dict[str, Any],
) -> None:
    def parse(body: bytes) -> Any:
        return parse_webhook(body, SECRET, secret=SECRET)

    same_reading(parse, value)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("percent", 0),
        ("usage", Task(id="task-1", status="done").usage),
    ],
)
def test_a_done_task_survives_an_over_long_percent_or_usage(field: str, expected: Any) -> None:
    huge = "9" * (LIMIT + 700)
    value = huge if field == "percent" else f'{{"total_tokens": {huge}, "prompt_cost": -{huge}}}'
    body = f'{{"id": "task-1", "status": "done", "{field}": {value}}}'.encode()
    task = decode_task(body)
    assert task.is_done
    if field == "usage":
        assert task.usage is not None and task.usage.total_tokens == 0
    else:
        assert task.percent == expected


@pytest.mark.parametrize("where", ["id", "status"])
def test_an_over_long_required_field_is_a_typed_error_without_the_python_advice(
    where: str,
) -> None:
    fields = {"id": '"t-1"', "status": '"done"', where: "1" * (LIMIT + 1)}
    body = ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()
    for decode in (decode_task, decode_media_task, decode_any_task):
        with pytest.raises(ResponseDecodeError) as caught:
            decode(body, 200)
        assert "set_int_max_str_digits" not in str(caught.value)
        assert "digits" not in str(caught.value)


def test_an_over_long_media_code_is_a_typed_error() -> None:
    body = f'{{"id": "m", "status": "done", "code": {"5" * (LIMIT + 1)}}}'.encode()
    with pytest.raises(ResponseDecodeError, match="code is not a number") as caught:
        decode_media_task(body)
    assert "set_int_max_str_digits" not in str(caught.value)


def test_what_is_not_json_still_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = "3" * (LIMIT + 1)
    for text in (f"[{huge}, ", f'{{"a": {huge}}} trailing', "[" * 100_000):
        with pytest.raises((ValueError, RecursionError)):
            loads(text)
    assert loads(f"[{huge}, -{huge}, 1, 1.5]") == [float("inf"), float("-inf"), 1, 1.5]


def test_the_usual_answer_is_parsed_once_without_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read path's speed: one ``json.loads`` per answer, no ``parse_int`` per number;
    only an answer that fails is parsed again."""
    calls: list[dict[str, Any]] = []
    real = json.loads

    def spy(document: Any, **options: Any) -> Any:
        calls.append(options)
        return real(document, **options)

    monkeypatch.setattr(json, "loads", spy)
    decode_task(json.dumps(task_json(status="done", percent=100)).encode())
    decode_media_task(json.dumps(media_json(status="done")).encode())
    assert calls == [{}, {}]
    calls.clear()
    decode_task(f'{{"id": "t", "status": "done", "percent": {"1" * (LIMIT + 1)}}}'.encode())
    assert [sorted(options) for options in calls][-1] == ["parse_int"]
    assert sum(bool(options) for options in calls) == 1


# -- the fleet's store -----------------------------------------------------------------------


def test_a_stored_outcome_keeps_its_task_despite_an_over_long_usage() -> None:
    stored = json.loads(
        Outcome("done", Task(id="t-1", status="done", result="https://x/r.png")).dumps()
    )
    stored["task"]["usage"] = {"total_tokens": "@@"}
    text = json.dumps(stored).replace('"@@"', "8" * (LIMIT + 1))
    read = outcome(text)
    assert read.task is not None and read.task.is_done
    assert read.task.usage is not None and read.task.usage.total_tokens == 0


@pytest.mark.parametrize(
    ("decode", "text", "match"),
    [
        (outcome, '{"kind": "failed", "task": null, "timeout": @@}', "timeout must be a finite"),
        (
            lambda text: record(text, "1"),
            '{"family": "faceswap", "metadata": null, "timeout": -@@}',
            "timeout must be a finite",
        ),
        (
            notice,
            '{"kind": "progress", "task_id": "t", "status": "r", "percent": @@}',
            "'percent' has the wrong type",
        ),
    ],
)
def test_an_over_long_stored_number_is_a_store_data_error_that_says_what_is_wrong(
    decode: Callable[[str], Any], text: str, match: str
) -> None:
    with pytest.raises(StoreDataError, match=match) as caught:
        decode(text.replace("@@", "4" * (LIMIT + 1)))
    assert "set_int_max_str_digits" not in str(caught.value)


def test_stored_metadata_with_an_over_long_integer_reads_as_1e999_does() -> None:
    digits = '{"family": "media", "metadata": {"n": @@}, "timeout": 5}'
    read = record(digits.replace("@@", "6" * (LIMIT + 1)), "1")
    assert read == record(digits.replace("@@", "1e999"), "1")


# -- over the wire ---------------------------------------------------------------------------


def raw(text: str, status: int = 200) -> tuple[int, str, dict[str, str]]:
    return status, text, {"Content-Type": "application/json"}


HUGE = "9" * (LIMIT + 1000)


@pytest.mark.parametrize("family", ["faceswap", "bgremover", "midjourney", "media"])
async def test_a_wait_on_a_done_task_with_an_over_long_number_ends_done(
    family: str, api: ScriptedAPI, client: GPTunnelClient
) -> None:
    """Before, the answer was unreadable, so the wait read it again and again until its
    deadline (``WaitTimeoutError``) although the task was done."""
    if family == "media":
        body = (
            f'{{"code": 0, "id": "abc", "status": "done", "url": "https://x/a.png", '
            f'"created_at": {HUGE}, "cost": -{HUGE}}}'
        )
    else:
        body = (
            f'{{"id": "abc", "object": "task", "status": "done", "percent": {HUGE}, '
            f'"result": "https://x/a.png", "usage": {{"total_tokens": {HUGE}}}}}'
        )
    api.script(raw(body))
    task = await asyncio.wait_for(getattr(client, family).wait_for_result("abc", timeout=5), 10)
    assert task.is_done
    assert type(task) is (MediaTask if family == "media" else Task)
    assert len(api.requests) == 1


async def test_an_error_body_with_an_over_long_number_keeps_its_message(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    api.script(raw(f'{{"error": {{"message": "taskId is bad", "code": {HUGE}}}}}', 400))
    with pytest.raises(BadRequestError) as caught:
        await client.get_result("abc")
    error: APIError = caught.value
    assert error.message == "taskId is bad"
    assert "set_int_max_str_digits" not in str(error)


async def test_a_webhook_with_an_over_long_number_ends_its_wait(
    api: ScriptedAPI,
    client: GPTunnelClient,
    receiver: WebhookReceiver,
    http_session: aiohttp.ClientSession,
) -> None:
    api.script(task_json(status="running"))
    waiting = asyncio.create_task(
        receiver.wait_for_result(client.faceswap, "abc", fallback_interval=60, timeout=10)
    )
    await asyncio.sleep(0.1)
    delivery = (
        f'{{"id": "abc", "object": "task", "status": "done", "result": "https://x/a.png", '
        f'"usage": {{"total_tokens": {HUGE}}}}}'
    )
    async with http_session.post(receiver.url, data=delivery.encode()) as response:
        assert response.status == 200
    task = await asyncio.wait_for(waiting, 10)
    assert task.is_done and task.result == "https://x/a.png"
