"""Wait for a GPTunnel task with ``async for``, print its progress, and save the result.

    python -m examples.wait_and_save TASK_ID [--out result.png]
    python -m examples.wait_and_save --emulator   # no key: a face swap on the emulator

The key comes from ``GPTUNNEL_API_KEY``. With ``--emulator`` the script starts the
GPTunnel emulator that ships with the package, creates a face swap from two sample
images there, and waits for that instead: no key, no network, no cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from gptunnel_async import GPTunnelClient, GPTunnelError
from gptunnel_async.testing import sample_image

from .emulated import emulated_client


async def wait_and_save(client: GPTunnelClient, task_id: str, dest: Path) -> Path:
    """Print a line per progress event of ``task_id``, then save its result to ``dest``."""
    async for event in client.wait_for_result(task_id):
        print(f"{event.elapsed:5.1f}s  {event.status:<10} {event.percent:3d} %")
    # A wait that ends without raising ends with the done event.
    return await client.download_result(event.task, dest)


async def run(task_id: str | None, dest: Path) -> Path:
    """Wait for ``task_id`` on GPTunnel or, without one, for a new face swap on the emulator."""
    if task_id is not None:
        async with GPTunnelClient() as client:
            return await wait_and_save(client, task_id, dest)
    async with emulated_client(seconds=2.0) as client:
        task = await client.faceswap.create(sample_image("source.png"), sample_image("face.png"))
        print(f"created face swap {task.id} on the emulator")
        return await wait_and_save(client, task.id, dest)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, wait and save; return the exit status (1 when GPTunnel failed)."""
    parser = argparse.ArgumentParser(description="Wait for a GPTunnel task and save its result.")
    parser.add_argument("task_id", nargs="?", help="the task to wait for")
    parser.add_argument("--out", type=Path, default=Path("result.png"), help="file or folder")
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator")
    args = parser.parse_args(argv)
    if (args.task_id is None) != args.emulator:
        parser.error("give a TASK_ID, or --emulator")
    try:
        path = asyncio.run(run(args.task_id, args.out))
    except GPTunnelError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
