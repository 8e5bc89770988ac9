"""The wait core: what one wait for a task does next, decided without I/O.

A wait is a [WaitState][gptunnel_async._sansio.waiting.WaitState], a small frozen
value. Its driver (``TaskWaiter`` in this process, or a durable watcher elsewhere)
reads the task when the state says, feeds each outcome back with the time it came,
and gets a new state and one decision:

| outcome fed                         | decision                                        |
|-------------------------------------|-------------------------------------------------|
| a task that is done                 | ``Finish``: its event, the last one             |
| a task that failed                  | ``Fail`` with ``TaskFailedError``               |
| any other task                      | ``ReadAt`` the paced time, with an event if      |
|                                     | ``(status, percent)`` changed                   |
| a transient error (network, 408,    | ``ReadAt`` the paced time, or later if the      |
| 429, 500, 502, 503, 504, a body     | server's ``Retry-After`` says so                |
| that is not a task)                 |                                                 |
| any other error (400-404, 409, 501, | ``Fail`` with that error                        |
| TLS, ...)                           |                                                 |
| (any of the above) when the next    | ``ReadAt`` a last read a little before the      |
| read would fall on the deadline, or | deadline (see ``last_read_lead``), if there is  |
| too near it for its answer to come  | room for it; else the paced read if it is       |
| (within ``last_read_lead``)         | before the deadline, or ``TimeOut`` at it       |

Times are seconds on whatever clock the driver uses (the event loop's, or the wall
clock for a wait that moves between processes); the state never reads a clock. Jitter
comes from a seed drawn once from an injected random source, so a state saved with
[WaitState.to_json][gptunnel_async._sansio.waiting.WaitState.to_json] and loaded
elsewhere makes the same next decision.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from typing import Any, Final, Generic, TypeAlias, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from ..errors import (
    APIError,
    ConfigurationError,
    GPTunnelError,
    ResponseDecodeError,
    TaskFailedError,
    WaitTimeoutError,
)
from ..models import TaskLike, converter
from .pacing import MIN_POLL_INTERVAL, Fit, Pace, PollPolicy, next_pause
from .retries import honoured_retry_after, is_transient
from .text import clip

__all__ = [
    "Decision",
    "Fail",
    "Finish",
    "ProgressEvent",
    "ReadAt",
    "TimeOut",
    "WaitState",
    "rides_through",
]

T = TypeVar("T", bound=TaskLike)
T_co = TypeVar("T_co", bound=TaskLike, covariant=True)

STATE_FORMAT: Final = 1
"""The version of :meth:`WaitState.to_json`'s data; loading another one is refused."""


@attrs.frozen
class ProgressEvent(Generic[T_co]):
    """A change in a task's ``(status, percent)`` seen during a wait.

    Attributes:
        task_id: the task waited for.
        status: its status, as the server sent it.
        percent: 0 to 100; never goes backwards within one wait.
        task: the full state that was read: a [Task][gptunnel_async.Task], or a
            [MediaTask][gptunnel_async.MediaTask] when waiting on ``client.media``.
        elapsed: seconds since the wait began; never negative (a wait resumed on a
            clock behind the one it began on shows ``0.0`` until it catches up).
        remaining: the predicted seconds until the task is done, from the rate its
            ``percent`` has risen at (a straight line fitted to the reads since it
            first rose); ``0.0`` on the ``done`` event; ``None`` while ``percent``
            gives nothing to go by (it has not risen twice, or has stopped rising
            past the predicted finish). An estimate, not a promise: say "about 30 s
            left", not "done at 12:04:31".
    """

    task_id: str
    status: str
    percent: int
    task: T_co
    elapsed: float
    remaining: float | None = None

    @property
    def is_done(self) -> bool:
        """This is the last event of a successful wait."""
        return self.task.is_done


@attrs.frozen
class ReadAt(Generic[T]):
    """Read the task again at ``at``; hand ``event`` on first, if there is one.

    Attributes:
        at: when to read, on the driver's clock; always before the deadline.
        event: the change the last read showed, or ``None``.
    """

    at: float
    event: ProgressEvent[T] | None = None


@attrs.frozen
class TimeOut(Generic[T]):
    """Read no more: the wait ends with [WaitState.timed_out][] at ``at``, its deadline.

    Attributes:
        at: the deadline, on the driver's clock (possibly already past).
        event: the change the last read showed, handed on before the wait ends.
    """

    at: float
    event: ProgressEvent[T] | None = None


