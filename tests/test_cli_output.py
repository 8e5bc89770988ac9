"""What the CLI shows, rendered through rich's recording console and a JSON stream."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.progress import Progress

from gptunnel_async import ProgressEvent, Task, TaskFailedError, WaitTimeoutError
from gptunnel_async._cli_json import json_line
from gptunnel_async._cli_output import (
    JsonOutput,
    LineOutput,
    LiveOutput,
    Output,
    TimeLeftColumn,
    choose_output,
    time_left,
)
from gptunnel_async._sansio.text import shorten

STEPS = [("queued", 0, 0.0, None), ("running", 40, 1.25, 4.6), ("done", 100, 2.5, 0.0)]
RESULT = "http://127.0.0.1:9/results/t1_result.png"


def events(task_id: str = "t1") -> list[ProgressEvent]:
    return [
        ProgressEvent(
            task_id=task_id,
            status=status,
            percent=percent,
            task=Task(id=task_id, status=status, percent=percent),
            elapsed=elapsed,
            remaining=remaining,
        )
        for status, percent, elapsed, remaining in STEPS
    ]


def recording(*, terminal: bool) -> Console:
    return Console(record=True, force_terminal=terminal, width=100, file=io.StringIO())


def show_wait(out: Output) -> None:
    with out.progress("t1") as show:
        for event in events():
            show(event)
    out.done(Task(id="t1", status="done", percent=100, result=RESULT))


def test_the_live_view_draws_a_bar_with_status_percent_and_time() -> None:
    console = recording(terminal=True)
    show_wait(LiveOutput(console, console))
    drawn = [frame.strip() for frame in console.export_text().split("t1 ") if frame.strip()]
    # rich's Live also redraws on its own timer: on a busy machine a state may be drawn
    # twice in a row, so each run of frames of one status counts once (its first).
    frames = [
        frame
        for before, frame in zip([None, *drawn[:-1]], drawn, strict=True)
        if before is None or before.split()[0] != frame.split()[0]
    ]
    assert [frame.split()[0] for frame in frames[:4]] == ["waiting", "queued", "running", "done"]
    running = frames[2]
    assert "40%" in running and "~5s left" in running
    assert "left" not in frames[3]  # done: nothing is left
    assert "╺" in running or "╸" in running  # where a part-filled bar ends
    assert frames[3].split()[-2:] == ["100%", "0:00:00"]
    assert drawn[-1].endswith(f"done: {RESULT}")


@pytest.mark.parametrize(("width", "says_it"), [(100, True), (60, True), (59, False)])
def test_a_narrow_terminal_drops_the_time_left_before_the_task_id(
    width: int, says_it: bool
) -> None:
    console = Console(record=True, force_terminal=True, width=width, file=io.StringIO())
    task_id = "3605e1361a4ddcbb6d336317"
    event = ProgressEvent(task_id, "running", 40, Task(id=task_id, status="running"), 1.0, 185.0)
    with LiveOutput(console, console).progress(task_id) as show:
        show(event)
    last = console.export_text().split("0:00:00")[-2]
    assert ("~3 min left" in last) is says_it
    assert last.startswith(task_id[:10])


def test_the_live_view_uses_colour_on_a_terminal() -> None:
    console = recording(terminal=True)
    show_wait(LiveOutput(console, console))
    assert "\x1b[32mdone\x1b[0m" in console.export_text(styles=True)


def test_plain_lines_show_elapsed_status_and_percent() -> None:
    console = recording(terminal=False)
    show_wait(LineOutput(console, console))
    assert console.export_text().splitlines() == [
        "   0.0s  queued       0%",
        "   1.2s  running     40%  ~5s left",
        "   2.5s  done       100%",
        f"done: {RESULT}",
    ]
    assert "\x1b[" not in console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "remaining", "shown"),
    [
        ("running", None, ""),  # percent gave nothing to go by
        ("running", 0.0, "~1s left"),  # overdue: it should be done any moment
        ("running", 4.6, "~5s left"),
        ("queued", 59.4, "~59s left"),
        ("processing", 59.6, "~1 min left"),
        ("running", 185.0, "~3 min left"),
        ("done", 0.0, ""),
        ("failed", 12.0, ""),
    ],
)
def test_the_time_left_is_said_while_the_task_runs(
    status: str, remaining: float | None, shown: str
) -> None:
    task = Task(id="t1", status=status, percent=50)
    event = ProgressEvent("t1", status, 50, task, elapsed=1.0, remaining=remaining)
    assert time_left(event) == shown


def test_a_result_link_of_megabytes_is_cut_for_people_and_whole_in_json() -> None:
    huge = "https://s.example/" + "[b]x" * 1_000_000
    task = Task(id="t1", status="done", percent=100, result=huge)
    console = Console(record=True, width=100, file=io.StringIO(), soft_wrap=True)  # as the CLI's
    LineOutput(console, console).done(task)
    LineOutput(console, console).task(task)
    lines = console.export_text().splitlines()
    assert lines[0].startswith("done: https://s.example/[b]x") and len(lines[0]) < 8300
    assert lines[0].endswith("…") and max(len(line) for line in lines) < 8300
    stream = io.StringIO()
    JsonOutput(stream).done(task)
    assert json.loads(stream.getvalue())["task"]["result"] == huge


def test_a_task_is_shown_as_labelled_rows() -> None:
    console = recording(terminal=False)
    task = Task(id="t1", status="failed", percent=30, type="@FaceSwap", error="no [face] found")
    LineOutput(console, console).task(task)
    assert console.export_text().splitlines() == [
        "task     t1",
        "status   failed",
        "percent  30%",
        "type     @FaceSwap",
        "result   -",
        "error    no [face] found",
    ]


@pytest.mark.parametrize(
    ("code", "label"), [(1, ""), (2, "usage error: "), (3, "timed out: "), (4, "error: ")]
)
def test_errors_go_to_stderr_with_a_label(code: int, label: str) -> None:
    """A failed task's error (exit code 1) needs no label: it reads "task X failed: why"."""
    console, errors = recording(terminal=False), recording(terminal=False)
    LineOutput(console, errors).error(ValueError("it broke [badly]"), code)
    assert errors.export_text() == f"{label}it broke [badly]\n"
    assert console.export_text() == ""


