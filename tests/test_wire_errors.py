"""Failures below HTTP: refused connections, DNS, TLS, cut and compressed bodies.

Each becomes a typed error whose chained cause stays useful (its type and message) and
whose frames, as error trackers render them with their locals, never show the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import ssl
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gptunnel_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    GPTunnelClient,
    GPTunnelError,
    ResponseDecodeError,
    Task,
    TLSError,
    WaitTimeoutError,
)
from gptunnel_async._sansio.responses import MAX_ANSWER_BYTES, structure

from . import faults
from .conftest import API_KEY, FAST, ScriptedAPI, loopback_server, task_json
from .test_faults import CLIENT_ERRORS, NOT_A_TASK, TRANSIENT

DONE = task_json(status="done", percent=100)
REQUEST_TIMEOUT = 0.2


async def raised(call: Awaitable[Any]) -> GPTunnelError:
    """The SDK error ``call`` raises. Caught here, in a frame holding nothing secret, so
    that the rendering below shows the SDK's frames and not the test's fixtures."""
    try:
        await call
    except GPTunnelError as exc:
        return exc
    raise AssertionError("no error was raised")


def rendered(exc: BaseException) -> str:
    """``exc`` as Sentry, ``rich`` with ``show_locals`` or ``pytest -l`` would show it:
    every chained exception, every frame, every local's ``repr``."""
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def assert_no_key_reachable(exc: BaseException) -> None:
    assert API_KEY not in rendered(exc)


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def sdk_client(base_url: str, **options: Any) -> GPTunnelClient:
    return GPTunnelClient(
        api_key=API_KEY,
        base_url=base_url,
        timeout=REQUEST_TIMEOUT,
        poll_policy=FAST,
        **options,
    )


# -- no key in any frame reachable from any error -----------------------------------------


def fault_replies(*, bodies: bool = True) -> list[Any]:
    """Every fault of the fault suite that ends in an error, with its id; with ``bodies``,
    the 200 answers that are not a task too (a download saves those)."""
    params = [*TRANSIENT, *NOT_A_TASK] if bodies else TRANSIENT
    replies = [pytest.param(param.values[0], id=param.id) for param in params]
    replies += [
        pytest.param(faults.answer(status, {"error": {"message": "no"}}), id=str(status))
        for status, _ in CLIENT_ERRORS
    ]
    return replies


@pytest.mark.parametrize("fault", fault_replies())
@pytest.mark.parametrize("retries", [0, 1])
async def test_no_frame_of_a_read_error_shows_the_key(
    fault: faults.Reply, retries: int, api: ScriptedAPI, instant: None
) -> None:
    api.script(fault)
    async with sdk_client(api.base_url, max_retries=retries) as client:
        exc = await raised(client.get_result("task-1"))
    assert_no_key_reachable(exc)


@pytest.mark.parametrize("fault", fault_replies())
async def test_no_frame_of_a_wait_error_shows_the_key(
    fault: faults.Reply, api: ScriptedAPI, instant: None
) -> None:
    api.script(fault)
    async with sdk_client(api.base_url, max_retries=0) as client:
        exc = await raised(client.wait_for_result("task-1", timeout=0.5))
    assert_no_key_reachable(exc)


@pytest.mark.parametrize("fault", fault_replies(bodies=False))
async def test_no_frame_of_a_download_error_shows_the_key(
    fault: faults.Reply, api: ScriptedAPI, tmp_path: Path, instant: None
) -> None:
    """Result files on the API's own origin get the key, so their errors are checked too."""
    api.script(fault)
    async with sdk_client(api.base_url, max_retries=0) as client:
        exc = await raised(client.download_result(api.origin + "files/r.png", tmp_path / "r"))
    assert_no_key_reachable(exc)
    assert entries(tmp_path) == []


async def test_a_refused_connection_keeps_a_useful_cause_without_frames() -> None:
    async with sdk_client(f"http://127.0.0.1:{closed_port()}/v1", max_retries=0) as client:
        exc = await raised(client.get_result("task-1"))
    assert type(exc) is APIConnectionError
    assert isinstance(exc.__cause__, aiohttp.ClientConnectorError)
    assert exc.__cause__.__traceback__ is None
    assert "Cannot connect to host" in rendered(exc)
    assert_no_key_reachable(exc)


