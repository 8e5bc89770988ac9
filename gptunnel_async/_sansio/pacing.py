"""When to read a task next: the poll policy, and the pacing that follows it.

Pure code: every function takes the time of the read, the ``percent`` it saw and a
uniform draw for jitter, and returns the pause before the next read together with the
pacing's new memory, a small frozen value that a wait keeps in its state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal, TypeAlias

import attrs

from .._checks import describe, number
from ..errors import ConfigurationError

__all__ = [
    "MIN_POLL_INTERVAL",
    "STRATEGIES",
    "Pace",
    "PollPolicy",
    "Strategy",
    "draw",
    "next_pause",
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


_interval = _number_check(
    f"a finite number of seconds >= {MIN_POLL_INTERVAL:g}",
    lambda value: value >= MIN_POLL_INTERVAL,
)


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
    varied by ±``jitter`` -- until ``percent`` rises and the predictive strategy aims
    the reads at the predicted finish. The defaults suit a chat bot and a service alike.
    No pause is ever shorter than 10 ms, whatever the values below.

    Attributes:
        initial: seconds before the second read (>= 0.01). Default ``1.0``: a user sees
            the first progress step quickly.
        multiplier: how much each pause grows (>= 1). Default ``1.5``: intervals grow
            gently (1, 1.5, 2.25, 3.4 ... s), so short tasks are seen finishing soon
            and long ones cost few requests.
        max_interval: the longest pause, in seconds (>= ``initial``). Default ``10.0``:
            ``done`` is noticed within that, and a two-minute task costs ~20 requests
            rather than 120.
        jitter: each pause lies within ±``jitter`` of its value (0 <= jitter < 1).
            Default ``0.1``: waits started together do not poll in lockstep.
        timeout: the deadline of one wait in seconds (> 0), or ``None`` for none.
            Default ``600.0``: media and Midjourney jobs finish well within it, and a
            stuck task never hangs a handler forever.
        strategy: ``"predictive"`` (the default) or ``"exponential"``. Predictive: once
            ``percent`` has risen between two reads, the rate of that rise predicts the
            finish. While it is more than ``max_interval`` away the wait reads every
            ``max_interval``; then it aims the next read at the predicted finish (never
            before ``initial``, and only later within ``jitter``), so a two-minute task
            costs under twenty requests and its ``done`` is still seen within a second
            or two. If the finish is overdue, waits grow again from ``initial`` by
            ``multiplier``. A task whose ``percent`` does not move (media tasks report
            none) is polled exactly as ``"exponential"``, the plain backoff above.

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
        validator=_number_check("a finite number > 0, or None", lambda v: v > 0, allow_none=True),
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
        uniform = (rng or random).random
        pace = Pace.start(self)
        while True:
            pace, pause = next_pause(self, pace, 0.0, None, uniform())
            yield pause


@attrs.frozen
class Pace:
    """The pacing's memory between two reads of one wait.

    Attributes:
        growth: the next exponential pause, nominal (before jitter), in seconds.
        rise_at: when the first read that showed progress was made (the clock of the
            wait's caller), or ``None`` before one.
        rise_percent: the ``percent`` that read saw: with ``rise_at``, where the rate
            of progress is measured from.
    """

    growth: float
    rise_at: float | None = None
    rise_percent: int = 0

    @classmethod
    def start(cls, policy: PollPolicy) -> Pace:
        """The memory before the first read: exponential pauses start at ``initial``."""
        return cls(growth=policy.initial)


def next_pause(
    policy: PollPolicy, pace: Pace, now: float, percent: int | None, draw: float
) -> tuple[Pace, float]:
    """The pause before the next read, after a read at ``now`` that saw ``percent``.

    Args:
        policy: the wait's policy.
        pace: the pacing's memory so far.
        now: when the read was made, in seconds on the caller's clock.
        percent: the highest ``percent`` seen so far (it never falls), or ``None``
            after a read that failed.
        draw: a uniform number in ``[0, 1)`` for this pause's jitter.

    Returns:
        The new memory, and the pause in seconds (never under ``MIN_POLL_INTERVAL``).
    """
    finish_in = None
    if policy.strategy == "predictive":
        pace, finish_in = _finish_in(pace, now, percent)
    if finish_in is None:  # nothing to go by: plain exponential backoff
        return _grown(policy, pace), _jittered(policy, pace.growth, 1 - policy.jitter, draw)
    if finish_in <= policy.initial:  # due or overdue: back off again
        return _grown(policy, pace), _jittered(policy, pace.growth, 1.0, draw)
    restarted = Pace(policy.initial, pace.rise_at, pace.rise_percent)
    if finish_in >= policy.max_interval:
        return restarted, _jittered(policy, policy.max_interval, 1 - policy.jitter, draw)
    return restarted, _jittered(policy, finish_in, 1.0, draw)  # late rather than early


def _jittered(policy: PollPolicy, nominal: float, low: float, draw: float) -> float:
    """``nominal`` times a factor from ``low`` to ``1 + jitter``; never under the floor."""
    return max(nominal * (low + (1 + policy.jitter - low) * draw), MIN_POLL_INTERVAL)


def _grown(policy: PollPolicy, pace: Pace) -> Pace:
    """``pace`` after one exponential pause: the next one is ``multiplier`` times longer."""
    growth = min(pace.growth * policy.multiplier, policy.max_interval)
    return Pace(growth, pace.rise_at, pace.rise_percent)


def _finish_in(pace: Pace, now: float, percent: int | None) -> tuple[Pace, float | None]:
    """Seconds until ``percent`` reaches 100 at the rate it has risen, if it has."""
    if percent is None or percent <= 0:
        return pace, None
    if pace.rise_at is None:
        return Pace(pace.growth, now, percent), None
    if percent <= pace.rise_percent or now <= pace.rise_at:
        return pace, None
    rate = (percent - pace.rise_percent) / (now - pace.rise_at)
    return pace, (100 - percent) / rate


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
