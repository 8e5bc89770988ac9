"""The emulator speaks every family: bgremover, Midjourney, media and the balance, with the
SDK's one engine on the other side."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gptunnel_async import (
    AuthenticationError,
    Balance,
    ConfigurationError,
    ContentPolicyError,
    InsufficientBalanceError,
    MediaTask,
    NotFoundError,
    ProgressEvent,
    ResponseDecodeError,
    Task,
    TaskFailedError,
)
from gptunnel_async.testing import FakeGPTunnel, sample_image
from gptunnel_async.testing._state import MAX_JSON_DEPTH

from .conftest import raw_call
from .pngs import mask

MIDJOURNEY_ACTIONS = (
    *(f"upsamle_{n}" for n in range(1, 5)),
    "reroll",
    *(f"variation_{n}" for n in range(1, 5)),
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- bgremover ------------------------------------------------------------------------


async def test_a_scripted_bgremover_task_is_waited_for(fake: FakeGPTunnel, instant: None) -> None:
    task_id = fake.script_task(steps=[("processing", 30), ("done", 100)], type="@BGRemover")
    async with fake.client() as client:
        events = [event async for event in client.bgremover.wait_for_result(task_id)]
    assert [(e.status, e.percent) for e in events] == [("processing", 30), ("done", 100)]
    assert events[-1].task.type == "@BGRemover"
    assert fake.requests[0].path == "/v1/bgremover/result"


# -- Midjourney -----------------------------------------------------------------------


async def test_imagine_and_wait_shows_previews_then_the_grid_and_its_actions(
    fake: FakeGPTunnel, instant: None, tmp_path: Path
) -> None:
    previews: list[str] = []

    async def save_preview(event: ProgressEvent[Task]) -> None:
        if not event.task.is_done and event.task.result:
            previews.append(event.task.result)
            await client.download_result(event.task.result, tmp_path / "preview.png")

    async with fake.client() as client:
        grid = await client.midjourney.imagine_and_wait("a red fox", on_progress=save_preview)
    assert grid.is_done and grid.actions == MIDJOURNEY_ACTIONS
    assert previews
    assert all(p.startswith(f"{fake.storage_url}/task/image/{grid.id}?cache=") for p in previews)
    assert grid.result == f"{fake.storage_url}/task/image/{grid.id}?cache=100"
    assert (tmp_path / "preview.png").read_bytes() == sample_image("result.png")
    assert fake.requests[0].json == {"prompt": "a red fox"}


async def test_only_midjourney_tasks_have_previews_in_storage(fake: FakeGPTunnel) -> None:
    grid = fake.script_task(steps=[("running", 40)], type="imagine")
    swap = fake.script_task(steps=[("running", 40)])
    async with aiohttp.ClientSession() as http:
        for task_id, expected in ((grid, 200), (swap, 404)):
            async with http.get(f"{fake.storage_url}/task/image/{task_id}") as response:
                assert response.status == expected
    assert fake.task(swap).result is None
    assert fake.task(grid).result == f"{fake.storage_url}/task/image/{grid}?cache=40"


async def test_a_midjourney_create_answers_idle_with_no_actions_yet(fake: FakeGPTunnel) -> None:
    status, body = await raw_call(fake, "POST", "midjourney/imagine", json={"prompt": "a fox"})
    assert status == 200
    assert (body["status"], body["type"], body["actions"]) == ("idle", "imagine", [])
    assert (body["usage"]["completion_cost"], body["usage"]["total_cost"]) == (18, 18)


async def test_follow_ups_name_their_parent(fake: FakeGPTunnel, instant: None) -> None:
    async with fake.client() as client:
        grid = await client.midjourney.imagine_and_wait("a red fox")
        upscaled = await client.midjourney.upsample(grid.id, 2)
        varied = await client.midjourney.variation(grid.id, 3)
        inpainted = await client.midjourney.inpaint(upscaled.id, mask(), "a hat", size=(32, 32))
        final = await client.midjourney.wait_for_result(inpainted.id)
    assert [upscaled.parent_id, varied.parent_id] == [grid.id, grid.id]
    assert final.parent_id == upscaled.id and final.is_done
    assert [r.path for r in fake.requests if r.method == "POST"] == [
        "/v1/midjourney/imagine",
        "/v1/midjourney/upsample",
        "/v1/midjourney/variation",
        "/v1/midjourney/inpaint",
    ]


async def test_a_follow_up_of_an_unknown_task_is_not_found(fake: FakeGPTunnel) -> None:
    async with fake.client() as client:
        with pytest.raises(NotFoundError):
            await client.midjourney.upsample("no-such-grid", 1)


MIDJOURNEY_FOLLOW_UPS = {
    "upsample": {"image": 1},
    "variation": {"image": 1},
    "inpaint": {"mask": b64(mask())},
    "outpaint": {},
    "pan": {},
    "upscale": {},
    "reroll": {},
}


@pytest.mark.parametrize("follow_up", sorted(MIDJOURNEY_FOLLOW_UPS))
@pytest.mark.parametrize("owner", ["faceswap", "bgremover", "media"])
async def test_a_follow_up_of_another_familys_task_is_not_found(
    fake: FakeGPTunnel, follow_up: str, owner: str
) -> None:
    """Each family's tasks live in its own store, so a Midjourney follow-up of a face
    swap (done, with a result) is a 404, as its read at /midjourney/result is; it used
    to start a task (or, for upsample and variation, to say the swap lacked the action)."""
    task_id = fake.script_task(steps=[("done", 100)], **FAMILY_TASKS[owner])
    body = {"taskId": task_id, **MIDJOURNEY_FOLLOW_UPS[follow_up]}
    async with fake.client() as client:
        with pytest.raises(NotFoundError) as caught:
            await client.midjourney.create_task(f"midjourney/{follow_up}", body)
    assert caught.value.param == "taskId"
    assert len(fake.requests) == 1  # no task was started


@pytest.mark.parametrize("image", [True, 1.0, "1"])
async def test_an_image_number_of_another_json_type_is_refused(
    fake: FakeGPTunnel, image: Any
) -> None:
    """``true`` and ``1.0`` equal ``1`` in Python but not in a JSON schema: refused as
    the field's own 400, not taken for image 1 (then refused for an action
    ``upsamle_True`` the grid does not offer)."""
    fake.script_task(steps=[("done", 100)], task_id="G", type="imagine")
    for path in ("midjourney/upsample", "midjourney/variation"):
        status, body = await raw_call(fake, "POST", path, json={"taskId": "G", "image": image})
        assert status == 400
        assert body["error"]["param"] == "image"
        assert "must be one of 1, 2, 3, 4" in body["error"]["message"]


FAMILY_TASKS = {
    "faceswap": {"type": "@FaceSwap"},
    "bgremover": {"type": "@BGRemover"},
    "midjourney": {"type": "imagine"},
    "media": {"model": "suno"},
}


@pytest.mark.parametrize("family", sorted(FAMILY_TASKS))
@pytest.mark.parametrize("owner", sorted(FAMILY_TASKS))
async def test_a_task_is_read_only_on_its_own_familys_endpoint(
    fake: FakeGPTunnel, family: str, owner: str
) -> None:
    task_id = fake.script_task(steps=[("processing", 10), ("done", 100)], **FAMILY_TASKS[owner])
    async with fake.client() as client:
        resource = getattr(client, family)
        if family == owner:
            assert (await resource.result(task_id)).id == task_id
        else:
            with pytest.raises(NotFoundError):
                await resource.result(task_id)
            assert fake.task(task_id).status == "processing"  # a refused read moves nothing


@pytest.mark.parametrize(
    ("path", "payload", "param"),
    [
        ("midjourney/imagine", {}, "prompt"),
        ("midjourney/upsample", {"image": 1}, "taskId"),
        ("midjourney/upsample", {"taskId": "G", "image": 5}, "image"),
        ("midjourney/variation", {"taskId": "G", "image": 1, "mode": "medium"}, "mode"),
        ("midjourney/variation", {"taskId": "G"}, "image"),
        ("midjourney/variation", {"taskId": "U", "image": 1}, "mode"),
        ("midjourney/variation", {"taskId": "U", "mode": "high", "image": 1}, "mode"),
        ("midjourney/upsample", {"taskId": "U", "image": 1}, "image"),
        ("midjourney/inpaint", {"taskId": "G", "mask": "not an image"}, "mask"),
        ("midjourney/inpaint", {"taskId": "G", "mask": b64(mask(grey_pixel=True))}, "mask"),
        ("midjourney/inpaint", {"taskId": "G", "mask": b64(mask(16, 32))}, "mask"),
        ("midjourney/inpaint", {"taskId": "G", "mask": b64(sample_image("face.png"))}, "mask"),
    ],
)
async def test_bad_midjourney_creates_are_the_documented_400(
    fake: FakeGPTunnel, path: str, payload: dict[str, Any], param: str
) -> None:
    fake.script_task(steps=[("done", 100)], task_id="G", type="imagine")
    fake.script_task(steps=[("running", 50)], task_id="U", type="upsample")
    status, body = await raw_call(fake, "POST", path, json=payload)
    assert status == 400
    assert (body["error"]["type"], body["error"]["param"]) == ("invalid_request_error", param)


# -- media ----------------------------------------------------------------------------


async def test_generate_creates_with_the_documented_answer_and_waits(
    fake: FakeGPTunnel, instant: None
) -> None:
    seen: list[ProgressEvent[MediaTask]] = []
    async with fake.client() as client:
        task = await client.media.generate(
            "flux-pro", "a lighthouse", ar="16:9", on_progress=seen.append
        )
    assert task.is_done and task.model == "flux-pro" and task.cost == 0.5
    assert task.url == f"{fake.storage_url}/results/{task.id}_result.png"
    assert [(e.status, e.percent) for e in seen] == [
        ("idle", 0),
        ("processing", 0),
        ("done", 100),
    ]
    create, *reads = fake.requests
    assert create.json == {"model": "flux-pro", "prompt": "a lighthouse", "ar": "16:9"}
    assert {r.path for r in reads} == {"/v1/media/result"}
    assert reads[0].query == {"task_id": task.id}


async def test_the_media_create_answer_is_as_documented(fake: FakeGPTunnel) -> None:
    payload = {"model": "kling", "prompt": "waves", "images": ["https://a/b.png"]}
    status, body = await raw_call(fake, "POST", "media/create", json=payload)
    assert status == 200
    assert set(body) == {"code", "id", "model", "created_at", "status", "result", "input"}
    assert (body["code"], body["model"], body["status"], body["result"]) == (
        0,
        "kling",
        "idle",
        None,
    )
    assert body["input"] == payload
    assert isinstance(body["created_at"], int)
    assert isinstance(fake.task(body["id"]), MediaTask)


async def test_media_result_answers_post_with_the_id_in_json_too(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)], model="suno")
    status, body = await raw_call(fake, "POST", "media/result", json={"task_id": task_id})
    assert status == 200
    assert set(body) == {"code", "id", "model", "created_at", "status", "result", "cost"}
    assert (body["code"], body["status"], body["model"]) == (0, "done", "suno")
    assert [clip["status"] for clip in body["result"]] == ["succeeded", "succeeded"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "code"),
    [
        ("GET", "media/result", {}, 3),
        ("GET", "media/result", {"params": {"task_id": "nobody"}}, 4),
        ("POST", "media/create", {"json": {"model": "kling"}}, 3),
        ("POST", "media/create", {"json": {"model": "k", "prompt": "p", "images": "x"}}, 3),
        ("POST", "media/create", {"data": b"not json"}, 3),
    ],
)
async def test_media_errors_come_with_http_200_and_a_code(
    fake: FakeGPTunnel, method: str, path: str, kwargs: dict[str, Any], code: int
) -> None:
    status, body = await raw_call(fake, method, path, **kwargs)
    assert status == 200
    assert body["code"] == code and body["message"]


MEDIA_ROUTES = [("POST", "media/create"), ("GET", "media/result"), ("POST", "media/result")]


@pytest.mark.parametrize(("method", "path"), MEDIA_ROUTES)
@pytest.mark.parametrize(
    "key", [None, "wrong-key", "Bearer fake-key-for-tests"], ids=["missing", "wrong", "bearer"]
)
async def test_a_wrong_key_on_media_is_http_200_with_code_2(
    fake: FakeGPTunnel,
    http_session: aiohttp.ClientSession,
    method: str,
    path: str,
    key: str | None,
) -> None:
    """docs.gptunnel.ru/media-api/models: "Always HTTP 200; body code: ... 2 invalid token".
    The emulator answered 401 with the other families' error object."""
    headers = {} if key is None else {"Authorization": key}
    payload = {"model": "suno", "prompt": "a jingle", "task_id": "6880f1c4a1b2c3d4e5f60718"}
    url = f"{fake.base_url}/{path}"
    async with http_session.request(method, url, headers=headers, json=payload) as response:
        assert response.status == 200
        assert await response.json() == {"code": 2, "message": "Invalid token"}


