"""No exception the SDK raises holds the key anywhere in its chain, whatever text a server
sent: aiohttp quotes the bytes it could not parse (a status line, a header, a chunk size),
and a redirect target is server text too. Each text in the chain is bounded as well."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web

from gptunnel_async import APIConnectionError, GPTunnelClient, GPTunnelError
from gptunnel_async._safe_errors import MaskedCause, made_safe

from .conftest import loopback_server
from .test_masking import holds_key
from .test_secrets import exception_texts

KEY = "Zq9xT3-secret-mK7pW2vL"

MALFORMED = {
    "status line": f"{KEY} garbage\r\n\r\n",
    "huge status line": f"HTTP/1.1 200 {KEY * 300}\r\n\r\n",
    "content length": f"HTTP/1.1 200 OK\r\nContent-Length: {KEY}\r\n\r\n",
    "chunk size": f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{KEY}\r\n",
    "header name": f"HTTP/1.1 200 OK\r\n{KEY}(: x\r\nContent-Length: 2\r\n\r\n{{}}",
    "header value": f"HTTP/1.1 200 OK\r\nX: {KEY}\x7f\x00\r\nContent-Length: 2\r\n\r\n{{}}",
    "long header": f"HTTP/1.1 200 OK\r\nX: {KEY * 400}\r\nContent-Length: 2\r\n\r\n{{}}",
    "transfer encoding": (
        f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: {KEY}\r\n\r\n{{}}"
    ),
    "lower case key": f"HTTP/1.1 200 OK\r\nContent-Length: {KEY.lower()}\r\n\r\n",
    "content coding": (
        f"HTTP/1.1 200 OK\r\nContent-Encoding: br, {KEY}\r\nContent-Length: 2\r\n\r\n{{}}"
    ),
    "content coding lines": (
        f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: {KEY * 40}\r\n\r\n{{}}"
    ),
    "transfer coding": (
        f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {KEY}, chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    ),
}


def rendered(error: BaseException) -> list[str]:
    """Every way the error is shown: with frame locals too, as error trackers do."""
    with_locals = traceback.TracebackException.from_exception(error, capture_locals=True)
    return ["".join(with_locals.format()), *exception_texts(error)]


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the SDK and the libraries under it logged (not the test server's access log)."""
    return [record.getMessage() for record in caplog.records if record.name != "aiohttp.access"]


async def raw_server(answer: bytes) -> tuple[asyncio.Server, str]:
    """A loopback server that answers every request with ``answer`` and hangs up."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_a_malformed_answer_echoing_the_key_leaves_it_nowhere_in_the_chain(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, base_url = await raw_server(MALFORMED[name].encode())
    async with server, GPTunnelClient(KEY, base_url=base_url, max_retries=1) as client:
        with pytest.raises(GPTunnelError) as caught:
            await client.get_result("t")
    texts = rendered(caught.value) + logged(caplog)
    if isinstance(caught.value, APIConnectionError):  # aiohttp refused the answer
        assert caught.value.__cause__ is not None  # and stays as the cause, for debugging
    assert not [text for text in texts if holds_key(text, KEY)]
    assert all(len(str(error)) <= 2_000 for error in (caught.value, caught.value.__cause__))
    assert len(str(caught.value.__cause__)) <= 400


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_a_malformed_answer_to_a_signed_link_keeps_its_query_out_of_the_text(
    name: str, tmp_path: Path
) -> None:
    """aiohttp's parser errors end with the whole URL, query and all: a signed result
    link's signature was in the error's text (every log line of it), and in its cause."""
    server, base_url = await raw_server(MALFORMED[name].encode())
    link = base_url.removesuffix("/v1") + "/r.png?X-Amz-Signature=sig-77aa&X-Amz-Credential=c-88"
    async with server, GPTunnelClient(KEY, base_url=base_url, max_retries=0) as client:
        with pytest.raises(GPTunnelError) as caught:
            await client.download_result(link, tmp_path)
    texts = list(exception_texts(caught.value))
    assert not [text for text in texts if "sig-77aa" in text or "c-88" in text]


REDIRECTS: dict[str, Callable[[str], str]] = {
    "another scheme": lambda port: f"ftp://{KEY}/x",
    "nothing listening": lambda port: f"http://127.0.0.1:1/{KEY}",
    "percent-encoded": lambda port: f"http://127.0.0.1:1/{quote(KEY, safe='')}",
    "unusable URL": lambda port: f"http://[{KEY}",
    "a host that does not resolve": lambda port: f"http://{KEY.lower()}.invalid/x",
    "scheme-relative": lambda port: f"//{KEY.lower()}.invalid/x",
    "an error status": lambda port: f"http://127.0.0.1:{port}/broken/{KEY}",
    "a long target": lambda port: f"http://127.0.0.1:1/{'a' * 6000}{KEY}",
}


@pytest.fixture
async def storage() -> AsyncIterator[str]:
    """A loopback storage host: ``/r/NAME`` redirects as ``REDIRECTS[NAME]`` says, and
    anything else is a 503 that names the key. Yields its root URL."""

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["tail"].removeprefix("r/")
        if name in REDIRECTS:
            target = REDIRECTS[name](str(request.url.port))
            return web.Response(status=302, headers={"Location": target})
        return web.Response(status=503, text=f"no {KEY} here")

    async with loopback_server(handle) as server:
        yield str(server.make_url("/"))


@pytest.mark.parametrize("name", sorted(REDIRECTS))
async def test_a_redirect_target_echoing_the_key_shows_nowhere(
    storage: str, name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    root = storage
    dest = tmp_path / "out.png"
    async with GPTunnelClient(KEY, base_url=root + "v1", max_retries=1, timeout=5) as client:
        with pytest.raises(GPTunnelError) as caught:
            await client.download_result(f"{root}r/{name}", dest, timeout=30)
    texts = rendered(caught.value) + logged(caplog)
    assert not [text for text in texts if holds_key(text, KEY)]
    assert len(str(caught.value)) <= 600
    assert not dest.exists()
    assert [path.name for path in dest.parent.iterdir()] == []


class _Holder:
    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"_Holder({self.value!r})"


@pytest.mark.parametrize(
    "argument",
    [
        {"Authorization": KEY},
        [KEY],
        (f"Bearer {KEY}",),
        KEY.encode(),
        _Holder(KEY),
        {"headers": {"authorization": KEY.lower()}},
    ],
    ids=["dict", "list", "tuple", "bytes", "object", "nested lower case"],
)
def test_a_cause_whose_arguments_hold_the_key_in_no_text_is_replaced(argument: object) -> None:
    # Texts are masked in place; an argument that is no text (aiohttp keeps the request's
    # headers in its errors' args) cannot be, so the exception is stood in for.
    cause = ValueError(argument, "the request failed")
    safe = made_safe(cause, KEY)
    assert isinstance(safe, MaskedCause)
    assert not [text for text in exception_texts(safe) if holds_key(text, KEY)]
    assert safe.args[0].startswith("ValueError: ")
