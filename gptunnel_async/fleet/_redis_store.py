"""The Redis store: the fleet's waits in Redis, shared by every worker.

Keys, all under one hash tag (``{name}``) so that a Redis Cluster keeps them in one slot
and each script may touch any of them (the scripts build the per-task key names from
the tagged prefix):

- ``{prefix}:{name}:task:<id>``: a hash per watched task: ``state`` (watching, finished,
  delivered; undelivered once its handler failed ``max_attempts`` times), ``record``
  (family and metadata), ``deadline``, ``schedule`` (the saved pacing), ``lease`` (the
  worker reading it, and a tag of its claim) and ``lease_until`` (its end), ``outcome``
  and ``entry`` (its entry of the ``finished`` stream, once finished), ``failures``
  (failed handler attempts, if any). It expires a day after its deadline, or an hour
  after its delivery was acknowledged. It is the record of its wait: the keys below
  index it, and :meth:`RedisStore.repair` rebuilds an index entry lost apart from it.
- ``{prefix}:{name}:due``: a sorted set, task id by the time its next read is due (for a
  leased task: its lease's end, so a dead worker's tasks fall due again by themselves).
- ``{prefix}:{name}:leases``: task id by lease end, for counting what is being read.
- ``{prefix}:{name}:finished``: a stream of finished task ids, read by the consumer group
  ``handlers``; an entry is acknowledged and deleted once its handler returned.
- ``{prefix}:{name}:events``: a pub/sub channel for progress and finish notices.
- ``{prefix}:{name}:dead``: a stream of dead letters: a task whose record, or a finished
  entry whose outcome, this version cannot read, or a finished task whose handler failed
  ``max_attempts`` times (``task``, ``reason``), capped at about
  :data:`DEAD_LETTERS_KEPT` entries. The task's hash is kept (``state`` ``dead``, or
  ``undelivered`` with its outcome still readable; ``dead_reason``) for a day, for an
  operator to look at.

Each decision (register once, claim, re-schedule while leased, finish first) is one Lua
script, atomic; the clock is Redis ``TIME`` (see "Clocks" in ``docs/fleet.md``). Every
value read back is decoded by :mod:`._decode`: an odd one is logged and moved to the
dead letters (the way a stream consumer moves a poison message aside), so the entries
behind it are still read.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._checks import async_redis, number
from .._logging import sdk_logger
from ..errors import ConfigurationError, StoreDataError
from . import _decode
from ._connections import MIN_POOL, Slots, command, one_command, patiently, pool_size, share_of
from ._errors import store_call, store_failures
from ._keys import fleet_key
from ._records import Claim, Entry, FleetStatus, Repaired

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStore"]

T = TypeVar("T")

logger = sdk_logger("gptunnel_async.fleet")

GROUP: Final = "handlers"
"""The stream's consumer group: every worker with a handler reads as one consumer of it."""

FINISHED_KEPT: Final = 24 * 3600
"""Seconds a task's hash outlives its deadline, so a finished, unhandled outcome waits."""

DELIVERED_KEPT: Final = 3600
"""Seconds a delivered task's outcome stays, for ``Watcher.result`` and idempotency."""

DEAD_LETTERS_KEPT: Final = 10_000
"""About this many dead letters are kept (the stream is trimmed, oldest first)."""

_CLOCK: Final = (
    "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
)

# Every script that writes checks first that the fleet's keys it writes hold their type
# (or nothing): Redis runs a script's writes up to its first failing command and keeps
# them, so a key of another type (an operator's SET) failing a command midway left a
# wait half made: registered but never due, or finished but never delivered, for good.
_TYPES: Final = """
local function wrong_type(...)
  local wanted = {...}
  for i = 1, #wanted, 2 do
    local found = redis.call('TYPE', wanted[i]).ok
    if found ~= 'none' and found ~= wanted[i + 1] then
      return redis.error_reply('WRONGTYPE ' .. wanted[i] .. ' holds a ' .. found ..
                               ', not a ' .. wanted[i + 1] .. ': nothing was written')
    end
  end
  return nil
end
"""

# A new wait of one task: its hash made anew, due now. KEYS and ARGV as _WATCH's.
_REGISTER: Final = f"""
local function register(key, due, id, record, timeout)
  local deadline = now + tonumber(timeout)
  redis.call('DEL', key)
  redis.call('HSET', key, 'state', 'watching', 'record', record,
             'deadline', string.format('%.17g', deadline))
  redis.call('EXPIREAT', key, math.ceil(deadline) + {FINISHED_KEPT})
  redis.call('ZADD', due, now, id)
end
"""

