"""What the fleet stores and hands out: a watched task's record, its outcome, deliveries,
progress and the fleet's status, with their JSON forms (the stores keep strings)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Final, Literal, TypeAlias

import attrs

from .. import errors
from .._sansio.responses import TASK_FAMILIES
from ..errors import APIError, GPTunnelError
from ..models import MediaTask, Task, converter

__all__ = [
    "FAMILIES",
    "Claim",
    "Delivery",
    "Entry",
    "FleetProgress",
    "FleetStatus",
    "LastRead",
    "Outcome",
    "OutcomeKind",
    "ReadError",
    "WatchRecord",
]

OutcomeKind: TypeAlias = Literal["done", "failed", "expired", "error"]
"""How a watched task ended: done, failed (as the task says), or its wait expired."""

FAMILIES: Final = TASK_FAMILIES
"""The families a watched task may belong to: the client's namespaces of that name."""


MAX_METADATA_BYTES: Final = 16 * 1024
"""Metadata is for ids and small notes (a chat id, a message id), not for payloads."""

MAX_DEPTH: Final = 100
"""How deep the caller's metadata may nest lists and objects: any JSON reader, in any
worker's stack, reads it back (Python's own stops near its recursion limit, 1,000
frames less the reader's, so that metadata ``watch()`` took was set aside as a dead
letter by every worker that claimed it)."""


def _dumps(value: Any, *, strict: bool = False) -> str:
    """Compact JSON in ASCII: every character, a lone surrogate of a server's text
    included, becomes an escape any store can keep and any JSON reader reads back as it
    was (redis-py cannot encode a lone surrogate as UTF-8).

    ``strict``: no NaN or infinity (not JSON for readers in other languages), only text
    keys, which JSON would otherwise turn into text silently, and lists and objects
    nested at most :data:`MAX_DEPTH` deep inside ``value`` (an object that holds the
    caller's metadata). What a server sent is always stored, as Python's JSON reads it
    back.

    Raises:
        TypeError, ValueError, RecursionError: with ``strict``, or for what is not JSON.
    """
    if strict:
        check_metadata(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=not strict)


