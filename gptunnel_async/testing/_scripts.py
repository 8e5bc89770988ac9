"""Task scripts: what each read of an emulated task answers.

A script is either a list of ``(status, percent)`` steps, one per read with the last one
repeated, or a duration over which ``percent`` rises with the wall clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final, TypeAlias

import attrs

from .._checks import count as checked_count
from .._checks import describe, describe_not_text, non_negative_number
from .._sansio.statuses import MEDIA_DONE_STATUSES, Stage, classify
from ..errors import ConfigurationError
from ..models import MediaClip, MediaTask, Task, Usage

__all__ = [
    "DEFAULT_CREATED_SCRIPT",
    "GRID_ACTIONS",
    "LOOKS",
    "MIDJOURNEY_COST",
    "UPSAMPLE_ACTIONS",
    "EmulatedTask",
    "Look",
    "MediaOutput",
    "Step",
    "TaskScript",
]

Step: TypeAlias = tuple[str, int]
"""One read's answer: ``(status, percent)``."""

DEFAULT_ERROR: Final = "the task failed"

CLIP_ERROR: Final = "the clip failed"
"""The ``error`` of an emulated clip that failed on its own (``MediaOutput.failed_clips``)."""

MEDIA_COST: Final = 0.5
"""What a done emulated media task says it cost."""


@attrs.frozen
class Look:
    """What a family's task objects show beyond the common fields."""

    actions: tuple[str, ...] = ()
    """Offered once the task is done."""
    previews: bool = False
    """Whether ``result`` is an intermediate image while the task runs."""
    cost: float = 0.0
    """What the task costs, in its ``usage`` from the create answer on (Midjourney)."""


GRID_ACTIONS: Final = (
    *(f"upsamle_{n}" for n in range(1, 5)),
    "reroll",
    *(f"variation_{n}" for n in range(1, 5)),
)
"""A done grid's actions as the docs spell them (``upsamle``, sic; the docs' example
lists ``variation_4`` twice and no ``variation_3``, taken here as a slip). The docs do
not settle it, so docs/testing.md lists ``variation_3`` among the emulator's departures."""

UPSAMPLE_ACTIONS: Final = ("high_variation", "low_variation")
"""A done upsample's actions: the variations the docs name for an upsample parent."""

MIDJOURNEY_COST: Final = 18.0
"""What the docs' imagine answer says it cost (``usage.total_cost``), at create time."""

LOOKS: Final[Mapping[str, Look]] = {
    "imagine": Look(GRID_ACTIONS, previews=True, cost=MIDJOURNEY_COST),
    "variation": Look(GRID_ACTIONS, previews=True, cost=MIDJOURNEY_COST),
    "inpaint": Look(GRID_ACTIONS, previews=True, cost=MIDJOURNEY_COST),
    "reroll": Look(GRID_ACTIONS, previews=True, cost=MIDJOURNEY_COST),
    "outpaint": Look(GRID_ACTIONS, previews=True, cost=MIDJOURNEY_COST),
    "pan": Look(GRID_ACTIONS, previews=True, cost=MIDJOURNEY_COST),
    "upsample": Look(UPSAMPLE_ACTIONS, previews=True),
    "upscale": Look(UPSAMPLE_ACTIONS, previews=True, cost=MIDJOURNEY_COST),
}
"""Midjourney's task ``type`` values (the docs': ``imagine``, ``upsample``,
``variation``, ``inpaint``; and those of the endpoints they list without describing)
and how each looks; upsampling is free (Midjourney 5 and later)."""


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
            raise ConfigurationError(
                "give exactly one of steps=[(status, percent), ...] or duration="
            )
        if error is not None and not isinstance(error, str):
            raise ConfigurationError(f"error must be a string, got {describe_not_text(error)}")
        if duration is not None:
            seconds = non_negative_number("duration", duration, "a number of seconds >= 0")
            return cls(duration=seconds, error=error)
        checked = tuple(check_step(step) for step in steps or ())
        if not checked:
            raise ConfigurationError("steps must hold at least one (status, percent) pair")
        return cls(steps=checked, error=error)

    def state(self, reads: int, elapsed: float) -> Step:
        """The ``(status, percent)`` answered after ``reads`` earlier reads, ``elapsed`` s in."""
        if self.steps is not None:
            return self.steps[min(reads, len(self.steps) - 1)]
        duration = self.duration or 0.0
        if elapsed < duration:
            return "processing", min(99, int(100 * elapsed / duration))
        return ("failed", 99) if self.error is not None else ("done", 100)


