"""The ``gptunnel-async`` command, run in a subprocess against an emulator in the test."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gptunnel_async import (
    NOT_GIVEN,
    APIError,
    ConfigurationError,
    DownloadError,
    GPTunnelError,
    ProgressEvent,
    TaskFailedError,
    WaitTimeoutError,
)
from gptunnel_async._checks import task_id_problem
from gptunnel_async._cli_families import reading_every
from gptunnel_async._cli_output import JsonOutput
from gptunnel_async._sansio.text import printable
from gptunnel_async.cli import (
    NO_CONNECTION,
    NO_TLS,
    _build_parser,
    exit_code_for,
    main,
    make_client,
    resume_hint,
    timeout_of,
    wait_and_save,
)
from gptunnel_async.models import Task
from gptunnel_async.testing import FakeGPTunnel, sample_image
from gptunnel_async.testing._pictures import face_swap_picture, read_png

SECRET = "sk-live-0123456789abcdef"
STEPS = [("queued", 0), ("running", 40), ("done", 100)]
BIN = Path(sys.executable).parent

INSTANT_MAIN = (
    "import sys; from gptunnel_async.testing import set_instant_waits; set_instant_waits(); "
    "from gptunnel_async.cli import main; sys.exit(main())"
)
"""The CLI's own ``main`` with instant waits, so multi-poll waits take no real time."""


@pytest.fixture
def fake() -> Iterator[FakeGPTunnel]:
    with FakeGPTunnel(api_key=SECRET) as running:
        yield running


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPTUNNEL_", "FORCE_COLOR"))}
    env.pop("TTY_COMPATIBLE", None)
    env.update(extra)
    return env