async def test_the_sdk_sees_a_wrong_key_on_media_as_code_2(fake: FakeGPTunnel) -> None:
    async with fake.client(api_key="not-the-key") as client:
        with pytest.raises(AuthenticationError) as create:
            await client.media.create("suno", "a jingle")
        with pytest.raises(AuthenticationError) as read:
            await client.media.result("6880f1c4a1b2c3d4e5f60718")
    for caught in (create, read):
        error = caught.value
        assert (error.status_code, error.code, error.type) == (200, "2", "invalid_token")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "media/create"),
        ("PUT", "media/create"),
        ("DELETE", "media/result"),
        ("POST", "media/generate"),  # seen in public code, not in the docs; not emulated
        ("GET", "media/nothing/here"),
    ],
)
async def test_a_wrong_method_or_path_on_media_is_http_200_with_code_99(
    fake: FakeGPTunnel, method: str, path: str
) -> None:
    """docs.gptunnel.ru/media-api/models: "Always HTTP 200; body code: ... 99 method not
    found". The emulator answered a wrong method 405 and a path it lacks 404."""
    assert await raw_call(fake, method, path) == (200, {"code": 99, "message": "Method not found"})


async def test_the_sdk_sees_a_media_path_the_emulator_lacks_as_code_99(
    fake: FakeGPTunnel,
) -> None:
    async with fake.client() as client:
        with pytest.raises(NotFoundError) as caught:
            await client.media.create_task("media/generate", {"model": "flux", "prompt": "p"})
    assert (caught.value.status_code, caught.value.code) == (200, "99")


