"""When to read a task next: the poll policy, and the pacing that follows it.

Pure code: every function takes the time of the read, the ``percent`` it saw and a
uniform draw for jitter, and returns the pause before the next read together with the
pacing's new memory, a small frozen value that a wait keeps in its state.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal, TypeAlias

import attrs

from .._checks import A_DAY, describe, number
from ..errors import ConfigurationError

__all__ = [
    "MAX_POLL_INTERVAL",
    "MIN_POLL_INTERVAL",
    "STRATEGIES",
    "Pace",
    "PollPolicy",
    "Strategy",
    "draw",
    "next_pause",
    "poll_interval",
]

MIN_POLL_INTERVAL: Final = 0.01
"""The shortest pause between two reads of one wait, in seconds (10 ms): no policy may
ask for less, and no jitter takes a pause below it, so a wait makes at most 100 reads a
second whatever its policy says. It is small enough for tests to pace waits quickly."""

Strategy: TypeAlias = Literal["predictive", "exponential"]
"""How a wait times its reads: see [PollPolicy][gptunnel_async.PollPolicy]."""

STRATEGIES: Final[tuple[Strategy, ...]] = ("predictive", "exponential")


def _number_check(
    requirement: str, test: Callable[[float], bool], *, allow_none: bool = False
) -> Callable[..., None]:
    """An attrs validator: a finite real number that passes ``test``, else a ``ValueError``."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and allow_none:
            return
        number(attribute.name, value, requirement, test)

    return validate


MAX_POLL_INTERVAL: Final = A_DAY
"""The longest pause a policy may ask for, in seconds (a day): a task that takes longer
than that between two reads is read at least daily, and any pause, jittered, stays a
number a timer can hold."""

_INTERVAL = f"a finite number of seconds from {MIN_POLL_INTERVAL:g} to {MAX_POLL_INTERVAL:g}"


def _fits_interval(seconds: float) -> bool:
    return MIN_POLL_INTERVAL <= seconds <= MAX_POLL_INTERVAL


def poll_interval(name: str, value: Any) -> float:
    """``value`` as a pause between reads, in seconds (:data:`MIN_POLL_INTERVAL` to
    :data:`MAX_POLL_INTERVAL`), checked as ``PollPolicy`` checks its own; else
    ``ConfigurationError`` naming ``name``."""
    return number(name, value, _INTERVAL, _fits_interval)


_interval = _number_check(_INTERVAL, _fits_interval)


