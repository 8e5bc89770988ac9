"""The command line for every family: ``--family`` on ``result`` and ``wait``, ``balance``,
and create-and-wait (``faceswap``, ``imagine``, ``media``), each run as a subprocess
against the emulator, with the same progress output, JSON lines and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gptunnel_async.models import MAX_CLIPS
from gptunnel_async.testing import FakeGPTunnel, sample_image

from .test_cli import SECRET, run


@pytest.fixture
def fake() -> Iterator[FakeGPTunnel]:
    with FakeGPTunnel(api_key=SECRET) as running:
        yield running


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("family", "type", "model", "path"),
    [
        ("faceswap", "@FaceSwap", None, "/v1/faceswap/result"),
        ("bgremover", "@BGRemover", None, "/v1/bgremover/result"),
        ("midjourney", "imagine", None, "/v1/midjourney/result"),
        ("media", "@Media", "flux-pro", "/v1/media/result"),
    ],
)
def test_result_and_wait_read_the_family_asked_for(
    fake: FakeGPTunnel, family: str, type: str, model: str | None, path: str
) -> None:
    task_id = fake.script_task(steps=[("processing", 30), ("done", 100)], type=type, model=model)
    read = run("result", task_id, "--family", family, "--json", fake=fake)
    waited = run("wait", task_id, "--family", family, "--json", fake=fake)
    assert (read.returncode, waited.returncode) == (0, 0), read.stderr + waited.stderr
    assert lines(read.stdout)[0]["id"] == task_id
    events = lines(waited.stdout)
    kinds = [event["event"] for event in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"progress"}
    assert events[-1]["task"]["id"] == task_id
    assert {request.path for request in fake.requests} == {path}
    secret_free = read.stdout + read.stderr + waited.stdout + waited.stderr
    assert SECRET not in secret_free


def test_an_unknown_family_is_a_usage_error(fake: FakeGPTunnel) -> None:
    done = run("result", "abc", "--family", "chat", fake=fake)
    assert done.returncode == 2 and "invalid choice" in done.stderr
    assert fake.requests == []


def test_balance_prints_the_organisations_money(fake: FakeGPTunnel) -> None:
    fake.set_balance(42.5, credit_limit=100)
    plain = run("balance", fake=fake)
    as_json = run("balance", "--wallet", "--json", fake=fake)
    assert plain.returncode == 0 and "42.50" in plain.stdout and "100.00" in plain.stdout
    assert lines(as_json.stdout) == [
        {"event": "balance", "org_id": "fake-org", "balance": 42.5, "credit_limit": 100.0}
    ]
    assert fake.requests[-1].query == {"useWalletBalance": "true"}


def test_a_refused_key_exits_with_the_api_error_code(fake: FakeGPTunnel) -> None:
    done = run("balance", "--json", GPTUNNEL_API_KEY="wrong", GPTUNNEL_BASE_URL=fake.base_url)
    assert done.returncode == 4 and lines(done.stdout)[-1]["error"] == "AuthenticationError"


def test_faceswap_creates_waits_and_saves_with_the_real_console_script(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    (tmp_path / "source.png").write_bytes(sample_image("source.png"))
    (tmp_path / "face.png").write_bytes(sample_image("face.png"))
    fake.script_created(steps=[("idle", 0), ("done", 100)])
    done = run(
        "faceswap", "source.png", "face.png", "--save", "out.png", "--json",
        fake=fake, instant=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = lines(done.stdout)
    kinds = [event["event"] for event in events]
    assert kinds[0] == "created" and kinds[-2:] == ["done", "saved"]
    assert set(kinds[1:-2]) == {"progress"}
    created_id = events[-2]["task"]["id"]
    assert events[0] == {"event": "created", "family": "faceswap", "task_id": created_id}
    assert (tmp_path / "out.png").read_bytes() == sample_image("result.png")
    create = fake.requests[0]
    assert create.path == "/v1/faceswap/create"
    assert create.json["sourceImage"].startswith("data:image/png;base64,")


def test_imagine_waits_for_the_grid_and_saves_it(fake: FakeGPTunnel, tmp_path: Path) -> None:
    done = run("imagine", "a red fox", "--save", str(tmp_path / "grid.png"), fake=fake)
    assert done.returncode == 0, done.stderr
    assert "done" in done.stdout and "saved" in done.stdout
    assert (tmp_path / "grid.png").read_bytes() == sample_image("result.png")
    assert fake.requests[0].json == {"prompt": "a red fox"}


def test_media_saves_every_clip_into_the_folder(fake: FakeGPTunnel, tmp_path: Path) -> None:
    done = run("media", "suno", "a sea shanty", "--save", str(tmp_path), "--json", fake=fake)
    assert done.returncode == 0, done.stderr
    saved = [event["path"] for event in lines(done.stdout) if event["event"] == "saved"]
    assert len(saved) == 2 and all(Path(path).parent == tmp_path for path in saved)
    assert sorted(path.suffix for path in tmp_path.iterdir()) == [".mp3", ".mp3"]


def test_media_whose_clips_all_failed_exits_1_with_their_reason(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    fake.script_created(steps=[("processing", 0), ("done", 100)], failed_clips=2)
    failed = run("media", "suno", "a sea shanty", "--save", str(tmp_path), fake=fake)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "failed (done): all 2 clips failed: the clip failed" in failed.stderr
    as_json = lines(run("media", "suno", "a shanty", "--json", fake=fake).stdout)[-1]
    assert (as_json["event"], as_json["exit_code"]) == ("failed", 1)
    assert [clip["error"] for clip in as_json["task"]["clips"]] == ["the clip failed"] * 2
    assert list(tmp_path.iterdir()) == []


def test_media_with_some_clips_failed_saves_the_others_and_says_so(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    fake.script_created(steps=[("done", 100)], clips=3, failed_clips=1)
    done = run("media", "suno", "a sea shanty", "--save", str(tmp_path), fake=fake)
    assert done.returncode == 0, done.stderr
    assert "note: 1 of 3 clips failed: the clip failed" in done.stdout
    assert sorted(path.name for path in tmp_path.iterdir())[0].endswith("_clip2.mp3")
    assert len(list(tmp_path.iterdir())) == 2
    task_id = fake.script_task(steps=[("done", 100)], model="suno", clips=3, failed_clips=1)
    read = run("result", task_id, "--family", "media", fake=fake)
    assert read.returncode == 0 and "note     1 of 3 clips failed: the clip failed" in read.stdout


def test_media_sends_image_links_and_refuses_files(fake: FakeGPTunnel) -> None:
    sent = run(
        "media", "flux-pro", "a fox", "--image", "https://a.test/1.png", "--ar", "16:9",
        fake=fake,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert fake.requests[0].json == {
        "model": "flux-pro",
        "prompt": "a fox",
        "images": ["https://a.test/1.png"],
        "ar": "16:9",
    }
    before = len(fake.requests)
    refused = run("media", "flux-pro", "a fox", "--image", "face.png", "--json", fake=fake)
    assert refused.returncode == 2
    assert "public http(s) links" in lines(refused.stdout)[-1]["message"]
    assert len(fake.requests) == before  # refused before any request


def test_a_failed_creation_exits_1_and_a_timeout_3(fake: FakeGPTunnel) -> None:
    fake.script_created(steps=[("processing", 10), ("failed", 10)], error="no face found")
    failed = run("faceswap", "https://a/1.png", "https://a/2.png", "--json", fake=fake)
    assert failed.returncode == 1 and lines(failed.stdout)[-1]["event"] == "failed"
    fake.script_created(steps=[("processing", 10)])
    slow = run("imagine", "a fox", "--timeout", "0.5", "--json", fake=fake)
    assert slow.returncode == 3 and lines(slow.stdout)[-1]["event"] == "timeout"
    record = lines(slow.stdout)[-1]
    again = f"gptunnel-async wait --family midjourney -- {record['task_id']}"
    assert record["hint"] == f"the task goes on at GPTunnel; wait for it again with: {again}"


SAVE_COMMANDS = [
    ("faceswap", "https://a.test/1.png", "https://a.test/2.png"),
    ("imagine", "a red fox"),
    ("media", "suno", "a sea shanty"),
    ("media", "flux-pro", "a fox"),
]


@pytest.mark.parametrize("command", SAVE_COMMANDS, ids=lambda c: "-".join(c[:2]))
@pytest.mark.parametrize("save", ["missing/", "missing/deeper/", "missing/out.png"])
def test_a_missing_save_folder_is_refused_before_the_paid_task(
    fake: FakeGPTunnel, tmp_path: Path, command: tuple[str, ...], save: str
) -> None:
    done = run(*command, "--save", f"{tmp_path}/{save}", "--json", fake=fake)
    assert done.returncode == 2, done.stdout + done.stderr
    message = lines(done.stdout)[-1]["message"]
    assert "does not exist" in message and "PosixPath" not in message
    assert fake.requests == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("family", ["faceswap", "media", "midjourney"])
def test_wait_refuses_a_missing_save_folder_before_reading(
    fake: FakeGPTunnel, tmp_path: Path, family: str
) -> None:
    done = run("wait", "some-task", "--family", family, "--save", f"{tmp_path}/nodir/", fake=fake)
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert "PosixPath" not in done.stderr
    assert fake.requests == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [("wait", "some-task"), *SAVE_COMMANDS],
    ids=lambda c: "-".join(c[:2]),
)
def test_an_empty_save_is_refused_before_any_request(
    fake: FakeGPTunnel, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """``--save ""`` (an unset variable in a script) would save into the current folder."""
    done = run(*command, "--save", "", "--json", fake=fake, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    message = lines(done.stdout)[-1]["message"]
    assert message == "--save is empty: name a file or an existing folder"
    assert fake.requests == []
    assert list(tmp_path.iterdir()) == []


def test_several_clips_saved_to_a_file_name_are_numbered_beside_it(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    done = run("media", "suno", "a shanty", "--save", str(tmp_path / "song.mp3"), fake=fake)
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["song-0.mp3", "song-1.mp3"]


@pytest.mark.parametrize("into", ["folder", "file"])
def test_clips_saved_before_one_fails_are_reported_as_saved(
    fake: FakeGPTunnel, tmp_path: Path, into: str
) -> None:
    """Clip 1's result has expired: clip 0, saved first, is reported (``saved``, with its
    path) before the error, in ``--json`` and plain output alike; it was saved but the
    output never said where, and a second run made a copy beside it."""
    stored = fake.task(fake.script_task(steps=[("done", 100)])).result
    assert stored is not None
    clips = [{"audio_url": stored}, {"audio_url": f"{fake.storage_url}/results/gone.mp3"}]
    body = {"code": 0, "id": "two", "model": "suno", "status": "done", "result": clips}
    fake.fail_next(200, body=body, times=None, path="media/result")
    save = str(tmp_path) if into == "folder" else str(tmp_path / "song.mp3")
    as_json = run("wait", "two", "--family", "media", "--save", save, "--json", fake=fake)
    assert as_json.returncode == 4, as_json.stdout + as_json.stderr
    events = lines(as_json.stdout)
    [saved] = [event["path"] for event in events if event["event"] == "saved"]
    assert Path(saved).is_file() and Path(saved).parent == tmp_path
    assert events[-1]["error"] == "NotFoundError"
    plain = run("wait", "two", "--family", "media", "--save", save, fake=fake)
    assert plain.returncode == 4 and "saved" in plain.stdout, plain.stdout + plain.stderr


@pytest.mark.parametrize("into", ["folder", "file"])
def test_a_task_listing_thousands_of_files_saves_none(
    fake: FakeGPTunnel, tmp_path: Path, into: str
) -> None:
    clips = [{"audio_url": f"https://s.example/{n}.mp3"} for n in range(5000)]
    body = {"code": 0, "id": "many", "model": "suno", "status": "done", "result": clips}
    fake.fail_next(200, body=body, times=None, path="media/result")
    save = str(tmp_path) if into == "folder" else str(tmp_path / "song.mp3")
    done = run("wait", "many", "--family", "media", "--save", save, "--json", fake=fake)
    assert done.returncode == 4, done.stdout + done.stderr
    record = lines(done.stdout)[-1]
    kept = f"lists {MAX_CLIPS} result files"  # the task keeps the first MAX_CLIPS of 5000
    assert record["error"] == "DownloadError" and kept in record["message"]
    assert list(tmp_path.iterdir()) == []


def test_a_done_task_without_a_result_is_a_server_side_failure(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    body = {"id": "noresult", "object": "task", "status": "done", "percent": 100, "result": None}
    fake.fail_next(200, body=body, times=None, path="faceswap/result")
    done = run("wait", "noresult", "--save", str(tmp_path), "--json", fake=fake)
    assert done.returncode == 4, done.stdout + done.stderr
    assert lines(done.stdout)[-1]["error"] == "DownloadError"
    assert list(tmp_path.iterdir()) == []