# KEYS: task, due. ARGV: id, record, timeout.
_WATCH: Final = (
    _CLOCK
    + _TYPES
    + _REGISTER
    + """
local mistyped = wrong_type(KEYS[2], 'zset')
if mistyped then return mistyped end
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- Registered already: again only once a wait that ended without its task's end
  -- (expired, or an error such as "no such task") was delivered, or given up on; or
  -- once it was set aside as a dead letter no worker could read (its handler never
  -- ran): a new wait, read from the start.
  if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
  local held = redis.call('HMGET', KEYS[1], 'state', 'outcome')
  if held[1] ~= 'dead' then
    if (held[1] ~= 'delivered' and held[1] ~= 'undelivered') or not held[2] then
      return 0
    end
    local readable, outcome = pcall(cjson.decode, held[2])
    if not readable or type(outcome) ~= 'table' then return 0 end
    if outcome.kind ~= 'expired' and outcome.kind ~= 'error' then return 0 end
  end
end
register(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)

# KEYS: due, leases. ARGV: task key prefix, worker, limit, lease. Returns now, the next
# due time, the ids whose key holds another type than a hash (with that type: left due,
# for the caller to set aside), then each claimed task's id, record, deadline, schedule.
_CLAIM: Final = (
    _CLOCK
    + _TYPES
    + """
local mistyped = wrong_type(KEYS[1], 'zset', KEYS[2], 'zset')
if mistyped then return mistyped end
local lease_end = now + tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local odd = {}
local out = {string.format('%.17g', now), '', odd}
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local kind = redis.call('TYPE', key)['ok']
  local f = {}
  if kind == 'hash' or kind == 'none' then
    f = redis.call('HMGET', key, 'state', 'record', 'deadline', 'schedule')
  end
  if kind ~= 'hash' and kind ~= 'none' then
    table.insert(odd, id)
    table.insert(odd, kind)
  elseif f[1] ~= 'watching' then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  else
    redis.call('ZADD', KEYS[1], lease_end, id)
    redis.call('ZADD', KEYS[2], lease_end, id)
    redis.call('HSET', key, 'lease', ARGV[2], 'lease_until', string.format('%.17g', lease_end))
    table.insert(out, id)
    table.insert(out, f[2])
    table.insert(out, f[3])
    table.insert(out, f[4] or '')
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = string.format('%.17g', math.max(0, tonumber(first[2]) - now)) end
return out
"""
)

# KEYS: task, due, leases. ARGV: id, worker, delay, schedule, progress, channel.
_RESCHEDULE: Final = (
    _CLOCK
    + _TYPES
    + """
local mistyped = wrong_type(KEYS[1], 'hash', KEYS[2], 'zset', KEYS[3], 'zset')
if mistyped then return mistyped end
local f = redis.call('HMGET', KEYS[1], 'state', 'lease')
if f[1] ~= 'watching' or f[2] ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'schedule', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
if ARGV[5] ~= '' then redis.pcall('PUBLISH', ARGV[6], ARGV[5]) end
return 1
"""
)

# KEYS: task, due, leases, stream. ARGV: id, outcome, channel, outcome's kind. Notices are
# best effort (pcall): a Redis user the ACL keeps off the channel still finishes the wait,
# as it still saves a read (_RESCHEDULE); redis.call would fail the script after its
# writes, and the caller would take a done wait for one not done.
_FINISH: Final = (
    _TYPES
    + """
local mistyped = wrong_type(KEYS[1], 'hash', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'stream')
if mistyped then return mistyped end
if redis.call('HGET', KEYS[1], 'state') ~= 'watching' then return 0 end
redis.call('HDEL', KEYS[1], 'lease', 'lease_until', 'schedule')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local entry = redis.call('XADD', KEYS[4], '*', 'task', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'finished', 'outcome', ARGV[2], 'entry', entry)
local notice = {kind = 'finished', task_id = ARGV[1], outcome = ARGV[4]}
redis.pcall('PUBLISH', ARGV[3], cjson.encode(notice))
return 1
"""
)

# KEYS: stream, task. ARGV: group, entry id.
_ACK: Final = (
    _TYPES
    + f"""
local mistyped = wrong_type(KEYS[1], 'stream')
if mistyped then return mistyped end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
-- A task key of another type (made while the handler ran) is someone else's: left.
if redis.call('TYPE', KEYS[2]).ok == 'hash' and
   redis.call('HGET', KEYS[2], 'state') == 'finished' then
  redis.call('HSET', KEYS[2], 'state', 'delivered')
  redis.call('EXPIRE', KEYS[2], {DELIVERED_KEPT})
end
return 1
"""
)

# KEYS: stream, task, due. ARGV: group, entry id, task id, record, timeout. _ACK, and in
# the same step the new wait its handler asked for, if the wait ended without its task's
# end (expired, an error): 1 if registered (also by an earlier run of this script whose
# reply was lost), else 0. Two steps lost the new wait to a Redis gone between them.
_ACK_AND_WATCH: Final = (
    _CLOCK
    + _TYPES
    + _REGISTER
    + f"""
local mistyped = wrong_type(KEYS[1], 'stream', KEYS[3], 'zset')
if mistyped then return mistyped end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('TYPE', KEYS[2]).ok ~= 'hash' then return 0 end
local held = redis.call('HMGET', KEYS[2], 'state', 'outcome', 'record')
if held[1] == 'watching' and held[3] == ARGV[4] then return 1 end
if held[1] ~= 'finished' then return 0 end
local readable, outcome = pcall(cjson.decode, held[2] or '')
if readable and type(outcome) == 'table' and
   (outcome.kind == 'expired' or outcome.kind == 'error') then
  register(KEYS[2], KEYS[3], ARGV[3], ARGV[4], ARGV[5])
  return 1
end
redis.call('HSET', KEYS[2], 'state', 'delivered')
redis.call('EXPIRE', KEYS[2], {DELIVERED_KEPT})
return 0
"""
)

# KEYS: due, leases, dead, stream. ARGV: task key prefix, id, reason, group, entry id
# ('' for a claimed task: no stream entry).
_BURY: Final = (
    _TYPES
    + f"""
local mistyped = wrong_type(KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'stream')
if not mistyped and ARGV[5] ~= '' then mistyped = wrong_type(KEYS[4], 'stream') end
if mistyped then return mistyped end
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('XACK', KEYS[4], ARGV[4], ARGV[5])
  redis.call('XDEL', KEYS[4], ARGV[5])
end
local key = ARGV[1] .. ARGV[2]
-- Another type is someone else's: left. So is a wait a stream entry names while it is
-- watched (an entry written by hand, or one left from a wait whose hash expired before
-- the task was watched anew): the entry is set aside, the wait goes on.
local kind = redis.call('TYPE', key)['ok']
if kind == 'hash' and ARGV[5] ~= '' and redis.call('HGET', key, 'state') == 'watching' then
  kind = 'watched'
end
if kind == 'hash' then
  redis.call('HSET', key, 'state', 'dead', 'dead_reason', ARGV[3])
  redis.call('HDEL', key, 'lease', 'lease_until')
  redis.call('EXPIRE', key, {FINISHED_KEPT})
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', {DEAD_LETTERS_KEPT}, '*', 'task', ARGV[2],
           'reason', ARGV[3])
