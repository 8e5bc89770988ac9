"""The GPTunnel emulator: the API as documented, task scripts, faults, storage, request log."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import pickle
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gptunnel_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GPTunnelClient,
    InsufficientBalanceError,
    NotFoundError,
    PollPolicy,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    TaskFailedError,
    UsageError,
    WaitTimeoutError,
)
from gptunnel_async._images import MAX_IMAGE_BYTES
from gptunnel_async.testing import (
    FakeGPTunnel,
    UnknownTaskError,
    _control,
    instant_waits,
    instant_waits_enabled,
    sample_image,
    set_instant_waits,
)
from gptunnel_async.testing._control import MAX_CONTROL_BYTES, MAX_SPEC_STEPS
from gptunnel_async.testing._scripts import TaskScript
from gptunnel_async.testing._state import (
    MAX_LOGGED_BYTES,
    MAX_LOGGED_REQUESTS,
    MAX_QUEUED_FAULTS,
    MAX_TASKS,
    EmulatorState,
    RecordedRequest,
)

from .conftest import HANG_GUARD, announced_only, loopback_server

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASK_KEYS = {"id", "parentId", "object", "type", "percent", "status", "result", "error", "usage"}
USAGE_KEYS = {
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_cost",
    "completion_cost",
    "total_cost",
}
QUICK = PollPolicy(initial=0.01, multiplier=1.0, max_interval=0.01, jitter=0.0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(
    http: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with http.get(url, **kwargs) as response:
        return response.status, await response.json(content_type=None), response.headers


# -- the documented protocol ----------------------------------------------------------


async def test_a_read_answers_the_documented_task_object(
    fake: FakeGPTunnel, http: aiohttp.ClientSession
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    status, body, _ = await get_json(
        http,
        f"{fake.base_url}/faceswap/result",
        params={"taskId": task_id},
        headers={"Authorization": fake.api_key},
    )
    assert status == 200
    assert set(body) == TASK_KEYS
    assert set(body["usage"]) == USAGE_KEYS
    assert body["id"] == task_id
    assert body["object"] == "task"
    assert body["type"] == "@FaceSwap"
    assert body["parentId"] is None
    assert (body["status"], body["percent"], body["error"]) == ("done", 100, None)
    assert body["result"].startswith(fake.storage_url)


async def test_base_url_ends_in_v1_on_loopback(fake: FakeGPTunnel) -> None:
    url = URL(fake.base_url)
    assert url.host == "127.0.0.1"
    assert url.path == "/v1"


async def test_a_read_without_task_id_is_the_documented_400(
    fake: FakeGPTunnel, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await get_json(
        http, f"{fake.base_url}/faceswap/result", headers={"Authorization": fake.api_key}
    )
    assert status == 400
    assert body == {
        "error": {
            "message": "'taskId' is a required property",
            "type": "invalid_request_error",
            "param": "taskId",
            "code": None,
        }
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "wrong-key"}, {"Authorization": f"Bearer {'fake-key-for-tests'}"}],
    ids=["missing", "wrong", "bearer"],
)
async def test_only_the_bare_key_is_authorised(
    fake: FakeGPTunnel, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    status, body, _ = await get_json(
        http, f"{fake.base_url}/faceswap/result", params={"taskId": task_id}, headers=headers
    )
    assert status == 401
    assert body["error"]["message"] == "Unauthorized"
    assert body["error"]["type"] == "unauthorized_request_error"


async def test_the_sdk_sees_a_wrong_key_as_authentication_error(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    async with fake.client(api_key="not-the-key") as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.get_result(task_id)
    assert caught.value.type == "unauthorized_request_error"


async def test_an_unknown_task_is_not_found(fake: FakeGPTunnel) -> None:
    async with fake.client() as client:
        with pytest.raises(NotFoundError):
            await client.get_result("no-such-task")


async def test_unknown_paths_are_404_and_wrong_methods_405(
    fake: FakeGPTunnel, http: aiohttp.ClientSession
) -> None:
    auth = {"Authorization": fake.api_key}
    async with http.get(f"{fake.base_url}/nothing/here", headers=auth) as response:
        # A web server's answer, not the API's JSON error: the SDK tells the two apart.
        assert (response.status, await response.text()) == (404, "Cannot GET /v1/nothing/here")
    async with fake.client(base_url=fake.base_url.removesuffix("/v1")) as client:
        with pytest.raises(NotFoundError, match="check base_url"):
            await client.get_result("task-1")
    async with http.delete(f"{fake.base_url}/faceswap/result", headers=auth) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET"


async def test_a_custom_key_is_the_one_required() -> None:
    async with FakeGPTunnel(api_key="sk-custom") as fake:
        task_id = fake.script_task(steps=[("done", 100)])
        async with fake.client() as client:
            assert (await client.get_result(task_id)).is_done
        assert fake.requests[0].headers["Authorization"] == "sk-custom"


@given(st.text(max_size=12) | st.integers())
def test_the_emulator_takes_only_a_key_the_client_takes(key: Any) -> None:
    """``FakeGPTunnel(api_key="")`` accepted a request whose Authorization header was
    empty, as no real key is: a bot that forgot its key passed its tests."""
    try:
        GPTunnelClient(api_key=key, base_url="http://127.0.0.1:9")
    except ConfigurationError:
        client_takes = False
    else:
        client_takes = True
    if client_takes:
        assert FakeGPTunnel(api_key=key).api_key == key
    else:
        refused = r"api_key must be (a key a client can send|text \(str\))"
        with pytest.raises(ConfigurationError, match=refused):
            FakeGPTunnel(api_key=key)


async def test_an_emulator_key_is_never_empty_on_the_wire() -> None:
    for key in ("", None):
        with pytest.raises(ConfigurationError):
            FakeGPTunnel(api_key=key)  # type: ignore[arg-type]
    empty = {"Authorization": ""}
    async with FakeGPTunnel() as fake, aiohttp.ClientSession() as http:
        answer = await http.get(f"{fake.base_url}/balance", headers=empty)
        assert answer.status == 401
        answer.release()


# -- creating tasks -------------------------------------------------------------------


async def test_create_answers_an_idle_task_and_logs_the_payload(
    fake: FakeGPTunnel, instant: None
) -> None:
    async with fake.client() as client:
        created = await client.faceswap.create(
            "https://example.test/person.jpg",
            sample_image("face.png"),
            webhook="https://example.test/hook",
        )
        assert (created.status, created.percent, created.type) == ("idle", 0, "@FaceSwap")
        final = await client.faceswap.wait_for_result(created.id, policy=QUICK)
    assert final.is_done
    payload = fake.requests[0].json
    assert fake.requests[0].method == "POST"
    assert fake.requests[0].path == "/v1/faceswap/create"
    assert payload["sourceImage"] == "https://example.test/person.jpg"
    assert payload["faceImage"] == (
        "data:image/png;base64," + base64.b64encode(sample_image("face.png")).decode()
    )
    assert payload["webhook"] == "https://example.test/hook"


async def test_created_tasks_follow_the_default_script(fake: FakeGPTunnel, instant: None) -> None:
    async with fake.client() as client:
        created = await client.faceswap.create("https://a.test/1.png", "https://a.test/2.png")
        seen = [(e.status, e.percent) async for e in client.wait_for_result(created.id)]
    assert seen == [("idle", 0), ("processing", 50), ("done", 100)]


async def test_script_created_applies_to_later_creations(fake: FakeGPTunnel, instant: None) -> None:
    fake.script_created(steps=[("running", 70), ("failed", 70)], error="no face found")
    async with fake.client() as client:
        created = await client.faceswap.create("https://a.test/1.png", "https://a.test/2.png")
        with pytest.raises(TaskFailedError, match="no face found"):
            await client.wait_for_result(created.id)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"faceImage": "https://a.test/f.png"}, "sourceImage"),
        ({"sourceImage": "https://a.test/s.png", "faceImage": ""}, "faceImage"),
        ({"sourceImage": "not an image", "faceImage": "https://a.test/f.png"}, "sourceImage"),
        ({"sourceImage": "data:image/png;base64,@@@", "faceImage": "https://a.test/f.png"}, None),
        (
            {
                "sourceImage": "https://a.test/s.png",
                "faceImage": "https://a.test/f.png",
                "webhook": "ftp://a.test/hook",
            },
            "webhook",
        ),
        ([1, 2], None),
    ],
)
async def test_create_rejects_bad_payloads_with_400(
    fake: FakeGPTunnel, http: aiohttp.ClientSession, payload: Any, param: str | None
) -> None:
    async with http.post(
        f"{fake.base_url}/faceswap/create", json=payload, headers={"Authorization": fake.api_key}
    ) as response:
        body = await response.json()
    assert response.status == 400
    assert body["error"]["type"] == "invalid_request_error"
    if param is not None:
        assert body["error"]["param"] == param
    assert not fake.requests[0].json or fake.requests[0].json == payload


async def test_the_sdk_sees_a_rejected_create_as_bad_request(fake: FakeGPTunnel) -> None:
    # create() refuses such a data: URI itself; the emulator does too
    body = {"sourceImage": "https://a.test/s.png", "faceImage": "data:image/png;base64,!!"}
    async with fake.client() as client:
        with pytest.raises(BadRequestError) as caught:
            await client.faceswap.create_task("faceswap/create", body)
    assert caught.value.param == "faceImage"


# -- task scripts ---------------------------------------------------------------------


async def test_steps_advance_one_per_read_and_the_last_repeats(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("queued", 0), ("running", 40), ("done", 100)])
    async with fake.client() as client:
        seen = [(await client.get_result(task_id)).status for _ in range(5)]
    assert seen == ["queued", "running", "done", "done", "done"]


async def test_a_wait_yields_each_scripted_step(fake: FakeGPTunnel, instant: None) -> None:
    task_id = fake.script_task(steps=[("queued", 0), ("running", 40), ("done", 100)])
    async with fake.client() as client:
        seen = [(e.status, e.percent) async for e in client.wait_for_result(task_id)]
    assert seen == [("queued", 0), ("running", 40), ("done", 100)]
    assert [r.query for r in fake.requests] == [{"taskId": task_id}] * 3


async def test_a_duration_script_rises_with_the_clock(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(duration=0.3)
    async with fake.client() as client:
        seen = [(e.status, e.percent) async for e in client.wait_for_result(task_id, policy=QUICK)]
    percents = [percent for _, percent in seen]
    assert seen[-1] == ("done", 100)
    assert all(status == "processing" for status, _ in seen[:-1])
    assert percents == sorted(percents)
    assert len(seen) >= 3


async def test_under_instant_waits_a_duration_task_is_polled_until_it_is_done(
    fake: FakeGPTunnel, instant: None
) -> None:
    """The pacing put a read past the deadline after five reads (1, 1.5, 2.3, 3.4, 5.1 s),
    and with the pauses skipped the wait gave up at once, "within 5s", after 9 ms."""
    task_id = fake.script_task(duration=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with fake.client() as client:
        task = await client.wait_for_result(task_id, timeout=5)
    assert task.status == "done"
    assert loop.time() - started >= 0.5  # the task's own time, on the real clock


async def test_under_instant_waits_the_deadline_still_follows_the_real_clock(
    fake: FakeGPTunnel, instant: None
) -> None:
    task_id = fake.script_task(steps=[("running", 10)])  # never finishes
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with fake.client() as client:
        with pytest.raises(WaitTimeoutError):
            await client.wait_for_result(task_id, timeout=0.3)
    assert loop.time() - started >= 0.3
    assert len(fake.requests) > 5  # read again and again, the pauses skipped


async def test_a_duration_script_with_an_error_fails_at_the_end(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(duration=0.05, error="GPU on fire")
    async with fake.client() as client:
        with pytest.raises(TaskFailedError) as caught:
            await client.wait_for_result(task_id, policy=QUICK)
    assert caught.value.task.status == "failed"
    assert caught.value.task.error == "GPU on fire"


@pytest.mark.parametrize("status", ["failed", "error"])
async def test_fail_task_fails_after_its_steps(
    fake: FakeGPTunnel, instant: None, status: str
) -> None:
    task_id = fake.fail_task("no face found", steps=[("running", 30)], status=status)
    events: list[tuple[str, int]] = []
    async with fake.client() as client:
        waiter = client.wait_for_result(
            task_id, on_progress=lambda e: events.append((e.status, e.percent))
        )
        with pytest.raises(TaskFailedError) as caught:
            await waiter
    assert events == [("running", 30)]
    assert (caught.value.task.status, caught.value.task.error) == (status, "no face found")


async def test_task_peeks_without_counting_a_read(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("queued", 0), ("done", 100)], task_id="my-task")
    assert task_id == "my-task"
    assert fake.task(task_id).status == "queued"
    assert fake.task(task_id).status == "queued"
    assert fake.requests == []
    with pytest.raises(KeyError) as unknown:  # as a mapping's lookup, and the SDK's own
        fake.task("other")
    assert isinstance(unknown.value, UnknownTaskError)
    assert isinstance(unknown.value, ConfigurationError)  # a GPTunnelError
    assert str(unknown.value) == "the emulator has no task 'other'"
    assert pickle.loads(pickle.dumps(unknown.value)).args == unknown.value.args


def test_task_ids_are_unique() -> None:
    with FakeGPTunnel() as fake:
        fake.script_task(steps=[("done", 100)], task_id="same")
        with pytest.raises(ConfigurationError, match="already has a task"):
            fake.script_task(steps=[("done", 100)], task_id="same")


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({}, "exactly one"),
        ({"steps": [("done", 100)], "duration": 1.0}, "exactly one"),
        ({"steps": []}, "at least one"),
        ({"steps": [("done", 101)]}, "percent"),
        ({"steps": [("", 0)]}, "status"),
        ({"steps": [("done", True)]}, "percent"),
        ({"duration": -1}, "duration"),
        ({"duration": float("nan")}, "duration"),
        ({"duration": 10**400}, "duration"),
        ({"steps": [("done", 100, 5)]}, "a step must be a"),
        ({"steps": [5]}, "a step must be a"),
        ({"steps": "ab"}, "a step must be a"),
        ({"duration": 1, "error": 5}, "error"),
    ],
)
def test_bad_scripts_are_refused(kwargs: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        TaskScript.build(**kwargs)


def test_a_duration_script_is_a_function_of_elapsed_time() -> None:
    script = TaskScript.build(duration=10.0)
    assert script.state(reads=0, elapsed=0.0) == ("processing", 0)
    assert script.state(reads=9, elapsed=4.2) == ("processing", 42)
    assert script.state(reads=0, elapsed=9.999) == ("processing", 99)
    assert script.state(reads=0, elapsed=10.0) == ("done", 100)


# -- faults ---------------------------------------------------------------------------


async def test_fail_next_is_retried_through_honouring_retry_after(
    fake: FakeGPTunnel, instant: None
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(503, times=2, retry_after=1)
    async with fake.client() as client:
        assert (await client.get_result(task_id)).is_done
    assert len(fake.requests) == 3


async def test_fail_next_sends_retry_after_and_the_error_body(fake: FakeGPTunnel) -> None:
    fake.fail_next(429, retry_after=7)
    async with fake.client(max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.get_result("anything")
    assert caught.value.retry_after == 7
    assert caught.value.type == "rate_limit_error"


@pytest.mark.parametrize(("seconds", "header"), [(0, "0"), (0.5, "1"), (7, "7"), (1e6, "1000000")])
async def test_fail_next_sends_retry_after_as_delta_seconds(
    fake: FakeGPTunnel, http: aiohttp.ClientSession, seconds: float, header: str
) -> None:
    """Whole seconds, as RFC 9110 has them (``1*DIGIT``): ``f"{0.5:g}"`` sent ``0.5``,
    and ``1e+06``, which no strict client reads."""
    fake.fail_next(503, retry_after=seconds)
    async with http.get(f"{fake.base_url}/faceswap/result") as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == header


async def test_retry_after_may_be_a_date(fake: FakeGPTunnel, http: aiohttp.ClientSession) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    fake.fail_next(503, retry_after=when)
    async with http.get(f"{fake.base_url}/faceswap/result") as response:
        assert response.status == 503
        assert response.headers["Retry-After"].endswith("GMT")


async def test_fail_next_402_is_the_documented_balance_error(fake: FakeGPTunnel) -> None:
    fake.fail_next(402)
    async with fake.client() as client:
        with pytest.raises(InsufficientBalanceError) as caught:
            await client.faceswap.create("https://a.test/s.png", "https://a.test/f.png")
    assert caught.value.message == "Organization balance is too low to use API"
    assert caught.value.type == "insufficient_balance_error"


async def test_a_raw_body_fault_is_sent_as_is(fake: FakeGPTunnel) -> None:
    fake.fail_next(200, body="<html>proxy says hi</html>")
    async with fake.client() as client:
        with pytest.raises(ResponseDecodeError, match="not JSON"):
            await client.get_result("anything")


async def test_a_json_body_fault_is_sent_as_json(fake: FakeGPTunnel) -> None:
    fake.fail_next(500, body={"error": {"message": "boom", "type": "engine_error"}})
    async with fake.client(max_retries=0) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_result("anything")
    assert (caught.value.message, caught.value.type) == ("boom", "engine_error")


async def test_faults_can_target_one_path(fake: FakeGPTunnel, instant: None) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(400, path="faceswap/create")
    async with fake.client() as client:
        assert (await client.get_result(task_id)).is_done
        with pytest.raises(BadRequestError):
            await client.faceswap.create("https://a.test/s.png", "https://a.test/f.png")
        assert (await client.faceswap.create("https://a.test/s.png", "https://a.test/f.png")).id


@pytest.mark.parametrize(
    "path", ["faceswap/result", "/v1/faceswap/result", "v1/faceswap/result/", "/faceswap/result"]
)
async def test_a_fault_s_path_may_be_spelled_as_the_request_log_spells_it(
    fake: FakeGPTunnel, instant: None, path: str
) -> None:
    """``/v1/faceswap/result``, as ``RecordedRequest.path`` shows it, was taken and never
    fired: the test meant to check a retry tested nothing."""
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(503, path=path)
    fake.drop_next(times=2, path=path)
    async with fake.client(max_retries=0) as client:
        with pytest.raises(ServerError):
            await client.get_result(task_id)
        with pytest.raises(APIConnectionError):
            await client.get_result(task_id)
        assert (await client.get_result(task_id)).is_done


@pytest.mark.parametrize("path", ["nonexistent/endpoint", "v2/faceswap/result", "faceswap"])
def test_a_fault_on_an_api_path_no_endpoint_has_is_refused(path: str) -> None:
    fake = FakeGPTunnel()
    for fault in (
        lambda: fake.fail_next(503, path=path),
        lambda: fake.drop_next(path=path),
        lambda: fake.delay_next(1.0, path=path),
    ):
        with pytest.raises(ConfigurationError, match="endpoint of the API"):
            fault()
    fake.fail_next(503, path=path, server="storage")  # storage paths are any file's


async def test_a_fault_for_every_request_lasts_until_cleared(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(500, times=None)
    async with fake.client(max_retries=0) as client:
        for _ in range(3):
            with pytest.raises(ServerError):
                await client.get_result(task_id)
        fake.clear_faults()
        assert (await client.get_result(task_id)).is_done


async def test_faults_are_used_in_the_order_they_were_queued(
    fake: FakeGPTunnel, instant: None
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(502)
    fake.drop_next()
    fake.fail_next(401)
    async with fake.client() as client:
        with pytest.raises(AuthenticationError):
            await client.get_result(task_id)
    assert len(fake.requests) == 3


async def test_drop_next_cuts_the_connection(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.drop_next(times=2)  # aiohttp resends a dropped GET once by itself
    async with fake.client(max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            await client.get_result(task_id)
        assert (await client.get_result(task_id)).is_done
    assert len(fake.requests) == 3


async def test_a_dropped_create_is_not_sent_again(fake: FakeGPTunnel) -> None:
    fake.drop_next(path="faceswap/create")
    async with fake.client() as client:
        with pytest.raises(APIConnectionError):
            await client.faceswap.create("https://a.test/s.png", "https://a.test/f.png")
    assert len(fake.requests) == 1


async def test_delay_next_makes_a_request_time_out(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.delay_next(3600.0)
    async with asyncio.timeout(HANG_GUARD):  # closing does not wait for the held answer
        async with fake.client(timeout=0.1, max_retries=0) as client:
            with pytest.raises(APITimeoutError):
                await client.get_result(task_id)
        await fake.close()


async def test_delay_next_slows_an_answer_down(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.delay_next(0.2)
    async with fake.client() as client:
        started = time.monotonic()
        assert (await client.get_result(task_id)).is_done
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "complaint"),
    [
        ("fail_next", (600,), {}, "status"),
        ("fail_next", (503,), {"times": 0}, "times"),
        ("fail_next", (503,), {"times": True}, "times"),
        ("fail_next", (503,), {"server": "elsewhere"}, "server"),
        ("delay_next", (-1,), {}, "seconds"),
        ("drop_next", (), {"times": -2}, "times"),
        ("delay_next", (10**400,), {}, "seconds"),
        ("set_balance", (10**400,), {}, "balance"),
        ("set_balance", (1.0,), {"credit_limit": float("inf")}, "credit_limit"),
        ("fail_next", (503,), {"retry_after": "soon"}, "retry_after"),
        ("fail_next", (503,), {"retry_after": float("nan")}, "retry_after"),
        ("fail_next", (503,), {"path": 5}, "path"),
        ("fail_task", (), {"steps": [5]}, "a step must be a"),
        ("script_task", (), {"duration": 1, "task_id": 5}, "task_id"),
        ("script_task", (), {"duration": 1, "task_id": "a\nb"}, "unprintable"),
        ("script_task", (), {"duration": 1, "model": "suno", "clips": 10**6}, "clips"),
        ("fail_next", (400,), {"body": object()}, "body"),
        ("fail_next", (400,), {"body": {"x": float("nan")}}, "body"),
        ("script_task", (), {"duration": 1, "type": 5}, "type"),
        ("script_task", (), {"duration": 1, "model": 5}, "model"),
    ],
)
def test_bad_faults_are_refused(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        getattr(FakeGPTunnel(), method)(*args, **kwargs)


# -- the storage origin ---------------------------------------------------------------


async def test_results_download_from_another_origin_without_the_key(
    fake: FakeGPTunnel, tmp_path: Path, instant: None
) -> None:
    task_id = fake.script_task(steps=[("running", 50), ("done", 100)])
    async with fake.client() as client:
        task = await client.wait_for_result(task_id)
        path = await client.download_result(task, tmp_path / "out.png")
    assert URL(task.result or "").origin() == URL(fake.storage_url).origin()
    assert URL(fake.storage_url).origin() != URL(fake.base_url).origin()
    assert path.read_bytes() == sample_image("result.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    [download] = fake.storage_requests
    assert download.path == f"/results/{task_id}_result.png"
    assert "Authorization" not in download.headers
    assert all(r.headers["Authorization"] == fake.api_key for r in fake.requests)


async def test_storage_has_nothing_for_unfinished_or_unknown_tasks(
    fake: FakeGPTunnel, http: aiohttp.ClientSession
) -> None:
    task_id = fake.script_task(steps=[("running", 50)])
    for name in (f"{task_id}_result.png", "nobody_result.png", task_id):
        async with http.get(f"{fake.storage_url}/results/{name}") as response:
            assert response.status == 404


async def test_a_custom_result_image_is_served() -> None:
    async with FakeGPTunnel(result_image=b"\x89PNG\r\n\x1a\nfake") as fake:
        url = fake.task(fake.script_task(steps=[("done", 100)])).result
        assert url is not None
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert await r.read() == b"\x89PNG\r\n\x1a\nfake"
            assert r.content_type == "image/png"


async def test_storage_faults_reach_downloads(fake: FakeGPTunnel, tmp_path: Path) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(404, server="storage")
    async with fake.client() as client:
        task = await client.get_result(task_id)
        with pytest.raises(NotFoundError):
            await client.download_result(task, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()
    assert len(fake.requests) == 1


# -- the request log ------------------------------------------------------------------


async def test_the_request_log_records_what_arrived(fake: FakeGPTunnel) -> None:
    async with fake.client() as client:
        with pytest.raises(NotFoundError):
            await client.get_result("id with spaces/&")
    [request] = fake.requests
    assert request.method == "GET"
    assert request.path == "/v1/faceswap/result"
    assert request.query == {"taskId": "id with spaces/&"}
    assert request.headers["authorization"] == fake.api_key
    assert request.body == b""
    assert request.json is None


def test_the_request_log_is_a_copy() -> None:
    with FakeGPTunnel() as fake:
        fake.requests.append(fake.requests)  # type: ignore[arg-type]
        assert fake.requests == []


# -- lifetime -------------------------------------------------------------------------


def test_a_sync_with_runs_it_on_a_background_thread() -> None:
    with FakeGPTunnel() as fake:
        task_id = fake.script_task(steps=[("running", 10), ("done", 100)])

        async def wait() -> str:
            async with fake.client() as client:
                return (await client.wait_for_result(task_id, policy=QUICK)).status

        assert asyncio.run(wait()) == "done"
    with pytest.raises(UsageError):
        fake.base_url  # noqa: B018


async def test_it_is_not_usable_before_start_or_after_close() -> None:
    fake = FakeGPTunnel()
    with pytest.raises(UsageError, match="not running"):
        fake.client()
    async with fake:
        with pytest.raises(UsageError, match="already running"):
            await fake.start()
        with pytest.raises(UsageError, match="already running"):
            fake.__enter__()
    with pytest.raises(UsageError):
        fake.storage_url  # noqa: B018
    await fake.close()
    assert repr(fake) == "<FakeGPTunnel not started>"


async def test_closing_ends_connections_the_client_keeps(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    async with fake.client(max_retries=0) as client:
        await client.get_result(task_id)
        await fake.close()
        with pytest.raises(APIConnectionError):
            await client.get_result(task_id)


# -- instant waits and samples --------------------------------------------------------


def test_instant_waits_restores_the_previous_setting() -> None:
    assert not instant_waits_enabled()
    with instant_waits():
        assert instant_waits_enabled()
        with instant_waits(False):
            assert not instant_waits_enabled()
        assert instant_waits_enabled()
    assert not instant_waits_enabled()


@given(
    settings=st.lists(st.booleans(), min_size=1, max_size=6),
    before=st.booleans(),
    data=st.data(),
)
def test_instant_waits_blocks_may_end_in_any_order(
    settings: list[bool], before: bool, data: st.DataObject
) -> None:
    """Blocks of concurrent tasks overlap: one entered after another may end first. The
    previous setting restored at each end left instant waits on for good."""
    set_instant_waits(before)
    try:
        blocks = []
        for enabled in settings:
            block = instant_waits(enabled)
            block.__enter__()
            blocks.append((block, enabled))
            assert instant_waits_enabled() is enabled  # the newest block decides
        order = data.draw(st.permutations(range(len(blocks))), label="order")
        for index in order:
            blocks[index][0].__exit__(None, None, None)
            still_open = [blocks[i][1] for i in sorted(order[order.index(index) + 1 :])]
            assert instant_waits_enabled() is (still_open[-1] if still_open else before)
    finally:
        set_instant_waits(False)


async def test_instant_waits_of_two_tasks_that_end_out_of_order_leave_it_as_it_was() -> None:
    first_in, second_in = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        with instant_waits(True):
            first_in.set()
            await second_in.wait()  # the second enters, then this one ends first

    async def second() -> None:
        await first_in.wait()
        with instant_waits(False):
            second_in.set()
            await asyncio.sleep(0.01)

    await asyncio.gather(first(), second())
    assert not instant_waits_enabled()


def test_set_instant_waits_inside_a_block_lasts_until_the_block_ends() -> None:
    """A suite-wide set_instant_waits(True) was lost when one test, inside the fixture's
    block, turned instant waits off."""
    set_instant_waits(True)
    try:
        with instant_waits():
            set_instant_waits(False)
            assert not instant_waits_enabled()
        assert instant_waits_enabled()  # the suite's setting, as before the block
    finally:
        set_instant_waits(False)


def test_set_instant_waits_switches_the_sdk_sleep() -> None:
    try:
        set_instant_waits()
        assert instant_waits_enabled()
    finally:
        set_instant_waits(False)
    assert not instant_waits_enabled()


async def test_a_wait_with_default_pacing_takes_no_real_time(
    fake: FakeGPTunnel, instant: None
) -> None:
    # Ten reads at 0 %: paced for real by the default policy, over 35 s of pauses.
    task_id = fake.script_task(steps=[*[("queued", 0)] * 10, ("done", 100)])
    async with asyncio.timeout(HANG_GUARD), fake.client() as client:
        assert (await client.wait_for_result(task_id)).is_done


@pytest.mark.parametrize("name", ["source.png", "face.png", "result.png"])
def test_samples_are_small_pngs(name: str) -> None:
    data = sample_image(name)
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) < 1024


def test_an_unknown_sample_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match=r"source\.png"):
        sample_image("../secret")


async def test_a_scripted_tasks_clock_starts_at_its_first_read() -> None:
    async with FakeGPTunnel() as fake:
        task_id = fake.script_task(duration=0.05)
        await asyncio.sleep(0.1)  # longer than the whole task, before anyone looks
        async with fake.client() as client:
            first = await client.get_result(task_id)
    assert (first.status, first.percent) == ("processing", 0)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"steps": [5]}', "a step must be a"),
        (b'{"duration": 1' + b"0" * 401 + b"}", "duration"),
        (b"{}", '"steps": [[status, percent], ...] or "duration": seconds'),
        (
            b'{"steps": [["running", 1]], "duration": 1}',
            '"steps": [[status, percent], ...] or "duration": seconds',
        ),
    ],
    ids=[
        "nested too deeply",
        "a step",
        "a duration beyond the float range",
        "neither steps nor a duration (in JSON's words)",
        "both steps and a duration (in JSON's words)",
    ],
)
async def test_the_control_endpoint_answers_a_bad_spec_400(
    fake: FakeGPTunnel, body: bytes, complaint: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.control_url}/tasks", data=body) as answer,
    ):
        assert answer.status == 400
        assert complaint in (await answer.json())["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/created"),  # a typo, or an endpoint the emulator lacks
        ("GET", "/faults"),  # a known path, another method
        ("DELETE", "/tasks"),
        ("GET", ""),
        ("PUT", "/requests/x"),
    ],
)
async def test_a_control_path_the_emulator_lacks_is_a_404_and_takes_no_fault(
    fake: FakeGPTunnel, method: str, path: str
) -> None:
    """A mistyped control URL fell through to the API: it took the fault queued for the
    code under test (a 429 answered the control request) and was logged as an API
    request, though control requests are not."""
    fake.fail_next(429)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{fake.control_url}{path}", json={}) as answer,
    ):
        assert answer.status == 404
        assert "control endpoint" in (await answer.json())["error"]
    assert fake.requests == []
    async with fake.client(max_retries=0) as client:
        with pytest.raises(RateLimitError):  # the fault is still there for the API
            await client.balance()


async def test_a_face_swap_of_two_of_the_sdks_largest_images_is_taken(
    fake: FakeGPTunnel,
) -> None:
    # aiohttp's default (1 MiB) refused two 400 KB photos sent inline with a 413 the
    # request log never saw, though the SDK sends images of up to 10 MiB each.
    largest = b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES - 8)
    async with fake.client() as client:
        task = await client.faceswap.create(largest, largest)
    assert task.status == "idle"
    [create] = [r for r in fake.requests if r.path == "/v1/faceswap/create"]
    assert len(create.body) > 2 * MAX_IMAGE_BYTES  # both images, as base64


# -- bounds ---------------------------------------------------------------------------


async def test_the_request_log_keeps_at_most_its_bytes_of_unauthorised_bodies(
    fake: FakeGPTunnel, http: aiohttp.ClientSession
) -> None:
    """Anyone who reaches the emulator's port, without the key too, sends bodies of up to
    28 MiB: the log keeps the latest within MAX_LOGGED_BYTES, not every one."""
    size = 24 * 2**20
    for mark in b"abcd":
        body = bytes([mark]) * size
        sent = io.BytesIO(body)
        async with http.post(f"{fake.base_url}/faceswap/create", data=sent) as response:
            assert response.status == 401
    kept = fake.requests
    assert sum(len(request.body) for request in kept) <= MAX_LOGGED_BYTES
    assert [request.body[:1] for request in kept] == [b"b", b"c", b"d"][-len(kept) :]
    assert len(kept) == MAX_LOGGED_BYTES // size


@pytest.mark.parametrize(
    ("sizes", "kept"),
    [
        ([0] * (MAX_LOGGED_REQUESTS + 5), MAX_LOGGED_REQUESTS),  # many small ones
        ([MAX_LOGGED_BYTES + 1], 1),  # the latest is kept, however big
        ([MAX_LOGGED_BYTES // 2] * 3, 1),  # with its headers, two halves are over
        ([10, MAX_LOGGED_BYTES + 1, 10], 1),
        ([10] * 3, 3),
    ],
)
def test_the_request_log_forgets_the_oldest_past_either_bound(sizes: list[int], kept: int) -> None:
    state = EmulatorState(api_key="k", result_image=b"")
    headers = CIMultiDictProxy(CIMultiDict({"Host": "x"}))
    for index, size in enumerate(sizes):
        state.record("api", RecordedRequest("POST", f"/{index}", {}, headers, b"x" * size))
    log = state.log("api")
    assert [request.path for request in log] == [f"/{index}" for index in range(len(sizes))][
        len(sizes) - kept :
    ]


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "complaint"),
    [
        ("faults", b'{"body": "' + b"x" * MAX_CONTROL_BYTES + b'"}', 413, "at most"),
        ("tasks", b'{"error": "' + b"x" * MAX_CONTROL_BYTES + b'"}', 413, "at most"),
        ("tasks", json.dumps({"steps": [["running", 1]] * (MAX_SPEC_STEPS + 1)}), 400, "over"),
        ("tasks", json.dumps({"steps": [["done", 100]] * MAX_SPEC_STEPS}), 200, None),
    ],
    ids=["a big fault", "a big task", "too many steps", "the most steps"],
)
async def test_the_control_endpoints_keep_nothing_unbounded(
    fake: FakeGPTunnel, endpoint: str, body: bytes | str, status: int, complaint: str | None
) -> None:
    """They need no key, and keep what they are sent: bodies are bounded, and so is a
    spec's list of steps."""
    sent = body.encode() if isinstance(body, str) else body
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.control_url}/{endpoint}", data=io.BytesIO(sent)) as answer,
    ):
        assert answer.status == status
        if complaint is not None:
            assert complaint in (await answer.json())["error"]


