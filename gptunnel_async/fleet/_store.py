"""What a watcher needs of its store: the interface the in-memory and Redis stores share.

Every operation that decides something (claiming, re-scheduling, finishing first) is
atomic in the store, so any number of workers may run against one store. Times are
seconds on the store's clock (Redis ``TIME`` on Redis), which the store reads itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from ._records import Claim, Entry, FleetStatus, Repaired

__all__ = ["DeadLetterStore", "LastReadStore", "RenewingStore", "RepairingStore", "WatchStore"]


class WatchStore(Protocol):
    """Durable state of the fleet's waits. Raises ``StoreUnavailableError`` when the
    store cannot be reached; nothing is half-done then.

    ``claim`` and ``take`` return only entries they could decode: one that this version
    cannot read (``StoreDataError``) is the store's to log and set aside, so that no
    worker claims it again."""

    async def watch(self, task_id: str, record: str, timeout: float) -> bool:
        """Register ``task_id`` (due now) unless it already is (``False``) or was: kept
        with ``record`` (a :class:`WatchRecord`'s JSON) and a deadline ``timeout``
        seconds from now on the store's clock. A task whose wait ended without its end
        (an ``"expired"`` or ``"error"`` outcome) and was delivered is registered anew,
        its old outcome dropped."""
        ...

    async def claim(
        self, worker: str, limit: int, lease: float
    ) -> tuple[list[Claim], float | None]:
        """Up to ``limit`` due tasks, leased to ``worker`` for ``lease`` seconds, and the
        seconds until the next read falls due after them (``None``: no task is left)."""
        ...

    async def reschedule(
        self, task_id: str, worker: str, delay: float, schedule: str, progress: str | None
    ) -> bool:
        """Next read in ``delay`` seconds, saving ``schedule``; publish ``progress`` if
        given. Only while ``worker`` holds the lease and the task is not finished."""
        ...

    async def finish(self, task_id: str, outcome: str) -> bool:
        """Record the task's outcome and queue it for a handler, if it is still being
        watched: the first of the webhook and the poll wins (``True``), later ones do
        nothing (``False``)."""
        ...

    async def take(
        self, worker: str, count: int, block: float, reclaim_after: float
    ) -> list[Entry]:
        """Finished tasks for ``worker`` to hand to its handler: first those another
        worker took more than ``reclaim_after`` seconds ago without acknowledging
        them, then new ones, waiting up to ``block`` seconds for one."""
        ...

    async def ack(self, entry: Entry) -> None:
        """The handler returned: the entry is done with and removed."""
        ...

    async def outcome(self, task_id: str) -> str | bytes | None:
        """The outcome's JSON (as stored: the watcher decodes it) if the task has
        finished, else ``None``; ``StoreDataError`` if the task was set aside as a dead
        letter."""
        ...

    def events(self) -> AsyncIterator[str | bytes]:
        """Progress and finish notices as JSON (as published: the watcher decodes them),
        best effort, for as long as iterated."""
        ...

    async def status(self) -> FleetStatus:
        """Counts for an operator (``rate`` left ``None``)."""
        ...


class DeadLetterStore(WatchStore, Protocol):
    """A [WatchStore][gptunnel_async.fleet.WatchStore] that also counts failed handler
    attempts and keeps dead letters: what a watcher's ``max_attempts`` needs.
    [RedisStore][gptunnel_async.fleet.RedisStore] and
    [MemoryStore][gptunnel_async.fleet.MemoryStore] are both; with a store of your own
    that is only a ``WatchStore``, deliveries' ``attempt`` stays 1."""

    async def failed(self, entry: Entry) -> int:
        """A handler attempt on ``entry`` failed (it raised, or did not return within
        ``delivery_timeout``): count it, and return how many have (0: the entry was
        acknowledged or set aside meanwhile, nothing counted); the next :meth:`take` of
        it says so in ``Entry.failures``."""
        ...

    async def dead_letter(self, entry: Entry, reason: str) -> bool:
        """The fleet gives up handing ``entry`` to a handler: acknowledge it (no worker
        takes it again) and keep it among the dead letters with ``reason``; the task's
        outcome stays readable by :meth:`outcome`. ``False``, and nothing done, if it
        was acknowledged meanwhile (its handler returned after all)."""
        ...


class LastReadStore(WatchStore, Protocol):
    """A [WatchStore][gptunnel_async.fleet.WatchStore] that also tells what the fleet
    last read of a task: what ``Watcher.result`` needs to say, when its ``timeout``
    passes, how far the task had got (``WaitTimeoutError.task``), or that no worker
    registered it. [RedisStore][gptunnel_async.fleet.RedisStore] and
    [MemoryStore][gptunnel_async.fleet.MemoryStore] are both; with a store of your own
    that is only a ``WatchStore``, that error's ``task`` stays ``None``."""

    async def last_read(self, task_id: str) -> str | bytes | None:
        """The pacing the task's wait saved with its last read (the ``schedule`` that
        :meth:`reschedule` was given, as stored: the watcher decodes it), ``""`` if
        the task is registered but not read yet (or finished), ``None`` if the store
        holds nothing of it: never registered, or forgotten since."""
        ...


class RenewingStore(WatchStore, Protocol):
    """A [WatchStore][gptunnel_async.fleet.WatchStore] that acknowledges a delivery and
    registers the new wait its handler asked for (``watch()`` called from the handler
    of an ``"expired"`` or ``"error"`` delivery) in one step.
    [RedisStore][gptunnel_async.fleet.RedisStore] and
    [MemoryStore][gptunnel_async.fleet.MemoryStore] are both; with a store of your own
    that is only a ``WatchStore``, the watcher makes the two steps one after the other,
    and a store failing between them loses the new wait (logged)."""

    async def ack_and_watch(self, entry: Entry, record: str, timeout: float) -> bool:
        """:meth:`ack` ``entry``, and register its task anew with ``record`` and
        ``timeout`` as :meth:`watch` does, if its wait ended without the task's end
        (``"expired"``, ``"error"``): ``True`` if the new wait is registered."""
        ...


class RepairingStore(WatchStore, Protocol):
    """A [WatchStore][gptunnel_async.fleet.WatchStore] whose state lives in several
    keys that may be lost apart (Redis: a ``DEL``, an eviction, a trim), and that
    repairs one from the others: every worker's watcher runs a pass every
    5 seconds. [RedisStore][gptunnel_async.fleet.RedisStore] is one;
    [MemoryStore][gptunnel_async.fleet.MemoryStore], whose state cannot be lost so,
    is not."""

    async def repair(self, lease: float) -> Repaired:
        """One bounded pass: watched tasks missing from the schedule are put back (due
        at once, or when their lease ends: ``lease`` seconds from now for one whose
        lease end is not known), finished tasks missing from the queue of deliveries
        are queued again. Returns how many of each, and the store's clock."""
        ...