def _known_strategy(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in STRATEGIES:
        raise ConfigurationError(
            f"{attribute.name} must be one of {STRATEGIES}, got {describe(value)}"
        )


@attrs.frozen
class PollPolicy:
    """How a wait paces its reads, and how long it may take in all.

    The first read is immediate; the next comes ``initial`` seconds later, and each
    pause after that is ``multiplier`` times longer, up to ``max_interval``, each
    varied by ±``jitter`` -- until ``percent`` rises and the predictive strategy aims a
    read at the predicted finish. The defaults suit a chat bot and a service alike.
    No pause is ever shorter than 10 ms, whatever the values below.

    Attributes:
        initial: seconds before the second read (0.01 to 86400). Default ``1.0``: a user sees
            the first progress step quickly.
        multiplier: how much each pause grows (>= 1). Default ``1.5``: intervals grow
            gently (1, 1.5, 2.25, 3.4 ... s), so short tasks are seen finishing soon
            and long ones cost few requests.
        max_interval: the longest pause, in seconds (``initial`` to 86400). Default ``10.0``:
            ``done`` is noticed within that, and a two-minute task costs ~17 requests
            rather than 120.
        jitter: each pause lies within ±``jitter`` of its value (0 <= jitter < 1).
            Default ``0.1``: waits started together do not poll in lockstep.
        timeout: the deadline of one wait in seconds (> 0), or ``None`` for none.
            Default ``600.0``: media and Midjourney jobs finish well within it, and a
            stuck task never hangs a handler forever.
        strategy: ``"predictive"`` (the default) or ``"exponential"``, the plain
            backoff above. Predictive: once ``percent`` has risen twice, a straight
            line fitted to it predicts the finish. While that is more than
            ``max_interval`` away the wait reads every ``max_interval``; nearer, it
            aims one read just after it (1.5 standard errors of the prediction
            later). Every aimed read replaces one of backoff's, so it never costs more
            requests than plain backoff; and if a read past the predicted finish finds
            the task neither done nor further along, the wait goes back to backoff's
            own schedule until ``percent`` rises again. A task whose ``percent`` does
            not move (media tasks report none) is polled exactly as
            ``"exponential"``. ``docs/waiting.md`` has the decision table, and
            ``docs/performance.md`` the measurements.

    Raises:
        ConfigurationError: a value out of range (an interval under 10 ms among them),
            NaN or infinite, or an unknown strategy (it is also a ``ValueError``).
    """

    initial: float = attrs.field(default=1.0, validator=_interval)
    multiplier: float = attrs.field(
        default=1.5, validator=_number_check("a finite number >= 1", lambda value: value >= 1)
    )
    max_interval: float = attrs.field(default=10.0, validator=_interval)
    jitter: float = attrs.field(
        default=0.1, validator=_number_check("a fraction, 0 <= jitter < 1", lambda v: 0 <= v < 1)
    )
    timeout: float | None = attrs.field(
        default=600.0,
        validator=_number_check(
            "a finite number of seconds > 0, or None for no deadline",
            lambda v: v > 0,
            allow_none=True,
        ),
    )
    strategy: Strategy = attrs.field(default="predictive", validator=_known_strategy)

    def __attrs_post_init__(self) -> None:
        if self.max_interval < self.initial:
            raise ConfigurationError(
                f"max_interval ({describe(self.max_interval)}) must not be below initial "
                f"({describe(self.initial)})"
            )

    def intervals(self, rng: random.Random | None = None) -> Iterator[float]:
        """The exponential pauses between reads, forever: growing, capped, each within
        ±jitter (what every strategy does while ``percent`` gives nothing to go by).

        Args:
            rng: the source of jitter; defaults to the ``random`` module's.

        Yields:
            Seconds to wait before each read after the first.
        """
        seed, pace, now = (rng or random).getrandbits(64), Pace.start(self), 0.0
        while True:
            pace, pause = next_pause(self, pace, now, None, seed)
            now += pause
            yield pause


@attrs.frozen
class Backoff:
    """Plain exponential backoff's schedule, which a wait never reads more often than.

    Attributes:
        growth: the pause after ``due`` (nominal, before jitter), in seconds.
        due: backoff's next read (the caller's clock), or ``None`` before the first.
        steps: backoff's reads so far, numbering their jitter.
        own: the next read is backoff's own, and its schedule goes on from it; else
            the read was aimed elsewhere and ``due`` already accounts for it.
    """

    growth: float
    due: float | None = None
    steps: int = 0
    own: bool = True

    def after(self, policy: PollPolicy, now: float, seed: int) -> tuple[Backoff, float]:
        """Backoff after a read at ``now``, and the pause until its next read."""
        if self.own or self.due is None:
            pause = self._pause(policy, seed)
            return self._next(policy, now + pause), pause
        # An aimed read used this one up: the schedule stands, kept within initial and
        # max_interval of each read; a read closer than initial to a scheduled one
        # stands in for it.
        backoff = self
        if backoff.due is not None and backoff.due - now < policy.initial:
            backoff = backoff._next(policy, backoff.due + backoff._pause(policy, seed))
        due = now if backoff.due is None else backoff.due
        pause = min(max(due - now, policy.initial), policy.max_interval)
        own = pause < policy.max_interval
        return Backoff(backoff.growth, due if not own else now + pause, backoff.steps, own), pause

    def used_up(self, policy: PollPolicy, until: float, seed: int) -> Backoff:
        """Backoff with its reads up to ``until`` used up, and at least one, by a read
        aimed at ``until``: the wait never reads more often than backoff would."""
        start = until if self.due is None else self.due
        step = self._next(policy, start + self._pause(policy, seed))
        for _ in range(_CATCH_UP):
            if step.due is None or step.due > until:
                break
            step = step._next(policy, step.due + step._pause(policy, seed))
        return Backoff(step.growth, step.due, step.steps, own=False)

    def _pause(self, policy: PollPolicy, seed: int) -> float:
        """Backoff's next pause: ``growth``, jittered by draw number ``steps``."""
        return _jittered(policy, self.growth, 1 - policy.jitter, draw(seed, 2 * self.steps))

    def _next(self, policy: PollPolicy, due: float) -> Backoff:
        growth = min(self.growth * policy.multiplier, policy.max_interval)
        return Backoff(growth, due, self.steps + 1)


_CATCH_UP: Final = 64
"""The most backoff reads one far read uses up; past that, backoff starts afresh."""


@attrs.frozen
class Fit:
    """A straight line through the reads since ``percent`` first rose, by least squares.

    Each read counts at ``percent + 0.5`` (the server floors it). The line is kept as
    running sums, so it is a handful of numbers however long the wait; its times
    count from ``origin``, so a wall clock keeps its precision.

    Attributes:
        base: the ``percent`` of the wait's first read; the fit starts once it rises.
        origin: when it first rose (the caller's clock), or ``None`` before that.
        n: reads in the fit.
        st: sum of their times since ``origin``.
        sp: sum of their percents.
        stt: sum of squared times.
        stp: sum of time times percent.
        spp: sum of squared percents.
    """

    base: int
    origin: float | None = None
    n: int = 0
    st: float = 0.0
    sp: float = 0.0
    stt: float = 0.0
    stp: float = 0.0
    spp: float = 0.0

    def add(self, now: float, percent: int) -> Fit:
        """The fit with a read at ``now`` that saw ``percent``."""
        origin = self.origin
        if origin is None:
            if percent <= self.base:
                return self
            origin = now
        t, p = now - origin, percent + 0.5
        return Fit(
            self.base,
            origin,
            self.n + 1,
            self.st + t,
            self.sp + p,
            self.stt + t * t,
            self.stp + t * p,
            self.spp + p * p,
        )

    def finish(self) -> tuple[float, float] | None:
        """When the line reaches 100 (the caller's clock), and the standard error of
        that time in seconds; ``None`` while the reads show no rising line."""
        n = self.n
        if self.origin is None or n < 2:
            return None
        sxx = self.stt - self.st * self.st / n
        sxy = self.stp - self.st * self.sp / n
        if sxx <= 0 or sxy <= _FLAT * sxx:
            return None
        slope = sxy / sxx
        intercept = (self.sp - slope * self.st) / n
        at = (100 - intercept) / slope
        syy = self.spp - self.sp * self.sp / n
        residual = max((syy - slope * sxy) / (n - 2) if n > 2 else 0.0, _QUANTUM)
        spread = at - self.st / n
        error = math.sqrt(residual * (1 / n + spread * spread / sxx)) / slope
        finish = self.origin + at
        if not (math.isfinite(finish) and math.isfinite(error)):
            return None  # sums no wait makes (a saved state edited by hand): no line
        return finish, error


@attrs.frozen
class Pace:
    """The pacing's memory between two reads of one wait: where backoff stands, the
    line progress follows, and whether that line has failed.

    Attributes:
        backoff: plain exponential backoff's state.
        fit: the line through ``percent``, from the first successful read on.
        top: the highest ``percent`` seen so far (-1 before the first read).
        aimed: the last pause was aimed at the predicted finish.
        hold: no pause is aimed while ``percent`` is at most this: a read past the
            predicted finish found the task neither done nor further along.
    """

    backoff: Backoff
    fit: Fit | None = None
    top: int = -1
    aimed: bool = False
    hold: int = -1

    @classmethod
    def start(cls, policy: PollPolicy) -> Pace:
        """The memory before the first read: backoff's first pause is ``initial``."""
        return cls(Backoff(policy.initial))

    def seen(self, now: float, percent: int) -> Pace:
        """This memory with a read at ``now`` that saw ``percent`` (never falling)."""
        if self.fit is None:
            return Pace(self.backoff, Fit(percent), percent, self.aimed, self.hold)
        hold = self.hold
        if percent <= self.top and percent > hold:  # no further: is the line overdue?
            predicted = self.finish(percent)
            if predicted is not None and now >= predicted[0] + MARGIN * predicted[1]:
                hold = percent
        top = max(self.top, percent)
        return Pace(self.backoff, self.fit.add(now, percent), top, self.aimed, hold)

    def finish(self, percent: int | None) -> tuple[float, float] | None:
        """The predicted finish and its standard error, unless the line failed."""
        if self.fit is None or (percent is not None and percent <= self.hold):
            return None
        return self.fit.finish()


_FLAT: Final = 1e-9
"""A fitted rise below this many percent a second is no rise at all."""

_QUANTUM: Final = 1 / 12
"""The variance of flooring a percent: the least noise a fit can claim."""

MARGIN: Final = 1.5
"""How many standard errors after the predicted finish an aimed read comes."""


def next_pause(
    policy: PollPolicy, pace: Pace, now: float, percent: int | None, seed: int
) -> tuple[Pace, float]:
    """The pause before the next read, after a read at ``now`` that saw ``percent``.

    Args:
        policy: the wait's policy.
        pace: the pacing's memory so far.
        now: when the read was made, in seconds on the caller's clock.
        percent: the highest ``percent`` seen so far (it never falls), or ``None``
            after a read that failed.
        seed: names the wait's stream of jitter (see :func:`draw`).

    Returns:
        The new memory, and the pause in seconds (never under ``MIN_POLL_INTERVAL``).
    """
    if percent is not None:
        pace = pace.seen(now, percent)
    backoff, pause = pace.backoff.after(policy, now, seed)
    predicted = pace.finish(percent) if policy.strategy == "predictive" else None
    if predicted is None:  # nothing to go by: plain exponential backoff
        return Pace(backoff, pace.fit, pace.top, False, pace.hold), pause
    finish, error = predicted
    aim = finish + MARGIN * error - now
    if aim >= policy.max_interval:  # far off: read every max_interval
        far = draw(seed, 2 * backoff.steps + 1)
        pause = max(pause, _jittered(policy, policy.max_interval, 1 - policy.jitter, far))
        used = backoff.used_up(policy, now + pause, seed)
        return Pace(used, pace.fit, pace.top, False, pace.hold), pause
    soonest = policy.initial if pace.aimed else 0.0  # a miss is not chased
    if aim >= soonest and max(aim, policy.initial) < pause:  # aim at it, never too soon
        pause = max(aim, policy.initial)
        used = backoff.used_up(policy, now + pause, seed)
        return Pace(used, pace.fit, pace.top, True, pace.hold), pause
    return Pace(backoff, pace.fit, pace.top, False, pace.hold), pause  # overdue: backoff


def _jittered(policy: PollPolicy, nominal: float, low: float, draw: float) -> float:
    """``nominal`` times a factor from ``low`` to ``1 + jitter``; never under the floor."""
    return max(nominal * (low + (1 + policy.jitter - low) * draw), MIN_POLL_INTERVAL)


_MASK: Final = (1 << 64) - 1


def draw(seed: int, index: int) -> float:
    """The ``index``-th uniform number in ``[0, 1)`` of the stream named by ``seed``.

    SplitMix64, counter-based and written out here because a wait's jitter must be
    the same wherever the wait resumes: the n-th draw depends on ``(seed, n)`` only,
    while ``random.Random`` would have its 2.5 KB of state saved with every wait.
    """
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)
