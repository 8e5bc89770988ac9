"""Every task family on one engine: the same reads, events, failures, deadline and retries;
then each family's own create calls, their request shapes and argument checks."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aioresponses import aioresponses

from gptunnel_async import (
    AuthenticationError,
    Balance,
    ConfigurationError,
    GPTunnelClient,
    MediaTask,
    ProgressEvent,
    Task,
    TaskFailedError,
    WaitTimeoutError,
)
from gptunnel_async.families import TaskResource

from .conftest import ScriptedAPI, media_json, task_json
from .pngs import mask

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
MASK = mask()
B64_MASK = base64.b64encode(MASK).decode()
API = "https://gptunnel.ru/v1"


@dataclass(frozen=True)
class Case:
    """One family as the tests see it: where it reads, and what its answers look like."""

    name: str
    path: str
    id_param: str
    model: type[Task | MediaTask]
    done: str

    def resource(self, client: GPTunnelClient) -> TaskResource[Any]:
        resource: TaskResource[Any] = getattr(client, self.name)
        return resource

    def state(self, status: str, percent: int = 0, error: str | None = None) -> dict[str, Any]:
        if self.model is MediaTask:
            return media_json(status=status, message=error)
        kind = {"faceswap": "@FaceSwap", "bgremover": "@BGRemover"}.get(self.name, "@Midjourney")
        return task_json(status=status, percent=percent, error=error, type=kind)


CASES = [
    Case("faceswap", "/v1/faceswap/result", "taskId", Task, "done"),
    Case("bgremover", "/v1/bgremover/result", "taskId", Task, "done"),
    Case("midjourney", "/v1/midjourney/result", "taskId", Task, "done"),
    Case("media", "/v1/media/result", "task_id", MediaTask, "succeeded"),
]
every_family = pytest.mark.parametrize("family", CASES, ids=[case.name for case in CASES])


# -- one engine -----------------------------------------------------------------------


@every_family
async def test_every_family_reads_its_own_endpoint_into_its_model(
    family: Case, client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script({**family.state("running", 40), "id": "task 1/&x"})
    task = await family.resource(client).result("task 1/&x")
    assert type(task) is family.model
    assert task.status == "running"
    [request] = api.requests
    assert (request["method"], request["path"]) == ("GET", family.path)
    assert request["query"] == {family.id_param: "task 1/&x"}
    assert request["headers"]["Authorization"] == client._transport._api_key


@every_family
async def test_every_family_waits_through_transient_trouble_to_done(
    family: Case, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(
        family.state("idle"),
        (503, "busy", {}),
        "reset",
        (200, "<html>proxy</html>", {}),
        family.state("running", 40),
        family.state("running", 40),
        family.state(family.done, 100),
    )
    events: list[ProgressEvent[Any]] = []
    task = await family.resource(client).wait_for_result("task-1", on_progress=events.append)
    assert task.is_done and type(task) is family.model
    assert [e.status for e in events] == ["idle", "running", family.done]
    assert [e.percent for e in events] == sorted(e.percent for e in events)
    assert events[-1].percent == 100 and events[-1].task is task
    assert all(r["path"] == family.path for r in api.requests)


@every_family
async def test_every_family_raises_task_failed_error_with_the_reason(
    family: Case, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(family.state("running", 10), family.state("failed", 10, error="no face found"))
    with pytest.raises(TaskFailedError, match="no face found") as caught:
        await family.resource(client).wait_for_result("task-1")
    assert type(caught.value.task) is family.model
    assert caught.value.task_id == "task-1"


@every_family
async def test_every_family_stops_at_the_deadline_with_the_last_state(
    family: Case, client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(family.state("running", 10))
    with pytest.raises(WaitTimeoutError) as caught:
        await family.resource(client).wait_for_result("task-1", timeout=0.05)
    assert caught.value.task is not None and caught.value.task.status == "running"


@every_family
async def test_every_family_ends_a_wait_at_once_on_401(
    family: Case, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(family.state("running", 10), (401, {"error": {"message": "Unauthorized"}}, {}))
    with pytest.raises(AuthenticationError):
        await family.resource(client).wait_for_result("task-1")
    assert len(api.requests) == 2


@every_family
async def test_every_family_refuses_blank_task_ids_before_any_request(
    family: Case, client: GPTunnelClient, api: ScriptedAPI
) -> None:
    resource = family.resource(client)
    with pytest.raises(ConfigurationError, match="task_id"):
        await resource.result("  ")
    with pytest.raises(ConfigurationError, match="task_id"):
        resource.wait_for_result("")
    assert api.requests == []


# -- request shapes -------------------------------------------------------------------


def sent(mocked: aioresponses) -> tuple[str, str, Any]:
    """The one request ``mocked`` saw: method, path and JSON body."""
    [(method, url)] = mocked.requests
    [call] = mocked.requests[(method, url)]
    body = call.kwargs.get("data")
    return method, url.path, None if body is None else json.loads(body.getvalue())


@pytest.mark.parametrize(
    ("call", "path", "body"),
    [
        (
            lambda mj: mj.imagine("a red fox"),
            "/v1/midjourney/imagine",
            {"prompt": "a red fox"},
        ),
        (
            lambda mj: mj.imagine("a red fox", use_wallet_balance=True),
            "/v1/midjourney/imagine",
            {"prompt": "a red fox", "useWalletBalance": True},
        ),
        (
            lambda mj: mj.upsample("grid-1", 4),
            "/v1/midjourney/upsample",
            {"taskId": "grid-1", "image": 4},
        ),
        (
            lambda mj: mj.variation("grid-1", 2),
            "/v1/midjourney/variation",
            {"taskId": "grid-1", "image": 2},
        ),
        (
            lambda mj: mj.variation("grid-1", 1, mode="low"),
            "/v1/midjourney/variation",
            {"taskId": "grid-1", "image": 1, "mode": "low"},
        ),
        (
            lambda mj: mj.variation("up-1", mode="high"),
            "/v1/midjourney/variation",
            {"taskId": "up-1", "mode": "high"},
        ),
        (
            lambda mj: mj.inpaint("up-1", MASK, prompt="a hat"),
            "/v1/midjourney/inpaint",
            {"taskId": "up-1", "mask": base64.b64encode(MASK).decode(), "prompt": "a hat"},
        ),
        (
            lambda mj: mj.inpaint(
                "up-1", "data:image/png;base64," + base64.b64encode(MASK).decode()
            ),
            "/v1/midjourney/inpaint",
            {"taskId": "up-1", "mask": B64_MASK},
        ),
        (
            lambda mj: mj.create_task("midjourney/reroll", {"taskId": "grid-1"}),
            "/v1/midjourney/reroll",
            {"taskId": "grid-1"},
        ),
    ],
)
async def test_midjourney_calls_post_the_documented_json(
    call: Callable[[Any], Awaitable[Task]], path: str, body: Any, mocked: aioresponses
) -> None:
    mocked.post(re.compile(r".*"), payload=task_json(status="idle", actions=[]))
    async with GPTunnelClient(api_key="sk-abc") as client:
        task = await call(client.midjourney)
    assert task.status == "idle" and task.actions == ()
    assert sent(mocked) == ("POST", path, body)


async def test_media_create_posts_image_links_and_extra_options(
    mocked: aioresponses,
) -> None:
    created = {
        "code": 0,
        "id": "m-1",
        "model": "kling",
        "created_at": 1718000000,
        "status": "idle",
        "result": None,
        "input": {"prompt": "waves"},
    }
    mocked.post(f"{API}/media/create", payload=created)
    async with GPTunnelClient(api_key="sk-abc") as client:
        task = await client.media.create(
            "kling",
            "waves",
            images=["https://a/a.png", "https://a/b.jpg"],
            ar="16:9",
            duration=5,
            seed=None,
        )
    assert task == MediaTask(id="m-1", status="idle", model="kling", created_at=1718000000)
    assert sent(mocked) == (
        "POST",
        "/v1/media/create",
        {
            "model": "kling",
            "prompt": "waves",
            "images": ["https://a/a.png", "https://a/b.jpg"],
            "ar": "16:9",
            "duration": 5,
        },
    )


async def test_media_create_sends_only_model_and_prompt_by_default(mocked: aioresponses) -> None:
    mocked.post(f"{API}/media/create", payload=media_json(status="idle"))
    async with GPTunnelClient(api_key="sk-abc") as client:
        await client.media.create("flux-pro", "a lighthouse")
    assert sent(mocked)[2] == {"model": "flux-pro", "prompt": "a lighthouse"}


@pytest.mark.parametrize(
    ("use_wallet_balance", "query"), [(False, ""), (True, "useWalletBalance=true")]
)
async def test_balance_reads_the_documented_object(
    use_wallet_balance: bool, query: str, mocked: aioresponses
) -> None:
    answer = {"orgId": "org-9", "object": "balance", "balance": 123.45, "creditLimit": 50}
    mocked.get(re.compile(r"^https://gptunnel\.ru/v1/balance"), payload=answer)
    async with GPTunnelClient(api_key="sk-abc") as client:
        balance = await client.balance(use_wallet_balance=use_wallet_balance)
    assert balance == Balance(org_id="org-9", balance=123.45, credit_limit=50.0)
    [(method, url)] = mocked.requests
    assert (method, url.path, url.query_string) == ("GET", "/v1/balance", query)


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        (lambda c: c.midjourney.imagine(""), "prompt"),
        (lambda c: c.midjourney.imagine(None), "prompt"),
        (lambda c: c.midjourney.upsample("grid-1", 0), "image"),
        (lambda c: c.midjourney.upsample("grid-1", 5), "image"),
        (lambda c: c.midjourney.upsample("grid-1", True), "image"),
        (lambda c: c.midjourney.upsample("grid-1", "1"), "image"),
        (lambda c: c.midjourney.upsample(" ", 1), "task_id"),
        (lambda c: c.midjourney.variation("grid-1", 1, mode="medium"), "mode"),
        (lambda c: c.midjourney.variation("grid-1"), "image=1..4.*or mode="),
        (lambda c: c.midjourney.inpaint("up-1", MASK, prompt=" "), "prompt"),
        (lambda c: c.midjourney.inpaint("up-1", b"GIF89a"), "black-and-white PNG: it is not a PNG"),
        (lambda c: c.midjourney.inpaint("up-1", "https://a/mask.png"), "not a link"),
        (lambda c: c.midjourney.inpaint("up-1", "%%%"), "neither an existing file nor base64"),
        (lambda c: c.midjourney.inpaint("up-1", mask(grey_pixel=True)), "1 other colour"),
        (lambda c: c.midjourney.inpaint("up-1", MASK, size=(64, 64)), "32x32.*64x64"),
        (lambda c: c.midjourney.create_task("../balance", {}), "path must be"),
        (lambda c: c.midjourney.create_task("midjourney/pan?x=1", {}), "path must be"),
        (lambda c: c.midjourney.create_task("https://evil/pan", {}), "path must be"),
        (lambda c: c.midjourney.create_task("midjourney/pan", [1]), "JSON object"),
        (lambda c: c.midjourney.create_task("midjourney/pan", {"a": object()}), "JSON values"),
        (lambda c: c.media.create("", "waves"), "model"),
        (lambda c: c.media.create("kling", "  "), "prompt"),
        (lambda c: c.media.create("kling", "waves", images="https://a/b.jpg"), "list"),
        (lambda c: c.media.create("kling", "waves", images=PNG), "list"),
        (lambda c: c.media.create("kling", "waves", ar=""), "ar"),
        (lambda c: c.media.create("kling", "waves", when=object()), "JSON"),
        (lambda c: c.faceswap.create("https://a/1.png", "https://a/2.png", webhook=""), "webhook"),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    call: Callable[[GPTunnelClient], Awaitable[Any]], complaint: str, mocked: aioresponses
) -> None:
    async with GPTunnelClient(api_key="sk-abc") as client:
        with pytest.raises(ConfigurationError, match=complaint):
            await call(client)
    assert mocked.requests == {}


# -- create and wait in one call ------------------------------------------------------


async def test_imagine_and_wait_reports_progress_and_returns_the_actions(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    preview = "https://storage.example/preview.png"
    api.script(
        task_json(status="idle", type="@Midjourney", actions=[]),
        task_json(status="running", percent=45, result=preview, type="@Midjourney"),
        task_json(
            status="done",
            percent=100,
            type="@Midjourney",
            parentId=None,
            actions=["upsample1", "upsample2", "variation1"],
        ),
    )
    seen: list[ProgressEvent[Task]] = []
    task = await client.midjourney.imagine_and_wait("a red fox", on_progress=seen.append)
    assert task.is_done and task.actions == ("upsample1", "upsample2", "variation1")
    assert [(e.percent, e.task.result) for e in seen] == [
        (45, preview),
        (100, "https://storage.example/result.png"),
    ]
    assert [r["path"] for r in api.requests] == [
        "/v1/midjourney/imagine",
        "/v1/midjourney/result",
        "/v1/midjourney/result",
    ]
    assert json.loads(api.requests[0]["body"]) == {"prompt": "a red fox"}


async def test_generate_creates_then_waits_on_media_result_with_snake_case_id(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(
        media_json(status="idle", id="m-7", result=None),
        media_json(status="processing", id="m-7"),
        media_json(status="done", id="m-7"),
    )
    seen: list[ProgressEvent[MediaTask]] = []
    task = await client.media.generate("flux-pro", "a lighthouse", on_progress=seen.append)
    assert task.url == "https://storage.example/media.png" and task.cost == 0.5
    assert [(e.status, e.percent) for e in seen] == [("processing", 0), ("done", 100)]
    assert api.requests[1]["path"] == "/v1/media/result"
    assert api.requests[1]["query"] == {"task_id": "m-7"}


async def test_generate_returns_music_clips(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    clips = [
        {"id": "c1", "audio_url": "https://s/1.mp3", "duration": 61.2, "status": "succeeded"},
        {"id": "c2", "audio_url": "https://s/2.mp3", "duration": 58, "status": "succeeded"},
    ]
    api.script(
        media_json(status="idle", model="suno"),
        media_json(status="done", model="suno", url=None, result=clips),
    )
    task = await client.media.generate("suno", "a sea shanty about retries")
    assert [(clip.audio_url, clip.duration) for clip in task.clips] == [
        ("https://s/1.mp3", 61.2),
        ("https://s/2.mp3", 58.0),
    ]
    assert task.urls == ("https://s/1.mp3", "https://s/2.mp3")