def run(
    *args: str,
    fake: FakeGPTunnel | None = None,
    instant: bool = True,
    cwd: Path | None = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI; with ``fake``, its key and URL come from the environment."""
    if fake is not None:
        env = {"GPTUNNEL_API_KEY": fake.api_key, "GPTUNNEL_BASE_URL": fake.base_url, **env}
    command = [sys.executable, "-c", INSTANT_MAIN] if instant else [str(BIN / "gptunnel-async")]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=environment(**env),
        cwd=cwd,
        timeout=60,
        check=False,
    )


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``main`` in this process (argument handling, where a subprocess adds nothing):
    its exit code, stdout and stderr.
    """
    try:
        code = main(list(args))
    except SystemExit as exit:
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# -- result ---------------------------------------------------------------------------


def test_result_prints_the_task_readably(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("running", 40)])
    done = run("result", task_id, fake=fake, instant=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["task", task_id]
    assert lines[1].split() == ["status", "running"]
    assert lines[2].split() == ["percent", "40%"]
    assert "\x1b[" not in done.stdout  # not a terminal: no colours
    assert fake.requests[0].headers["Authorization"] == SECRET


def test_result_json_is_the_task_object(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    done = run("result", task_id, "--json", fake=fake, instant=False)
    assert done.returncode == 0, done.stderr
    [body] = json_lines(done.stdout)
    assert (body["id"], body["status"], body["percent"]) == (task_id, "done", 100)
    assert body["result"].startswith(fake.storage_url)


def test_result_of_a_failed_task_exits_1(fake: FakeGPTunnel) -> None:
    task_id = fake.fail_task("no face found")
    done = run("result", task_id, "--json", fake=fake)
    assert done.returncode == 1
    assert json_lines(done.stdout)[0]["error"] == "no face found"


def test_options_work_before_and_after_the_command(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    where = ["--api-key", SECRET, "--base-url", fake.base_url]
    before = run(*where, "result", task_id)
    after = run("result", task_id, *where)
    assert (before.returncode, after.returncode) == (0, 0), before.stderr + after.stderr


# -- wait -----------------------------------------------------------------------------


def test_wait_prints_plain_lines_when_not_a_terminal(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=STEPS)
    done = run("wait", task_id, fake=fake)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[1:] for line in lines[:3]] == [
        ["queued", "0%"],
        ["running", "40%"],
        ["done", "100%"],
    ]
    assert all(line.split()[0].endswith("s") for line in lines[:3])
    assert lines[3] == f"done: {fake.task(task_id).result}"
    assert "\x1b[" not in done.stdout


@pytest.mark.parametrize("steps", [[("done", 100)], STEPS])
def test_wait_reads_each_step_once(fake: FakeGPTunnel, steps: list[tuple[str, int]]) -> None:
    # The read that checks the API is reachable is the wait's first read, not an extra.
    task_id = fake.script_task(steps=steps)
    done = run("wait", task_id, "--json", fake=fake)
    assert done.returncode == 0, done.stderr
    reads = [r for r in fake.requests if r.method == "GET" and "result" in r.path]
    assert len(reads) == len(steps)
    assert [e.get("status") for e in json_lines(done.stdout)][:-1] == [s for s, _ in steps]


def test_wait_json_prints_one_event_per_line(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=STEPS)
    done = run("wait", task_id, "--json", fake=fake)
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert [(e["event"], e.get("status"), e.get("percent")) for e in events] == [
        ("progress", "queued", 0),
        ("progress", "running", 40),
        ("progress", "done", 100),
        ("done", None, None),
    ]
    assert all(e["task_id"] == task_id and e["elapsed"] >= 0 for e in events[:3])
    assert events[-1]["task"]["status"] == "done"


def test_wait_save_downloads_the_result(fake: FakeGPTunnel, tmp_path: Path) -> None:
    task_id = fake.script_task(steps=STEPS)
    target = tmp_path / "swap.png"
    done = run("wait", task_id, "--save", str(target), "--json", fake=fake)
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[-1] == {"event": "saved", "path": str(target)}
    assert target.read_bytes() == sample_image("result.png")
    assert "Authorization" not in fake.storage_requests[0].headers


@pytest.mark.parametrize(
    ("save", "expected"),
    [("swap.png", "swap.png"), (".", "{id}_result.png"), ("./", "{id}_result.png")],
)
def test_a_relative_save_is_reported_as_an_absolute_path(
    fake: FakeGPTunnel, tmp_path: Path, save: str, expected: str
) -> None:
    """A program reading the JSON may run elsewhere: the path it gets names the file
    wherever it runs, as the demo's does."""
    task_id = fake.script_task(steps=STEPS)
    done = run("wait", task_id, "--save", save, "--json", fake=fake, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    target = tmp_path / expected.format(id=task_id)
    assert json_lines(done.stdout)[-1] == {"event": "saved", "path": str(target)}
    assert target.read_bytes() == sample_image("result.png")
    (elsewhere := tmp_path / "plain").mkdir()
    plain = run("wait", task_id, "--save", save, fake=fake, cwd=elsewhere)
    assert f"saved: {elsewhere / target.name}" in plain.stdout.splitlines()


def test_wait_for_a_failing_task_exits_1(fake: FakeGPTunnel) -> None:
    task_id = fake.fail_task("no face found", steps=[("running", 20)])
    done = run("wait", task_id, fake=fake)
    assert done.returncode == 1
    assert done.stderr.strip() == f"task {task_id} failed: no face found"
    assert done.stdout.split()[1:3] == ["running", "20%"]


def test_wait_json_reports_the_failure_as_the_last_line(fake: FakeGPTunnel) -> None:
    task_id = fake.fail_task("no face found")
    done = run("wait", task_id, "--json", fake=fake)
    assert done.returncode == 1
    [event] = json_lines(done.stdout)
    assert event["event"] == "failed"
    assert event["exit_code"] == 1
    assert event["error"] == "TaskFailedError"
    assert event["task"]["error"] == "no face found"


def test_wait_past_its_timeout_exits_3(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("running", 10)])
    done = run("wait", task_id, "--timeout", "0.3", "--json", fake=fake)
    assert done.returncode == 3
    event = json_lines(done.stdout)[-1]
    assert (event["event"], event["exit_code"], event["task"]["percent"]) == ("timeout", 3, 10)
    assert event["hint"] == (
        f"the task goes on at GPTunnel; wait for it again with: gptunnel-async wait -- {task_id}"
    )
    plain = run("wait", task_id, "--timeout", "0.3", "--save", "my file.png", fake=fake)
    assert plain.returncode == 3
    assert plain.stderr.splitlines()[-1] == (
        "hint: the task goes on at GPTunnel; wait for it again with: "
        f"gptunnel-async wait '--save=my file.png' -- {task_id}"
    )


@pytest.mark.parametrize(
    ("words", "timeout"),
    [
        ((), NOT_GIVEN),
        (("--timeout", "30"), 30.0),
        (("--timeout", "0.5"), 0.5),
        (("--timeout", "none"), None),
        (("--timeout", " None "), None),
        (("--timeout", "NONE"), None),
    ],
)
@pytest.mark.parametrize("command", [("wait", "t-1"), ("imagine", "a fox"), ("faceswap", "a", "b")])
def test_timeout_is_seconds_or_none_for_no_deadline(
    command: tuple[str, ...], words: tuple[str, ...], timeout: float | None
) -> None:
    assert timeout_of(_build_parser().parse_args([*command, *words])) == timeout


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "soon", "nothing", ""])
def test_a_timeout_neither_seconds_nor_none_is_refused_naming_both(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = in_process(capsys, "wait", "t-1", "--timeout", text)
    assert code == 2
    assert "must be a number of seconds > 0" in err and "(or none: no deadline)" in err


def test_wait_with_no_deadline_waits_until_the_task_ends(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("running", 10), ("running", 60), ("done", 100)])
    done = run("wait", task_id, "--timeout", "none", "--json", fake=fake)
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[-1]["event"] == "done"


