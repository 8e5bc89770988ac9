"""Progress a chat can take: ``throttle`` passes on a wait's events at most once per
interval, never two alike in a row, and always the last one.
"""

from __future__ import annotations

import asyncio
import enum
import weakref
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

from . import _checks, _timing
from ._polling import TaskWaiter
from ._sansio.throttle import ThrottleGates
from .errors import ConfigurationError, UsageError

__all__ = ["throttle"]


class Progress(Protocol):
    """What ``throttle`` reads of an event: a [ProgressEvent][gptunnel_async.ProgressEvent]
    of a wait, or a [FleetProgress][gptunnel_async.fleet.FleetProgress] of a fleet."""

    @property
    def task_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def percent(self) -> int: ...


P = TypeVar("P", bound=Progress)
E = TypeVar("E")


def throttle(
    events: AsyncIterable[P],
    every: float = 1.0,
    *,
    per_task: bool = False,
    clock: Callable[[], float] | None = None,
) -> AsyncGenerator[P, None]:
    """``events``, at most one per ``every`` seconds, never two alike, the last one always.

    Made for chat messages: Telegram allows about one edit of a message per second and
    refuses an edit that changes nothing. An event that comes sooner than ``every``
    after the last one delivered is held, and replaced by any newer one; the held
    event goes as soon as the interval has passed. Events alike the last one
    delivered (the same ``status`` and ``percent``) are dropped. The wait keeps
    reading while your code handles an event, so a slow edit never delays it.

    ```python
    from gptunnel_async import throttle

    async for event in throttle(client.wait_for_result(task_id), every=1.0):
        print(f"{event.percent} %")  # edit the chat message here
    ```

    With ``per_task=True`` each task is throttled on its own, for a stream that mixes
    many tasks: a fleet's ``watcher.progress()``, one chat message per task.

    ```python
    from gptunnel_async.fleet import Watcher


    async def edit_progress(watcher: Watcher) -> None:
        async for notice in throttle(watcher.progress(), every=2.0, per_task=True):
            print(f"{notice.metadata['chat_id']}: {notice.percent} %")  # edit its message
    ```

    Leaving the loop closes the wait once the generator is closed: at once with
    ``contextlib.aclosing(throttle(...))`` or ``await events.aclose()``, else when it is
    dropped. An error the wait raises (a failed task, a timeout) is raised here. Under
    ``instant_waits()`` (tests) the interval is skipped, like the SDK's other pauses.

    Args:
        events: progress events, usually a ``wait_for_result(...)`` waiter or a
            fleet's ``watcher.progress()``.
        every: the shortest time between two events delivered (of one task, with
            ``per_task``), in seconds, from 0 to 86400 (a day): not milliseconds,
            ``every=1000`` holds the ``done`` event up to 1000 s.
        per_task: throttle each ``task_id``'s events on their own.
        clock: the time in seconds, for tests; the event loop's clock by default.

    Yields:
        The events, in their order (each task's in its order, with ``per_task``), the
        last one (of each task) last.

    Raises:
        ConfigurationError: ``every`` is negative, over a day, NaN or infinite, ``events`` is not
            an async iterator, ``per_task`` is not a bool, or ``clock`` is not a plain
            function (an ``async def`` one, say) or gives no number of seconds.
        GPTunnelError: whatever the wait raises, as it raises it.

    A wait handed over and never read (the generator closed or dropped before its
    first step) is closed with it, as dropped on purpose: no "never awaited" warning.
    """
    throttled = _throttled(events, every, per_task, clock)
    if isinstance(events, TaskWaiter):
        weakref.finalize(throttled, _drop_if_unread, events)
    return throttled


def _drop_if_unread(waiter: TaskWaiter[Any]) -> None:
    """Close ``waiter`` if ``throttle`` never began to read it: it was handed over, not
    forgotten (a wait that began is closed by ``throttle`` itself)."""
    if waiter._never_started():
        waiter.close()


