"""What a webhook delivery becomes: the family's own model (a media delivery a
``MediaTask`` with its clips), with the client's key masked in everything derived from
it, whatever field echoes it and however it is varied."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gptunnel_async import (
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    MediaTask,
    Task,
    TaskFailedError,
)
from gptunnel_async.testing import FakeGPTunnel, sample_image
from gptunnel_async.webhooks import WebhookReceiver, parse_webhook

from .conftest import HANG_GUARD, ScriptedAPI, loopback_server, media_json, task_json
from .test_masking import FIELDS, KEY, holds_key, variation
from .test_secrets import exception_texts
from .test_webhooks import fake as fake
from .test_webhooks import receiver as receiver

SECRET = "a-secret-of-more-than-sixteen-characters"
DOCUMENTED = Path(__file__).parent / "fixtures" / "documented"


def documented(name: str) -> bytes:
    return (DOCUMENTED / name).read_bytes()


def texts_of(body: bytes, **options: Any) -> list[str]:
    """Everything a parse of ``body`` shows: the task's repr and text, or the error's."""
    try:
        task = parse_webhook(body, SECRET, secret=SECRET, **options)
    except GPTunnelError as error:
        return list(exception_texts(error))
    texts = [repr(task), str(task)]
    if isinstance(task, Task) and task.is_failed:
        texts += exception_texts(TaskFailedError(task))
    return texts


# -- the key is masked ---------------------------------------------------------------


MEDIA_FIELDS = ("id", "status", "model", "url", "message")


@given(
    st.sampled_from([("task", f) for f in FIELDS] + [("media", f) for f in MEDIA_FIELDS]),
    variation(KEY),
    st.sampled_from(["done", "failed", "running", "FAILED "]),
    st.text(max_size=20),
)
def test_a_delivery_echoing_the_key_anywhere_never_shows_it(
    where: tuple[str, str], echoed: str, status: str, around: str
) -> None:
    kind, field = where
    body = task_json(status=status) if kind == "task" else media_json(status=status)
    value = f"{around}{echoed}{around}"
    body[field] = [value] if field == "actions" else value
    encoded = json.dumps(body).encode()
    assert not any(holds_key(text) for text in texts_of(encoded, api_key=KEY))


def test_the_key_defaults_to_the_one_a_client_would_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPTUNNEL_API_KEY", KEY)
    echoed = json.dumps(task_json(status="failed", error=f"bad key {KEY.upper()}")).encode()
    texts = texts_of(echoed)
    assert texts
    assert not any(holds_key(text) for text in texts)


def test_an_undecodable_delivery_does_not_show_the_key_either() -> None:
    body = f'{{"nothing": "{KEY}", "status": 5'.encode()
    texts = texts_of(body, api_key=KEY)
    assert "ResponseDecodeError" in texts[0]
    assert not any(holds_key(text) for text in texts)


async def test_a_wait_masks_the_key_of_the_client_it_waits_with() -> None:
    """A receiver made without a key: the wait's family brings its client's key."""
    receiver = WebhookReceiver("https://bot.example/hook", secret=SECRET)
    async with FakeGPTunnel(api_key=KEY) as fake, fake.client() as client:
        fake.script_task(task_id="t-1", duration=60)
        delivery = task_json(status="failed", id="t-1", error=f"echo {KEY.upper()} echo")
        receiver.receive(json.dumps(delivery).encode(), SECRET)
        with pytest.raises(TaskFailedError) as caught:
            await receiver.wait_for_result(client.faceswap, "t-1", fallback_interval=60)
    texts = list(exception_texts(caught.value))
    assert "echo *** echo" in str(caught.value)
    assert not any(holds_key(text) for text in texts)


# -- each family's model ------------------------------------------------------------------


def test_a_documented_suno_body_parses_as_a_media_task_with_its_clips() -> None:
    task = parse_webhook(documented("media_result_suno.json"), SECRET, secret=SECRET)
    assert isinstance(task, MediaTask)
    assert task.is_done
    assert [clip.audio_url for clip in task.clips] == [
        "https://cdn.example/clip-1.mp3",
        "https://cdn.example/clip-2.mp3",
    ]
    assert task.urls == ("https://cdn.example/clip-1.mp3", "https://cdn.example/clip-2.mp3")


@pytest.mark.parametrize(
    "name", ["faceswap_result.json", "midjourney_result.json", "midjourney_imagine.json"]
)
def test_documented_task_objects_parse_as_tasks(name: str) -> None:
    task = parse_webhook(documented(name), SECRET, secret=SECRET)
    assert type(task) is Task


def test_a_documented_media_create_body_parses_as_a_media_task() -> None:
    task = parse_webhook(documented("media_create.json"), SECRET, secret=SECRET)
    assert isinstance(task, MediaTask)
    assert task.status == "idle"


async def test_the_family_given_decides_the_model(fake: FakeGPTunnel) -> None:
    """A body that could be either (no ``code``, no ``object``) takes the family's."""
    ambiguous = json.dumps({"id": "m-1", "status": "done", "url": "https://cdn.example/a.png"})
    async with fake.client() as client:
        as_media = parse_webhook(ambiguous.encode(), SECRET, secret=SECRET, family=client.media)
        as_task = parse_webhook(ambiguous.encode(), SECRET, secret=SECRET, family=client.faceswap)
    assert isinstance(as_media, MediaTask)
    assert as_media.urls == ("https://cdn.example/a.png",)
    assert type(as_task) is Task


