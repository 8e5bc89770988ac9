"""Reads for an instruction count: run under callgrind, which no machine load affects.

    valgrind --tool=callgrind python benchmarks/instructions.py sdk 1200
    valgrind --tool=callgrind python benchmarks/instructions.py sdk 200

makes that many ``client.get_result("task-1")`` calls (``bare``: aiohttp GETs with
``params=`` and ``json()``) from 10 concurrent loops against ``benchmarks/server.py``,
which runs in a child process and is not counted. The difference between the two
counts over 1,000 is the instructions of one read, without the start-up.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
from run import API_KEY, local_server, sdk_client


async def reads(origin: str, kind: str, count: int) -> None:
    url = f"{origin}/v1/faceswap/result"
    headers = {"Authorization": API_KEY, "Accept": "application/json"}
    async with aiohttp.ClientSession() as session, sdk_client(origin) as client:

        async def bare() -> Any:
            async with session.get(url, params={"taskId": "task-1"}, headers=headers) as answer:
                answer.raise_for_status()
                return await answer.json()

        async def sdk() -> Any:
            return await client.get_result("task-1")

        read = sdk if kind == "sdk" else bare

        async def loop(times: int) -> None:
            for _ in range(times):
                await read()

        await asyncio.gather(*(loop(count // 10) for _ in range(10)))


def main() -> None:
    kind, count = sys.argv[1], int(sys.argv[2])
    with local_server() as origin:
        asyncio.run(reads(origin, kind, count))


if __name__ == "__main__":
    main()
