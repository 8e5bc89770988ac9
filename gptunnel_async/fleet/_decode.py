"""Reading what the fleet's store holds, in one place.

Every value another process wrote — a watched task's record and deadline, an outcome,
the saved pacing, a notice on the events channel — is decoded here and nowhere else,
because any of them may be odd: written by another version of the SDK (a rolling deploy,
a downgrade), by an operator's ``HSET``, or cut short. Whatever is malformed (not UTF-8,
not JSON, a field missing or of the wrong type, a family or model this version does not
know, a number that is not a finite one) becomes a :class:`StoreDataError`, and nothing
else: the watcher's loops set such an entry aside and carry on, and ``Watcher.result``
raises the typed error. Pure functions: no I/O.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any, Final, get_args

import attrs

from .._checks import check_task_id, describe
from .._sansio.json_text import loads
from .._sansio.numbers import decimal, digits
from .._sansio.responses import MAX_ANSWER_BYTES
from .._sansio.text import clip
from .._sansio.waiting import WaitState
from ..errors import ConfigurationError, StoreDataError
from ..models import MediaTask, Task, converter
from ._records import (
    FAMILIES,
    FleetProgress,
    LastRead,
    Outcome,
    OutcomeKind,
    ReadError,
    WatchRecord,
    check_metadata,
    kept_attributes,
    read_error_class,
)

__all__ = [
    "Finished",
    "last_read",
    "notice",
    "number",
    "outcome",
    "read_error",
    "record",
    "schedule",
    "stored_object",
    "task_id",
    "text",
]

MAX_STORED_BYTES: Final = 2 * MAX_ANSWER_BYTES
"""The longest stored JSON value read back (a record, a saved pacing, an outcome): one
holds at most a task object, from an answer of at most ``MAX_ANSWER_BYTES``. A longer
one (an operator's, a hostile write) is refused unparsed: parsing 36 MB held the event
loop for two seconds."""

MAX_SMALL_BYTES: Final = 64 * 1024
"""The longest notice or record read back: each holds at most a watch's metadata (16 KiB)
and a few short texts. Anyone who may publish on the channel could otherwise stall
every listening process with one notice just under :data:`MAX_STORED_BYTES`."""

_MODELS: Final[dict[str, type[Task] | type[MediaTask]]] = {"Task": Task, "MediaTask": MediaTask}
"""The task models an outcome may name (``Outcome.dumps`` writes the class name)."""

_KINDS: Final = get_args(OutcomeKind)

_REASON: Final = 200
"""How much of a decoding error a :class:`StoreDataError` repeats."""


@attrs.frozen
class Finished:
    """A finish notice from the events channel: ``task_id``'s wait has an outcome, of
    the kind ``outcome`` (``None``: not said, as by an older version)."""

    task_id: str
    outcome: OutcomeKind | None = None


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Any exception while decoding ``what`` becomes a :class:`StoreDataError`.

    Decoding is pure, so whatever it raises (``KeyError``, ``TypeError``, a cattrs
    validation group, ``RecursionError`` for JSON nested too deeply...) means only that
    the stored value is malformed: one catch for all of them is the point.
    """
    try:
        yield
    except StoreDataError:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {clip(exc, _REASON)}"
        raise StoreDataError(f"{what} is malformed ({reason})") from exc


def text(value: object, what: str) -> str:
    """A stored string: ``str`` as it is, ``bytes`` as UTF-8.

    Raises:
        StoreDataError: ``value`` is missing (``None``), not text, or not UTF-8.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise StoreDataError(f"{what} is not UTF-8: {describe(value)}") from None
    if value is None:
        raise StoreDataError(f"{what} is missing")
    raise StoreDataError(f"{what} is not text: {describe(value)}")


def task_id(value: object, what: str) -> str:
    """A stored task id: text that ``watch`` would have taken (not blank, not too long).

    Raises:
        StoreDataError: ``value`` is not text, or no task id (another tool wrote it).
    """
    found = text(value, what)
    try:
        return check_task_id(found)
    except ConfigurationError as exc:
        raise StoreDataError(f"{what} is unusable: {exc}") from None


def number(value: object, what: str, *, minimum: float = -math.inf) -> float:
    """A stored number (a JSON number, or its text in a Redis field, as Redis and
    ``%.17g`` write one: ``"1700000000.25"``, ``"1e+20"``), finite and at least
    ``minimum``.

    Raises:
        StoreDataError: anything else: ``"nan"``, ``"inf"``, ``"1e400"``, ``true``, and
            text ``float()`` would take but no writer of the store writes (``" 5"``,
            ``"1_000"``, ``"٣"``).
    """
    if value is None:
        raise StoreDataError(f"{what} is missing")
    if isinstance(value, bytes | bytearray | str):
        shown = text(value, what)
        parsed = decimal(shown)
        if parsed is None:
            raise StoreDataError(
                f"{what} must be a finite number in ASCII decimal: {describe(shown)}"
            )
        value = parsed
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreDataError(f"{what} is not a number: {describe(value)}")
    with _reading(what):
        result = float(value)  # an int beyond the float range: OverflowError
    if not (math.isfinite(result) and result >= minimum):
        raise StoreDataError(f"{what} must be a finite number >= {minimum:g}: {describe(value)}")
    return result


MAX_COUNT_DIGITS: Final = 15
"""The most digits a stored count of failed handler attempts has (the store's scripts cap
it at 10**15): more, and it is no count this SDK wrote."""


def failures(value: object) -> int:
    """A task's count of failed handler attempts, as the store's scripts write it: up to
    :data:`MAX_COUNT_DIGITS` ASCII digits. None yet, or anything else (an operator's
    ``HSET`` of ``-3``, ``1.5``, ``1e300`` or ``inf``), reads as 0, as the scripts that
    count read it, so an odd count costs a delivery its count, never the delivery."""
    if value is None:
        return 0
    try:
        shown = text(value, "the count of failed handler attempts")
    except StoreDataError:
        return 0
    return digits(shown, max_digits=MAX_COUNT_DIGITS) or 0


def stored_object(value: object, what: str, limit: int = MAX_STORED_BYTES) -> dict[str, Any]:
    """A stored JSON object; one parsed already (a ``dict``) is taken as it is, so that
    the decoders below can share one parse of a value.

    Raises:
        StoreDataError: ``value`` is not text holding a JSON object.
    """
    if isinstance(value, dict):
        return value
    if isinstance(value, str | bytes) and len(value) > limit:
        raise StoreDataError(
            f"{what} is {len(value)} long, over the {limit} bytes this SDK stores: not one it wrote"
        )
    with _reading(what):
        data = loads(text(value, what))
    if not isinstance(data, dict):
        raise StoreDataError(f"{what} is not a JSON object: {describe(data)}")
    return data


def _field(data: dict[str, Any], key: str, what: str, kind: type | tuple[type, ...]) -> Any:
    """``data[key]``, which must be a ``kind``."""
    if key not in data:
        raise StoreDataError(f"{what} has no {key!r}")
    value, kinds = data[key], kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise StoreDataError(f"{what}'s {key!r} has the wrong type: {describe(value)}")
    return value


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise StoreDataError(f"{what} must be one of {allowed}, got {describe(value)}")
    return value


def record(value: object, deadline: object) -> WatchRecord:
    """A watched task's record (:meth:`WatchRecord.dumps`'s JSON) and its deadline
    (seconds on the store's clock, a number or its text).

    Raises:
        StoreDataError: either is malformed, or the family is not one of ``FAMILIES``.
    """
    what = "the watched task's record"
    data = stored_object(value, what, MAX_SMALL_BYTES)
    family = _one_of(_field(data, "family", what, str), FAMILIES, f"{what}'s family")
    if "metadata" not in data:
        raise StoreDataError(f"{what} has no 'metadata'")
    timeout = number(_field(data, "timeout", what, (int, float)), f"{what}'s timeout", minimum=0)
    metadata = _metadata(data["metadata"], what)
    return WatchRecord(family, metadata, timeout, number(deadline, "the deadline"))


def _metadata(value: Any, what: str) -> Any:
    """Metadata read back, checked as ``watch()`` checks it: JSON parses lists and
    objects nested hundreds deep, which every later write of it (a progress notice, a
    ``progress()`` listener keeping it) or a handler's own then failed with a bare
    ``RecursionError`` wherever the stack was deeper than the reader's.

    Raises:
        StoreDataError: it nests over ``MAX_DEPTH`` deep, or holds too many values.
    """
    with _reading(f"{what}'s metadata"):
        check_metadata(value)
    return value


def outcome(value: object) -> Outcome:
    """A finished task's outcome (:meth:`Outcome.dumps`'s JSON).

    Raises:
        StoreDataError: it is malformed, names a kind or model this version does not
            know, or is ``"done"`` without its task.
    """
    what = "the outcome"
    data = stored_object(value, what)
    kind: Any = _one_of(_field(data, "kind", what, str), _KINDS, f"{what}'s kind")
    timeout = number(_field(data, "timeout", what, (int, float)), f"{what}'s timeout", minimum=0)
    task = _stored_task(data, what)
    if task is None and kind == "done":
        raise StoreDataError(f"{what} is 'done' without its task")
    return Outcome(kind, task, timeout, read_error(data.get("error")))


def _stored_task(data: dict[str, Any], what: str) -> Task | MediaTask | None:
    """The task ``data`` holds (``model`` and ``task``), or ``None`` if it holds none."""
    task = _field(data, "task", what, (dict, type(None)))
    if task is None:
        return None
    model = _MODELS.get(_field(data, "model", what, str))
    if model is None:
        raise StoreDataError(f"{what} names an unknown model: {describe(data['model'])}")
    if model is MediaTask and "result" not in task:
        # kept as its model's fields (``clips``), read as the API's answer (``result``):
        # without them a done suno task came back with no file, neither done nor failed
        task = {**task, "result": task.get("clips")}
    with _reading(f"{what}'s task"):
        found: Task | MediaTask = converter.structure(task, model)
    return found


_MAX_ERROR_TEXT: Final = 2000
"""The longest stored read error's text kept, as the SDK's own errors are bounded."""


def read_error(value: object) -> ReadError | None:
    """A stored read error (:meth:`ReadError.to_json`), or ``None`` if there is none or
    it cannot be read: it only says why a wait saw nothing, never worth a dead letter.

    Whoever writes the store chooses what it holds, so only the attributes its class
    documents are kept, each of its type (``status_code`` an int, ``retry_after`` a
    finite number of seconds, texts bounded and printable); any other is dropped.
    """
    if not isinstance(value, dict):
        return None
    kind, message = value.get("kind"), value.get("message")
    attributes = value.get("attributes")
    if not (isinstance(kind, str) and isinstance(message, str) and isinstance(attributes, dict)):
        return None
    kept = kept_attributes(read_error_class(kind))
    plain = {
        name: found
        for name, found in ((name, _attribute(name, attributes.get(name))) for name in kept)
        if found is not _DROPPED
    }
    return ReadError(kind, clip(message, _MAX_ERROR_TEXT), plain)


_DROPPED: Final = object()
"""What :func:`_attribute` gives for a stored attribute it does not keep."""


def _attribute(name: str, value: object) -> object:
    """A stored read error's attribute ``name``, checked; :data:`_DROPPED` if unusable."""
    check = _ATTRIBUTE_CHECKS.get(name)
    return _DROPPED if check is None else check(value)


