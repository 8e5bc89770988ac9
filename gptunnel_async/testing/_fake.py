"""``FakeGPTunnel``: the emulator's lifetime and the methods tests script it with."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import socket
import threading
from collections.abc import Iterable
from datetime import datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Final, Self, Unpack

import aiohttp
import attrs
from aiohttp import web

from .._checks import (
    check_task_id,
    check_text,
    describe,
    describe_url,
    json_values,
    non_negative_number,
    number,
    optional,
    text,
)
from .._checks import port as check_port
from .._client import ClientOptions, GPTunnelClient, usable_api_key
from ..errors import ConfigurationError, UsageError
from ..models import Balance, MediaTask, Task
from ._apps import API_PREFIX, api_app, storage_app
from ._control import CONTROL_PREFIX, control_routes
from ._endpoints import ENDPOINTS, is_webhook_url, task_body
from ._samples import sample_image
from ._scripts import MediaOutput, Step, TaskScript, check_step
from ._state import EmulatorState, Fault, RecordedRequest, Server
from ._webhooks import WebhookCourier, post_task

__all__ = ["DEFAULT_API_KEY", "FakeGPTunnel", "UnknownTaskError"]

DEFAULT_API_KEY: Final = "fake-key-for-tests"
"""The key an emulator accepts unless it is given another. The SDK masks any 8-character
run of a client's key in the texts it shows, so this one shares none with the SDK's own
texts or GPTunnel's name (``fake-gptunnel-key`` turned every "GPTunnel" into ``***``)."""

_SHUTDOWN_TIMEOUT: Final = 1.0
"""Seconds a closing emulator lets unfinished answers (a ``delay_next``) run on."""


class UnknownTaskError(ConfigurationError, KeyError):
    """[FakeGPTunnel.task][gptunnel_async.testing.FakeGPTunnel.task] of an id the emulator
    has no task of. A ``GPTunnelError`` as every error of the SDK is, and a ``KeyError``
    as a mapping's lookup is, so ``pytest.raises(KeyError)`` still catches it."""

    __str__ = ConfigurationError.__str__  # the message as it is: KeyError's quotes it