async def test_the_fault_queue_is_bounded(fake: FakeGPTunnel) -> None:
    """Each request looks through every queued fault: the queue is bounded, over HTTP
    (400) and in Python (ConfigurationError) alike."""
    for _ in range(MAX_QUEUED_FAULTS):
        fake.fail_next(503, path="midjourney/pan")
    with pytest.raises(ConfigurationError, match="at most"):
        fake.fail_next(503)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.control_url}/faults", json={"status": 500}) as answer,
    ):
        assert answer.status == 400
        assert "clear_faults()" in (await answer.json())["error"]
    fake.clear_faults()
    fake.fail_next(503)


async def test_the_task_table_is_bounded(fake: FakeGPTunnel, http: aiohttp.ClientSession) -> None:
    """Creates cost nothing with the public default key: past MAX_TASKS one is answered
    503 (media: code 6, heavy load), and scripting one is a ConfigurationError."""
    for _ in range(MAX_TASKS):
        fake.script_task(duration=1.0)
    with pytest.raises(ConfigurationError, match="at most"):
        fake.script_task(duration=1.0)
    key = {"Authorization": fake.api_key}
    swap = {"sourceImage": "https://a.example/x.png", "faceImage": "https://a.example/y.png"}
    async with http.post(f"{fake.base_url}/faceswap/create", json=swap, headers=key) as answer:
        assert answer.status == 503
    media = {"model": "suno", "prompt": "a song"}
    async with http.post(f"{fake.base_url}/media/create", json=media, headers=key) as answer:
        assert (answer.status, (await answer.json())["code"]) == (200, 6)


