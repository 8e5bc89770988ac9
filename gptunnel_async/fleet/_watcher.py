"""The durable watcher: waits registered in a store, read by whichever worker is free,
and delivered to exactly one handler of the fleet, at least once.

Two loops run in every worker that calls :meth:`Watcher.run`:

- the **poll loop** claims due tasks with a lease, reads each through the client (and so
  through its request budget), then either finishes it (done, failed, or past its
  deadline) or re-schedules it by the wait core's decision, saved with the task;
- the **delivery loop** takes finished tasks from the store and hands each to the
  handler, acknowledging it when the handler returns; one a worker took but never
  acknowledged (it died) is taken over after ``delivery_timeout``;
- on a store that repairs itself (a :class:`RepairingStore`: Redis), the **repair
  loop** makes a bounded pass every :data:`REPAIR_EVERY` seconds, putting back a wait
  or a delivery whose index key was deleted or evicted apart from its record.

When the store cannot be reached, both loops log, back off and carry on; a lease that
ran out brings its task back to another worker, so nothing acknowledged is lost. An
entry this version cannot read is set aside by the store as a dead letter; an odd
notice is skipped; anything else that goes wrong is logged and the loops carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import math
import os
import random
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeAlias, cast

import attrs

from .. import _timing
from .._async_only import AsyncWithOnly
from .._checks import (
    A_DAY,
    callable_as,
    called_back,
    check_task_id,
    check_text,
    count,
    describe,
    function,
    implements,
    instance_of,
    missing_methods,
    non_negative_number,
    number,
    optional,
    positive_number,
    utf8_text,
)
from .._in_process import InProcessOnly
from .._logging import sdk_logger
from .._polling import PollPolicy
from .._safe_errors import made_safe
from .._sansio.responses import redact, secret_masked
from .._sansio.text import clip
from .._sansio.waiting import (
    MAX_CLOCK,
    Decision,
    Fail,
    Finish,
    ProgressEvent,
    WaitState,
    rides_through,
)
from ..errors import (
    APITimeoutError,
    ConfigurationError,
    GPTunnelError,
    StoreDataError,
    StoreUnavailableError,
    TaskFailedError,
    UsageError,
    WaitTimeoutError,
)
from ..families import BgRemover, FaceSwap, Media, Midjourney
from ..models import MediaTask, Task
from . import _decode
from ._errors import cancellation_watch
from ._records import (
    FAMILIES,
    MAX_METADATA_BYTES,
    Claim,
    Delivery,
    Entry,
    FleetProgress,
    FleetStatus,
    LastRead,
    Outcome,
    OutcomeKind,
    ReadError,
    WatchRecord,
    _dumps,
    outcome_error,
)
from ._store import WatchStore

if TYPE_CHECKING:
    from .._client import GPTunnelClient
    from ..families import TaskResource
    from ._store import DeadLetterStore, LastReadStore, RenewingStore, RepairingStore

__all__ = ["FAMILIES", "REPAIR_EVERY", "RESULT_LIFETIME", "Handler", "Watcher"]

logger = sdk_logger("gptunnel_async.fleet")

RESULT_LIFETIME: Final = max(
    resource.family.result_lifetime for resource in (FaceSwap, BgRemover, Midjourney, Media)
).total_seconds()
"""Seconds the longest-lived results live (3 days, face swaps'): no wait outlives it. Each
family's own bound is its ``result_lifetime`` (media's is shorter)."""

IDLE_POLL: Final = 0.5
"""With nothing due, the poll loop looks again after at most this many seconds, so tasks
that other processes register are picked up within it; the delivery loop's blocking
read of the stream waits as long at most, so an idle close takes up to it (a second
made a deploy, and the fleet's tests, wait a second per worker)."""

REPAIR_EVERY: Final = 5.0
"""Seconds between a worker's passes of its store's repair (a
[RepairingStore][gptunnel_async.fleet.RepairingStore]'s): each looks at a bounded slice of
the store (a thousand keys of a Redis database), so a lost schedule entry is found
within a few passes on a Redis that holds the fleet alone."""

INSTANT_IDLE_POLL: Final = 0.02
"""Under instant waits (tests: the ``gptunnel_fake`` fixture, ``instant_waits()``), the
delivery loop's blocking read of the stream waits this many seconds at most instead of
:data:`IDLE_POLL`, so that closing an idle watcher, at the end of each test, takes
milliseconds rather than half a second."""

LAST_READ_LOOKUP: Final = 0.5
"""Seconds a timed-out :meth:`Watcher.result` may spend past its ``timeout`` to ask the
store what the fleet last read of the task, for its error; and its first look at the
outcome, made however small its ``timeout`` (``0``: that look alone)."""

_NOT_REGISTERED: Final = (
    "the store holds no wait for it: no worker registered it with watch() in this store "
    "(a mistyped id, or a store of another name?), or its outcome was forgotten since its "
    "delivery (an hour later, on Redis), or Redis lost it (a restart without persistence, "
    "an eviction)"
)

RESULT_RECHECK: Final = 1.0
"""``result`` reads the store at least this often: finish notices are best effort."""

BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0
"""The loops' pauses while the store is unreachable: doubling from the first, capped."""

Handler: TypeAlias = Callable[[Delivery], object]
"""What a watcher hands finished tasks to: a function or a coroutine function. What it
returns is ignored, once awaited if it is awaitable (a chat's send call may return the
message it sent)."""


def _default_worker() -> str:
    """``host:pid:tag``, in text UTF-8 can encode: a host name that is not UTF-8 comes
    with lone surrogates, which would fail every call to the store."""
    host = socket.gethostname().encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _CountAtDeadline:
    """A failed handler attempt's count, made at its deadline if the handler has not
    ended by then. Cancelled at the deadline, a handler may take long to clean up,
    while another worker takes the delivery over ``RECLAIM_MARGIN`` after the deadline:
    that worker must find this attempt counted, else every worker taking it over read
    the same count, and more than ``max_attempts`` attempts ran. ``count`` is ``None``
    for a store that counts no failures: then nothing is counted. ``cut_short`` says
    whether the worker's close has cancelled the handler: one it cancelled before the
    deadline is no failed attempt, however long it takes to clean up."""

    def __init__(
        self,
        count: Callable[[], Coroutine[Any, Any, int | None]] | None,
        deadline: float,
        cut_short: Callable[[], bool],
    ) -> None:
        self.deadline = deadline
        self._count = count
        self._cut_short = cut_short
        self._counting: asyncio.Task[int | None] | None = None
        loop = asyncio.get_running_loop()
        self._timer = None if count is None else loop.call_at(deadline, self._start)

    def _start(self) -> None:
        assert self._count is not None
        if not self._cut_short():
            self._counting = asyncio.ensure_future(self._count())

    async def handler_ended(self) -> None:
        """No count at the deadline any more; one already started is waited for, even
        when the handler ended by a closing worker's cancellation (one store write, which
        must not be left running)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._counting is not None:
            await asyncio.wait({self._counting})

    async def result(self) -> int | None:
        """The failures counted: by the count made at the deadline, else by one made now
        (``None``: not counted)."""
        if self._counting is not None:
            return self._counting.result()
        return None if self._count is None else await self._count()


class _Backoff:
    """Pauses for a loop that never gives up, with full jitter. (tenacity drives the
    retries of one call; this only needs the next pause, and a reset on success.)"""

    def __init__(self, what: str) -> None:
        self._what = what
        self._next = BACKOFF_FIRST
        self._failures = 0

    def reset(self) -> None:
        """The loop's step worked: the next failure pauses briefly again, and the end of
        a run of failures is logged (an operator watching an outage sees it end)."""
        if self._failures:
            logger.info("watcher: %s works again, after %d failure(s)", self._what, self._failures)
        self._next = BACKOFF_FIRST
        self._failures = 0

    async def pause(self, error: BaseException) -> None:
        """Log ``error`` (with its traceback unless it is the store's: an error of the
        store names what it was doing already), then sleep."""
        store_error = isinstance(error, StoreUnavailableError | StoreDataError)
        logger.warning(
            "watcher: %s; trying again in up to %.1fs",
            error if store_error else f"{self._what}: {error}",
            self._next,
            exc_info=None if isinstance(error, StoreUnavailableError) else error,
        )
        self._failures += 1
        await asyncio.sleep(random.uniform(0, self._next))
        self._next = min(self._next * 2, BACKOFF_MAX)


class _Pool:
    """At most ``size`` coroutines at once, each run as its own task."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._running: set[asyncio.Task[None]] = set()
        self.closed = False
        """:meth:`close` has begun: what runs is cancelled, by the pool, not by itself."""

    @property
    def free(self) -> int:
        return self.size - len(self._running)

    async def wait_for_room(self) -> None:
        if self._running and not self.free:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)

    def start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def drain(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the coroutines running to end by themselves."""
        if self._running and seconds > 0:
            await asyncio.wait(self._running, timeout=seconds)

    async def close(self) -> None:
        """Cancel what runs, and wait until all of it has ended, even when this wait is
        itself cancelled (a watcher's close cancelled by a deploy's deadline): that
        cancellation is raised after, as ``asyncio.TaskGroup`` does. Each task is
        cancelled once: a handler cleaning up after its cancellation (a close past its
        grace) is not cut short by a second close, nor by this wait's own cancellation
        (``asyncio.wait``, unlike ``gather``, passes that on to no task)."""
        self.closed = True
        running = list(self._running)
        for task in running:
            if not task.cancelling():
                task.cancel()
        cancelled = False
        while pending := [task for task in running if not task.done()]:
            cancelled |= await _cancelled_meanwhile(asyncio.wait(pending))
        for task in running:  # what each ended with is seen here: asyncio logs it else
            if not task.cancelled():
                task.exception()
        if cancelled:
            raise asyncio.CancelledError


class Watcher(AsyncWithOnly, InProcessOnly):
    """Waits that survive restarts, shared by every worker of a fleet.

    Args:
        client: reads tasks (through its request budget: give every worker's client the
            same [RedisBudget][gptunnel_async.fleet.RedisBudget]).
        store: where the waits live: a [RedisStore][gptunnel_async.fleet.RedisStore] for
            a fleet, a [MemoryStore][gptunnel_async.fleet.MemoryStore] for one process.
        handler: called once per finished task with a
            [Delivery][gptunnel_async.fleet.Delivery] (an ``async def`` or a plain
            function, called with the delivery alone: ``ConfigurationError`` here
            otherwise), in one worker of the fleet, at least once: it must tolerate a
            rare second call for the same task (after a worker died inside it). A
            worker without a handler reads tasks but leaves deliveries to the others.
        policy: how reads are paced (its ``timeout`` is not used: ``watch`` takes one);
            by default the client's ``poll_policy``.
        lease: seconds a worker may hold a task it is reading before another may take
            it (> 0, at most a day). A read, its retries and its wait for the request
            budget included, is cut at four fifths of it counted from the claim, as a
            failed read
            (``APITimeoutError``) the wait rides through: give a lease longer than a
            read with its retries takes.
        concurrency: reads in flight at once in this worker, and handlers too (>= 1;
            a worker claims or takes at most 1,000 of them in one store command).
        delivery_timeout: seconds a handler may run (> 0, at most a day): longer than
            your handler ever takes. Past it, the handler is cancelled, which counts
            as a failed attempt, and the delivery is given again, to any worker; a
            worker that died holding one loses it to another after as long.
        max_attempts: how many failed attempts at handling a finished task (>= 1) the
            fleet makes before it gives up on it: once the last raises, or does not
            return within ``delivery_timeout``, the delivery is acknowledged and set
            aside as a dead letter, said by an ``ERROR`` (the task's outcome stays
            readable by ``result()``). A handler its worker never finished (the
            worker died, or closed and cancelled it) is not an attempt that failed.
            ``None`` (the default): delivered again until the task's record expires
            (a day after the wait's deadline); then the store sets the delivery aside
            as a dead letter.
        worker: this worker's name in the store; by default host, pid and a random tag.
            Workers may share one: each claim is leased under the name and a tag of
            its own, and deliveries belong to the fleet, not to a name.

    Raises:
        ConfigurationError: a bad option: ``client`` not a ``GPTunnelClient``, ``store``
            without the ``WatchStore`` methods (``failed`` and ``dead_letter`` too,
            with ``max_attempts``), a blank ``worker`` or one UTF-8 cannot encode, a
            ``lease`` or ``delivery_timeout`` over a day, ``max_attempts`` below 1.
    """

    _instead = (
        "make a GPTunnelClient and a Watcher over the same store in the other process: "
        "the waits are in the store"
    )

    def __init__(
        self,
        client: GPTunnelClient,
        store: WatchStore,
        *,
        handler: Handler | None = None,
        policy: PollPolicy | None = None,
        lease: float = 30.0,
        concurrency: int = 16,
        delivery_timeout: float = 60.0,
        max_attempts: int | None = None,
        worker: str | None = None,
    ) -> None:
        from .._client import GPTunnelClient  # the client imports what the fleet does

        if handler is not None:
            callable_as("handler", function("handler", handler), (None,), "handler(delivery)")
        optional(instance_of(PollPolicy), "policy", policy)
        instance_of(GPTunnelClient)("client", client)
        implements("store", store, "a WatchStore (RedisStore or MemoryStore)", _STORE_METHODS)
        self.client = client
        self.store = store
        self.handler = handler
        self.policy = policy
        self.lease = _seconds("lease", lease)
        self.concurrency = count("concurrency", concurrency, 1)
        self.delivery_timeout = _seconds("delivery_timeout", delivery_timeout)
        self.max_attempts = None if max_attempts is None else count("max_attempts", max_attempts, 1)
        if max_attempts is not None:
            implements("store", store, "a WatchStore that counts failures", _GIVING_UP)
        counts = not missing_methods(store, _GIVING_UP)
        self._dead_letters = cast("DeadLetterStore", store) if counts else None
        """The store, if it counts failed attempts (one of your own may not)."""
        tells = not missing_methods(store, ("last_read",))
        self._last_reads = cast("LastReadStore", store) if tells else None
        """The store, if it tells what the fleet last read of a task (for a timeout)."""
        renews = not missing_methods(store, ("ack_and_watch",))
        self._renewing = cast("RenewingStore", store) if renews else None
        """The store, if it acknowledges a delivery and registers a new wait in one step."""
        repairs = not missing_methods(store, ("repair",))
        self._repairing = cast("RepairingStore", store) if repairs else None
        """The store, if it repairs keys lost apart (a schedule deleted, say)."""
        self._after_ack: dict[str, tuple[str, float]] = {}
        """New waits asked for by the handler of their task's ended wait (a record and
        its seconds): registered once that delivery is acknowledged."""
        self._in_hand: set[str] = set()
        """Entries this worker is handling (or counting the failure of): taken again
        meanwhile, one is not started twice at once."""
        self.worker = (
            _default_worker()
            if worker is None
            else utf8_text("worker", check_text("worker", worker))
        )
        self._wake = asyncio.Event()
        self._finished: dict[str, list[asyncio.Event]] = {}
        """The ``result()`` calls awaiting each task: one event each, which a finish
        notice of the task sets."""
        self._listener: asyncio.Task[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self._stopping = False
        self._closing = asyncio.Event()
        """Set by :meth:`close`: the repair loop's pause ends at once."""
        self._grace_until = 0.0
        """Until when (the loop's time) :meth:`close` lets running handlers finish."""
        self._handlers: _Pool | None = None
        """The delivery loop's running handlers."""

    def __repr__(self) -> str:
        return f"<Watcher worker={self.worker!r} store={self.store!r}>"

    # -- registering -------------------------------------------------------------------

    async def watch(
        self,
        task_id: str,
        *,
        family: str = "faceswap",
        metadata: Any = None,
        timeout: float | None = None,
    ) -> bool:
        """Register a task to be watched by the fleet until it is delivered; idempotent.

        Args:
            task_id: the task, as its create call returned it.
            family: which of the client's families reads it: one of :data:`FAMILIES`.
            metadata: small JSON (at most 16 KiB, nested at most 100 deep) handed back
                with the delivery: a chat id, a message id.
            timeout: seconds until the wait is delivered as ``"expired"``: > 0 and at
                most the family's ``result_lifetime`` (its results are gone after that),
                which is also the default (3 days for face swaps, 24 hours for media).

        Returns:
            ``True`` if it was registered now, ``False`` if it already was (the first
            registration's metadata and deadline stay). A wait that ended without the
            task's end (``"expired"``, or an ``"error"`` such as "no such task" for a
            task watched with the wrong ``family``) may be registered again once it
            was delivered: to wait longer, or with the right family; so may a task
            set aside as a dead letter because its record or outcome could not be
            read (by a version that reads it, once every worker runs one). Asked
            from that delivery's own handler, the new wait is registered once the
            handler has returned, with the delivery's acknowledgement, in one step
            where the store can (a [RenewingStore][gptunnel_async.fleet.RenewingStore])
            (``True``; not if the handler fails: it asks again when the delivery
            comes again).

        Raises:
            ConfigurationError: a blank id, an unknown family, metadata that is not
                small JSON, or a bad timeout.
            StoreUnavailableError: the store could not be reached: the wait was most
                likely not registered (if the connection broke after the store ran the
                registration, it was). Calling ``watch`` again is safe: it is
                idempotent.
        """
        check_task_id(task_id, self._secret())
        if family not in FAMILIES:
            raise ConfigurationError(f"family must be one of {FAMILIES}, got {family!r}")
        resource: TaskResource[Any] = getattr(self.client, family)
        lifetime = resource.result_lifetime.total_seconds()
        seconds = lifetime if timeout is None else positive_number("timeout", timeout)
        if seconds > lifetime:
            raise ConfigurationError(
                f"timeout must be at most {lifetime:g}s for {family} tasks, the lifetime of "
                "their results"
            )
        try:
            record = WatchRecord(family, metadata, seconds).dumps()
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"metadata must be JSON: {clip(exc, 200)}") from None
        except RecursionError:
            raise ConfigurationError("metadata must be JSON: it is nested too deeply") from None
        if len(record) > MAX_METADATA_BYTES:  # ASCII: one byte a character
            raise ConfigurationError(f"metadata must be at most {MAX_METADATA_BYTES} bytes")
        registered = await self.store.watch(task_id, record, seconds)
        if not registered and self._handling_its_end(task_id):
            self._after_ack[task_id] = (record, seconds)  # its delivery is not acked yet
            return True
        self._wake.set()
        return registered

    def _handling_its_end(self, task_id: str) -> bool:
        """Whether this runs in this watcher's handler of ``task_id``'s delivery of a
        wait that ended without its end (expired, an error): one ``watch`` may renew."""
        ended = _DELIVERING.get() in ((task_id, "expired"), (task_id, "error"))
        return ended and _HANDLING.get() is self

    async def resolve(self, task: Task | MediaTask) -> bool:
        """A finished task from a webhook (any worker's): finish its wait for the whole
        fleet. The first of this and a poll wins; the other does nothing.

        Returns:
            ``True`` if this call finished the wait (a task whose final state is over
            the 8 MiB the store keeps ends it as ``"error"``, with a ``StoreDataError``
            that says so, logged); ``False`` if the task is not finished, not watched,
            or already finished.

        Raises:
            ConfigurationError: ``task`` is not a [Task][gptunnel_async.Task] or
                [MediaTask][gptunnel_async.MediaTask] with a usable id.
            StoreUnavailableError: the store could not be reached (the poll will still
                finish the wait).
        """
        if not isinstance(task, Task | MediaTask):
            raise ConfigurationError(f"task must be a Task or MediaTask, got {describe(task)}")
        check_task_id(task.id, self._secret())
        if not (task.is_done or task.is_failed):
            return False
        # The key masked in it, as in every task a read stores: the caller's task may
        # come from a body parsed without this client's key (another process's store
        # readers mask it, but anyone reading Redis would see it).
        outcome = _outcome_of(self._masked_task(task))
        return await self.store.finish(task.id, _storable(task.id, outcome))

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run this worker's poll loop, its store's repair loop (a ``RepairingStore``'s)
        and, with a handler, its delivery loop, until cancelled. Store failures are
        logged and retried; they never end it."""
        async with asyncio.TaskGroup() as loops:
            loops.create_task(self._poll_loop())
            if self._repairing is not None:
                loops.create_task(self._repair_loop(self._repairing))
            if self.handler is not None:
                loops.create_task(self._delivery_loop())

    async def __aenter__(self) -> Self:
        """Start :meth:`run` in the background.

        Raises:
            UsageError: the watcher is running already, or still closing.
        """
        if self._running is not None:
            raise UsageError(
                "this watcher is running already (or still closing): enter it once, and "
                "again only after its close has returned"
            )
        self._running = asyncio.create_task(self.run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the loops as :meth:`close` does, running handlers given its default
        grace (a task being read comes back to the fleet after its lease)."""
        await self.close()

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop the loops this watcher started: no read or delivery starts any more.

        Handlers already running get up to ``grace`` seconds to return, so that their
        deliveries are acknowledged rather than given to another worker again after
        ``delivery_timeout`` (a deploy would otherwise send a result twice); then they
        are cancelled, with the reads in progress, whose tasks come back to the fleet
        after their lease. ``async with`` closes with the default. A close that is
        cancelled itself cancels the handlers at once, and still returns only once they
        and the loops have ended (their cleanup included); then it raises the
        cancellation.

        Args:
            grace: seconds (>= 0) running handlers may take to finish; 5 by default,
                inside the 10 s ``docker stop`` allows before it kills.

        Raises:
            ConfigurationError: ``grace`` is not a number of seconds >= 0.
            UsageError: called from inside a handler, which it would wait for.
        """
        seconds = non_negative_number("grace", grace)
        if _HANDLING.get() is self:
            raise UsageError(
                "close() was called from a handler of this watcher (or a task it started), "
                "which the close would wait for and cancel: let the code that started the "
                "watcher close it (an asyncio.Event the handler sets, say)"
            )
        try:
            if self._running is not None:  # loops run() directly are the caller's to stop
                await self._wind_down(self._running, seconds)
        finally:  # also when the close is cancelled: no half-stopped watcher is left
            await self._stop_loops()

    async def _wind_down(self, loops: asyncio.Task[None], grace: float) -> None:
        """Stop the ``loops`` taking work, and give running handlers ``grace`` seconds."""
        self._grace_until = asyncio.get_running_loop().time() + grace
        self._stopping = True
        self._wake.set()
        self._closing.set()
        if grace:
            # The loops end by themselves, the delivery loop once its take in flight has
            # returned and the handlers of what it took are drained: waiting on the
            # handlers alone would cut those short, or drop what the take received.
            await asyncio.wait([loops], timeout=grace)
        handlers = self._handlers
        if handlers is None:  # no delivery loop: nothing to hand over
            return
        if cut := handlers.size - handlers.free:  # past the grace, wherever the loops are
            logger.warning(
                "watcher: closing: %d handler(s) still running after the %gs grace are "
                "cancelled; their deliveries come again in %gs (delivery_timeout and a "
                "second), as the same attempts",
                cut,
                grace,
                self.delivery_timeout + RECLAIM_MARGIN,
            )
        await handlers.close()

    async def _stop_loops(self) -> None:
        """Cancel the loops and the listener, and wait until they have ended, even when
        the close itself is cancelled meanwhile (as ``asyncio.TaskGroup`` waits for its
        tasks): a close that returned before would leave loops and handlers running, and
        a watcher entered again would run two sets. That cancellation is raised after."""
        cancelled = False
        try:
            for task in (self._running, self._listener):
                # Cancelled again until it ends: the listener's client library may
                # swallow a cancellation (turning it into a connection error). run()'s
                # TaskGroup passes only the first on to the loops, which check for it
                # on every turn (_going_on), as redis-py may swallow theirs too.
                while task is not None and not task.done():
                    task.cancel()
                    cancelled |= await _cancelled_meanwhile(asyncio.wait([task], timeout=0.1))
        finally:
            self._running = self._listener = None
            self._handlers = None
            self._stopping = False
            self._closing.clear()
        if cancelled:
            raise asyncio.CancelledError

    def _going_on(self) -> bool:
        """Whether a loop takes more work: not once :meth:`close` stops it, and not once
        its task is cancelled, even when a client library swallowed the cancellation
        (redis-py may turn one into a connection error, which the loops ride through):
        then the cancellation is raised again here."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        return not self._stopping

    async def _poll_loop(self) -> None:
        reads, backoff = _Pool(self.concurrency), _Backoff("claiming due tasks")
        loop = asyncio.get_running_loop()
        try:
            while self._going_on():
                await reads.wait_for_room()
                # Counted from before the claim is sent: the store starts the lease when
                # it runs the claim, and its answer may come late (a slow network, a
                # Redis stall, odd entries set aside first).
                lease = _Lease(
                    f"{self.worker}#{uuid.uuid4().hex[:12]}",
                    loop.time() + self.lease * READ_SHARE_OF_LEASE,
                )
                try:
                    batch = min(reads.free, BATCH)
                    claims, next_due = await self.store.claim(lease.holder, batch, self.lease)
                except Exception as exc:  # a store's fault, or a bug: the loop carries on
                    await backoff.pause(exc)
                    continue
                backoff.reset()
                if self._stopping:  # taken as the close began: no read will start
                    await asyncio.gather(*(self._hand_back(claim, lease) for claim in claims))
                    break
                for claim in claims:
                    reads.start(self._read(claim, lease))
                if not claims:
                    await self._idle(IDLE_POLL if next_due is None else min(next_due, IDLE_POLL))
        finally:
            await reads.close()

    async def _repair_loop(self, store: RepairingStore) -> None:
        """A pass of the store's repair at once, then every :data:`REPAIR_EVERY`
        seconds: a wait whose schedule entry was lost (a ``DEL``, an eviction) is never
        read again otherwise, and a finished task whose stream entry was lost never
        delivered. What a pass put back is logged as a warning: something deletes or
        evicts the fleet's keys; so is a step of the store's clock between passes."""
        backoff = _Backoff("repairing the store")
        loop = asyncio.get_running_loop()
        last: tuple[float, float] | None = None
        """The store's clock and this worker's monotonic one at the last pass."""
        while self._going_on():
            sent = loop.time()
            try:
                repaired = await store.repair(self.lease)
            except Exception as exc:  # a store's fault, or a bug: the loop carries on
                await backoff.pause(exc)
                continue
            backoff.reset()
            if repaired.rescheduled or repaired.requeued:
                logger.warning(
                    "watcher: %d watched task(s) missing from the store's schedule were "
                    "put back, and %d finished task(s) missing from its queue of "
                    "deliveries queued again: something deletes or evicts the fleet's "
                    "keys (use maxmemory-policy noeviction)",
                    repaired.rescheduled,
                    repaired.requeued,
                )
                self._wake.set()
            if repaired.clock is not None:
                if last is not None:
                    _log_clock_step(last, (repaired.clock, sent), self.lease)
                last = (repaired.clock, sent)
            await self._idle_repair()

    async def _idle_repair(self) -> None:
        """Until the next repair pass, or the watcher's close."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPAIR_EVERY):
                await self._closing.wait()

    async def _idle(self, seconds: float) -> None:
        # asyncio.timeout rather than wait_for: Python 3.11's wait_for can swallow the
        # cancellation that stops the loop when the event is set at the same moment.
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _read(self, claim: Claim, lease: _Lease) -> None:
        """Read one claimed task; finish or re-schedule it. Never raises but its
        cancellation (the worker stopping), after handing the task back."""
        try:
            await self._read_and_decide(claim, lease)
        except asyncio.CancelledError:
            await self._hand_back(claim, lease)
            raise
        except StoreUnavailableError as exc:  # the store's, or the request budget's
            logger.warning(
                "watcher: task %s: %s; it is read again after its lease", claim.task_id, exc
            )
        except Exception:
            logger.exception("watcher: reading task %s failed", claim.task_id)
        finally:
            # Its next read may be due before the poll loop would look again.
            self._wake.set()

    async def _hand_back(self, claim: Claim, lease: _Lease) -> None:
        """A read cut short (:meth:`close`, or the loops cancelled): its task falls due
        again at once, for the other workers, rather than when its lease runs out (a
        deploy delayed every wait in flight by up to a lease). Best effort, within
        :data:`HAND_BACK_SECONDS`: the lease stays the fallback."""
        state, last = self._saved(claim)
        try:
            async with asyncio.timeout(HAND_BACK_SECONDS):
                await self.store.reschedule(
                    claim.task_id, lease.holder, 0.0, _pacing_json(state, last), None
                )
        except (TimeoutError, GPTunnelError) as exc:
            why = str(exc) or f"no answer within {HAND_BACK_SECONDS:g}s"
            logger.debug("watcher: task %s not handed back: %s", claim.task_id, why)

    async def _read_and_decide(self, claim: Claim, lease: _Lease) -> None:
        """Read the task and feed the outcome to its wait state (the pure wait core's,
        saved with the task): finish the wait, or save the state and the next read."""
        record, now = claim.record, claim.now
        state, last = self._saved(claim)
        if now >= record.deadline:
            expired = Outcome("expired", last.task, record.timeout, last.error)
            await self.store.finish(claim.task_id, _storable(claim.task_id, expired))
            return
        reading_since = time.monotonic()
        state, decision, last = await self._read_once(claim, state, last, lease.read_by)
        now += time.monotonic() - reading_since  # the store adds the delay to its time now
        if isinstance(decision, Finish):
            done = Outcome("done", decision.event.task)
            await self.store.finish(claim.task_id, _storable(claim.task_id, done))
        elif isinstance(decision, Fail):
            ended = _ended_by(decision.error, last, claim.record.family)
            await self.store.finish(claim.task_id, _storable(claim.task_id, ended))
        else:  # ReadAt (a last one a little before the deadline), or TimeOut: expire then
            event = decision.event
            progress = None if event is None else _notice_json(_progress(event, record))
            saved = _pacing_json(state, last)
            # Never past the watch's deadline: a long pause (a slow policy, a saved one)
            # or a slow read would deliver the expiry late, or after the hash is gone.
            delay = max(0.0, min(decision.at, record.deadline) - now)
            if _timing.is_instant():  # tests: the pacing's pause skipped, as a live wait's
                delay = 0.0
            await self.store.reschedule(claim.task_id, lease.holder, delay, saved, progress)

    async def _read_once(
        self, claim: Claim, state: WaitState, last: LastRead, read_by: float
    ) -> tuple[WaitState, Decision[Any], LastRead]:
        """One read of the task, ended by ``read_by`` (the loop's time), fed to
        ``state``; ``last`` updated with what it saw."""
        resource: TaskResource[Any] = getattr(self.client, claim.record.family)
        try:
            task: Task | MediaTask = await self._result_within_lease(
                resource, claim.task_id, read_by
            )
        except StoreUnavailableError:  # the budget's Redis: not the task's, nor a read's
            raise
        except GPTunnelError as exc:
            seen = ReadError.of(exc)
            failed = LastRead(last.task, seen)
            decided = _after_failed_read(state, exc, seen, last, claim.now)
            # A streak starts anew when the error changes: a 401 after a run of 503s.
            anew = last.error is None or last.error.kind != type(exc).__name__
            _log_failed_read(claim.task_id, exc, anew, decided[1])
            return (*decided, failed)
        return (*state.observe(task, claim.now), LastRead(task))

    async def _result_within_lease(
        self, resource: TaskResource[Any], task_id: str, read_by: float
    ) -> Task | MediaTask:
        """The task, read (its retries and its wait for the request budget included) by
        ``read_by``, :data:`READ_SHARE_OF_LEASE` of the lease after the claim was sent;
        else ``APITimeoutError``, a failed read the wait rides through. A read still
        going when the lease ran out would race the worker that claims the task next:
        that one could deliver the wait expired while this read was about to see it
        done. The rest of the lease is for saving the read's outcome."""
        limit = self.lease * READ_SHARE_OF_LEASE
        retried_before = _timing.failed_attempt.get()
        try:
            async with asyncio.timeout_at(read_by):
                found: Task | MediaTask = await resource.result(task_id)
                return found
        except TimeoutError:  # asyncio.timeout's: no error of the SDK is a TimeoutError here
            budget = self.client._transport.budget is not None
            # Cut short in a pause before the client's retry: what the read kept failing with.
            failed = _timing.failed_since(retried_before)
            why = (
                ""
                if failed is None
                else f"; its last attempt: {type(failed).__name__}: {clip(failed, 300)}"
            )
            raise APITimeoutError(
                f"reading the task did not end within {limit:g}s of its claim, "
                f"{READ_SHARE_OF_LEASE:.0%} of the watcher's lease, its wait for the "
                "request budget included: give it a "
                "longer lease= (or the client a shorter timeout="
                + (", or the budget's Redis client a socket_timeout" if budget else "")
                + ")"
                + (_SLOWED_BY_429 if budget else "")
                + why
            ) from failed

    def _saved(self, claim: Claim) -> tuple[WaitState, LastRead]:
        """The task's saved wait state, or a new one: also when the saved one cannot be
        read, which costs only its pacing. Its deadline is the watch's (a saved policy's
        own ``timeout`` is not used), so that it makes one last read a little before
        it, as a live wait does, when its pacing's next read would come after it. And
        what the wait saw last, from the same saved JSON, parsed once. The warning that
        an unreadable one was set aside masks the client's key in what it quotes."""
        saved: object = claim.schedule
        if saved is not None:
            try:
                saved = _decode.stored_object(saved, "the saved pacing")
                state = _decode.schedule(saved, claim.task_id)
            except StoreDataError as exc:  # its text quotes what someone else stored
                shown = redact(str(exc), self._secret())
                logger.warning("watcher: task %s paced afresh: %s", claim.task_id, shown)
            else:
                return _until(state, claim.record), _decode.last_read(saved)
        fresh = WaitState.start(claim.task_id, self.policy or self.client.poll_policy, claim.now)
        return _until(fresh, claim.record), _decode.last_read(saved)

    async def _delivery_loop(self) -> None:
        handlers, backoff = _Pool(self.concurrency), _Backoff("taking finished tasks")
        self._handlers = handlers
        try:
            while self._going_on():
                await handlers.wait_for_room()
                if self._stopping:  # closed meanwhile: take nothing more
                    break
                try:
                    entries = await self.store.take(
                        self.worker,
                        min(handlers.free, BATCH),
                        INSTANT_IDLE_POLL if _timing.is_instant() else IDLE_POLL,
                        self.delivery_timeout + RECLAIM_MARGIN,
                    )
                except Exception as exc:  # a store's fault, or a bug: the loop carries on
                    await backoff.pause(exc)
                    continue
                backoff.reset()
                # From the take's answer: its blocking read does not count (the store's
                # clock starts when an entry arrives), its reads of entries must stay
                # within RECLAIM_MARGIN.
                deadline = asyncio.get_running_loop().time() + self.delivery_timeout
                for entry in entries:
                    if entry.entry_id not in self._in_hand:  # else its last attempt goes on
                        self._in_hand.add(entry.entry_id)
                        handled = handlers.start(self._deliver(entry, deadline, handlers))
                        # A callback, not a finally: a task cancelled before it starts
                        # (by close) never runs its body.
                        handled.add_done_callback(partial(_forget, self._in_hand, entry.entry_id))
            # Closed: what was taken is handed over, within close()'s grace.
            await handlers.drain(self._grace_until - asyncio.get_running_loop().time())
        finally:
            await handlers.close()

    async def _deliver(self, entry: Entry, deadline: float, pool: _Pool) -> None:
        """Hand one finished task to the handler; acknowledge it when the handler returns.
        A handler that raises, or has not returned by ``deadline`` (the loop's time;
        it is cancelled then), is logged, and the delivery comes back, unless the
        attempt was the last of ``max_attempts``. What the store is told after the
        handler (the acknowledgement, a failure, a dead letter) is not cut short by a
        close: see :func:`_past_cancellation`."""
        assert self.handler is not None
        if self._out_of_attempts(entry.failures):  # the store failed to set it aside
            reason = f"handler attempts failed: {entry.failures}"
            await _past_cancellation(self._give_up(entry, reason))
            return
        if entry.record is None or entry.outcome is None:
            # A store of your own lost the task's record: nothing to hand over.
            logger.error(
                "watcher: task %s: its store kept no record or outcome of it (expired, "
                "deleted?): its delivery is dropped",
                entry.task_id,
            )
            await _past_cancellation(self._acknowledge(entry))
            return
        counting = None if self._dead_letters is None else partial(self._count_failure, entry)
        count = _CountAtDeadline(counting, deadline, lambda: pool.closed)
        try:
            failure = await self._handle(entry, entry.record, entry.outcome, deadline)
        finally:
            await count.handler_ended()
        if failure is None:
            await _past_cancellation(self._acknowledge(entry))
        else:
            self._after_ack.pop(entry.task_id, None)  # it asks again when it comes again
            await _past_cancellation(self._after_failure(entry, *failure, count))

    async def _acknowledge(self, entry: Entry) -> None:
        """The handler returned: acknowledge ``entry``, and register the new wait the
        handler asked for, if it did (see :meth:`watch`): in one step where the store
        can, so that no store failure between the two loses the new wait."""
        again = self._after_ack.get(entry.task_id)
        renewed: bool | None = None
        try:
            if again is not None and self._renewing is not None:
                renewed = await self._renewing.ack_and_watch(entry, *again)
            else:
                await self.store.ack(entry)
        except StoreUnavailableError as exc:
            logger.warning(
                "watcher: task %s handled, but the store failed (%s): it may be delivered again",
                entry.task_id,
                exc,
            )
            return
        self._after_ack.pop(entry.task_id, None)
        if again is not None:
            await self._watch_again(entry.task_id, *again, renewed)

    async def _watch_again(
        self, task_id: str, record: str, seconds: float, renewed: bool | None
    ) -> None:
        """The new wait its handler asked for, now that the delivery of the old one is
        acknowledged: registered with it (``renewed``: whether the store did), or now,
        by a store that cannot do both in one step (``None``)."""
        why = "the store no longer held the wait that ended (expired, deleted?)"
        try:
            if renewed is None:
                renewed = True
                await self.store.watch(task_id, record, seconds)
        except GPTunnelError as exc:
            renewed, why = False, str(exc)
        if not renewed:
            logger.warning(
                "watcher: task %s: the new wait its handler asked for was not registered "
                "(%s): call watch() again",
                task_id,
                why,
            )
        self._wake.set()

    async def _handle(
        self, entry: Entry, record: WatchRecord, outcome: Outcome, deadline: float
    ) -> tuple[str, BaseException] | None:
        """Run the handler on ``entry`` until ``deadline`` at most; ``None`` if it
        returned, else what went wrong (for the log and a dead letter) and the error.
        A cancellation of this task (a closing worker) is passed on, never counted as
        a failure, even if the handler turned it into another error."""
        assert self.handler is not None
        delivery = Delivery(
            redact(entry.task_id, self._secret()),  # read from the store, as the rest
            record.family,
            record.metadata,
            outcome.kind,
            self._masked(outcome.task),
            entry.redelivered,
            self._rebuilt(outcome.error),
            entry.failures + 1,
            outcome.timeout if outcome.kind == "expired" else 0.0,
        )
        _HANDLING.set(self)  # this task's context, and what it starts: see close()
        _DELIVERING.set((entry.task_id, outcome.kind))  # see watch()
        closing = cancellation_watch()
        limit = asyncio.timeout_at(deadline)
        try:
            async with limit:
                returned = called_back("handler", self.handler(delivery))
                if inspect.isawaitable(returned):
                    await returned
        except (KeyboardInterrupt, SystemExit):
            raise  # the program is to stop: not the handler's failure
        except BaseException as exc:  # a BaseException of its own, too: a failed attempt
            if closing():  # the close's cancellation, whatever the handler made of it
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise asyncio.CancelledError from exc
            if limit.expired():
                return "did not return within delivery_timeout", exc
            return f"raised {type(exc).__name__}", exc  # CancelledError too: its own
        return None

    async def _after_failure(
        self, entry: Entry, what: str, error: BaseException, count: _CountAtDeadline
    ) -> None:
        """Log a failed handler attempt (first: whatever the store does next), count it
        (unless ``count`` did at the deadline), and give up on ``entry`` if it was the
        last."""
        attempt = entry.failures + 1
        numbered = f"attempt {attempt}" + (f" of {self.max_attempts}" if self.max_attempts else "")
        if self._out_of_attempts(attempt):
            numbered, next_one = f"{numbered}, the last", ""
        else:
            again = max(0.0, count.deadline + RECLAIM_MARGIN - asyncio.get_running_loop().time())
            next_one = f"; it comes again in {again:.3g}s"
        logger.error(
            "watcher: the handler %s for task %s (%s)%s",
            *(what, entry.task_id, numbered, next_one),
            exc_info=error,
        )
        failures = await count.result()
        if failures is not None and self._out_of_attempts(failures):  # 0: acked meanwhile
            await self._give_up(entry, f"handler attempts failed: {failures}; the last {what}")

    async def _count_failure(self, entry: Entry) -> int | None:
        """Count a failed attempt at ``entry``: the failures counted so far, 0 if it was
        acknowledged or set aside meanwhile, ``None`` if the store failed (the attempt
        goes uncounted: one more attempt at worst)."""
        assert self._dead_letters is not None
        try:
            return await self._dead_letters.failed(entry)
        except Exception as exc:  # a store's fault
            logger.warning("watcher: task %s: its failure is not counted: %s", entry.task_id, exc)
            return None

    def _out_of_attempts(self, failures: int) -> bool:
        """Whether a task whose handler failed ``failures`` times gets no more attempts."""
        return self.max_attempts is not None and failures >= self.max_attempts

    async def _give_up(self, entry: Entry, reason: str) -> None:
        """Set ``entry`` aside as a dead letter: no worker takes it again; an ``ERROR``
        says so. If the store fails, the entry stays pending, and the next worker to
        take it gives up on it."""
        assert self._dead_letters is not None  # max_attempts needs one
        try:
            set_aside = await self._dead_letters.dead_letter(entry, reason)
        except Exception as exc:  # a store's fault
            logger.warning(
                "watcher: task %s not set aside, the store failed (%s): it is taken again",
                entry.task_id,
                exc,
            )
            return
        if set_aside:
            logger.error(
                "watcher: gave up delivering task %s (%s); set aside as a dead letter",
                entry.task_id,
                reason,
            )

    # -- waiting in any process --------------------------------------------------------

    async def result(self, task_id: str, *, timeout: float | None = None) -> Task | MediaTask:
        """Wait, in any process, until a watched task finishes; return its final state.

        Args:
            task_id: a task some worker of the fleet registered with :meth:`watch`. An
                id no one registered in this store (a typo, a store of another
                ``name``), or one delivered over an hour ago, is waited for like any
                other: until ``timeout``, whose error then says that the store holds no
                wait for it. Give one where that can happen.
            timeout: seconds to wait at most (>= 0), or ``None`` for as long as it
                takes. The store is looked at once however small it is (for at most
                half a second): ``0`` is one look, the task returned if it is done,
                else ``WaitTimeoutError`` with the state the fleet last read.

        Returns:
            The task, done.

        Raises:
            TaskFailedError: the task failed.
            NotFoundError: the API said, on two reads in a row, that it does not know
                the task (a mistyped id, another family's task), which ended the wait:
                rebuilt from the store, as ``Delivery.last_error`` is.
            WaitTimeoutError: ``timeout`` passed, or the wait's own deadline did. For
                ``timeout``, its ``task`` is the state the fleet last read (``None``
                before the first read) and its ``last_error`` that read's error, which
                the store is asked for once the timeout has passed (for at most half a
                second more; a [LastReadStore][gptunnel_async.fleet.LastReadStore]
                only).
            StoreUnavailableError: the store could not be reached.
            StoreDataError: the stored outcome cannot be read by this version (another
                version wrote it, say), or the task was set aside as a dead letter.
        """
        check_task_id(task_id, self._secret())
        seconds = optional(non_negative_number, "timeout", timeout)
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        finished = asyncio.Event()
        self._finished.setdefault(task_id, []).append(finished)
        try:
            outcome = await self._outcome_by(task_id, finished, deadline)
            stored = None if outcome is None else _decode.outcome(outcome)
        except StoreDataError as exc:  # its text quotes what someone else stored
            raise made_safe(exc, self._secret()) from exc.__cause__
        finally:
            self._stop_awaiting(task_id, finished)
        if stored is None:
            raise await self._timed_out(task_id, seconds or 0.0)
        task, error = self._masked(stored.task), self._rebuilt(stored.error)
        ended = outcome_error(task_id, stored.kind, task, stored.timeout, error)
        if ended is not None:
            raise ended
        assert task is not None  # a done outcome has its task
        return task

    async def _timed_out(self, task_id: str, seconds: float) -> WaitTimeoutError:
        """The error of a :meth:`result` whose ``timeout`` passed: with the state the
        fleet last read of the task, or saying that the store holds no wait for it, if
        the store tells (one more read, cut at :data:`LAST_READ_LOOKUP`); without,
        if it does not, or fails to."""
        saved: str | bytes | None = ""
        known = False
        if self._last_reads is not None:
            try:
                async with asyncio.timeout(LAST_READ_LOOKUP):
                    saved = await self._last_reads.last_read(task_id)
                known = True
            except Exception:  # any store's failure: the timeout is the error to tell
                saved = ""
        if saved is None:
            return WaitTimeoutError(
                task_id, seconds, None, unseen=_NOT_REGISTERED, still_watched=False
            )
        last = _decode.last_read(saved or None)
        task, error = self._masked(last.task), self._rebuilt(last.error)
        watched = True if known else None
        return WaitTimeoutError(task_id, seconds, task, error, still_watched=watched)

    def _secret(self) -> str:
        """The client's API key: masked in what is read back from the store, which
        another process, or an older version, wrote."""
        return self.client._transport.secret

    def _masked(self, task: Task | MediaTask | None) -> Task | MediaTask | None:
        """A task read back from the store, with this client's API key masked in it."""
        return None if task is None else self._masked_task(task)

    def _masked_task(self, task: Task | MediaTask) -> Task | MediaTask:
        """``task`` with this client's API key masked in it."""
        return secret_masked(task, self._secret())

    def _rebuilt(self, error: ReadError | None) -> GPTunnelError | None:
        """An error read back from the store, rebuilt with this client's key masked."""
        if error is None:
            return None
        rebuilt = error.rebuilt()
        made_safe(rebuilt, self._secret())  # an SDK error: masked in place
        return rebuilt

    async def _outcome_by(
        self, task_id: str, finished: asyncio.Event, deadline: float | None
    ) -> str | bytes | None:
        """The task's stored outcome once it has one, or ``None`` at ``deadline`` (on the
        loop's clock). The deadline is checked on every turn, not only by a cancellation:
        a client library may swallow the cancellation that a timeout sends into its call
        (and the timeout fires only once)."""
        loop = asyncio.get_running_loop()
        cancelled = cancellation_watch()
        # The first look is made however close the deadline (timeout=0: one look), given
        # up to LAST_READ_LOOKUP: a timeout shorter than a round trip to the store
        # otherwise timed out a task long done, never looked at.
        look = max(_left(deadline, loop), LAST_READ_LOOKUP)
        while look > 0:
            if cancelled():
                raise asyncio.CancelledError  # one the store's client swallowed
            finished.clear()  # before the read: a notice that comes during it is kept
            try:
                async with asyncio.timeout(look):
                    outcome = await self.store.outcome(task_id)
            except TimeoutError:
                return None
            if outcome is not None or _left(deadline, loop) <= 0:
                return outcome
            self._listen()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(RESULT_RECHECK, _left(deadline, loop))):
                    await finished.wait()
            look = _left(deadline, loop)
        return None

    def _listen(self) -> None:
        """Keep one subscription to the store's notices while anyone awaits a result (a
        listener being cancelled is ended, not reused)."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._dispatch_finishes())

    def _stop_awaiting(self, task_id: str, finished: asyncio.Event) -> None:
        """A ``result()`` call ended. Once no call awaits any result, the subscription
        ends (it held a connection, in a watcher used for results alone and never
        closed, until the next notice)."""
        awaiting = self._finished.get(task_id, [])
        awaiting.remove(finished)
        if not awaiting:
            self._finished.pop(task_id, None)
        if not self._finished and self._listener is not None:
            _cancel_until_done(self._listener)
            self._listener = None

    async def _dispatch_finishes(self) -> None:
        with contextlib.suppress(StoreUnavailableError):  # result() reads the store anyway
            async for notice in _notices(self):
                if isinstance(notice, _decode.Finished):
                    for event in self._finished.get(notice.task_id, ()):
                        event.set()
                if not self._finished:
                    return

    async def progress(self) -> AsyncIterator[FleetProgress]:
        """Progress of every watched task, as the fleet's workers read it (best effort:
        a notice sent while this process was not listening is not seen, and one this
        version cannot read is logged and skipped). A task's last notice says its wait
        ended (``ended``, with the outcome as ``status``): it comes when the wait
        ends, for a task this iterator has had a notice of (of the last 10,000 such
        tasks, and 4 MiB of their metadata).

        Raises:
            StoreUnavailableError: the store could not be reached.
        """
        running = _LastNotices()
        async for notice in _notices(self):
            if isinstance(notice, FleetProgress):
                running.remember(notice)
                yield notice
            elif notice.outcome is not None:
                ended = running.ended(notice.task_id, notice.outcome)
                if ended is not None:
                    yield ended

    async def status(self) -> FleetStatus:
        """What an operator watches: see [FleetStatus][gptunnel_async.fleet.FleetStatus].

        Raises:
            StoreUnavailableError: the store (or the budget's Redis) could not be reached.
        """
        status = await self.store.status()
        budget = self.client._transport.budget
        if budget is None:
            return status
        return attrs.evolve(status, rate=await budget.current_rate())


_GIVING_UP: Final = ("failed", "dead_letter")
"""What a store needs for ``max_attempts``: counting failures, and dead letters."""

PROGRESS_REMEMBERED: Final = 10_000
"""Tasks whose last notice a ``progress()`` iterator keeps, to send their ended notice."""

PROGRESS_REMEMBERED_BYTES: Final = 4 * 1024 * 1024
"""The metadata (JSON text) a ``progress()`` iterator keeps of those tasks at most."""

BATCH: Final = 1000
"""The most due tasks a worker claims, or finished tasks it takes, in one store command,
however large its ``concurrency``: Redis refuses a count past its range (a
``concurrency=sys.maxsize`` meant as "no bound" failed every claim and take, and the
worker never read nor delivered anything), and a large one costs it memory up front."""

RECLAIM_MARGIN: Final = 1.0
"""Seconds past ``delivery_timeout`` before a delivery is taken from another worker: its
handler is cancelled at the timeout, and its failure counted, first."""

_STORE_METHODS: Final = (
    "watch",
    "claim",
    "reschedule",
    "finish",
    "take",
    "ack",
    "outcome",
    "events",
    "status",
)
"""What a ``store`` must have: [WatchStore][gptunnel_async.fleet.WatchStore]'s methods."""


async def _notices(watcher: Watcher) -> AsyncIterator[FleetProgress | _decode.Finished]:
    """The notices of ``watcher``'s store, decoded; an odd one is skipped, logged once as
    a warning per listener (then at debug level: anyone may publish on the channel). Its
    client's API key is masked in what they hold of another process's text (a progress
    notice's task id and status) and in what the log quotes of an odd one. The key is
    never a local here: this generator's frame is in the traceback of the error that
    ends it (a Redis restart), which error trackers render with every local."""
    odd = 0
    async for message in watcher.store.events():
        try:
            notice = _decode.notice(message)
        except StoreDataError as exc:
            odd += 1
            level = logging.WARNING if odd == 1 else logging.DEBUG
            shown = redact(str(exc), watcher._secret())
            logger.log(level, "watcher: an odd notice skipped (%d so far): %s", odd, shown)
            continue
        if isinstance(notice, FleetProgress):
            yield attrs.evolve(
                notice,
                task_id=redact(notice.task_id, watcher._secret()),
                status=redact(notice.status, watcher._secret()),
            )
        elif notice is not None:
            yield notice


_HANDLING: Final[contextvars.ContextVar[Watcher | None]] = contextvars.ContextVar(
    "gptunnel_async_fleet_handling", default=None
)
"""The watcher whose handler runs in this context: tasks a handler starts inherit it."""

_DELIVERING: Final[contextvars.ContextVar[tuple[str, str] | None]] = contextvars.ContextVar(
    "gptunnel_async_fleet_delivering", default=None
)
"""The task id and outcome kind of the delivery whose handler runs in this context."""


def _after_failed_read(
    state: WaitState, error: GPTunnelError, seen: ReadError, last: LastRead, now: float
) -> tuple[WaitState, Decision[Any]]:
    """A fleet wait's state and decision after a read that failed with ``error`` at
    ``now`` (``seen``: the error as the store keeps it), ``last`` holding the read
    before it.

    A transient failure is read again by the pacing, as a live wait does. A task the
    API says it does not know (a mistyped id, another family's task) ends the wait as
    ``"error"`` once a second read confirms it: one odd answer of a server must not end
    a paid task's wait. Any other error is ridden through, read again at the slowest
    pace until the deadline, where a live wait ends: a 401, 402, 403 or a TLS failure
    heals when an operator acts (a key, a top-up, a certificate), a 409 or a 520 of a
    proxy when the server does, which a durable wait can outlast.
    """
    if rides_through(error):
        return state.failed(error, now)
    if _no_such_task(seen) and last.error and _no_such_task(last.error):
        return state.failed(error, now)  # Fail: the wait ends with it
    return state, state.read_at(now + state.policy.max_interval, now)


NO_SUCH_TASK: Final = (("type", "not_found_error"), ("code", "4"))
"""How the API says it does not know a task: a 404 whose error object's ``type`` is
``not_found_error``, or ``/media``'s code 4, "record not found"
(https://docs.gptunnel.ru/media-api/models). A 404 of a path the API lacks (a web
server's page, a gateway's "Invalid URL") says neither."""


def _no_such_task(error: ReadError) -> bool:
    """Whether ``error`` (a read's, as the store keeps it) is the API's own "no such
    task", not a 404 of a path the API lacks: ``base_url`` wrong on one worker must not
    end the fleet's waits."""
    attributes = error.attributes
    return error.kind == "NotFoundError" and any(
        str(attributes.get(name)) == value for name, value in NO_SUCH_TASK
    )


@attrs.frozen
class _Lease:
    """One claim's hold on the tasks it took. ``holder``: the name the store keeps as
    the lease's, the worker's name and a tag of this claim, so that no save of a read
    lands on another claim of its task (two workers started with one ``worker=`` name,
    or this worker's next claim once the lease ran out). ``read_by``: the loop's time
    by which a read of them ends, :data:`READ_SHARE_OF_LEASE` of the lease after the
    claim was sent."""

    holder: str
    read_by: float


HAND_BACK_SECONDS: Final = 1.0
"""How long a closing worker tries to hand back a task whose read it cut short, or to
end what it tells the store after a handler (see :func:`_past_cancellation`)."""


async def _past_cancellation(writes: Coroutine[Any, Any, None]) -> None:
    """Run ``writes`` (what the store is told once a handler has ended: its
    acknowledgement, a failed attempt, a dead letter); a cancellation meanwhile (a
    close past its grace, or cancelled itself) lets them go on for up to
    :data:`HAND_BACK_SECONDS` more, then cuts them and is raised. A close that cut an
    acknowledgement in flight had a handler that returned delivered again, to another
    worker, after ``delivery_timeout``."""
    running = asyncio.ensure_future(writes)
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        if not running.done():
            await asyncio.wait({running}, timeout=HAND_BACK_SECONDS)
            running.cancel()  # and waited for: a close returns once its work has ended
            await asyncio.wait({running}, timeout=HAND_BACK_SECONDS)
        if running.done() and not running.cancelled():
            running.exception()  # seen here: asyncio logs it else
        raise


READ_SHARE_OF_LEASE: Final = 0.8
"""The share of its lease a worker gives one read of a task, retries included: a read is
cut there, so that it ends, and its outcome is saved, before another worker may claim
the task."""

_SLOWED_BY_429: Final = (
    "; the budget also slows every worker's reads down after a 429, for a while "
    "(its rate now: gptunnel-async fleet status)"
)
"""What a read cut at its lease may have waited for with a budget: a shared rate the
API's 429s have lowered (see ``RedisBudget``), which no lease or timeout changes."""

MAX_HOLD: Final = A_DAY
"""The longest ``lease`` and ``delivery_timeout``, in seconds: a day, far beyond any read
or handler (Redis counts them in milliseconds, as integers)."""


def _seconds(name: str, value: Any) -> float:
    """``value`` as seconds above 0 and at most :data:`MAX_HOLD`; ``ConfigurationError``
    otherwise."""
    return number(name, value, "a number of seconds > 0 and at most a day (86400)", _holdable)


def _holdable(seconds: float) -> bool:
    return 0 < seconds <= MAX_HOLD


def _until(state: WaitState, record: WatchRecord) -> WaitState:
    """``state`` with the watch's deadline (``record.deadline``, the store's clock) as
    its own, and the watch's start (``record.timeout`` before it) as its start, so that
    its last read comes a tenth of the watch's timeout (at most a second) before the
    deadline, as a live wait's does. A saved start counted that tenth from itself: one
    from another clock (another version's, an edit) made it a second whatever the
    timeout, or, past the deadline, left the wait no deadline and no last read (the
    claim at the deadline expired it unread). A start no clock shows (a record's
    numbers no watch wrote) is kept to one a saved state may hold."""
    started = min(max(record.deadline - record.timeout, -MAX_CLOCK), MAX_CLOCK)
    timeout = record.deadline - started
    policy = attrs.evolve(state.policy, timeout=timeout if timeout > 0 else None)
    return attrs.evolve(state, policy=policy, started_at=started)


def _left(deadline: float | None, loop: asyncio.AbstractEventLoop) -> float:
    """Seconds until ``deadline`` on the loop's clock (``inf`` without one)."""
    return math.inf if deadline is None else deadline - loop.time()


def _log_failed_read(
    task_id: str, error: GPTunnelError, first: bool, decision: Decision[Any]
) -> None:
    """A failed read, at WARNING when it ends the wait or starts a streak of failed
    reads of its task (``first``: the first failure, or another error than the last
    read's), and at DEBUG while the streak goes on: an outage of the API would
    otherwise log one WARNING per read, for every task, until it ends."""
    if isinstance(decision, Fail):
        logger.warning(
            "watcher: reading task %s: %s; the wait ends with this error (waiting does not "
            "heal it)",
            task_id,
            error,
        )
    elif first:
        logger.warning(
            "watcher: reading task %s: %s (further failed reads of it are logged at "
            "DEBUG until one succeeds)",
            task_id,
            error,
        )
    else:
        logger.debug("watcher: reading task %s failed again: %s", task_id, error)


class _LastNotices:
    """Each task's last progress notice, for ``progress()`` to end it: its percent and
    its metadata, kept as JSON text (a few bytes a task; decoded objects take twenty
    times the room), for the last :data:`PROGRESS_REMEMBERED` tasks and at most
    :data:`PROGRESS_REMEMBERED_BYTES` of metadata: anyone may publish on the channel."""

    __slots__ = ("_bytes", "_tasks")

    def __init__(self) -> None:
        self._tasks: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._bytes = 0

    def remember(self, notice: FleetProgress) -> None:
        self._forget(notice.task_id)
        metadata = _dumps(notice.metadata)  # compact, as the notice came
        self._tasks[notice.task_id] = (notice.percent, metadata)
        self._bytes += len(metadata)
        while self._tasks and (
            len(self._tasks) > PROGRESS_REMEMBERED or self._bytes > PROGRESS_REMEMBERED_BYTES
        ):
            self._forget(next(iter(self._tasks)))

    def ended(self, task_id: str, outcome: OutcomeKind) -> FleetProgress | None:
        """The task's last notice, its wait ended with ``outcome``; ``None`` for a task
        not remembered."""
        last = self._forget(task_id)
        if last is None:
            return None
        percent, metadata = last
        done = outcome == "done"
        return FleetProgress(
            task_id,
            outcome,
            100 if done else percent,
            json.loads(metadata),
            0.0 if done else None,
            ended=True,
        )

    def _forget(self, task_id: str) -> tuple[int, str] | None:
        last = self._tasks.pop(task_id, None)
        if last is not None:
            self._bytes -= len(last[1])
        return last


def _progress(event: ProgressEvent[Any], record: WatchRecord) -> FleetProgress:
    return FleetProgress(
        event.task_id, event.status, event.percent, record.metadata, event.remaining
    )


RECANCEL_EVERY: Final = 0.1
"""Seconds between cancellations of a task that must end, for a client library (redis-py
while it subscribes) may swallow one."""


async def _cancelled_meanwhile(waiting: Awaitable[Any]) -> bool:
    """Await ``waiting``; whether this task was cancelled meanwhile. The cancellation is
    held, for the caller to raise once what it waits for has ended (as
    ``asyncio.TaskGroup`` does): a close must not return while its tasks still run."""
    try:
        await waiting
    except asyncio.CancelledError:
        return True
    return False


def _forget(in_hand: set[str], entry_id: str, _: asyncio.Task[None]) -> None:
    """A delivery's handling ended (or never started): it may be taken again."""
    in_hand.discard(entry_id)


def _cancel_until_done(task: asyncio.Task[Any]) -> None:
    """Cancel ``task``, and again every :data:`RECANCEL_EVERY` seconds until it has
    ended: a listener whose cancellation was swallowed stayed subscribed for good."""
    if not task.done():
        task.cancel()
        asyncio.get_running_loop().call_later(RECANCEL_EVERY, _cancel_until_done, task)


def _pacing_json(state: WaitState, last: LastRead) -> str:
    """What a task's hash keeps between reads: the wait's state and what it saw last;
    without the last task read if the whole would be longer than a store's reader
    takes (:data:`_decode.MAX_STORED_BYTES`), which would cost the wait its pacing."""
    saved = json.dumps(state.to_json() | {"last": last.to_json()}, separators=(",", ":"))
    if len(saved) <= _decode.MAX_STORED_BYTES:
        return saved
    shorter = LastRead(None, last.error).to_json()
    return json.dumps(state.to_json() | {"last": shorter}, separators=(",", ":"))


NOTICE_STATUS_KEPT: Final = 200
"""Characters of a task's status a progress notice keeps when the whole notice would be
longer than its listeners read (:data:`_decode.MAX_SMALL_BYTES`)."""


CLOCK_STEP_NOTED: Final = 1.0
"""Seconds the store's clock may run ahead of, or behind, a worker's monotonic clock
between two repair passes before the worker logs it (at least; a fifth of the lease
when that is longer): more than a round trip's jitter."""


def _clock_step(store: tuple[float, float], local: tuple[float, float]) -> float:
    """How many seconds the store's clock moved more than the worker's monotonic clock
    (negative: less) from ``store[0]``/``local[0]`` to ``store[1]``/``local[1]``: a
    step of the store's clock, or a pause of the worker (its monotonic clock stands
    still while the process is stopped or its VM suspended)."""
    return (store[1] - store[0]) - (local[1] - local[0])


def _log_clock_step(before: tuple[float, float], now: tuple[float, float], lease: float) -> None:
    """A warning when the store's clock moved from ``before`` to ``now`` (each the
    store's clock and the worker's, in seconds) by more than a fifth of ``lease``, or
    :data:`CLOCK_STEP_NOTED`, beyond the worker's: see "Clocks" in ``docs/fleet.md``."""
    step = _clock_step((before[0], now[0]), (before[1], now[1]))
    if abs(step) <= max(CLOCK_STEP_NOTED, lease * (1 - READ_SHARE_OF_LEASE)):
        return
    if step > 0:
        effect = (
            "leases and deadlines ended that much early: a task may have been read by "
            "two workers at once, and a wait expired early"
        )
    else:
        effect = "due reads, leases and deadlines come that much later"
    logger.warning(
        "watcher: the store's clock (Redis TIME) moved %.1fs %s than this worker's "
        "between two repair passes (a step of Redis's clock: a failover, its wall clock "
        "set; or this worker paused): %s",
        abs(step),
        "more" if step > 0 else "less",
        effect,
    )


def _notice_json(notice: FleetProgress) -> str:
    """A progress notice's JSON, short enough for every listener to read: its status
    (the server's text, unbounded) is clipped when the notice would be longer than
    :data:`_decode.MAX_SMALL_BYTES`, which every ``progress()`` skipped as odd. The
    metadata (at most 16 KiB as stored) and the task id (at most 256 characters) keep
    a clipped one within it."""
    published = notice.dumps()
    if len(published) <= _decode.MAX_SMALL_BYTES:
        return published
    return attrs.evolve(notice, status=clip(notice.status, NOTICE_STATUS_KEPT)).dumps()


def _storable(task_id: str, outcome: Outcome) -> str:
    """``outcome``'s JSON if every worker can read it back (at most
    :data:`_decode.MAX_STORED_BYTES`: a longer one was set aside as a dead letter
    whose reason blamed another writer); else that of an ``"error"`` outcome whose
    ``StoreDataError`` says why, which the handler gets as ``delivery.error`` and
    ``result()`` raises. Logged as a warning."""
    stored = outcome.dumps()
    if len(stored) <= _decode.MAX_STORED_BYTES:
        return stored
    message = (
        f"the task's final state ({outcome.kind}) is {len(stored)} bytes as the fleet "
        f"stores it (JSON, text beyond ASCII escaped), over the {_decode.MAX_STORED_BYTES} "
        "bytes its store keeps: read the task with the client "
        "(client.<family>.result(task_id)) instead"
    )
    logger.warning("watcher: task %s: %s; its wait ends as an error", task_id, message)
    too_large = ReadError(StoreDataError.__name__, message)
    return Outcome("error", None, outcome.timeout, too_large).dumps()


def _ended_by(error: GPTunnelError, last: LastRead, family: str) -> Outcome:
    """The outcome of a wait that ``error`` ended: the task failed, or a read got an
    error that waiting does not heal (``last`` holds it, and the last task read). The
    API's "no such task" says how to watch another ``family``'s task: the client's own
    hint (read it through that family) is not what a fleet's user does."""
    if isinstance(error, TaskFailedError):
        failed = error.task if isinstance(error.task, Task | MediaTask) else None
        return Outcome("failed", failed)
    ended = last.error
    if ended is not None and _no_such_task(ended):
        hint = (
            f"the fleet read it as a {family} task: a mistyped id? if not, watch it "
            f"again with its family, once this is delivered: watcher.watch(task_id, "
            f"family=...), one of {', '.join(f for f in FAMILIES if f != family)}"
        )
        ended = attrs.evolve(ended, message=f"{ended.message}; {hint}")
    return Outcome("error", last.task, error=ended)


def _outcome_of(task: Task | MediaTask) -> Outcome:
    return Outcome("done" if task.is_done else "failed", task)