@attrs.frozen
class Finish(Generic[T]):
    """The task is done: hand ``event`` on (the last one) and return ``event.task``."""

    event: ProgressEvent[T]


@attrs.frozen
class Fail:
    """End the wait now with ``error``: a ``TaskFailedError``, or an error that will not
    heal by polling again (400, 401, 402, 403, 404, TLS, a closed client...)."""

    error: GPTunnelError


Decision: TypeAlias = ReadAt[T] | TimeOut[T] | Finish[T] | Fail
"""What a driver does after feeding an outcome to a [WaitState][]."""


def rides_through(exc: GPTunnelError) -> bool:
    """Whether a wait reads again after ``exc`` (``True``) or ends with it: transient
    failures and answers that are not a task are ridden through until the deadline."""
    return is_transient(exc) or isinstance(exc, ResponseDecodeError)


@attrs.frozen
class WaitState:
    """Everything one wait knows between two reads; see the module for its decisions.

    Build one with :meth:`start`, then feed it each outcome with :meth:`observe` or
    :meth:`failed`. It never changes: each returns a new state.

    Attributes:
        task_id: the task waited for.
        policy: its pacing and deadline (``policy.timeout``, seconds from the start).
        started_at: when the wait began, on the driver's clock.
        seed: names the wait's stream of jitter (see :func:`.pacing.draw`).
        due_at: when the next read is due.
        reads: outcomes fed so far.
        status: the last status seen, or ``None`` before the first task.
        percent: the highest ``percent`` seen (events never go backwards).
        pace: the pacing's memory.
    """

    task_id: str
    policy: PollPolicy
    started_at: float
    seed: int
    due_at: float
    reads: int = 0
    status: str | None = None
    percent: int = 0
    pace: Pace = attrs.field()

    @pace.default
    def _start_pace(self) -> Pace:
        return Pace.start(self.policy)

    @classmethod
    def start(
        cls, task_id: str, policy: PollPolicy, now: float, rng: random.Random | None = None
    ) -> WaitState:
        """A wait that begins at ``now`` and reads at once.

        Args:
            task_id: the task to wait for.
            policy: pacing and deadline.
            now: the time on the driver's clock.
            rng: where the jitter's seed comes from; the ``random`` module by default.
        """
        seed = (rng or random).getrandbits(64)
        return cls(task_id=task_id, policy=policy, started_at=now, seed=seed, due_at=now)

    @property
    def deadline(self) -> float | None:
        """When the wait times out, on the driver's clock; ``None`` for never."""
        timeout = self.policy.timeout
        return None if timeout is None else self.started_at + timeout

    def expired(self, now: float) -> bool:
        """Whether the deadline has come: no read may start at ``now``."""
        deadline = self.deadline
        return deadline is not None and now >= deadline

    def timed_out(
        self, last_seen: TaskLike | None, last_error: GPTunnelError | None = None
    ) -> WaitTimeoutError:
        """The error a wait ends with at its deadline, with the last task it saw and the
        error of its last read, if that read failed."""
        return WaitTimeoutError(self.task_id, self.policy.timeout or 0.0, last_seen, last_error)

    def observe(self, task: T, now: float) -> tuple[WaitState, Decision[T]]:
        """Feed a task read at ``now``; see the module's table for the decision."""
        if task.is_failed:
            state = self._after_read(task.status, self.percent, self.pace, self.due_at)
            return state, Fail(TaskFailedError(task))
        percent = max(self.percent, task.percent)
        elapsed = max(0.0, now - self.started_at)  # a clock behind the saved start's: 0
        if task.is_done:
            done = ProgressEvent(self.task_id, task.status, percent, task, elapsed, 0.0)
            return self._after_read(task.status, percent, self.pace, now), Finish(done)
        pace, due = self._next_read(now, percent, 0.0)
        event: ProgressEvent[T] | None = None
        if (task.status, percent) != (self.status, self.percent) or not self.reads:
            predicted = pace.finish(percent)
            remaining = None if predicted is None else max(0.0, predicted[0] - now)
            event = ProgressEvent(self.task_id, task.status, percent, task, elapsed, remaining)
        decision = self._read_at(due, event, now, 0.0)
        return self._after_read(task.status, percent, pace, decision.at), decision

    def failed(self, error: GPTunnelError, now: float) -> tuple[WaitState, Decision[Any]]:
        """Feed a read that failed at ``now`` with ``error``: read again later if it is
        transient (honouring ``Retry-After``, capped as every retry's is), else fail."""
        if not rides_through(error):
            return self._after_read(self.status, self.percent, self.pace, self.due_at), Fail(error)
        hint = honoured_retry_after(error.retry_after if isinstance(error, APIError) else None)
        pace, due = self._next_read(now, None, hint or 0.0)
        decision: ReadAt[Any] | TimeOut[Any] = self._read_at(due, None, now, hint or 0.0)
        return self._after_read(self.status, self.percent, pace, decision.at), decision

    def _next_read(self, now: float, percent: int | None, at_least: float) -> tuple[Pace, float]:
        """The pacing's new memory, and when the next read is due."""
        pace, pause = next_pause(self.policy, self.pace, now, percent, self.seed)
        return pace, now + max(pause, at_least)

    def read_at(self, due: float, now: float) -> ReadAt[Any] | TimeOut[Any]:
        """The decision to read again at ``due`` (a driver's own pacing, after a read
        at ``now``): as after any read, one last read a little before the deadline
        instead when ``due`` is not before it, or a time-out at the deadline."""
        return self._read_at(due, None, now, 0.0)

    def _read_at(
        self, due: float, event: ProgressEvent[T] | None, now: float, at_least: float
    ) -> ReadAt[T] | TimeOut[T]:
        """Read at ``due``; if that leaves less than :func:`last_read_lead` before the
        deadline for the answer to come, read once more that lead before it (so that a
        task done since the read at ``now`` is seen, rather than reported as not
        finished, or its answer cut short by the deadline), unless that is sooner than
        the lead itself, than ``at_least`` (a ``Retry-After``), or than
        :data:`.pacing.MIN_POLL_INTERVAL` (a timeout under a tenth of a second has a
        lead under it), after ``now``; else read at ``due`` if it is before the
        deadline, or time out at the deadline."""
        deadline = self.deadline
        if deadline is None:
            return ReadAt(due, event)
        lead = last_read_lead(self.policy.timeout or 0.0)
        last = deadline - lead
        if due <= last < deadline:  # room for the answer before the deadline
            return ReadAt(due, event)
        soonest = now + max(lead, at_least, MIN_POLL_INTERVAL)
        if soonest <= last < deadline:  # not when the lead is lost in rounding
            return ReadAt(last, event)
        if due < deadline:  # too near to read at ``last``: the paced read, with less room
            return ReadAt(due, event)
        return TimeOut(deadline, event)

    def _after_read(self, status: str | None, percent: int, pace: Pace, due: float) -> WaitState:
        """This state after one more read (built directly: ``attrs.evolve`` costs a
        read several microseconds more)."""
        return WaitState(
            self.task_id,
            self.policy,
            self.started_at,
            self.seed,
            due,
            self.reads + 1,
            status,
            percent,
            pace,
        )

    def to_json(self) -> dict[str, Any]:
        """This state as plain JSON-able data (dicts, lists, str, numbers, ``None``)."""
        data: dict[str, Any] = converter.unstructure(self)
        data["format"] = STATE_FORMAT
        return data

    @classmethod
    def from_json(cls, data: Any) -> WaitState:
        """A state from :meth:`to_json`'s data, as saved in any process.

        Raises:
            ConfigurationError: ``data`` is not a saved wait state of this format.
        """
        saved_format = data.get("format") if isinstance(data, dict) else None
        if type(saved_format) is not int or saved_format != STATE_FORMAT:
            raise ConfigurationError(f"not a saved wait state of format {STATE_FORMAT}")
        try:
            state = _saved_state_converter().structure(data, cls)
        except cattrs.BaseValidationError as exc:
            reasons = "; ".join(cattrs.transform_error(exc, "state", _reason))
            raise ConfigurationError(f"not a saved wait state: {reasons}") from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigurationError(f"not a saved wait state: {exc}") from None
        impossible = _impossible(state)
        if impossible is not None:
            raise ConfigurationError(f"not a saved wait state: {impossible} no wait has")
        return state


