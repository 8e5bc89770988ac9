"""Webhooks: GPTunnel POSTs the finished task to the ``webhook`` URL given at create time.

A push costs no polling, but a delivery can be lost, and anyone who learns the URL can
POST to it. So a ``WebhookReceiver`` puts a random secret token in the callback URL
it hands out and accepts only POSTs that carry it (compared in constant time), and its
``wait_for_result`` finishes on whichever comes first: the webhook, or a slow fallback
poll:

<!-- skip: next -->

```python
receiver = WebhookReceiver("https://bot.example/gptunnel/webhook")
app.router.add_post("/gptunnel/webhook", receiver.handler)  # your aiohttp app
...
task = await client.faceswap.create(source, face, webhook=receiver.url)
done = await receiver.wait_for_result(client.faceswap, task.id)
```

Other web frameworks call ``parse_webhook`` (or ``WebhookReceiver.receive``) with the
request's body and its ``token`` query parameter. The receiver and the waits
must run in one process, on one event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections import OrderedDict
from typing import Final

from aiohttp import web

from ._checks import check_task_id, check_text, describe, http_url
from ._polling import PollPolicy
from ._sansio.responses import decode_task
from .errors import (
    ConfigurationError,
    ResponseDecodeError,
    TaskFailedError,
    WebhookVerificationError,
)
from .families import TaskResource
from .models import Task

__all__ = [
    "DEFAULT_FALLBACK_INTERVAL",
    "MAX_WEBHOOK_BYTES",
    "REMEMBERED_BYTES",
    "REMEMBERED_TASKS",
    "TOKEN_PARAM",
    "WebhookReceiver",
    "parse_webhook",
]

TOKEN_PARAM: Final = "token"
"""The query parameter of the callback URL that holds the receiver's secret."""

MAX_WEBHOOK_BYTES: Final = 1024 * 1024
"""1 MiB: a task object is about 1 KiB; a bigger POST is refused unread."""

DEFAULT_FALLBACK_INTERVAL: Final = 30.0
"""Seconds between the fallback polls of a webhook wait: a lost delivery costs at most
this much lateness, and a two-minute task a handful of reads."""

REMEMBERED_TASKS: Final = 10_000
"""At most this many finished tasks are kept for waits that have not started yet."""

REMEMBERED_BYTES: Final = 16 * 1024 * 1024
"""16 MiB: at most this much of their deliveries is kept too. Past either bound the
oldest are forgotten (their waits find them by the fallback poll instead), so POSTs for
tasks nobody waits for cannot grow the process without bound."""


def parse_webhook(body: bytes, token: str | None, *, secret: str) -> Task:
    """The task a webhook POST carries, once its ``token`` proves it came from our URL.

    Args:
        body: the POST's raw body (a task object, as ``/faceswap/result`` answers).
        token: the ``token`` query parameter of the URL the POST came to, if any.
        secret: the receiver's secret (``WebhookReceiver.secret``).

    Returns:
        The task, as the webhook reported it.

    Raises:
        WebhookVerificationError: the token is missing, wrong or not a string (checked in
            constant time).
        ResponseDecodeError: the body is not a task object.
        ConfigurationError: ``body`` is not bytes or text, or ``secret`` is not a string.
    """
    check_text("secret", secret)
    if not isinstance(token, str) or not hmac.compare_digest(_raw(token), _raw(secret)):
        raise WebhookVerificationError("the webhook's URL does not carry this receiver's token")
    return decode_task(_body(body), 200)


def _raw(text: str) -> bytes:
    """``text`` as bytes for a constant-time comparison, whatever characters it holds
    (a lone surrogate from a mangled query string included)."""
    return text.encode("utf-8", "surrogatepass")


def _body(body: bytes | str) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return _raw(body)
    raise ConfigurationError(f"body must be bytes, got {describe(body)}")


