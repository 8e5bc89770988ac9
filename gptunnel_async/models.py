"""The API's JSON objects as frozen attrs classes, and the one cattrs converter that builds them.

The converter is lenient where the API is loose (a float ``percent``, a null ``usage``,
an unknown status, extra keys) and strict where a wrong type means the body is not a
task at all (an object where the id should be): those raise, and the protocol layer
turns that into ``ResponseDecodeError``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any, ClassVar, Final, Protocol, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._sansio.statuses import (
    DONE_STATUSES,
    FAILED_STATUSES,
    MEDIA_DONE_STATUSES,
    Stage,
    classify,
)

__all__ = [
    "DONE_STATUSES",
    "FAILED_STATUSES",
    "MEDIA_DONE_STATUSES",
    "Balance",
    "MediaClip",
    "MediaTask",
    "Task",
    "TaskLike",
    "Usage",
    "converter",
]

T = TypeVar("T")


class TaskLike(Protocol):
    """What every family's task model offers, and all that waiting needs of one.

    [Task][gptunnel_async.Task] and [MediaTask][gptunnel_async.MediaTask] both fit it.
    """

    @property
    def id(self) -> str:
        """The task's id."""

    @property
    def status(self) -> str:
        """Its status, as the server sent it."""

    @property
    def percent(self) -> int:
        """How far along it is, 0 to 100."""

    @property
    def error(self) -> str | None:
        """Why it failed, if it has."""

    @property
    def is_done(self) -> bool:
        """It finished with its output."""

    @property
    def is_failed(self) -> bool:
        """It finished without one."""