def check_metadata(value: Any) -> None:
    """What ``watch()`` takes as metadata, and what is read back as such: ``TypeError``
    if a dict inside ``value`` has a key that is not text; ``ValueError`` if the lists
    and dicts inside it nest deeper than :data:`MAX_DEPTH` (a cycle does:
    json.dumps refuses it too), or if it holds more than :data:`MAX_METADATA_BYTES`
    values, lists and dicts counted on every path, as JSON writes them out: each takes
    a character at least, so that many never fit, and a few lists that share their
    items (``[[[0] * 1000] * 1000] * 1000``, kilobytes in memory) would be written out
    as gigabytes, the event loop stalled meanwhile. The walk so stops within that many
    steps."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    for _ in range(MAX_METADATA_BYTES):
        if not pending:
            return
        item, depth = pending.pop()
        pending.extend((inner, depth + 1) for inner in _inside(item, depth))
    if pending:
        raise ValueError(
            f"it holds over {MAX_METADATA_BYTES} values (a list or object it repeats counts "
            f"each time), more than {MAX_METADATA_BYTES} bytes of JSON hold"
        )


def _inside(item: Any, depth: int) -> Iterable[Any]:
    """The values inside ``item``, met ``depth`` deep, once its keys and depth are
    checked (see :func:`check_metadata`); nothing for a value that is not a container."""
    if not isinstance(item, dict | list | tuple):
        return ()
    if depth > MAX_DEPTH:
        raise ValueError(f"it nests lists and objects over {MAX_DEPTH} levels deep")
    if not isinstance(item, dict):
        return item
    if not all(isinstance(key, str) for key in item):
        raise TypeError(f"keys must be text, got {sorted(map(repr, item))[:3]}")
    return item.values()


@attrs.frozen
class WatchRecord:
    """What ``watch`` registers: the task's family and the caller's metadata, and the
    deadline (seconds on the store's clock) after which the wait is delivered expired.
    The store keeps the deadline apart: :meth:`dumps` leaves it out. Read back with
    ``_decode.record``."""

    family: str
    metadata: Any
    timeout: float
    deadline: float = math.inf

    def dumps(self) -> str:
        return _dumps(
            {"family": self.family, "metadata": self.metadata, "timeout": self.timeout},
            strict=True,
        )


def _task_json(task: Task | MediaTask | None) -> dict[str, Any]:
    """``task`` as the stores keep it: its model's name and its fields (``None``: none)."""
    if task is None:
        return {"model": None, "task": None}
    return {"model": type(task).__name__, "task": converter.unstructure(task)}


_READ_ERRORS: Final = (
    errors.APIError,
    errors.APIConnectionError,
    errors.ResponseDecodeError,
    errors.StoreDataError,
)
"""The errors a read ends with (``StoreDataError``: a final state too large for the
store); a stored one of any other class comes back as a plain ``GPTunnelError``."""

_KEPT: Final[dict[type[GPTunnelError], dict[str, Any]]] = {
    APIError: {
        "message": "",
        "status_code": 0,
        "type": None,
        "param": None,
        "code": None,
        "retry_after": None,
    },
    errors.ResponseDecodeError: {"status_code": None, "body": ""},
    errors.APITimeoutError: {"status_code": None},
}
"""The attributes a read error's class documents (beside its text), with what a stored
one lacking them gets: only these are kept and given back."""


def kept_attributes(cls: type) -> dict[str, Any]:
    """The documented attributes of read error class ``cls``, with their defaults."""
    return next((kept for base, kept in _KEPT.items() if issubclass(cls, base)), {})


def read_error_class(kind: str) -> type[GPTunnelError]:
    """The SDK's read error class named ``kind``, or ``GPTunnelError`` for any other name."""
    found = getattr(errors, kind, None)
    usable = isinstance(found, type) and issubclass(found, _READ_ERRORS)
    return found if usable else GPTunnelError  # type: ignore[return-value]


@attrs.frozen
class ReadError:
    """A failed read's error as a store keeps it: its class's name, its text (masked
    already, as the SDK raised it) and the attributes its class documents
    (``status_code``, ``retry_after`` ...). Read back with ``_decode.read_error``, which
    checks them."""

    kind: str
    message: str
    attributes: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def of(cls, error: GPTunnelError) -> ReadError:
        kept = kept_attributes(type(error))
        attributes = {name: getattr(error, name, default) for name, default in kept.items()}
        return cls(type(error).__name__, str(error), attributes)

    def rebuilt(self) -> GPTunnelError:
        """The error again: of its class if it is one of the SDK's read errors (else a
        ``GPTunnelError``), with its text and its class's documented attributes; an
        ``APIError``'s ``issues`` are not kept."""
        cls = read_error_class(self.kind)
        error = cls.__new__(cls)
        error.args = (self.message,)
        kept = kept_attributes(cls)
        vars(error).update(kept | {k: v for k, v in self.attributes.items() if k in kept})
        if isinstance(error, APIError):
            error.issues = ()
        return error

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "attributes": self.attributes}


@attrs.frozen
class LastRead:
    """What a fleet wait saw last, saved with its pacing so that any worker can end it
    with it: the last task read, and the error of the last read if that read failed."""

    task: Task | MediaTask | None = None
    error: ReadError | None = None

    def to_json(self) -> dict[str, Any]:
        return _task_json(self.task) | {
            "error": None if self.error is None else self.error.to_json()
        }


@attrs.frozen
class Outcome:
    """How a watched task ended, and its last state (``None`` if it expired unread);
    ``timeout``: the wait's, and ``error`` its last read's if that failed, for an
    expired one; for an ``"error"`` one, ``error`` is what ended it. Read back with
    ``_decode.outcome``."""

    kind: OutcomeKind
    task: Task | MediaTask | None
    timeout: float = 0.0
    error: ReadError | None = None

    def dumps(self) -> str:
        error = None if self.error is None else self.error.to_json()
        return _dumps(
            {"kind": self.kind, **_task_json(self.task), "timeout": self.timeout, "error": error}
        )


