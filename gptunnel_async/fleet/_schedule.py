"""A watched task's pacing, saved with it: the wait core's decision carries over from one
process to the next, so pacing continues where another worker left it. Pure."""

from __future__ import annotations

import json

import attrs

from .._polling import Pacing, PollPolicy

__all__ = ["Schedule"]


@attrs.frozen
class Schedule:
    """The pacing of one watched task between reads, as JSON-able numbers.

    Attributes:
        growth: the next exponential wait, nominal (``None``: no read yet).
        rise_from: ``(time, percent)`` of the first read that showed progress.
        status: the last status read (``None``: none yet).
        percent: the last percent read (never falls).
    """

    growth: float | None = None
    rise_from: tuple[float, int] | None = None
    status: str | None = None
    percent: int = 0

    def dumps(self) -> str:
        return json.dumps([self.growth, self.rise_from, self.status, self.percent])

    @classmethod
    def loads(cls, text: str | bytes | None) -> Schedule:
        if text is None:
            return cls()
        growth, rise_from, status, percent = json.loads(text)
        return cls(growth, None if rise_from is None else tuple(rise_from), status, percent)

    def next_read(
        self, policy: PollPolicy, now: float, status: str | None, percent: int | None
    ) -> tuple[float, Schedule, bool]:
        """After a read at ``now`` (store seconds) that saw ``status`` and ``percent``
        (``None``: the read failed): seconds to the next read, the schedule to save, and
        whether ``(status, percent)`` changed."""
        pacing = Pacing(policy)
        if self.growth is not None:
            pacing._growth = self.growth
        pacing._rise_from = self.rise_from
        seen = None if percent is None else max(percent, self.percent)
        delay = pacing.next_wait(now, seen)
        changed = status is not None and (status, seen) != (self.status, self.percent)
        saved = attrs.evolve(
            self,
            growth=pacing._growth,
            rise_from=pacing._rise_from,
            status=self.status if status is None else status,
            percent=self.percent if seen is None else seen,
        )
        return delay, saved, changed
