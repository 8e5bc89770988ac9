"""Waiting for many tasks at once: as each finishes, or all together.

Every wait runs as its own asyncio task on the client's one session and budget; a
failure is delivered where it belongs and never cancels the other waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar

from ._async_only import AsyncWithOnly
from ._in_process import InProcessOnly
from ._sansio.text import clip
from .errors import GPTunnelError, UsageError

__all__ = ["AsCompleted", "wait_many"]

R = TypeVar("R")


_CLOSED_UNDER_A_STEP: Final = (
    "this as_completed was closed while this step of its iteration waited for the next "
    "outcome (another task iterating it was cancelled, or closed it); the waits still "
    "running were cancelled"
)
"""What a step waiting in one task is told when the iteration is closed from another."""


class AsCompleted(AsyncWithOnly, InProcessOnly, Generic[R]):
    """An async iterator of waits' outcomes in the order they finish.

    Each finished task is yielded. A failure (``TaskFailedError``, ``WaitTimeoutError``,
    an ``APIError`` that ends a wait, a ``UsageError`` for a wait whose ``on_progress``
    cancelled the asyncio task it runs in) is yielded as the exception object when created
    with ``return_exceptions=True``; otherwise it is raised by the iteration, the other
    waits go on, and iterating the same object again carries on with the next one:

    <!-- invisible-code-block: python
    from gptunnel_async import TaskFailedError

    task_ids = [fake.script_task(steps=[("done", 100)]), fake.fail_task("no face")]
    -->

    ```python
    finished = client.as_completed(task_ids)
    while True:
        try:
            async for task in finished:
                print(task.id, task.result)
            break
        except TaskFailedError as failure:
            print(failure.task_id, "failed")
    ```

    The waits start on the first iteration. Nothing is left behind when you stop early:
    cancelling the iteration cancels the waits still running (and waits until they have
    stopped); so does ``async with`` or ``aclose()``; after a ``break`` out of
    ``async for ... in client.as_completed(...)``, they are cancelled as soon as the
    iterator is dropped (at once in CPython; keep no other reference to it, or use
    ``async with``). You get one from an ``as_completed`` call rather than building it.

    Several tasks may iterate one at once (workers sharing the outcomes): each outcome
    goes to one of them, and each one's loop ends once every outcome is taken. If one
    of them is cancelled (or closes it), the waits are cancelled and a step waiting in
    another raises ``UsageError``.

    Args:
        waiters: the waits, not started yet (``TaskWaiter``s, or the coroutines of
            ``WebhookReceiver.wait_for_result``).
        return_exceptions: yield failures as values instead of raising them.
    """

    _instead = (
        "wait for the task ids in the other process, with a client made there; a "
        "gptunnel_async.fleet.Watcher keeps waits across processes and restarts"
    )

    def __init__(
        self, waiters: Iterable[Coroutine[Any, Any, Any]], *, return_exceptions: bool
    ) -> None:
        self._waiters = list(waiters)
        # Dropped before its first iteration: its waits were not forgotten, so they do not
        # warn that they were never awaited (a finalizer, not __del__: it runs first in
        # a reference cycle, where the waits' own __del__ might run before this one's).
        weakref.finalize(self, _close_unstarted, self._waiters)
        self._return_exceptions = return_exceptions
        self._left = len(self._waiters)
        self._running: set[asyncio.Task[Any]] = set()
        self._task_ids: dict[asyncio.Task[Any], str | None] = {}
        """Which task each running wait waits for, to name one cancelled from within."""
        self._finished: asyncio.Queue[asyncio.Task[Any]] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<AsCompleted left={self._left} running={len(self._running)}>"

    def _start(self) -> asyncio.Queue[asyncio.Task[Any]]:
        finished: asyncio.Queue[asyncio.Task[Any]] = asyncio.Queue()
        for waiter in self._waiters:
            task = asyncio.create_task(waiter)
            self._running.add(task)
            self._task_ids[task] = _task_id_of(waiter)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(finished.put_nowait)
            task.add_done_callback(_retrieve)
        self._waiters.clear()
        # ``async for`` calls no aclose() on an iterator it leaves by ``break``: the waits
        # are cancelled when this object is dropped (the tasks hold no reference to it).
        weakref.finalize(self, _cancel_all, self._running)
        return finished

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> R:
        if self._finished is None:
            self._finished = self._start()
        if self._left == 0:
            raise StopAsyncIteration
        # This step's outcome, taken before it comes: a step in another task (workers
        # sharing one iterator) then never waits for an outcome that will not come.
        self._left -= 1
        try:
            task = await self._finished.get()
        except asyncio.CancelledError:
            await self.aclose()  # cancelled: no wait goes on polling behind the caller
            raise
        if self._closed:  # by another task, while this step waited: told, not ended quietly
            raise UsageError(_CLOSED_UNDER_A_STEP)
        error = _error_of(task, self._task_ids.pop(task, None))
        if error is None:
            outcome: R = task.result()
            return outcome
        if returned_as_value(error, return_exceptions=self._return_exceptions):
            failure: R = error  # type: ignore[assignment]  # R includes GPTunnelError here
            return failure
        raise error

    async def aclose(self) -> None:
        """Cancel the waits still running, and wait until they have stopped."""
        running = list(self._running)
        self._closed = True
        _close_unstarted(self._waiters)
        self._waiters.clear()
        self._left = 0
        _cancel_all(self._running)
        await asyncio.gather(*running, return_exceptions=True)
        self._task_ids.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _close_unstarted(waiters: Iterable[Coroutine[Any, Any, Any]]) -> None:
    """Close the waits an iteration that never began leaves: dropped, not forgotten."""
    for waiter in waiters:
        waiter.close()


def _cancel_all(running: set[asyncio.Task[Any]]) -> None:
    """Cancel every task in ``running`` (the set stays: the tasks leave it as they end)."""
    for task in list(running):
        with contextlib.suppress(RuntimeError):  # collected after its event loop closed
            task.cancel()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark an ended wait's error as seen: it is delivered through the iteration, or the
    iteration was given up and nobody is left to tell ("never retrieved" otherwise)."""
    if not task.cancelled():
        task.exception()


