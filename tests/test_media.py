"""/media: its answers as MediaTask, its HTTP-200 error codes as the usual typed errors,
and code 6 (heavy load) retried like a 503 by reads, waits and creates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gptunnel_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    Balance,
    ContentPolicyError,
    GPTunnelClient,
    GPTunnelError,
    InsufficientBalanceError,
    MediaClip,
    MediaTask,
    NotFoundError,
    PermissionDeniedError,
    ResponseDecodeError,
    ServerError,
    TaskFailedError,
)
from gptunnel_async._sansio.responses import decode_balance, decode_media_task, error_from_response
from gptunnel_async._sansio.retries import is_refused, is_transient

from .conftest import ScriptedAPI, media_json


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- answers to models ----------------------------------------------------------------


def test_documented_create_answer_is_an_idle_media_task() -> None:
    created = {
        "code": 0,
        "id": "m-1",
        "model": "kling",
        "created_at": "2024-06-10T10:00:00Z",
        "status": "idle",
        "result": None,
        "input": {"prompt": "waves", "ar": "16:9"},
    }
    task = decode_media_task(body(created))
    assert task == MediaTask(id="m-1", status="idle", model="kling", created_at=1718013600)
    assert (task.percent, task.is_terminal, task.error, task.urls) == (0, False, None, ())


def test_documented_result_answer_keeps_url_cost_and_message() -> None:
    answer = {
        "code": 0,
        "id": "m-1",
        "status": "done",
        "url": "https://s/m-1.mp4",
        "cost": "1.25",
        "message": "ok",
    }
    task = decode_media_task(body(answer))
    assert (task.url, task.cost, task.message, task.code) == ("https://s/m-1.mp4", 1.25, "ok", 0)
    assert task.is_done and task.percent == 100 and task.urls == ("https://s/m-1.mp4",)


def test_music_result_is_a_tuple_of_clips() -> None:
    clip = {"audio_url": "https://s/a.mp3", "duration": 30, "status": "succeeded", "title": "x"}
    task = decode_media_task(body(media_json(status="succeeded", url=None, result=[clip])))
    expected = MediaClip(audio_url="https://s/a.mp3", duration=30.0, status="succeeded", title="x")
    assert task.clips == (expected,)


@pytest.mark.parametrize("status", ["done", "succeeded", "success", "completed"])
def test_media_done_statuses(status: str) -> None:
    task = decode_media_task(body(media_json(status=status)))
    assert task.is_done and task.is_terminal and task.percent == 100


@pytest.mark.parametrize("status", ["failed", "error", "fail", "cancelled", "canceled"])
def test_media_failure_statuses_carry_the_message_as_error(status: str) -> None:
    task = decode_media_task(body(media_json(status=status, message="NSFW prompt")))
    assert task.is_failed and task.is_terminal and task.error == "NSFW prompt"
    assert task.percent == 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"error": "moderation"}, "moderation"),
        ({"error": {"message": "NSFW prompt", "type": "moderation"}}, "NSFW prompt"),
        ({"message": "NSFW prompt", "error": "moderation"}, "NSFW prompt"),
        ({"message": None, "error": "moderation"}, "moderation"),
        ({"message": "", "error": "moderation"}, "moderation"),
        ({"error": None}, None),
        ({"error": ["odd"]}, '["odd"]'),  # as a faceswap task's odd error: its JSON
    ],
)
def test_a_failure_reason_sent_as_error_is_read_when_there_is_no_message(
    fields: dict[str, Any], reason: str | None
) -> None:
    # How a media task says why it failed is not documented: public clients read
    # ``error`` (as for Midjourney), the SDK ``message`` first.
    answer = {"code": 0, "id": "t-1", "status": "failed", **fields}
    task = decode_media_task(body(answer))
    assert task.is_failed and task.error == reason


@pytest.mark.parametrize("status", ["idle", "processing", "queued", "starting", "new_state"])
def test_other_media_statuses_are_kept_and_not_terminal(status: str) -> None:
    task = decode_media_task(body(media_json(status=status)))
    assert task.status == status and not task.is_terminal and task.error is None


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>oops</html>",
        b"[]",
        b'{"code": 0}',
        b'{"code": "zero", "id": "m", "status": "done"}',
        b'{"code": [6], "id": "m", "status": "done"}',
    ],
)
def test_bodies_that_are_not_media_tasks_raise_response_decode_error(raw: bytes) -> None:
    with pytest.raises(ResponseDecodeError):
        decode_media_task(raw)


media_values = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ("code", "id", "status", "model", "url", "result", "cost", "message"),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.lists(st.text()),
    ),
)


@given(media_values)
@example({"code": "¹"})  # a digit to str.isdigit, not to int()
def test_any_media_answer_is_a_media_task_or_a_gptunnel_error(value: dict[str, Any]) -> None:
    try:
        task = decode_media_task(body(value))
    except GPTunnelError:
        return
    assert isinstance(task.id, str) and isinstance(task.status, str) and task.code == 0
    assert all(isinstance(url, str) for url in task.urls)


def test_balance_missing_its_fields_is_a_decode_error() -> None:
    assert decode_balance(b'{"orgId": 7, "balance": 0}') == Balance(org_id="7", balance=0.0)
    with pytest.raises(ResponseDecodeError, match="Balance"):
        decode_balance(b'{"object": "balance", "balance": 10}')


# -- code-in-body errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls", "kind"),
    [
        (1, ServerError, "internal_error"),
        (500, ServerError, "internal_error"),
        (2, AuthenticationError, "invalid_token"),
        (3, BadRequestError, "invalid_input"),
        (4, NotFoundError, "not_found"),
        (5, InsufficientBalanceError, "insufficient_balance"),
        (6, ServerError, "heavy_load"),
        (7, PermissionDeniedError, "model_not_allowed"),
        (99, NotFoundError, "method_not_found"),
        (1001, ContentPolicyError, "content_blocked"),
        (1002, ContentPolicyError, "content_blocked"),
        (4242, APIError, "media_error"),
    ],
)
def test_media_codes_raise_the_same_error_classes_as_statuses(
    code: int, cls: type[APIError], kind: str
) -> None:
    with pytest.raises(APIError) as caught:
        decode_media_task(body({"code": code, "message": "said the API"}), 200)
    error = caught.value
    assert type(error) is cls
    assert (error.status_code, error.code, error.type, error.message) == (
        200,
        str(code),
        kind,
        "said the API",
    )


@pytest.mark.parametrize(
    ("code", "cls"), [(3.0, BadRequestError), (1001.0, ContentPolicyError), (6.0, ServerError)]
)
def test_a_media_code_written_as_an_integral_float_is_that_code(
    code: float, cls: type[APIError]
) -> None:
    """JSON has one number type: a writer may send ``3.0`` for 3. It was "the media
    answer's code is not a number: 3.0", a ResponseDecodeError."""
    with pytest.raises(APIError) as caught:
        decode_media_task(body({"code": code, "message": "said the API"}), 200)
    assert type(caught.value) is cls and caught.value.code == str(int(code))
    assert decode_media_task(body({"code": 0.0, "id": "m", "status": "idle"}), 200).id == "m"