def _exactly(kind: type) -> Any:
    """A structure hook that takes a JSON value of ``kind`` as it is: a saved state is
    written by :meth:`WaitState.to_json`, so a value of another type (a ``null``, a
    ``"50"``, a ``true`` for a number) was not, and is refused rather than read as
    something it never said."""

    def structure(value: Any, _: type) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


def _saved_float(value: Any, _: type) -> float:
    """A finite number, as :meth:`WaitState.to_json` writes a time or a sum (an int too:
    JSON writers may drop a ``.0``)."""
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    number = float(value)  # an int beyond the float range: OverflowError
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {number}")
    return number


def _every_field(conv: cattrs.Converter, cls: type) -> Any:
    """``cls``'s structure hook that refuses an object missing any of its fields: a field
    left out (a state cut short) would otherwise take its default, and the wait would
    resume having silently lost it (its percent, its pacing, its policy)."""
    structure: Callable[[Any, type], Any] = make_dict_structure_fn(cls, conv)
    names = [field.name for field in attrs.fields(cls)]

    def structure_whole(value: Any, _: type) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        missing = [name for name in names if name not in value]
        if missing:
            raise ValueError(f"{cls.__name__} lacks {', '.join(missing)}")
        return structure(value, cls)

    return structure_whole


def _reason(exc: BaseException, _: type | None) -> str:
    """What was wrong with one value of a saved state, for its ``ConfigurationError``:
    short, since a reason may quote the value (an unknown ``strategy``)."""
    return clip(exc) or type(exc).__name__


