"""The worker program docs/fleet.md gives to copy runs as pasted: two of its processes
share one key on a real ``redis-server``, a wait registered by its ``register`` is
handled by exactly one of them, and each closes its watcher on SIGTERM and exits 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from redis.asyncio import Redis

from gptunnel_async.testing import FakeGPTunnel

ROOT = Path(__file__).resolve().parent.parent


def worker_program() -> str:
    """The one Python block of docs/fleet.md that defines ``register``."""
    page = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    (program,) = [block for block in blocks if "async def register(" in block]
    return program


async def first_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    return (await process.stdout.readline()).decode()


async def until_both_run(redis: Redis) -> None:
    """Until two other clients of Redis have read the stream of finished tasks: each
    worker makes one such blocking read at a time, from inside its ``async with``, so
    both have set their SIGTERM handlers by then."""
    while True:
        clients = await redis.client_list()
        if sum(client["cmd"] == "xreadgroup" for client in clients) >= 2:
            return
        await asyncio.sleep(0.05)


async def test_two_copies_of_the_docs_worker_handle_a_registered_wait_once(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "worker.py").write_text(worker_program(), encoding="utf-8")
    with FakeGPTunnel() as fake:
        fake.script_task(task_id="demo", steps=[("running", 50), ("done", 100)])
        env = {
            **os.environ,
            "GPTUNNEL_BASE_URL": fake.base_url,
            "GPTUNNEL_API_KEY": fake.api_key,
            "GPTUNNEL_REDIS_URL": redis_url,
        }
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "worker.py", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE
            )
            for _ in range(2)
        ]
        try:
            await asyncio.wait_for(until_both_run(redis), timeout=60)
            lines = [asyncio.create_task(first_line(worker)) for worker in workers]
            register = "import asyncio, worker; asyncio.run(worker.register('demo'))"
            registrant = await asyncio.create_subprocess_exec(
                sys.executable, "-c", register, cwd=tmp_path, env=env
            )
            assert await registrant.wait() == 0
            done, _ = await asyncio.wait(lines, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            assert [line.result() for line in done] == ["demo done {'chat_id': 42}\n"]
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            assert [await worker.wait() for worker in workers] == [0, 0]
            assert sorted(await asyncio.gather(*lines)) == ["", "demo done {'chat_id': 42}\n"]
        finally:
            for worker in workers:
                if worker.returncode is None:  # a failed assertion above: end it
                    worker.kill()
                    await worker.wait()
    assert await redis.xlen("gptunnel:{bot}:finished") == 0  # acknowledged