async def test_outside_media_a_wrong_key_path_or_method_keeps_its_status(
    fake: FakeGPTunnel, http_session: aiohttp.ClientSession
) -> None:
    """Only ``/v1/media/`` answers errors with HTTP 200; a ``base_url`` without ``/v1``
    still meets a web server's 404, so the SDK still says to check it."""
    origin = fake.base_url.removesuffix("/v1")
    async with http_session.get(f"{fake.base_url}/balance") as response:
        assert response.status == 401
    async with http_session.get(f"{origin}/media/result", headers={"Authorization": "x"}) as r:
        assert r.status == 401
    assert (await raw_call(fake, "DELETE", "midjourney/result"))[0] == 405
    async with fake.client(base_url=origin) as client:
        with pytest.raises(NotFoundError, match="check base_url") as caught:
            await client.media.result("6880f1c4a1b2c3d4e5f60718")
    assert caught.value.status_code == 404


async def test_an_http_status_fault_on_media_is_sent_as_asked(fake: FakeGPTunnel) -> None:
    """A test that asks for an HTTP status gets it, on ``/media`` too (a proxy's answer,
    docs/testing.md); media's own errors are injected as HTTP 200 with a body."""
    fake.fail_next(503, path="media/result")
    status, body = await raw_call(fake, "GET", "media/result", params={"task_id": "t"})
    assert (status, body["error"]["type"]) == (503, "server_error")


