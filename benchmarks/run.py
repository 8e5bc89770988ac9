"""Measure gptunnel-async against bare aiohttp and a hand-written polling loop.

Run from the repository root (the figures go to docs/performance.md)::

    python benchmarks/run.py            # full: about six minutes
    python benchmarks/run.py --quick    # about a minute, smaller and time-scaled

(a) ``get_result`` throughput as a ratio to a bare aiohttp GET + ``json()`` loop at the
same concurrency, rounds alternating in one run, reading one task id and then 1,000 in
rotation; (b) RSS growth per concurrent waiter
at 10,000 waits on one client; (c) requests and lateness (server turning ``done`` to
the SDK returning) for tasks of three shapes (``shapes.py``) lasting 5 s, 30 s, 120 s
and 600 s, per polling strategy: exactly on a simulated clock with the SDK's own wait
core, then all at once on loopback, time-scaled (0.1 by default); (d)
``import gptunnel_async`` time as a ratio to ``import aiohttp``.

The server runs in its own process on 127.0.0.1 (``benchmarks/server.py``) and stops
when this script ends. Linux only: memory is read from ``/proc/self/statm``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from shapes import SHAPES

from gptunnel_async import GPTunnelClient, PollPolicy, ProgressEvent, Task
from gptunnel_async._sansio.waiting import ReadAt, WaitState

API_KEY = "bench-key"
SERVER = Path(__file__).with_name("server.py")


@contextmanager
def local_server() -> Iterator[str]:
    """Start ``server.py`` in a child process; yield its base URL; stop it on exit."""
    child = subprocess.Popen(
        [sys.executable, str(SERVER), "--lifetime", "900"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@asynccontextmanager
async def sdk_client(origin: str, **options: Any) -> AsyncIterator[GPTunnelClient]:
    async with GPTunnelClient(api_key=API_KEY, base_url=f"{origin}/v1", **options) as client:
        yield client


def rss_bytes() -> int:
    """The process's resident set size, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


# -- (a) throughput -----------------------------------------------------------------


async def run_concurrently(
    call: Callable[[], Awaitable[Any]], total: int, workers: int
) -> tuple[float, float]:
    """Make ``total`` calls from ``workers`` concurrent loops.

    Returns calls per second of wall time, and this process's CPU microseconds per call
    (steadier than wall time when other programs share the machine).
    """

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    shares = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    gc.collect()
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(share) for share in shares))
    cpu = (time.process_time() - cpu_started) / total * 1e6
    return total / (time.perf_counter() - started), cpu


async def bench_throughput(
    origin: str, *, total: int, pairs: int, workers: int, task_ids: int
) -> None:
    """(a): read ``task_ids`` task ids in rotation (one, as a wait does, or many, as a
    service reading many users' tasks does), both ways."""
    url = f"{origin}/v1/faceswap/result"
    headers = {"Authorization": API_KEY, "Accept": "application/json"}
    ids = itertools.cycle([f"task-{n}" for n in range(1, task_ids + 1)])
    async with aiohttp.ClientSession() as session, sdk_client(origin) as client:

        async def bare() -> Any:
            params = {"taskId": next(ids)}
            async with session.get(url, params=params, headers=headers) as response:
                response.raise_for_status()
                return await response.json()

        async def sdk() -> Any:
            return await client.get_result(next(ids))

        bare_runs, sdk_runs = await abba_rounds(
            bare, sdk, total=total, pairs=pairs, workers=workers
        )
    which = "one task id" if task_ids == 1 else f"{task_ids} task ids in rotation"
    print(f"\n(a) get_result throughput, {which}: {workers} concurrent loops, {pairs} pairs")
    print_throughput(bare_runs, sdk_runs, total=total, floor=0.88 if task_ids == 1 else 0.85)


