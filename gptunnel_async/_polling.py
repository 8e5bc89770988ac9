"""Waiting for a task: the poll policy, progress events, and the waiter that is both
an awaitable and an async iterator.

The waiter reads the task at once, then again after intervals that grow from
``initial`` by ``multiplier`` up to ``max_interval`` (each jittered); once ``percent``
rises, the predictive strategy aims the next read at the predicted finish instead. It
emits a :class:`ProgressEvent` whenever ``(status, percent)`` changes. One deadline
bounds the SDK's own time — requests in flight and sleeps — but never the consumer's
code between events.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import types
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterator,
)
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

import attrs

from . import _timing
from ._checks import describe, number
from ._sansio.retries import honoured_retry_after, is_transient
from .errors import (
    APIError,
    ConfigurationError,
    GPTunnelError,
    ResponseDecodeError,
    TaskFailedError,
    UsageError,
    WaitTimeoutError,
)
from .models import TaskLike

__all__ = ["POLICY_TIMEOUT", "PollPolicy", "ProgressCallback", "ProgressEvent", "TaskWaiter"]

T = TypeVar("T", bound=TaskLike)

logger = logging.getLogger("gptunnel_async")

POLICY_TIMEOUT: Final[Any] = object()
"""Marks "no timeout given": ``None`` is a real value (no deadline at all)."""


def _number_check(
    requirement: str, test: Callable[[float], bool], *, allow_none: bool = False
) -> Callable[..., None]:
    """An attrs validator: a finite real number that passes ``test``, else a ``ValueError``."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and allow_none:
            return
        number(attribute.name, value, requirement, test)

    return validate


_positive = _number_check("a finite number > 0", lambda value: value > 0)

Strategy: TypeAlias = Literal["predictive", "exponential"]
"""How a wait times its reads: see [PollPolicy][gptunnel_async.PollPolicy]."""

STRATEGIES: Final[tuple[Strategy, ...]] = ("predictive", "exponential")