@pytest.mark.parametrize("code", [3.5, float("inf"), float("nan"), True, [3], {"c": 3}])
def test_a_media_code_that_is_no_integer_is_not_read_as_one(code: object) -> None:
    with pytest.raises(ResponseDecodeError, match="code is not a number"):
        decode_media_task(body({"code": code, "id": "m", "status": "idle"}), 200)


def test_a_media_error_without_a_message_is_named_by_its_code() -> None:
    with pytest.raises(ContentPolicyError, match="content blocked"):
        decode_media_task(b'{"code": "1001", "id": null}')
    assert issubclass(ContentPolicyError, BadRequestError)


@pytest.mark.parametrize(
    ("code", "transient", "refused"),
    [
        (6, True, True),  # heavy load: a 503, refused before any work
        (1, True, False),  # internal error: a 500, the task may have started
        (500, True, False),
        *[(code, False, False) for code in (2, 3, 4, 5, 7, 99, 1001, 1002)],
    ],
)
def test_media_codes_are_retried_as_the_status_they_stand_for(
    code: int, transient: bool, refused: bool
) -> None:
    with pytest.raises(APIError) as caught:
        decode_media_task(body({"code": code}))
    assert (is_transient(caught.value), is_refused(caught.value)) == (transient, refused)


def test_a_media_code_sent_with_an_error_status_is_not_one() -> None:
    for code in (1, 6, 500):
        with_400 = error_from_response(400, {}, body({"error": {"code": code}}))
        assert not is_transient(with_400) and not is_refused(with_400)