HINT_KEY = "sk-hint-key-0123456789abcdef"


@given(
    task_id=st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1)
    .map(str.strip)
    .filter(lambda text: bool(text) and task_id_problem(text) is None),
    family=st.sampled_from(["faceswap", "bgremover", "midjourney", "media"]),
    save=st.none()
    | st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1)
    | st.just(f"out/{HINT_KEY}.png"),
    base_url=st.sampled_from(
        [
            None,
            "http://127.0.0.1:8080/v1",
            "https://x.example/v1?",
            f"http://127.0.0.1:8080/{HINT_KEY}/v1",
            f"http://127.0.0.1:8080/{HINT_KEY.upper()}/v1",
            "http://127.0.0.1:8080/v1/\x1b]0;title\x07",
        ]
    ),
)
@example(task_id="--help", family="faceswap", save=None, base_url=None)
@example(task_id="-1abc", family="media", save="-out.png", base_url=None)
@example(task_id="--base-url=http://evil.example", family="faceswap", save="my/", base_url=None)
@example(task_id="a'b\"c $(x)", family="midjourney", save="line\nbreak.png", base_url=None)
def test_the_wait_again_hint_parses_back_to_the_same_wait(
    task_id: str, family: str, save: str | None, base_url: str | None
) -> None:
    """Pasted into a shell, the hint waits for the same task of the same family, saved
    where it was to be: whatever the server chose as id (``--help``, ``-1``, quotes).
    A ``--base-url`` or ``--save`` that holds the key, or that the output shows escaped,
    is named after the command, never shown."""
    args = argparse.Namespace(
        waiting_for=(task_id, family), save=save, base_url=base_url, api_key=HINT_KEY
    )
    hint = resume_hint(args)
    assert hint is not None
    assert HINT_KEY not in hint.lower()
    command, _, withheld = hint.split("wait for it again with: ", 1)[1].partition(" (with your ")
    program, *words = shlex.split(command)
    assert program == "gptunnel-async"
    again = _build_parser().parse_args(words)
    assert (again.command, again.task_id, again.family) == ("wait", task_id, family)
    options = (("--base-url", base_url, again.base_url), ("--save", save, again.save))
    for option, value, parsed in options:
        shown = value is not None and printable(value) == value and HINT_KEY not in value.lower()
        assert parsed == (value if shown else None)
        assert (option in withheld) is (value is not None and not shown)


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("result",),
        ("wait", "abc", "--timeout", "0"),
        ("wait", "abc", "--timeout", "soon"),
        ("launch",),
        ("result", " ", "--api-key", SECRET),
        ("result", "abc", "--api-key", SECRET, "--base-url", "ftp://example.test"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = in_process(capsys, *args)
    assert code == 2
    assert err


@pytest.mark.parametrize(
    ("task_id", "said"),
    [
        ("", "the task id must be a non-empty string"),
        (" abc", "the task id has a space around it"),
        ("a" * 300, "the task id is 300 characters, over the 256"),
    ],
)
def test_a_task_id_it_cannot_use_is_named_as_the_command_names_it(
    task_id: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "task_id must be a non-empty string": the SDK's argument, not TASK_ID."""
    for command in ("result", "wait"):
        code, _, err = in_process(capsys, command, task_id, "--api-key", SECRET)
        assert code == 2
        assert f"argument TASK_ID: {said}" in err
        assert "task_id" not in err


def test_a_missing_key_is_a_configuration_error(fake: FakeGPTunnel) -> None:
    done = run("result", "abc", GPTUNNEL_BASE_URL=fake.base_url)
    assert done.returncode == 2
    assert "GPTUNNEL_API_KEY" in done.stderr
    assert fake.requests == []


def test_a_wrong_key_exits_4(fake: FakeGPTunnel) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    done = run("wait", task_id, "--api-key", "sk-wrong", "--base-url", fake.base_url)
    assert done.returncode == 4
    assert "Unauthorized" in done.stderr


def test_an_unreachable_api_exits_4(fake: FakeGPTunnel) -> None:
    base_url = fake.base_url
    fake.__exit__(None, None, None)
    done = run("result", "abc", "--json", GPTUNNEL_API_KEY=SECRET, GPTUNNEL_BASE_URL=base_url)
    assert done.returncode == 4
    event = json_lines(done.stdout)[-1]
    assert (event["event"], event["error"]) == ("error", "APIConnectionError")
    assert "check base_url" in event["message"]  # the error says it, the hint: how here
    assert event["hint"].startswith("base_url is --base-url here")
    for_people = run("result", "abc", GPTUNNEL_API_KEY=SECRET, GPTUNNEL_BASE_URL=base_url)
    assert for_people.stderr.splitlines()[-1] == f"hint: {NO_CONNECTION}"


def test_https_against_a_plain_http_server_says_to_check_the_scheme(fake: FakeGPTunnel) -> None:
    https = fake.base_url.replace("http://", "https://")
    done = run("result", "abc", "--json", GPTUNNEL_API_KEY=SECRET, GPTUNNEL_BASE_URL=https)
    assert done.returncode == 4
    event = json_lines(done.stdout)[-1]
    assert (event["error"], event["hint"]) == ("TLSError", NO_TLS)


def test_a_dropped_connection_is_no_unreachable_api(fake: FakeGPTunnel) -> None:
    """The server was there (it hung up): no hint to check --base-url."""
    fake.drop_next(times=None)
    done = run("result", "abc", "--json", fake=fake)
    assert done.returncode == 4
    event = json_lines(done.stdout)[-1]
    assert (event["error"], event.get("hint")) == ("APIConnectionError", None)


@pytest.mark.parametrize(
    "slow_api",
    [
        lambda fake: fake.delay_next(45, times=None, path="faceswap/result"),
        lambda fake: fake.fail_next(503, retry_after=45, times=None, path="faceswap/result"),
    ],
    ids=["answers-nothing", "busy-come-back-in-45s"],
)
def test_wait_timeout_bounds_the_first_read_too(
    fake: FakeGPTunnel, slow_api: Callable[[FakeGPTunnel], None]
) -> None:
    # The first read (with the client's retries, each up to its 30 s timeout) used to
    # run before the deadline started: --timeout 1 took minutes. Unbounded, this run
    # would outlast the subprocess's own 60 s limit.
    slow_api(fake)
    done = run("wait", "abc", "--timeout", "1", fake=fake, instant=False)
    assert done.returncode == 3, done.stderr
    assert "was not seen to finish within 1s" in done.stderr


def test_server_errors_that_outlast_the_retries_exit_4(fake: FakeGPTunnel) -> None:
    fake.fail_next(500, times=None)
    done = run("result", "abc", fake=fake)
    assert done.returncode == 4
    assert len(fake.requests) == 4  # the first try and three retries


@pytest.mark.parametrize(
    "args",
    [
        ("result", "abc", "--api-key", "{key}", "--base-url", "{url}"),
        ("wait", "abc", "--json", "--api-key={key}", "--base-url", "{url}"),
        ("demo", "--api-key", "{key}"),
        ("--api-key", "{key}", "--api-keyy", "{key}"),
        ("result", "x", "--api-key", "{key}", "--base-url", "http://u:{key}@127.0.0.1:9/v1"),
    ],
    ids=["echoed-by-api", "echoed-in-json", "unknown-option", "misspelt-option", "in-base-url"],
)
def test_the_key_is_never_printed(
    fake: FakeGPTunnel, args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail_next(401, body={"error": {"message": f"bad key {SECRET}"}})
    code, out, err = in_process(capsys, *(a.format(key=SECRET, url=fake.base_url) for a in args))
    assert code in (2, 4)
    assert SECRET not in out + err


# -- entry points ---------------------------------------------------------------------


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gptunnel_async", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("gptunnel-async ")


def test_without_rich_it_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['rich'] = None; "
        "from gptunnel_async.cli import main; sys.exit(main(['demo']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "pip install 'rich>=13'" in done.stderr  # installs anywhere, PyPI or a clone


def test_demo_needs_no_key_and_saves_a_png_here(tmp_path: Path) -> None:
    done = run("demo", instant=False, cwd=tmp_path, GPTUNNEL_BASE_URL="http://127.0.0.1:9/v1")
    assert done.returncode == 0, done.stderr
    saved = tmp_path / "gptunnel-demo-result.png"
    lines = done.stdout.splitlines()
    assert f"saved: {saved}" in lines
    assert "placeholder" in lines[-1]  # it says the result is not a real swap
    # person + face -> result, each sample scaled up, side by side
    picture = read_png(saved.read_bytes())
    assert saved.read_bytes() == face_swap_picture()
    for index, name in enumerate(("source.png", "face.png")):
        sample = read_png(sample_image(name))
        left = 8 + index * 2 * (96 + 8)
        assert [row[left : left + 96 : 3] for row in picture[8 : 8 + 96 : 3]] == sample
    assert list(tmp_path.iterdir()) == [saved]  # nothing else left behind
    progress = [line.split()[1] for line in done.stdout.splitlines() if line.endswith("%")]
    assert progress[0] == "processing"
    assert progress[-1] == "done"


def test_demo_in_a_folder_it_cannot_write_to_stops_before_it_starts() -> None:
    """It ran the whole demo, then failed to save (exit 4, "a failed download"); now it
    says so in one line before anything starts (``/proc`` takes no file, for root too)."""
    done = run("demo", instant=False, cwd=Path("/proc"))
    assert done.returncode == 2
    assert done.stdout == ""  # no emulator started, no task made
    assert done.stderr.count("\n") == 1, done.stderr
    assert "cannot write to the folder '/proc'" in done.stderr
    assert "run it in one you can write to" in done.stderr


def test_demo_in_a_removed_folder_says_so_in_one_line(tmp_path: Path) -> None:
    """A shell whose folder was removed: it ran the demo, then ended with exit 74, "the
    output could not be written", though the output was fine."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = (
        f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
        "from gptunnel_async.cli import main; sys.exit(main(['demo']))"
    )
    # -P: like the installed ``gptunnel-async`` script, the interpreter puts no removed
    # current folder first on sys.path (CPython 3.13.0 then fails to import ``socket``).
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "the current folder cannot be found" in done.stderr


class FolderRemovedDuringTheWait(JsonOutput):
    """JSON output that removes ``folder`` (the ``--save`` folder) at the wait's first
    progress record: after ``--save`` was checked, before the result is saved."""

    def __init__(self, folder: Path) -> None:
        super().__init__(io.StringIO())
        self.folder = folder

    @contextlib.contextmanager
    def progress(self, task_id: str) -> Iterator[Callable[[ProgressEvent[Any]], None]]:
        with super().progress(task_id) as show:

            def shown(event: ProgressEvent[Any]) -> None:
                show(event)
                if self.folder.exists():
                    self.folder.rmdir()

            yield shown


async def test_a_save_that_fails_after_the_wait_is_a_failed_download(tmp_path: Path) -> None:
    """``--save``'s folder removed during the wait: that was a ``ConfigurationError``,
    exit 2, which the docs keep for what is checked before the wait; it is a failed
    download, exit 4."""
    folder = tmp_path / "out"
    folder.mkdir()
    async with FakeGPTunnel() as fake, fake.client() as client:
        task_id = fake.script_task(steps=[("processing", 50), ("done", 100)])
        with pytest.raises(
            DownloadError, match=r"could not be saved: the folder .* not exist"
        ) as caught:
            await wait_and_save(
                client, task_id, FolderRemovedDuringTheWait(folder), save=folder / "x.png"
            )
    assert exit_code_for(caught.value) == 4


# -- exit codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TaskFailedError(Task(id="t", status="failed")), 1),
        (ConfigurationError("no key"), 2),
        (ValueError("bad value"), 2),
        (WaitTimeoutError("t", 1.0, None), 3),
        (APIError("teapot", status_code=418), 4),
        (GPTunnelError("anything else"), 4),
    ],
)
def test_exit_codes_follow_the_documented_table(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


def test_no_arguments_print_the_help_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: gptunnel-async")
    assert "demo" in captured.err and "wait" in captured.err


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_an_emulator_port_out_of_range_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--port", port])
    assert exited.value.code == 2
    assert "a port is a whole number from 0 (any free one) to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["port", "storage_port"])
def test_the_emulator_refuses_a_port_out_of_range(option: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{option} must be a port"):
        FakeGPTunnel(**{option: 65536})


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--host", "", "host must name the address to listen on"),
        ("--host", " 127.0.0.1", "host must name the address to listen on"),
        ("--api-key", "", "api_key must be a key a client can send"),
    ],
)
def test_an_empty_emulator_host_or_key_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], option: str, value: str, complaint: str
) -> None:
    """``--host "$HOST"`` with the variable unset listened on every interface and
    announced ``http://:8080/v1``; ``--api-key ""`` ran with the default key."""
    assert main(["emulator", "--port", "0", option, value]) == 2
    captured = capsys.readouterr()
    assert complaint in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("host", ["", " ", "127.0.0.1 ", None, 127])
def test_the_emulator_refuses_a_host_that_names_no_address(host: object) -> None:
    with pytest.raises(ConfigurationError, match="host must name the address"):
        FakeGPTunnel(host=host)  # type: ignore[arg-type]


def test_a_tasks_file_too_big_to_be_one_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "tasks.json"
    with huge.open("wb") as file:
        file.truncate(11 * 2**20)  # sparse: as /dev/zero, endless zero bytes to the reader
    assert main(["emulator", "--port", "0", "--tasks", str(huge)]) == 2
    assert "the tasks file is over 10 MiB" in capsys.readouterr().err


def test_a_task_of_another_family_is_not_found_with_a_hint_to_pass_its_family(
    fake: FakeGPTunnel,
) -> None:
    song = fake.script_task(steps=[("running", 5)], model="suno")
    done = run("result", song, fake=fake)
    assert done.returncode == 4
    *_, error, hint = done.stderr.splitlines()
    assert "(is it a faceswap task? read another family's task through that family: " in error
    assert error.endswith("client.bgremover, client.midjourney, client.media)")
    assert hint == "hint: for a task of another family, pass --family bgremover|midjourney|media"
    done = run("wait", song, "--json", fake=fake)
    assert done.returncode == 4
    record = json_lines(done.stdout)[-1]
    assert record["hint"].startswith("for a task of another family, pass --family")
    assert "is it a faceswap task?" in record["message"]
    assert run("result", song, "--family", "media", fake=fake).returncode == 0


def test_a_path_the_api_lacks_gets_no_family_hint(fake: FakeGPTunnel) -> None:
    done = run("result", "task-1", fake=fake, GPTUNNEL_BASE_URL=fake.base_url.removesuffix("/v1"))
    assert done.returncode == 4
    assert "check base_url" in done.stderr
    assert "hint:" not in done.stderr


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b'{"tasks": [', "not JSON in UTF-8"),
        (b"\xff\xfe{}", "not JSON in UTF-8"),
        (b"[]", "holds a JSON object"),
        (b'{"tasks": ' + b"[" * 100_000, "nested too deeply"),
    ],
    ids=["cut short", "not UTF-8", "a list", "nested too deeply"],
)
def test_a_tasks_file_that_is_not_one_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, complaint: str
) -> None:
    tasks = tmp_path / "tasks.json"
    tasks.write_bytes(content)
    assert main(["emulator", "--port", "0", "--tasks", str(tasks)]) == 2
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"tasks": 5}, '"tasks" and "faults" are lists'),
        ({"faults": 5}, '"tasks" and "faults" are lists'),
        ({"tasks": [{"steps": [5]}]}, "a step must be a (status, percent) pair"),
        ({"tasks": [{"model": 5, "duration": 1}]}, "model must be a non-empty string"),
        ({"tasks": [{"duration": 10**400}]}, "duration must be a number of seconds"),
        ({"faults": [{"kind": "fail", "retry_after": "soon"}]}, "retry_after"),
        # A misspelt section was ignored: its faults never came, and the tests that
        # counted on them passed without them.
        ({"tasks": [], "fault": [{"kind": "fail", "status": 429}]}, "unknown fields ['fault']"),
        ({"task": [{"id": "a", "duration": 1}]}, "unknown fields ['task']"),
        ({"tasks": [], "Created": {"duration": 1}}, "unknown fields ['Created']"),
    ],
    ids=[
        "tasks not a list",
        "faults not a list",
        "a step",
        "a model",
        "a duration",
        "a fault",
        "faults misspelt",
        "tasks misspelt",
        "created misspelt",
    ],
)
def test_a_tasks_file_of_the_wrong_shape_is_a_usage_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object, complaint: str
) -> None:
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps(document))
    assert main(["emulator", "--port", "0", "--tasks", str(tasks)]) == 2
    error = capsys.readouterr().err
    assert complaint in error and "Traceback" not in error