return 1
"""
)

# KEYS: task. ARGV: a token of this count. A finished task's count of failed handler
# attempts, one more; 0 for a task delivered meanwhile, or gone (no stray hash is made).
# A count that is not what this script writes, up to 15 ASCII digits (an operator's HSET
# of -3, 1.5, 1e300 or inf), starts again, as _decode.failures reads it: 0. The token
# makes the script safe to run twice: a client's retry that sends it again after a lost
# reply (redis-py's Retry) finds its own token and counts nothing, while another
# worker's failure, with a token of its own, counts.
_FAILED: Final = f"""
if redis.call('HGET', KEYS[1], 'state') ~= 'finished' then return 0 end
local stored, n = redis.call('HGET', KEYS[1], 'failures'), 0
if stored and #stored <= {_decode.MAX_COUNT_DIGITS} and string.match(stored, '^%d+$') then
  n = tonumber(stored)
end
if redis.call('HGET', KEYS[1], 'failure_token') == ARGV[1] then return n end
n = math.min(n + 1, 1e15)
redis.call('HSET', KEYS[1], 'failures', string.format('%d', n), 'failure_token', ARGV[1])
return n
"""

# KEYS: stream, task, dead. ARGV: group, entry id, task id, reason. An entry acknowledged
# meanwhile (a handler that returned after all) is not a dead letter.
_GIVE_UP: Final = (
    _TYPES
    + f"""
local mistyped = wrong_type(KEYS[1], 'stream', KEYS[3], 'stream')
if mistyped then return mistyped end
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
-- A task key of another type is someone else's: left, the delivery set aside all the same.
if redis.call('TYPE', KEYS[2]).ok == 'hash' and
   redis.call('HGET', KEYS[2], 'state') == 'finished' then
  redis.call('HSET', KEYS[2], 'state', 'undelivered', 'dead_reason', ARGV[4])
  redis.call('EXPIRE', KEYS[2], {FINISHED_KEPT})
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', {DEAD_LETTERS_KEPT}, '*', 'task', ARGV[3],
           'reason', ARGV[4])
return 1
"""
)

# KEYS: stream. ARGV: group, idle milliseconds.
_PRUNE: Final = """
local removed = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
"""

CONSUMERS_KEPT: Final = 24 * 3600.0
"""Seconds a consumer of the stream's group that holds nothing is kept after it was last
seen: a worker gone for good (each start of a worker is a consumer of its own name)."""

# KEYS: due, leases, stream, dead.
_STATUS: Final = (
    _CLOCK
    + """
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local overdue = 0
if first[2] and tonumber(first[2]) < now then overdue = now - tonumber(first[2]) end
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCOUNT', KEYS[1], '-inf', now),
        redis.call('ZCOUNT', KEYS[2], '(' .. string.format('%.17g', now), '+inf'),
        redis.call('XLEN', KEYS[3]), string.format('%.17g', overdue), redis.call('XLEN', KEYS[4])}
