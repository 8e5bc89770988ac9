"""The request budget on a real redis-server: the Lua script decides as the pure algorithm
does, and every process naming the budget shares one rate."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis as sync_redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gptunnel_async import GPTunnelClient
from gptunnel_async._sansio import rate
from gptunnel_async._sansio.numbers import decimal
from gptunnel_async.fleet import RedisBudget, StoreUnavailableError
from gptunnel_async.fleet._redis_budget import _SCRIPT

from .conftest import API_KEY, ScriptedAPI
from .test_budget import Arrivals, RecordingBudget, assert_held_after_the_429, most_in_any_window

Step = tuple[str, float, float, float]

steps = st.lists(
    st.tuples(
        st.sampled_from(["start", "limited", "rate"]),
        st.floats(min_value=0, max_value=2),  # seconds since the previous step
        st.floats(min_value=0, max_value=1),  # how long before now the 429's request was sent
        st.sampled_from([0.0, 0.3, 2.0]),  # Retry-After
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60)
@given(ceiling=st.sampled_from([0.5, 3.0, 20.0, 250.0]), steps=steps)
def test_the_lua_script_decides_exactly_as_the_pure_algorithm(
    redis_url: str, ceiling: float, steps: list[Step]
) -> None:
    with sync_redis.Redis.from_url(redis_url) as client:
        client.delete("equivalence")
        script = client.register_script(_SCRIPT)
        state, now = rate.RateState(ceiling), 1_000_000.0
        for op, advance, sent_before, retry_after in steps:
            now += advance
            args: list[object] = [op, ceiling]
            if op == "start":
                decision = rate.start(state, now)
                expected, state = decision.delay, decision.state
            elif op == "limited":
                args += [now - sent_before, retry_after]
                state = rate.rate_limited(state, now - sent_before, now, retry_after)
                expected = 0.0
            else:
                expected = rate.current_rate(state, now)
            args += [""] * (4 - len(args)) + [repr(now)]
            value, clock = script(keys=["equivalence"], args=args)
            assert float(value) == pytest.approx(expected, rel=1e-9, abs=1e-9)
            assert float(clock) == now


async def test_processes_naming_one_budget_share_its_rate(redis_url: str, redis: Redis) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    budgets = [RedisBudget(client, 40, name="shared") for client in clients]
    try:
        starts = await asyncio.gather(*(b.acquire() for b in budgets for _ in range(20)))
    finally:
        for client in clients:
            await client.aclose()
    assert most_in_any_window(starts, 1.0) <= 40 + 1
    assert max(starts) - min(starts) >= (60 - 1) / 40 * (1 - rate.SLACK)


async def test_a_429_seen_by_one_process_slows_every_process(redis: Redis) -> None:
    one, other = RedisBudget(redis, 20, name="b"), RedisBudget(redis, 20, name="b")
    started = await one.acquire()
    await one.rate_limited(started, None)
    # Halved, then recovering towards the safe fraction of the ceiling, never beyond it
    # within seconds: unslowed, the other process would see 20.
    assert 10.0 <= await other.current_rate() < 20 * rate.SAFE_FRACTION
    assert await RedisBudget(redis, 20, name="unrelated").current_rate() == 20.0


async def test_retry_after_holds_every_process(redis: Redis) -> None:
    one, other = RedisBudget(redis, 100, name="b"), RedisBudget(redis, 100, name="b")
    started = await one.acquire()
    await one.rate_limited(started, 0.3)
    assert await other.acquire() >= started + 0.3


async def test_a_client_sharing_a_redis_budget_is_paced_and_slowed_by_it(
    api: ScriptedAPI, redis: Redis, instant: None
) -> None:
    arrivals = Arrivals(refuse={6: {"Retry-After": "1"}})
    api.script(arrivals)
    shared = RedisBudget(redis, 30, name="api")
    budget = RecordingBudget(shared)
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, budget=budget) as client:
        await asyncio.gather(*(client.get_result(f"t-{i}") for i in range(20)))
    assert len(arrivals.times) == len(budget.starts) == 21
    assert most_in_any_window(budget.starts, 1.0) <= 30 + 1
    assert_held_after_the_429(budget, 1.0)
    assert await shared.current_rate() < 30


def test_every_key_carries_the_fleet_s_hash_tag(redis_url: str) -> None:
    budget = RedisBudget(sync_redis.asyncio.Redis.from_url(redis_url), 5, name="bots", prefix="app")
    assert budget.key == "app:{bots}:budget"
    assert "RedisBudget(requests_per_second=5" in repr(budget)


@pytest.mark.parametrize("name", ["", "a{b", "a}b"])
def test_a_name_that_cannot_be_a_hash_tag_is_refused(redis_url: str, name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        RedisBudget(Redis.from_url(redis_url), 5, name=name)


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, "10", True, 5e-324, 1 / 3601])
def test_nonsense_rates_are_refused(redis_url: str, value: object) -> None:
    with pytest.raises(ValueError, match="requests_per_second"):
        RedisBudget(Redis.from_url(redis_url), value)  # type: ignore[arg-type]


async def test_an_unreachable_redis_is_a_typed_error(unused_tcp_port: int) -> None:
    # No retries of redis-py's own (by default 3, backing off for seconds): refused at once.
    client = Redis(
        host="127.0.0.1",
        port=unused_tcp_port,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    budget = RedisBudget(client, 5)
    try:
        with pytest.raises(StoreUnavailableError, match="budget") as caught:
            await budget.acquire()
        assert caught.value.__cause__ is not None
        with pytest.raises(StoreUnavailableError):
            await budget.rate_limited(0.0, None)
    finally:
        await client.aclose()


NOW = 1_000_000.0
FIELDS = ("last_start", "level", "peak", "changed_at", "resume_at")
odd_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-7200, max_value=7200).map(lambda ahead: repr(NOW + ahead)),
    st.sampled_from(["inf", "-inf", "nan", "1e300", "-1e300", "0", "-1", "", "soon"]),
    st.sampled_from([f" {NOW + 30!r}", f"{NOW + 30!r}\n", "0x10", "\u0663\u0660", "1_0"]),
)


@settings(max_examples=80)
@given(
    ceiling=st.sampled_from([0.5, 20.0, 250.0]),
    state=st.dictionaries(st.sampled_from(FIELDS), odd_values, min_size=1),
)
def test_no_value_in_the_budget_s_hash_holds_a_request_beyond_the_longest_pause(
    redis_url: str, ceiling: float, state: dict[str, str]
) -> None:
    """A far-future hold, a start "in the future" (Redis's clock moved back), NaN, a rate
    of zero: each pause is at most rate.longest_pause, and the request starts after it."""
    longest = rate.longest_pause(ceiling)
    with sync_redis.Redis.from_url(redis_url) as client:
        client.delete("odd")
        client.hset("odd", mapping=state)
        script = client.register_script(_SCRIPT)
        now, delays = NOW, []
        while len(delays) < 4:
            value, _ = script(keys=["odd"], args=["start", ceiling, "", "", repr(now)])
            delays.append(float(value))
            if not delays[-1]:
                break
            now += delays[-1]
        assert all(0 <= delay <= longest for delay in delays)
        assert delays[-1] == 0.0, delays  # it started
        kept = client.hmget("odd", ["last_start", "resume_at"])
        last_start, resume_at = (_read_as_lua_does(value) for value in kept)
        assert last_start <= now  # the start was saved
        assert resume_at <= now + 60  # corrected: a NaN too


def _read_as_lua_does(value: bytes | None) -> float:
    """A hash field as the script reads it: a JSON number's text, or no value (``-inf``)."""
    found = decimal(value.decode("utf-8", "replace")) if value else None
    return -math.inf if found is None else found


@pytest.mark.parametrize("written", [f" {NOW + 30!r}", f"{NOW + 30!r}\t", "0x1p30"])
def test_a_hold_that_only_lua_s_tonumber_reads_is_no_hold(redis_url: str, written: str) -> None:
    """Lua's ``tonumber`` takes spaces around a number and hexadecimal: ``" 1000030.0"``
    held every request of the fleet 30 s. Only a JSON number's text is a stored value."""
    with sync_redis.Redis.from_url(redis_url) as client:
        client.delete("spaced")
        client.hset("spaced", "resume_at", written)
        script = client.register_script(_SCRIPT)
        value, _ = script(keys=["spaced"], args=["start", 20.0, "", "", repr(NOW)])
        assert float(value) == 0.0
        client.hset("spaced", "resume_at", repr(NOW + 30))
        value, _ = script(keys=["spaced"], args=["start", 20.0, "", "", repr(NOW + 1)])
        assert float(value) == pytest.approx(29.0)


@pytest.mark.parametrize(
    ("ceiling", "longest"), [(20.0, 60.0), (1.0, 64.0), (0.01, 6400.0), (250.0, 60.0)]
)
def test_the_longest_pause_is_the_retry_after_cap_or_one_slowest_interval(
    ceiling: float, longest: float
) -> None:
    assert rate.longest_pause(ceiling) == pytest.approx(longest)


async def test_a_far_future_hold_in_redis_ends_within_the_retry_after_cap(redis: Redis) -> None:
    budget = RedisBudget(redis, 20, name="held")
    await redis.hset(budget.key, "resume_at", "1e300")  # an operator's typo, a bad write
    delay, now = await budget._call("start", 20)
    assert 59.0 <= delay <= 60.0
    held = float(await redis.hget(budget.key, "resume_at") or "nan")
    assert held == pytest.approx(now + 60)  # corrected in Redis: every worker sees it
    assert 0 < await redis.pttl(budget.key) <= 600_000  # and it expires again


async def test_a_huge_retry_after_holds_the_fleet_at_most_the_cap(redis: Redis) -> None:
    budget = RedisBudget(redis, 20, name="capped")
    await budget.rate_limited(await budget.acquire(), 1e9)
    (seconds, micros) = await redis.time()
    held = float(await redis.hget(budget.key, "resume_at") or "nan")
    assert held - (seconds + micros / 1e6) <= 60.0