@pytest.mark.parametrize(
    ("text", "initial", "max_interval"),
    [("2", 1.0, 2.0), ("0.5", 0.5, 0.5), ("0.01", 0.01, 0.01), ("86400", 1.0, 86400.0)],
)
def test_max_interval_caps_every_pause_the_first_included(
    text: str, initial: float, max_interval: float
) -> None:
    policy = reading_every(text)
    assert (policy.initial, policy.max_interval) == (initial, max_interval)
    assert (policy.multiplier, policy.timeout, policy.strategy) == (1.5, 600.0, "predictive")


@pytest.mark.parametrize("text", ["0", "0.001", "-1", "86401", "1e9", "nan", "inf", "abc", ""])
def test_a_max_interval_out_of_range_is_refused_by_the_parser(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"from 0\.01 to 86400, got"):
        reading_every(text)
    done = run("wait", "task-1", "--max-interval", text)
    assert done.returncode == 2
    assert "argument --max-interval: must be a number of seconds" in done.stderr


@pytest.mark.parametrize(
    "words",
    [
        ["wait", "task-1"],
        ["faceswap", "a.png", "b.png"],
        ["imagine", "a cat"],
        ["media", "suno", "a song"],
    ],
)
def test_every_waiting_command_paces_its_wait_by_max_interval(words: list[str]) -> None:
    parser = _build_parser()
    paced = parser.parse_args([*words, "--max-interval", "3", "--api-key", SECRET])
    assert make_client(paced).poll_policy == reading_every("3")
    default = parser.parse_args([*words, "--api-key", SECRET])
    assert make_client(default).poll_policy.max_interval == 10.0


