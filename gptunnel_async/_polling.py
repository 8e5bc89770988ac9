"""Waiting for a task: the waiter that drives the wait core, awaitable and iterable.

The decisions -- when to read next, what an answer means, when to give up, which event
to emit -- are the wait core's (``_sansio.waiting``); this module sleeps, reads, and
hands events to ``on_progress`` and ``async for``. One deadline bounds the SDK's own
time -- requests in flight and sleeps -- but never the consumer's code between events.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, Final, TypeAlias, TypeVar

import attrs

from . import _timing
from ._checks import called_back
from ._in_process import InProcessOnly
from ._logging import log_with_fields, logger
from ._sansio.pacing import PollPolicy
from ._sansio.responses import with_family_hint
from ._sansio.text import clip, shorten
from ._sansio.waiting import Decision, Fail, Finish, ProgressEvent, ReadAt, TimeOut, WaitState
from ._sentinel import NOT_GIVEN, NotGiven
from .errors import GPTunnelError, TaskFailedError, UsageError, WaitTimeoutError
from .instrumentation._hooks import (
    LISTENING,
    ProgressDetails,
    RetryDetails,
    WaitFinished,
    WaitOutcome,
    WaitStarted,
    emit_progress,
    emit_retry,
    emit_wait_finished,
    emit_wait_started,
)
from .models import MediaTask, Task, TaskLike

__all__ = ["PollPolicy", "ProgressCallback", "ProgressEvent", "TaskWaiter", "note_once"]

T = TypeVar("T", bound=TaskLike)


ProgressCallback: TypeAlias = Callable[[ProgressEvent[T]], object]
"""``on_progress``: a plain function or a coroutine function taking a [ProgressEvent][].
What it returns is ignored, once awaited if it is awaitable: a chat's edit call that
returns the edited message (``lambda event: message.edit_text(...)``) fits as it is."""


_NO_WAKEUP: Final = contextlib.nullcontext()
"""The pause of a wait no client can end (a ``TaskWaiter`` built without one)."""


def _outcome(error: BaseException | None) -> WaitOutcome:
    """How a wait that ended with ``error`` (``None``: done) is reported to the hooks."""
    if error is None:
        return "done"
    if isinstance(error, TaskFailedError):
        return "failed"
    if isinstance(error, WaitTimeoutError):
        return "timeout"
    return "error" if isinstance(error, Exception) else "cancelled"


_ENDED_NOTE: Final = "raised by the wait for {family} task {task_id!r}"
"""The note an error that ends a wait gets when its text does not name the task."""

_ENDED_KIND: Final = "raised by the wait"
_ENDED_SHARED: Final = (
    "raised by the waits for more than one task: this one exception object was raised "
    "again in each (a failed future the callbacks await, an instance kept and reused)"
)
"""The note of an error that ended several waits, in place of each one's."""


def note_once(error: BaseException, note: str, *, kind: str, shared: str) -> None:
    """Add ``note`` to ``error``, unless it has a note of that ``kind`` (holding that
    text) already: the same note is left as it is, and another one (the same exception
    object, a failed future's, raised again by the wait for another task) becomes
    ``shared``, which holds ``kind`` too. An exception object raised by thousands of
    waits so keeps one such note, rather than one per wait, each but one naming a
    task whose wait it did not end where it is caught. Notes that are not a list
    (set by hand) are left alone."""
    notes = getattr(error, "__notes__", None)
    if notes is None:
        error.add_note(note)
        return
    if not isinstance(notes, list):
        return
    for at, existing in enumerate(notes):
        if isinstance(existing, str) and kind in existing:
            if existing != note:
                notes[at] = shared
            return
    notes.append(note)


_CUT_SHORT: Final = (
    "a step of the wait for task {task_id!r} was cancelled (a timeout around anext()?), "
    "which ended the wait before its task finished; wait_for_result(task_id) again goes "
    "on waiting; to bound the time between events, read them in a task of their own "
    "(as throttle does) rather than cancel a step"
)
"""What a step of an iteration is told after an earlier step was cancelled: ending the
loop quietly (``StopAsyncIteration``) would read as the wait's end."""

