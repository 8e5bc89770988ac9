"""What the command line shows: a live progress bar on a terminal, plain lines when piped,
JSON lines with ``--json``. Only the CLI imports this module (it needs ``rich``).
"""

from __future__ import annotations

import contextlib
import errno
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Task as ProgressTask
from rich.table import Column, Table
from rich.text import Text

from ._cli_json import json_line
from ._polling import ProgressEvent
from ._sansio.statuses import Stage
from ._sansio.text import printable, shorten
from .errors import TaskFailedError, WaitTimeoutError
from .models import MediaTask, Task, TaskLike, clip_reasons, converter

__all__ = ["JsonOutput", "LineOutput", "LiveOutput", "Output", "choose_output"]

AnyTask = Task | MediaTask
"""A task of any family, as the commands show it."""

ShowProgress = Callable[[ProgressEvent[Any]], None]


def _files(task: AnyTask) -> str | None:
    """The result's link(s) on one line, or ``None`` while there are none."""
    files = task.urls if isinstance(task, MediaTask) else (task.result,)
    shown = [url for url in files if url]
    return " ".join(shown) if shown else None


LINKS_SHOWN: Final = 8192
"""The most characters of a task's result links shown to people (``--json`` gives them
whole): a signed link is a few hundred, a server's answer may hold megabytes."""


def _shown(text: str, limit: int | None = None, style: str = "") -> Text:
    """Server text for rich, never read as markup (``[b]``, ``:smile:`` and backslashes
    show as sent): control characters escaped (a terminal must not obey them), cut to
    ``limit`` characters if given."""
    return Text(shorten(text, limit) if limit else printable(text), style=style)


def _labelled(label: str, style: str, text: Text) -> Text:
    """``label: text``, the label in ``style``."""
    return Text.assemble((label, style), ": ", text)


def _kind(task: AnyTask) -> str | None:
    return task.model if isinstance(task, MediaTask) else task.type


class Output(Protocol):
    """The one interface commands report through, whatever the format."""

    def note(self, text: str) -> None:
        """Narration for people (the demo's steps); not part of machine output."""

    def task(self, task: AnyTask) -> None:
        """One task's state, as read."""

    def created(self, family: str, task: AnyTask) -> None:
        """A command created ``task`` of ``family`` (paid from now on), before its wait."""

    def progress(self, task_id: str) -> contextlib.AbstractContextManager[ShowProgress]:
        """A view of a wait: call the function it gives with each event."""
        ...

    def done(self, task: AnyTask) -> None:
        """The wait ended with ``task`` done."""

    def saved(self, path: Path) -> None:
        """The result was written to ``path``."""

    def error(self, exc: BaseException, exit_code: int, hint: str | None = None) -> None:
        """The command failed with ``exc`` and will exit with ``exit_code``; ``hint``
        says what to try (the command line's own words, not the API's)."""

    def interrupted(self, task_id: str | None, exit_code: int, hint: str | None = None) -> None:
        """The command was interrupted (Ctrl-C, SIGTERM) while working on ``task_id``, if
        any; ``hint`` says how to go on (the command line's own words)."""


def choose_output(*, as_json: bool) -> Output:
    """JSON lines if asked; else a live view on a terminal, plain lines otherwise."""
    if as_json:
        return JsonOutput(sys.stdout)
    console = _Console(highlight=False, soft_wrap=True)
    errors = _Console(stderr=True, highlight=False, soft_wrap=True)
    return LiveOutput(console, errors) if console.is_terminal else LineOutput(console, errors)