@pytest.mark.parametrize(
    ("method", "path", "answer"),
    [
        ("POST", "media/create", (200, 3)),
        ("POST", "media/result", (200, 3)),
        ("POST", "faceswap/create", (400, None)),
        ("POST", "midjourney/imagine", (400, None)),
    ],
)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 980, 100_000])
async def test_json_nested_too_deeply_is_refused_as_input_not_a_crash(
    fake: FakeGPTunnel, method: str, path: str, answer: tuple[int, int | None], depth: int
) -> None:
    """Python's JSON parser gives up on it with a RecursionError, which the emulator
    answered with aiohttp's HTML 500 (on ``/media`` too); a little less deep, the
    parser took it, and echoing it back in the answer ran out of stack instead."""
    deep = '{"model": "flux", "prompt": "p", "x": ' + "[" * depth + "]" * depth + "}"
    status, body = await raw_call(fake, method, path, data=deep)
    assert (status, body.get("code")) == answer


async def test_json_as_deep_as_the_emulator_reads_is_taken(fake: FakeGPTunnel) -> None:
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    deep = '{"model": "flux-pro", "prompt": "a fox", "extra": ' + nested + "}"
    status, body = await raw_call(fake, "POST", "media/create", data=deep)
    assert (status, body.get("code")) == (200, 0)


async def test_the_sdk_reads_media_codes_as_typed_errors(fake: FakeGPTunnel) -> None:
    async with fake.client() as client:
        with pytest.raises(NotFoundError) as caught:
            await client.media.result("nobody")
    assert (caught.value.status_code, caught.value.code) == (200, "4")


async def test_a_wait_rides_through_injected_heavy_load(fake: FakeGPTunnel, instant: None) -> None:
    task_id = fake.script_task(steps=[("processing", 0), ("done", 100)], model="suno")
    heavy_load = {"code": 6, "message": "Heavy load"}
    fake.fail_next(200, body=heavy_load, times=6, path="media/result")
    async with fake.client() as client:
        task = await client.media.wait_for_result(task_id, timeout=30)
    assert task.status == "done" and task.is_done and len(task.clips) == 2
    assert len(fake.requests) == 8