async def abba_rounds(
    bare: Callable[[], Awaitable[Any]],
    sdk: Callable[[], Awaitable[Any]],
    *,
    total: int,
    pairs: int,
    workers: int,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """After a warm-up of each, ``pairs`` pairs of rounds of ``total`` calls each way in
    ABBA order, so a drift in machine speed cancels out; returns the bare rounds and the
    sdk rounds, each (calls per second, CPU microseconds per call)."""
    await run_concurrently(bare, total, workers)  # warm both pools and caches
    await run_concurrently(sdk, total, workers)
    bare_runs, sdk_runs = [], []
    for pair in range(pairs):
        first, second = (bare, sdk) if pair % 2 == 0 else (sdk, bare)
        one = await run_concurrently(first, total, workers)
        two = await run_concurrently(second, total, workers)
        bare_runs.append(one if first is bare else two)
        sdk_runs.append(two if first is bare else one)
    return bare_runs, sdk_runs


def print_throughput(
    bare_runs: list[tuple[float, float]],
    sdk_runs: list[tuple[float, float]],
    *,
    total: int,
    floor: float,
) -> None:
    """(a)'s figures from rounds in ABBA order: medians each way, and the ratios."""
    rate_ratios = [s[0] / b[0] for b, s in zip(bare_runs, sdk_runs, strict=True)]
    cpu_ratios = [b[1] / s[1] for b, s in zip(bare_runs, sdk_runs, strict=True)]
    print(f"    of rounds of {total} calls, bare and sdk alternating (ABBA)")
    for name, runs in (("bare aiohttp GET + json()", bare_runs), ("client.get_result()", sdk_runs)):
        rate, cpu = (statistics.median(column) for column in zip(*runs, strict=True))
        print(f"    {name:<26} median {rate:6.0f} req/s, {cpu:4.0f} us CPU per call")
    print(
        f"    sdk/bare per pair, bare first: {statistics.median(rate_ratios[0::2]):.2f},"
        f" sdk first: {statistics.median(rate_ratios[1::2]):.2f} (the second round of a pair"
        " runs in the first's wake)"
    )
    print(f"    ratio sdk/bare req/s: {spread(both_orders(rate_ratios))}   (floor >= {floor:.2f})")
    print(f"    ratio of CPU per call (bare/sdk): {spread(both_orders(cpu_ratios))}")


def both_orders(ratios: list[float]) -> list[float]:
    """Each bare-first ratio with the sdk-first one after it, as their geometric mean:
    whatever the order of a pair does to its second round cancels out."""
    return [math.sqrt(a * b) for a, b in zip(ratios[0::2], ratios[1::2], strict=False)]


def spread(values: list[float]) -> str:
    """Median and interquartile range, e.g. ``0.93 (IQR 0.88-0.97)``."""
    low, median, high = statistics.quantiles(values, n=4)
    return f"{median:.2f} (IQR {low:.2f}-{high:.2f})"


# -- (b) memory per waiter ----------------------------------------------------------


async def hold_waits(client: GPTunnelClient, prefix: str, count: int) -> tuple[float, float]:
    """Start ``count`` waits that sleep after their first read.

    Returns the growth per wait of RSS and of the bytes Python has allocated (the
    latter only while ``tracemalloc`` traces). Each wait has the default ten-minute
    deadline, so it holds its real timers; its reads are ten minutes apart, so all are
    asleep when memory is read.
    """
    asleep = PollPolicy(initial=600.0, max_interval=600.0, timeout=600.0)
    first_reads = 0
    all_read = asyncio.Event()

    def count_first_reads(_: ProgressEvent[Any]) -> None:
        nonlocal first_reads
        first_reads += 1
        if first_reads == count:
            all_read.set()

    gc.collect()
    rss_before, traced_before = rss_bytes(), tracemalloc.get_traced_memory()[0]
    pending = [
        asyncio.create_task(
            client.wait_for_result(f"{prefix}-{i}", policy=asleep, on_progress=count_first_reads)
        )
        for i in range(count)
    ]
    await all_read.wait()
    gc.collect()
    rss_growth = rss_bytes() - rss_before
    traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
    for waiting in pending:
        waiting.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return rss_growth / count, traced_growth / count


async def bench_memory(origin: str, *, waits: int) -> None:
    async with sdk_client(origin) as client:
        await asyncio.gather(*(client.get_result(f"warm-{i}") for i in range(200)))
        rss, _ = await hold_waits(client, "rss", waits)
        tracemalloc.start()
        _, live = await hold_waits(client, "traced", waits)
        tracemalloc.stop()
    print(f"\n(b) memory: {waits} concurrent waits on one client, all asleep after a first read")
    print(f"    RSS growth per waiter:     {rss / 1024:.2f} KiB   (target <= 4 KB)")
    print(f"    live Python bytes per waiter (tracemalloc, a second burst): {live / 1024:.2f} KiB")
    print("    RSS also keeps what the allocator handed out for 10,000 first reads queued at once.")


class GCTimer:
    """CPU seconds spent in the cyclic garbage collector, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


async def served(session: aiohttp.ClientSession, origin: str) -> int:
    async with session.get(f"{origin}/_bench/served") as response:
        return int(await response.text())


async def hand_loop(
    session: aiohttp.ClientSession, url: str, task_id: str, pauses: Iterator[float]
) -> None:
    """What one writes by hand: ``while: get; sleep``, at the given pauses."""
    headers = {"Authorization": API_KEY, "Accept": "application/json"}
    for pause in pauses:
        async with session.get(url, params={"taskId": task_id}, headers=headers) as response:
            task = await response.json()
        if task["status"] == "done":
            return
        await asyncio.sleep(pause)


async def cpu_per_read(
    origin: str, kind: str, *, waits: int, warmup: float, window: float
) -> tuple[float, float]:
    """Run ``waits`` concurrent waits (``kind``: "sdk" or "bare" loops) on tasks that
    never finish, at the default policy's pacing; return this process's CPU seconds per
    read over ``window`` seconds after ``warmup``, and the share of it spent in GC."""
    policy = PollPolicy(timeout=None)
    url = f"{origin}/v1/faceswap/result"
    timer = GCTimer()
    async with (
        aiohttp.ClientSession() as probe,
        aiohttp.ClientSession() as session,
        sdk_client(origin) as client,
    ):
        jobs: list[Coroutine[Any, Any, Any]]
        if kind == "sdk":
            jobs = [client.wait_for_result(f"cpu-{i}", policy=policy) for i in range(waits)]
        else:
            rng = random.Random(1)
            jobs = [
                hand_loop(session, url, f"cpu-{i}", policy.intervals(rng)) for i in range(waits)
            ]
        running = [asyncio.create_task(job) for job in jobs]
        await asyncio.sleep(warmup)
        gc.callbacks.append(timer)
        reads, cpu = await served(probe, origin), time.process_time()
        await asyncio.sleep(window)
        cpu, reads = time.process_time() - cpu, await served(probe, origin) - reads
        gc.callbacks.remove(timer)
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return cpu / reads, timer.seconds / cpu


async def bench_cpu_per_read(
    origin: str, *, waits: int, rounds: int, warmup: float, window: float
) -> None:
    """(b), CPU: the SDK's waits against hand-written loops at the same pacing, ABBA."""
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "sdk": []}
    for round_ in range(rounds):
        order = ("bare", "sdk") if round_ % 2 == 0 else ("sdk", "bare")
        for kind in order:
            runs[kind].append(
                await cpu_per_read(origin, kind, waits=waits, warmup=warmup, window=window)
            )
    ratios = [s[0] / b[0] for b, s in zip(runs["bare"], runs["sdk"], strict=True)]
    print(f"\n(b) CPU per read: {waits} concurrent waits at the default policy's pacing, on")
    print(f"    tasks that never finish; {window:g} s measured after {warmup:g} s, {rounds} rounds")
    for name, kind in (("hand-written get; sleep", "bare"), ("client.wait_for_result()", "sdk")):
        cpu, in_gc = (statistics.median(column) for column in zip(*runs[kind], strict=True))
        print(f"    {name:<26} median {cpu * 1e6:4.0f} us CPU per read, {in_gc:.0%} of it in GC")
    print(f"    ratio sdk/bare CPU per read: {spread(ratios)}   (goal <= 1.2)")


