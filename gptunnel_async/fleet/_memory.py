"""The in-memory store: the watcher's whole interface in one process, for a single worker
and for tests without Redis. Nothing survives the process."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Final

import attrs

from .._checks import clock as checked_clock
from . import _decode
from ._records import Claim, Entry, FleetStatus, Outcome, WatchRecord
from ._redis_store import DEAD_LETTERS_KEPT

__all__ = ["MemoryStore"]

FINISHED_KEPT: Final = 10_000
"""Outcomes kept after delivery for ``Watcher.result`` (the oldest are forgotten)."""


@attrs.define
class _Watched:
    record: WatchRecord
    due_at: float
    schedule: str | None = None
    lease: str | None = None
    lease_until: float = -math.inf


class MemoryStore:
    """A [WatchStore][gptunnel_async.fleet.WatchStore] kept in this process's memory.

    What it is given is decoded as it is stored: a record or outcome it could not read
    back is refused then, with ``StoreDataError``.

    Args:
        clock: seconds, for due times and deadlines; ``time.monotonic`` by default.

    Raises:
        ConfigurationError: ``clock`` is not a plain function (an ``async def`` one, say);
            or, where it is read, it gives no number of seconds (``datetime.now``).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = checked_clock("clock", clock)
        self._watched: dict[str, _Watched] = {}
        self._outcomes: OrderedDict[str, tuple[WatchRecord, str]] = OrderedDict()
        """Finished tasks: task id -> (record, outcome JSON), the oldest forgotten first."""
        self._entries: OrderedDict[str, tuple[str, WatchRecord, Outcome]] = OrderedDict()
        """Finished, not yet acknowledged: entry id -> (task id, record, outcome)."""
        self._taken: dict[str, tuple[str, float]] = {}
        """Entries handed to a worker: entry id -> (worker, when)."""
        self._failures: dict[str, int] = {}
        """Failed handler attempts: entry id -> how many."""
        self._dead: deque[tuple[str, str]] = deque(maxlen=DEAD_LETTERS_KEPT)
        """Deliveries given up on: (task id, reason), the oldest forgotten first."""
        self._ids = itertools.count(1)
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._arrived: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<MemoryStore watched={len(self._watched)} finished={len(self._entries)}>"

    async def watch(self, task_id: str, record: str, timeout: float) -> bool:
        if task_id in self._watched or not self._may_watch_again(task_id):
            return False
        self._outcomes.pop(task_id, None)
        now = self._clock()
        self._watched[task_id] = _Watched(_decode.record(record, now + timeout), now)
        return True

    def _may_watch_again(self, task_id: str) -> bool:
        """Whether ``task_id`` has no outcome, or one of a wait that ended without its
        task's end (expired, an error) and was delivered: then it may be watched anew."""
        kept = self._outcomes.get(task_id)
        if kept is None:
            return True
        pending = any(entry[0] == task_id for entry in self._entries.values())
        return not pending and _decode.outcome(kept[1]).kind in ("expired", "error")

    async def claim(
        self, worker: str, limit: int, lease: float
    ) -> tuple[list[Claim], float | None]:
        now = self._clock()
        due = heapq.nsmallest(
            limit, ((w.due_at, i) for i, w in self._watched.items() if w.due_at <= now)
        )
        claims = []
        for _, task_id in due:
            watched = self._watched[task_id]
            watched.lease, watched.lease_until = worker, now + lease
            watched.due_at = now + lease
            claims.append(Claim(task_id, watched.record, watched.schedule, now))
        next_due = min((w.due_at for w in self._watched.values()), default=None)
        return claims, None if next_due is None else max(0.0, next_due - now)

    async def reschedule(
        self, task_id: str, worker: str, delay: float, schedule: str, progress: str | None
    ) -> bool:
        watched = self._watched.get(task_id)
        if watched is None or watched.lease != worker:
            return False
        watched.due_at = self._clock() + delay
        watched.schedule, watched.lease, watched.lease_until = schedule, None, -math.inf
        if progress is not None:
            self._publish(progress)
        return True

    async def finish(self, task_id: str, outcome: str) -> bool:
        decoded = _decode.outcome(outcome)
        watched = self._watched.pop(task_id, None)
        if watched is None:
            return False
        self._outcomes[task_id] = (watched.record, outcome)
        while len(self._outcomes) > FINISHED_KEPT:
            self._outcomes.popitem(last=False)
        self._entries[str(next(self._ids))] = (task_id, watched.record, decoded)
        if self._arrived is not None:
            self._arrived.set()
        self._publish(json.dumps({"kind": "finished", "task_id": task_id, "outcome": decoded.kind}))
        return True

    async def take(
        self, worker: str, count: int, block: float, reclaim_after: float
    ) -> list[Entry]:
        entries = self._take(worker, count, reclaim_after)
        if not entries and block > 0:
            self._arrived = self._arrived or asyncio.Event()
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block):
                    await self._arrived.wait()
            entries = self._take(worker, count, reclaim_after)
        return entries

    def _take(self, worker: str, count: int, reclaim_after: float) -> list[Entry]:
        now = self._clock()
        entries: list[Entry] = []
        for entry_id, (task_id, record, outcome) in self._entries.items():
            if len(entries) >= count:
                break
            taken = self._taken.get(entry_id)
            if taken is not None and now - taken[1] < reclaim_after:
                continue
            self._taken[entry_id] = (worker, now)
            failures = self._failures.get(entry_id, 0)
            entries.append(Entry(entry_id, task_id, record, outcome, taken is not None, failures))
        return entries

    async def ack(self, entry: Entry) -> None:
        self._entries.pop(entry.entry_id, None)
        self._taken.pop(entry.entry_id, None)
        self._failures.pop(entry.entry_id, None)

    async def ack_and_watch(self, entry: Entry, record: str, timeout: float) -> bool:
        await self.ack(entry)
        return await self.watch(entry.task_id, record, timeout)

    async def failed(self, entry: Entry) -> int:
        if entry.entry_id not in self._entries:  # acknowledged meanwhile
            return 0
        self._failures[entry.entry_id] = self._failures.get(entry.entry_id, 0) + 1
        return self._failures[entry.entry_id]

    async def dead_letter(self, entry: Entry, reason: str) -> bool:
        if entry.entry_id not in self._entries:  # acknowledged meanwhile
            return False
        await self.ack(entry)
        self._dead.append((entry.task_id, reason))
        return True

    async def outcome(self, task_id: str) -> str | None:
        return self._outcomes.get(task_id, (None, None))[1]

    async def last_read(self, task_id: str) -> str | None:
        watched = self._watched.get(task_id)
        if watched is not None:
            return watched.schedule or ""
        return "" if task_id in self._outcomes else None

    async def events(self) -> AsyncIterator[str | bytes]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    def _publish(self, message: str) -> None:
        for queue in self._subscribers:
            if not queue.full():  # best effort: a subscriber that does not keep up misses some
                queue.put_nowait(message)

    async def status(self) -> FleetStatus:
        now = self._clock()
        watched = self._watched.values()
        overdue = [now - w.due_at for w in watched if w.due_at <= now]
        return FleetStatus(
            watched=len(self._watched),
            due=len(overdue),
            leased=sum(1 for w in watched if w.lease is not None and w.lease_until > now),
            finished_unhandled=len(self._entries),
            oldest_overdue=max(overdue, default=0.0),
            dead_letters=len(self._dead),
        )
