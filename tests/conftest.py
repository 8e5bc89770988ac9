"""Shared fixtures: a scripted GPTunnel-like server on loopback, and clients pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core
from hypothesis import HealthCheck, settings
from yarl import URL

from gptunnel_async import GPTunnelClient, PollPolicy, _timing
from gptunnel_async.testing import FakeGPTunnel, instant_waits

from .leaks import no_unclosed_aiohttp as no_unclosed_aiohttp
from .redis_server import redis as redis
from .redis_server import redis_resp3 as redis_resp3
from .redis_server import redis_server as redis_server
from .redis_server import redis_server_proc as redis_server_proc
from .redis_server import redis_url as redis_url

# Property tests check what is decoded, not how fast: on a loaded 2-core machine the
# per-example deadline and the "generation is slow" health check only add flakes.
settings.register_profile("gptunnel", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gptunnel")

API_KEY = "test-key-5f1e"


DEFAULT_ID = "task-1"
"""The id of scripted task objects: the scripted server answers a read with the id asked
for instead (a real server answers about the task it was asked about)."""


def task_json(status: str = "running", percent: float | None = 0, **extra: Any) -> dict[str, Any]:
    """A task object as the API documents it."""
    body: dict[str, Any] = {
        "id": DEFAULT_ID,
        "parentId": None,
        "object": "task",
        "type": "@FaceSwap",
        "percent": percent,
        "status": status,
        "result": "https://storage.example/result.png" if status == "done" else None,
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
    body.update(extra)
    return body


def media_json(status: str = "processing", **extra: Any) -> dict[str, Any]:
    """A ``/media/result`` answer as the API documents it (``code`` 0: no error)."""
    done = status in ("done", "succeeded", "success", "completed")
    body: dict[str, Any] = {
        "code": 0,
        "id": DEFAULT_ID,
        "model": "flux-pro",
        "status": status,
        "url": "https://storage.example/media.png" if done else None,
        "cost": 0.5 if done else None,
        "message": None,
    }
    body.update(extra)
    return body


Reply = Callable[[web.Request], Any]


@dataclass
class ScriptedAPI:
    """A loopback server whose answers are scripted one request at a time.

    Each queued reply is a JSON-able dict (200), a ``(status, body, headers)`` tuple,
    ``"reset"`` (drop the connection), or an async callable taking the request. When
    the queue runs dry, the last reply repeats.
    """

    replies: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""
    origin: str = ""
    in_flight: int = 0

    def script(self, *replies: Any) -> None:
        self.replies.extend(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        try:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "headers": dict(request.headers),
                    "body": await request.read(),
                }
            )
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if reply == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            if callable(reply):
                result: web.StreamResponse = await reply(request)
                return result
            asked = request.query.get("taskId", request.query.get("task_id"))
            if isinstance(reply, dict) and reply.get("id") == DEFAULT_ID and asked is not None:
                reply = {**reply, "id": asked}  # an answer about the task asked for
            if isinstance(reply, tuple):
                status, body, headers = reply
                text = body if isinstance(body, str) else json.dumps(body)
                return web.Response(status=status, text=text, headers=headers)
            return web.json_response(reply)
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def loopback_server(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
    host: str = "127.0.0.1",
    port: int | None = None,
) -> AsyncIterator[TestServer]:
    """A real aiohttp server on loopback (``host``: any address of 127.0.0.0/8; ``port``:
    a free one by default) that sends every request, any method, to ``handle``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with TestServer(app, host=host, port=port) as server:
        yield server


@pytest.fixture
async def api() -> AsyncIterator[ScriptedAPI]:
    scripted = ScriptedAPI()
    async with loopback_server(scripted.handle) as server:
        scripted.base_url = str(server.make_url("/v1"))
        scripted.origin = str(server.make_url("/"))
        yield scripted


FAST = PollPolicy(initial=0.01, multiplier=2.0, max_interval=0.04, jitter=0.0, timeout=5.0)
"""Real but tiny poll intervals, for tests about timing on a real server."""

HANG_GUARD: Final = 30.0
"""Seconds after which a test that should end far sooner has hung: a guard against a
hang, never a measure of speed (a loaded machine may take its time)."""

