"""The request budget on Redis: one rate shared by every process of a fleet.

The state of :mod:`gptunnel_async._sansio.rate` lives in one Redis hash, and each request
start is one Lua script (one round trip while the budget does not bind), which reads
Redis ``TIME`` so that machines whose clocks disagree still share one clock.

The script is ours rather than a library's: ``limits``' moving window was measured 60-100 %
over its budget in a sliding second (it counts per fixed sub-window), it cannot slow down
on a 429 nor hold for a ``Retry-After``, and aiolimiter keeps its bucket in one process.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from .._budget import Turns
from .._checks import async_redis, request_rate
from .._sansio import rate
from .._sansio.retries import RETRY_AFTER_CAP, honoured_retry_after
from ._connections import one_command, share_of
from ._errors import store_call
from ._keys import fleet_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBudget"]

IDLE_EXPIRY_MS: Final = 600_000
"""The state is forgotten after ten idle minutes (by then any slow-down has recovered)."""

# rate.py written out in Lua; tests check both decide alike. ARGV: operation, ceiling,
# then for "start" nothing, for "limited" sent_at and retry_after; the last, if not
# empty, replaces Redis TIME (tests only).
#
# The hash is trusted only as far as this script can have written it: no start or
# slow-down after now (a clock that ran ahead: a failover, an operator's HSET), no hold
# longer than RETRY_AFTER_CAP from now, no NaN; such a value is corrected, and the
# correction saved (else it would hold again on every call). A level below the slowest
# rate, or a peak that is not > 0, is read as the nearest sane value. So no pause is
# longer than rate.longest_pause(ceiling).
_SCRIPT: Final = f"""
-- A number in the hash: a JSON number's text, as fmt writes one (ASCII: Lua's %d is
-- C's isdigit); anything tonumber alone would take besides (' 5', '0x10', 'inf') is nil.
local function stored(s)
  if s and string.match(s, '^%-?%d+%.?%d*[eE]?[-+]?%d*$') then return tonumber(s) end
  return nil
