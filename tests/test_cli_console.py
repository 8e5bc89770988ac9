"""The installed ``gptunnel-async`` console script, run for real against the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gptunnel_async.testing import FakeGPTunnel

SCRIPT = shutil.which("gptunnel-async", path=str(Path(sys.executable).parent)) or "gptunnel-async"

pytestmark = pytest.mark.skipif(
    not Path(SCRIPT).exists(), reason="the console script is not installed"
)


async def start(
    *args: str,
    stdout: Any = asyncio.subprocess.PIPE,
    stderr: Any = asyncio.subprocess.PIPE,
    **env: str,
) -> asyncio.subprocess.Process:
    """The console script with ``args``, without the caller's ``GPTUNNEL_*`` variables;
    ``env`` adds some; its output to pipes, or to ``stdout``/``stderr``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}
    environment.update(env)
    return await asyncio.create_subprocess_exec(
        SCRIPT, *args, stdout=stdout, stderr=stderr, env=environment
    )


async def run(*args: str, **env: str) -> tuple[int, str, str]:
    process = await start(*args, **env)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def sigint_delivered() -> Iterator[None]:
    """Children start with Ctrl-C's default handling, as from a terminal.

    A program a shell starts in the background (``pytest ... &``) ignores SIGINT, and so
    would the command it starts, which then rightly goes on at Ctrl-C: the tests of
    Ctrl-C must not depend on how the test run was started.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def connection(fake: FakeGPTunnel) -> list[str]:
    return ["--base-url", fake.base_url, "--api-key", fake.api_key]


@pytest.mark.parametrize(
    ("save", "message"),
    [
        ("/no/such/dir/x.png", "does not exist"),
        ("/proc/x.png", "cannot write to the folder"),
        ("{tmp}/" + "x" * 300 + ".png", "file name is over"),
    ],
)
async def test_wait_checks_where_it_saves_before_the_first_read(
    fake: FakeGPTunnel, tmp_path: Path, save: str, message: str
) -> None:
    task_id = fake.script_task(duration=60)
    code, _, err = await run(
        "wait", task_id, "--save", save.format(tmp=tmp_path), *connection(fake)
    )
    assert code == 2
    assert message in err
    assert fake.requests == []


async def test_wait_against_an_unreachable_api_is_a_connection_error() -> None:
    code, _, err = await run(
        "wait", "abc", "--json", "--base-url", "http://127.0.0.1:1/v1", "--api-key", "k"
    )
    assert code == 4
    lines = err.splitlines()
    retries = [line for line in lines if "; retry " in line]
    assert len(retries) == 3  # the client's retries of the first read, then the error
    assert all(line.count("/v1/faceswap/result") == 1 for line in retries)
    # as docs/cli.md shows it: "...; retry 1 in 0.50s (task 3605...)"
    assert all(re.search(r"; retry [123] in \d+\.\d\ds \(task abc\)$", line) for line in retries)


async def test_wait_rides_through_failures_once_the_api_has_answered(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("running", 10), ("done", 100)])
    fake.fail_next(503, times=1)
    code, out, _ = await run("wait", task_id, "--json", *connection(fake))
    assert code == 0
    assert json.loads(out.splitlines()[-1])["event"] == "done"


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "lines"])
async def test_a_closed_output_ends_the_command_with_141_and_no_traceback(
    fake: FakeGPTunnel, as_json: bool
) -> None:
    task_id = fake.script_task(duration=3)  # percent rises at each read: a line each
    read_end, write_end = os.pipe()
    process = await start(
        "wait", task_id, *(["--json"] if as_json else []), *connection(fake), stdout=write_end
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:  # as `| head -1`: one line, then gone
        assert await asyncio.to_thread(pipe.readline)
    assert process.stderr is not None
    err = await process.stderr.read()  # the next line goes to the closed pipe
    assert await process.wait() == 141
    assert err == b""


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "lines"])
async def test_a_lone_surrogate_in_server_text_is_shown_escaped_with_the_right_exit_code(
    fake: FakeGPTunnel, as_json: bool
) -> None:
    """JSON may carry "\\udfff", which no encoding can write: neither a crash, nor a
    usage error instead of "the task failed"."""
    task_id = fake.fail_task("no face \udfff found", steps=[("running\ud800", 20)])
    code, out, err = await run("wait", task_id, *(["--json"] if as_json else []), *connection(fake))
    assert code == 1
    assert "Traceback" not in err and "UnicodeEncodeError" not in out + err
    if as_json:
        assert json.loads(out.splitlines()[-1])["message"].endswith("no face \\udfff found")
    else:
        assert err.strip() == f"task {task_id} failed: no face \\udfff found"
        assert "running\\ud800" in out
    code, out, _ = await run("result", task_id, *connection(fake))
    assert code == 1
    assert "no face \\udfff found" in out
    code, out, _ = await run("result", task_id, "--json", *connection(fake))
    assert code == 1
    assert json.loads(out)["error"] == "no face \ufffd found"  # strict readers refuse a lone one


async def run_with(
    fake: FakeGPTunnel, *args: str, stdout: Any, stderr: Any
) -> asyncio.subprocess.Process:
    process = await start(*args, *connection(fake), stdout=stdout, stderr=stderr)
    await process.wait()
    return process


FULL = Path("/dev/full")  # every write fails with ENOSPC, as on a full disk


@pytest.fixture
def full() -> Iterator[int]:
    """A descriptor of ``/dev/full``."""
    descriptor = os.open(FULL, os.O_WRONLY)
    yield descriptor
    os.close(descriptor)


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full here")
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "lines"])
async def test_an_output_that_cannot_be_written_ends_with_74_and_says_so(
    fake: FakeGPTunnel, as_json: bool, full: int
) -> None:
    task_id = fake.script_task(steps=[("running", 40)])
    process = await run_with(
        fake,
        "result",
        task_id,
        *(["--json"] if as_json else []),
        stdout=full,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    err = (await process.stderr.read()).decode()
    assert process.returncode == 74
    assert err == "error: the output could not be written: [Errno 28] No space left on device\n"


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full here")
async def test_an_error_that_cannot_be_shown_keeps_the_command_s_exit_code(
    fake: FakeGPTunnel, full: int
) -> None:
    process = await run_with(fake, "result", "no-such-task", stdout=None, stderr=full)
    assert process.returncode == 4  # not found, shown or not


async def test_a_closed_stdout_is_written_to_nowhere(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        'exec "$0" "$@" >&-',  # started with no stdout at all: Python's sys.stdout is None
        SCRIPT,
        "result",
        task_id,
        *connection(fake),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    err = await process.stderr.read()
    assert (await process.wait(), err) == (0, b"")


async def test_without_a_key_the_cli_names_its_option() -> None:
    code, _, err = await run("wait", "abc", "--base-url", "http://127.0.0.1:1/v1")
    assert code == 2
    assert "--api-key" in err
    assert "api_key=" not in err


async def test_ctrl_c_during_wait_json_ends_with_a_cancelled_record(
    fake: FakeGPTunnel, sigint_delivered: None
) -> None:
    task_id = fake.script_task(duration=120)
    process = await start("wait", task_id, "--json", *connection(fake))
    assert process.stdout is not None
    first = json.loads(await process.stdout.readline())
    assert first["event"] == "progress"
    process.send_signal(signal.SIGINT)
    rest = (await process.stdout.read()).decode().splitlines()
    assert await process.wait() == 130
    assert json.loads(rest[-1]) == {
        "event": "cancelled",
        "exit_code": 130,
        "task_id": task_id,
        "hint": "the task goes on at GPTunnel; wait for it again with: "
        f"gptunnel-async wait --base-url={fake.base_url} -- {task_id}",
    }


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "lines"])
async def test_sigterm_during_wait_ends_it_as_ctrl_c_does_with_exit_143(
    fake: FakeGPTunnel, as_json: bool
) -> None:
    task_id = fake.script_task(duration=120)
    options = ["--json"] if as_json else []
    process = await start("wait", task_id, *options, *connection(fake))
    assert process.stdout is not None and process.stderr is not None
    first = await process.stdout.readline()  # the wait has begun: a first progress line
    assert task_id.encode() in first or b"%" in first
    process.send_signal(signal.SIGTERM)
    rest = (await process.stdout.read()).decode().splitlines()
    errors = (await process.stderr.read()).decode()
    assert await process.wait() == 143
    again = f"wait for it again with: gptunnel-async wait --base-url={fake.base_url} -- {task_id}"
    if as_json:
        record = json.loads(rest[-1])
        assert (record["event"], record["exit_code"], record["task_id"]) == (
            "cancelled",
            143,
            task_id,
        )
        assert record["hint"].endswith(again)
    else:
        assert "interrupted" in errors and "Traceback" not in errors
        assert errors.splitlines()[-1] == f"hint: the task goes on at GPTunnel; {again}"


async def test_ctrl_c_after_a_create_names_the_created_task_and_how_to_wait_again(
    fake: FakeGPTunnel, sigint_delivered: None, tmp_path: Path
) -> None:
    fake.script_created(duration=120)
    (tmp_path / "my songs").mkdir()
    process = await start(
        "media",
        "suno",
        "a sea shanty",
        "--save",
        f"{tmp_path}/my songs/",
        "--json",
        *connection(fake),
    )
    assert process.stdout is not None
    created = json.loads(await process.stdout.readline())
    assert (created["event"], created["family"]) == ("created", "media"), created
    first = json.loads(await process.stdout.readline())  # the wait has begun
    assert (first["event"], first["task_id"]) == ("progress", created["task_id"]), first
    process.send_signal(signal.SIGINT)
    rest = (await process.stdout.read()).decode().splitlines()
    assert await process.wait() == 130
    record = json.loads(rest[-1])
    assert record["task_id"] == first["task_id"]
    command = (
        f"gptunnel-async wait --base-url={fake.base_url} --family media "
        f"'--save={tmp_path}/my songs/' -- {first['task_id']}"
    )
    assert record["hint"].endswith(f"wait for it again with: {command}")


async def test_sigterm_and_ctrl_c_together_end_with_one_code_and_no_traceback(
    fake: FakeGPTunnel, sigint_delivered: None
) -> None:
    task_id = fake.script_task(duration=120)
    process = await start("wait", task_id, "--json", *connection(fake))
    assert process.stdout is not None and process.stderr is not None
    await process.stdout.readline()  # the wait has begun
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGINT)  # a supervisor's stop and a Ctrl-C at once
    rest = (await process.stdout.read()).decode().splitlines()
    errors = (await process.stderr.read()).decode()
    code = await process.wait()
    assert "Traceback" not in errors and code != 1  # not "the task failed"
    records = [json.loads(line) for line in rest if '"cancelled"' in line]
    assert len(records) == 1 and records[0]["exit_code"] in (130, 143)
    assert code in (records[0]["exit_code"], -signal.SIGINT)  # or a signal after the end


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
async def test_on_a_narrow_terminal_the_bar_keeps_its_time_and_room_for_ctrl_c(
    fake: FakeGPTunnel, sigint_delivered: None
) -> None:
    import pty

    task_id = fake.script_task(duration=120)
    leader, follower = pty.openpty()
    process = await start(
        "wait",
        task_id,
        *connection(fake),
        stdout=follower,
        stderr=follower,
        COLUMNS="50",
        TERM="xterm",
    )
    os.close(follower)
    loop = asyncio.get_running_loop()
    screen = b""
    while b"\x1b[2K" not in screen or len(re.findall(rb"\d:\d\d:\d\d", screen)) < 2:
        try:
            screen += await loop.run_in_executor(None, os.read, leader, 65536)
        except OSError:
            pytest.fail(f"the command ended early: {screen!r}")
    process.send_signal(signal.SIGINT)
    assert await process.wait() == 130
    with contextlib_suppress_oserror():
        while chunk := os.read(leader, 65536):
            screen += chunk
    os.close(leader)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode("utf-8", "replace"))
    frames = [frame for frame in re.split(r"[\r\n]+", text) if "%" in frame]
    assert frames
    for frame in frames:
        assert len(frame) <= 47, frame  # 50 columns, less the room for "^C"
        assert re.search(r"\d+% \d:\d\d:\d\d$", frame.rstrip()), frame
    assert "interrupted" in text


def contextlib_suppress_oserror() -> Any:
    import contextlib

    return contextlib.suppress(OSError)  # the pty reports EIO once the process is gone


async def test_an_emulator_on_a_port_in_use_says_how_to_pick_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, out, err = await run("emulator", "--port", str(taken.getsockname()[1]))
    assert (code, out) == (2, "")
    assert err.startswith("usage error: the emulator cannot start: ")
    assert err.rstrip().endswith("pass another --port, or --port 0 for any free one")


async def test_the_emulator_banner_gives_the_settings_that_point_a_command_at_it() -> None:
    process = await start("emulator", "--port", "0", "--task", "demo=0", "--api-key", "my key")
    assert process.stdout is not None
    banner = []
    while not banner or banner[-1] != "Ctrl-C stops it.":
        banner.append((await process.stdout.readline()).decode().rstrip("\n"))
    try:
        words = shlex.split(banner[-2])
        assert words[0] == "export"
        settings = dict(word.split("=", 1) for word in words[1:])
        assert set(settings) == {"GPTUNNEL_BASE_URL", "GPTUNNEL_API_KEY"}
        assert settings["GPTUNNEL_API_KEY"] == "my key"
        code, out, _ = await run("wait", "demo", "--json", **settings)
        assert code == 0 and json.loads(out.splitlines()[-1])["event"] == "done"
    finally:
        process.send_signal(signal.SIGTERM)
        await process.communicate()


async def test_the_emulator_command_serves_scripted_tasks_and_its_request_log(
    tmp_path: Path,
) -> None:
    tasks = tmp_path / "tasks.json"
    tasks.write_text(
        json.dumps(
            {
                "tasks": [{"id": "t1", "steps": [["queued", 0], ["done", 100]]}],
                "faults": [{"kind": "fail", "status": 503, "times": 1}],
            }
        )
    )
    process = await start(
        "emulator", "--port", "0", "--json", "--tasks", str(tasks), "--task", "t2=0.5:no face"
    )
    assert process.stdout is not None
    listening = json.loads(await process.stdout.readline())
    try:
        assert listening["tasks"] == ["t1", "t2"]
        url, key = listening["base_url"], listening["api_key"]
        code, out, _ = await run("wait", "t1", "--json", "--base-url", url, "--api-key", key)
        assert code == 0 and json.loads(out.splitlines()[-1])["event"] == "done"
        code, out, _ = await run("wait", "t2", "--json", "--base-url", url, "--api-key", key)
        assert code == 1 and "no face" in out
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.get(f"{listening['control_url']}/requests") as response:
                log = await response.json()
            async with session.post(
                f"{listening['control_url']}/tasks", json={"duration": 1}
            ) as response:
                created = await response.json()
            async with session.post(
                f"{listening['control_url']}/tasks", json={"nonsense": 1}
            ) as response:
                assert response.status == 400
        statuses = [request["path"] for request in log["api"]]
        assert statuses and all(path == "/v1/faceswap/result" for path in statuses)
        assert created["id"]
    finally:
        process.send_signal(signal.SIGINT)
        rest = (await process.stdout.read()).decode().splitlines()
    assert await process.wait() == 0
    assert json.loads(rest[-1]) == {"event": "stopped"}