def test_a_wait_read_every_max_interval_sees_the_end_within_it(fake: FakeGPTunnel) -> None:
    """Real time: the task takes 1.5 s. The default pacing reads it 3 times (at 0, about
    1 and about 2.5 s); a read at least every 0.05 s makes about 30 reads, and surely
    more than 6 however busy the machine."""
    task_id = fake.script_task(duration=1.5)
    done = run("wait", task_id, "--max-interval", "0.05", "--json", fake=fake, instant=False)
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[-1]["event"] == "done"
    reads = [r for r in fake.requests if r.query.get("taskId") == task_id]
    assert len(reads) > 6


@pytest.mark.parametrize(
    ("args", "option", "command"),
    [
        (("--json", "imagine", "a fox"), "--json", "imagine"),
        (("--save", "out/", "faceswap", "a.png", "b.png"), "--save", "faceswap"),
        (("--timeout=5", "wait", "abc"), "--timeout", "wait"),
        (("--family", "midjourney", "result", "abc"), "--family", "result"),
        (("--json", "emulator"), "--json", "emulator"),
    ],
)
def test_a_commands_option_before_its_name_is_told_to_go_after_it(
    args: tuple[str, ...], option: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--api-key` and `--base-url` go before or after the command name; `--json` given
    before it was only "unrecognized arguments: --json" (and `--save out/ imagine`
    "invalid choice: 'out/'"), though the command takes it."""
    code, out, err = in_process(capsys, *args)
    assert code == 2
    assert out == ""
    assert f"({option}: an option of {command!r}; put it after the command name)" in err


@pytest.mark.parametrize(
    "args", [("--bogus", "imagine", "a fox"), ("imagine", "a fox", "--bogus"), ("--json",)]
)
def test_an_option_no_command_takes_gets_no_such_hint(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = in_process(capsys, *args)
    assert code == 2
    assert "put it after the command name" not in err


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--fail-next", "abc", "a fault is STATUS or STATUSxN (e.g. 503x2), got 'abc'"),
        ("--fail-next", "503xmany", "a fault is STATUS or STATUSxN (e.g. 503x2), got '503xmany'"),
        ("--task", "demo=soon", "a task's SECONDS is a number, got 'soon' in 'demo=soon'"),
    ],
)
def test_an_emulator_option_that_is_not_one_says_what_it_should_be(
    capsys: pytest.CaptureFixture[str], option: str, value: str, complaint: str
) -> None:
    """They said "invalid literal for int() with base 10: 'abc'": Python's words."""
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--port", "0", option, value])
    assert exited.value.code == 2
    assert f"argument {option}: {complaint}" in capsys.readouterr().err
