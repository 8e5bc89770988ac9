"""An answer is trusted only as far as it deserves: another task's answer is never returned,
and any JSON at all becomes a task or a typed error."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import (
    GPTunnelClient,
    GPTunnelError,
    MediaTask,
    ResponseDecodeError,
    Task,
    TaskLike,
    WaitTimeoutError,
)
from gptunnel_async._sansio.responses import (
    MAX_ANSWER_BYTES,
    decode_media_task,
    decode_task,
    reading,
)
from gptunnel_async.models import MAX_ACTIONS, MAX_CLIPS

from .conftest import ScriptedAPI, media_json, task_json


async def test_a_read_answered_about_another_task_is_a_decode_error(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    api.script(task_json(status="done", percent=100, id="OTHER"))
    with pytest.raises(ResponseDecodeError, match="OTHER"):
        await client.get_result("abc")
    assert len(api.requests) == 1  # not retried: the same request would get the same answer


@pytest.mark.parametrize("other", ["abc ", " abc", "abc\t", "abc\u00a0", "ab c"])
async def test_an_answer_about_an_id_that_differs_only_in_blanks_says_so_visibly(
    api: ScriptedAPI, client: GPTunnelClient, other: str
) -> None:
    """An id with a trailing space read "asked for task abc, the answer is about task
    abc ": the two looked the same. Each is quoted, its blanks inside the quotes."""
    api.script(task_json(status="done", percent=100, id=other))
    with pytest.raises(ResponseDecodeError) as caught:
        await client.get_result("abc")
    asked, _, answered = str(caught.value).partition(", the answer is about task ")
    assert asked.endswith("task 'abc'")
    assert answered.startswith("'") and answered.count("'") == 2
    assert answered.strip("'") != "abc"