# -- over the wire --------------------------------------------------------------------

HEAVY_LOAD = {"code": 6, "message": "Heavy load, try later"}


async def test_result_retries_heavy_load_until_it_passes(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script(HEAVY_LOAD, HEAVY_LOAD, media_json(status="done"))
    task = await client.media.result("task-1")
    assert task.is_done
    assert len(api.requests) == 3 and len(recorded_sleeps) == 2


async def test_result_gives_up_on_heavy_load_with_the_typed_error(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script(HEAVY_LOAD)
    with pytest.raises(ServerError, match="Heavy load") as caught:
        await client.media.result("task-1")
    assert caught.value.code == "6"
    assert len(api.requests) == client._transport.max_retries + 1


@pytest.mark.parametrize("code", [1, 500])
async def test_an_internal_error_code_is_retried_on_a_read_but_no_create_is_sent_again(
    code: int, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script({"code": code, "message": "Internal error"}, media_json(status="done"))
    assert (await client.media.result("task-1")).is_done
    assert len(api.requests) == 2
    api.requests.clear()
    api.replies.clear()
    api.script({"code": code, "message": "Internal error"}, media_json(status="idle"))
    with pytest.raises(ServerError, match="Internal error"):
        await client.media.create("flux-pro", "a fox")
    assert len(api.requests) == 1  # the task may have started: not sent twice


@pytest.mark.parametrize(
    ("code", "cls"), [(3, BadRequestError), (4, NotFoundError), (1001, ContentPolicyError)]
)
async def test_other_media_codes_are_raised_at_once(
    code: int, cls: type[APIError], client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script({"code": code, "message": "no"}, media_json(status="done"))
    with pytest.raises(cls):
        await client.media.result("task-1")
    assert len(api.requests) == 1


async def test_a_wait_rides_through_heavy_load(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(media_json(status="processing"), *[HEAVY_LOAD] * 9, media_json(status="done"))
    task = await client.media.wait_for_result("task-1")
    assert task.is_done
    assert len(api.requests) == 11


async def test_a_blocked_prompt_ends_a_wait_at_once(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(media_json(status="processing"), {"code": 1002, "message": "blocked"})
    with pytest.raises(ContentPolicyError, match="blocked"):
        await client.media.wait_for_result("task-1")
    assert len(api.requests) == 2


async def test_a_failed_media_task_raises_task_failed_error(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(media_json(status="failed", message="generation failed: GPU lost"))
    with pytest.raises(TaskFailedError, match="GPU lost") as caught:
        await client.media.wait_for_result("task-1")
    assert isinstance(caught.value.task, MediaTask)


async def test_create_is_sent_again_only_after_heavy_load(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script(HEAVY_LOAD, media_json(status="idle"))
    task = await client.media.create("flux-pro", "a lighthouse")
    assert task.status == "idle"
    assert len(api.requests) == 2


async def test_create_is_never_sent_again_after_an_internal_error(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script({"code": 1, "message": "internal"}, media_json(status="idle"))
    with pytest.raises(ServerError):
        await client.media.create("flux-pro", "a lighthouse")
    assert len(api.requests) == 1 and recorded_sleeps == []


async def test_non_200_media_answers_use_the_status(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script((402, {"code": 5, "message": "Insufficient balance"}, {}))
    with pytest.raises(InsufficientBalanceError) as caught:
        await client.media.result("task-1")
    assert caught.value.status_code == 402