# -- (c) requests and lateness --------------------------------------------------------

DURATIONS = [5.0, 30.0, 120.0, 600.0]


async def fixed_loop(session: aiohttp.ClientSession, url: str, task_id: str, period: float) -> Any:
    """What one writes by hand: read, and if not finished, sleep a fixed period."""
    while True:
        async with session.get(url, params={"taskId": task_id}) as response:
            task = await response.json()
        if task["status"] == "done":
            return task
        await asyncio.sleep(period)


def strategies(scale: float) -> dict[str, PollPolicy | float]:
    """Each strategy of (c): a poll policy for the SDK, or the hand-written loop's period."""
    default = PollPolicy()
    scaled = PollPolicy(
        initial=default.initial * scale, max_interval=default.max_interval * scale, timeout=None
    )
    return {
        "fixed 1 s loop": 1.0 * scale,
        "sdk exponential": attrs.evolve(scaled, strategy="exponential"),
        "sdk predictive (default)": scaled,
    }


def simulate(how: PollPolicy | float, shape: str, duration: float, seed: int) -> tuple[int, float]:
    """One wait on a simulated clock: (reads, lateness). The SDK's waits run its own wait
    core, fed each read's answer at the time the core asked for it; the fixed loop reads
    at 0, 1, 2 ... s."""
    if not isinstance(how, PollPolicy):
        finished = math.ceil(duration / how)
        return finished + 1, finished * how - duration
    state, now, reads = WaitState.start("sim", how, 0.0, random.Random(seed)), 0.0, 0
    while True:
        reads += 1
        fraction = now / duration
        if fraction >= 1:
            return reads, now - duration
        task = Task(id="sim", status="running", percent=SHAPES[shape](fraction))
        state, decision = state.observe(task, now)
        assert isinstance(decision, ReadAt)
        now = decision.at