class _Console(Console):
    """rich's console, but a closed output raises ``BrokenPipeError`` for the command line
    to end with its exit code (rich's own ends the process with exit code 1, which says
    "the task failed")."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "the output was closed")


_STAGE_STYLES: Final = {Stage.DONE: "green", Stage.FAILED: "red", Stage.PENDING: "yellow"}


def _stage(task: TaskLike) -> Stage:
    """Where ``task`` stands, as its model decides (a media task weighs its clips too)."""
    if task.is_done:
        return Stage.DONE
    return Stage.FAILED if task.is_failed else Stage.PENDING


def _status_style(task: TaskLike) -> str:
    return _STAGE_STYLES[_stage(task)]


def _failed_clips(task: AnyTask) -> str | None:
    """For people, what the result's files leave out: ``"1 of 2 clips failed: why"``
    for a media task done with some clips failed on their own; else ``None``."""
    if not (isinstance(task, MediaTask) and task.is_done and task.failed_clips):
        return None
    reasons = clip_reasons(task.failed_clips) or "no reason given"
    return f"{len(task.failed_clips)} of {len(task.clips)} clips failed: {reasons}"


def time_left(event: ProgressEvent[Any]) -> str:
    """The wait's prediction of the time left, for people: ``"~5s left"``, ``"~3 min
    left"``; empty when there is none (``percent`` gave nothing to go by) or the task
    has ended."""
    left = _predicted_left(event)
    return "" if left is None else seconds_left(left)


def _predicted_left(event: ProgressEvent[Any]) -> float | None:
    """The seconds the wait predicts are left, while the task runs; else ``None``."""
    return event.remaining if _stage(event.task) is Stage.PENDING else None


def seconds_left(seconds: float) -> str:
    """``seconds`` left, for people: ``"~5s left"``, ``"~3 min left"``."""
    if seconds < 59.5:
        return f"~{max(1, round(seconds))}s left"
    return f"~{round(seconds / 60)} min left"


class TimeLeftColumn(ProgressColumn):
    """The predicted time left, counting down between reads (a wait reads every few
    seconds, and a figure that stood still while the elapsed time ran looked stuck):
    from the row's ``finish_at`` field, on ``clock``'s time; empty without one."""

    def __init__(self, clock: Callable[[], float], table_column: Column | None = None) -> None:
        self._clock = clock
        super().__init__(table_column)

    def render(self, task: ProgressTask) -> Text:
        finish_at = task.fields.get("finish_at")
        if finish_at is None:
            return Text("")
        return Text(seconds_left(max(0.0, finish_at - self._clock())))


class LineOutput:
    """Readable text, one line per event: for logs, pipes and CI."""

    def __init__(self, console: Console, errors: Console) -> None:
        self.console = console
        self.errors = errors

    def note(self, text: str) -> None:
        self.console.print(_shown(text))

    def created(self, family: str, task: AnyTask) -> None:
        self.note(f"Created {family} task {task.id}.")

    def task(self, task: AnyTask) -> None:
        rows = [
            ("task", _shown(task.id)),
            ("status", _shown(task.status, 80, _status_style(task))),
            ("percent", Text(f"{task.percent}%")),
            ("type", _shown(_kind(task) or "-", 80)),
            ("result", _shown(_files(task) or "-", LINKS_SHOWN)),
            ("error", _shown(task.error or "-", 2000)),
        ]
        for label, value in rows:
            self.console.print(Text.assemble((f"{label:<8}", "bold"), " ", value))
        failed = _failed_clips(task)
        if failed:
            self.console.print(Text.assemble((f"{'note':<8}", "bold"), " ", _shown(failed, 2000)))

    @contextlib.contextmanager
    def progress(self, task_id: str) -> Iterator[ShowProgress]:
        def show(event: ProgressEvent[Any]) -> None:
            status = _shown(event.status, 80, _status_style(event.task))
            status.pad_right(10 - len(status))
            left = time_left(event)
            line = Text.assemble(f"{event.elapsed:6.1f}s  ", status, f" {event.percent:3d}%")
            self.console.print(line.append(f"  {left}") if left else line)

        yield show

    def done(self, task: AnyTask) -> None:
        shown = _shown(_files(task) or "(no result URL)", LINKS_SHOWN)
        self.console.print(_labelled("done", "green", shown))
        failed = _failed_clips(task)
        if failed:
            self.console.print(_labelled("note", "yellow", _shown(failed, 2000)))

    def saved(self, path: Path) -> None:
        self.console.print(_labelled("saved", "", _shown(str(path))))

    def error(self, exc: BaseException, exit_code: int, hint: str | None = None) -> None:
        if exit_code == 1:  # a failed task's error says so itself: "task X failed: why"
            self.errors.print(_shown(str(exc), style="red"))
        else:
            label = {2: "usage error", 3: "timed out"}.get(exit_code, "error")
            self.errors.print(_labelled(label, "red", _shown(str(exc))))
        if hint:
            self.errors.print(_labelled("hint", "", _shown(hint)))

    def interrupted(self, task_id: str | None, exit_code: int, hint: str | None = None) -> None:
        self.errors.print(Text("interrupted", style="yellow"))
        if hint:
            self.errors.print(_labelled("hint", "", _shown(hint)))


ROOM_FOR_CTRL_C: Final = 3
"""Columns the bar leaves free at the end of its line: the terminal echoes ``^C`` there,
and a full line would wrap, leaving a copy of the bar above the last one."""


ROOM_FOR_TIME_LEFT: Final = 60
"""The narrowest terminal, in columns, whose bar says the time left: on a narrower one
the task id would be cut to a character or two first."""


class _Bar(Progress):
    """rich's progress display, kept :data:`ROOM_FOR_CTRL_C` columns short of the
    terminal's width (which it reads again at each refresh)."""

    def __init__(self, *columns: ProgressColumn, console: Console, expand: bool) -> None:
        self._screen = console  # rich asks for the table before ``self.console`` exists
        super().__init__(*columns, console=console, expand=expand)

    def make_tasks_table(self, tasks: Iterable[ProgressTask]) -> Table:
        table = super().make_tasks_table(tasks)
        table.width = max(1, self._screen.width - ROOM_FOR_CTRL_C)
        return table