async def test_an_injected_content_block_ends_the_wait(fake: FakeGPTunnel, instant: None) -> None:
    task_id = fake.script_task(steps=[("processing", 0)], model="flux-pro")
    fake.fail_next(200, body={"code": 1001, "message": "NSFW"}, path="media/result")
    async with fake.client() as client:
        with pytest.raises(ContentPolicyError, match="NSFW"):
            await client.media.wait_for_result(task_id)


async def test_a_failed_media_task_carries_its_message(fake: FakeGPTunnel, instant: None) -> None:
    task_id = fake.fail_task("the model crashed", steps=[("processing", 0)], model="kling")
    async with fake.client() as client:
        with pytest.raises(TaskFailedError, match="the model crashed") as caught:
            await client.media.wait_for_result(task_id)
    assert isinstance(caught.value.task, MediaTask) and caught.value.task.status == "failed"


# -- the balance ----------------------------------------------------------------------


async def test_balance_is_the_documented_object(fake: FakeGPTunnel) -> None:
    fake.set_balance(12.5, credit_limit=100)
    status, body = await raw_call(fake, "GET", "balance", params={"useWalletBalance": "true"})
    assert status == 200
    assert body == {"orgId": "fake-org", "object": "balance", "balance": 12.5, "creditLimit": 100}
    async with fake.client() as client:
        assert await client.balance() == Balance("fake-org", 12.5, 100.0) == fake.balance


async def test_creates_are_refused_once_balance_and_credit_are_used_up(
    fake: FakeGPTunnel,
) -> None:
    fake.set_balance(-10, credit_limit=10)
    async with fake.client() as client:
        with pytest.raises(InsufficientBalanceError) as http_402:
            await client.midjourney.imagine("a fox")
        with pytest.raises(InsufficientBalanceError) as code_5:
            await client.media.create("flux-pro", "a fox")
        fake.set_balance(-10, credit_limit=10.5)
        assert (await client.faceswap.create("https://a/1.png", "https://a/2.png")).status == "idle"
    assert http_402.value.status_code == 402
    assert (code_5.value.status_code, code_5.value.code) == (200, "5")


async def test_a_read_is_never_refused_for_balance_but_its_402_can_be_injected(
    fake: FakeGPTunnel, instant: None
) -> None:
    """docs.gptunnel.ru/faceswap/result lists a 402 without saying when a read gets
    it. The emulator refuses creates only, and docs/testing.md says so and shows how to
    inject the read's 402 by hand; it ends a wait at once."""
    fake.set_balance(-20)
    steps = [("processing", 10), ("done", 100)]
    async with fake.client() as client:
        assert (await client.wait_for_result(fake.script_task(steps=steps))).is_done
        broke = fake.script_task(steps=steps)
        fake.fail_next(402, path="faceswap/result")
        with pytest.raises(InsufficientBalanceError) as caught:
            await client.wait_for_result(broke)
    assert (caught.value.status_code, caught.value.type) == (402, "insufficient_balance_error")
    assert [request.query.get("taskId") for request in fake.requests].count(broke) == 1


@pytest.mark.parametrize("value", [float("nan"), "10", True, None])
def test_a_balance_must_be_a_finite_number(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="balance"):
        FakeGPTunnel().set_balance(value)


async def test_the_sdk_refuses_bad_arguments_before_the_emulator_sees_them(
    fake: FakeGPTunnel,
) -> None:
    async with fake.client() as client:
        with pytest.raises(ConfigurationError):
            await client.media.create("flux-pro", "a fox", images=["https://a/1.png", 42])
    assert fake.requests == []


async def test_an_api_error_answered_with_200_to_a_create_says_what_the_server_said(
    fake: FakeGPTunnel,
) -> None:
    """The docs call Midjourney "unofficial, may be switched off any time": an error object
    sent with a 200 was "not a Task object: KeyError('id')", the server's words nowhere in
    the message."""
    error = {"error": {"message": "Midjourney is switched off", "type": "server_error"}}
    fake.fail_next(200, body=error, path="midjourney/imagine")
    async with fake.client() as client:
        with pytest.raises(ResponseDecodeError) as caught:
            await client.midjourney.imagine("a fox")
    assert (
        "its 'id' field is missing; it is an API error: 'Midjourney is switched off' "
        "(server_error)" in str(caught.value)
    )