def check_step(step: Step) -> Step:
    """``step`` if it is a ``(status, percent)`` pair the emulator can answer."""
    if not (isinstance(step, tuple | list) and len(step) == 2):
        raise ConfigurationError(f"a step must be a (status, percent) pair, got {describe(step)}")
    status, percent = step
    if not isinstance(status, str) or not status:
        raise ConfigurationError(f"a step's status must be a non-empty string, got {status!r}")
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ConfigurationError(f"a step's percent must be an int from 0 to 100, got {percent!r}")
    return status, percent


DEFAULT_CREATED_SCRIPT: Final = TaskScript.build(
    steps=[("idle", 0), ("processing", 50), ("done", 100)]
)
"""What a task created through the API does unless the test says otherwise: ``idle``
first, as documented, then working, then done."""


MAX_CLIPS: Final = 100
"""The most clips a scripted media task answers: real models answer one to a few; a
million would build a body of gigabytes."""


@attrs.frozen
class MediaOutput:
    """What a ``/media`` task answers once done.

    ``clips`` full clips (suno's list of ``{status, audio_url, image_url, duration}``;
    0 means a single ``url`` instead), the first ``failed_clips`` of them failed on
    their own (``{status: "error", error}``, no file), plus a 0.8 s preview stub if
    ``preview_stub``; the first ``done_before_url`` reads that are ``done`` show no
    file yet.
    """

    clips: int = 0
    preview_stub: bool = False
    done_before_url: int = 0
    failed_clips: int = 0

    @classmethod
    def build(
        cls,
        model: str,
        *,
        clips: int | None = None,
        preview_stub: bool = False,
        done_before_url: int = 0,
        failed_clips: int = 0,
    ) -> MediaOutput:
        """A checked output for ``model``: suno answers two clips unless told otherwise."""
        count = (2 if model.startswith("suno") else 0) if clips is None else clips
        count = checked_count("clips", count, 0)
        if count > MAX_CLIPS:
            raise ConfigurationError(f"clips must be at most {MAX_CLIPS}, got {count}")
        checked_count("done_before_url", done_before_url, 0)
        if not isinstance(preview_stub, bool):
            raise ConfigurationError(f"preview_stub must be a bool, got {preview_stub!r:.40}")
        if preview_stub and not count:
            raise ConfigurationError("a preview stub comes beside clips: give clips >= 1")
        if checked_count("failed_clips", failed_clips, 0) > count:
            raise ConfigurationError(
                f"failed_clips must be at most the {count} clips of a {model} task, "
                f"got {failed_clips}"
            )
        return cls(
            clips=count,
            preview_stub=preview_stub,
            done_before_url=done_before_url,
            failed_clips=failed_clips,
        )


PREVIEW_DURATION: Final = 0.8
"""How long the emulator's preview stub plays, in seconds (suno's are 0 to 1 s)."""

CLIP_DURATION: Final = 151.2
"""How long each of the emulator's full clips plays, in seconds."""


