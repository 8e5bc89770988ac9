"""When a throttled stream of progress events may deliver one: at most one per interval,
never two alike in a row, and the latest one held until it may go.

Pure: the caller passes the time of each step, and does the waiting.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final, Generic, TypeVar

__all__ = ["ThrottleGate", "ThrottleGates"]

E = TypeVar("E")


class ThrottleGate(Generic[E]):
    """Decides, for each event offered at time ``now``, whether it goes now, waits, or is
    dropped.

    An event goes at once when ``every`` seconds have passed since the last delivery;
    otherwise it is held, replacing any event held before it (only the latest matters
    to a reader). An event alike the last one delivered (same key) is never delivered:
    offering one drops what is held, since the reader already sees that state.

    Args:
        every: the shortest time between two deliveries, in seconds (>= 0).
    """

    __slots__ = ("_delivered_at", "_delivered_key", "_held", "every")

    def __init__(self, every: float) -> None:
        self.every = every
        self._delivered_at: float | None = None
        self._delivered_key: Hashable | None = None
        self._held: tuple[E, Hashable] | None = None

    def offer(self, event: E, key: Hashable, now: float) -> E | None:
        """Offer ``event`` (alike others with the same ``key``) at ``now``.

        Returns:
            ``event`` if it is to be delivered now; ``None`` if it is held or dropped.
        """
        if self._delivered_at is not None and key == self._delivered_key:
            self._held = None
            return None
        if self._delivered_at is None or now - self._delivered_at >= self.every:
            self._held = None
            return self._deliver(event, key, now)
        self._held = (event, key)
        return None

    def due_in(self, now: float) -> float | None:
        """Seconds from ``now`` until the held event may go (0 if it may now), or
        ``None`` if none is held."""
        if self._held is None or self._delivered_at is None:
            return None
        return max(0.0, self._delivered_at + self.every - now)

    @property
    def holds(self) -> bool:
        """Whether an event is held, waiting for its time."""
        return self._held is not None

    def idle(self, now: float, for_at_least: float = 0.0) -> bool:
        """Whether this gate holds nothing, and delivered nothing for the interval (and
        for ``for_at_least`` seconds) before ``now``."""
        quiet = max(self.every, for_at_least)
        return self._held is None and (
            self._delivered_at is None or now - self._delivered_at >= quiet
        )

    def take(self, now: float) -> E | None:
        """The held event, if it may go at ``now`` (it is then delivered); else ``None``."""
        due = self.due_in(now)
        return None if due is None or due > 0 else self.release(now)

    def release(self, now: float) -> E:
        """The held event, delivered at ``now`` whatever the interval says (the last one
        of a stream, once the caller has waited).

        Raises:
            LookupError: no event is held.
        """
        if self._held is None:
            raise LookupError("no event is held")
        event, key = self._held
        self._held = None
        return self._deliver(event, key, now)

    def _deliver(self, event: E, key: Hashable, now: float) -> E:
        self._delivered_at, self._delivered_key = now, key
        return event


FORGET_FROM: Final = 64
"""Gates kept before [ThrottleGates][] first forgets the idle ones."""

FORGET_AFTER: Final = 60.0
"""Seconds a gate must have been idle to be forgotten: a task polled every few seconds
keeps its gate, and with it the last state delivered, so no repeat of it goes."""


class ThrottleGates(Generic[E]):
    """One [ThrottleGate][] per stream (a task id, say): a stream of events that mixes
    many tasks is throttled task by task, so that one task's events never hold back
    another's.

    A gate that holds nothing and delivered nothing for :data:`FORGET_AFTER` seconds
    (or ``every``, if longer) is forgotten, now and then, so that a stream that goes on
    for days keeps only its recent tasks' gates. All it forgets is which event it
    delivered last: an event alike that one may go once more, a minute later. The
    forgetting runs when the gates have doubled since it last ran; ``due_in`` and
    ``take`` look only at the gates that hold an event, so the work per event grows
    with the tasks inside their interval, not with every task seen.

    Args:
        every: the shortest time between two deliveries of one stream, in seconds (>= 0).
    """

    __slots__ = ("_forget_at", "_gates", "_holding", "every")

    def __init__(self, every: float) -> None:
        self.every = every
        self._gates: dict[Hashable, ThrottleGate[E]] = {}
        self._holding: dict[Hashable, ThrottleGate[E]] = {}  # in the order they began to
        self._forget_at = FORGET_FROM

    def offer(self, stream: Hashable, event: E, key: Hashable, now: float) -> E | None:
        """Offer ``event`` of ``stream`` (alike its others with the same ``key``) at ``now``.

        Returns:
            ``event`` if it is to be delivered now; ``None`` if it is held or dropped.
        """
        gate = self._gates.get(stream)
        if gate is None:
            if len(self._gates) >= self._forget_at:
                self._forget_idle(now)
            gate = self._gates[stream] = ThrottleGate(self.every)
        ready = gate.offer(event, key, now)
        if gate.holds:
            self._holding.setdefault(stream, gate)
        else:
            self._holding.pop(stream, None)
        return ready

    def due_in(self, now: float) -> float | None:
        """Seconds from ``now`` until the first held event may go (0 if one may now), or
        ``None`` if none is held."""
        return min((gate.due_in(now) or 0.0 for gate in self._holding.values()), default=None)

    def take(self, now: float) -> list[E]:
        """The held events that may go at ``now``, oldest held first."""
        ready = []
        for stream, gate in list(self._holding.items()):
            event = gate.take(now)
            if event is not None:
                ready.append(event)
                del self._holding[stream]
        return ready

    def drain(self, now: float) -> list[tuple[float, E]]:
        """Every held event, with the seconds from ``now`` until it may go, soonest
        first: the last events of a stream, which the caller delivers at those times
        (the gates count them as delivered at ``now``: they are not used again)."""
        drained = sorted(
            ((gate.due_in(now) or 0.0, gate.release(now)) for gate in self._holding.values()),
            key=lambda due_event: due_event[0],
        )
        self._holding.clear()
        return drained

    def _forget_idle(self, now: float) -> None:
        self._gates = {
            stream: gate for stream, gate in self._gates.items() if not gate.idle(now, FORGET_AFTER)
        }
        self._forget_at = max(FORGET_FROM, 2 * len(self._gates))