def _known_strategy(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in STRATEGIES:
        raise ConfigurationError(
            f"{attribute.name} must be one of {STRATEGIES}, got {describe(value)}"
        )


@attrs.frozen
class PollPolicy:
    """How a wait paces its reads, and how long it may take in all.

    The first read is immediate; the next comes ``initial`` seconds later, and each
    pause after that is ``multiplier`` times longer, up to ``max_interval``, each
    varied by ±``jitter`` -- until ``percent`` rises and the predictive strategy aims
    the reads at the predicted finish. The defaults suit a chat bot and a service alike.

    Attributes:
        initial: seconds before the second read (> 0). Default ``1.0``: a user sees
            the first progress step quickly.
        multiplier: how much each pause grows (>= 1). Default ``1.5``: intervals grow
            gently (1, 1.5, 2.25, 3.4 ... s), so short tasks are seen finishing soon
            and long ones cost few requests.
        max_interval: the longest pause, in seconds (>= ``initial``). Default ``10.0``:
            ``done`` is noticed within that, and a two-minute task costs ~20 requests
            rather than 120.
        jitter: each pause lies within ±``jitter`` of its value (0 <= jitter < 1).
            Default ``0.1``: waits started together do not poll in lockstep.
        timeout: the deadline of one wait in seconds (> 0), or ``None`` for none.
            Default ``600.0``: media and Midjourney jobs finish well within it, and a
            stuck task never hangs a handler forever.
        strategy: ``"predictive"`` (the default) or ``"exponential"``. Predictive: once
            ``percent`` has risen between two reads, the rate of that rise predicts the
            finish. While it is more than ``max_interval`` away the wait reads every
            ``max_interval``; then it aims the next read at the predicted finish (never
            before ``initial``, and only later within ``jitter``), so a two-minute task
            costs under twenty requests and its ``done`` is still seen within a second
            or two. If the finish is overdue, waits grow again from ``initial`` by
            ``multiplier``. A task whose ``percent`` does not move (media tasks report
            none) is polled exactly as ``"exponential"``, the plain backoff above.

    Raises:
        ConfigurationError: a value out of range, NaN or infinite, or an unknown
            strategy (it is also a ``ValueError``).
    """

    initial: float = attrs.field(default=1.0, validator=_positive)
    multiplier: float = attrs.field(
        default=1.5, validator=_number_check("a finite number >= 1", lambda value: value >= 1)
    )
    max_interval: float = attrs.field(default=10.0, validator=_positive)
    jitter: float = attrs.field(
        default=0.1, validator=_number_check("a fraction, 0 <= jitter < 1", lambda v: 0 <= v < 1)
    )
    timeout: float | None = attrs.field(
        default=600.0,
        validator=_number_check("a finite number > 0, or None", lambda v: v > 0, allow_none=True),
    )
    strategy: Strategy = attrs.field(default="predictive", validator=_known_strategy)

    def __attrs_post_init__(self) -> None:
        if self.max_interval < self.initial:
            raise ConfigurationError(
                f"max_interval ({describe(self.max_interval)}) must not be below initial "
                f"({describe(self.initial)})"
            )

    def intervals(self, rng: random.Random | None = None) -> Iterator[float]:
        """The exponential pauses between reads, forever: growing, capped, each within
        ±jitter (what every strategy does while ``percent`` gives nothing to go by).

        Args:
            rng: the source of jitter; defaults to the ``random`` module's.

        Yields:
            Seconds to wait before each read after the first.
        """
        pacing = Pacing(self, rng)
        while True:
            yield pacing.next_wait(0.0, None)


class Pacing:
    """The waits between the reads of one wait, as its policy's strategy times them.

    Call :meth:`next_wait` after each read with the time and the (never falling)
    ``percent``; pass ``None`` for a read that failed.
    """

    __slots__ = ("_growth", "_policy", "_predict", "_rise_from", "_uniform")

    def __init__(self, policy: PollPolicy, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._uniform = (rng or random).uniform
        self._predict = policy.strategy == "predictive"
        self._growth = policy.initial
        """The next exponential wait, nominal: grows by ``multiplier`` each time it is used."""
        self._rise_from: tuple[float, int] | None = None
        """(time, percent) of the first read that showed progress: the rate's starting point."""

    def next_wait(self, now: float, percent: int | None) -> float:
        """Seconds until the next read, after a read at ``now`` that saw ``percent``."""
        policy = self._policy
        jitter = policy.jitter
        finish_in = self._finish_in(now, percent) if self._predict else None
        if finish_in is None:
            return self._grown() * self._uniform(1 - jitter, 1 + jitter)
        if finish_in >= policy.max_interval:
            self._growth = policy.initial
            return policy.max_interval * self._uniform(1 - jitter, 1 + jitter)
        if finish_in > policy.initial:
            self._growth = policy.initial
            return finish_in * self._uniform(1, 1 + jitter)  # late rather than early
        return self._grown() * self._uniform(1, 1 + jitter)  # due or overdue: back off again

    def _grown(self) -> float:
        nominal = self._growth
        self._growth = min(nominal * self._policy.multiplier, self._policy.max_interval)
        return nominal

    def _finish_in(self, now: float, percent: int | None) -> float | None:
        """Seconds until ``percent`` reaches 100 at the rate it has risen, if it has."""
        if percent is None or percent <= 0:
            return None
        if self._rise_from is None:
            self._rise_from = (now, percent)
            return None
        since, from_percent = self._rise_from
        if percent <= from_percent or now <= since:
            return None
        rate = (percent - from_percent) / (now - since)
        return (100 - percent) / rate


@attrs.frozen
class ProgressEvent(Generic[T]):
    """A change in a task's ``(status, percent)`` seen during a wait.

    Attributes:
        task_id: the task waited for.
        status: its status, as the server sent it.
        percent: 0 to 100; never goes backwards within one wait.
        task: the full state that was read: a [Task][gptunnel_async.Task], or a
            [MediaTask][gptunnel_async.MediaTask] when waiting on ``client.media``.
        elapsed: seconds since the wait began.
    """

    task_id: str
    status: str
    percent: int
    task: T
    elapsed: float

    @property
    def is_done(self) -> bool:
        """This is the last event of a successful wait."""
        return self.task.is_done


ProgressCallback: TypeAlias = Callable[[ProgressEvent[T]], Awaitable[None] | None]
"""``on_progress``: a plain function or a coroutine function taking a [ProgressEvent][]."""


def _worth_polling_again(exc: GPTunnelError) -> bool:
    """Whether a failed read should end the wait (no) or just be tried at the next poll."""
    return is_transient(exc) or isinstance(exc, ResponseDecodeError)


class _Handoff:
    """What the polling loop awaits to give ``async for`` an event: the waiter's
    ``__anext__`` catches it on its way to the event loop and returns the event."""

    __slots__ = ("event",)

    def __init__(self, event: ProgressEvent[Any]) -> None:
        self.event = event

    def __await__(self) -> Generator[Any, None, None]:
        yield self


_Mode: TypeAlias = Literal["unused", "awaited", "iterated", "stepping"]
"""How a waiter is used: not yet, awaited, or iterated (between events, or in a step)."""


class TaskWaiter(Coroutine[Any, Any, T], AsyncIterator[ProgressEvent[T]]):
    """The result of ``wait_for_result``: await it for the done task, or iterate it with
    ``async for`` to get each [ProgressEvent][], the ``done`` one last.

    It is a real ``collections.abc.Coroutine``, so ``asyncio.create_task``, ``gather``
    and ``wait_for`` accept it. Use it once, in one mode: awaiting a waiter that is
    being iterated or was already awaited, or the other way round, raises
    ``UsageError``. Every family waits through this one class; you get one from a
    ``wait_for_result`` rather than building it. It keeps little while it sleeps
    (slots, one coroutine frame for the polling loop in either mode), so a bot can hold
    thousands of waits at once.

    Args:
        task_id: the task to wait for.
        fetch: reads the task once (its request built once for the whole wait).
        policy: the pacing and deadline.
        timeout: overrides the policy's deadline (``None``: no deadline).
        on_progress: called with each event, in both modes; may be async.

    Raises:
        TaskFailedError: (when awaited or iterated) the task failed.
        WaitTimeoutError: (when awaited or iterated) the deadline passed.
        APIError: (when awaited or iterated) an error that is not transient, such as
            400, 401, 402, 403 or 404.
    """

    __slots__ = (
        "_fetch",
        "_mode",
        "_on_progress",
        "_polling",
        "_reads",
        "policy",
        "task_id",
        "timeout",
    )

    def __init__(
        self,
        task_id: str,
        fetch: Callable[[], Awaitable[T]],
        *,
        policy: PollPolicy,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback[T] | None = None,
    ) -> None:
        self.task_id = task_id
        self.policy = policy if timeout is POLICY_TIMEOUT else attrs.evolve(policy, timeout=timeout)
        self.timeout = self.policy.timeout
        self._fetch = fetch
        self._on_progress = on_progress
        self._reads = 0
        self._mode: _Mode = "unused"
        self._polling: Coroutine[Any, Any, T] | None = None
        """The polling loop, once the waiter is first awaited or iterated."""

    def __repr__(self) -> str:
        return f"<TaskWaiter task_id={self.task_id!r} timeout={self.timeout!r}>"

    def _start(self, mode: Literal["awaited", "iterated"]) -> Coroutine[Any, Any, T]:
        """The polling loop, started in ``mode`` on first use; ``UsageError`` in the other."""
        if self._polling is None:
            self._mode = mode
            self._polling = self._poll()
        elif mode == "awaited" and self._mode != "awaited":
            raise UsageError("this waiter is already being iterated; await a new one")
        elif mode == "iterated" and self._mode == "awaited":
            raise UsageError("this waiter is already being awaited; iterate a new one")
        return self._polling

    # -- async iterator -------------------------------------------------------------

    def __aiter__(self) -> TaskWaiter[T]:
        return self

    async def __anext__(self) -> ProgressEvent[T]:
        # A real coroutine around the step: since Python 3.12, asyncio.create_task takes
        # nothing else, and ``create_task(anext(waiter))`` is a fair thing to write.
        return await self._next_event()

    @types.coroutine
    def _next_event(self) -> Generator[Any, Any, ProgressEvent[T]]:
        # The polling loop is a coroutine, driven here as ``await`` would drive it but
        # stopped at each event it hands over: an async generator would cost every wait
        # a weakref in the event loop's set of them, and awaiting it another coroutine.
        polling = self._start("iterated")
        if self._mode == "stepping":
            raise UsageError("this waiter is already waiting for its next event")
        if inspect.getcoroutinestate(polling) == inspect.CORO_CLOSED:
            raise StopAsyncIteration
        self._mode = "stepping"
        try:
            resume: Callable[[Any], Any] = polling.send
            value: Any = None
            while True:
                try:
                    awaited = resume(value)
                except StopIteration:
                    raise StopAsyncIteration from None
                if isinstance(awaited, _Handoff):
                    event: ProgressEvent[T] = awaited.event
                    return event
                try:
                    value, resume = (yield awaited), polling.send
                except BaseException as exc:  # cancellation too: the loop gets it, as in await
                    value, resume = exc, polling.throw
        finally:
            self._mode = "iterated"

    async def aclose(self) -> None:
        """Stop an ``async for`` wait early and release what it holds.

        ``contextlib.aclosing(waiter)`` calls it for you when its block ends.

        Raises:
            UsageError: a step of the iteration is still waiting for its next event;
                cancel that step instead.
        """
        if self._mode == "stepping":
            raise UsageError("this waiter is waiting for its next event; cancel that instead")
        if self._mode == "iterated" and self._polling is not None:
            self._polling.close()

    # -- coroutine ------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, T]:
        polling = self._start("awaited")
        if inspect.getcoroutinestate(polling) == inspect.CORO_CLOSED:
            raise UsageError("this waiter was already awaited; call wait_for_result again")
        return polling.__await__()

    def send(self, value: Any) -> Any:
        """The coroutine protocol, for the event loop: resume the wait with ``value``.

        Args:
            value: what the awaited future produced.

        Returns:
            What the wait awaits next.
        """
        return self._start("awaited").send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any:
        """The coroutine protocol, for the event loop: raise an exception inside the wait.

        Args:
            typ: the exception (or its type).
            val: the exception's value, in the legacy three-argument form.
            tb: its traceback, in the legacy three-argument form.

        Returns:
            What the wait awaits next, if it handles the exception.
        """
        if val is None and tb is None:
            return self._start("awaited").throw(typ)
        return self._start("awaited").throw(typ, val, tb)

    def close(self) -> None:
        """The coroutine protocol: close an awaited wait that will not be resumed."""
        if self._mode == "awaited" and self._polling is not None:
            self._polling.close()

    # -- the polling loop -----------------------------------------------------------

    async def _poll(self) -> T:
        """Read until the task is done; return it. Each change of ``(status, percent)``
        goes to ``on_progress`` and, when iterated, is handed over to ``async for``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = None if self.timeout is None else started + self.timeout
        pacing = Pacing(self.policy)
        last_seen: T | None = None
        last_status: str | None = None
        percent = last_percent = 0
        due = started

        while True:
            # Sleep no further than the deadline, then read within it. A sleeping wait
            # holds no timer but its sleep's: only the read needs a timeout around it.
            now = loop.time()
            if deadline is not None and now >= deadline:
                raise WaitTimeoutError(self.task_id, self.timeout or 0.0, last_seen)
            wake = due if deadline is None else min(due, deadline)
            await _timing.sleep(max(0.0, wake - now))
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeoutError(self.task_id, self.timeout or 0.0, last_seen)
            # The read is spelled out here rather than in a coroutine of its own: with
            # many waits started at once, each queued read would hold that frame too.
            bounded = asyncio.timeout_at(deadline)
            try:
                async with bounded:
                    self._reads += 1
                    task = await self._fetch()
            except TimeoutError:
                # Only the deadline's own expiry is a WaitTimeoutError; asking the timeout
                # rather than the clock stays exact when the deadline lands on a wake-up.
                if bounded.expired():
                    raise WaitTimeoutError(self.task_id, self.timeout or 0.0, last_seen) from None
                raise
            except GPTunnelError as exc:
                # A transient failure (network, 408/429/5xx, a body that is not a task) is
                # logged and read again later; any other error ends the wait.
                if not _worth_polling_again(exc):
                    raise
                pause = pacing.next_wait(loop.time(), None)
                hint = honoured_retry_after(exc.retry_after if isinstance(exc, APIError) else None)
                if hint is not None:
                    pause = max(pause, hint)
                logger.warning(
                    "task %s: read failed (%s); polling again in %.2fs", self.task_id, exc, pause
                )
                due = loop.time() + pause
                continue
            finally:
                del bounded  # spent: a sleeping wait holds no timeout
            last_seen = task
            if task.is_failed:
                raise TaskFailedError(task)
            percent = max(percent, task.percent)
            now = loop.time()
            pause = pacing.next_wait(now, percent)
            due = now + pause
            logger.debug(
                "task %s: status=%s percent=%d read=%d next_wait=%.2fs",
                self.task_id,
                task.status,
                task.percent,
                self._reads,
                pause,
            )
            if task.status == last_status and percent == last_percent:
                continue
            last_status, last_percent = task.status, percent
            event = ProgressEvent(
                task_id=self.task_id,
                status=task.status,
                percent=percent,
                task=task,
                elapsed=now - started,
            )
            await self._notify(event)
            if self._mode != "awaited":
                await _Handoff(event)
            if task.is_done:
                return task
            del event  # a sleeping wait keeps its last task, not the event around it

    async def _notify(self, event: ProgressEvent[T]) -> None:
        if self._on_progress is None:
            return
        outcome = self._on_progress(event)
        if inspect.isawaitable(outcome):
            await outcome
