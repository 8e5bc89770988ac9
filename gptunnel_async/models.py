"""The API's JSON objects as frozen attrs classes, and the one cattrs converter that builds them.

The converter is lenient where the API is loose (a float ``percent``, numbers sent as
a JSON number's text in ASCII, a null ``usage``, an unknown status, extra keys), and an
optional field it cannot read at all is left at its default (logged at DEBUG) rather
than failing the task. Only a body without a usable ``id`` and ``status`` is not a task:
that raises, and the protocol layer turns it into ``ResponseDecodeError``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Protocol, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._logging import logger
from ._sansio.numbers import decimal
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
    "MAX_ACTIONS",
    "MAX_CLIPS",
    "MEDIA_DONE_STATUSES",
    "PREVIEW_SECONDS",
    "Balance",
    "MediaClip",
    "MediaTask",
    "Task",
    "TaskLike",
    "Usage",
    "ValidationIssue",
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


MAX_ACTIONS: Final = 1000
"""The most follow-up actions a :class:`Task` keeps: the first 1,000 of its ``actions``
are read and the rest dropped (logged at DEBUG). Midjourney offers about a dozen; a
4 MiB answer could list a million, each a string to build at every read."""

MAX_CLIPS: Final = 1000
"""The most clips a :class:`MediaTask` keeps: the first 1,000 of a ``result`` list are
read and the rest dropped (logged at DEBUG). GPTunnel's models answer one to a few
(suno two), and a download saves at most 100 files at once; a 4 MiB answer could list
1.3 million empty clips, 170 MiB and 4 s of CPU on the event loop at every read."""


class _Lifecycle:
    """Where a task stands: shared by every family's model, from its ``status`` alone
    unless the model weighs more (a media task's files and clips, in its ``_stage``).

    The status is classified by the one vocabulary (``_sansio.statuses``), ignoring case
    and surrounding whitespace; the model keeps the raw value.
    """

    __slots__ = ()
    _done_statuses: ClassVar[frozenset[str]] = DONE_STATUSES
    status: str

    def _stage(self) -> Stage:
        """Where the task stands: the one decision ``is_done``, ``is_failed`` and
        ``is_terminal`` read (a media task's also weighs its files and clips)."""
        return classify(self.status, self._done_statuses)

    @property
    def is_done(self) -> bool:
        """The task finished with its output (``result``, or a media task's ``url``/clips)."""
        return self._stage() is Stage.DONE

    @property
    def is_failed(self) -> bool:
        """The task finished without a result; ``error`` may say why."""
        return self._stage() is Stage.FAILED

    @property
    def is_terminal(self) -> bool:
        """The task will not change any more: polling it again is pointless."""
        return self._stage() is not Stage.PENDING


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
        result: the URL of the result file once ``done``. How long it lives depends on
            the family: face swaps' may be deleted 3 days after generation (documented).
        error: why the task failed, as text, if the server said.
        usage: what the task cost, when reported.
        actions: follow-up actions the task offers (Midjourney's upscales, say), as
            sent, at most the first ``MAX_ACTIONS`` (1,000); an action that is not a
            string is kept as its JSON text.
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


PREVIEW_SECONDS: Final = 1.0
"""A clip this short or shorter is a preview stub, not a track: suno sometimes returns
one (0 to 1 s) beside the full track."""


@attrs.frozen
class MediaClip:
    """One output of a media task: a music clip (suno answers two or so), or one file of
    a model that answers a list.

    Attributes:
        audio_url: the clip's audio, once it is ready.
        image_url: its cover image, if any.
        video_url: its video, if any.
        url: the file, for outputs that name it neither audio nor video.
        duration: how long it plays, in seconds, if reported (``duration``,
            ``audio_duration`` or ``metadata.duration`` in the JSON).
        status: the clip's own status, as sent: ``succeeded`` once it is ready, or a
            failure status (``error``, ``failed``...) if it failed on its own.
        id: the clip's own id, if any.
        title: its title, if any.
        error: the clip's own message, as text, if it sends one: why it failed, when
            it has. Its ``message``, else its ``error`` (a string, or an object's
            ``message``), read as a media task's reason is; how a clip says why it
            failed is not documented.
    """

    audio_url: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    url: str | None = None
    duration: float | None = None
    status: str | None = None
    id: str | None = None
    title: str | None = None
    error: str | None = None

    @property
    def file_url(self) -> str | None:
        """What to download for this clip: its audio, else its video, else its ``url``;
        ``None`` for a clip that failed on its own (:attr:`is_failed`), whatever URLs it
        carries (they stay in ``audio_url`` and the others, as sent): a failed clip is
        no result file."""
        if self.is_failed:
            return None
        return self.audio_url or self.video_url or self.url

    @property
    def is_preview(self) -> bool:
        """A preview stub (at most ``PREVIEW_SECONDS`` long) rather than the full track."""
        return self.duration is not None and self.duration <= PREVIEW_SECONDS

    @property
    def is_failed(self) -> bool:
        """The clip failed on its own (its ``status`` is a failure status)."""
        return self.status is not None and classify(self.status) is Stage.FAILED

    @property
    def is_pending(self) -> bool:
        """The clip has nothing to fetch yet and has not failed."""
        return not self.is_failed and self.file_url is None


@attrs.frozen
class MediaTask(_Lifecycle):
    """One state of a ``/media`` task (images, video, music from many models).

    The API reports no progress for media, so ``percent`` is 0 until the task is done,
    then 100. A status that says done is weighed with the task's files and clips:

    - at least one file, and no clip still waiting for its URL: done (clips that failed
      on their own beside the files are in ``failed_clips``);
    - a clip still waiting for its URL, or no clips and no file (a ``null`` or empty
      ``result``): not finished yet. suno has been seen answering ``done`` before any
      ``audio_url`` appeared, and a wait reads on through that (within its deadline)
      rather than ending with nothing, or failing a task that may yet deliver;
    - no file, and every clip failed on its own: failed, and ``error`` says so, with
      the clips' reasons.

    Attributes:
        id: the task's id.
        status: as the server sent it: ``idle``, ``running``, ``processing``, ``done``,
            or a failure status (``failed``, ``error``, ``canceled``...); read in any
            case, as every status is.
        model: the model that made it.
        url: the file of an image or video result (``url``, or ``result`` when the
            server sends a single link there).
        clips: the outputs of a result that is a list: suno's music clips, each with
            its own ``status``, ``audio_url``, ``image_url`` and ``duration``; at most
            the first ``MAX_CLIPS`` (1,000) of the list, an item that is neither a clip
            object nor a link left out.
        created_at: when the task was created, in unix seconds, if reported.
        cost: what it cost, if reported.
        code: 0; an answer with another code is raised as an error instead.
        message: the server's message, and the reason when the task has failed (its
            ``error`` when it sends no ``message``: a media failure's shape is not
            documented, and public clients read the reason there).

    ``is_done``, ``is_failed``, ``is_terminal``, ``error`` and ``percent`` all follow
    that one decision, so a wait, a webhook, a fleet and the command line agree on it.
    """

    id: str
    status: str
    model: str | None = None
    url: str | None = None
    clips: tuple[MediaClip, ...] = ()
    created_at: int | None = None
    cost: float | None = None
    code: int = 0
    message: str | None = None

    _done_statuses = MEDIA_DONE_STATUSES

    def _stage(self) -> Stage:
        """Where the task stands, from its status, files and clips (see the class)."""
        stage = classify(self.status, self._done_statuses)
        if stage is not Stage.DONE:
            return stage
        if any(clip.is_pending for clip in self.clips):
            return Stage.PENDING
        if self.urls:
            return Stage.DONE
        return Stage.FAILED if self.clips else Stage.PENDING  # clips: every one failed

    @property
    def percent(self) -> int:
        """100 once the task is done, else 0: media tasks report no progress."""
        return 100 if self.is_done else 0

    @property
    def error(self) -> str | None:
        """Why the task failed, or ``None`` while it has not: its ``message`` when its
        status is a failure; when its status says done but every clip failed, that, with
        the clips' own reasons (each different one once), e.g. ``"all 2 clips failed:
        lyrics flagged"``, else its ``message``, else ``"no reason given"``."""
        if not self.is_failed:
            return None
        if classify(self.status, self._done_statuses) is Stage.FAILED:
            return self.message
        failed = (
            "its clip failed" if len(self.clips) == 1 else f"all {len(self.clips)} clips failed"
        )
        return f"{failed}: {clip_reasons(self.clips) or self.message or 'no reason given'}"

    @property
    def failed_clips(self) -> tuple[MediaClip, ...]:
        """The clips that failed on their own (a failure ``status``), in order: all of
        them when the task failed that way, and possibly some beside the files of a task
        that is done (its ``urls`` are the others' files)."""
        return tuple(clip for clip in self.clips if clip.is_failed)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every result file: ``url``, then each clip's ``file_url``, in order; a clip
        that failed on its own has none, even one that carries an ``audio_url``."""
        files = tuple(url for clip in self.clips if (url := clip.file_url))
        return (self.url, *files) if self.url else files


def clip_reasons(clips: Iterable[MediaClip]) -> str | None:
    """Why ``clips`` failed, in their own words: each different ``error`` of a clip that
    failed once, in order, joined by ``"; "``; ``None`` if none of them says."""
    return (
        "; ".join(dict.fromkeys(clip.error for clip in clips if clip.is_failed and clip.error))
        or None
    )


@attrs.frozen
class ValidationIssue:
    """One problem ``/media`` found with a request's fields (its code 3 answer lists them).

    Attributes:
        path: where in the request body, e.g. ``("images", 0)``.
        message: what is wrong, in the API's words.
        expected: what the field should have been, if the API said.
        received: what it got instead, if the API said.
        code: the kind of problem, if the API named it (e.g. ``"invalid_type"``).
    """

    path: tuple[str | int, ...] = ()
    message: str | None = None
    expected: str | None = None
    received: str | None = None
    code: str | None = None

    @property
    def field(self) -> str | None:
        """The path as one dotted name, e.g. ``"images.0"``; ``None`` for the body itself."""
        return ".".join(map(str, self.path)) or None


@attrs.frozen
class Balance:
    """The organisation's money: what it has, and how far below zero it may go.

    Attributes:
        org_id: the organisation's id.
        balance: what it has.
        credit_limit: how far below zero it may go; 0 when the answer has none, or one
            that is not a number (logged at DEBUG, as every optional field is).
    """

    org_id: str
    balance: float
    credit_limit: float = 0.0


def _number(value: Any) -> float:
    """A JSON number, or a JSON number's text (``"50"``, ``"-1.5"``: ASCII, nothing around
    it), as a finite float.

    Raises:
        TypeError: a boolean, or anything else that is neither a number nor text.
        ValueError: text that is not a number's (``" 50"``, ``"1_000"``, ``"٣٠"``,
            ``"nan"``), NaN, an infinity, or a number too large for a float (``"1e400"``).
    """
    if isinstance(value, str):
        number = decimal(value)
        if number is None:
            raise ValueError("expected a number, got text that is not a decimal number")
        return number
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
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
    """Follow-up actions as a tuple of strings, the first ``MAX_ACTIONS``; null means none."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TypeError(f"expected a list of actions, got {type(value).__name__}")
    items = _first(value, MAX_ACTIONS, "actions")
    return tuple(item if isinstance(item, str) else json.dumps(item) for item in items)


def _first(items: list[Any], limit: int, what: str) -> list[Any]:
    """The first ``limit`` of ``items``: more are dropped, logged at DEBUG (their count)."""
    if len(items) <= limit:
        return items
    logger.debug("an answer lists %d %s; the first %d are kept", len(items), what, limit)
    return items[:limit]


def _structure_amount(value: Any, _: type) -> float | None:
    """An optional amount (a cost, a duration): a number or a JSON number's text, else
    ``None``."""
    return None if value is None else _number(value)


def _structure_bool(value: Any, _: type) -> bool:
    """A JSON ``true``/``false`` as it is; the ``int`` hook would take it for a number."""
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected a boolean, got {type(value).__name__}")


def _required_number(value: Any, _: type) -> float:
    """A required amount (the balance): a number or a JSON number's text; null is not
    one, as it is for an optional amount, which it leaves at 0 (a null balance read as
    0 rubles would be a balance the server never reported)."""
    return _number(value)


def _structure_int(value: Any, _: type) -> int:
    if type(value) is int:
        return value
    return 0 if value is None else round(_number(value))


def _structure_float(value: Any, _: type) -> float:
    if type(value) is int:  # a zero cost (most tasks'), as the one constant 0.0
        return float(value) if value else 0.0
    return 0.0 if value is None else _number(value)


def _interned(value: Any, _: type) -> str:
    """A text that repeats across thousands of tasks (a status, ``"task"``, a type), kept
    once rather than once per task: models are frozen, so sharing it is safe."""
    return sys.intern(_structure_str(value, str))


def _or_none(structure: Callable[[Any, type], T]) -> Callable[[Any, type], T | None]:
    """``structure`` for an optional field: null stays ``None``.

    cattrs' own handling of ``X | None`` looks the hook for ``X`` up again on every
    value; this keeps the one it was given.
    """

    def structure_optional(value: Any, cls: type) -> T | None:
        return None if value is None else structure(value, cls)

    return structure_optional


def _clip_hook(structure: Callable[[Any, type], MediaClip]) -> Callable[[Any, type], MediaClip]:
    """Wrap the generated clip hook: a bare link is a clip with that ``url``, and the
    duration is found where different models put it, the reason of a clip that failed
    in its ``message`` or else its ``error``, as a media task's."""

    def structure_clip(value: Any, cls: type) -> MediaClip:
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return MediaClip(url=value)
        if not isinstance(value, dict):
            raise TypeError(f"expected a clip object or a link, got {type(value).__name__}")
        metadata = value.get("metadata")
        duration = next(
            (
                found
                for found in (
                    value.get("duration"),
                    value.get("audio_duration"),
                    metadata.get("duration") if isinstance(metadata, dict) else None,
                )
                if found is not None
            ),
            None,
        )
        reason = value.get("message") or value.get("error")
        return structure({**value, "duration": duration, "error": reason}, cls)

    return structure_clip


def _media_hook(structure: Callable[[Any, type], MediaTask]) -> Callable[[Any, type], MediaTask]:
    """Wrap the generated media hook: a single link in ``result`` is the task's ``url``."""

    def structure_media(value: Any, cls: type) -> MediaTask:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        result = value.get("result")
        if isinstance(result, str):
            value = {**value, "url": value.get("url") or result, "result": None}
        return structure(value, cls)

    return structure_media


def _structure_timestamp(value: Any, _: type) -> int | None:
    """Unix seconds from a number, a number's text (ASCII, as :func:`_number` reads it) or
    an ISO 8601 date in ASCII; else ``None`` (an optional field that cannot be understood
    is dropped, not fatal): ``" 1700000000"``, ``"1e400"`` and ``10**400`` included."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        try:
            return int(_number(value))
        except ValueError:
            pass
    if not (isinstance(value, str) and value.isascii()):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


_UNREADABLE: Final = (
    cattrs.BaseValidationError,
    KeyError,
    TypeError,
    ValueError,
    OverflowError,
    RecursionError,
)
"""What a structure hook raises for a value it cannot read. ``RecursionError`` comes
from a value nested nearly as deep as the JSON parser goes: the hooks that keep a
nested ``error`` or action as JSON text write it out a few frames deeper than it was
parsed, and reach the recursion limit."""


class UnreadableFieldError(ValueError):
    """A required field of an answer (a task's ``id`` or ``status``, a balance) that is
    missing or cannot be read; its text names the field."""


def _required_problem(key: str, value: dict[str, Any], exc: BaseException) -> str:
    """What is wrong with the required field ``key`` of ``value``, in words."""
    if key not in value:
        return f"its {key!r} field is missing"
    reason = (
        "; ".join(cattrs.transform_error(exc))
        if isinstance(exc, cattrs.BaseValidationError)
        else exc
    )
    return f"its {key!r} field is unreadable: {reason}"


def _leniently(conv: cattrs.Converter, cls: type, **overrides: Any) -> Callable[[Any, type], Any]:
    """``cls``'s structure hook: strict and generated for the usual answer, then field by
    field for one it refuses.

    Field by field, an optional field (one with a default) that cannot be read takes
    its default, logged at DEBUG (the field's name and the error's type, never its
    value, which may hold anything); only a required field (a task's ``id`` and
    ``status``) that is missing or unreadable fails the whole object. The usual answer
    pays nothing for this: the generated function runs first.
    """
    strict: Callable[[Any, type], Any] = make_dict_structure_fn(cls, conv, **overrides)
    attrs.resolve_types(cls)
    fields = [
        (
            field,
            getattr(overrides.get(field.name), "rename", None) or field.name,
            getattr(overrides.get(field.name), "struct_hook", None)
            or conv.get_structure_hook(field.type),
        )
        for field in attrs.fields(cls)
    ]

    def structure_leniently(value: Any, _: type) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        try:
            return strict(value, cls)
        except _UNREADABLE:
            pass
        values: dict[str, Any] = {}
        for field, key, hook in fields:
            required = field.default is attrs.NOTHING
            if key not in value and not required:
                continue
            try:
                values[field.name] = hook(value[key], field.type)
            except _UNREADABLE as exc:
                if required:
                    raise UnreadableFieldError(_required_problem(key, value, exc)) from None
                logger.debug(
                    "%s answer: the %s field is unreadable (%s); using its default",
                    cls.__name__,
                    key,
                    type(exc).__name__,
                )
        return cls(**values)

    return structure_leniently


def _usual_usage(value: dict[str, Any]) -> Usage | None:
    """``value`` as the :class:`Usage` the converter makes of it, when every field it has
    is what the API sends (whole token counts, whole or finite costs); ``None`` for
    anything else, which the converter reads."""
    prompt_tokens = value.get("prompt_tokens", 0)
    completion_tokens = value.get("completion_tokens", 0)
    total_tokens = value.get("total_tokens", 0)
    if not (
        type(prompt_tokens) is int and type(completion_tokens) is int and type(total_tokens) is int
    ):
        return None
    prompt_cost = _usual_cost(value.get("prompt_cost", 0))
    completion_cost = _usual_cost(value.get("completion_cost", 0))
    total_cost = _usual_cost(value.get("total_cost", 0))
    if prompt_cost is None or completion_cost is None or total_cost is None:
        return None
    return Usage(
        prompt_tokens, completion_tokens, total_tokens, prompt_cost, completion_cost, total_cost
    )


def _usual_cost(value: Any) -> float | None:
    """A cost as :func:`_structure_float` reads a whole or finite one; else ``None``."""
    if type(value) is int:
        try:
            return float(value) if value else 0.0
        except OverflowError:  # beyond a float: the converter reads it (and drops it)
            return None
    if type(value) is float and value - value == 0:  # an infinity or NaN gives NaN
        return value
    return None


_USUAL_TYPES: Final = (str, str, str, int)
"""The types of a usual task object's ``id``, ``status``, ``object`` and ``percent``."""

_TEXT_OR_NULL: Final = frozenset({str, type(None)})
"""The types of a usual task object's ``parentId``, ``type``, ``result`` and ``error``."""

_NO_ACTIONS: Final[tuple[None, list[Any]]] = (None, [])
"""A usual task object's ``actions``, if it has them (``in`` compares by ``==``)."""


def _usual_task(value: dict[str, Any]) -> Task | None:
    """``value`` as the :class:`Task` the converter makes of it, when every field it has
    is of the type the API sends (texts or null, a whole ``percent`` from 0 to 100, no
    ``actions`` or an empty list); ``None`` for anything else, which the converter
    reads. Saves about 3 % of a read's instructions (cattrs: 53,000 per task, this: 36,000)."""
    task_id: Any = value.get("id")  # Any: checked below, all at once
    status: Any = value.get("status")
    percent, kind = value.get("percent", 0), value.get("object", "task")
    parent_id, family, result = value.get("parentId"), value.get("type"), value.get("result")
    error, usage, actions = value.get("error"), value.get("usage"), value.get("actions")
    if (type(task_id), type(status), type(kind), type(percent)) != _USUAL_TYPES:
        return None
    if not 0 <= percent <= 100 or actions not in _NO_ACTIONS:
        return None
    if not {type(parent_id), type(family), type(result), type(error)} <= _TEXT_OR_NULL:
        return None
    usual_usage = None
    if usage is not None and (
        type(usage) is not dict or (usual_usage := _usual_usage(usage)) is None
    ):
        return None
    return Task(
        task_id,
        sys.intern(status),
        percent,
        parent_id,
        sys.intern(kind),
        None if family is None else sys.intern(family),
        result,
        error or None,
        usual_usage,
    )


def _with_fast_path(
    usual: Callable[[dict[str, Any]], Any], structure: Callable[[Any, type], Any]
) -> Callable[[Any, type], Any]:
    """``structure``, after ``usual`` for an object: the first model it makes, if any."""

    def structure_usual_first(value: Any, cls: type) -> Any:
        if type(value) is dict and (model := usual(value)) is not None:
            return model
        return structure(value, cls)

    return structure_usual_first


def _on_first_use(
    conv: cattrs.Converter, cls: type, build: Callable[[], Callable[[Any, type], Any]]
) -> None:
    """Register ``cls``'s structure hook, generated when first needed: each generated
    function costs about a millisecond of import time, and most programs use few models."""
    conv.register_structure_hook_factory(lambda candidate: candidate is cls, lambda _: build())


def _task_hook(conv: cattrs.Converter) -> Callable[[Any, type], Task]:
    """:class:`Task`'s structure hook, for any object (:func:`_usual_task` reads the usual one
    first)."""
    hook: Callable[[Any, type], Task] = _leniently(
        conv,
        Task,
        parent_id=override(rename="parentId"),
        status=override(struct_hook=_interned),
        percent=override(struct_hook=_structure_percent),
        object=override(struct_hook=_interned),
        type=override(struct_hook=_or_none(_interned)),
        error=override(struct_hook=_structure_error),
        usage=override(struct_hook=_or_none(conv.get_structure_hook(Usage))),
        actions=override(struct_hook=_structure_actions),
    )
    return hook


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(str | None, _or_none(_structure_str))
    _on_first_use(conv, Usage, lambda: _leniently(conv, Usage))
    _on_first_use(conv, Task, lambda: _with_fast_path(_usual_task, _task_hook(conv)))
    conv.register_unstructure_hook_factory(
        lambda candidate: candidate is Task,
        lambda _: make_dict_unstructure_fn(Task, conv, parent_id=override(rename="parentId")),
    )
    conv.register_structure_hook(float | None, _structure_amount)
    _on_first_use(
        conv,
        MediaClip,
        lambda: _clip_hook(
            _leniently(conv, MediaClip, error=override(struct_hook=_structure_error))
        ),
    )

    def structure_clips(value: Any, _: type) -> tuple[MediaClip, ...]:
        """A list ``result`` as clips, its first ``MAX_CLIPS``; null (not done yet, or a
        single file) means none."""
        if value is None:
            return ()
        if not isinstance(value, list):
            raise TypeError(f"expected a list of clips, got {type(value).__name__}")
        items = _first(value, MAX_CLIPS, "clips")
        return tuple(clip for clip in map(readable_clip, items) if clip is not None)

    def readable_clip(value: Any) -> MediaClip | None:
        """One clip, or ``None`` (logged at DEBUG) if it is not a clip object or a link."""
        try:
            clip: MediaClip = conv.structure(value, MediaClip)
        except _UNREADABLE as exc:
            logger.debug("MediaTask answer: a clip is unreadable (%s)", type(exc).__name__)
            return None
        return clip

    _on_first_use(
        conv,
        MediaTask,
        lambda: _media_hook(
            _leniently(
                conv,
                MediaTask,
                clips=override(rename="result", struct_hook=structure_clips),
                created_at=override(struct_hook=_structure_timestamp),
                message=override(struct_hook=_structure_error),
            )
        ),
    )
    _on_first_use(
        conv,
        Balance,
        lambda: _leniently(
            conv,
            Balance,
            org_id=override(rename="orgId"),
            balance=override(struct_hook=_required_number),
            credit_limit=override(rename="creditLimit"),
        ),
    )
    return conv


converter: Final = _make_converter()
"""The one converter that turns API JSON into models (and models back into JSON)."""
