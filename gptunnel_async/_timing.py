"""The SDK's one way to pause between attempts and polls.

Every retry backoff and poll interval goes through :func:`sleep`, so a test can make all
of them instant (``gptunnel_async.testing``) or record what was asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

_instant = False


def set_instant(enabled: bool) -> None:
    """Make every SDK pause return at once (``True``) or take its real time (``False``)."""
    global _instant
    _instant = enabled


def is_instant() -> bool:
    """Whether pauses are currently instant."""
    return _instant


def sleep(seconds: float) -> Awaitable[None]:
    """Pause for ``seconds``, or just yield to the event loop when pauses are instant.

    Await the result: a :class:`Pause`, a bare future the event loop's timer resolves,
    rather than ``asyncio.sleep``'s coroutine, so a sleeping wait holds no coroutine
    frame for its pause (benchmark (b): about 0.5 KiB of each sleeping wait's 4).
    """
    loop = asyncio.get_running_loop()
    pause = Pause(loop=loop)
    if _instant or seconds <= 0:
        loop.call_soon(_wake, pause)
    else:
        pause.timer = loop.call_later(seconds, _wake, pause)
    return pause


class Pause(asyncio.Future[None]):
    """A pause's future that, however it ends, takes its timer along (as
    ``asyncio.sleep`` does, so an ended pause leaves nothing scheduled behind) and
    leaves the set of pauses a :class:`Wakeup` keeps it in."""

    __slots__ = ("kept_in", "timer")

    timer: asyncio.TimerHandle | None
    kept_in: set[Pause] | None

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self.timer = None
        self.kept_in = None

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel the pause and its timer."""
        self.ended()
        return super().cancel(msg)

    def set_exception(self, exception: type | BaseException, /) -> None:
        """End the pause with ``exception``, and cancel its timer."""
        self.ended()
        super().set_exception(exception)

    def ended(self) -> None:
        """Drop the timer and leave the set the pause was kept in."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.kept_in is not None:
            self.kept_in.discard(self)
            self.kept_in = None


def _wake(pause: Pause) -> None:
    if not pause.done():
        pause.ended()
        pause.set_result(None)


class Wakeup:
    """The pauses of one client's waits, so that closing the client ends them at once
    rather than at each wait's next read.

    A :class:`Pause` is kept here while it lasts; :meth:`interrupt` fails each with the
    error it is given, and any pause asked for after that. (A test's own replacement
    for :func:`sleep` may return a coroutine: it is awaited as it is, and only closing
    at the next read ends it.)
    """

    __slots__ = ("_error", "_sleeping")

    def __init__(self) -> None:
        self._sleeping: set[Pause] = set()
        self._error: Callable[[], BaseException] | None = None

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Pause as :func:`sleep` does, unless :meth:`interrupt` ends the pause first.

        Raises:
            BaseException: the error :meth:`interrupt` was given, if it was called.
        """
        if self._error is not None:
            raise self._error()
        pause = sleep(seconds)
        if isinstance(pause, Pause) and not pause.done():
            self._sleeping.add(pause)
            pause.kept_in = self._sleeping
        return pause

    def interrupt(self, error: Callable[[], BaseException]) -> None:
        """End every pause now, and any later one at once, with ``error()``."""
        self._error = error
        for pause in list(self._sleeping):
            if not pause.done():
                pause.set_exception(error())
