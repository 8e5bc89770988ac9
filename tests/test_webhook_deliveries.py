"""What a webhook delivery becomes: the family's own model (a media delivery a
``MediaTask`` with its clips), with the client's key masked in everything derived from
it, whatever field echoes it and however it is varied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import ConfigurationError, GPTunnelError, MediaTask, Task, TaskFailedError
from gptunnel_async.testing import FakeGPTunnel, sample_image
from gptunnel_async.webhooks import WebhookReceiver, parse_webhook

from .conftest import media_json, task_json
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