class LiveOutput(LineOutput):
    """On a terminal: a progress bar with the status, the predicted time left (when the
    wait has one), the percent and the time elapsed.

    On a narrow terminal the time left goes, the task id and the status are cut first
    (with an ellipsis) and the bar shrinks; the percent and the time elapsed always
    show whole.
    """

    @contextlib.contextmanager
    def progress(self, task_id: str) -> Iterator[ShowProgress]:
        bar = _Bar(
            TextColumn(  # the task id and the status are server text: no markup
                "{task.description}",
                style="bold",
                markup=False,
                table_column=Column(no_wrap=True, overflow="ellipsis", min_width=6, ratio=1),
            ),
            TextColumn(
                "{task.fields[status]}",
                markup=False,
                table_column=Column(no_wrap=True, overflow="ellipsis", min_width=7, max_width=10),
            ),
            TimeLeftColumn(
                time.monotonic,
                table_column=Column(no_wrap=True, overflow="crop", max_width=14),
            ),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=4)),
            TaskProgressColumn(table_column=Column(no_wrap=True, min_width=4)),
            TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
            console=self.console,
            expand=True,
        )
        with bar:
            row = bar.add_task(printable(task_id), total=100, status="waiting", finish_at=None)

            def show(event: ProgressEvent[Any]) -> None:
                status = shorten(event.status, 80)
                wide = self.console.width >= ROOM_FOR_TIME_LEFT
                left = _predicted_left(event) if wide else None
                finish_at = None if left is None else time.monotonic() + left
                bar.update(
                    row, completed=event.percent, status=status, finish_at=finish_at, refresh=True
                )

            yield show


class JsonOutput:
    """One JSON object per line on stdout, for programs: events, then the outcome."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def _emit(self, record: dict[str, Any]) -> None:
        self.stream.write(json_line(record))
        self.stream.flush()

    def note(self, text: str) -> None:
        """Narration is for people; JSON output leaves it out."""

    def task(self, task: AnyTask) -> None:
        self._emit(converter.unstructure(task))

    def created(self, family: str, task: AnyTask) -> None:
        """Its id before the first progress record: a program that must stop may still
        find the task, which runs (paid) whatever happens next."""
        self._emit({"event": "created", "family": family, "task_id": task.id})

    @contextlib.contextmanager
    def progress(self, task_id: str) -> Iterator[ShowProgress]:
        def show(event: ProgressEvent[Any]) -> None:
            self._emit(
                {
                    "event": "progress",
                    "task_id": event.task_id,
                    "status": event.status,
                    "percent": event.percent,
                    "elapsed": round(event.elapsed, 3),
                    "remaining": None if event.remaining is None else round(event.remaining, 3),
                }
            )

        yield show

    def done(self, task: AnyTask) -> None:
        self._emit({"event": "done", "task": converter.unstructure(task)})

    def saved(self, path: Path) -> None:
        self._emit({"event": "saved", "path": str(path)})

    def interrupted(self, task_id: str | None, exit_code: int, hint: str | None = None) -> None:
        """A last record, so a program reading the stream can tell an interrupted
        command from one that crashed."""
        record: dict[str, Any] = {"event": "cancelled", "exit_code": exit_code, "task_id": task_id}
        if hint:
            record["hint"] = hint
        self._emit(record)

    def error(self, exc: BaseException, exit_code: int, hint: str | None = None) -> None:
        kind = {1: "failed", 3: "timeout"}.get(exit_code, "error")
        record: dict[str, Any] = {
            "event": kind,
            "exit_code": exit_code,
            "error": type(exc).__name__,
            "message": str(exc),
        }
        if hint:
            record["hint"] = hint
        if isinstance(exc, TaskFailedError | WaitTimeoutError):
            record["task_id"] = exc.task_id
            record["task"] = converter.unstructure(exc.task) if exc.task else None
        self._emit(record)
