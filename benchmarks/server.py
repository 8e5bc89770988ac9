"""The benchmark's stand-in for GPTunnel: a minimal HTTP/1.1 server on 127.0.0.1.

It is a bare ``asyncio.Protocol`` with canned answers rather than an aiohttp app, so
the server costs far less CPU than the client under test and throughput measures the
client. It prints its port on stdout, and stops when its parent closes stdin or after
``--lifetime`` seconds, whichever comes first.

Task ids choose the behaviour of ``GET /v1/faceswap/result?taskId=ID``:

- ``timed-<seconds>-<shape>-<n>``: a task that starts on its first read, is ``running``
  with ``percent`` moving as ``shapes.SHAPES[shape]`` says (``linear``: ``queued`` at
  0 % for the first 5 % of its duration, then rising steadily; ``stall``; ``early99``),
  then ``done`` once ``seconds`` have passed. Reads and the ``done`` instant
  (``time.monotonic()``, the same clock in every process on Linux) are recorded.
- anything else: ``running`` at 42 %, the same documented task object every time.

``GET /_bench/stats`` returns ``{task_id: [reads, done_at]}`` for the timed tasks, and
``GET /_bench/served`` the number of task reads answered so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shapes import QUEUED_FRACTION, SHAPES


def task_object(task_id: str, status: str, percent: int) -> dict[str, Any]:
    """A task object as the API documents it."""
    done = status == "done"
    return {
        "id": task_id,
        "parentId": None,
        "object": "task",
        "type": "@FaceSwap",
        "percent": percent,
        "status": status,
        "result": f"https://storage.example/{task_id}_faceswap_result.png" if done else None,
        "error": None,
        "usage": {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "prompt_cost": 0,
            "completion_cost": 0,
            "total_cost": 0,
        },
    }


class TimedTasks:
    """Tasks whose state follows the clock from their first read."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.reads: dict[str, int] = {}
        self.served = 0
        """Task reads answered, timed or not."""

    def read(self, task_id: str) -> dict[str, Any]:
        now = time.monotonic()
        started = self.started.setdefault(task_id, now)
        self.reads[task_id] = self.reads.get(task_id, 0) + 1
        _, seconds, shape, _ = task_id.split("-")
        duration = float(seconds)
        elapsed = now - started
        if elapsed >= duration:
            return task_object(task_id, "done", 100)
        percent = SHAPES[shape](elapsed / duration)
        queued = shape == "linear" and elapsed < QUEUED_FRACTION * duration
        return task_object(task_id, "queued" if queued else "running", percent)

    def stats(self) -> dict[str, list[float]]:
        return {
            task_id: [self.reads[task_id], started + float(task_id.split("-")[1])]
            for task_id, started in self.started.items()
        }


def http_response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


class Handler(asyncio.Protocol):
    """One keep-alive connection: GET requests only, answered in order."""

    def __init__(self, tasks: TimedTasks, canned: dict[str, bytes]) -> None:
        self.tasks = tasks
        self.canned = canned
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            target = head.split(b" ", 2)[1].decode("ascii")
            self.transport.write(self.answer(target))

    def answer(self, target: str) -> bytes:
        parts = urlsplit(target)
        if parts.path == "/_bench/stats":
            return http_response("200 OK", json.dumps(self.tasks.stats()).encode())
        if parts.path == "/_bench/served":
            return http_response("200 OK", str(self.tasks.served).encode())
        self.tasks.served += 1
        task_id = parse_qs(parts.query).get("taskId", [""])[0]
        if task_id.startswith("timed-"):
            return http_response("200 OK", json.dumps(self.tasks.read(task_id)).encode())
        body = self.canned.get(task_id)
        if body is None:
            body = self.canned[task_id] = http_response(
                "200 OK", json.dumps(task_object(task_id, "running", 42)).encode()
            )
        return body


async def serve(lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    tasks, canned = TimedTasks(), dict[str, bytes]()
    server = await loop.create_server(lambda: Handler(tasks, canned), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stdin_closed = loop.create_future()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_parent() -> None:
        await reader.read()  # EOF: the parent closed our stdin or died
        stdin_closed.set_result(None)

    watcher = asyncio.create_task(watch_parent())
    try:
        await asyncio.wait_for(stdin_closed, lifetime)
    except TimeoutError:
        pass
    finally:
        watcher.cancel()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifetime", type=float, default=900.0, help="seconds before exiting")
    args = parser.parse_args()
    asyncio.run(serve(args.lifetime))


if __name__ == "__main__":
    main()