@attrs.define
class EmulatedTask:
    """One task in the emulator: its script, when it started, how often it was read,
    and what its family shows.

    ``actions`` are offered once it is done; a Midjourney task's ``result`` is its
    ``image_url`` with ``?cache=<percent>``, an intermediate image while it runs; a task
    with a ``model`` is a ``/media`` task.
    """

    id: str
    type: str
    script: TaskScript
    started: float | None
    """When its clock started: at creation for a task created through the API, at its
    first read for one scripted ahead (``None`` until then), so a scripted task's
    duration runs from when a client first looks at it, not from when the test set it."""
    result_url: str
    reads: int = 0
    parent_id: str | None = None
    actions: tuple[str, ...] = ()
    image_url: str | None = None
    """A Midjourney task's image on the result host, as the docs show it
    (``https://gptunnel.ru/task/image/<id>?cache=100``), without the query."""
    model: str | None = None
    webhook: str | None = None
    """Where the emulator POSTs the task once it has ended (given at create time)."""
    output: MediaOutput = attrs.field(factory=MediaOutput)
    """What a media task answers once done."""
    created_at: int = 0
    """Unix seconds, as ``/media`` reports it."""
    usage: Usage = attrs.field(factory=Usage)
    """What the task cost, reported from its create answer on (Midjourney)."""
    done_at_create: bool = False
    """The create answer is already the final state."""
    urls_withheld: int = 0
    """Reads so far that answered ``done`` with no file (``output.done_before_url``)."""

    def snapshot(self, now: float) -> Task | MediaTask:
        """The task's state now, without counting a read."""
        elapsed = 0.0 if self.started is None else now - self.started
        status, percent = self.script.state(self.reads, elapsed)
        return self._task(status, percent)

    def read(self, now: float) -> Task | MediaTask:
        """The task's state now, counting a read (which moves a steps script on and
        starts the clock of a task scripted ahead)."""
        if self.started is None:
            self.started = now
        task = self.snapshot(now)
        self.reads += 1
        if isinstance(task, MediaTask) and _media_done(task.status) and not task.is_terminal:
            self.urls_withheld += 1
        return task

    def created(self) -> Task | MediaTask:
        """The answer to the create call: a fresh ``idle`` task, or (``done_at_create``)
        the final state at once."""
        if self.done_at_create:
            return self._task(*self.script.state(len(self.script.steps or ()), math.inf))
        return self._task("idle", 0)

    def _task(self, status: str, percent: int) -> Task | MediaTask:
        error = (self.script.error or DEFAULT_ERROR) if classify(status) is Stage.FAILED else None
        if self.model is not None:
            return self._media(status, error)
        task = Task(
            id=self.id,
            status=status,
            percent=percent,
            parent_id=self.parent_id,
            type=self.type,
            error=error,
            usage=self.usage,
        )
        if task.is_done:
            return attrs.evolve(task, result=self.result_url, actions=self.actions)
        if self.image_url is not None and percent > 0 and error is None:
            return attrs.evolve(task, result=f"{self.image_url}?cache={percent}")
        return task

    def _media(self, status: str, error: str | None) -> MediaTask:
        media = MediaTask(
            id=self.id,
            status=status,
            model=self.model,
            created_at=self.created_at,
            message=error,
        )
        if not _media_done(status):
            return media
        withheld = self.urls_withheld < self.output.done_before_url
        if not self.output.clips:
            return media if withheld else attrs.evolve(media, url=self.result_url, cost=MEDIA_COST)
        return attrs.evolve(media, clips=self._clips(withheld), cost=MEDIA_COST)

    def _clips(self, withheld: bool) -> tuple[MediaClip, ...]:
        """Suno's clips: full ones (the first ``failed_clips`` failed), then the preview
        stub; no URLs while ``withheld``."""
        lengths = [CLIP_DURATION] * self.output.clips
        lengths += [PREVIEW_DURATION] if self.output.preview_stub else []
        if withheld:
            return tuple(MediaClip(status="streaming") for _ in lengths)
        files = self.result_url.removesuffix("_result.png")
        return tuple(
            MediaClip(status="error", error=CLIP_ERROR)
            if number <= self.output.failed_clips
            else MediaClip(
                status="succeeded",
                audio_url=f"{files}_clip{number}.mp3",
                image_url=f"{files}_clip{number}.jpeg",
                duration=duration,
            )
            for number, duration in enumerate(lengths, 1)
        )


def _media_done(status: str) -> bool:
    """The status says a media task is done (whether or not its files show yet)."""
    return classify(status, MEDIA_DONE_STATUSES) is Stage.DONE
