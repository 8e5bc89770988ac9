"""Progress a chat can take: ``throttle`` passes on a wait's events at most once per
interval, never two alike in a row, and always the last one.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Generic, TypeVar

from . import _checks, _timing
from ._polling import ProgressEvent, TaskWaiter
from ._sansio.throttle import ThrottleGate
from .errors import ConfigurationError
from .models import TaskLike

__all__ = ["throttle"]

T = TypeVar("T", bound=TaskLike)
E = TypeVar("E")


async def throttle(
    events: AsyncIterable[ProgressEvent[T]],
    every: float = 1.0,
    *,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[ProgressEvent[T]]:
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

    Leaving the loop early closes the wait; an error the wait raises (a failed task, a
    timeout) is raised here. Under ``instant_waits()`` (tests) the interval is skipped,
    like the SDK's other pauses.

    Args:
        events: progress events, usually a ``wait_for_result(...)`` waiter.
        every: the shortest time between two events delivered, in seconds (>= 0).
        clock: the time in seconds, for tests; the event loop's clock by default.

    Yields:
        [ProgressEvent][gptunnel_async.ProgressEvent]s, in their order, the last one last.

    Raises:
        ConfigurationError: ``every`` is negative, NaN or infinite, ``events`` is not
            an async iterator or ``clock`` not a function.
        GPTunnelError: whatever the wait raises, as it raises it.
    """
    try:
        interval = _checks.non_negative_number("every", every, "a finite number of seconds >= 0")
        if not hasattr(events, "__aiter__"):
            raise ConfigurationError(
                f"events must be a wait or another async iterator, got {_checks.describe(events)}"
            )
        now = _checks.optional(_checks.function, "clock", clock) or asyncio.get_running_loop().time
    except ConfigurationError:
        if isinstance(events, TaskWaiter):  # refused with us: not a wait forgotten
            events.close()
        raise
    gate: ThrottleGate[ProgressEvent[T]] = ThrottleGate(0.0 if _timing.is_instant() else interval)
    reads = _Reads(aiter(events))
    try:
        while (read := await reads.next_within(gate.due_in(now()))) is not _Read.ENDED:
            if read is _Read.DUE:  # the held event's time has come
                ready = gate.take(now())
            else:
                ready = gate.offer(read, (read.status, read.percent), now())
            if ready is not None:
                yield ready
        last_wait = gate.due_in(now())
        if last_wait is not None:  # the last event is held: it goes once the interval is over
            await asyncio.sleep(last_wait)
            yield gate.release(now())
    finally:
        await reads.aclose()


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
        """
        if self._step is None:
            self._step = asyncio.ensure_future(anext(self._source))
        done, _ = await asyncio.wait((self._step,), timeout=timeout)
        if not done:
            return _Read.DUE
        finished, self._step = self._step, None
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
