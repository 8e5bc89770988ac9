"""Webhook deliveries: the emulator POSTs each task that was created with a ``webhook``
to that URL once it has ended, as GPTunnel does.

Deliveries meet the queued faults for the ``"webhook"`` server first, so a test can
drop one (a lost delivery) or hold it back; every delivery sent is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .._checks import WEBHOOK_TOKEN_PARAM
from .._logging import sdk_logger
from .._sansio.text import excerpt
from ._endpoints import task_body
from ._state import EmulatorState, RecordedRequest

__all__ = ["TICK", "WebhookCourier", "post_task"]

logger = sdk_logger("gptunnel_async.testing")

TICK: Final = 0.02
"""Seconds between looks for tasks that have ended: how late a delivery may be."""


async def post_task(
    session: aiohttp.ClientSession, url: str, body: Any
) -> tuple[RecordedRequest, int | None]:
    """POST ``body`` as JSON to ``url``; return what was sent and the answer's status
    (``None`` if nobody answered: a webhook that cannot be reached is simply lost)."""
    raw = json.dumps(body).encode()
    headers = CIMultiDict({"Content-Type": "application/json"})
    target = URL(url)
    sent = RecordedRequest(
        method="POST",
        path=target.path,
        query=dict(target.query),
        headers=CIMultiDictProxy(headers),
        body=raw,
    )
    try:
        async with session.post(url, data=raw, headers=headers) as response:
            return sent, response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        # aiohttp's text may quote the whole URL, its token too (an InvalidURL's is it).
        reason = excerpt(str(exc), target.query.get(WEBHOOK_TOKEN_PARAM)) or type(exc).__name__
        logger.debug("webhook to %s not delivered: %s", target.with_query(None), reason)
        return sent, None


class WebhookCourier:
    """Delivers ended tasks' webhooks from the emulator's own event loop."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start looking for ended tasks (on the running loop)."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._runner = asyncio.create_task(self._run(), name="FakeGPTunnel webhooks")

    async def close(self) -> None:
        """Stop: deliveries not sent yet are lost."""
        runner, self._runner = self._runner, None
        sending, self._sending = list(self._sending), set()
        for task in (runner, *sending):
            if task is not None:
                task.cancel()
        for task in (runner, *sending):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _run(self) -> None:
        while True:
            for url, task in self._state.ended_with_webhook():
                delivery = asyncio.create_task(self._deliver(url, task_body(task)))
                self._sending.add(delivery)
                delivery.add_done_callback(self._sending.discard)
            await asyncio.sleep(TICK)

    async def _deliver(self, url: str, body: Any) -> None:
        fault = self._state.take_fault("webhook", URL(url).path.strip("/"))
        if fault is not None:
            await asyncio.sleep(fault.delay)
            if fault.drop:
                return
        assert self._session is not None
        sent, _ = await post_task(self._session, url, body)
        self._state.record("webhook", sent)
