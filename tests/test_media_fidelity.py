"""/media as its docs and real clients show it: image links only, unix ``created_at``,
suno's clip lists (preview stubs, ``done`` before any URL), code 3 with its ``issues``,
a create answer that is already done, and the result read by GET or POST; each against
the emulator, which reproduces the same facts."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import (
    BadRequestError,
    ConfigurationError,
    MediaClip,
    MediaTask,
    ValidationIssue,
    WaitTimeoutError,
)
from gptunnel_async._sansio.responses import MAX_ISSUES, decode_media_task, validation_issues
from gptunnel_async.testing import FakeGPTunnel, sample_image

from .conftest import raw_call


def decode(value: Any) -> MediaTask:
    return decode_media_task(json.dumps(value).encode())


# -- images are links ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "named"),
    [
        (sample_image("face.png"), "bytes"),
        (bytearray(b"\x89PNG"), "bytes"),
        (Path("face.png"), "'face.png', not a link"),
        ("face.png", "'face.png', not a link"),
        ("data:image/png;base64,iVBORw0KGgo=", "a data: URI"),
        ("iVBORw0KGgoAAAANSUhEUg==", "not a link"),
        ("ftp://host/face.png", "not a link"),
        ("https://", "must be an absolute http(s) URL"),
        (42, "a int"),
    ],
)
async def test_media_images_other_than_links_are_refused_before_any_request(
    fake: FakeGPTunnel, image: Any, named: str
) -> None:
    async with fake.client() as client:
        with pytest.raises(ConfigurationError) as caught:
            await client.media.create("flux-pro", "a fox", images=["https://a.test/1.png", image])
    assert "images[1]" in str(caught.value) and named in str(caught.value)
    if named != "must be an absolute http(s) URL":
        assert "public http(s) links" in str(caught.value)
    assert fake.requests == []


async def test_media_image_links_are_sent_as_given(fake: FakeGPTunnel) -> None:
    links = ["https://a.test/1.png", "http://b.test/2.jpg?size=large"]
    async with fake.client() as client:
        await client.media.create("flux-pro", "a fox", images=links)
    assert fake.requests[0].json["images"] == links


@pytest.mark.parametrize(
    "images",
    [
        ["data:image/png;base64,iVBORw0KGgo="],
        ["iVBORw0KGgoAAAANSUhEUg=="],
        ["https://a.test/1.png", "/local/file.png"],
    ],
)
async def test_the_emulator_refuses_images_that_are_not_links_with_code_3(
    fake: FakeGPTunnel, images: list[str]
) -> None:
    status, body = await raw_call(
        fake, "POST", "media/create", json={"model": "flux-pro", "prompt": "p", "images": images}
    )
    bad = next(n for n, image in enumerate(images) if not image.startswith("https://"))
    assert (status, body["code"]) == (200, 3)
    assert body["issues"][0]["path"] == ["images", str(bad)]


# -- validation errors keep their issues -----------------------------------------------


async def test_an_empty_create_is_refused_with_issues_and_param(fake: FakeGPTunnel) -> None:
    status, body = await raw_call(fake, "POST", "media/create", json={})
    assert (status, body["code"], body["issues"][0]["path"]) == (200, 3, ["model"])
    async with fake.client() as client:
        fake.fail_next(200, body=body, path="media/create")
        with pytest.raises(BadRequestError) as caught:
            await client.media.create("flux-pro", "a fox")
    error = caught.value
    assert (error.status_code, error.code, error.param) == (200, "3", "model")
    assert error.issues == (
        ValidationIssue(path=("model",), message="Required", expected="string"),
    )
    assert "model: Required" in error.message
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.issues, copy.param) == (BadRequestError, error.issues, "model")


def test_documented_validation_issues_are_kept_in_order() -> None:
    body = {
        "code": 3,
        "message": "Invalid input",
        "issues": [
            {"path": ["images", 0], "expected": "string", "received": "number", "message": "x"},
            {"path": ["model"], "expected": "'suno' | 'flux-pro'", "message": "Invalid enum"},
        ],
    }
    with pytest.raises(BadRequestError) as caught:
        decode(body)
    assert caught.value.param == "images.0"
    assert [issue.field for issue in caught.value.issues] == ["images.0", "model"]
    assert caught.value.issues[0] == ValidationIssue(
        path=("images", 0), message="x", expected="string", received="number"
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(issues=json_values)
def test_any_issues_value_gives_a_bounded_error_and_never_a_crash(issues: Any) -> None:
    kept = validation_issues(issues, secret="sk-secret")
    assert len(kept) <= MAX_ISSUES
    raw = json.dumps({"code": 3, "message": "Invalid input sk-secret", "issues": issues})
    with pytest.raises(BadRequestError) as caught:
        decode_media_task(raw.encode(), secret="sk-secret")
    assert caught.value.issues == kept
    assert caught.value.param == (kept[0].field if kept else None)
    assert len(str(caught.value)) < 1100
    assert "sk-secret" not in str(caught.value)


# -- answers: created_at, result shapes, clips ------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1753268420, 1753268420),
        (1753268420.9, 1753268420),
        ("1753268420", 1753268420),
        ("2025-07-23T11:00:20Z", 1753268420),
        ("2025-07-23T11:00:20", 1753268420),
        ("yesterday", None),
        (True, None),
        ([1], None),
        (None, None),
    ],
)
def test_created_at_is_unix_seconds_and_an_unreadable_one_is_dropped(
    value: Any, expected: int | None
) -> None:
    task = decode({"code": 0, "id": "m", "status": "idle", "created_at": value})
    assert task.created_at == expected


def test_a_single_link_in_result_is_the_tasks_url() -> None:
    task = decode({"code": 0, "id": "m", "status": "done", "result": "https://s/a.png"})
    assert (task.url, task.urls, task.is_done, task.percent) == (
        "https://s/a.png",
        ("https://s/a.png",),
        True,
        100,
    )


def test_a_list_of_links_in_result_is_one_clip_each() -> None:
    task = decode(
        {"code": 0, "id": "m", "status": "done", "result": ["https://s/1", "https://s/2"]}
    )
    assert task.clips == (MediaClip(url="https://s/1"), MediaClip(url="https://s/2"))
    assert task.urls == ("https://s/1", "https://s/2")


@pytest.mark.parametrize(
    "clip",
    [
        {"audio_url": "https://s/a.mp3", "duration": 12.5},
        {"audio_url": "https://s/a.mp3", "audio_duration": 12.5},
        {"audio_url": "https://s/a.mp3", "metadata": {"duration": 12.5}},
    ],
)
def test_a_clips_duration_is_read_wherever_the_model_puts_it(clip: dict[str, Any]) -> None:
    task = decode({"code": 0, "id": "m", "status": "done", "result": [clip]})
    assert task.clips[0].duration == 12.5


def test_done_before_any_audio_url_is_not_done() -> None:
    pending = {"status": "streaming", "audio_url": None}
    task = decode({"code": 0, "id": "m", "status": "done", "result": [pending, pending]})
    assert task.status == "done" and not task.is_done and not task.is_terminal
    assert (task.percent, task.urls) == (0, ())
    empty = decode({"code": 0, "id": "m", "status": "done", "result": None})
    assert not empty.is_done


def test_a_failed_clip_does_not_hold_the_task_back() -> None:
    clips = [{"status": "succeeded", "audio_url": "https://s/1.mp3"}, {"status": "failed"}]
    task = decode({"code": 0, "id": "m", "status": "done", "result": clips})
    assert task.is_done and task.urls == ("https://s/1.mp3",)
    assert [clip.is_failed for clip in task.clips] == [False, True]


@pytest.mark.parametrize(
    ("duration", "preview"), [(0.0, True), (1.0, True), (1.5, False), (None, False)]
)
def test_a_clip_of_a_second_or_less_is_a_preview(duration: float | None, preview: bool) -> None:
    assert MediaClip(audio_url="https://s/a.mp3", duration=duration).is_preview is preview


# -- suno on the emulator ------------------------------------------------------------------


async def test_suno_answers_two_clips_and_each_is_saved(
    fake: FakeGPTunnel, instant: None, tmp_path: Path
) -> None:
    async with fake.client() as client:
        song = await client.media.generate("suno", "a sea shanty", timeout=30)
        assert [clip.status for clip in song.clips] == ["succeeded", "succeeded"]
        assert all(clip.image_url and clip.duration for clip in song.clips)
        with pytest.raises(ConfigurationError, match=r"2 result files.*clip=N.*download_results"):
            await client.download_result(song, tmp_path)
        paths = await client.download_results(song, tmp_path)
        second = await client.download_result(song, tmp_path / "second.mp3", clip=1)
    assert [path.name for path in paths] == [f"{song.id}_clip1.mp3", f"{song.id}_clip2.mp3"]
    assert all(path.read_bytes() == sample_image("result.png") for path in paths)
    assert second.read_bytes() == sample_image("result.png")
    assert fake.storage_requests[-1].path.endswith("_clip2.mp3")


@pytest.mark.parametrize("clip", [-1, 2, True, "1"])
async def test_a_clip_out_of_range_is_refused(
    fake: FakeGPTunnel, instant: None, tmp_path: Path, clip: Any
) -> None:
    task_id = fake.script_task(steps=[("done", 100)], model="suno")
    async with fake.client() as client:
        song = await client.media.result(task_id)
        with pytest.raises(ConfigurationError, match="clip must be an int from 0 to 1"):
            await client.download_result(song, tmp_path, clip=clip)
    assert os.listdir(tmp_path) == []


async def test_the_preview_stub_comes_beside_the_full_tracks(
    fake: FakeGPTunnel, instant: None, tmp_path: Path
) -> None:
    task_id = fake.script_task(steps=[("done", 100)], model="suno", preview_stub=True)
    async with fake.client() as client:
        song = await client.media.wait_for_result(task_id, timeout=30)
        paths = await client.download_results(song, tmp_path)
    assert [clip.is_preview for clip in song.clips] == [False, False, True]
    assert len(paths) == 3


async def test_a_wait_reads_on_through_done_before_the_urls(
    fake: FakeGPTunnel, instant: None
) -> None:
    task_id = fake.script_task(
        steps=[("running", 0), ("done", 100)], model="suno", done_before_url=2
    )
    async with fake.client() as client:
        events = [event async for event in client.media.wait_for_result(task_id, timeout=30)]
    assert [(event.status, event.percent) for event in events] == [
        ("running", 0),
        ("done", 0),
        ("done", 100),
    ]
    assert events[1].task.urls == () and len(events[-1].task.urls) == 2
    assert len(fake.requests) == 4  # running, done twice with nothing to fetch, done


async def test_done_without_urls_until_the_deadline_is_a_timeout(
    fake: FakeGPTunnel, instant: None
) -> None:
    task_id = fake.script_task(steps=[("done", 100)], model="suno", done_before_url=10**9)
    async with fake.client() as client:
        with pytest.raises(WaitTimeoutError) as caught:
            await client.media.wait_for_result(task_id, timeout=0.3)
    last = caught.value.task
    assert isinstance(last, MediaTask) and last.status == "done" and last.urls == ()


@pytest.mark.parametrize(
    ("model", "status", "says"),
    [
        ("suno", "done", True),
        ("suno", " Succeeded ", True),
        ("suno", "running", False),
        (None, "running", False),
        (None, "succeeded", False),  # not a done status outside /media
    ],
)
async def test_a_timeout_on_done_without_files_says_there_is_no_file_yet(
    fake: FakeGPTunnel, instant: None, model: str | None, status: str, says: bool
) -> None:
    """The message said "not seen to finish ... (last seen done at 0%)", which reads as
    a contradiction; it now says what kept the wait going."""
    withheld = {"done_before_url": 10**9} if model else {}  # a media task's option only
    task_id = fake.script_task(steps=[(status, 100)], model=model, **withheld)
    async with fake.client() as client:
        family = client.faceswap if model is None else client.media
        with pytest.raises(WaitTimeoutError) as caught:
            await family.wait_for_result(task_id, timeout=0.3)
    assert ("but with no file to fetch yet" in str(caught.value)) is says


async def test_a_create_answer_that_is_already_done(fake: FakeGPTunnel, instant: None) -> None:
    fake.script_created(steps=[("done", 100)], done_at_create=True)
    async with fake.client() as client:
        created = await client.media.create("qwen-image", "a fox")
        assert created.is_done and created.url and created.url.endswith("_result.png")
        done = await client.media.generate("qwen-image", "a fox", timeout=30)
    assert done.is_done


async def test_the_emulators_created_at_is_unix_seconds(fake: FakeGPTunnel) -> None:
    before = int(time.time())
    async with fake.client() as client:
        created = await client.media.create("suno", "a jingle", version="chirp-v4")
    assert created.created_at is not None and before <= created.created_at <= time.time()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_media_result_answers_get_and_post_alike(fake: FakeGPTunnel, method: str) -> None:
    task_id = fake.script_task(steps=[("done", 100)], model="suno")
    where: dict[str, Any] = {"params" if method == "GET" else "json": {"task_id": task_id}}
    status, body = await raw_call(fake, method, "media/result", **where)
    assert (status, body["id"], body["status"], len(body["result"])) == (200, task_id, "done", 2)


@pytest.mark.parametrize(
    ("field", "value"), [("ar", "5:4"), ("version", "chirp-v9"), ("prompt", ""), ("model", None)]
)
async def test_the_emulator_checks_documented_choices(
    fake: FakeGPTunnel, field: str, value: Any
) -> None:
    payload = {"model": "suno", "prompt": "p"} | {field: value}
    status, body = await raw_call(fake, "POST", "media/create", json=payload)
    assert (status, body["code"], body["issues"][0]["path"]) == (200, 3, [field])


@pytest.mark.parametrize("model", ["suno", "flux-pro", "no-such-model"])
@pytest.mark.parametrize("ar", ["21:9", "9:21"])
async def test_the_emulator_takes_the_wide_ratios_for_every_model(
    fake: FakeGPTunnel, model: str, ar: str
) -> None:
    """The docs: ``ar`` "some models also '21:9','9:21'", naming none. The emulator does
    not guess which, so it takes them for every model (docs/testing.md lists this among
    the ways it is laxer than GPTunnel)."""
    payload = {"model": model, "prompt": "p", "ar": ar}
    status, body = await raw_call(fake, "POST", "media/create", json=payload)
    assert (status, body["code"], body["status"]) == (200, 0, "idle")
