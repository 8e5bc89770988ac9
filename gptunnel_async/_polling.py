"""Waiting for a task: the poll policy, progress events, and the waiter that is both
an awaitable and an async iterator.

The waiter reads the task at once, then again after intervals that grow from
``initial`` by ``multiplier`` up to ``max_interval`` (each jittered), emitting a
:class:`ProgressEvent` whenever ``(status, percent)`` changes. One deadline bounds the
SDK's own time — requests in flight and sleeps — but never the consumer's code between
events.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterator,
)
from typing import Any, Final, Generic, TypeAlias, TypeVar

import attrs

from . import _timing
from ._protocol import is_transient
from ._transport import RETRY_AFTER_CAP
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
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and test(value)):
            raise ConfigurationError(f"{attribute.name} must be {requirement}, got {value!r}")

    return validate


_positive = _number_check("a finite number > 0", lambda value: value > 0)


@attrs.frozen
class PollPolicy:
    """How a wait paces its reads, and how long it may take in all.

    The defaults suit a chat bot and a service alike:

    - ``initial=1.0``: the first read is immediate; the second a second later, so a
      user sees the first progress step quickly.
    - ``multiplier=1.5``: intervals grow gently (1, 1.5, 2.25, 3.4 ... s), so short
      tasks are seen finishing soon and long ones cost few requests.
    - ``max_interval=10.0``: a long task is read every ~10 s at most, so ``done`` is
      noticed within that and a two-minute task costs ~20 requests rather than 120.
    - ``jitter=0.1``: each wait lies within ±10 % of its value, so thousands of
      waits started together do not poll in lockstep.
    - ``timeout=600.0``: ten minutes bounds every wait; media and Midjourney jobs
      finish well within it, and a stuck task never hangs a handler forever.
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

    def __attrs_post_init__(self) -> None:
        if self.max_interval < self.initial:
            raise ConfigurationError(
                f"max_interval ({self.max_interval!r}) must not be below initial ({self.initial!r})"
            )

    def intervals(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between reads, forever: growing, capped, each within ±jitter."""
        uniform = (rng or random).uniform
        nominal = self.initial
        while True:
            yield nominal * uniform(1 - self.jitter, 1 + self.jitter)
            nominal = min(nominal * self.multiplier, self.max_interval)


@attrs.frozen
class ProgressEvent(Generic[T]):
    """A change in a task's ``(status, percent)`` seen during a wait.

    ``percent`` never goes backwards within one wait; ``elapsed`` is seconds since the
    wait began; ``task`` is the full state that was read (a :class:`~gptunnel_async.Task`,
    or a :class:`~gptunnel_async.MediaTask` when waiting on ``client.media``).
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
"""``on_progress``: a plain function or a coroutine function taking a :class:`ProgressEvent`."""


def _worth_polling_again(exc: GPTunnelError) -> bool:
    """Whether a failed read should end the wait (no) or just be tried at the next poll."""
    return is_transient(exc) or isinstance(exc, ResponseDecodeError)


class TaskWaiter(Coroutine[Any, Any, T], AsyncIterator[ProgressEvent[T]]):
    """The result of ``wait_for_result``: await it for the final task, or iterate it with
    ``async for`` to get each :class:`ProgressEvent`, the ``done`` one last.

    It is a real :class:`collections.abc.Coroutine`, so ``asyncio.create_task``,
    ``gather`` and ``wait_for`` accept it. Use it in one mode, once. Every family waits
    through this one class; ``fetch`` reads the family's task once.
    """

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
        self._events: AsyncGenerator[ProgressEvent[T]] | None = None
        self._reads = 0
        self._coroutine: Coroutine[Any, Any, T] | None = None

    def __repr__(self) -> str:
        return f"<TaskWaiter task_id={self.task_id!r} timeout={self.timeout!r}>"

    # -- async iterator -------------------------------------------------------------

    def __aiter__(self) -> TaskWaiter[T]:
        return self

    async def __anext__(self) -> ProgressEvent[T]:
        if self._coroutine is not None:
            raise UsageError("this waiter is already being awaited; iterate a new one")
        if self._events is None:
            self._events = self._run()
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop an ``async for`` wait early and release what it holds."""
        if self._events is not None:
            await self._events.aclose()

    # -- coroutine ------------------------------------------------------------------

    def _as_coroutine(self) -> Coroutine[Any, Any, T]:
        if self._coroutine is None:
            if self._events is not None:
                raise UsageError("this waiter is already being iterated; await a new one")
            self._coroutine = self._final_task()
        return self._coroutine

    def __await__(self) -> Generator[Any, None, T]:
        return self._as_coroutine().__await__()

    def send(self, value: Any) -> Any:
        return self._as_coroutine().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any:
        if val is None and tb is None:
            return self._as_coroutine().throw(typ)
        return self._as_coroutine().throw(typ, val, tb)

    def close(self) -> None:
        if self._coroutine is not None:
            self._coroutine.close()

    async def _final_task(self) -> T:
        self._events = self._run()
        final: T | None = None
        async for event in self._events:
            final = event.task
        assert final is not None, "a wait ends with a done event or an exception"
        return final

    # -- the polling loop -----------------------------------------------------------

    async def _run(self) -> AsyncGenerator[ProgressEvent[T]]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = None if self.timeout is None else started + self.timeout
        intervals = self.policy.intervals()
        last_seen: T | None = None
        last_key: tuple[str, int] | None = None
        percent = 0
        next_read = started

        while True:
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeoutError(self.task_id, self.timeout or 0.0, last_seen)
            bounded = asyncio.timeout_at(deadline)
            try:
                async with bounded:
                    task, next_read = await self._read_when_due(next_read, intervals, loop)
            except TimeoutError:
                # Only the deadline's own expiry is a WaitTimeoutError; asking the timeout
                # rather than the clock stays exact when the deadline lands on a wake-up.
                if bounded.expired():
                    raise WaitTimeoutError(self.task_id, self.timeout or 0.0, last_seen) from None
                raise
            last_seen = task
            if task.is_failed:
                raise TaskFailedError(task)
            percent = max(percent, task.percent)
            if (task.status, percent) == last_key:
                continue
            last_key = (task.status, percent)
            event = ProgressEvent(
                task_id=self.task_id,
                status=task.status,
                percent=percent,
                task=task,
                elapsed=loop.time() - started,
            )
            await self._notify(event)
            yield event
            if task.is_done:
                return

    async def _read_when_due(
        self, due: float, intervals: Iterator[float], loop: asyncio.AbstractEventLoop
    ) -> tuple[T, float]:
        """Sleep until ``due``, read the task, and say when the next read is due.

        A transient failure (network, 408/429/5xx, a body that is not a task) is
        logged and read again later; any other error ends the wait.
        """
        while True:
            await _timing.sleep(max(0.0, due - loop.time()))
            pause = next(intervals)
            self._reads += 1
            try:
                task = await self._fetch()
            except GPTunnelError as exc:
                if not _worth_polling_again(exc):
                    raise
                hint = exc.retry_after if isinstance(exc, APIError) else None
                if hint is not None:
                    pause = max(pause, min(hint, RETRY_AFTER_CAP))
                logger.warning(
                    "task %s: read failed (%s); polling again in %.2fs", self.task_id, exc, pause
                )
                due = loop.time() + pause
                continue
            logger.debug(
                "task %s: status=%s percent=%d read=%d next_wait=%.2fs",
                self.task_id,
                task.status,
                task.percent,
                self._reads,
                pause,
            )
            return task, loop.time() + pause

    async def _notify(self, event: ProgressEvent[T]) -> None:
        if self._on_progress is None:
            return
        outcome = self._on_progress(event)
        if inspect.isawaitable(outcome):
            await outcome
