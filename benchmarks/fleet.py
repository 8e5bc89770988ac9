"""The fleet's proof: a shared request budget and durable waits, measured on loopback.

    python benchmarks/fleet.py --quick    # under three minutes: the six lines below
    python benchmarks/fleet.py            # longer runs, and the big-fleet figures
    python benchmarks/fleet.py --idle-watchers 12 40 80   # delivery latency, many watchers

It starts its own ``redis-server`` and a local API stand-in (an aiohttp app in its own
process) on 127.0.0.1, runs worker processes against them, and prints:

    budget processes=4 rate=20 max_any_second=... mean=...
    budget processes=8 rate=20 max_any_second=... mean=...
    rate_limited inprocess 429s=... last2s=... true_limit=10
    rate_limited redis 429s=... last2s=... true_limit=10
    overhead_ms redis=... inprocess=...
    crash tasks=300 kills=2 lost=... duplicates=... p95_latency_s=...

Times are ``time.monotonic()``, one clock for every process on Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from gptunnel_async import GPTunnelClient, GPTunnelError, PollPolicy
from gptunnel_async.fleet import (
    Delivery,
    InProcessBudget,
    RedisBudget,
    RedisStore,
    Watcher,
)

HERE = os.path.abspath(__file__)
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- the API stand-in ---------------------------------------------------------------------


class StandIn:
    """``/v1/faceswap/result``: records every arrival; optionally allows only ``limit``
    accepted requests in any sliding second (429 ``Retry-After: 0`` beyond). A task id
    ``at-<monotonic>`` is ``running`` until that time, then ``done``."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self.limit: int | None = None
        self.accepted: collections.deque[float] = collections.deque()

    async def result(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        if self.limit is not None:
            while self.accepted and self.accepted[0] <= now - 1.0:
                self.accepted.popleft()
            if len(self.accepted) >= self.limit:
                self.arrivals.append((now, 429))
                return web.json_response(
                    {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0"}
                )
            self.accepted.append(now)
        self.arrivals.append((now, 200))
        task_id = request.query["taskId"]
        done = task_id.startswith("at-") and now >= float(task_id[3:])
        return web.json_response(
            {
                "id": task_id,
                "object": "task",
                "type": "@FaceSwap",
                "percent": 100 if done else 42,
                "status": "done" if done else "running",
                "result": "https://storage.example/r.png" if done else None,
                "error": None,
            }
        )

    async def reset(self, request: web.Request) -> web.Response:
        limit = request.query.get("limit")
        self.limit = int(limit) if limit else None
        self.arrivals.clear()
        self.accepted.clear()
        return web.json_response({})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.arrivals)


def serve(port: int) -> None:
    stand_in = StandIn()
    app = web.Application()
    app.router.add_get("/v1/faceswap/result", stand_in.result)
    app.router.add_post("/_reset", stand_in.reset)
    app.router.add_get("/_stats", stand_in.stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- worker processes -------------------------------------------------------------------


async def read_loops(args: argparse.Namespace) -> None:
    """``--loops`` concurrent get_result loops for ``--seconds``, from the start time the
    parent sets in Redis once every reader is ready (importing takes seconds on a busy
    machine)."""
    redis = Redis(host="127.0.0.1", port=args.redis_port)
    budget: Any = (
        RedisBudget(redis, args.rate, name=args.name)
        if args.budget == "redis"
        else InProcessBudget(args.rate)
    )
    async with GPTunnelClient(api_key=KEY, base_url=args.api, budget=budget) as client:

        async def loop(n: int, until: float) -> None:
            while time.monotonic() < until:
                with contextlib.suppress(GPTunnelError):  # 429s after retries: read on
                    await client.get_result(f"read-{os.getpid()}-{n}")

        await redis.incr(f"bench:ready:{args.name}")
        while (start := await redis.get(f"bench:start:{args.name}")) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        until = float(start) + args.seconds
        await asyncio.sleep(max(0.0, float(start) - time.monotonic()))
        await asyncio.gather(*(loop(n, until) for n in range(args.loops)))
    await redis.aclose()


async def fleet_worker(args: argparse.Namespace) -> None:
    """A watcher; its handler records each delivery in Redis. With ``--hang-after N``
    it stops inside its N-th handler call, after acting, and says so."""
    redis = Redis(host="127.0.0.1", port=args.redis_port)
    handled = 0

    async def handler(delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        await redis.rpush(
            "bench:delivered", json.dumps([delivery.task_id, time.monotonic(), os.getpid()])
        )
        if args.hang_after and handled == args.hang_after:
            await redis.set("bench:hanging", os.getpid())
            await asyncio.sleep(3600)  # killed here, inside the handler, unacknowledged

    budget = RedisBudget(redis, args.rate, name=args.name)
    policy = PollPolicy(initial=0.2, multiplier=1.5, max_interval=1.0, jitter=0.1, timeout=None)
    async with GPTunnelClient(api_key=KEY, base_url=args.api, budget=budget) as client:
        store = RedisStore(redis, name=args.name)
        watcher = Watcher(
            client, store, handler=handler, policy=policy, lease=2.0, delivery_timeout=2.0
        )
        async with watcher:
            await asyncio.sleep(3600)


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, HERE, *args], stdin=subprocess.DEVNULL)


# -- measurements -----------------------------------------------------------------------


def most_in_any_second(times: list[float]) -> int:
    ordered, most, first = sorted(times), 0, 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


async def drained(store: RedisStore, *, within: float) -> None:
    """Return once ``store`` watches nothing and holds no unhandled finish, or after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = await store.status()
        if status.watched == 0 and status.finished_unhandled == 0:
            return
        await asyncio.sleep(0.2)


def crash_summary(
    done_at: dict[str, float], delivered: list[tuple[str, float]], *, kills: int
) -> str:
    """The crash line: of the tasks (id -> when it finished), how many were never
    delivered, how many deliveries repeated one, and the 95th percentile of the time from
    a finish to its first delivery (``delivered``: (id, when), in order)."""
    first: dict[str, float] = {}
    for task_id, at in delivered:
        first.setdefault(task_id, at)
    lost = len(set(done_at) - set(first))
    duplicates = len(delivered) - len(first)
    latencies = sorted(first[t] - done_at[t] for t in first)
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    return (
        f"crash tasks={len(done_at)} kills={kills} lost={lost} duplicates={duplicates} "
        f"p95_latency_s={p95:.2f}"
    )


class Bench:
    def __init__(self, api: str, redis_port: int, quick: bool) -> None:
        self.api, self.redis_port, self.quick = api, redis_port, quick
        self.runs = 0

    async def reset(self, limit: int | None = None) -> None:
        async with aiohttp.ClientSession() as session:
            query = {"limit": str(limit)} if limit else {}
            async with session.post(self.api.replace("/v1", "/_reset"), params=query) as r:
                r.raise_for_status()

    async def arrivals(self) -> list[tuple[float, int]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.api.replace("/v1", "/_stats")) as r,
        ):
            return [(float(at), int(count)) for at, count in await r.json()]

    async def readers(
        self, processes: int, loops: int, seconds: float, budget: str, rate: float
    ) -> list[tuple[float, int]]:
        self.runs += 1
        name = f"run{self.runs}"
        common = ["--api", self.api, "--redis-port", str(self.redis_port), "--name", name]
        children = [
            spawn(
                "--read-loops",
                *common,
                "--budget",
                budget,
                "--rate",
                str(rate),
                "--loops",
                str(loops),
                "--seconds",
                str(seconds),
            )
            for _ in range(processes)
        ]
        redis = Redis(host="127.0.0.1", port=self.redis_port)
        while int(await redis.get(f"bench:ready:{name}") or 0) < processes:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        start = time.monotonic() + 0.3
        await redis.set(f"bench:start:{name}", repr(start))
        await redis.aclose()
        for child in children:
            await asyncio.to_thread(child.wait)
        return [a for a in await self.arrivals() if start <= a[0] < start + seconds]

    async def budget(self, processes: int, rate: float) -> str:
        await self.reset()
        seconds = 5.0 if self.quick else 10.0
        arrivals = await self.readers(processes, 8, seconds, "redis", rate)
        times = [t for t, _ in arrivals]
        return (
            f"budget processes={processes} rate={rate:g} "
            f"max_any_second={most_in_any_second(times)} mean={len(times) / seconds:.2f}"
        )

    async def rate_limited(self, kind: str) -> str:
        await self.reset(limit=10)
        processes, loops = (1, 8) if kind == "inprocess" else (2, 4)
        arrivals = await self.readers(processes, loops, 10.0, kind, 20)
        start = min(t for t, _ in arrivals)
        refused = sum(1 for _, status in arrivals if status == 429)
        last2s = sum(1 for t, status in arrivals if status == 200 and t >= start + 8.0)
        return f"rate_limited {kind} 429s={refused} last2s={last2s} true_limit=10"

    async def overhead(self) -> str:
        redis = Redis(host="127.0.0.1", port=self.redis_port)
        budgets: dict[str, RedisBudget | InProcessBudget] = {
            "redis": RedisBudget(redis, 1e9, name="overhead"),
            "inprocess": InProcessBudget(1e9),
        }
        starts = 2000 if self.quick else 20000
        figures = {}
        for name, budget in budgets.items():
            for _ in range(200):
                await budget.acquire()
            began = time.perf_counter()
            for _ in range(starts):
                await budget.acquire()
            figures[name] = (time.perf_counter() - began) / starts * 1000
        await redis.aclose()
        return f"overhead_ms redis={figures['redis']:.3f} inprocess={figures['inprocess']:.4f}"

    async def crash(self, tasks: int = 300) -> str:
        """Workers killed anywhere, one inside its handler: is every task delivered,
        and only once?"""
        await self.reset()
        redis = Redis(host="127.0.0.1", port=self.redis_port)
        await redis.delete("bench:delivered", "bench:hanging")
        name = "crash"
        common = ["--api", self.api, "--redis-port", str(self.redis_port), "--name", name]
        common += ["--rate", "400"]
        workers = [spawn("--fleet-worker", *common) for _ in range(3)]
        workers.append(spawn("--fleet-worker", *common, "--hang-after", "40"))
        done_at = await self.watch_timed_tasks(redis, name, tasks)
        await asyncio.sleep(3.5)
        workers[0].send_signal(signal.SIGKILL)  # killed wherever it is
        workers.append(spawn("--fleet-worker", *common))
        async with asyncio.timeout(60):
            while not await redis.get("bench:hanging"):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.05)
        workers[3].send_signal(signal.SIGKILL)  # killed inside its handler
        workers.append(spawn("--fleet-worker", *common))
        await drained(RedisStore(redis, name=name), within=60.0)
        await asyncio.sleep(1.0)
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            await asyncio.to_thread(worker.wait)
        entries = [json.loads(e) for e in await redis.lrange("bench:delivered", 0, -1)]
        await redis.aclose()
        return crash_summary(done_at, [(task_id, at) for task_id, at, _ in entries], kills=2)

    async def watch_timed_tasks(self, redis: Redis, name: str, tasks: int) -> dict[str, float]:
        """Watch ``tasks`` tasks finishing 2 to 9 s from now; return when each is done."""
        begin = time.monotonic() + 1.0
        done_at = {f"at-{begin + random.uniform(1.0, 8.0):.6f}": 0.0 for _ in range(tasks)}
        async with GPTunnelClient(api_key=KEY, base_url=self.api) as client:
            registrar = Watcher(client, RedisStore(redis, name=name))
            for task_id in done_at:
                done_at[task_id] = float(task_id[3:])
                await registrar.watch(task_id)
        return done_at

    async def big_fleet(self, watched: int = 100_000, seconds: float = 10.0) -> list[str]:
        """One worker against ``watched`` due tasks: claims, reads and re-schedules per
        second, and Redis commands and bytes per task read."""
        await self.reset()
        redis = Redis(host="127.0.0.1", port=self.redis_port)
        store = RedisStore(redis, name="big")
        record = json.dumps({"family": "faceswap", "metadata": {"chat_id": 1}, "timeout": 3600})
        for batch in range(0, watched, 2000):
            async with redis.pipeline(transaction=False) as pipe:
                for n in range(batch, min(batch + 2000, watched)):
                    await store._watch(
                        keys=[store.task_key(f"big-{n}"), store.due_key],
                        args=[f"big-{n}", record, 3600],
                        client=pipe,
                    )
                await pipe.execute()
        memory = int((await redis.info("memory"))["used_memory"])
        before = await redis.info("stats")
        policy = PollPolicy(initial=3600, max_interval=3600, jitter=0.0, timeout=None)
        async with GPTunnelClient(api_key=KEY, base_url=self.api, max_connections=64) as client:
            watcher = Watcher(client, store, policy=policy, concurrency=64, lease=60)
            async with watcher:
                await asyncio.sleep(seconds)
        after = await redis.info("stats")
        read = len(await self.arrivals())
        commands = after["total_commands_processed"] - before["total_commands_processed"]
        net_in = after["total_net_input_bytes"] - before["total_net_input_bytes"]
        net_out = after["total_net_output_bytes"] - before["total_net_output_bytes"]
        await redis.aclose()
        return [
            f"big_fleet watched={watched} redis_memory_mib={memory / 2**20:.0f}"
            f" bytes_per_watched={memory / watched:.0f}",
            f"big_fleet one_worker_due_per_s={read / seconds:.0f} commands_per_poll="
            f"{commands / max(read, 1):.2f} bytes_per_poll={(net_in + net_out) / max(read, 1):.0f}",
        ]


@contextmanager
def redis_server() -> Iterator[int]:
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("benchmarks/fleet.py needs redis-server (Debian: apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                folder,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            yield port
        finally:
            server.terminate()
            server.wait()


async def wait_for(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url):
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    raise SystemExit(f"the stand-in did not start at {url}")


async def idle_watchers(count: int, samples: int = 30) -> str:
    """Delivery latency with ``count`` idle watchers (a fleet name each: a process that
    serves several bots) on one Redis client of redis-py's default pool: past its
    quarter for blocking reads, a worker reads without blocking every half second."""
    from gptunnel_async.testing import FakeGPTunnel

    with redis_server() as redis_port:
        redis = Redis(host="127.0.0.1", port=redis_port, socket_timeout=5)
        for _ in range(100):
            with contextlib.suppress(Exception):
                await redis.ping()
                break
            await asyncio.sleep(0.05)
        arrived: dict[str, float] = {}

        def handler(delivery: Delivery) -> None:
            arrived[delivery.task_id] = time.perf_counter()

        async with FakeGPTunnel() as fake, fake.client() as client:
            watchers = [
                Watcher(client, RedisStore(redis, name=f"bot{n}"), handler=handler)
                for n in range(count)
            ]
            for watcher in watchers:
                await watcher.__aenter__()
            await asyncio.sleep(1.5)  # every delivery loop idle in its read
            latencies = []
            for _ in range(samples):
                task_id = fake.script_task(steps=[("done", 100)])
                started = time.perf_counter()
                await random.choice(watchers).watch(task_id)
                while task_id not in arrived:  # noqa: ASYNC110 (a benchmark's probe)
                    await asyncio.sleep(0.002)
                latencies.append(arrived[task_id] - started)
                await asyncio.sleep(random.uniform(0, 0.3))
            for watcher in watchers:
                await watcher.close(grace=0)
        await redis.aclose()
    latencies.sort()
    median, p90 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.9)]
    return (
        f"idle_watchers count={count} median_ms={median * 1000:.0f} "
        f"p90_ms={p90 * 1000:.0f} max_ms={latencies[-1] * 1000:.0f}"
    )


async def bench(quick: bool, only_big: bool = False) -> None:
    api_port = free_port()
    stand_in = spawn("--serve", str(api_port))
    try:
        with redis_server() as redis_port:
            redis = Redis(host="127.0.0.1", port=redis_port)
            for _ in range(100):
                try:
                    await redis.ping()
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            await redis.aclose()
            api = f"http://127.0.0.1:{api_port}/v1"
            await wait_for(api.replace("/v1", "/_stats"))
            runner = Bench(api, redis_port, quick)
            if only_big:
                for line in await runner.big_fleet():
                    print(line, flush=True)
                return
            print(await runner.budget(4, 20), flush=True)
            print(await runner.budget(8, 20), flush=True)
            print(await runner.rate_limited("inprocess"), flush=True)
            print(await runner.rate_limited("redis"), flush=True)
            print(await runner.overhead(), flush=True)
            print(await runner.crash(), flush=True)
            if not quick:
                for line in await runner.big_fleet():
                    print(line, flush=True)
    finally:
        stand_in.terminate()
        stand_in.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the six lines, in under 3 min")
    parser.add_argument("--big-fleet", action="store_true", help="only the big-fleet figures")
    parser.add_argument(
        "--idle-watchers",
        type=int,
        nargs="+",
        metavar="N",
        help="only the delivery latency with N idle watchers on one Redis client",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--read-loops", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fleet-worker", action="store_true", help=argparse.SUPPRESS)
    for option in ("--api", "--name", "--budget"):
        parser.add_argument(option, help=argparse.SUPPRESS)
    for option in ("--redis-port", "--loops", "--hang-after"):
        parser.add_argument(option, type=int, default=0, help=argparse.SUPPRESS)
    for option in ("--rate", "--seconds"):
        parser.add_argument(option, type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    elif args.read_loops:
        asyncio.run(read_loops(args))
    elif args.fleet_worker:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(fleet_worker(args))
    elif args.idle_watchers:
        for count in args.idle_watchers:
            print(asyncio.run(idle_watchers(count)), flush=True)
    else:
        asyncio.run(bench(args.quick, args.big_fleet))


if __name__ == "__main__":
    main()