_AWAITED_ELSEWHERE: Final = (
    "this waiter is already being awaited (by another task, or by the code it calls "
    "back); await that task, or call wait_for_result again for a wait of your own"
)


def _executing(running: Coroutine[Any, Any, Any]) -> bool:
    """Whether ``running`` is executing now: a step of it called back the code that
    asks (its ``on_progress``)."""
    return bool(getattr(running, "cr_running", False))


class _Driven(enum.Enum):
    """Where an awaited wait is when no task drives it."""

    NOT_YET = enum.auto()
    ENDED = enum.auto()


def _cancelling(task: asyncio.Task[Any] | None) -> bool:
    """Whether ``task`` has been asked to cancel (and has not taken that back); no task
    (a wait stepped by hand) counts as asked: who cancelled it cannot be told."""
    return task is None or task.cancelling() > 0


def _current_task() -> asyncio.Task[Any] | None:
    """The task running now, or ``None`` outside one (a coroutine stepped by hand)."""
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop runs here
        return None


HOOK_STATUS_LENGTH: Final = 100
"""The longest status the hooks are given, in characters: a status is a word, but the
server's text, and a tracing hook keeps every one it is given."""

_TASK_ATTRIBUTES: Final = frozenset(
    {field.name for model in (Task, MediaTask) for field in attrs.fields(model)}
    | {"is_done", "is_failed", "is_pending", "is_terminal", "file_url", "urls"}
)
"""A task's attributes, which a waiter lacks: read off a wait, they mean a missing ``await``."""