async def _throttled(
    events: AsyncIterable[P], every: float, per_task: bool, clock: Callable[[], float] | None
) -> AsyncGenerator[P, None]:
    """:func:`throttle`'s events."""
    interval, now = _arguments(events, every, per_task, clock)
    gates: ThrottleGates[P] = ThrottleGates(0.0 if _timing.is_instant() else interval)
    reads = _Reads(aiter(events))
    try:
        while (read := await reads.next_within(gates.due_in(now()))) is not _Read.ENDED:
            if read is _Read.DUE:  # a held event's time has come
                for ready in gates.take(now()):
                    yield ready
                continue
            offered = gates.offer(_stream(read, per_task), read, _alike(read), now())
            if offered is not None:
                yield offered
        waited = 0.0  # the last events held go once their interval is over
        for due_in, last in gates.drain(now()):
            if due_in > waited:
                await asyncio.sleep(due_in - waited)
                waited = due_in
            yield last
    finally:
        await reads.aclose()


def _arguments(
    events: object, every: object, per_task: object, clock: object
) -> tuple[float, Callable[[], float]]:
    """``throttle``'s interval and clock, its arguments checked; a wait given with bad
    arguments is closed, for it was handed over, not forgotten.

    Raises:
        ConfigurationError: see ``throttle``.
    """
    try:
        interval = _checks.pause_within_a_day("every", every)
        if not hasattr(events, "__aiter__"):
            raise ConfigurationError(
                f"events must be a wait or another async iterator, got {_checks.describe(events)}"
            )
        _checks.instance_of(bool)("per_task", per_task)
        now = _checks.optional(_checks.clock, "clock", clock) or asyncio.get_running_loop().time
    except ConfigurationError:
        if isinstance(events, TaskWaiter):
            events.close()
        raise
    return interval, now


def _stream(event: Progress, per_task: bool) -> Hashable:
    """The events ``event`` is throttled with: its task's, or all of them."""
    return event.task_id if per_task else None


def _alike(event: Progress) -> Hashable:
    """What makes two events of a task alike: Telegram refuses an edit that changes nothing."""
    return (event.status, event.percent)


class _Read(enum.Enum):
    """What a read brought other than an event."""

    DUE = "due"
    """The time given passed first: a held event may go."""
    ENDED = "ended"
    """The source has no more events."""


class _Reads(Generic[E]):
    """The source's next item, read in the background so that a read cut short by the
    held event's time is not lost: the next call picks it up."""

    __slots__ = ("_source", "_step")

    def __init__(self, source: AsyncIterator[E]) -> None:
        self._source = source
        self._step: asyncio.Future[E] | None = None

    async def next_within(self, timeout: float | None) -> E | _Read:
        """The next item; ``DUE`` if ``timeout`` seconds pass first; ``ENDED`` at the end.

        Raises:
            Exception: whatever the source raises, as it raises it.
            UsageError: the read was cancelled, though the caller was not (the source's
                own code cancelled the task reading it): a ``CancelledError`` would read
                as the caller's cancellation.
        """
        if self._step is None:
            self._step = asyncio.ensure_future(anext(self._source))
        done, _ = await asyncio.wait((self._step,), timeout=timeout)
        if not done:
            return _Read.DUE
        finished, self._step = self._step, None
        if finished.cancelled():  # not by the caller: its own cancellation comes at the wait
            raise UsageError(
                "a read of the next event was cancelled from within (an on_progress that "
                "cancelled the asyncio task it runs in?), not by the code iterating "
                "throttle(); to stop the wait, leave the loop or cancel that code"
            )
        try:
            return finished.result()
        except StopAsyncIteration:
            return _Read.ENDED

    async def aclose(self) -> None:
        """Stop the read in flight, then close the source (a waiter closes its wait)."""
        if self._step is not None:
            self._step.cancel()
            await asyncio.gather(self._step, return_exceptions=True)  # its outcome is not wanted
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()