class FakeGPTunnel:
    """A GPTunnel emulator: real aiohttp servers on loopback speaking the task API.

    Two origins: the API at ``base_url`` (``http://127.0.0.1:<port>/v1``), which
    wants ``Authorization: <api_key>``, and a storage origin that serves done tasks'
    result PNGs and never needs the key.

    Run it on the current event loop with ``async with FakeGPTunnel() as fake:``, or on
    a background thread with ``with FakeGPTunnel() as fake:`` (sync tests, fixtures).

    Args:
        api_key: the key the API accepts; any other answers 401 (under ``/v1/media/``,
            HTTP 200 with code 2, as ``/media`` answers every error).
        host: the loopback address to listen on (``"::1"`` for IPv6).
        result_image: the bytes storage serves for every done task; a small sample
            PNG by default.
        port: the API's port; ``0`` (the default) picks a free one.
        storage_port: the storage origin's port; ``0`` picks a free one.

    Raises:
        ConfigurationError: a port that is not an int from 0 to 65535, a ``host`` that
            is empty or padded with spaces, or an
            ``api_key`` the SDK's client would refuse (empty, blank, with control or
            non-ASCII characters): an emulator taking ``""`` would accept a request
            whose ``Authorization`` header is empty, which GPTunnel refuses.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        result_image: bytes | None = None,
        port: int = 0,
        storage_port: int = 0,
    ) -> None:
        self.api_key = _emulated_key(api_key)
        self.host = _listening_host(host)
        self._ports = (check_port("port", port), check_port("storage_port", storage_port))
        self._state = EmulatorState(api_key, result_image or sample_image("result.png"))
        self._base_url: str | None = None
        self._runners: list[web.AppRunner] = []
        self._courier = WebhookCourier(self._state)
        self._thread: threading.Thread | None = None
        self._stop: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __repr__(self) -> str:
        return f"<FakeGPTunnel {self._base_url or 'not started'}>"

    # -- where it listens -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root to give a client, ``http://127.0.0.1:<port>/v1``."""
        if self._base_url is None:
            raise UsageError("the FakeGPTunnel is not running; use it as a context manager")
        return self._base_url

    @property
    def storage_url(self) -> str:
        """The storage origin's root, ``http://127.0.0.1:<other port>``; results live here."""
        if self._base_url is None:
            raise UsageError("the FakeGPTunnel is not running; use it as a context manager")
        return self._state.storage_url

    @property
    def control_url(self) -> str:
        """The root of the control endpoints, ``http://127.0.0.1:<port>/_emulator``:
        the request log and scripting over HTTP (see ``gptunnel-async emulator``)."""
        return f"{self.base_url.removesuffix(API_PREFIX)}{CONTROL_PREFIX}"

    def client(self, **options: Unpack[ClientOptions]) -> GPTunnelClient:
        """A client for this emulator.

        Args:
            **options: passed to [GPTunnelClient][gptunnel_async.GPTunnelClient]; they
                may override its ``api_key`` (to test a wrong one) or ``base_url``.

        Returns:
            A new client, not yet opened; use it with ``async with``.

        Raises:
            UsageError: the emulator is not running.
        """
        settings: ClientOptions = {"api_key": self.api_key, "base_url": self.base_url}
        return GPTunnelClient(**(settings | options))

    # -- scripting tasks ------------------------------------------------------------

    def script_task(
        self,
        *,
        steps: Iterable[Step] | None = None,
        duration: float | None = None,
        error: str | None = None,
        task_id: str | None = None,
        type: str = "@FaceSwap",
        model: str | None = None,
        clips: int | None = None,
        preview_stub: bool = False,
        done_before_url: int = 0,
        failed_clips: int = 0,
    ) -> str:
        """Add a task; give exactly one of ``steps`` and ``duration``.

        Args:
            steps: ``[(status, percent), ...]``, one per read of the task; the last one
                repeats. A failure status (``failed``, ``error``...) shows ``error``.
            duration: seconds over which ``percent`` rises (status ``processing``)
                before the task is ``done`` -- or ``failed`` with ``error``, if given.
                The clock starts at the task's first read, not when it is scripted.
            error: the task's error text once it has failed.
            task_id: the id to use; a random one by default.
            type: picks the family and the task's ``type``: ``@FaceSwap``,
                ``@BGRemover``, or a Midjourney one (``imagine``, ``upsample``,
                ``variation``, ``inpaint``).
            model: makes it a ``/media`` task of that model instead.
            clips: a media result of this many clips (``{status: "succeeded",
                audio_url, image_url, duration}``) instead of one link; suno's
                default is 2, other models' 0.
            preview_stub: add a 0.8 s preview clip beside the full ones, as suno
                sometimes does.
            done_before_url: answer ``done`` with nothing to fetch this many times
                before the files appear, as suno has been seen doing.
            failed_clips: the first this many of the ``clips`` fail on their own
                (``{status: "error", error: "the clip failed"}``, no file) while the
                task says ``done``: all of them make a task that failed that way, fewer
                a task done with the other clips' files.

        Returns:
            The task's id.

        Raises:
            ConfigurationError: neither or both of ``steps`` and ``duration``, a bad value,
                or a media option (``clips``, ``failed_clips``...) without ``model``.
        """
        check_text("type", type)
        if task_id is not None:
            check_task_id(task_id)  # an id the SDK would not read is no task to script
        optional(check_text, "model", model)
        media_options = clips is not None or preview_stub or done_before_url or failed_clips
        if model is None and media_options:
            raise ConfigurationError(
                "clips, preview_stub, done_before_url and failed_clips are a media task's: "
                "give its model too"
            )
        script = TaskScript.build(steps, duration, error)
        output = (
            MediaOutput.build(
                model,
                clips=clips,
                preview_stub=preview_stub,
                done_before_url=done_before_url,
                failed_clips=failed_clips,
            )
            if model is not None
            else None
        )
        task = self._state.add_task(
            script, task_id=task_id, type=type, model=model, output=output, created=False
        )
        return task.id

    def fail_task(
        self,
        error: str = "the task failed",
        *,
        steps: Iterable[Step] = (),
        status: str = "failed",
        task_id: str | None = None,
        type: str = "@FaceSwap",
        model: str | None = None,
    ) -> str:
        """Add a task that answers ``steps`` and then fails.

        Args:
            error: the task's error text.
            steps: ``(status, percent)`` answers before the failure, one per read.
            status: the failure status.
            task_id: the id to use; a random one by default.
            type: the family, as for ``script_task``.
            model: makes it a ``/media`` task of that model instead.

        Returns:
            The task's id.
        """
        before = [check_step(step) for step in steps]
        percent = before[-1][1] if before else 0
        return self.script_task(
            steps=[*before, (status, percent)],
            error=error,
            task_id=task_id,
            type=type,
            model=model,
        )

    def script_created(
        self,
        *,
        steps: Iterable[Step] | None = None,
        duration: float | None = None,
        error: str | None = None,
        clips: int | None = None,
        preview_stub: bool = False,
        done_before_url: int = 0,
        failed_clips: int = 0,
        done_at_create: bool = False,
    ) -> None:
        """Script every task created through the API from now on.

        Until this is called, created tasks answer ``idle`` 0 (as documented),
        ``processing`` 50, then ``done`` 100, one read each (after the ``idle`` of the
        create call).

        Args:
            steps: as for ``script_task``.
            duration: as for ``script_task``.
            error: as for ``script_task``.
            clips: as for ``script_task``, for media tasks.
            preview_stub: as for ``script_task``, for media tasks.
            done_before_url: as for ``script_task``, for media tasks.
            failed_clips: as for ``script_task``, for media tasks.
            done_at_create: the create call answers the final state at once (done with
                its result), as some media models do.

        Raises:
            ConfigurationError: neither or both of ``steps`` and ``duration``, or a bad value.
        """
        if not isinstance(done_at_create, bool):
            raise ConfigurationError(f"done_at_create must be a bool, got {done_at_create!r:.40}")
        options: dict[str, Any] = {
            "clips": clips,
            "preview_stub": preview_stub,
            "done_before_url": done_before_url,
            "failed_clips": failed_clips,
        }
        MediaOutput.build("suno", **options)  # checks the values now, not at the first create
        self._state.set_created_script(
            TaskScript.build(steps, duration, error), output=options, done_at_create=done_at_create
        )

    def task(self, task_id: str) -> Task | MediaTask:
        """A task's current state, without counting as a read.

        Args:
            task_id: the task's id.

        Returns:
            The task as the next read would show it, before the script moves on.

        Raises:
            UnknownTaskError: no such task (a ``ConfigurationError``, and a ``KeyError``
                as a mapping's lookup is).
        """
        task = self._state.peek_task(task_id)
        if task is None:
            raise UnknownTaskError(f"the emulator has no task {task_id!r:.100}")
        return task

    # -- the balance ----------------------------------------------------------------

    @property
    def balance(self) -> Balance:
        """What ``GET /balance`` answers (100.0, no credit, until set)."""
        return self._state.balance

    def set_balance(self, balance: float, *, credit_limit: float = 0.0) -> None:
        """Set the balance that ``GET /balance`` answers and create calls spend.

        Once the balance and the credit limit are used up (their sum <= 0), create
        calls are refused with the documented 402 (``/media``: code 5).

        Args:
            balance: the organisation's balance.
            credit_limit: how far below zero it may go.

        Raises:
            ConfigurationError: a value that is not a finite number.
        """
        self._state.balance = attrs.evolve(
            self._state.balance,
            balance=number("balance", balance),
            credit_limit=number("credit_limit", credit_limit),
        )

    # -- faults ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 503,
        *,
        times: int | None = 1,
        retry_after: float | datetime | None = None,
        body: Any = None,
        path: str | None = None,
        server: Server = "api",
    ) -> None:
        """Answer the next requests with an error status instead.

        Args:
            status: the HTTP status, 200 to 599.
            times: how many requests; ``None`` for every one until ``clear_faults()``.
            retry_after: seconds or a date, sent as a ``Retry-After`` header: seconds as
                whole ones (delta-seconds, rounded up: ``0.5`` is sent as ``1``), a date
                as an IMF-fixdate.
            body: replaces the API's error object for ``status``: ``str`` or ``bytes``
                are sent as they are (a proxy's HTML page), anything else as JSON.
            path: limits the fault to one endpoint, e.g. ``"faceswap/create"`` (or as
                the request log spells it, ``"/v1/faceswap/create"``).
            server: ``"storage"`` aims it at result downloads instead of the API.

        Raises:
            ConfigurationError: a status, count or server that makes no sense, or a
                ``path`` no endpoint of the API has.
        """
        if not (isinstance(status, int) and 200 <= status <= 599):
            raise ConfigurationError(
                f"status must be an HTTP status from 200 to 599, got {status!r}"
            )
        if server == "webhook":
            raise ConfigurationError("webhook deliveries can be dropped or delayed, not failed")
        if isinstance(retry_after, datetime):
            header: str | None = format_datetime(retry_after, usegmt=True)
        elif retry_after is not None:
            seconds = non_negative_number("retry_after", retry_after, "seconds >= 0 or a datetime")
            header = str(math.ceil(seconds))  # delta-seconds are 1*DIGIT: no "0.5", no "1e+06"
        else:
            header = None
        if not isinstance(body, str | bytes | None):
            json_values("body", body)  # sent as JSON: refused now, not as the next answer's 500
        self._fault(server, path, times, status=status, retry_after=header, body=body)

    def drop_next(
        self, *, times: int | None = 1, path: str | None = None, server: Server = "api"
    ) -> None:
        """Close the connection of the next requests without answering.

        aiohttp itself sends a ``GET`` once more when its connection is dropped, so
        ``times=2`` is what makes one read of the SDK see the failure.

        Args:
            times: how many requests; ``None`` for every one until ``clear_faults()``.
            path: limits the fault to one endpoint.
            server: ``"storage"`` aims it at result downloads instead of the API;
                ``"webhook"`` loses the next ``times`` webhook deliveries instead.

        Raises:
            ConfigurationError: a count or server that makes no sense, or an API
                ``path`` no endpoint has.
        """
        self._fault(server, path, times, drop=True)

    def delay_next(
        self,
        seconds: float,
        *,
        times: int | None = 1,
        path: str | None = None,
        server: Server = "api",
    ) -> None:
        """Hold the next answers back, like a slow server.

        Pair it with a small client ``timeout=`` to provoke request timeouts. Instant
        waits do not shorten it.

        Args:
            seconds: how long each answer is held back, in real time.
            times: how many requests; ``None`` for every one until ``clear_faults()``.
            path: limits the fault to one endpoint.
            server: ``"storage"`` aims it at result downloads instead of the API;
                ``"webhook"`` holds the next ``times`` webhook deliveries back instead.

        Raises:
            ConfigurationError: a delay, count or server that makes no sense, or an
                API ``path`` no endpoint has.
        """
        held = non_negative_number("seconds", seconds, "a number >= 0")
        self._fault(server, path, times, delay=held)

    def clear_faults(self) -> None:
        """Forget every fault not used yet."""
        self._state.clear_faults()

    def _fault(self, server: Server, path: str | None, times: int | None, **how: Any) -> None:
        if server not in ("api", "storage", "webhook"):
            raise ConfigurationError(
                f"server must be 'api', 'storage' or 'webhook', got {server!r}"
            )
        counted = isinstance(times, int) and not isinstance(times, bool) and times > 0
        if times is not None and not counted:
            raise ConfigurationError(f"times must be an int > 0 or None, got {times!r}")
        where = None if path is None else _fault_path(server, check_text("path", path))
        self._state.add_fault(Fault(server=server, path=where, remaining=times, **how))

    # -- what happened --------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request that reached the API, oldest first (a copy)."""
        return self._state.log("api")

    @property
    def storage_requests(self) -> list[RecordedRequest]:
        """Every request that reached the storage origin, oldest first (a copy)."""
        return self._state.log("storage")

    @property
    def webhook_deliveries(self) -> list[RecordedRequest]:
        """Every webhook the emulator sent (dropped ones are not), oldest first (a copy)."""
        return self._state.log("webhook")

    # -- webhooks -------------------------------------------------------------------

    async def forge_webhook(
        self, url: str, *, task_id: str, status: str = "done", percent: int = 100
    ) -> int | None:
        """POST a task object to ``url`` as an attacker would, without the emulator's
        word for it.

        Tasks created with a ``webhook`` get theirs delivered once they end, as from
        GPTunnel; this sends one that did not come from there, e.g. to a URL with a
        wrong token, to see it refused.

        Args:
            url: where to POST it, e.g. a receiver's URL with a wrong token.
            task_id: the id the forged task claims.
            status: the status it claims.
            percent: the percent it claims.

        Returns:
            The answer's HTTP status, or ``None`` if nobody answered.

        Raises:
            ConfigurationError: ``url`` is not an http(s) URL with a host.
        """
        if not is_webhook_url(url):
            raise ConfigurationError(
                f"url must be an http(s) URL with a host, got {describe_url(url)}"
            )
        forged = Task(id=task_id, status=status, percent=percent, type="@FaceSwap")
        if forged.is_done:
            forged = attrs.evolve(forged, result=f"{self.storage_url}/results/forged.png")
        async with aiohttp.ClientSession() as session:
            _, status_code = await post_task(session, url, task_body(forged))
        return status_code

    # -- on the current event loop --------------------------------------------------

    async def start(self) -> Self:
        """Start both servers on free loopback ports, on the running event loop.

        Returns:
            The emulator itself, running.

        Raises:
            UsageError: it is already running.
        """
        if self._runners:
            raise UsageError("this FakeGPTunnel is already running")
        try:
            storage_port = await self._serve(storage_app(self._state), self._ports[1])
            self._state.storage_url = f"http://{self._netloc(storage_port)}"
            api_port = await self._serve(api_app(self._state, control_routes(self)), self._ports[0])
        except BaseException:
            await self.close()
            raise
        self._courier.start()
        self._base_url = f"http://{self._netloc(api_port)}{API_PREFIX}"
        return self

    async def close(self) -> None:
        """Stop both servers and close their connections. Safe to call twice."""
        runners, self._runners = self._runners, []
        self._base_url = None
        await self._courier.close()
        for runner in runners:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        self._runners.append(runner)
        await runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        await web.SockSite(runner, sock).start()
        bound: int = sock.getsockname()[1]
        return bound

    def _netloc(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    # -- on a background thread -----------------------------------------------------

    def __enter__(self) -> Self:
        if self._thread is not None or self._runners:
            raise UsageError("this FakeGPTunnel is already running")
        ready: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]]
        ready = concurrent.futures.Future()
        thread = threading.Thread(
            target=asyncio.run, args=(self._run_in_thread(ready),), name="FakeGPTunnel", daemon=True
        )
        thread.start()
        try:
            self._stop = ready.result()
        except BaseException:
            thread.join()
            raise
        self._thread = thread
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        thread, stop, self._thread, self._stop = self._thread, self._stop, None, None
        if thread is None or stop is None:
            return
        loop, event = stop
        loop.call_soon_threadsafe(event.set)
        thread.join()

    async def _run_in_thread(
        self, ready: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]]
    ) -> None:
        stop = asyncio.Event()
        try:
            await self.start()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result((asyncio.get_running_loop(), stop))
        try:
            await stop.wait()
        finally:
            await self.close()


