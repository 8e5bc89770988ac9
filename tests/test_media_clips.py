"""A media task whose status says done, weighed with its files and clips: done with a
file, still pending while a clip waits for its URL or nothing is listed yet, failed
when every clip failed on its own; and every place that asks (a wait, many waits,
webhooks, downloads, the emulator) agreeing with the model."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rich.console import Console

from gptunnel_async import (
    ConfigurationError,
    MediaClip,
    MediaTask,
    TaskFailedError,
    WaitTimeoutError,
)
from gptunnel_async._cli_output import LineOutput
from gptunnel_async._sansio.responses import decode_media_task
from gptunnel_async.testing import FakeGPTunnel
from gptunnel_async.testing._server import EmulatorOptions, _load

SONG = {"status": "succeeded", "audio_url": "https://s/1.mp3", "duration": 120}
STUB = {"status": "succeeded", "audio_url": "https://s/2.mp3", "duration": 0.8}
WAITING = {"status": "streaming"}
FLAGGED = {"status": "error", "error": "lyrics flagged"}
FAILED = {"status": "failed"}
FLAGGED_WITH_AUDIO = {**FLAGGED, "audio_url": "https://s/bad.mp3", "image_url": "https://s/c.jpg"}
FAILED_WITH_VIDEO = {"status": "failed", "video_url": "https://s/bad.mp4", "url": "https://s/x"}


def decode(status: str, result: Any = None, **fields: Any) -> MediaTask:
    body = {"code": 0, "id": "m-1", "status": status, "result": result, **fields}
    return decode_media_task(json.dumps(body).encode())


# (is_done, is_failed, error): is_terminal is one of the first two, percent 100 if done.
DONE = (True, False, None)
PENDING = (False, False, None)


@pytest.mark.parametrize(
    ("status", "result", "fields", "expected"),
    [
        # a file, and no clip waiting: done
        ("done", "https://s/a.png", {}, DONE),
        ("done", None, {"url": "https://s/a.png"}, DONE),
        ("succeeded", [SONG, STUB], {}, DONE),
        # some clips failed beside the files: done with the others' files
        ("done", [FLAGGED, SONG], {}, DONE),
        ("done", [SONG, FAILED, STUB], {}, DONE),
        ("done", [FLAGGED], {"url": "https://s/a.png"}, DONE),
        # done seen before the files appear: read on
        ("done", None, {}, PENDING),
        ("done", [], {}, PENDING),
        ("done", [WAITING, WAITING], {}, PENDING),
        ("done", [SONG, WAITING], {}, PENDING),
        ("done", [{}], {}, PENDING),  # a clip without status or file is not failed
        # a clip failed while another may still come: read on
        ("done", [FLAGGED, WAITING], {}, PENDING),
        ("done", [FLAGGED, {"status": "succeeded"}], {}, PENDING),
        # every clip failed on its own: failed, in its clips' words
        ("done", [FLAGGED, FLAGGED], {}, (False, True, "all 2 clips failed: lyrics flagged")),
        ("done", [FLAGGED], {}, (False, True, "its clip failed: lyrics flagged")),
        (
            " Completed ",
            [FAILED, {"status": "Canceled"}],
            {},
            (False, True, "all 2 clips failed: no reason given"),
        ),
        ("done", [FAILED], {"message": "moderation"}, (False, True, "its clip failed: moderation")),
        (
            "done",
            [FLAGGED, {"status": "error", "message": "too long"}, FAILED],
            {},
            (False, True, "all 3 clips failed: lyrics flagged; too long"),
        ),
        # a clip that failed is no file, whatever URLs it carries
        ("done", [FLAGGED_WITH_AUDIO, SONG], {}, DONE),
        ("done", [FLAGGED_WITH_AUDIO], {}, (False, True, "its clip failed: lyrics flagged")),
        (
            "done",
            [FLAGGED_WITH_AUDIO, FAILED_WITH_VIDEO],
            {},
            (False, True, "all 2 clips failed: lyrics flagged"),
        ),
        ("done", [FLAGGED_WITH_AUDIO, WAITING], {}, PENDING),
        # a failure status is failed, whatever its clips say
        ("failed", [SONG], {"message": "NSFW"}, (False, True, "NSFW")),
        ("error", None, {}, (False, True, None)),
        # not finished
        ("running", [FLAGGED, FLAGGED], {}, PENDING),
        ("idle", None, {}, PENDING),
    ],
)
def test_a_media_task_is_classified_by_its_status_files_and_clips(
    status: str, result: Any, fields: dict[str, Any], expected: tuple[bool, bool, str | None]
) -> None:
    task = decode(status, result, **fields)
    assert (task.is_done, task.is_failed, task.error) == expected
    assert task.is_terminal == (task.is_done or task.is_failed)
    assert task.percent == (100 if task.is_done else 0)


def test_the_clips_that_failed_beside_the_files_are_named() -> None:
    task = decode("done", [FLAGGED, SONG, FAILED])
    assert task.is_done and task.urls == ("https://s/1.mp3",)
    assert task.failed_clips == (
        MediaClip(status="error", error="lyrics flagged"),
        MediaClip(status="failed"),
    )


@pytest.mark.parametrize("failed", [FLAGGED_WITH_AUDIO, FAILED_WITH_VIDEO])
def test_a_failed_clip_s_urls_are_no_result_file(failed: dict[str, Any]) -> None:
    """Its ``audio_url`` was counted among the task's files: saved, shown as a result
    and, alone, making a task whose every clip failed done."""
    task = decode("done", [failed, SONG])
    assert task.is_done and task.urls == ("https://s/1.mp3",)
    (clip,) = task.failed_clips
    assert clip.file_url is None and not clip.is_pending
    assert (clip.audio_url, clip.video_url) == (failed.get("audio_url"), failed.get("video_url"))


def test_the_command_line_shows_no_failed_clip_s_link() -> None:
    console = Console(record=True, width=200, force_terminal=False, file=io.StringIO())
    LineOutput(console, console).done(decode("done", [FLAGGED_WITH_AUDIO, SONG]))
    shown = console.export_text()
    assert "https://s/1.mp3" in shown and "bad.mp3" not in shown
    assert "1 of 2 clips failed: lyrics flagged" in shown


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"error": "lyrics flagged"}, "lyrics flagged"),
        ({"message": "lyrics flagged"}, "lyrics flagged"),
        ({"message": "lyrics flagged", "error": "moderation"}, "lyrics flagged"),
        ({"message": "", "error": "moderation"}, "moderation"),
        ({"error": {"message": "lyrics flagged", "type": "moderation"}}, "lyrics flagged"),
        ({"error": ["odd"]}, '["odd"]'),
        ({"error": None}, None),
        ({}, None),
    ],
)
def test_a_clip_s_reason_is_read_as_a_media_task_s_is(
    fields: dict[str, Any], reason: str | None
) -> None:
    (clip,) = decode("done", [{"status": "error", **fields}]).clips
    assert clip.error == reason


def test_a_failed_task_s_clips_and_reasons_survive_a_round_trip_through_its_json() -> None:
    """What the fleet's stores keep: the model's fields, read back as an answer."""
    from gptunnel_async.fleet._decode import outcome
    from gptunnel_async.fleet._records import Outcome

    for task in (decode("done", [FLAGGED, SONG]), decode("done", [FLAGGED])):
        kept = outcome(Outcome("done" if task.is_done else "failed", task).dumps()).task
        assert kept == task and (kept.is_done, kept.is_failed) == (task.is_done, task.is_failed)


def test_a_task_failed_with_its_clips_says_so() -> None:
    error = TaskFailedError(decode("done", [FLAGGED, FLAGGED]))
    assert str(error) == "task m-1 failed (done): all 2 clips failed: lyrics flagged"


# -- against the emulator ---------------------------------------------------------------


async def test_a_wait_on_a_task_whose_clips_all_failed_fails_at_once(
    fake: FakeGPTunnel, instant: None
) -> None:
    task_id = fake.script_task(
        steps=[("running", 0), ("done", 100)], model="suno", done_before_url=1, failed_clips=2
    )
    async with fake.client() as client:
        with pytest.raises(TaskFailedError) as caught:
            await client.media.wait_for_result(task_id, timeout=30)
    assert "all 2 clips failed: the clip failed" in str(caught.value)
    assert caught.value.task.is_failed
    assert len(fake.requests) == 3  # running, done with nothing yet, done with every clip failed


async def test_a_wait_on_a_task_with_some_clips_failed_is_done_with_the_others(
    fake: FakeGPTunnel, instant: None, tmp_path: Path
) -> None:
    task_id = fake.script_task(steps=[("done", 100)], model="suno", clips=3, failed_clips=2)
    async with fake.client() as client:
        song = await client.media.wait_for_result(task_id, timeout=30)
        paths = await client.download_results(song, tmp_path)
    assert len(song.urls) == 1 and song.urls[0].endswith("_clip3.mp3")
    assert [clip.error for clip in song.failed_clips] == ["the clip failed"] * 2
    assert [path.name for path in paths] == [Path(song.urls[0]).name]


async def test_many_waits_agree_with_the_model(fake: FakeGPTunnel, instant: None) -> None:
    failed = fake.script_task(steps=[("done", 100)], model="suno", failed_clips=2)
    done = fake.script_task(steps=[("done", 100)], model="suno", failed_clips=1)
    async with fake.client() as client:
        outcomes = await client.media.wait_many([failed, done], return_exceptions=True)
        async with client.media.as_completed([failed, done], return_exceptions=True) as each:
            ended = [outcome async for outcome in each]
    ended.sort(key=lambda outcome: isinstance(outcome, MediaTask))  # the failure first
    for found in (outcomes, ended):
        assert isinstance(found[0], TaskFailedError) and found[0].task_id == failed
        assert isinstance(found[1], MediaTask) and found[1].is_done


async def test_a_failed_task_s_result_is_refused_with_its_reason(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    task_id = fake.script_task(steps=[("done", 100)], model="suno", failed_clips=2)
    async with fake.client() as client:
        task = await client.media.result(task_id)
        with pytest.raises(ConfigurationError, match="it failed: all 2 clips failed"):
            await client.download_results(task, tmp_path)


async def test_a_clip_failed_beside_one_still_waiting_keeps_the_wait_reading(
    fake: FakeGPTunnel, instant: None
) -> None:
    """The emulator withholds every clip's file alike; the model decides the rest."""
    task_id = fake.script_task(
        steps=[("done", 100)], model="suno", done_before_url=10**9, failed_clips=1
    )
    async with fake.client() as client:
        with pytest.raises(WaitTimeoutError, match="no file to fetch yet"):
            await client.media.wait_for_result(task_id, timeout=0.3)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"model": "suno", "failed_clips": 3}, "at most the 2 clips"),
        ({"model": "flux-pro", "failed_clips": 1}, "at most the 0 clips"),
        ({"model": "suno", "failed_clips": -1}, "failed_clips"),
        ({"model": "suno", "failed_clips": True}, "failed_clips"),
    ],
)
def test_the_emulator_refuses_more_failed_clips_than_clips(
    fake: FakeGPTunnel, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        fake.script_task(steps=[("done", 100)], **options)
    with pytest.raises(ConfigurationError, match="failed_clips"):
        fake.script_created(steps=[("done", 100)], failed_clips=3)


async def test_created_tasks_can_end_with_their_clips_failed(
    fake: FakeGPTunnel, instant: None
) -> None:
    fake.script_created(steps=[("done", 100)], failed_clips=2)
    async with fake.client() as client:
        with pytest.raises(TaskFailedError, match="all 2 clips failed"):
            await client.media.generate("suno", "a song", timeout=30)


# -- the emulator's tasks file and control endpoints ------------------------------------


async def test_the_tasks_file_scripts_clips_that_fail(
    fake: FakeGPTunnel, instant: None, tmp_path: Path
) -> None:
    """``failed_clips`` and the other media options, as ``script_task`` takes them: the
    tasks file refused them as unknown fields."""
    tasks = tmp_path / "tasks.json"
    tasks.write_text(
        json.dumps(
            {
                "tasks": [
                    {"id": "song-1", "steps": [["done", 100]], "model": "suno", "failed_clips": 2},
                    {
                        "id": "song-2",
                        "steps": [["done", 100]],
                        "model": "suno",
                        "clips": 3,
                        "failed_clips": 1,
                        "preview_stub": True,
                    },
                ],
                "created": {"steps": [["done", 100]], "failed_clips": 2},
            }
        )
    )
    options = EmulatorOptions(
        host="127.0.0.1", port=0, storage_port=0, api_key="k", tasks_file=tasks
    )
    assert _load(fake, options) == ["song-1", "song-2"]
    async with fake.client() as client:
        with pytest.raises(TaskFailedError, match="all 2 clips failed"):
            await client.media.wait_for_result("song-1", timeout=30)
        partly = await client.media.wait_for_result("song-2", timeout=30)
        with pytest.raises(TaskFailedError, match="all 2 clips failed"):
            await client.media.generate("suno", "a song", timeout=30)
    assert len(partly.failed_clips) == 1 and len(partly.clips) == 4  # 3 and the stub


async def test_the_control_endpoint_scripts_clips_that_fail(
    fake: FakeGPTunnel, http_session: aiohttp.ClientSession
) -> None:
    spec = {"steps": [["done", 100]], "model": "suno", "clips": 2, "failed_clips": 1}
    async with http_session.post(f"{fake.control_url}/tasks", json=spec) as response:
        assert response.status == 200
        task_id = (await response.json())["id"]
    async with fake.client() as client:
        task = await client.media.result(task_id)
    assert task.is_done and len(task.failed_clips) == 1 and len(task.urls) == 1


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"failed_clips": 1}, "give its model too"),
        ({"model": "suno", "failed_clips": 3}, "at most the 2 clips"),
        ({"model": "suno", "failed_clips": "1"}, "failed_clips"),
        ({"model": "suno", "preview_stub": "yes"}, "preview_stub must be a bool"),
        ({"model": "suno", "clip": 1}, "unknown fields"),
    ],
)
async def test_a_tasks_spec_with_odd_media_options_is_refused(
    fake: FakeGPTunnel, http_session: aiohttp.ClientSession, spec: dict[str, Any], problem: str
) -> None:
    async with http_session.post(
        f"{fake.control_url}/tasks", json={"steps": [["done", 100]], **spec}
    ) as response:
        assert response.status == 400
        assert problem in (await response.json())["error"]