@functools.cache
def _saved_state_converter() -> cattrs.Converter:
    """The converter that reads a saved state back: every field present, each of the
    type :meth:`WaitState.to_json` writes (unlike the API's lenient converter). Made
    on first use: a converter costs about a millisecond, and most programs load no
    saved state."""
    conv = cattrs.Converter()
    for kind in (int, str, bool):
        conv.register_structure_hook(kind, _exactly(kind))
    conv.register_structure_hook(float, _saved_float)
    conv.register_structure_hook_factory(attrs.has, lambda cls: _every_field(conv, cls))
    return conv


LAST_READ_LEAD_MAX: Final = 1.0
"""Seconds before the deadline that a wait's last read comes at most."""


def last_read_lead(timeout: float) -> float:
    """Seconds before the deadline of a wait of ``timeout`` seconds that its last read
    is made, when the paced next read would come past the deadline: a tenth of the
    timeout, at most :data:`LAST_READ_LEAD_MAX`. Room for the read to be answered (an
    answer usually takes well under a second) before the deadline cuts it short."""
    return min(LAST_READ_LEAD_MAX, timeout / 10)


MAX_CLOCK: Final = 1e12
"""The largest time, in seconds, a saved state's clock may show (about 31,700 years
since its epoch): a wall clock or a monotonic one is far below it."""

_MAX_COUNT: Final = 2**53
"""The most reads (or backoff steps) a saved state may count: every count below it is a
float exactly, as the pacing's sums need."""


def _possible_fit(fit: Fit, reads: int) -> bool:
    """Whether a wait of ``reads`` reads could have this line fit: it has reads in it
    exactly when it has an origin (the read where ``percent`` first rose)."""
    return 0 <= fit.base <= 100 and 0 <= fit.n <= reads and (fit.origin is None) == (fit.n == 0)


def _impossible(state: WaitState) -> str | None:
    """What in ``state`` (loaded from saved JSON, whose types are right) no wait could
    have written, if anything: such values broke the wait that resumed it (a percent of
    a million in its events, a backoff of days, an ``OverflowError`` mid-read)."""
    pace, backoff, fit = state.pace, state.pace.backoff, state.pace.fit
    times = [state.started_at, state.due_at, backoff.due, None if fit is None else fit.origin]
    checks = (
        (0 <= state.reads < _MAX_COUNT, "a count of reads"),
        (0 <= state.percent <= 100, "a percent"),
        (0 <= state.seed < 2**64, "a seed"),
        (all(abs(t) <= MAX_CLOCK for t in times if t is not None), "a time"),
        (-1 <= pace.top <= 100 and -1 <= pace.hold <= 100, "a highest percent"),
        (state.policy.initial <= backoff.growth <= state.policy.max_interval, "a backoff"),
        (0 <= backoff.steps < _MAX_COUNT, "a count of backoff steps"),
        (fit is None or _possible_fit(fit, state.reads), "a line fit"),
    )
    return next((what for fits, what in checks if not fits), None)