_API_PATHS: Final = frozenset(endpoint.path for endpoint in ENDPOINTS)


def _fault_path(server: Server, path: str) -> str:
    """A fault's ``path`` as the emulator matches it: without slashes at its ends, and
    for the API without ``v1/`` (the request log's ``/v1/faceswap/result`` is
    ``faceswap/result``). An API path no endpoint has is a ``ConfigurationError``: the
    fault would never fire, and the test that set it would test nothing."""
    path = path.strip("/")
    if server != "api":
        return path
    path = path.removeprefix(f"{API_PREFIX.strip('/')}/")
    if path not in _API_PATHS:
        raise ConfigurationError(
            f"path must be an endpoint of the API, such as 'faceswap/result' or "
            f"'/v1/faceswap/create', got {path!r}"
        )
    return path


def _listening_host(value: object) -> str:
    """``value`` if it names one address to listen on; ``ConfigurationError`` otherwise.
    An empty host would make the system listen on every interface (an unset variable in
    ``--host "$HOST"``), and the emulator would announce ``http://:8080/v1``."""
    if not isinstance(value, str) or not value or value.strip() != value:
        raise ConfigurationError(
            "host must name the address to listen on ('127.0.0.1', '::1'; '0.0.0.0' for "
            f"every interface), got {describe(value)}"
        )
    return value


def _emulated_key(value: object) -> str:
    """``value`` if the SDK's client would send it as a key; ``ConfigurationError``
    naming its type, never its value, otherwise."""
    key = text("api_key", value)
    if not usable_api_key(key):
        raise ConfigurationError(
            "api_key must be a key a client can send: non-empty printable ASCII, without "
            "surrounding whitespace or control characters, got a str that is not"
        )
    return key