async def test_a_delivered_suno_task_ends_a_media_wait_with_its_clips(
    fake: FakeGPTunnel, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.2)
    async with fake.client() as client:
        created = await client.media.create("suno", "a song", webhook=receiver.url)
        done = await receiver.wait_for_result(client.media, created.id, fallback_interval=60)
    assert isinstance(done, MediaTask)
    assert len(done.clips) == 2
    assert all(clip.audio_url for clip in done.clips)
    (delivery,) = fake.webhook_deliveries
    assert delivery.json["id"] == created.id


async def test_a_delivered_suno_task_whose_clips_all_failed_fails_its_wait(
    fake: FakeGPTunnel, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.2, failed_clips=2)
    async with fake.client() as client:
        created = await client.media.create("suno", "a song", webhook=receiver.url)
        with pytest.raises(TaskFailedError, match="all 2 clips failed: the clip failed"):
            await receiver.wait_for_result(client.media, created.id, fallback_interval=60)
    (delivery,) = fake.webhook_deliveries
    assert [clip["status"] for clip in delivery.json["result"]] == ["error", "error"]


@pytest.mark.parametrize(
    ("clips", "ended"),
    [
        ([{"status": "error"}, {"status": "error"}], "failed"),
        ([{"status": "error"}, {"status": "succeeded", "audio_url": "https://s/1.mp3"}], "done"),
        ([{"status": "error"}, {"status": "streaming"}], None),
        ([], None),
    ],
)
def test_a_media_delivery_says_done_as_the_model_decides(
    clips: list[dict[str, Any]], ended: str | None
) -> None:
    body = json.dumps({"code": 0, "id": "m-1", "status": "done", "result": clips}).encode()
    task = parse_webhook(body, SECRET, secret=SECRET)
    receiver = WebhookReceiver("https://bot.example/hook", secret=SECRET)
    assert receiver.receive(body, SECRET) == task
    assert isinstance(task, MediaTask)
    assert ("done" if task.is_done else "failed" if task.is_failed else None) == ended
    assert (ended is not None) == ("m-1" in receiver._arrived)  # kept for a wait only if ended


async def test_a_delivered_face_swap_still_ends_its_wait_as_a_task(
    fake: FakeGPTunnel, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.2)
    async with fake.client() as client:
        source, face = sample_image("source.png"), sample_image("face.png")
        created = await client.faceswap.create(source, face, webhook=receiver.url)
        done = await receiver.wait_for_result(client.faceswap, created.id, fallback_interval=60)
    assert type(done) is Task
    assert done.is_done


@pytest.mark.parametrize("key", [b"k-bytes-of-a-key", 12345, "  "])
def test_a_key_that_is_not_text_is_refused_without_being_shown(key: object) -> None:
    with pytest.raises(ConfigurationError, match="api_key") as caught:
        WebhookReceiver("https://bot.example/hook", api_key=key)  # type: ignore[arg-type]
    assert "k-bytes" not in str(caught.value) and "12345" not in str(caught.value)


def test_the_receivers_key_is_masked_in_what_receive_returns_and_never_in_its_repr() -> None:
    receiver = WebhookReceiver("https://bot.example/hook", secret=SECRET, api_key=KEY)
    task = receiver.receive(json.dumps(task_json(status="done", id=f"x{KEY}")).encode(), SECRET)
    assert not holds_key(repr(task))
    assert not holds_key(repr(receiver))


# -- a delivery ends a wait only when the wait's family reads it as ended -------------------


FAMILIES = ("faceswap", "bgremover", "midjourney", "media")

ENDED_BY_SHAPE_NOT_BY_FAMILY = {
    # Shaped as a task object, "done": a Task that is done, a MediaTask with no file.
    "media": {"object": "task", "status": "done"},
    # Shaped as a media answer, "succeeded" with a file: a done MediaTask, a pending Task.
    "faceswap": {"status": "succeeded", "url": "https://cdn.example/x.png"},
    "bgremover": {"status": "succeeded", "url": "https://cdn.example/x.png"},
    "midjourney": {"status": "succeeded", "url": "https://cdn.example/x.png"},
}


def running(family: str) -> dict[str, Any]:
    return media_json(status="running") if family == "media" else task_json(status="running")


def finished(family: str) -> dict[str, Any]:
    return media_json(status="done") if family == "media" else task_json(status="done")