def print_cells(title: str, cells: dict[tuple[str, float, str], list[tuple[float, float]]]) -> None:
    """One line per (shape, duration, strategy): median requests, lateness figures."""
    print(title)
    columns = "requests (median)  lateness median / p90 / max"
    print(f"    shape    task   strategy                  {columns}")
    fixed: dict[tuple[str, float], float] = {}
    for (shape, duration, name), results in cells.items():
        reads = statistics.median(r for r, _ in results)
        late = sorted(late for _, late in results)
        p90 = late[min(len(late) - 1, int(0.9 * len(late)))]
        if name.startswith("fixed"):
            fixed[shape, duration] = reads
        share = f" ({reads / fixed[shape, duration]:4.0%})" if (shape, duration) in fixed else ""
        print(
            f"    {shape:<8} {duration:>4g} s  {name:<25} {reads:>8g}{share:<7}"
            f"    {statistics.median(late):6.2f} / {p90:6.2f} / {late[-1]:6.2f} s"
        )


def bench_lateness_simulated(*, per_cell: int) -> None:
    """(c) on a simulated clock: exact, and 600 s tasks take no time."""
    rng = random.Random(6)
    cells: dict[tuple[str, float, str], list[tuple[float, float]]] = {}
    for shape in SHAPES:
        for duration in DURATIONS:
            tasks = [
                (duration * rng.uniform(0.9, 1.1), rng.getrandbits(64)) for _ in range(per_cell)
            ]
            for name, how in strategies(1.0).items():
                cells[shape, duration, name] = [simulate(how, shape, d, seed) for d, seed in tasks]
    print_cells(
        f"\n(c) requests and lateness on a simulated clock, {per_cell} tasks per cell lasting"
        " 0.9-1.1 x the nominal duration (the same tasks for each strategy)",
        cells,
    )


async def bench_lateness(
    origin: str, *, durations: list[float], per_cell: int, scale: float
) -> None:
    """(c) on loopback in real time: every wait at once, against ``server.py``."""
    url = f"{origin}/v1/faceswap/result"
    returned: dict[str, float] = {}

    async def finish(task_id: str, wait: Awaitable[Any]) -> None:
        await wait
        returned[task_id] = time.monotonic()

    plan = strategies(scale)
    rng = random.Random(6)
    cells: dict[tuple[str, float, str], list[str]] = {}
    async with aiohttp.ClientSession() as session, sdk_client(origin) as client:
        waits = []
        for shape in SHAPES:
            for duration in durations:
                for index, (name, how) in enumerate(plan.items()):
                    for n in range(per_cell):
                        seconds = duration * scale * rng.uniform(0.9, 1.1)
                        task_id = f"timed-{seconds:.3f}-{shape}-s{index}n{n}"
                        cells.setdefault((shape, duration, name), []).append(task_id)
                        if isinstance(how, PollPolicy):
                            wait: Awaitable[Any] = client.wait_for_result(task_id, policy=how)
                        else:
                            wait = fixed_loop(session, url, task_id, how)
                        waits.append(finish(task_id, wait))
        started = time.perf_counter()
        await asyncio.gather(*waits)
        took = time.perf_counter() - started
        async with session.get(f"{origin}/_bench/stats") as response:
            stats: dict[str, list[float]] = await response.json()

    scaled = f", time scale {scale:g} (durations and intervals)" if scale != 1 else ""
    print_cells(
        f"\n(c) requests and lateness on loopback, {per_cell} tasks per cell lasting 0.9-1.1 x"
        f" the nominal duration, all at once{scaled}; {took:.0f} s (lateness in scaled seconds)",
        {
            cell: [(stats[i][0], returned[i] - stats[i][1]) for i in ids]
            for cell, ids in cells.items()
        },
    )