@pytest.fixture
def unopenable_port() -> Iterator[int]:
    """A loopback port whose connections never open: its listener's accept queue is
    full and never taken from, so the kernel drops every new SYN (the client's connect
    hangs, as behind a firewall that drops packets)."""
    with socket.socket() as listener, contextlib.ExitStack() as stack:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        for _ in range(8):  # more than the queue holds: the first ones fill it
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port


async def test_a_connection_that_never_opens_is_a_timeout_that_sent_nothing(
    unopenable_port: int,
) -> None:
    """Within half the request's timeout (``CONNECT_TIMEOUT`` at most), before the
    request's whole timeout, so that the error can say that nothing was sent."""
    async with sdk_client(f"http://127.0.0.1:{unopenable_port}/v1", max_retries=0) as client:
        exc = await raised(client.get_result("task-1"))
    assert type(exc) is APITimeoutError
    assert "no connection opened in time; nothing was sent" in str(exc)
    assert isinstance(exc.__cause__, aiohttp.ConnectionTimeoutError)
    assert_no_key_reachable(exc)


async def test_a_create_whose_connection_never_opens_is_retried_and_never_may_have_started(
    unopenable_port: int, recorded_sleeps: list[float]
) -> None:
    """Nothing reached the server: resending cannot start a second task (a request that
    was sent and then timed out is not retried, and says the task may have started)."""
    async with sdk_client(f"http://127.0.0.1:{unopenable_port}/v1", max_retries=2) as client:
        exc = await raised(client.faceswap.create("https://a.example/1.png", "https://a/2.png"))
    assert type(exc) is APITimeoutError
    assert len(recorded_sleeps) == 2  # two retries: three connects that never opened
    assert "may have started" not in str(exc)


class SilentResolver(AbstractResolver):
    """Never answers, as a DNS server that drops the queries: the name is never looked
    up, so no connection opens and nothing is sent."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    async def close(self) -> None:
        pass


async def test_a_create_whose_name_is_never_looked_up_is_retried_and_sent_nothing(
    recorded_sleeps: list[float],
) -> None:
    """The connect timeout counts the name's lookup too: a DNS server that did not
    answer ran into the request's whole timeout, which said the task may have started
    (a create not retried, though nothing was sent)."""
    connector = aiohttp.TCPConnector(resolver=SilentResolver())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        sdk_client("http://api.invalid/v1", max_retries=2, session=session) as client,
    ):
        exc = await raised(client.faceswap.create("https://a.example/1.png", "https://a/2.png"))
    assert type(exc) is APITimeoutError
    assert "no connection opened in time; nothing was sent" in str(exc)
    assert "may have started" not in str(exc)
    assert len(recorded_sleeps) == 2  # retried: nothing reached the server
    assert_no_key_reachable(exc)


async def test_a_create_sent_and_never_answered_may_have_started(api: ScriptedAPI) -> None:
    api.script(faults.stall(), faults.stall())
    async with sdk_client(api.base_url, max_retries=2) as client:
        exc = await raised(client.faceswap.create("https://a.example/1.png", "https://a/2.png"))
    assert type(exc) is APITimeoutError
    assert f"timed out after {REQUEST_TIMEOUT:g}s" in str(exc)
    assert "the task may have started" in str(exc)
    assert len(api.requests) == 1  # not resent


@pytest.mark.parametrize("call", ["read", "download"])
async def test_an_answer_that_is_not_http_says_so(
    api: ScriptedAPI, tmp_path: Path, call: str
) -> None:
    """aiohttp's parser refuses it, and its error says ``0, message=''`` (3.10.2) or
    ``400, message="Expected HTTP/..."`` (later): a status no host sent. The error says
    the answer is not valid HTTP, with the parser's words if it has any."""
    api.script(faults.not_http())
    async with sdk_client(api.base_url, max_retries=0) as client:
        if call == "read":
            exc = await raised(client.balance())
        else:
            exc = await raised(client.download_result(f"{api.origin}x.png", tmp_path / "x.png"))
    assert type(exc) is APIConnectionError
    assert "failed: the answer is not valid HTTP" in str(exc), str(exc)
    assert "message=" not in str(exc) and "400" not in str(exc), str(exc)