async def test_the_request_log_dump_is_the_documented_json(
    fake: FakeGPTunnel, http: aiohttp.ClientSession
) -> None:
    """``GET /_emulator/requests`` is written a request at a time: still one JSON object
    of both logs, each request's body as text (bytes that are not UTF-8 as U+FFFD)."""
    async with http.post(f"{fake.base_url}/faceswap/create", data=b"\xff{}\xe2\x82\xac") as sent:
        assert sent.status == 401
    async with http.get(f"{fake.storage_url}/results/none.png") as fetched:
        assert fetched.status == 404
    async with http.get(f"{fake.control_url}/requests") as answer:
        assert answer.status == 200
        dump = json.loads(await answer.read())
    assert set(dump) == {"api", "storage"}
    [create] = dump["api"]
    assert (create["method"], create["path"], create["body"]) == (
        "POST",
        "/v1/faceswap/create",
        "\ufffd{}\u20ac",
    )
    assert [request["path"] for request in dump["storage"]] == ["/results/none.png"]


REAL_KEY = "sk-live-0123456789abcdefREAL"


@pytest.mark.parametrize("header", ["Authorization", "proxy-authorization"])
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (REAL_KEY, False),
        (f"Bearer {REAL_KEY}", False),
        ("", False),
        ("{key}", True),
        ("Bearer {key}", True),
    ],
)
async def test_the_request_log_dump_shows_no_credential_but_the_emulators_key(
    fake: FakeGPTunnel, http: aiohttp.ClientSession, header: str, value: str, shown: bool
) -> None:
    """``GET /_emulator/requests`` needs no key: a credential sent to the API or to
    storage that does not hold the emulator's own key (a bot run with its real GPTunnel
    key in the environment) shows masked, to whoever reads the dump; the emulator's
    key (printed when it starts) and a ``Bearer`` mistake with it show as sent."""
    sent = value.format(key=fake.api_key)
    async with http.get(f"{fake.base_url}/balance", headers={header: sent}):
        pass
    async with http.get(f"{fake.storage_url}/results/x.png", headers={header: sent}):
        pass
    async with http.get(f"{fake.control_url}/requests") as answer:
        text = await answer.text()
    dump = json.loads(text)
    for request in (*dump["api"], *dump["storage"]):
        [got] = [v for k, v in request["headers"].items() if k.lower() == header.lower()]
        assert got == (sent if shown else "*** (not this emulator's key)")
    assert REAL_KEY not in text
    assert [r.headers[header] for r in fake.requests] == [sent]  # kept as sent, in-process


