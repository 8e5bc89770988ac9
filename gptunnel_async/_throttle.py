"""Progress a chat can take: ``throttle`` passes on a wait's events at most once per
interval, never two alike in a row, and always the last one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

from . import _timing
from ._polling import ProgressEvent
from ._sansio.throttle import ThrottleGate
from .errors import ConfigurationError
from .models import TaskLike

__all__ = ["throttle"]

T = TypeVar("T", bound=TaskLike)


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
        ConfigurationError: ``every`` is negative, NaN or infinite.
        GPTunnelError: whatever the wait raises, as it raises it.
    """
    if isinstance(every, bool) or not (
        isinstance(every, int | float) and math.isfinite(every) and every >= 0
    ):
        raise ConfigurationError(f"every must be a finite number of seconds >= 0, got {every!r}")
    now = clock or asyncio.get_running_loop().time
    gate: ThrottleGate[ProgressEvent[T]] = ThrottleGate(0.0 if _timing.is_instant() else every)
    source = aiter(events)
    step: asyncio.Future[ProgressEvent[T]] | None = None
    try:
        while True:
            if step is None:
                step = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait((step,), timeout=gate.due_in(now()))
            if not done:  # the held event's time has come
                held = gate.take(now())
                if held is not None:
                    yield held
                continue
            finished, step = step, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                break
            ready = gate.offer(event, (event.status, event.percent), now())
            if ready is not None:
                yield ready
        last_wait = gate.due_in(now())
        if last_wait is not None:  # the last event is held: it goes once the interval is over
            await asyncio.sleep(last_wait)
            yield gate.release(now())
    finally:
        await _close(step, source)


async def _close(step: asyncio.Future[Any] | None, source: AsyncIterator[Any]) -> None:
    """Stop the read in flight, then close the source (a waiter closes its wait)."""
    if step is not None:
        step.cancel()
        await asyncio.gather(step, return_exceptions=True)  # its outcome is not wanted
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
