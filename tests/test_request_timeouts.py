"""A request's own timeout ends it and nothing else.

aiohttp before 3.10.8 cancelled the caller's task to end a request on its timeout and
never withdrew that cancellation: every read that timed out left one more pending
cancellation request on the task (``Task.cancelling()``). A wait's deadline, or the
caller's own ``asyncio.timeout``, then raised a bare ``CancelledError`` instead of
``WaitTimeoutError`` or ``TimeoutError``, now and then (3 waits in 1,000 of the soak
test). The SDK requires aiohttp 3.10.11 or later; these tests hold on every version it
allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gptunnel_async import APITimeoutError, GPTunnelClient, WaitTimeoutError

from .conftest import API_KEY, loopback_server

STALLS = ["headers", "body"]
"""Where the loopback host stalls: before the answer's headers, or in its body."""


@pytest.fixture
async def stalling() -> AsyncIterator[str]:
    """A loopback API (its base URL) whose every read stalls where its ``task_id`` says."""
    released = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        if request.query.get("task_id") == "body":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"id": "body", "status": ')
        await released.wait()
        return web.Response()

    async with loopback_server(stall) as server:
        try:
            yield str(server.make_url("/v1"))
        finally:
            released.set()


def pending_cancellations() -> int:
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling()


@pytest.mark.parametrize("stall", STALLS)
async def test_a_read_that_times_out_leaves_no_cancellation_behind(
    stalling: str, stall: str
) -> None:
    async with GPTunnelClient(
        api_key=API_KEY, base_url=stalling, timeout=0.05, max_retries=1
    ) as client:
        with pytest.raises(APITimeoutError):
            await client.get_result(stall)
        assert pending_cancellations() == 0


@pytest.mark.parametrize("stall", STALLS)
async def test_a_wait_whose_reads_time_out_ends_with_its_own_error(
    stalling: str, stall: str
) -> None:
    """Reads that time out, then the wait's deadline: ``WaitTimeoutError``, and the
    caller's own ``asyncio.timeout`` after it still raises ``TimeoutError``."""
    async with GPTunnelClient(
        api_key=API_KEY, base_url=stalling, timeout=0.05, max_retries=0
    ) as client:
        with pytest.raises(WaitTimeoutError):
            await client.wait_for_result(stall, timeout=0.4)
        assert pending_cancellations() == 0
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