class WebhookReceiver:
    """Hands out a callback URL with a secret token, accepts the POSTs that carry it, and
    lets waits finish on them.

    Args:
        public_url: where GPTunnel can reach ``handler`` (http or https, no query).
        secret: the token to require; by default a fresh random one (32 bytes).

    Raises:
        ConfigurationError: the URL is not an absolute http(s) URL, or the secret is short.
    """

    def __init__(self, public_url: str, *, secret: str | None = None) -> None:
        base = http_url("public_url", public_url)
        if base.query_string:
            raise ConfigurationError(
                f"public_url must not have a query, got {describe(public_url)}"
            )
        if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
            raise ConfigurationError("secret must be a string of at least 16 characters")
        self.secret = secret or secrets.token_urlsafe(32)
        self.url = str(base.with_query({TOKEN_PARAM: self.secret}))
        """The callback URL to pass as ``webhook=``: ``public_url`` with the token."""
        self._public_url = str(base)
        self._waiting: dict[str, set[asyncio.Future[Task]]] = {}
        self._arrived: OrderedDict[str, tuple[Task, int]] = OrderedDict()
        """Finished tasks nobody waits for yet, with the size of their delivery."""
        self._arrived_bytes = 0

    def __repr__(self) -> str:
        return f"WebhookReceiver({self._public_url!r})"

    def receive(self, body: bytes, token: str | None) -> Task:
        """Check and parse one webhook POST, and finish the waits on its task if it has
        ended.

        Args:
            body: the POST's raw body.
            token: the ``token`` query parameter of the URL the POST came to, if any.

        Returns:
            The task, as the webhook reported it.

        Raises:
            WebhookVerificationError: the token is missing or wrong.
            ResponseDecodeError: the body is not a task object.
        """
        task = parse_webhook(body, token, secret=self.secret)
        if task.is_terminal:
            self._finish(task, len(body))
        return task

    async def handler(self, request: web.Request) -> web.Response:
        """An aiohttp handler for the webhook route.

        Args:
            request: GPTunnel's POST.

        Returns:
            200 for a task, 403 for a POST without the token, 400 for a body that is
            not a task, 413 for one over 1 MiB.
        """
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return web.json_response({"error": "too large"}, status=413)
        try:
            self.receive(bytes(body), request.query.get(TOKEN_PARAM))
        except WebhookVerificationError:
            return web.json_response({"error": "forbidden"}, status=403)
        except ResponseDecodeError:
            return web.json_response({"error": "not a task object"}, status=400)
        return web.json_response({"ok": True})

    async def wait_for_result(
        self,
        tasks: TaskResource[Task],
        task_id: str,
        *,
        fallback_interval: float = DEFAULT_FALLBACK_INTERVAL,
        timeout: float | None = 600.0,
    ) -> Task:
        """Wait for a task created with ``webhook=self.url``: finished by its webhook, or
        by a poll every ``fallback_interval`` seconds if the delivery is lost.

        Args:
            tasks: the family that reads the task, e.g. ``client.faceswap``.
            task_id: the task to wait for.
            fallback_interval: seconds between fallback reads (the first is at once).
            timeout: the deadline of the whole wait in seconds, or ``None`` for none.

        Returns:
            The done task.

        Raises:
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed.
            APIError: a read failed in a way that is not retried.
        """
        task_id = check_task_id(task_id)
        policy = PollPolicy(
            initial=fallback_interval,
            max_interval=fallback_interval,
            strategy="exponential",
            timeout=timeout,
        )
        arrived = self._forget(task_id)
        if arrived is not None:
            return _outcome(arrived)
        pushed: asyncio.Future[Task] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(task_id, set()).add(pushed)
        # The poll's deadline is the wait's: it ends the race with WaitTimeoutError.
        polled = asyncio.ensure_future(tasks.wait_for_result(task_id, policy=policy))
        try:
            await asyncio.wait((pushed, polled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            polled.cancel()
            waits = self._waiting.get(task_id, set())
            waits.discard(pushed)
            if not waits:
                self._waiting.pop(task_id, None)
            await asyncio.wait((polled,))
        if pushed.done():
            if not polled.cancelled():
                polled.exception()  # the push won; whatever the poll ended with is moot
            return _outcome(pushed.result())
        return polled.result()

    def _finish(self, task: Task, size: int) -> None:
        waits = self._waiting.pop(task.id, None)
        if not waits:
            self._remember(task, size)
            return
        for pushed in waits:
            if not pushed.done():
                pushed.set_result(task)

    def _remember(self, task: Task, size: int) -> None:
        """Keep ``task`` for a wait that has not started yet, within both bounds."""
        self._forget(task.id)
        self._arrived[task.id] = (task, size)
        self._arrived_bytes += size
        while len(self._arrived) > REMEMBERED_TASKS or self._arrived_bytes > REMEMBERED_BYTES:
            _, (_, forgotten) = self._arrived.popitem(last=False)
            self._arrived_bytes -= forgotten

    def _forget(self, task_id: str) -> Task | None:
        """Take a remembered task out, if it is there."""
        kept = self._arrived.pop(task_id, None)
        if kept is None:
            return None
        self._arrived_bytes -= kept[1]
        return kept[0]


def _outcome(task: Task) -> Task:
    if task.is_failed:
        raise TaskFailedError(task)
    return task