async def test_a_wait_never_returns_another_tasks_answer(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    other = task_json(status="done", percent=100, id="OTHER", result="https://evil/x.png")
    api.script(other, other, task_json(status="running", percent=50), task_json(status="done"))
    task = await client.wait_for_result("abc")
    assert task.id == "abc"
    assert task.result == "https://storage.example/result.png"
    assert len(api.requests) == 4


async def test_a_wait_that_only_hears_about_another_task_times_out(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    api.script(task_json(status="done", percent=100, id="OTHER"))
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_result("abc", timeout=0.2)
    assert caught.value.task is None


async def test_a_done_task_with_an_odd_field_is_returned_at_once(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    api.script(task_json(status="done", percent="50", usage="n/a", actions={"x": 1}))
    task = await client.wait_for_result("abc")
    assert (task.percent, task.usage, task.actions) == (50, None, ())
    assert len(api.requests) == 1


def longest_list(head: bytes, item: bytes) -> bytes:
    """An answer of ``head`` and a list of ``item``, as long as an answer may be."""
    count = (MAX_ANSWER_BYTES - len(head) - 2) // (len(item) + 1)
    body = head + b"[" + b",".join([item] * count) + b"]}"
    assert MAX_ANSWER_BYTES - 100 < len(body) <= MAX_ANSWER_BYTES
    return body


async def test_an_answer_of_a_million_clips_is_read_with_the_first_ones(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    head = b'{"id":"abc","status":"running","code":0,"result":'
    api.script(lambda request: answered(longest_list(head, b"{}")))
    task = await client.media.result("abc")
    assert len(task.clips) == MAX_CLIPS and not task.is_done  # 1.3 million in the answer


async def test_an_answer_of_a_million_actions_is_read_with_the_first_ones(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    head = b'{"id":"abc","status":"done","percent":100,"result":"https://a/r.png","actions":'
    api.script(lambda request: answered(longest_list(head, b"[]")))
    task = await client.wait_for_result("abc")
    assert task.actions == ("[]",) * MAX_ACTIONS


async def answered(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


class DeepField:
    """A loopback API's answer: a done task whose ``field`` is a list ``depth`` deep."""

    def __init__(self, head: str, field: str) -> None:
        self.head, self.field, self.depth = head, field, 1

    async def __call__(self, request: web.Request) -> web.Response:
        value = "[" * self.depth + "]" * self.depth
        return await answered(f'{self.head},"{self.field}":{value}}}'.encode())

    async def deepest_read(self, read: Callable[[], Awaitable[object]]) -> int:
        """The deepest nesting ``read`` parses: deeper, the answer is not JSON to Python."""
        low, high = 1, 4 * sys.getrecursionlimit()
        while low + 1 < high:
            self.depth = (low + high) // 2
            try:
                await read()
            except ResponseDecodeError as exc:
                if "is not JSON" in str(exc):
                    high = self.depth
                    continue
            low = self.depth
        return low


TASK_HEAD = '{"id":"abc","status":"done","percent":100,"result":"https://a/r.png"'
MEDIA_HEAD = '{"id":"abc","status":"done","code":0,"url":"https://a/r.png"'


@pytest.mark.parametrize(
    ("family", "head", "field"),
    [
        ("faceswap", TASK_HEAD, "actions"),
        ("faceswap", TASK_HEAD, "error"),
        ("media", MEDIA_HEAD, "message"),
    ],
)
async def test_a_done_task_with_a_field_nested_as_deep_as_a_read_goes_is_returned(
    api: ScriptedAPI, client: GPTunnelClient, family: str, head: str, field: str
) -> None:
    served, tasks = DeepField(head, field), getattr(client, family)
    api.script(served)
    deepest = await served.deepest_read(lambda: tasks.result("abc"))
    for served.depth in (deepest, deepest - 1, deepest - 2, deepest - 5, deepest - 50):
        task = await tasks.result("abc")
        assert task.is_done and task.status == "done"
    waits: list[TaskLike | WaitTimeoutError] = []
    for served.depth in range(deepest, deepest - 5, -1):
        try:
            waits.append(await tasks.wait_for_result("abc", timeout=0.5))
        except WaitTimeoutError as exc:
            waits.append(exc)
    returned = [task for task in waits if not isinstance(task, WaitTimeoutError)]
    assert returned and all(task.is_done for task in returned)
    for timeout in (wait for wait in waits if isinstance(wait, WaitTimeoutError)):
        assert "is not JSON" in str(timeout.last_error)  # a wait's read parses less deep


def test_an_integer_id_answers_for_its_text() -> None:
    body = json.dumps(task_json(id=123)).encode()
    assert reading("123", decode_task)(body, 200).id == "123"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
MEDIA_KEYS = ("code", "id", "status", "model", "url", "result", "cost", "message")
media_like = st.fixed_dictionaries(
    {}, optional=dict.fromkeys(MEDIA_KEYS, json_values | st.sampled_from(["done", 0, "6"]))
)
TASK_KEYS = ("id", "status", "percent", "parentId", "type", "result", "error", "usage")
task_like = st.fixed_dictionaries(
    {}, optional=dict.fromkeys(TASK_KEYS, json_values | st.sampled_from(["abc", "done", "50"]))
)


def decoded_or_error(decode: Any, value: Any) -> Any:
    """What decoding ``value`` gives: the model, or the ``GPTunnelError`` it raised."""
    try:
        return decode(json.dumps(value).encode(), 200, secret="a-key-of-some-length")
    except GPTunnelError as exc:
        assert len(str(exc)) < 2100  # noqa: PT017 (refused, and briefly)
        return exc


@given(st.one_of(json_values, task_like))
def test_any_json_read_of_a_task_is_that_task_or_a_typed_error(value: Any) -> None:
    outcome = decoded_or_error(reading("abc", decode_task), value)
    assert isinstance(outcome, ResponseDecodeError) or (
        isinstance(outcome, Task) and outcome.id == "abc"
    )


@given(st.one_of(json_values, media_like))
def test_any_json_read_of_a_media_task_is_that_task_or_a_typed_error(value: Any) -> None:
    outcome = decoded_or_error(reading("abc", decode_media_task), value)
    assert isinstance(outcome, GPTunnelError) or (
        isinstance(outcome, MediaTask) and outcome.id == "abc"
    )


@pytest.mark.parametrize(
    ("field", "value"), [("cost", "0.5"), ("cost", "cheap"), ("model", 7), ("url", [1])]
)
def test_a_media_task_with_one_odd_field_still_decodes(field: str, value: Any) -> None:
    body = {**media_json(status="done"), field: value}
    task = decode_media_task(json.dumps(body).encode())
    assert task.status == "done"
    assert task.is_done is (field != "url")  # without its url it has nothing to fetch yet
