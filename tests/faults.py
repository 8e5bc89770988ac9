"""Faults a loopback server can answer with, one request at a time.

Each fault is a *reply*: an async function from the request to the answer. Queue them on
``ScriptedAPI`` (``api.script(faults.reset(), faults.answer(503), DONE)``) to script a
sequence, or serve one as a storage route. The server is a real aiohttp one, so the client
sees real resets, cut bodies and stalls, not mocks of them.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from aiohttp import web

__all__ = [
    "Reply",
    "answer",
    "garbage",
    "gzipped",
    "html",
    "not_http",
    "rate_limited",
    "raw",
    "reset",
    "stall",
    "stall_mid_body",
    "truncated",
]

Reply: TypeAlias = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTML_PAGE = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"


def answer(status: int, body: Any = "", headers: Mapping[str, str] | None = None) -> Reply:
    """An answer with any status; ``body`` is sent as is if text or bytes, else as JSON."""
    payload = body if isinstance(body, str | bytes) else json.dumps(body)

    async def reply(request: web.Request) -> web.StreamResponse:
        data = payload.encode() if isinstance(payload, str) else payload
        return web.Response(status=status, body=data, headers=headers)

    return reply


def rate_limited(retry_after: str) -> Reply:
    """429 with a ``Retry-After`` header holding whatever text is given."""
    return answer(429, {"error": {"message": "slow down"}}, {"Retry-After": retry_after})


def html(status: int = 200) -> Reply:
    """A proxy's HTML error page, under any status (200 included, as some proxies do)."""
    return answer(status, HTML_PAGE, {"Content-Type": "text/html"})


def garbage(status: int = 200) -> Reply:
    """Bytes that are neither JSON nor text."""
    return answer(status, b"\x00\xff\xfe{not json\x80", {"Content-Type": "application/json"})


def _raw(request: web.Request) -> asyncio.Transport:
    transport = request.transport
    assert transport is not None
    return transport


def reset() -> Reply:
    """Drop the connection without answering."""

    async def reply(request: web.Request) -> web.StreamResponse:
        _raw(request).abort()
        return web.Response()

    return reply


def raw(answer: bytes) -> Reply:
    """Answer with ``answer`` as it is (a status line, headers and a body the server's own
    writer would not send: odd header values, framing of the test's choosing), then
    close the connection."""

    async def reply(request: web.Request) -> web.StreamResponse:
        transport = _raw(request)
        transport.write(answer)
        transport.close()
        return web.Response()

    return reply


def not_http() -> Reply:
    """Answer with bytes that are not HTTP at all, then close."""

    async def reply(request: web.Request) -> web.StreamResponse:
        transport = _raw(request)
        transport.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        transport.close()
        return web.Response()

    return reply


def truncated(body: bytes, status: int = 200) -> Reply:
    """Promise ``len(body)`` bytes, send half of them, and drop the connection."""

    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        _raw(request).abort()
        return response

    return reply


def stall() -> Reply:
    """Never answer: the handler waits until the client gives up and disconnects."""

    async def reply(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable: the wait above only ends by cancellation")

    return reply


def stall_mid_body(body: bytes) -> Reply:
    """Send the headers and the first half of ``body``, then nothing more."""

    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        await asyncio.Event().wait()
        raise AssertionError("unreachable: the wait above only ends by cancellation")

    return reply


def gzipped(body: bytes, *, declare_length: bool = False) -> Reply:
    """``body`` gzip-encoded; chunked (no length given) unless ``declare_length``."""
    packed = gzip.compress(body)

    async def reply(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Encoding": "gzip", "Content-Type": "image/png"}
        if declare_length:
            headers["Content-Length"] = str(len(packed))
        response = web.StreamResponse(headers=headers)
        if not declare_length:
            response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(packed)
        await response.write_eof()
        return response

    return reply
