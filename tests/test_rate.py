"""The budget's pure algorithm: GCRA pacing, slowing down on 429s, recovering."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async._checks import MIN_REQUESTS_PER_SECOND
from gptunnel_async._sansio import rate

from .rate_simulation import Limiter, Server, simulate


def granted_times(ceiling: float, lateness: list[float]) -> list[float]:
    """Start times when each caller sleeps the delay it is given, plus some lateness."""
    state, now, times = rate.RateState(ceiling), 0.0, []
    for late in lateness:
        decision = rate.start(state, now)
        while decision.delay:
            now += decision.delay + late
            decision = rate.start(state, now)
        state = decision.state
        times.append(now)
    return times


def most_in_one_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max(sum(1 for t in ordered[i:] if t <= start + 1.0) for i, start in enumerate(ordered))


@pytest.mark.parametrize(
    ("now", "delay"),
    [(0.0, 0.1), (0.05, 0.05), (0.1, 0.0), (0.3, 0.0)],
)
def test_after_one_start_the_next_waits_one_interval(now: float, delay: float) -> None:
    first = rate.start(rate.RateState(10.0), 0.0)
    assert first.delay == 0
    assert rate.start(first.state, now).delay == pytest.approx(delay)


@given(
    ceiling=st.floats(min_value=0.5, max_value=200),
    lateness=st.lists(st.floats(min_value=0, max_value=0.05), min_size=2, max_size=60),
)
def test_no_second_holds_more_than_the_ceiling_plus_one(
    ceiling: float, lateness: list[float]
) -> None:
    # Starts come at least (n - 1 - SLACK) intervals apart over n of them: a whole-number
    # ceiling R allows R + 1 in a second, any other ceiling floor(R + 1 + SLACK).
    times = granted_times(ceiling, lateness)
    assert most_in_one_second(times) <= math.floor(ceiling + 1 + rate.SLACK)
    whole = granted_times(math.ceil(ceiling), lateness)
    assert most_in_one_second(whole) <= math.ceil(ceiling) + 1


@given(ceiling=st.floats(min_value=1, max_value=100), late=st.floats(min_value=0, max_value=0.4))
def test_sleeping_a_little_late_loses_no_rate(ceiling: float, late: float) -> None:
    # Late by up to ``SLACK`` intervals each time, starts still come one interval apart.
    times = granted_times(ceiling, [late * rate.SLACK / ceiling] * 40)
    mean_gap = (times[-1] - times[0]) / (len(times) - 1)
    assert mean_gap <= (1 + 1e-9) / ceiling + late * rate.SLACK / ceiling / 2


def test_a_429_halves_the_rate_once_per_round() -> None:
    state = rate.rate_limited(rate.RateState(20.0), sent_at=0.9, now=1.0)
    assert rate.current_rate(state, 1.0) == pytest.approx(10.0)
    same_round = rate.rate_limited(state, sent_at=0.95, now=1.01)  # sent before the change
    assert same_round == state
    next_round = rate.rate_limited(state, sent_at=1.05, now=1.1)
    assert rate.current_rate(next_round, 1.1) == pytest.approx(
        rate.current_rate(state, 1.1) / 2, rel=1e-9
    )


def test_the_rate_never_drops_below_its_floor() -> None:
    state = rate.RateState(16.0)
    for step in range(40):
        state = rate.rate_limited(state, sent_at=step, now=step + 0.001)
    assert rate.current_rate(state, 39.001) >= 16.0 * rate.MIN_FRACTION


@given(
    ceiling=st.floats(min_value=MIN_REQUESTS_PER_SECOND, max_value=1e12),
    gaps=st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=30),
)
def test_any_rate_a_budget_accepts_stays_usable_through_429s(
    ceiling: float, gaps: list[float]
) -> None:
    """The slowest rate accepted still has a finite interval and a finite pause after
    any 429s (a rate of 5e-324 halved was 0: the budget divided by zero)."""
    state, now = rate.RateState(ceiling), 0.0
    for gap in gaps:
        now += gap
        state = rate.rate_limited(state, sent_at=now, now=now + 0.001)
        assert rate.current_rate(state, now) > 0
        assert 0 <= rate.start(state, now).delay <= rate.longest_pause(ceiling)


def test_recovery_climbs_quickly_below_the_rate_that_drew_the_429_then_probes_slowly() -> None:
    state = rate.rate_limited(rate.RateState(20.0), sent_at=0.0, now=0.0)
    rates = [rate.current_rate(state, t / 10) for t in range(600)]
    assert rates == sorted(rates)  # never falls without a 429
    assert rates[0] == pytest.approx(10.0)
    safe = 20.0 * rate.SAFE_FRACTION
    assert rate.current_rate(state, 3 * rate.RECOVERY_SECONDS) > 10.0 + 0.9 * (safe - 10.0)
    assert (
        rate.current_rate(state, 3 * rate.RECOVERY_SECONDS)
        < safe + 20 * rate.PROBE_PER_SECOND * 3 * rate.RECOVERY_SECONDS + 1e-9
    )
    assert rate.current_rate(state, 1000.0) == 20.0


def test_429s_of_one_episode_aim_the_climb_below_the_rate_that_started_it() -> None:
    state = rate.rate_limited(rate.RateState(20.0), sent_at=0.0, now=0.0)
    state = rate.rate_limited(state, sent_at=0.1, now=0.2)  # the server's window still full
    assert state.peak == 20.0
    later = rate.rate_limited(state, sent_at=5.0, now=5.0)  # a new episode
    assert later.peak == pytest.approx(rate.current_rate(state, 5.0))


@pytest.mark.parametrize("retry_after", [0.5, 3.0])
def test_retry_after_holds_every_start_until_it_has_passed(retry_after: float) -> None:
    state = rate.rate_limited(rate.RateState(100.0), sent_at=0.0, now=0.0, retry_after=retry_after)
    assert rate.start(state, 0.1).delay == pytest.approx(retry_after - 0.1)
    assert rate.start(state, retry_after).delay == 0


@pytest.mark.parametrize("limiter", ["sliding_window", "token_bucket"])
@pytest.mark.parametrize("loops", [1, 8, 40])
def test_against_a_server_allowing_half_the_ceiling_the_rate_settles_without_collapse(
    limiter: Limiter, loops: int
) -> None:
    # The collapse this replaces: 8 loops at 20/s against a 10/s server got 20 answers
    # in 10 s and then nothing for 8 s.
    server = simulate(Server(limit=10, limiter=limiter), ceiling=20.0, loops=loops)
    refused = [t for t, ok in server.log if not ok]
    last_two_seconds = [t for t, ok in server.log if ok and t >= 8.0]
    assert len(refused) <= 5
    assert len(last_two_seconds) >= 0.8 * 10 * 2


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("ceiling", "limit"), [(30.0, 10), (20.0, 15), (100.0, 40)])
def test_against_any_lower_limit_the_rate_ends_near_it(
    seed: int, ceiling: float, limit: int
) -> None:
    server = simulate(
        Server(limit=limit, limiter="token_bucket"), ceiling=ceiling, seconds=30.0, seed=seed
    )
    last_five_seconds = [t for t, ok in server.log if ok and t >= 25.0]
    refused_late = [t for t, ok in server.log if not ok and t >= 10.0]
    assert len(last_five_seconds) >= 0.7 * limit * 5
    assert len(refused_late) <= 3