@pytest.mark.parametrize("endpoint", ["tasks", "faults"])
async def test_a_control_body_announced_over_the_bound_is_refused_before_it_is_sent(
    fake: FakeGPTunnel, endpoint: str
) -> None:
    answer = await announced_only(f"{fake.control_url}/{endpoint}", MAX_CONTROL_BYTES + 1)
    assert answer.split(b"\r\n")[0].split()[1] == b"413", answer
    assert b"Connection: close" in answer


@pytest.mark.parametrize("endpoint", ["tasks", "faults"])
async def test_a_control_body_that_stops_coming_is_answered_408(
    fake: FakeGPTunnel, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """The control endpoints need no key: a body that stopped coming held its handler
    and connection forever; past ``CONTROL_BODY_TIME`` it is a 408, connection closed."""
    monkeypatch.setattr(_control, "CONTROL_BODY_TIME", 0.05)
    answer = await announced_only(f"{fake.control_url}/{endpoint}", 100, b'{"dur')
    assert answer.split(b"\r\n")[0].split()[1] == b"408", answer
    assert b"Connection: close" in answer


@pytest.mark.parametrize("endpoint", ["tasks", "faults"])
async def test_a_control_body_cut_short_logs_no_error(
    fake: FakeGPTunnel, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A body that ends before its ``Content-Length`` (the sender hung up) is answered
    by the endpoint, not left to aiohttp's 500 and its ERROR with a traceback."""
    target = URL(f"{fake.control_url}/{endpoint}")
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(
        f"POST {target.raw_path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"dur'
    )
    writer.write_eof()  # the rest never comes: the body is cut short
    async with asyncio.timeout(HANG_GUARD):
        await reader.read()  # until the emulator has closed the connection
    writer.close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.mark.parametrize(
    "webhook", ["http://[::1/x?token=t", "http:///x", "https://", "http://:80/"]
)
@pytest.mark.parametrize("path", ["faceswap/create", "media/create"])
async def test_a_webhook_url_that_cannot_be_posted_to_is_refused_at_create(
    fake: FakeGPTunnel,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    webhook: str,
    path: str,
) -> None:
    """It was taken, and its delivery then died unseen: a task exception nobody
    retrieved, logged as an ERROR with the URL (its token too) in the traceback."""
    body: dict[str, Any] = {"webhook": webhook}
    if path == "media/create":
        body |= {"model": "flux-pro", "prompt": "a fox"}
    else:
        body |= {"sourceImage": "https://a.example/1.png", "faceImage": "https://a.example/2.png"}
    key = {"Authorization": fake.api_key}
    async with http.post(f"{fake.base_url}/{path}", json=body, headers=key) as answer:
        refused = await answer.json()
    if path == "media/create":
        assert (refused["code"], refused["issues"][0]["path"]) == (3, ["webhook"])
    else:
        assert (answer.status, refused["error"]["param"]) == (400, "webhook")
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.mark.parametrize("url", ["http://[::1/x", "ftp://bot.example/hook", "http:///x", 5])
async def test_forge_webhook_refuses_a_url_it_cannot_post_to(fake: FakeGPTunnel, url: Any) -> None:
    with pytest.raises(ConfigurationError, match="url must be an http"):
        await fake.forge_webhook(url, task_id="t-1")


async def test_a_delivery_that_fails_logs_no_token(
    fake: FakeGPTunnel, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook host that redirects forever: aiohttp's error quotes the whole URL, and
    the DEBUG line of the lost delivery showed the receiver's token with it."""

    async def forever(request: web.Request) -> web.StreamResponse:
        # Relative: before 3.10.7, aiohttp's ``request.url`` failed with a newer yarl.
        raise web.HTTPFound(request.path_qs)

    token = "a-receivers-token-0123456789"
    caplog.set_level(logging.DEBUG, logger="gptunnel_async.testing")
    async with loopback_server(forever) as server:
        url = str(server.make_url("/hook").with_query(token=token))
        assert await fake.forge_webhook(url, task_id="t-1") is None
    lines = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert lines and all(token not in line for line in lines), lines


async def test_the_request_log_dump_survives_a_header_and_path_that_are_not_utf8(
    fake: FakeGPTunnel, http: aiohttp.ClientSession
) -> None:
    """aiohttp keeps a header's byte that is not UTF-8 as a lone surrogate: the dump
    writes it as its JSON escape (it stopped midway, with UnicodeEncodeError, on every
    later dump)."""
    port = URL(fake.base_url).port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /v1/bal%FFance?q=%FF HTTP/1.1\r\nHost: x\r\nX-Odd: caf\xe9\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 ")
    writer.close()
    await writer.wait_closed()
    async with http.get(f"{fake.control_url}/requests") as answer:
        assert answer.status == 200
        dump = json.loads(await answer.read())
    [odd] = dump["api"]
    assert odd["headers"]["X-Odd"] == "caf\udce9"


# -- listening on every address ---------------------------------------------------------


@pytest.fixture
async def everywhere() -> AsyncIterator[FakeGPTunnel]:
    """The emulator bound to every address, as for a bot in another container."""
    async with FakeGPTunnel(host="0.0.0.0") as running:
        yield running


def _api_at(fake: FakeGPTunnel, host: str) -> str:
    return str(URL(fake.base_url).with_host(host))


@pytest.mark.parametrize("host", ["127.0.0.2", "localhost"])
async def test_on_every_address_result_urls_name_the_host_the_client_asked(
    everywhere: FakeGPTunnel, host: str, tmp_path: Path
) -> None:
    """Bound to 0.0.0.0 (`gptunnel-async emulator --host 0.0.0.0` in a container), every
    result URL named http://0.0.0.0:<port>: a bot elsewhere that reached the API as
    http://emulator:8080 was sent to download from itself."""
    storage_port = URL(everywhere.storage_url).port
    async with everywhere.client(base_url=_api_at(everywhere, host)) as client:
        with instant_waits():
            swapped = await client.faceswap.swap("https://a/1.png", "https://a/2.png")
            grid = await client.midjourney.imagine_and_wait("a red fox")
            song = await client.media.generate("flux-pro", "a lighthouse")
        for task_url in (swapped.result, grid.result, song.url):
            assert task_url is not None
            assert (URL(task_url).host, URL(task_url).port) == (host, storage_port)
        assert (await client.download_result(swapped, tmp_path)).is_file()


@given(host_header=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40))
async def test_on_every_address_any_host_header_leaves_a_valid_answer(
    host_header: str,
) -> None:
    """A Host header is the client's to write: only a plain name or address goes into
    the answer, which stays JSON whatever the header holds."""
    async with (
        FakeGPTunnel(host="0.0.0.0") as fake,
        aiohttp.ClientSession() as session,
    ):
        task_id = fake.script_task(steps=[("done", 100)])
        url = _api_at(fake, "127.0.0.1") + f"/faceswap/result?taskId={task_id}"
        headers = {"Authorization": fake.api_key, "Host": host_header}
        port = URL(fake.storage_url).port
        async with session.get(url, headers=headers) as answer:
            if answer.status == 400:  # aiohttp's own refusal of a malformed header
                return
            body = await answer.json()
    hosts = {"0.0.0.0", host_header, host_header.rpartition(":")[0]} - {""}
    assert any(body["result"].startswith(f"http://{host}:{port}/results/") for host in hosts)