class FailingResolver(AbstractResolver):
    """Answers every lookup the way a resolver without the name does."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(socket.EAI_NONAME, f"Name or service not known: {host}")

    async def close(self) -> None:
        pass


async def test_a_dns_failure_is_a_connection_error_without_the_key() -> None:
    connector = aiohttp.TCPConnector(resolver=FailingResolver())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        sdk_client("http://api.invalid/v1", max_retries=0, session=session) as client,
    ):
        exc = await raised(client.get_result("task-1"))
        waited = await raised(client.wait_for_result("task-1", timeout=0.3))
    assert type(exc) is APIConnectionError
    assert "api.invalid" in str(exc)
    assert isinstance(waited, WaitTimeoutError)  # a name that may come back: polled again
    assert_no_key_reachable(exc)
    assert_no_key_reachable(waited)


# -- TLS failures do not heal: no retries, waits end at once -------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def https_server(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]], context: ssl.SSLContext
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def self_signed(
    certificate_authority: trustme.CA,
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """An HTTPS server on loopback whose certificate no default trust store accepts."""
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return web.json_response(DONE)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
    async for origin in https_server(handle, context):
        yield origin, seen


async def test_a_certificate_that_does_not_verify_raises_at_once_without_retries(
    self_signed: tuple[str, list[web.Request]], recorded_sleeps: list[float]
) -> None:
    origin, seen = self_signed
    async with sdk_client(f"{origin}/v1", max_retries=3) as client:
        exc = await raised(client.get_result("task-1"))
    assert isinstance(exc, TLSError)
    assert isinstance(exc, APIConnectionError)
    assert isinstance(exc.__cause__, aiohttp.ClientSSLError)
    assert recorded_sleeps == []  # no backoff: not retried
    assert seen == []  # the handshake failed, nothing reached the handler
    assert_no_key_reachable(exc)


async def test_a_wait_ends_at_once_on_a_tls_failure(
    self_signed: tuple[str, list[web.Request]], recorded_sleeps: list[float]
) -> None:
    origin, _ = self_signed
    async with sdk_client(f"{origin}/v1", max_retries=3) as client:
        exc = await raised(client.wait_for_result("task-1", timeout=600))
    assert isinstance(exc, TLSError)
    assert [pause for pause in recorded_sleeps if pause > 0] == []  # no retry, no 2nd poll
    assert_no_key_reachable(exc)


async def test_a_download_from_a_host_with_a_bad_certificate_fails_at_once(
    self_signed: tuple[str, list[web.Request]], tmp_path: Path, recorded_sleeps: list[float]
) -> None:
    origin, _ = self_signed
    async with sdk_client("http://127.0.0.1:9/v1", max_retries=3) as client:
        exc = await raised(client.download_result(f"{origin}/r.png", tmp_path / "r.png"))
    assert isinstance(exc, TLSError)
    assert recorded_sleeps == []
    assert entries(tmp_path) == []


async def test_the_same_server_is_read_once_its_authority_is_trusted(
    self_signed: tuple[str, list[web.Request]], certificate_authority: trustme.CA
) -> None:
    """The failure above is the certificate's, not the server's: trusted, it answers."""
    origin, _ = self_signed
    context = ssl.create_default_context()
    certificate_authority.configure_trust(context)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        sdk_client(f"{origin}/v1", session=session) as client,
    ):
        assert (await client.get_result("task-1")).is_done


# -- borrowed sessions that do not decompress ----------------------------------------------


def encoded(body: bytes, coding: str, *, declare_length: bool) -> faults.Reply:
    packed = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "raw-deflate": lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS),
    }[coding](body)
    header = "deflate" if coding == "raw-deflate" else coding

    async def reply(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Encoding": header, "Content-Type": "application/json"}
        if declare_length:
            return web.Response(body=packed, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(packed), 7):
            await response.write(packed[start : start + 7])
        await response.write_eof()
        return response

    return reply


@pytest.fixture
async def plain_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A session of the caller's that leaves content codings to whoever reads."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
@pytest.mark.parametrize("declare_length", [True, False], ids=["length", "chunked"])
async def test_a_session_that_does_not_decompress_still_reads_compressed_answers(
    coding: str, declare_length: bool, api: ScriptedAPI, plain_session: aiohttp.ClientSession
) -> None:
    api.script(encoded(json.dumps(DONE).encode(), coding, declare_length=declare_length))
    async with sdk_client(api.base_url, session=plain_session) as client:
        task = await client.get_result("task-1")
        waited = await client.wait_for_result("task-1")
    assert task == waited == structure(Task, DONE)


async def test_a_compressed_answer_is_capped_after_decompression(
    api: ScriptedAPI, plain_session: aiohttp.ClientSession
) -> None:
    """A small gzip body that inflates past the cap is refused, not inflated in full."""
    bomb = b'{"id": "' + b"x" * (MAX_ANSWER_BYTES * 4) + b'"}'
    api.script(encoded(bomb, "gzip", declare_length=False))
    async with sdk_client(api.base_url, session=plain_session, max_retries=0) as client:
        exc = await raised(client.get_result("task-1"))
    assert isinstance(exc, ResponseDecodeError)
    assert "over" in str(exc)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (gzip.compress(json.dumps(DONE).encode())[:-12], "ends before its end"),
        (gzip.compress(b"")[:10] + b"\xff" * 20, "corrupt"),
    ],
    ids=["cut", "invalid"],
)
async def test_a_broken_compressed_body_is_a_connection_error(
    body: bytes, problem: str, api: ScriptedAPI, plain_session: aiohttp.ClientSession
) -> None:
    api.script(faults.answer(200, body, {"Content-Encoding": "gzip"}))
    async with sdk_client(api.base_url, session=plain_session, max_retries=0) as client:
        exc = await raised(client.get_result("task-1"))
    assert type(exc) is APIConnectionError
    assert problem in str(exc)


async def test_a_download_through_a_session_that_does_not_decompress_is_decoded(
    tmp_path: Path, plain_session: aiohttp.ClientSession
) -> None:
    picture = bytes(range(256)) * 64

    async def handle(request: web.Request) -> web.StreamResponse:
        return await faults.gzipped(picture)(request)

    async with loopback_server(handle) as server:
        url = str(server.make_url("/r.png"))
        async with sdk_client("http://127.0.0.1:9/v1", session=plain_session) as client:
            saved = await client.download_result(url, tmp_path / "r.png")
    assert saved.read_bytes() == picture


async def test_wire_errors_leave_no_task_behind() -> None:
    async with sdk_client(f"http://127.0.0.1:{closed_port()}/v1", max_retries=0) as client:
        await raised(client.get_result("task-1"))
    current = asyncio.current_task()
    assert [task for task in asyncio.all_tasks() if task is not current] == []


async def stall(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return web.json_response(DONE)


async def cancelled_from_outside(make: Callable[[], Awaitable[Any]], how: str) -> BaseException:
    """What the caller's own deadline or cancellation ends a call with, in the middle of
    a request; caught here, in a frame holding nothing secret."""
    try:
        if how == "wait_for":
            await asyncio.wait_for(make(), 0.2)
        elif how == "timeout":
            async with asyncio.timeout(0.2):
                await make()
        else:
            task = asyncio.ensure_future(make())
            await asyncio.sleep(0.2)
            task.cancel()
            await task
    except BaseException as exc:  # a cancellation is what is looked at
        return exc
    raise AssertionError("the call was not interrupted")


@pytest.mark.parametrize("how", ["wait_for", "timeout", "cancel"])
@pytest.mark.parametrize("call", ["get_result", "wait_for_result", "create", "balance"])
async def test_a_cancellation_from_outside_leaves_no_key_in_any_frame(how: str, call: str) -> None:
    async with (
        loopback_server(stall) as server,
        GPTunnelClient(api_key=API_KEY, base_url=str(server.make_url("/v1")), timeout=10) as client,
    ):
        make: dict[str, Callable[[], Awaitable[Any]]] = {
            "get_result": lambda: client.get_result("t-1"),
            "wait_for_result": lambda: client.wait_for_result("t-1"),
            "create": lambda: client.midjourney.imagine("a cat"),
            "balance": lambda: client.balance(),
        }
        exc = await cancelled_from_outside(make[call], how)
    assert isinstance(exc, TimeoutError if how != "cancel" else asyncio.CancelledError)
    assert_no_key_reachable(exc)


async def test_an_api_redirect_is_not_followed_and_says_where_to(api: ScriptedAPI) -> None:
    """A 301 from the API (an ``http://`` base_url sent to ``https://``) is not followed:
    one request, none to the target, and the error names it."""
    target = f"{api.origin}elsewhere/v1/faceswap/result?taskId=t1"
    api.script(faults.answer(301, b"", {"Location": target}))
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, max_retries=0) as client:
        with pytest.raises(APIError, match=r"a redirect to .*elsewhere/v1/faceswap/result"):
            await client.get_result("t1")
    assert [request["path"] for request in api.requests] == ["/v1/faceswap/result"]