# -- (d) import time ------------------------------------------------------------------


def import_seconds(module: str, env: dict[str, str]) -> float:
    code = (
        "import time; started = time.perf_counter(); "
        f"import {module}; print(time.perf_counter() - started)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return float(out.stdout)


def bench_import(*, runs: int) -> None:
    # Both imports load compiled bytecode, as an installed package does (pip compiles it
    # at install): with PYTHONDONTWRITEBYTECODE set, an editable install would compile
    # the SDK's source on every import while aiohttp's bytecode was compiled long ago.
    # The bytecode goes to a temporary folder, filled by one import of each first.
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        import_seconds("aiohttp", env)
        import_seconds("gptunnel_async", env)
        aiohttp_times, sdk_times = [], []
        for _ in range(runs):
            aiohttp_times.append(import_seconds("aiohttp", env))
            sdk_times.append(import_seconds("gptunnel_async", env))
    base, ours = statistics.median(aiohttp_times), statistics.median(sdk_times)
    print(
        f"\n(d) import time, median of {runs} fresh interpreters each, alternating, from bytecode"
    )
    print(f"    import aiohttp:        {base * 1000:6.1f} ms")
    print(f"    import gptunnel_async: {ours * 1000:6.1f} ms")
    print(f"    ratio: {ours / base:.2f}   (floor <= 1.3)")


# -- main -----------------------------------------------------------------------------


@attrs.frozen
class Sizes:
    """How long each part runs: ``QUICK`` (about a minute) or ``FULL``."""

    pairs_one_id: int
    pairs_many_ids: int
    cpu_rounds: int
    cpu_warmup: float
    cpu_window: float
    simulated_per_cell: int
    loopback_per_cell: int
    time_scale: float
    import_runs: int


FULL = Sizes(40, 16, 4, 15.0, 20.0, 500, 10, 0.1, 15)
QUICK = Sizes(6, 4, 2, 5.0, 5.0, 100, 4, 0.05, 5)


async def run_benchmarks(args: argparse.Namespace, origin: str) -> None:
    sizes = QUICK if args.quick else FULL
    if "a" in args.only:
        await bench_throughput(origin, total=2000, pairs=sizes.pairs_one_id, workers=50, task_ids=1)
        # Many ids, as a service reading many users' tasks does.
        await bench_throughput(
            origin, total=2000, pairs=sizes.pairs_many_ids, workers=50, task_ids=1000
        )
    if "b" in args.only:
        await bench_memory(origin, waits=10000)
        await bench_cpu_per_read(
            origin,
            waits=10000,
            rounds=sizes.cpu_rounds,
            warmup=sizes.cpu_warmup,
            window=sizes.cpu_window,
        )
    if "c" in args.only:
        bench_lateness_simulated(per_cell=sizes.simulated_per_cell)
        scale = sizes.time_scale if args.time_scale is None else args.time_scale
        await bench_lateness(
            origin, durations=DURATIONS, per_cell=sizes.loopback_per_cell, scale=scale
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, time scale 0.1")
    parser.add_argument("--only", default="abcd", help="which parts to run, e.g. 'ad'")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="multiply (c)'s loopback task durations and poll intervals by this"
        " (default 0.1, quick 0.05)",
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} CPUs")
    if set(args.only) & set("abc"):
        with local_server() as origin:
            asyncio.run(run_benchmarks(args, origin))
    if "d" in args.only:
        bench_import(runs=(QUICK if args.quick else FULL).import_runs)


if __name__ == "__main__":
    main()
