"""When a throttled stream of progress events may deliver one: at most one per interval,
never two alike in a row, and the latest one held until it may go.

Pure: the caller passes the time of each step, and does the waiting.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["ThrottleGate"]

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