SESSION_PROXY: Final = "proxy" in inspect.signature(aiohttp.ClientSession).parameters
"""Whether this aiohttp takes a session-wide ``proxy=`` (3.10 does not; ``trust_env`` is
its way to one)."""

PROXY_WAYS: Final = [
    pytest.param(
        "proxy=", marks=pytest.mark.skipif(not SESSION_PROXY, reason="no session proxy= here")
    ),
    "trust_env",
]
"""How a lent session gets a proxy, for ``parametrize("way", PROXY_WAYS)``: its own
``proxy=``, or ``$HTTP_PROXY`` read with ``trust_env=True`` (every aiohttp version)."""


@pytest.fixture
async def client(api: ScriptedAPI) -> AsyncIterator[GPTunnelClient]:
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, timeout=2.0, poll_policy=FAST
    ) as tunnel:
        yield tunnel


@pytest.fixture
async def patient(api: ScriptedAPI) -> AsyncIterator[GPTunnelClient]:
    """A client whose requests never time out by themselves (an hour), for tests where
    only a wait's deadline may end a stalled read."""
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, timeout=3600.0, poll_policy=FAST
    ) as tunnel:
        yield tunnel


@pytest.fixture
def instant() -> Iterator[None]:
    """Make retry backoffs and poll intervals take no time."""
    with instant_waits():
        yield


@pytest.fixture
async def fake() -> AsyncIterator[FakeGPTunnel]:
    """The emulator, on the test's event loop."""
    async with FakeGPTunnel() as running:
        yield running


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every pause the SDK asks for, returned at once instead of slept."""
    asked: list[float] = []

    async def record(seconds: float) -> None:
        asked.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(_timing, "sleep", record)
    return asked


class _CompatClientResponse(aiohttp.ClientResponse):
    """aiohttp 3.14 made ``stream_writer`` a required argument that aioresponses 0.7.9
    does not pass yet; a mocked response has already been "sent", so 0 bytes is right.
    Earlier aiohttp versions take no such argument, and get none."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if _TAKES_STREAM_WRITER:
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


_TAKES_STREAM_WRITER: Final = (
    "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters
)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """aioresponses, for checking the shape of requests without a server."""
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatClientResponse)
    with aioresponses() as mock:
        yield mock


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test, nor the commands it starts, takes a key or base URL from the machine."""
    monkeypatch.delenv("GPTUNNEL_API_KEY", raising=False)
    monkeypatch.delenv("GPTUNNEL_BASE_URL", raising=False)


async def raw_call(
    fake: FakeGPTunnel, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """One raw request to the emulator with the right key: (status, JSON body)."""
    headers = {"Authorization": fake.api_key}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{fake.base_url}/{path}", headers=headers, **kwargs) as response,
    ):
        body: dict[str, Any] = await response.json(content_type=None)
        return response.status, body


async def announced_only(url: str, length: int, sent: bytes = b"", headers: str = "") -> bytes:
    """POST to ``url`` headers that announce a body of ``length`` bytes (and the header
    line ``headers``, if any), and send only ``sent`` of it (none by default): the head
    of the server's answer (status line and headers), within 10 s."""
    target = URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    extra = f"{headers}\r\n" if headers else ""
    writer.write(
        f"POST {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
        + sent
    )
    try:
        async with asyncio.timeout(10):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def hundredfold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SDK pause takes a hundredth of its time: real interleaving, a hundred times faster."""

    async def scaled(seconds: float) -> None:
        await asyncio.sleep(seconds / 100)

    monkeypatch.setattr(_timing, "sleep", scaled)


_SERVER_SIDE = ("web_protocol", "_accept_connection")
"""Where the loopback servers' own tasks run: accepting connections and handling requests."""


def client_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still alive other than the current one and the loopback servers' own."""
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and not any(s in repr(task) for s in _SERVER_SIDE)
    ]


def connections_in_use(client: GPTunnelClient) -> int:
    """How many connections the client's session holds for a request right now."""
    session = client._session
    return 0 if session is None or session.connector is None else len(session.connector._acquired)