"""
)


_DELIVERY_OVER: Final = frozenset({b"delivered", b"undelivered", b"dead"})
"""The states of a task hash whose delivery is over: a stream entry naming it is let go."""

REPAIR_BATCH: Final = 1000
"""The ``COUNT`` of one repair pass's ``SCAN``: about how many keys of the database
(the fleet's and any others) one pass looks at."""

MAX_LEASE: Final = 24 * 3600.0
"""The longest lease a watcher takes (``Watcher(lease=...)`` is at most a day): a task's
saved lease end further ahead than that is none a claim wrote."""

# KEYS: due, leases, stream. ARGV: the task keys' SCAN pattern, the SCAN cursor, its
# COUNT, the task key prefix, a lease (seconds) for a leased task whose lease end is
# unreadable. One bounded pass: every task hash the SCAN step finds is checked against
# the keys a DEL, an eviction or a trim may take from under it: a watched task missing
# from the schedule (or, leased, from the leases) is put back, due at once or when its
# lease ends; a finished task whose stream entry is gone is queued again. Returns the
# next cursor ("0": the database has been gone through), how many tasks were put back
# into the schedule, how many finished tasks were queued again, and Redis's time.
_REPAIR: Final = (
    _CLOCK
    + _TYPES
    + f"""
local mistyped = wrong_type(KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'stream')
if mistyped then return mistyped end
local found = redis.call('SCAN', ARGV[2], 'MATCH', ARGV[1], 'COUNT', tonumber(ARGV[3]))
local rescheduled, requeued = 0, 0
for _, key in ipairs(found[2]) do
  if redis.call('TYPE', key).ok == 'hash' then
    local id = string.sub(key, #ARGV[4] + 1)
    local f = redis.call('HMGET', key, 'state', 'lease', 'lease_until', 'entry')
    if f[1] == 'watching' then
      local at = now
      if f[2] then
        at = tonumber(f[3])
        if not at or at ~= at or at > now + {MAX_LEASE} then at = now + tonumber(ARGV[5]) end
        at = math.max(at, now)
        if not redis.call('ZSCORE', KEYS[2], id) then redis.call('ZADD', KEYS[2], at, id) end
      end
      if not redis.call('ZSCORE', KEYS[1], id) then
        redis.call('ZADD', KEYS[1], at, id)
        rescheduled = rescheduled + 1
      end
    elseif f[1] == 'finished' and f[4] then
      -- Its entry, naming it: a stream made anew (or a clock gone back) may give
      -- another task's entry the id this one had.
      local held = redis.pcall('XRANGE', KEYS[3], f[4], f[4])
      local queued = false
      if not held.err and held[1] then
        local fields = held[1][2]
        for i = 1, #fields, 2 do
          if fields[i] == 'task' and fields[i + 1] == id then queued = true end
        end
      end
      if not queued then
        local entry = redis.call('XADD', KEYS[3], '*', 'task', id)
        redis.call('HSET', key, 'entry', entry)
        requeued = requeued + 1
      end
    end
  end
end
return {{found[1], rescheduled, requeued, string.format('%.17g', now)}}
"""
)


def _stream_entries(reply: Any) -> list[tuple[Any, Any]]:
    """The ``(id, fields)`` entries of an ``XREADGROUP`` reply as redis-py gives it:
    ``[[stream, [entry, ...]]]`` on RESP2, ``{stream: [[entry, ...]]}`` on RESP3
    (``Redis(protocol=3)``)."""
    if isinstance(reply, dict):
        return [entry for batches in reply.values() for entries in batches for entry in entries]
    return [entry for _, entries in reply or () for entry in entries]


def _reclaimed(reply: Any) -> tuple[list[tuple[Any, Any]], list[Any]]:
    """An ``XAUTOCLAIM`` reply as redis-py gives it: the ``(id, fields)`` entries taken
    over, and the ids of pending entries deleted meanwhile (acknowledged work whose
    entry an operator removed). Redis 7 lists those ids apart, as the reply's third
    element; Redis 6.2 has no third element and gives such an entry in place as nil,
    which redis-py makes ``(None, None)``: no delivery, and no id to acknowledge it by
    (it stays pending, and is skipped again at each take)."""
    taken = [entry for entry in reply[1] if entry[0] is not None]
    return taken, list(reply[2]) if len(reply) > 2 else []


def _cursor(reply: Any) -> str:
    """Where an ``XAUTOCLAIM`` reply says to go on looking (``0-0``: from the start
    again, the whole list looked at), or the start for a reply that says nothing usable."""
    cursor = reply[0] if reply else None
    if isinstance(cursor, bytes):
        cursor = cursor.decode("ascii", "replace")
    return cursor if isinstance(cursor, str) and _ENTRY_ID.fullmatch(cursor) else "0-0"


_ENTRY_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
"""A stream entry's id: milliseconds, a dash, a sequence number."""


def _glob_escaped(text: str) -> str:
    """``text`` matched literally by a ``SCAN`` pattern: each of the glob's own
    characters (``* ? [ ] \\``) escaped with a backslash."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _idle_seconds(seconds: float) -> bool:
    return 0 < seconds <= 10 * 365 * 24 * 3600  # Redis counts milliseconds, in 64 bits


def _longest_block(redis: Redis) -> float:
    """How long, in seconds, a blocking read of the stream may wait for an entry: half
    the client's ``socket_timeout``, if it has one. A read the client gave up on first
    would leave the entry Redis handed it meanwhile pending for this worker, delivered
    only after ``delivery_timeout``, as a redelivery."""
    kwargs = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
    timeout = kwargs.get("socket_timeout") if isinstance(kwargs, dict) else None
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        return timeout / 2
    return math.inf


class RedisStore:
    """A [WatchStore][gptunnel_async.fleet.WatchStore] in Redis, for a fleet of workers.

    Args:
        redis: a ``redis.asyncio.Redis`` (or ``RedisCluster``) client; never closed by
            the store. Its ``socket_timeout`` bounds each command (times its own
            retries, if it has any: ``Redis.from_url`` has none): set one. The
            fleet uses at most three quarters of its pool's ``max_connections`` at once,
            and a burst beyond that waits its turn (see ``docs/fleet.md``, "Redis
            setup").
        name: stores with the same name share their waits (the hash tag of every key).
        prefix: the start of every key.

    Raises:
        ConfigurationError: ``redis`` is not an asyncio Redis client (``None``, a
            blocking ``redis.Redis``) or has a pool of under 3 connections, a name
            with braces, or an empty name or prefix.
    """

    def __init__(self, redis: Redis, *, name: str = "default", prefix: str = "gptunnel") -> None:
        async_redis("redis", redis)
        size = pool_size(redis)
        if size is not None and size < MIN_POOL:
            raise ConfigurationError(
                f"redis has a pool of {size} connection(s) (max_connections={size}): the "
                f"fleet needs at least {MIN_POOL} at once (a watcher's listener for "
                "notices, a worker's blocking read, a command): give it more (the "
                "default is 100)"
            )
        self.redis = redis
        self.name = name
        self._task_prefix = fleet_key(prefix, name, "task:")
        self.due_key = fleet_key(prefix, name, "due")
        self.leases_key = fleet_key(prefix, name, "leases")
        self.stream_key = fleet_key(prefix, name, "finished")
        self.channel = fleet_key(prefix, name, "events")
        self.dead_key = fleet_key(prefix, name, "dead")
        self._watch = redis.register_script(_WATCH)
        self._claim = redis.register_script(_CLAIM)
        self._reschedule = redis.register_script(_RESCHEDULE)
        self._finish = redis.register_script(_FINISH)
        self._ack = redis.register_script(_ACK)
        self._ack_and_watch = redis.register_script(_ACK_AND_WATCH)
        self._status = redis.register_script(_STATUS)
        self._bury = redis.register_script(_BURY)
        self._give_up = redis.register_script(_GIVE_UP)
        self._failed = redis.register_script(_FAILED)
        self._prune = redis.register_script(_PRUNE)
        self._repair = redis.register_script(_REPAIR)
        self._scan_pattern = _glob_escaped(self._task_prefix) + "*"
        self._repair_from = "0"
        """Where the next repair pass's ``SCAN`` goes on, the last one's cursor."""
        self._group_ready = False
        self._claim_from = "0-0"
        """Where the next ``XAUTOCLAIM`` goes on looking, the last one's cursor: each
        looks at no more than ten times its ``COUNT`` pending entries (Redis 7), so a
        dead worker's delivery behind as many of live workers' would be found only
        once those ended, were every one to look from the start."""
        self._longest_block = _longest_block(redis)
        self._share = share_of(redis)

    def _call(
        self,
        what: str,
        command: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> Awaitable[T]:
        """One store command, in one of the pool's slots for them (``_connections``);
        ``idempotent``: made once more on a pooled connection found dead."""
        return one_command(
            self._share.commands, what, command, *args, idempotent=idempotent, **kwargs
        )

    def __repr__(self) -> str:
        return f"<RedisStore name={self.name!r}>"

    def task_key(self, task_id: str) -> str:
        """The hash of one watched task."""
        return self._task_prefix + task_id

    async def watch(self, task_id: str, record: str, timeout: float) -> bool:
        added = await self._call(
            "registering a wait",
            self._watch,
            keys=[self.task_key(task_id), self.due_key],
            args=[task_id, record, timeout],
            idempotent=True,  # a second run finds it registered: False
        )
        return bool(added)

    async def claim(
        self, worker: str, limit: int, lease: float
    ) -> tuple[list[Claim], float | None]:
        reply = await self._call(
            "claiming due tasks",
            self._claim,
            keys=[self.due_key, self.leases_key],
            args=[self._task_prefix, worker, limit, lease],
        )
        now, next_due, odd, *fields = reply
        for task_id, kind in zip(*[iter(odd)] * 2, strict=True):
            shown = _decode.text(kind, "a key's type")
            await self._set_aside(task_id, StoreDataError(f"its key holds a {shown}, not a hash"))
        claims = []
        for task_id, record, deadline, schedule in zip(*[iter(fields)] * 4, strict=True):
            try:
                claims.append(_claim(task_id, record, deadline, schedule, now))
            except StoreDataError as exc:
                await self._set_aside(task_id, exc)
        return claims, _due_in(next_due)

    async def reschedule(
        self, task_id: str, worker: str, delay: float, schedule: str, progress: str | None
    ) -> bool:
        done = await self._call(
            "re-scheduling a read",
            self._reschedule,
            keys=[self.task_key(task_id), self.due_key, self.leases_key],
            args=[task_id, worker, delay, schedule, progress or "", self.channel],
            # A second run finds the lease gone (or another worker's): 0, nothing changed.
            idempotent=True,
        )
        return bool(done)

    async def finish(self, task_id: str, outcome: str) -> bool:
        done = await self._call(
            "finishing a wait",
            self._finish,
            keys=[self.task_key(task_id), self.due_key, self.leases_key, self.stream_key],
            args=[task_id, outcome, self.channel, _decode.outcome_kind(outcome)],
            idempotent=True,  # a second run finds it finished: False
        )
        return bool(done)

    async def take(
        self, worker: str, count: int, block: float, reclaim_after: float
    ) -> list[Entry]:
        # A blocking read holds a connection for up to ``block``: in a slot for those,
        # which the short commands do not queue behind. With every one taken (more idle
        # watchers on the pool than slots), a read that does not block, then a pause.
        reads = self._share.blocking_reads
        if block > 0 and reads.free():
            return await self._take_in(reads, worker, count, block, reclaim_after)
        entries = await self._take_in(self._share.commands, worker, count, 0, reclaim_after)
        if not entries and block > 0:
            await asyncio.sleep(block)  # in no slot: the pace a blocking read would keep
        return entries

    async def _take_in(
        self, slots: Slots, worker: str, count: int, block: float, reclaim_after: float
    ) -> list[Entry]:
        """:meth:`take` in one of ``slots`` (``block`` 0: a read that does not block)."""
        async with command(slots, "taking finished tasks"):
            await self._ensure_group()
            try:
                return await self._take(worker, count, block, reclaim_after)
            except store_failures() as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group_ready = False  # the stream was deleted: make it again
                return []

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the stream's start ("0"), so no entry added before the group is skipped.
            await patiently(self.redis.xgroup_create, self.stream_key, GROUP, id="0", mkstream=True)
        except store_failures() as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True
        removed = await self.prune_consumers(CONSUMERS_KEPT)
        if removed:
            logger.info("store %s: %d workers gone for a day left the group", self.name, removed)

    async def prune_consumers(self, idle: float) -> int:
        """Remove from the stream's consumer group every worker that holds no delivery
        and was last seen over ``idle`` seconds ago; return how many. Each worker's first
        take does it with a day: without it, every worker ever started (each start has
        a name of its own) would stay in the group for good. Holding nothing, a worker
        loses nothing by it, and it joins again on its next read.

        Args:
            idle: seconds (> 0, at most ten years) since a worker was last seen.

        Raises:
            ConfigurationError: ``idle`` is not such a number of seconds.
            StoreUnavailableError: Redis failed, or the group is not there yet (it is
                made by the first take).
        """
        seconds = number("idle", idle, "a number of seconds > 0, at most ten years", _idle_seconds)
        removed = await self._call(
            "removing workers gone from the group",
            self._prune,
            keys=[self.stream_key],
            args=[GROUP, int(seconds * 1000)],
        )
        return int(removed)

    async def _take(
        self, worker: str, count: int, block: float, reclaim_after: float
    ) -> list[Entry]:
        reclaimed: Any = await patiently(
            self.redis.xautoclaim,
            self.stream_key,
            GROUP,
            worker,
            int(reclaim_after * 1000),
            start_id=self._claim_from,
            count=count,
        )
        self._claim_from, (stale, gone) = _cursor(reclaimed), _reclaimed(reclaimed)
        for entry_id in gone:  # acknowledged work whose entry was deleted meanwhile
            await patiently(self.redis.xack, self.stream_key, GROUP, entry_id)
        taken: list[tuple[Any, Any, bool]] = [(i, f, True) for i, f in stale]
        if not taken:
            # BLOCK 0 waits forever: a read that must not block sends no BLOCK at all.
            milliseconds = max(1, int(min(block, self._longest_block) * 1000)) if block else None
            reply: Any = await patiently(
                self.redis.xreadgroup,
                GROUP,
                worker,
                {self.stream_key: ">"},
                count=count,
                block=milliseconds,
            )
            taken = [(i, f, False) for i, f in _stream_entries(reply)]
        entries = []
        for entry_id, fields, redelivered in taken:
            try:
                entry = await self._entry(entry_id, fields, redelivered)
            except StoreDataError as exc:
                await self._set_aside(fields.get(b"task", fields.get("task", b"")), exc, entry_id)
                continue
            if entry is not None:
                entries.append(entry)
        return entries

    async def _entry(self, entry_id: Any, fields: Any, redelivered: bool) -> Entry | None:
        """The delivery a ``finished`` stream entry names; ``None`` (the entry let go)
        when its task's delivery is over: acknowledged, given up on or set aside (an
        entry a repair queued again while a worker held the first, or one written by
        hand), so no handler is handed it twice.

        Raises:
            StoreDataError: the entry or its task's hash cannot be read.
        """
        task_id = _decode.task_id(
            fields.get(b"task", fields.get("task")), "a finished entry's task"
        )
        state, record, deadline, outcome, failures = await self._call(
            "reading a finished task",  # a key of another type: StoreDataError
            self.redis.hmget,
            self.task_key(task_id),
            ["state", "record", "deadline", "outcome", "failures"],
            idempotent=True,
        )
        if state in _DELIVERY_OVER:
            logger.info("fleet: task %r delivered already: its entry is let go", task_id)
            await self._call(
                "letting go of a delivered task's entry",
                self._ack,
                keys=[self.stream_key, self.task_key(task_id)],
                args=[GROUP, entry_id],
                idempotent=True,
            )
            return None
        if record is None or outcome is None:  # it used to be acknowledged unsaid
            raise StoreDataError(_missing(state, record))
        return Entry(
            _decode.text(entry_id, "a finished entry's id"),
            task_id,
            _decode.record(record, deadline),
            _decode.outcome(outcome),
            redelivered,
            _decode.failures(failures),
        )

    async def _set_aside(self, task_id: Any, error: StoreDataError, entry_id: Any = "") -> None:
        """Move a task this version cannot read to the dead letters, acknowledging its
        finished entry if it has one: it is logged once, and no worker takes it again."""
        shown = task_id.decode(errors="backslashreplace") if isinstance(task_id, bytes) else task_id
        logger.warning("fleet: task %r set aside as a dead letter: %s", shown, error)
        await self._call(
            "setting a dead letter aside",
            self._bury,
            keys=[self.due_key, self.leases_key, self.dead_key, self.stream_key],
            args=[self._task_prefix, task_id, str(error), GROUP, entry_id],
        )

    async def ack(self, entry: Entry) -> None:
        await self._call(
            "acknowledging a delivery",
            self._ack,
            keys=[self.stream_key, self.task_key(entry.task_id)],
            args=[GROUP, entry.entry_id],
            idempotent=True,
        )

    async def ack_and_watch(self, entry: Entry, record: str, timeout: float) -> bool:
        registered = await self._call(
            "acknowledging a delivery and registering a new wait",
            self._ack_and_watch,
            keys=[self.stream_key, self.task_key(entry.task_id), self.due_key],
            args=[GROUP, entry.entry_id, entry.task_id, record, timeout],
            idempotent=True,  # a second run finds the new wait, with its record: True
        )
        return bool(registered)

    async def failed(self, entry: Entry) -> int:
        count = await self._call(
            "counting a failed handler attempt",
            self._failed,
            keys=[self.task_key(entry.task_id)],
            args=[uuid.uuid4().hex],
            idempotent=True,
        )
        return int(count)

    async def dead_letter(self, entry: Entry, reason: str) -> bool:
        done = await self._call(
            "setting a delivery aside",
            self._give_up,
            keys=[self.stream_key, self.task_key(entry.task_id), self.dead_key],
            args=[GROUP, entry.entry_id, entry.task_id, reason],
        )
        return bool(done)

    async def outcome(self, task_id: str) -> str | bytes | None:
        state, value, reason = await self._call(
            "reading an outcome",
            self.redis.hmget,
            self.task_key(task_id),
            ["state", "outcome", "dead_reason"],
            idempotent=True,
        )
        if state in (b"dead", "dead"):
            shown = _decode.text(reason, "the reason") if reason is not None else "unknown"
            raise StoreDataError(f"task {task_id!r} was set aside as a dead letter: {shown}")
        result: str | bytes | None = value
        return result

    async def last_read(self, task_id: str) -> str | bytes | None:
        state, schedule = await self._call(
            "reading a wait's last read",
            self.redis.hmget,
            self.task_key(task_id),
            ["state", "schedule"],
            idempotent=True,
        )
        if state is None:  # no hash: never registered, or expired
            return None
        saved: str | bytes = schedule or ""
        return saved

    async def events(self) -> AsyncIterator[str | bytes]:
        listeners = self._share.listeners
        if not listeners.free() and not listeners.warned:
            listeners.warned = True  # once a pool: a watcher per request would repeat it
            logger.warning(
                "store %s: a listener for notices waits for one of the %d listener slots "
                "of its Redis pool: its watcher's progress() gets no event until one is "
                "free, and its result() calls read the store every second meanwhile; "
                "give the client a larger max_connections, or share one watcher",
                self.name,
                listeners.limit,
            )
        async with listeners.slot(), store_call("listening for notices"):
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    yield message["data"]
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def repair(self, lease: float) -> Repaired:
        """One bounded pass of the store's repair: put back what a lost key took from
        the tasks whose hashes ``SCAN`` finds next (about :data:`REPAIR_BATCH` keys of
        the database). A watched task missing from ``due`` (the key deleted, a member
        evicted or removed by hand) is due again at once, or when the lease its hash
        records ends; one missing from ``leases`` is put back there; a finished task
        whose entry of the ``finished`` stream is gone (the stream deleted or trimmed)
        is queued again for a handler; should a worker's handler still be running on
        the lost entry, the entry queued again is let go, not delivered, once that
        handler's delivery is acknowledged. Each pass goes on where the last one stopped;
        a Redis of ``K`` keys is gone through in about ``K / REPAIR_BATCH`` passes.

        Args:
            lease: seconds, the lease taken as a leased task's when its hash records no
                readable lease end (one claimed by an older version).

        Returns:
            How many watched tasks were put back into the schedule, how many finished
            tasks were queued again, and Redis's ``TIME`` at the pass (seconds).

        Raises:
            StoreUnavailableError: Redis could not be reached or failed.
            StoreDataError: one of the fleet's keys holds another type.
        """
        cursor, rescheduled, requeued, now = await self._call(
            "repairing the schedule",
            self._repair,
            keys=[self.due_key, self.leases_key, self.stream_key],
            args=[
                self._scan_pattern,
                self._repair_from,
                REPAIR_BATCH,
                self._task_prefix,
                lease,
            ],
            idempotent=True,  # a second run finds nothing more to put back
        )
        self._repair_from = _decode.text(cursor, "a SCAN cursor")
        return Repaired(int(rescheduled), int(requeued), float(now))

    async def status(self) -> FleetStatus:
        watched, due, leased, unhandled, overdue, dead = await self._call(
            "reading the fleet's status",
            self._status,
            keys=[self.due_key, self.leases_key, self.stream_key, self.dead_key],
            idempotent=True,
        )
        return FleetStatus(
            watched=int(watched),
            due=int(due),
            leased=int(leased),
            finished_unhandled=int(unhandled),
            oldest_overdue=float(overdue),  # the script's own %.17g: inf for a -inf score
            dead_letters=int(dead),
        )


_GONE: Final = (
    "its task's record is gone before a handler returned (it expired, a day after the "
    "wait's deadline, or was deleted or evicted): its outcome is lost"
)
"""Why a finished entry whose task's hash is gone is set aside."""


def _missing(state: Any, record: Any) -> str:
    """Why a finished entry whose task's hash holds no outcome is set aside."""
    if record is None:
        return _GONE
    if state in (b"watching", "watching"):
        return "its task is watched, not finished: an entry not the fleet's, or a stale one"
    return "its outcome is missing"


def _due_in(value: Any) -> float | None:
    """Seconds until the next task is due, from the claim script's reply; ``None`` (the
    watcher's idle poll) when no task is due, or the text is no finite number of seconds
    >= 0 (``inf``, for an operator's ``ZADD`` of ``+inf``)."""
    if not value:
        return None
    try:
        return _decode.number(value, "the time until the next task is due", minimum=0)
    except StoreDataError:
        return None


def _claim(task_id: Any, record: Any, deadline: Any, schedule: Any, now: Any) -> Claim:
    """One claimed task from the claim script's reply (``now``: Redis time, as text)."""
    return Claim(
        _decode.task_id(task_id, "a claimed task's id"),
        _decode.record(record, deadline),
        _decode.text(schedule, "the saved pacing") or None,
        _decode.number(now, "the Redis time"),
    )