@attrs.frozen
class Usage:
    """What a task cost: token counts and their price.

    Attributes:
        prompt_tokens: tokens of the request.
        completion_tokens: tokens of the answer.
        total_tokens: both together.
        prompt_cost: the request's price.
        completion_cost: the answer's price.
        total_cost: the task's price.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_cost: float = 0.0
    completion_cost: float = 0.0
    total_cost: float = 0.0


class _Lifecycle:
    """Where a task stands, from its ``status`` alone: shared by every family's model.

    The status is classified by the one vocabulary (``_sansio.statuses``), ignoring case
    and surrounding whitespace; the model keeps the raw value.
    """

    __slots__ = ()
    _done_statuses: ClassVar[frozenset[str]] = DONE_STATUSES
    status: str

    @property
    def is_done(self) -> bool:
        """The task finished with its output (``result``, or a media task's ``url``/clips)."""
        return classify(self.status, self._done_statuses) is Stage.DONE

    @property
    def is_failed(self) -> bool:
        """The task finished without a result; ``error`` may say why."""
        return classify(self.status, self._done_statuses) is Stage.FAILED

    @property
    def is_terminal(self) -> bool:
        """The task will not change any more: polling it again is pointless."""
        return classify(self.status, self._done_statuses) is not Stage.PENDING


@attrs.frozen
class Task(_Lifecycle):
    """One state of a GPTunnel task, as ``/faceswap/result`` and its siblings return it.

    Unknown fields in the JSON are ignored, and an unknown status is kept as it came,
    so a server that grows never breaks a client that is older.

    Attributes:
        id: the task's id.
        status: as the server sent it: ``idle``, ``queued``, ``processing``,
            ``running``, ``done``, a failure status, or one this SDK does not know yet.
            ``is_done``/``is_failed`` read it ignoring case and surrounding whitespace.
        percent: how far along it is, an ``int`` from 0 to 100 (a float is rounded, a
            missing or null one is 0).
        parent_id: the task this one derives from, if any (``parentId`` in the JSON).
        object: the object's kind, ``"task"``.
        type: the task family, e.g. ``"@FaceSwap"``.
        result: the URL of the result file once ``done``; it may expire three days on.
        error: why the task failed, as text, if the server said.
        usage: what the task cost, when reported.
        actions: follow-up actions the task offers (Midjourney's upscales, say).
    """

    id: str
    status: str
    percent: int = 0
    parent_id: str | None = None
    object: str = "task"
    type: str | None = None
    result: str | None = None
    error: str | None = None
    usage: Usage | None = None
    actions: tuple[str, ...] = ()


@attrs.frozen
class MediaClip:
    """One generated clip of a music task: where to fetch it and how long it plays.

    Attributes:
        audio_url: where to fetch the clip.
        duration: how long it plays, in seconds, if reported.
        status: the clip's own status, if reported.
    """

    audio_url: str | None = None
    duration: float | None = None
    status: str | None = None


@attrs.frozen
class MediaTask(_Lifecycle):
    """One state of a ``/media`` task (images, video, music from many models).

    The API reports no progress for media, so ``percent`` is 0 until the task is done,
    then 100.

    Attributes:
        id: the task's id.
        status: as the server sent it; ``done``, ``succeeded``, ``success`` and
            ``completed`` all mean done (in any case, as every status is read).
        model: the model that made it.
        url: the image or video result, once done.
        result: the clips of a music result.
        cost: what it cost, if reported.
        code: 0; an answer with another code is raised as an error instead.
        message: the server's message, and the reason when the task has failed.
    """

    id: str
    status: str
    model: str | None = None
    url: str | None = None
    result: tuple[MediaClip, ...] = ()
    cost: float | None = None
    code: int = 0
    message: str | None = None

    _done_statuses = MEDIA_DONE_STATUSES

    @property
    def percent(self) -> int:
        """100 once the task is done, else 0: media tasks report no progress."""
        return 100 if self.is_done else 0

    @property
    def error(self) -> str | None:
        """Why the task failed (its ``message``), or ``None`` while it has not."""
        return self.message if self.is_failed else None

    @property
    def urls(self) -> tuple[str, ...]:
        """Every result file: ``url`` and each clip's ``audio_url``, in order."""
        clips = tuple(clip.audio_url for clip in self.result if clip.audio_url)
        return (self.url, *clips) if self.url else clips


@attrs.frozen
class Balance:
    """The organisation's money: what it has, and how far below zero it may go.

    Attributes:
        org_id: the organisation's id.
        balance: what it has.
        credit_limit: how far below zero it may go.
    """

    org_id: str
    balance: float
    credit_limit: float = 0.0


def _number(value: Any) -> float:
    """A JSON number as a finite float; booleans, strings and NaN are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _structure_str(value: Any, _: type) -> str:
    """Strings as they are, integer ids as text; anything else is not a string field."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _structure_percent(value: Any, _: type) -> int:
    """Percent as an int in 0..100: floats are rounded, null or missing is 0."""
    if type(value) is int and 0 <= value <= 100:  # the usual case, first and cheapest
        return value
    if value is None:
        return 0
    return min(100, max(0, round(_number(value))))


def _structure_error(value: Any, _: type) -> str | None:
    """The task's error as text, whether the server sent a string or an error object."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])
    return json.dumps(value, ensure_ascii=False)


def _structure_actions(value: Any, _: type) -> tuple[str, ...]:
    """Follow-up actions as a tuple of strings; null means none."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TypeError(f"expected a list of actions, got {type(value).__name__}")
    return tuple(item if isinstance(item, str) else json.dumps(item) for item in value)


def _structure_amount(value: Any, _: type) -> float | None:
    """An optional amount (a cost, a duration): a number or numeric text, else ``None``."""
    if isinstance(value, str):
        try:
            return _number(float(value))
        except ValueError:
            return None
    return None if value is None else _number(value)


def _structure_int(value: Any, _: type) -> int:
    if type(value) is int:
        return value
    return 0 if value is None else round(_number(value))


def _structure_float(value: Any, _: type) -> float:
    if type(value) is int:
        return float(value)
    return 0.0 if value is None else _number(value)


def _interned(value: Any, _: type) -> str:
    """A text that repeats across thousands of tasks (a status, ``"task"``, a type), kept
    once rather than once per task: models are frozen, so sharing it is safe."""
    return sys.intern(_structure_str(value, str))


_NO_USAGE: Final = Usage()


def _shared_when_empty(
    structure: Callable[[Any, type], Usage], empty: dict[str, Any]
) -> Callable[[Any, type], Usage]:
    """Wrap the Usage hook so the all-zero usage of a running task is one shared object.

    ``empty`` is the converter's own JSON for that object: an answer equal to it (and
    with no ``false`` posing as a 0) is that object without being built again, which
    is most answers, since tasks report their cost only once done.
    """

    def structure_usage(value: Any, cls: type) -> Usage:
        if value == empty and bool not in map(type, value.values()):
            return _NO_USAGE
        usage = structure(value, cls)
        return _NO_USAGE if usage == _NO_USAGE else usage

    return structure_usage


def _or_none(structure: Callable[[Any, type], T]) -> Callable[[Any, type], T | None]:
    """``structure`` for an optional field: null stays ``None``.

    cattrs' own handling of ``X | None`` looks the hook for ``X`` up again on every
    value; this keeps the one it was given.
    """

    def structure_optional(value: Any, cls: type) -> T | None:
        return None if value is None else structure(value, cls)

    return structure_optional


def _objects_only(structure: Callable[[Any, type], T]) -> Callable[[Any, type], T]:
    """Wrap a generated hook so a list or string is refused rather than read as defaults."""

    def structure_object(value: Any, cls: type) -> T:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return structure(value, cls)

    return structure_object


def _on_first_use(
    conv: cattrs.Converter, cls: type, build: Callable[[], Callable[[Any, type], Any]]
) -> None:
    """Register ``cls``'s structure hook, generated when first needed: each generated
    function costs about a millisecond of import time, and most programs use few models."""
    conv.register_structure_hook_factory(lambda candidate: candidate is cls, lambda _: build())


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(str | None, _or_none(_structure_str))
    _on_first_use(
        conv,
        Usage,
        lambda: _shared_when_empty(
            _objects_only(make_dict_structure_fn(Usage, conv)), conv.unstructure(_NO_USAGE)
        ),
    )
    _on_first_use(
        conv,
        Task,
        lambda: _objects_only(
            make_dict_structure_fn(
                Task,
                conv,
                parent_id=override(rename="parentId"),
                status=override(struct_hook=_interned),
                percent=override(struct_hook=_structure_percent),
                object=override(struct_hook=_interned),
                type=override(struct_hook=_or_none(_interned)),
                error=override(struct_hook=_structure_error),
                usage=override(struct_hook=_or_none(conv.get_structure_hook(Usage))),
                actions=override(struct_hook=_structure_actions),
            )
        ),
    )
    conv.register_unstructure_hook_factory(
        lambda candidate: candidate is Task,
        lambda _: make_dict_unstructure_fn(Task, conv, parent_id=override(rename="parentId")),
    )
    conv.register_structure_hook(float | None, _structure_amount)
    _on_first_use(conv, MediaClip, lambda: _objects_only(make_dict_structure_fn(MediaClip, conv)))

    def structure_clips(value: Any, _: type) -> tuple[MediaClip, ...]:
        """Music clips as a tuple; null (an image or video, or not done yet) means none."""
        if value is None:
            return ()
        if not isinstance(value, list):
            raise TypeError(f"expected a list of clips, got {type(value).__name__}")
        return tuple(conv.structure(item, MediaClip) for item in value)

    _on_first_use(
        conv,
        MediaTask,
        lambda: _objects_only(
            make_dict_structure_fn(
                MediaTask,
                conv,
                result=override(struct_hook=structure_clips),
                message=override(struct_hook=_structure_error),
            )
        ),
    )
    _on_first_use(
        conv,
        Balance,
        lambda: _objects_only(
            make_dict_structure_fn(
                Balance,
                conv,
                org_id=override(rename="orgId"),
                credit_limit=override(rename="creditLimit"),
            )
        ),
    )
    return conv


converter: Final = _make_converter()
"""The one converter that turns API JSON into models (and models back into JSON)."""