async def until_listening(receiver: WebhookReceiver, task_id: str) -> None:
    for _ in range(1000):
        if receiver._waiting.get(task_id):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the wait never started listening")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("order", ["before", "after"])
async def test_a_delivery_its_family_reads_as_unfinished_never_ends_the_wait(
    family: str,
    order: str,
    api: ScriptedAPI,
    receiver: WebhookReceiver,
    http_session: aiohttp.ClientSession,
) -> None:
    """Over HTTP, as GPTunnel delivers: the body's shape says ended, the family's model
    does not; the wait goes on until the fallback poll sees the task done."""
    api.script(running(family))
    delivery = json.dumps({"id": "t-7", **ENDED_BY_SHAPE_NOT_BY_FAMILY[family]}).encode()

    async def post() -> None:
        async with http_session.post(receiver.url, data=delivery) as response:
            assert response.status == 200

    async with GPTunnelClient(api_key="k-1", base_url=api.base_url) as client:
        tasks = getattr(client, family)
        if order == "before":
            await post()
        waiting = asyncio.create_task(
            receiver.wait_for_result(tasks, "t-7", fallback_interval=0.2, timeout=HANG_GUARD)
        )
        await until_listening(receiver, "t-7")
        if order == "after":
            await post()
        await asyncio.sleep(0.3)  # past a fallback poll, which still says running
        assert not waiting.done()
        api.replies[:] = [finished(family)]
        done = await asyncio.wait_for(waiting, HANG_GUARD)
    assert done.is_done
    assert type(done) is (MediaTask if family == "media" else Task)
    assert receiver._waiting == {}


_ENDED = ["done", " DONE ", "succeeded", "completed", "success", "failed", "Error", "canceled"]
_STATUSES = st.sampled_from([*_ENDED, "running", "idle", "processing", "queued"]) | st.text(
    max_size=8
)
_URLS = st.none() | st.just("https://cdn.example/r.png")
_CLIP = st.fixed_dictionaries(
    {},
    optional={"audio_url": _URLS, "status": _STATUSES, "duration": st.sampled_from([0.5, 120])},
)
_DELIVERIES = st.fixed_dictionaries(
    {"id": st.just("t-1"), "status": _STATUSES},
    optional={
        "object": st.sampled_from(["task", "media"]),
        "code": st.just(0),
        "url": _URLS,
        "result": _URLS | st.lists(_CLIP, max_size=3),
        "percent": st.integers(0, 100),
        "error": st.none() | st.just("why"),
        "message": st.none() | st.just("why"),
    },
)


@settings(max_examples=60)
@given(
    family=st.sampled_from(FAMILIES), order=st.sampled_from(["before", "after"]), body=_DELIVERIES
)
async def test_a_wait_ends_on_a_delivery_exactly_when_its_family_reads_it_as_ended(
    family: str, order: str, body: dict[str, Any]
) -> None:
    """Any delivery, any family, either order: a wait ends with the family's model of a
    delivery only when that model is done (returned) or failed (``TaskFailedError``);
    any other delivery is passed over, and a later one that has ended ends the wait."""
    encoded = json.dumps(body).encode()
    receiver = WebhookReceiver("https://bot.example/hook", secret=SECRET)
    last = json.dumps(
        {"id": "t-1", "status": "failed", "error": "the last word", "message": "the last word"}
    )
    last = last.encode()
    scripted = ScriptedAPI()
    scripted.script(running(family))
    async with (
        loopback_server(scripted.handle) as server,
        GPTunnelClient(api_key="k-1", base_url=str(server.make_url("/v1"))) as client,
    ):
        tasks = getattr(client, family)
        try:
            model = tasks._parse_delivery(encoded)
        except GPTunnelError:
            assume(False)  # not this family's task object: another rule
        ended = model.is_done or model.is_failed
        if order == "before":
            shaped = receiver.receive(encoded, SECRET)
            reaches = shaped.is_terminal  # kept for the wait only if its shape has ended
        waiting = asyncio.create_task(
            receiver.wait_for_result(tasks, "t-1", fallback_interval=60, timeout=HANG_GUARD)
        )
        if order == "after":
            await until_listening(receiver, "t-1")
            receiver.receive(encoded, SECRET)
            reaches = True
        await asyncio.sleep(0.02)
        if ended and reaches:
            assert waiting.done()
        else:
            assert not waiting.done()
            await until_listening(receiver, "t-1")
            receiver.receive(last, SECRET)
        if not (ended and reaches):
            with pytest.raises(TaskFailedError, match="the last word"):
                await asyncio.wait_for(waiting, HANG_GUARD)
        elif model.is_failed:
            with pytest.raises(TaskFailedError) as caught:
                await asyncio.wait_for(waiting, HANG_GUARD)
            assert caught.value.task == model
        else:
            outcome = await asyncio.wait_for(waiting, HANG_GUARD)
            assert outcome == model
            assert outcome.is_done