def test_saved_and_notes_are_plain_text() -> None:
    console = recording(terminal=False)
    out = LineOutput(console, console)
    out.note("Started [here]")
    out.saved(Path("/tmp/out.png"))
    assert console.export_text().splitlines() == ["Started [here]", "saved: /tmp/out.png"]


def test_json_output_is_one_object_per_line() -> None:
    stream = io.StringIO()
    out = JsonOutput(stream)
    out.note("for people only")
    show_wait(out)
    out.saved(Path("/tmp/out.png"))
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records[:3] == [
        {
            "event": "progress",
            "task_id": "t1",
            "status": s,
            "percent": p,
            "elapsed": e,
            "remaining": r,
        }
        for s, p, e, r in STEPS
    ]
    assert records[3]["event"] == "done"
    assert records[3]["task"]["result"] == RESULT
    assert records[4] == {"event": "saved", "path": "/tmp/out.png"}


def test_json_errors_carry_the_exit_code_and_the_task() -> None:
    stream = io.StringIO()
    out = JsonOutput(stream)
    out.error(TaskFailedError(Task(id="t1", status="failed", error="no face")), 1)
    out.error(WaitTimeoutError("t1", 5.0, None), 3)
    out.error(ValueError("bad"), 2)
    failed, timeout, usage = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (failed["event"], failed["exit_code"]) == ("failed", 1)
    assert failed["task"]["error"] == "no face"
    assert (timeout["event"], timeout["task_id"], timeout["task"]) == ("timeout", "t1", None)
    assert usage == {"event": "error", "exit_code": 2, "error": "ValueError", "message": "bad"}


def test_a_task_as_json_is_the_task_object() -> None:
    stream = io.StringIO()
    JsonOutput(stream).task(Task(id="t1", status="done", percent=100, parent_id="p"))
    body = json.loads(stream.getvalue())
    assert (body["id"], body["parentId"], body["status"]) == ("t1", "p", "done")


def test_the_format_follows_the_flag_and_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal
    assert isinstance(choose_output(as_json=True), JsonOutput)
    assert type(choose_output(as_json=False)) is LineOutput
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert isinstance(choose_output(as_json=False), LiveOutput)


def _refuse(constant: str) -> None:
    raise AssertionError(f"not JSON: {constant}")