end
local key, op, ceiling = KEYS[1], ARGV[1], tonumber(ARGV[2])
if ceiling == nil then  -- "rate" without a ceiling (an operator's view): the last one used
  ceiling = stored(redis.call('HGET', key, 'ceiling'))
  if ceiling == nil or not (ceiling > 0 and ceiling < math.huge) then return {{'', ''}} end
end
local now
if ARGV[5] ~= nil and ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local INF = math.huge
local f = redis.call('HMGET', key, 'last_start', 'level', 'peak', 'changed_at', 'resume_at')
local last_start = stored(f[1]) or -INF
local level = stored(f[2]) or ceiling
local peak = stored(f[3]) or INF
local changed_at = stored(f[4]) or -INF
local resume_at = stored(f[5]) or -INF
local function fmt(x) return string.format('%.17g', x) end
local fixed = {{}}
local function upto(name, x, high)
  if x ~= x then x = -INF elseif x > high then x = high else return x end
  table.insert(fixed, name)
  table.insert(fixed, fmt(x))
  return x
end
last_start = upto('last_start', last_start, now)
changed_at = upto('changed_at', changed_at, now)
resume_at = upto('resume_at', resume_at, now + {RETRY_AFTER_CAP!r})
if #fixed > 0 then
  redis.call('HSET', key, unpack(fixed))
  redis.call('PEXPIRE', key, {IDLE_EXPIRY_MS})
end
if not (level >= ceiling * {rate.MIN_FRACTION!r}) then level = ceiling * {rate.MIN_FRACTION!r} end
if level > ceiling then level = ceiling end
if not (peak > 0) then peak = INF end
local function current(t)
  local elapsed = t - changed_at
  if elapsed == INF then return ceiling end
  local target = math.min(ceiling, peak * {rate.SAFE_FRACTION!r})
  local climbed = target - (target - level) * math.exp(-elapsed / {rate.RECOVERY_SECONDS!r})
  if level > target then climbed = level end
  return math.min(ceiling, climbed + ceiling * {rate.PROBE_PER_SECOND!r} * elapsed)
end
if op == 'start' then
  local interval = 1 / current(now)
  local arrival = math.max(last_start + interval, resume_at)
  if now < arrival then return {{fmt(arrival - now), fmt(now)}} end
  local counted = now
  if now - arrival <= {rate.SLACK!r} * interval then counted = arrival end
  redis.call('HSET', key, 'last_start', fmt(counted), 'ceiling', fmt(ceiling))
  redis.call('PEXPIRE', key, {IDLE_EXPIRY_MS})
  return {{'0', fmt(now)}}
elseif op == 'limited' then
  local sent_at, retry_after = tonumber(ARGV[3]), tonumber(ARGV[4])
  if retry_after > 0 and now + retry_after > resume_at then
    redis.call('HSET', key, 'resume_at', fmt(now + retry_after))
  end
  if sent_at >= changed_at then
    local r = current(now)
    if now - changed_at >= {rate.EPISODE_SECONDS!r} or r > peak then peak = r end
    local lowered = math.max(ceiling * {rate.MIN_FRACTION!r}, r * {rate.SLOWDOWN_FACTOR!r})
    redis.call('HSET', key, 'level', fmt(lowered), 'peak', fmt(peak), 'changed_at', fmt(now))
  end
  redis.call('PEXPIRE', key, {IDLE_EXPIRY_MS})
  return {{'0', fmt(now)}}
end
return {{fmt(current(now)), fmt(now)}}
"""


async def current_rate(
    redis: Redis, *, name: str = "default", prefix: str = "gptunnel"
) -> float | None:
    """The requests per second the budget ``name`` allows now, at the rate its clients
    last used; ``None`` if none used it in the last ten minutes.

    Raises:
        StoreUnavailableError: Redis could not be reached or failed.
    """
    async_redis("redis", redis)
    script = redis.register_script(_SCRIPT)
    async with store_call("reading the request budget"):
        value, _ = await script(
            keys=[fleet_key(prefix, name, "budget")], args=["rate", "", "", "", ""]
        )
    return float(value) if value else None


class RedisBudget:
    """A request budget kept in Redis, shared by every client that names it.

    Requests of all processes together start at least ``1 / rate`` apart (any one
    second holds at most ``requests_per_second + 1``), a 429 seen by any of them slows
    them all, and a ``Retry-After`` holds them all. Within a process, requests ask in
    turn, so one at a time waits on Redis.

    Args:
        redis: a ``redis.asyncio.Redis`` (or ``RedisCluster``) client; the budget never
            closes it.
        requests_per_second: the fleet's ceiling, a finite number of requests per
            second, at least 1/3600 (one an hour). Processes should
            agree on it; each request is paced by the ceiling its own process gives.
        name: budgets with the same name share one rate (one per API key, usually).
        prefix: the start of every key, ``"{prefix}:{{{name}}}:budget"``; the braces make
            it a Redis Cluster hash tag.

    Each pause is at most ``rate.longest_pause``: 60 s (the SDK's cap on
    ``Retry-After``), or one interval at the slowest rate (1/64 of the ceiling) if that
    is longer. Values in the hash that no budget can have written (a hold further than
    60 s ahead, a start in the future after Redis's clock moved back, NaN) are corrected
    in Redis when next read, so an odd value never holds the fleet for longer.

    Raises:
        ConfigurationError: ``redis`` is not an asyncio Redis client, or the rate is not
            a finite number of at least 1/3600.
        StoreUnavailableError: (from each method) Redis could not be reached or failed.
    """

    def __init__(
        self,
        redis: Redis,
        requests_per_second: float,
        *,
        name: str = "default",
        prefix: str = "gptunnel",
    ) -> None:
        async_redis("redis", redis)
        self.requests_per_second = request_rate("requests_per_second", requests_per_second)
        self.longest_pause = rate.longest_pause(self.requests_per_second)
        """Seconds: no pause of :meth:`acquire` is longer."""
        self.key = fleet_key(prefix, name, "budget")
        self._script = redis.register_script(_SCRIPT)
        self._turns = Turns()
        self._share = share_of(redis)

    def __repr__(self) -> str:
        return f"RedisBudget(requests_per_second={self.requests_per_second:g}, key={self.key!r})"

    async def _call(self, *args: Any, now: float | None = None) -> tuple[float, float]:
        """Run the script: ``(value, Redis time)``; ``now`` replaces Redis ``TIME``."""
        argv = [*args, *([""] * (4 - len(args))), "" if now is None else repr(now)]
        value, clock = await one_command(
            self._share.commands,
            "the request budget",
            self._script,
            keys=[self.key],
            args=argv,
            # Made again on a dead connection: a "start" run twice only takes one more
            # slot of the rate; "rate" reads. A 429 ("limited") is not counted twice.
            idempotent=args[0] != "limited",
        )
        return float(value), float(clock)

    async def acquire(self) -> float:
        """Wait until the next request may start; return when it did (Redis seconds)."""
        async with self._turns.of_running_loop():
            while True:
                delay, now = await self._call("start", self.requests_per_second)
                if not delay:
                    return now
                # The script caps it already; this holds even against another script.
                await asyncio.sleep(delay if 0 < delay < self.longest_pause else self.longest_pause)

    async def rate_limited(self, started: float, retry_after: float | None) -> None:
        """The request that started at ``started`` got a 429: slow every process down,
        and hold them all for ``retry_after`` seconds (at most 60) if the server asked."""
        hold = honoured_retry_after(retry_after) or 0.0
        await self._call("limited", self.requests_per_second, started, hold)

    async def current_rate(self) -> float:
        """The requests per second the fleet may send now."""
        return (await self._call("rate", self.requests_per_second))[0]