@attrs.frozen
class Claim:
    """A due task a worker holds the lease of: read it, then reschedule or finish it.

    ``now`` is the store's clock at the claim; ``schedule`` the saved pacing (``None``
    before the first read).
    """

    task_id: str
    record: WatchRecord
    schedule: str | None
    now: float


@attrs.frozen
class Entry:
    """A finished task waiting in the store for a handler: ``entry_id`` is the store's
    handle for acknowledging it; ``redelivered``: taken over from a worker that did not
    acknowledge it in time; ``failures``: how many handler attempts on it have failed
    (see ``WatchStore.failed``)."""

    entry_id: str
    task_id: str
    record: WatchRecord | None
    outcome: Outcome | None
    redelivered: bool
    failures: int = 0


@attrs.frozen
class Delivery:
    """A finished task, handed to one handler of the fleet (at least once).

    Attributes:
        task_id: the task watched (read back from the store: the watcher's client's
            API key is masked in it, as in ``task`` and ``last_error``).
        family: its family (``"faceswap"``, ``"media"`` ...), as given to ``watch``.
        metadata: what was given to ``watch`` (JSON: a chat id, a message id ...).
        outcome: ``"done"``, ``"failed"`` (the task says so; ``task.error`` says why),
            ``"expired"`` (the wait's deadline passed first), or ``"error"`` (the API
            said, on two reads in a row, that it does not know the task: a mistyped
            id, another family's task; the ``NotFoundError`` is in ``last_error``).
        task: the final state, or for an expired wait the last state read (``None`` if
            no read succeeded).
        redelivered: a worker took this delivery before but did not finish handling
            it: the handler raised or did not return within ``delivery_timeout``, or
            its worker died; handle it as if new, but expect that it may have already
            acted on it.
        last_error: for an ``"error"`` outcome, the error that ended the wait; for an
            expired wait whose last read failed, that read's error (an unreachable
            host, a 401 ...). Rebuilt from the store: its class, text and the
            attributes its class documents, such as ``status_code``. ``None``
            otherwise.
        attempt: which attempt at handling this finished task this is: 1 the first
            time, then one more after each that failed (the handler raised, or did not
            return within ``delivery_timeout``). A handler a worker never finished
            (the worker died, or closed and cancelled it) is not counted. With the
            watcher's ``max_attempts``, the attempt that reaches it is the last.
        timeout: for an expired wait, the seconds it was given (``watch``'s
            ``timeout``); ``0.0`` otherwise.
    """

    task_id: str
    family: str
    metadata: Any
    outcome: OutcomeKind
    task: Task | MediaTask | None
    redelivered: bool = False
    last_error: GPTunnelError | None = None
    attempt: int = 1
    timeout: float = 0.0

    @property
    def error(self) -> GPTunnelError | None:
        """The error this delivery stands for, as ``watcher.result()`` raises it:
        ``None`` for a done task, else a ``TaskFailedError`` (``"failed"``), the error
        that ended the wait (``"error"``: a ``NotFoundError`` ...), or a
        ``WaitTimeoutError`` (``"expired"``, with ``still_watched`` ``False`` and
        ``last_error`` as its ``__cause__``). The code that turns an error into a
        reply then serves a handler as it serves a wait (the example bot's
        ``replies.friendly_error(delivery.error)``, say). A new error object each time it is read
        (but for ``"error"``, whose error is ``last_error``).
        """
        return outcome_error(self.task_id, self.outcome, self.task, self.timeout, self.last_error)


EXPIRED: Final = "its wait expired: no worker reads it any more; watch it again to wait longer"
"""What a ``WaitTimeoutError`` of an expired fleet wait says of its end."""