@pytest.mark.parametrize(
    ("record", "line"),
    [
        ({"a": 1.5, "b": "ü"}, '{"a": 1.5, "b": "\\u00fc"}'),  # ASCII, whatever the encoding
        ({"e": "x\udfff\ud800y"}, '{"e": "x\\ufffd\\ufffdy"}'),  # no lone surrogate escapes
        ({"cost": float("inf"), "x": -float("inf")}, '{"cost": null, "x": null}'),
        ({"nested": {"v": [float("nan"), 2.0]}}, '{"nested": {"v": [null, 2.0]}}'),
        ({"clips": ({"d": 1e308},)}, '{"clips": [{"d": 1e+308}]}'),
    ],
)
def test_a_json_line_is_strict_json(record: dict[str, Any], line: str) -> None:
    assert json_line(record) == line + "\n"


@given(
    st.dictionaries(
        st.text(st.characters(exclude_categories=())),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats()
            | st.text(st.characters(exclude_categories=())),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=8,
        ),
    )
)
def test_any_record_gives_one_line_a_strict_reader_takes(record: dict[str, Any]) -> None:
    line = json_line(record)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert line.isascii()
    read = json.loads(line, parse_constant=_refuse)
    json.dumps(read, ensure_ascii=False).encode("utf-8")  # strictly: no lone surrogate in it


SERVER_TEXT = st.text(st.sampled_from("ab[]/\\ =#@:smile"), max_size=16)
"""Text that rich would read as markup (``[b]``, ``[/]``, ``\\[``, ``:smile:``)."""


@given(SERVER_TEXT, SERVER_TEXT, SERVER_TEXT)
def test_server_text_shows_as_it_was_sent_in_every_line(
    text: str, status: str, result: str
) -> None:
    """rich's markup ate brackets after a backslash, doubled or halved a trailing
    backslash depending on what followed, and turned ``:smile:`` into an emoji."""
    console, errors = (  # as the command line's own: rich wraps no line
        Console(record=True, width=100, file=io.StringIO(), soft_wrap=True) for _ in "ab"
    )
    out = LineOutput(console, errors)
    task = Task(id=text, status=status, percent=5, result=result or None, error=text)
    out.task(task)
    out.note(text)
    with out.progress(text) as show:
        show(ProgressEvent(task_id=text, status=status, percent=5, task=task, elapsed=1.0))
    out.done(task)
    out.saved(Path(text or "x"))
    for code in (1, 2):
        out.error(ValueError(text), code, hint=result)
    out.interrupted(text, 130, hint=status)
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    cut = shorten  # the fields with a length limit are cut, and their ends stripped
    assert lines == [
        line.rstrip()  # rich's export drops the spaces that end a line
        for line in [
            f"task     {text}",
            f"status   {cut(status, 80)}",
            "percent  5%",
            "type     -",
            f"result   {cut(result, 99) if result else '-'}",
            f"error    {cut(text, 99) if text else '-'}",
            text,
            f"   1.0s  {cut(status, 80):<10}   5%",
            f"done: {cut(result, 99) if result else '(no result URL)'}",
            f"saved: {Path(text or 'x')}",
        ]
    ]
    hint = [f"hint: {result}"] if result else []
    said = [text, *hint, f"usage error: {text}", *hint, "interrupted"]
    said += [f"hint: {status}"] if status else []
    assert errors.export_text().splitlines() == said


def test_the_live_view_shows_server_text_as_sent() -> None:
    console = recording(terminal=True)
    out = LiveOutput(console, console)
    task = Task(id="t[b]\\", status="[/]:ok:", percent=50)
    with out.progress(task.id) as show:
        show(ProgressEvent(task_id=task.id, status=task.status, percent=50, task=task, elapsed=1))
    drawn = console.export_text()
    assert "t[b]\\ " in drawn and " [/]:ok: " in drawn  # whole: not markup, nor emoji


@pytest.mark.parametrize(
    ("finish_at", "now", "shown"),
    [
        (None, 0.0, ""),  # no prediction
        (30.0, 0.0, "~30s left"),
        (30.0, 24.6, "~5s left"),  # counted down since the last read, with no new event
        (30.0, 29.9, "~1s left"),
        (30.0, 45.0, "~1s left"),  # overdue: never "0s", never negative
        (600.0, 0.0, "~10 min left"),
    ],
)
def test_the_bar_s_time_left_counts_down_between_reads(
    finish_at: float | None, now: float, shown: str
) -> None:
    """It stood at "~12s left" from one read to the next while the elapsed time ran."""
    bar = Progress()
    row = bar.add_task("t1", total=100, finish_at=finish_at)
    column = TimeLeftColumn(lambda: now)
    assert column.render(bar.tasks[row]).plain == shown