class TaskWaiter(InProcessOnly, Coroutine[Any, Any, T], AsyncIterator[ProgressEvent[T]]):
    """The result of ``wait_for_result``: await it for the done task, or iterate it with
    ``async for`` to get each [ProgressEvent][], the ``done`` one last.

    It is a real ``collections.abc.Coroutine``, so ``asyncio.create_task``, ``gather``
    and ``wait_for`` accept it. Use it once, in one mode: awaiting a waiter that is
    being iterated or was already awaited, or the other way round, raises
    ``UsageError``, as does awaiting one that another task (or the code it calls
    back) awaits. Every family waits through this one class; you get one from a
    ``wait_for_result`` rather than building it. Between reads it keeps the wait core's
    small state and its sleep, so a bot can hold thousands of waits at once.

    Args:
        task_id: the task to wait for.
        fetch: reads the task once (its request built once for the whole wait).
        policy: the pacing and deadline.
        timeout: overrides the policy's deadline (``None``: no deadline).
        on_progress: called with each event, in both modes; may be async.
        wakeup: the client's pauses, which its ``close()`` ends.
        family: the task family, as the instrumentation hooks report it.

    Raises:
        TaskFailedError: (when awaited or iterated) the task failed.
        WaitTimeoutError: (when awaited or iterated) the deadline passed.
        UsageError: (when awaited or iterated) the client was closed, or
            ``on_progress`` raised ``StopIteration``, ``StopAsyncIteration``, or a
            ``CancelledError`` while the wait was not cancelled; (when
            iterated) an earlier step was cancelled, which ended the wait.
        APIError: (when awaited or iterated) an error that is not transient, such as
            400, 401, 402, 403 or 404.
    """

    _instead = (
        "wait for its task_id in the other process, with a client made there; a "
        "gptunnel_async.fleet.Watcher keeps waits across processes and restarts"
    )

    __slots__ = (
        "_cut",
        "_decision",
        "_driver",
        "_ended",
        "_fetch",
        "_iterated",
        "_last_error",
        "_last_seen",
        "_observed",
        "_on_progress",
        "_running",
        "_state",
        "_stepping",
        "_wakeup",
        "family",
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
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback[T] | None = None,
        wakeup: _timing.Wakeup | None = None,
        family: str = "faceswap",
    ) -> None:
        self.task_id = task_id
        self.family = family
        self.policy = policy if timeout is NOT_GIVEN else attrs.evolve(policy, timeout=timeout)
        self.timeout = self.policy.timeout
        self._fetch = fetch
        self._on_progress = on_progress
        self._wakeup = wakeup
        self._state: WaitState | None = None
        """The wait core's state, from the first read on."""
        self._decision: Decision[T] | None = None
        """What the core decided after the last read."""
        self._last_seen: T | None = None
        self._last_error: GPTunnelError | None = None
        """The error of the last read, if it failed (for the WaitTimeoutError)."""
        self._running: Coroutine[Any, Any, T] | None = None
        """The awaited wait, once the waiter is awaited (or run as a task)."""
        self._driver: asyncio.Task[Any] | _Driven | None = _Driven.NOT_YET
        """The task that awaits the wait (or runs it), while it runs: another task that
        awaits it or steps it gets ``UsageError``, rather than a share in its steps.
        Kept rather than asked of the coroutine (``inspect.getcoroutinestate`` on each
        step would make each sleeping wait keep a frame object, ~200 bytes more)."""
        self._iterated = False
        self._stepping = False
        self._ended = False
        """The iteration is over: done, failed, closed, or a step was cancelled."""
        self._cut = False
        """A step of the iteration was cancelled before the wait ended: it ended unseen
        by the loop, which a later step is told rather than ended quietly."""
        self._observed: tuple[float, asyncio.AbstractEventLoop] | None = None
        """When the wait started, and on which loop, while instrumentation hooks watch it
        (see ``_next_pause``): its end is reported there."""

    def __repr__(self) -> str:
        return f"<TaskWaiter task_id={self.task_id!r} timeout={self.timeout!r}>"

    def __del__(self) -> None:
        if getattr(self, "_iterated", False) and not getattr(self, "_ended", True):
            # An ``async for`` left with ``break`` or an error in its body, never closed:
            # the wait ends here, as an async generator's does when it is collected, and
            # the hooks hear of it (a tracing hook's span ends, a gauge goes down), on its
            # loop, as always: a collection may run anywhere (another thread, mid-callback).
            self._ended = True
            ended = self._ended_details(GeneratorExit())
            if ended is not None:
                details, loop = ended
                with contextlib.suppress(RuntimeError):  # its loop is closed: no hooks run
                    loop.call_soon_threadsafe(emit_wait_finished, details)
            return
        # As a coroutine never awaited warns: a forgotten ``await`` otherwise does nothing.
        started = getattr(self, "_running", None) is not None or getattr(self, "_iterated", True)
        if not started and not getattr(self, "_ended", True):
            warnings.warn(
                f"the wait for task {getattr(self, 'task_id', '?')!r} was never awaited or "
                f"iterated (a missing await?); close() a wait you drop on purpose",
                RuntimeWarning,
                stacklevel=1,
                source=self,
            )

    def __getattr__(self, name: str) -> Any:
        """Only for names the waiter lacks: a task's attribute read off the wait (a
        forgotten ``await``) says how to get the task."""
        if name in _TASK_ATTRIBUTES:
            raise AttributeError(
                f"a TaskWaiter is the wait, not the task: it has no {name!r}; await it "
                f"for the finished task (task = await client.wait_for_result(...)), or "
                f"read event.task in an async for",
                name=name,
                obj=self,
            )
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
        )

    # -- the one step both modes take -----------------------------------------------

    def _next_pause(self) -> float:
        """Seconds until the core's next read is due. The first call starts the wait,
        and tells the instrumentation hooks if one watches waits.

        Both modes sleep in their own frame (``with self._pause(): await sleep(...)``)
        rather than in a coroutine per step: each of thousands of sleeping waits holds
        one frame less (6 % of its memory, see performance.md).
        """
        loop = asyncio.get_running_loop()
        if self._state is None:
            if LISTENING.wait_started or LISTENING.wait_finished:
                self._observed = (time.monotonic(), loop)
                started = WaitStarted(self.task_id, self.family, self.timeout, id(self))
                emit_wait_started(started)
            self._state = WaitState.start(self.task_id, self.policy, loop.time())
        # The state's due time is the last ReadAt's or TimeOut's ``at``: see _decided.
        return max(0.0, self._state.due_at - loop.time())

    def _settle(self, task: T) -> None:
        """Tell the hooks the wait ended with ``task``, found ended by something other
        than its own reads (a webhook delivery): ``done``, or ``failed`` if it failed,
        as if a read had found it, rather than ``cancelled`` when the caller then
        cancels or closes the wait. A wait not started yet starts first, without a read,
        so that the hooks see it begin and end."""
        if self._state is None:
            self._next_pause()
        self._last_seen = task
        self._report_end(TaskFailedError(task) if task.is_failed else None)

    def _report_end(self, error: BaseException | None) -> None:
        """Tell the hooks the wait ended with ``error`` (``None``: done), once."""
        ended = self._ended_details(error)
        if ended is not None:
            emit_wait_finished(ended[0])

    def _name_the_task(self, error: BaseException) -> None:
        """Add a note naming the task to ``error``, an error that ends the wait and does
        not name it (``TaskFailedError`` and ``WaitTimeoutError`` do, a 401 or a closed
        client does not): among many waits, a traceback or ``logger.exception`` line
        then says which task's wait it ended. Cancellation and the like are left as
        they are."""
        if isinstance(error, Exception) and getattr(error, "task_id", None) != self.task_id:
            note = _ENDED_NOTE.format(family=self.family, task_id=self.task_id)
            note_once(error, note, kind=_ENDED_KIND, shared=_ENDED_SHARED)

    def _ended_details(
        self, error: BaseException | None
    ) -> tuple[WaitFinished, asyncio.AbstractEventLoop] | None:
        """What the hooks are told of the wait's end with ``error``, and the loop they
        run on; ``None`` if no hook watches it, or it was told already."""
        if self._observed is None:
            return None
        (since, loop), self._observed = self._observed, None
        outcome = _outcome(error)
        seen = getattr(error, "task", None) or self._last_seen
        details = WaitFinished(
            task_id=self.task_id,
            family=self.family,
            outcome=outcome,
            status=None if seen is None else shorten(seen.status, HOOK_STATUS_LENGTH),
            duration=time.monotonic() - since,
            reads=0 if self._state is None else self._state.reads,
            error=None if error is None or outcome == "cancelled" else type(error).__name__,
            wait_id=id(self),
        )
        return details, loop

    def _advance(self) -> Awaitable[ReadAt[T] | TimeOut[T] | Finish[T]]:
        """After the pause :meth:`_next_pause` gave: the read, which returns what the core
        decided and raises the error a wait ends with. A plain function, so that each of
        thousands of reads queued for a connection holds one frame less."""
        state = self._state
        assert state is not None
        # A TimeOut was decided when the pause ends at the deadline (the core reads only
        # before it; a TimeOut is due at it). Under instant waits (tests) the paced pauses
        # are skipped, not the deadline: a read the pacing put past it is made now, until
        # the deadline passes.
        if state.expired(asyncio.get_running_loop().time()) or (
            state.expired(state.due_at) and not _timing.is_instant()
        ):
            raise state.timed_out(self._last_seen, self._last_error) from self._last_error
        return self._read(state)

    def _decided(self) -> ReadAt[T] | TimeOut[T] | Finish[T]:
        """The core's decision after a read, told to the hooks; the error if it failed."""
        if isinstance(self._decision, Fail):  # not kept in a local: see _failure
            raise self._failure()
        # Not kept while the wait sleeps: its state has the next read's time, and the
        # event 112 bytes and more (3 % of a sleeping wait's live bytes).
        decision, self._decision = self._decision, None
        assert decision is not None
        if decision.event is not None and LISTENING.progress:
            emit_progress(self._progress_details(decision.event))
        if isinstance(decision, Finish):
            self._report_end(None)
        return decision

    def _failure(self) -> GPTunnelError:
        """The error the last decision ended the wait with, no longer kept by the waiter:
        held by the waiter or by a local of the frame that raises it, the error would form
        a reference cycle through its own traceback."""
        assert isinstance(self._decision, Fail)
        error, self._decision = self._decision.error, None
        return with_family_hint(error, self.family)

    def _progress_details(self, event: ProgressEvent[T]) -> ProgressDetails:
        status = shorten(event.status, HOOK_STATUS_LENGTH)
        return ProgressDetails(
            self.task_id, self.family, status, event.percent, event.elapsed, id(self)
        )

    def _pause(self) -> _timing.Pause | contextlib.nullcontext[None]:
        """The context of a pause: the client's, whose ``close()`` ends it, if any."""
        return _NO_WAKEUP if self._wakeup is None else self._wakeup.pause()

    async def _read(self, state: WaitState) -> ReadAt[T] | TimeOut[T] | Finish[T]:
        """Read the task once, within the deadline, and feed the outcome to the core."""
        loop = asyncio.get_running_loop()
        bounded = asyncio.timeout_at(state.deadline)
        retried_before = _timing.failed_attempt.get()
        try:
            async with bounded:
                task = await self._fetch()
        except TimeoutError:
            # Only the deadline's own expiry is a WaitTimeoutError; asking the timeout
            # rather than the clock stays exact when the deadline lands on a wake-up.
            if bounded.expired():
                self._cut_during_retries(retried_before)
                raise state.timed_out(self._last_seen, self._last_error) from self._last_error
            raise
        except GPTunnelError as exc:
            now = loop.time()
            self._state, self._decision = state.failed(exc, now)  # no local: see _failure
            if isinstance(self._decision, ReadAt | TimeOut):  # not raised: kept, for the end
                # Kept without its frames: they hold this waiter, which would hold them.
                self._last_error = exc.with_traceback(None)
                # Read again (under instant waits, a TimeOut too, at once): a retry, which
                # the default hook logs.
                if isinstance(self._decision, ReadAt) or _timing.is_instant():
                    pause = self._decision.at - now
                    emit_retry(self._retry_details(exc, self._state.reads, pause))
        else:
            self._last_seen, self._last_error = task, None
            now = loop.time()
            self._state, self._decision = state.observe(task, now)
            self._log_read(task, self._state, self._decision, now)
        return self._decided()

    def _cut_during_retries(self, before: GPTunnelError | None) -> None:
        """After the deadline cut a read short: if it was pausing before a retry (the
        client's ``max_retries``), its failed attempt is the wait's last error, as a read
        that failed is (else a wait shorter than the retries told nothing of them)."""
        failed = _timing.failed_since(before)
        if failed is not None:
            self._last_error = failed

    def _log_read(self, task: T, state: WaitState, decision: Decision[T], now: float) -> None:
        """The DEBUG line of a read, with its values as structured fields too
        (``record.task_id`` ...; the status bounded and printable, as it is in the text)."""
        if not logger.isEnabledFor(logging.DEBUG) or isinstance(decision, Fail):
            return
        pause = decision.at - now if isinstance(decision, ReadAt | TimeOut) else None
        fields = {
            "task_id": self.task_id,
            "family": self.family,
            "status": clip(task.status, HOOK_STATUS_LENGTH),
            "percent": task.percent,
            "reads": state.reads,
            "next_read_in": pause,
        }
        end, more = ("finished", ()) if pause is None else ("next_wait=%.2fs", (pause,))
        log_with_fields(
            logger,
            logging.DEBUG,
            f"task %s: status=%s percent=%d read=%d {end}",
            *(self.task_id, task.status, task.percent, state.reads, *more),
            fields=fields,
        )

    def _retry_details(self, error: GPTunnelError, read: int, pause: float) -> RetryDetails:
        return RetryDetails(
            scope="wait",
            what=f"task {self.task_id} read",
            family=self.family,
            task_id=self.task_id,
            attempt=read,
            wait=pause,
            error=error,
            status_code=getattr(error, "status_code", None),
        )

    async def _notify(self, event: ProgressEvent[T]) -> None:
        if self._on_progress is None:
            return
        try:
            outcome = called_back("on_progress", self._on_progress(event))
            if inspect.isawaitable(outcome):
                await outcome
        except (StopIteration, StopAsyncIteration) as exc:
            # Raised on, either would be read as the end of an iteration: an ``async
            # for`` over the wait would end quietly, as if it were over. An async
            # generator turns it into a RuntimeError for that reason; so does this.
            raise UsageError(
                f"on_progress raised {type(exc).__name__}, which would end the "
                f"iteration of the wait as if it were over (an iterator of its own ran "
                f"out?); the wait ends here"
            ) from exc
        except asyncio.CancelledError as exc:
            if _cancelling(_current_task()):  # this task's own cancellation: goes on as it is
                raise
            # Not asked of this task (a cancelled future the callback awaited or returned,
            # or a CancelledError it raised): handed on, it would read as the caller's
            # cancellation, and end its task (or vanish in a TaskGroup) with no result.
            raise UsageError(
                "on_progress raised CancelledError though the wait was not cancelled (it "
                "awaited or returned a cancelled future?); the wait ends here"
            ) from exc

    # -- async iterator -------------------------------------------------------------

    def __aiter__(self) -> TaskWaiter[T]:
        return self

    async def __anext__(self) -> ProgressEvent[T]:
        if self._running is not None:
            if self._driver is _Driven.ENDED:
                raise UsageError("this waiter was already awaited; iterate a new one")
            raise UsageError("this waiter is already being awaited; iterate a new one")
        if self._stepping:
            raise UsageError("this waiter is already waiting for its next event")
        self._iterated = True
        if self._ended:
            if self._cut:
                raise UsageError(_CUT_SHORT.format(task_id=self.task_id))
            raise StopAsyncIteration
        self._stepping = True
        try:
            while True:
                with self._pause():
                    await _timing.sleep(self._next_pause())
                decision = await self._advance()
                if decision.event is not None:
                    self._ended = isinstance(decision, Finish)
                    await self._notify(decision.event)
                    return decision.event
        except BaseException as exc:  # failed, timed out, closed or cancelled: nothing follows
            self._ended = True
            self._cut = isinstance(exc, asyncio.CancelledError)
            self._report_end(exc)
            self._name_the_task(exc)
            raise
        finally:
            self._stepping = False

    async def aclose(self) -> None:
        """Stop an ``async for`` wait early and release what it holds.

        ``contextlib.aclosing(waiter)`` calls it for you when its block ends.

        An awaited wait (or one never started) is closed as :meth:`close` closes it.

        Raises:
            UsageError: a step of the iteration is still waiting for its next event;
                cancel that step instead. Or a task awaits the wait now (another task,
                or the wait's own ``on_progress``): cancel that task instead.
        """
        if self._iterated:
            self._close_iteration()
        else:
            self.close()

    def _close_iteration(self) -> None:
        """End an iterated wait between two steps (``aclose``, or ``close``)."""
        if self._stepping:
            raise UsageError("this waiter is waiting for its next event; cancel that instead")
        if not self._ended:
            self._report_end(GeneratorExit())
        self._ended, self._cut = True, False  # closed on purpose: it ends quietly
        self._state = self._decision = self._last_seen = self._last_error = None

    # -- coroutine ------------------------------------------------------------------

    async def _run(self) -> T:
        """The awaited wait: every step until the task is done; return it."""
        try:
            while True:
                with self._pause():
                    await _timing.sleep(self._next_pause())
                decision = await self._advance()
                if decision.event is not None:
                    await self._notify(decision.event)
                if isinstance(decision, Finish):
                    return decision.event.task
                del decision  # not held while asleep (see _decided)
        except BaseException as exc:  # cancellation and GeneratorExit end the wait too
            self._report_end(exc)
            self._name_the_task(exc)
            raise
        finally:
            self._driver = _Driven.ENDED  # the task holds the waiter: no cycle after this

    def _awaited(self) -> Coroutine[Any, Any, T]:
        """The awaited wait, started on first use; ``UsageError`` if it is iterated or
        was closed before it started."""
        if self._running is None:
            if self._iterated:
                raise UsageError("this waiter is already being iterated; await a new one")
            if self._ended:
                raise UsageError("this waiter was closed; call wait_for_result again")
            self._running = self._run()
        return self._running

    def __await__(self) -> Generator[Any, None, T]:
        running = self._awaited()
        if self._driver is not _Driven.NOT_YET:
            self._refuse_another_driver()
        self._driver = _current_task()
        return running.__await__()

    def _driven(self) -> Coroutine[Any, Any, T]:
        """The awaited wait, for the task stepping it (``send``, ``throw``): the one that
        started it; ``UsageError`` for any other, or once it has ended."""
        running = self._awaited()
        current = _current_task()
        if self._driver is _Driven.NOT_YET:
            self._driver = current
        elif current is not self._driver:
            self._refuse_another_driver()
        elif _executing(running):  # from the wait's own callback: Python's ValueError
            raise UsageError(_AWAITED_ELSEWHERE)
        return running

    def _refuse_another_driver(self) -> None:
        """``UsageError``: the awaited wait has started, in another task, or ended."""
        if self._driver is _Driven.ENDED:
            raise UsageError("this waiter was already awaited; call wait_for_result again")
        raise UsageError(_AWAITED_ELSEWHERE)

    def send(self, value: Any) -> Any:
        """The coroutine protocol, for the event loop: resume the wait with ``value``.

        Args:
            value: what the awaited future produced.

        Returns:
            What the wait awaits next.

        Raises:
            UsageError: another task awaits (or runs) this waiter, its own
                ``on_progress`` calls this, or it has ended.
        """
        return self._driven().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any:
        """The coroutine protocol, for the event loop: raise an exception inside the wait.

        Args:
            typ: the exception (or its type).
            val: the exception's value, in the legacy three-argument form.
            tb: its traceback, in the legacy three-argument form.

        Returns:
            What the wait awaits next, if it handles the exception.

        Raises:
            UsageError: another task awaits (or runs) this waiter, its own
                ``on_progress`` calls this, or it has ended.
        """
        running = self._driven()
        try:
            if val is None and tb is None:
                return running.throw(typ)
            return running.throw(typ, val, tb)
        except BaseException:
            # Ended by it, also when it never started (no finally of the wait ran: a task
            # cancelled before its first step), so a later await is told "already awaited".
            self._driver = _Driven.ENDED
            raise

    def _awaited_now(self) -> bool:
        """Whether a task awaits the wait at this moment: the wait is executing (its own
        ``on_progress`` asks), or another task that is not done stepped it. The task
        that steps it by hand (``send``) and asks between two steps awaits nothing."""
        if self._running is not None and _executing(self._running):
            return True
        driver = self._driver
        return (
            isinstance(driver, asyncio.Task) and not driver.done() and driver is not _current_task()
        )

    def _never_started(self) -> bool:
        """Neither awaited nor iterated, nor closed: what a driver handed it and gone
        before its first step (``throttle``) closes, rather than let it warn."""
        return self._running is None and not self._iterated and not self._ended

    def close(self) -> None:
        """The coroutine protocol: close an awaited wait that will not be resumed, or
        drop one that never started without the "never awaited" warning; an iterated
        one ends as :meth:`aclose` ends it.

        Raises:
            UsageError: a task awaits the wait now (another task, or the wait's own
                ``on_progress``): closing it would break that task's ``await`` with
                Python's "cannot reuse already awaited coroutine"; cancel the task
                instead. Or a step of its iteration is waiting for its next event.
        """
        if self._awaited_now():
            raise UsageError(f"{_AWAITED_ELSEWHERE}; to end it, cancel the task that awaits it")
        if self._running is not None:
            self._running.close()
            self._driver = _Driven.ENDED  # also when it never started (no finally ran)
        elif self._iterated:  # as aclose() does: no step of it awaits anything here
            self._close_iteration()
        else:
            self._ended = True
