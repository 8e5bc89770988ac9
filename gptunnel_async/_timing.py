"""The SDK's one way to pause between attempts and polls.

Every retry backoff and poll interval goes through :func:`sleep`, so a test can make all
of them instant (``gptunnel_async.testing``) or record what was asked for.
"""

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .errors import GPTunnelError

_instant = False

failed_attempt: "Final[contextvars.ContextVar[GPTunnelError | None]]" = contextvars.ContextVar(
    "gptunnel_async_failed_attempt", default=None
)
"""The error of the last failed attempt of a request that is pausing before its retry,
in the running task's context: set before each retry pause, and put back when the
retries end with a result or an error (which says it all). A deadline that cuts the
retries short (a wait's) finds here why the request had not succeeded yet."""


def failed_since(before: "GPTunnelError | None") -> "GPTunnelError | None":
    """After a deadline cut a request short: the error of its failed attempt if it was
    pausing before a retry (``failed_attempt`` no longer ``before``, what it held when
    the request started), else ``None``; ``failed_attempt`` is put back to ``before``."""
    failed = failed_attempt.get()
    if failed is before:
        return None
    failed_attempt.set(before)
    return failed


def set_instant(enabled: bool) -> None:
    """Make every SDK pause return at once (``True``) or take its real time (``False``)."""
    global _instant
    _instant = enabled


def is_instant() -> bool:
    """Whether pauses are currently instant."""
    return _instant


def sleep(seconds: float) -> Awaitable[None]:
    """Pause for ``seconds``, or just yield to the event loop when pauses are instant.

    A pause of more than 0 s is a future its timer completes (``asyncio.sleep``'s own
    coroutine only for one of 0 s): each of thousands of sleeping waits holds no
    coroutine frame for it.
    """
    delay = max(0.0, seconds)  # a NaN too, as asyncio.sleep got it
    if _instant or delay <= 0:
        return asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    pause = _Sleep(loop=loop)  # no asyncio.sleep frame: 256 bytes (7 %) less per sleeping wait
    pause.timer = loop.call_later(delay, _wake, pause)
    return pause


class _Sleep(asyncio.Future[None]):
    """One pause: a future its ``timer`` completes; cancelling it (its task cancelled)
    cancels the timer too, as ``asyncio.sleep`` does, rather than leave it scheduled.
    A pause its coroutine leaves otherwise (closed, or an error thrown in by hand)
    keeps its timer until it is due, which then completes the future nothing awaits."""

    __slots__ = ("timer",)
    timer: asyncio.TimerHandle

    def cancel(self, msg: Any = None) -> bool:
        self.timer.cancel()
        return super().cancel(msg)


def _wake(pause: _Sleep) -> None:
    """The timer's callback: the pause is over, unless it was cancelled first."""
    if not pause.done():
        pause.set_result(None)


class Wakeup:
    """The pauses of one client's waits, retry pauses and requests, so that closing the
    client ends them at once rather than at each wait's next read, after a
    ``Retry-After`` or after a request's whole timeout on a session it does not close.

    A pause is :func:`sleep` awaited inside ``with wakeup.pause():`` in the waiting task;
    :meth:`interrupt` cancels every task that is in one and turns that cancellation into
    its error, the way ``asyncio.timeout`` turns its own into ``TimeoutError``: a
    cancellation that came from elsewhere at the same time stays a cancellation.
    """

    __slots__ = ("_error", "_interrupted", "_sleeping")

    def __init__(self) -> None:
        self._sleeping: set[asyncio.Task[Any]] = set()
        self._interrupted: set[asyncio.Task[Any]] = set()
        self._error: Callable[[], BaseException] | None = None

    def pause(self) -> "Pause":
        """The context of one pause of the running task: ``with wakeup.pause(): await
        sleep(seconds)``. A context manager rather than a coroutine around the sleep:
        each of thousands of sleeping waits holds a small object, not a second frame
        (about 6 % of its memory, see performance.md).

        Raises:
            BaseException: the error :meth:`interrupt` was given, if it was called.
        """
        if self._error is not None:
            raise self._error()
        return Pause(self, asyncio.current_task())

    def interrupt(self, error: Callable[[], BaseException]) -> None:
        """End every pause now, and any later one at once, with ``error()``."""
        self._error = error
        for task in self._sleeping - self._interrupted:
            self._interrupted.add(task)
            task.cancel()

    def _leave(self, task: "asyncio.Task[Any]") -> Callable[[], BaseException] | None:
        """Forget ``task``'s pause; return the error it ends with if it was interrupted."""
        self._sleeping.discard(task)
        if task not in self._interrupted:
            return None
        self._interrupted.discard(task)
        return self._error


class Pause:
    """One pause of a task under a :class:`Wakeup` (see :meth:`Wakeup.pause`)."""

    __slots__ = ("_cancelling", "_task", "_wakeup")

    def __init__(self, wakeup: Wakeup, task: "asyncio.Task[Any] | None") -> None:
        self._wakeup = wakeup
        self._task = task  # None outside a task (a bare event-loop callback): nothing to wake
        self._cancelling = 0 if task is None else task.cancelling()

    def __enter__(self) -> None:
        if self._task is not None:
            self._wakeup._sleeping.add(self._task)

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._task is None:
            return
        error = self._wakeup._leave(self._task)
        cancelled = kind is not None and issubclass(kind, asyncio.CancelledError)
        # The interruption's own cancellation becomes its error; one from elsewhere stays.
        if cancelled and error is not None and self._task.uncancel() <= self._cancelling:
            raise error() from None