def outcome_error(
    task_id: str,
    kind: OutcomeKind,
    task: Task | MediaTask | None,
    timeout: float,
    error: GPTunnelError | None,
) -> GPTunnelError | None:
    """The error a wait's outcome stands for (``None``: a done task); ``error`` is the
    outcome's, rebuilt: what ended an ``"error"`` wait, an expired one's last read's."""
    if kind == "done" and task is not None:
        return None
    if kind == "failed" and task is not None:
        return errors.TaskFailedError(task)
    if kind == "error":
        return error or GPTunnelError(f"the wait for task {task_id} ended with an error")
    expired = errors.WaitTimeoutError(
        task_id, timeout, task, error, still_watched=False, ended=EXPIRED
    )
    expired.__cause__ = error
    return expired


@attrs.frozen
class FleetProgress:
    """A watched task's ``(status, percent)`` changed, or its wait ended (best effort:
    may be missed).

    A read that finds the task still running sends one. When its wait ends (done,
    failed, expired, or an error), each ``progress()`` that had a notice of it gives
    one more, the last: ``ended`` is ``True`` and ``status`` is the outcome
    (``"done"``, ``"failed"``, ``"expired"`` or ``"error"``, as
    [Delivery][gptunnel_async.fleet.Delivery]'s ``outcome``): a progress editor that
    writes the end on it, as the handler that gets the delivery does, ends the
    message on it even when its edits fall behind the notices.
    ``throttle(watcher.progress(), per_task=True)`` holds each task's notices to one
    per interval. Notices are best effort and anyone who may publish on the channel
    may forge one.

    Attributes:
        task_id: the task (the reader's API key masked in it, as in ``status``).
        status: its status as the server sent it.
        percent: 0 to 100.
        metadata: what was given to ``watch``.
        remaining: the predicted seconds until it is done, if its ``percent`` has risen
            enough to tell (see [ProgressEvent][gptunnel_async.ProgressEvent]); ``0.0``
            once it is done.
        ended: the task's wait has ended: this is its last notice, and ``status`` is
            the wait's outcome; ``percent`` is 100 for ``"done"``, else the last one
            seen.
    """

    task_id: str
    status: str
    percent: int
    metadata: Any
    remaining: float | None = None
    ended: bool = False

    def dumps(self) -> str:
        return _dumps(
            {
                "kind": "progress",
                "task_id": self.task_id,
                "status": self.status,
                "percent": self.percent,
                "metadata": self.metadata,
                "remaining": self.remaining,
            }
        )


@attrs.frozen
class Repaired:
    """What one pass of a store's repair did
    ([RepairingStore.repair][gptunnel_async.fleet.RepairingStore.repair]).

    Attributes:
        rescheduled: watched tasks put back into the schedule.
        requeued: finished tasks queued again for a handler.
        clock: the store's clock at the pass, in seconds (Redis ``TIME``); ``None`` if
            the store has none to tell. The watcher compares its advance between passes
            with its own monotonic clock's, and logs a step of the store's clock.
    """

    rescheduled: int = 0
    requeued: int = 0
    clock: float | None = None


@attrs.frozen
class FleetStatus:
    """What an operator watches (``gptunnel-async fleet status``).

    Attributes:
        watched: tasks registered and not finished yet.
        due: of those, the ones whose next read is due now (or whose lease ran out).
        leased: of those, the ones a worker holds the lease of (being read).
        finished_unhandled: finished tasks no handler has acknowledged yet.
        oldest_overdue: seconds the most overdue read is late (``0.0``: none is).
        rate: the budget's current requests per second, if a budget was given.
        dead_letters: entries set aside because this version could not read them (a
            record or outcome another version wrote, say), or whose handler failed
            ``max_attempts`` times: see "Running a fleet".
    """

    watched: int
    due: int
    leased: int
    finished_unhandled: int
    oldest_overdue: float
    rate: float | None = None
    dead_letters: int = 0
