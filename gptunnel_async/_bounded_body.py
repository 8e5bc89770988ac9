"""A POST's body read up to a bound, on the servers the SDK runs: the webhook receiver
and the emulator's control endpoints."""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["bounded_body"]

_CHUNK = 64 * 1024


async def bounded_body(request: web.Request, limit: int, seconds: float) -> bytes | None:
    """``request``'s body (bytes), or ``None`` if it is over ``limit`` bytes, read within
    ``seconds``.

    A ``Content-Length`` over ``limit`` is refused before any byte is read; a body that
    does not say its length (chunked) is read until it passes ``limit``. The rest is not
    read, so the answer to ``None`` should close the connection (``force_close()``).
    aiohttp's own bound, ``client_max_size``, is one per application: the emulator's
    API takes bodies of many MiB, its control endpoints and the receiver far fewer.

    aiohttp's server has no deadline for a body: one that stops coming (a sender gone
    without closing, or one that sends a byte a minute) held its handler, and the
    connection, forever. Past ``seconds`` the rest is not read either.

    Raises:
        aiohttp.web.RequestPayloadError, ConnectionError: the body was cut short or does
            not decode (its ``Content-Encoding``).
        TimeoutError: the body did not arrive in full within ``seconds``.
    """
    if (request.content_length or 0) > limit:
        return None
    body = bytearray()
    async with asyncio.timeout(seconds):
        async for chunk in request.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > limit:
                return None
    return bytes(body)