async def wait_many(
    waiters: Iterable[Coroutine[Any, Any, Any]], *, return_exceptions: bool
) -> list[Any]:
    """Run every wait to its end; return their outcomes in the order given.

    A failure is returned in its place with ``return_exceptions=True``; otherwise, once
    every wait has ended, the first failure (in the order given) is raised. No failure
    cancels another wait; cancelling this call cancels them all.
    """
    started = [(asyncio.create_task(waiter), _task_id_of(waiter)) for waiter in waiters]
    await _run_to_the_end([task for task, _ in started])
    ended = [_ended(task, task_id) for task, task_id in started]  # every one: none raises
    return outcomes_in_order(ended, return_exceptions=return_exceptions)


async def _run_to_the_end(tasks: list[asyncio.Task[Any]]) -> None:
    """Wait until every task has ended; if this wait is cancelled, cancel them all first."""
    if not tasks:
        return
    try:
        await asyncio.wait(tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)


def _ended(task: asyncio.Task[Any], task_id: str | None) -> tuple[Any, BaseException | None]:
    """An ended wait's ``(result, None)``, or ``(None, error)`` if it raised ``error``
    (see :func:`_error_of`)."""
    error = _error_of(task, task_id)
    return (task.result() if error is None else None), error


def _task_id_of(waiter: Coroutine[Any, Any, Any]) -> str | None:
    """The id of the task ``waiter`` waits for, if it says (a ``TaskWaiter`` does)."""
    task_id = getattr(waiter, "task_id", None)
    return task_id if isinstance(task_id, str) else None


def _error_of(task: asyncio.Task[Any], task_id: str | None) -> BaseException | None:
    """The error an ended wait (the asyncio task running it) raised, or ``None``.

    A wait cancelled while the call running it was not (its ``on_progress`` cancelled
    the task it runs in, meaning to stop that one wait) ended with ``UsageError``
    naming its task: its ``CancelledError``, handed on, would read as the caller's own
    cancellation, and end the caller (or vanish in a ``TaskGroup``) with the other
    waits' outcomes unread. The caller's own cancellation never comes here: it
    cancels every wait and is raised as it is."""
    if not task.cancelled():
        return task.exception()
    which = "a task" if task_id is None else f"task {clip(task_id)!r}"
    return UsageError(
        f"the wait for {which} was cancelled from within (its on_progress cancelled the "
        f"asyncio task it runs in?), not by the call that runs it; to stop every wait, "
        f"cancel that call"
    )


def outcomes_in_order(
    ended: Iterable[tuple[Any, BaseException | None]], *, return_exceptions: bool
) -> list[Any]:
    """What ``wait_many`` returns for waits that have all ended, given as
    ``(result, error)`` pairs (``error`` is ``None`` for a wait that succeeded).

    Returns:
        each result, or with ``return_exceptions`` each ``GPTunnelError`` in its place.

    Raises:
        BaseException: the first error, in the order given, that is not to be returned
            (any, or with ``return_exceptions`` one that is not a ``GPTunnelError``).
    """
    pairs = list(ended)
    for _, error in pairs:
        if error is not None and not returned_as_value(error, return_exceptions=return_exceptions):
            raise error
    return [result if error is None else error for result, error in pairs]


def returned_as_value(error: BaseException, *, return_exceptions: bool) -> bool:
    """Whether a wait's ``error`` is handed back as a value rather than raised: only a
    ``GPTunnelError``, and only with ``return_exceptions``."""
    return return_exceptions and isinstance(error, GPTunnelError)
