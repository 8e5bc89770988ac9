"""Task scripts: what each read of an emulated task answers.

A script is either a list of ``(status, percent)`` steps, one per read with the last one
repeated, or a duration over which ``percent`` rises with the wall clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final, TypeAlias

import attrs

from ..models import DONE_STATUSES, FAILED_STATUSES, Task, Usage

__all__ = ["DEFAULT_CREATED_SCRIPT", "EmulatedTask", "Step", "TaskScript"]

Step: TypeAlias = tuple[str, int]
"""One read's answer: ``(status, percent)``."""

DEFAULT_ERROR: Final = "the task failed"


@attrs.frozen
class TaskScript:
    """How one emulated task evolves. Build it with :meth:`build`, which checks the values."""

    steps: tuple[Step, ...] | None = None
    duration: float | None = None
    error: str | None = None

    @classmethod
    def build(
        cls,
        steps: Iterable[Step] | None = None,
        duration: float | None = None,
        error: str | None = None,
    ) -> TaskScript:
        """A checked script: exactly one of ``steps`` and ``duration``.

        ``error`` is the task's error text: shown on failure steps, or, with ``duration``,
        it makes the task end ``failed`` instead of ``done``.
        """
        if (steps is None) == (duration is None):
            raise ValueError("give exactly one of steps=[(status, percent), ...] or duration=")
        if duration is not None:
            if not (isinstance(duration, int | float) and math.isfinite(duration)):
                raise ValueError(f"duration must be a number of seconds, got {duration!r}")
            if duration < 0:
                raise ValueError(f"duration must be >= 0, got {duration!r}")
            return cls(duration=float(duration), error=error)
        checked = tuple(_step(step) for step in steps or ())
        if not checked:
            raise ValueError("steps must hold at least one (status, percent) pair")
        return cls(steps=checked, error=error)

    def state(self, reads: int, elapsed: float) -> Step:
        """The ``(status, percent)`` answered after ``reads`` earlier reads, ``elapsed`` s in."""
        if self.steps is not None:
            return self.steps[min(reads, len(self.steps) - 1)]
        duration = self.duration or 0.0
        if elapsed < duration:
            return "processing", min(99, int(100 * elapsed / duration))
        return ("failed", 99) if self.error is not None else ("done", 100)


def _step(step: Step) -> Step:
    status, percent = step
    if not isinstance(status, str) or not status:
        raise ValueError(f"a step's status must be a non-empty string, got {status!r}")
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"a step's percent must be an int from 0 to 100, got {percent!r}")
    return status, percent


DEFAULT_CREATED_SCRIPT: Final = TaskScript.build(
    steps=[("queued", 0), ("processing", 50), ("done", 100)]
)
"""What a task created through the API does unless the test says otherwise."""


@attrs.define
class EmulatedTask:
    """One task in the emulator: its script, when it started, how often it was read."""

    id: str
    type: str
    script: TaskScript
    started: float
    result_url: str
    reads: int = 0

    def snapshot(self, now: float) -> Task:
        """The task's state now, without counting a read."""
        status, percent = self.script.state(self.reads, now - self.started)
        return self._task(status, percent)

    def read(self, now: float) -> Task:
        """The task's state now, counting a read (which moves a steps script on)."""
        task = self.snapshot(now)
        self.reads += 1
        return task

    def created(self) -> Task:
        """The answer to the create call: a fresh ``idle`` task."""
        return self._task("idle", 0)

    def _task(self, status: str, percent: int) -> Task:
        failed = status in FAILED_STATUSES
        return Task(
            id=self.id,
            status=status,
            percent=percent,
            type=self.type,
            result=self.result_url if status in DONE_STATUSES else None,
            error=(self.script.error or DEFAULT_ERROR) if failed else None,
            usage=Usage(),
        )