def _status(value: object) -> object:
    """An HTTP status (or a media answer's 200): an int from 0 to 999."""
    usable = value is None or (type(value) is int and 0 <= value <= 999)
    return value if usable else _DROPPED


def _seconds(value: object) -> object:
    """Seconds as a finite float >= 0; an int beyond the float range is dropped too."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _DROPPED
    try:
        seconds = float(value)
    except OverflowError:
        return _DROPPED
    return seconds if 0 <= seconds < math.inf else _DROPPED


def _text(value: object) -> object:
    return clip(value, _MAX_ERROR_TEXT) if isinstance(value, str) else _DROPPED


def _optional_text(value: object) -> object:
    return None if value is None else _text(value)


_ATTRIBUTE_CHECKS: Final[dict[str, Callable[[object], object]]] = {
    "status_code": _status,
    "retry_after": _seconds,
    "message": _text,
    "body": _text,
    "type": _optional_text,
    "param": _optional_text,
    "code": _optional_text,
}
"""How each attribute a read error class documents is checked when read back."""


def last_read(value: object) -> LastRead:
    """What a wait saw last, saved with its pacing (``"last"``: :meth:`LastRead.to_json`);
    an empty one if there is none or it cannot be read, which costs only what an expiry
    tells."""
    if value is None:
        return LastRead()
    try:
        last = stored_object(value, "the saved pacing").get("last")
        if not isinstance(last, dict):
            return LastRead()
        return LastRead(_stored_task(last, "the last read"), read_error(last.get("error")))
    except Exception:  # anything: what it tells is never worth stopping a wait for
        return LastRead()


def _percent(value: int, what: str) -> int:
    """A notice's percent: a whole number from 0 to 100, as the tasks' own.

    Raises:
        StoreDataError: anything else (a forged ``10**300``, say).
    """
    if not 0 <= value <= 100:
        raise StoreDataError(f"{what}'s percent is not from 0 to 100: {describe(value)}")
    return value


def outcome_kind(outcome: str) -> str:
    """The kind of an outcome :meth:`Outcome.dumps` wrote, for a finish notice (``""``
    for one that names none it knows)."""
    try:
        kind = loads(outcome).get("kind")
    except Exception:  # anything: a notice without its kind is still a finish notice
        return ""
    return kind if kind in _KINDS else ""


def schedule(value: object, task_id: str) -> WaitState:
    """Task ``task_id``'s saved pacing (:meth:`WaitState.to_json`'s JSON).

    Raises:
        StoreDataError: it is malformed, of another format, or another task's (a hash
            copied by hand): resumed, that wait's events would name the other task.
    """
    with _reading("the saved pacing"):
        state = WaitState.from_json(stored_object(value, "the saved pacing"))
    if state.task_id != task_id:
        raise StoreDataError(f"the saved pacing is another task's: {describe(state.task_id)}")
    return state


def notice(value: object) -> FleetProgress | Finished | None:
    """A notice from the events channel; ``None`` for a kind this version does not know
    (a newer version's), which its readers skip.

    Raises:
        StoreDataError: it is malformed.
    """
    what = "a notice"
    data = stored_object(value, what, MAX_SMALL_BYTES)
    kind = data.get("kind")
    if kind == "finished":
        outcome = data.get("outcome")
        return Finished(_field(data, "task_id", what, str), outcome if outcome in _KINDS else None)
    if kind != "progress":
        return None
    remaining = data.get("remaining")
    return FleetProgress(
        _field(data, "task_id", what, str),
        _field(data, "status", what, str),
        _percent(_field(data, "percent", what, int), what),
        _metadata(data.get("metadata"), what),
        None if remaining is None else number(remaining, f"{what}'s remaining", minimum=0),
    )
