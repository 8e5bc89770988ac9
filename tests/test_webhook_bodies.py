"""What the webhook receiver does with the body of a POST, whatever aiohttp version serves
it: a coded body (``Content-Encoding``) is refused 415 before a byte of it is read, so
neither the verdict nor the memory a gzip bomb costs depends on what aiohttp's server
decodes (3.10 left ``gzip `` with a space coded and answered 400, 3.14 decoded it and
answered 200; 3.10 inflated a 1 MiB bomb to 270 MiB before any handler ran)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import webhooks
from gptunnel_async._sansio.requests import content_codings
from gptunnel_async.webhooks import WebhookReceiver

from .conftest import announced_only, task_json

SECRET = "a-secret-of-more-than-sixteen-characters"
DONE = json.dumps(task_json(status="done", percent=100)).encode()


@asynccontextmanager
async def served(
    auto_decompress: bool, lingering_time: float = 10.0
) -> AsyncIterator[WebhookReceiver]:
    """A receiver on a loopback app, run as ``docs/webhooks.md`` says
    (``auto_decompress=False``) or with aiohttp's default (the server decodes);
    ``lingering_time``: how long aiohttp reads on a body its handler left unread,
    in seconds (its default)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    receiver = WebhookReceiver(f"http://127.0.0.1:{listener.getsockname()[1]}/hook", secret=SECRET)
    app = web.Application()
    app.router.add_post("/hook", receiver.handler)
    runner = web.AppRunner(
        app, access_log=None, auto_decompress=auto_decompress, lingering_time=lingering_time
    )
    await runner.setup()
    await web.SockSite(runner, listener).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def posted(url: str, head: str, body: bytes) -> bytes:
    """POST ``body`` as it is, under the extra header lines ``head``: the answer's head
    (status line and headers)."""
    target = URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(
        f"POST {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host}\r\n{head}"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    try:
        async with asyncio.timeout(10):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


def status(answer: bytes) -> int:
    return int(answer.split(b"\r\n")[0].split()[1])


ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": lambda data: b"\x0b" + data[::-1],
    "zstd": lambda data: b"\x28\xb5\x2f\xfd" + data[::-1],
    "compress": lambda data: b"\x1f\x9d" + data[::-1],
    "x-unknown": lambda data: data[::-1],
    "identity": lambda data: data,
    "": lambda data: data,
}
CODING = st.sampled_from(sorted(ENCODERS)).flatmap(
    lambda name: st.sampled_from([name, name.upper(), f" {name} ", f"{name}\t"])
)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.lists(CODING, min_size=1, max_size=2).map(",".join), max_size=2),
    auto_decompress=st.booleans(),
)
async def test_a_coded_delivery_is_refused_415_on_any_server(
    lines: list[str], auto_decompress: bool
) -> None:
    """Whatever codings the header states, in any case and spacing, on one line or
    several, the answer is the SDK's rule, not the server's: 415 (a retry cannot help,
    the sender must send it plain) for any coding but ``identity``, else the task. On
    aiohttp's default server alone, a ``br`` or ``zstd`` body may be refused 400 by
    its parser before any handler runs, when the library that decodes it is missing."""
    body = DONE
    for line in lines:
        for coding in line.split(","):
            body = ENCODERS[coding.strip().lower()](body)
    head = "".join(f"Content-Encoding: {line}\r\n" for line in lines)
    async with served(auto_decompress) as receiver:
        answer = await posted(receiver.url, head, body)
    codings = content_codings(lines)
    if auto_decompress and {"br", "zstd"} & set(codings) and status(answer) == 400:
        return  # aiohttp's parser refused a coding it has no decoder for: no handler ran
    if codings:
        assert status(answer) == 415, answer
        assert b"Accept-Encoding: identity\r\n" in answer
        assert b"Connection: close\r\n" in answer
    else:
        assert status(answer) == 200, answer


@pytest.mark.parametrize("auto_decompress", [True, False])
@pytest.mark.parametrize("coding", ["gzip", "gzip ", "x-gzip", "deflate", "compress"])
async def test_a_coded_delivery_is_refused_before_its_body_is_read(
    coding: str, auto_decompress: bool
) -> None:
    """The 415 comes as soon as the headers have: a coded body announced and never sent
    was otherwise waited for until ``DELIVERY_BODY_TIME`` (30 s), past this test's
    10 s, and then answered 408, an answer that invites a retry."""
    async with served(auto_decompress) as receiver:
        answer = await announced_only(receiver.url, 100, headers=f"Content-Encoding: {coding}")
    assert status(answer) == 415, answer


@cache
def gzip_bomb() -> bytes:
    """256 MiB of zeros, gzipped: about 260 KiB, under the receiver's 1 MiB bound."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    return b"".join([packer.compress(zeros) for _ in range(256)] + [packer.flush()])


@pytest.mark.parametrize("token", [SECRET, "not-the-token"])
async def test_a_gzip_bomb_costs_the_receiver_run_as_documented_no_memory(token: str) -> None:
    """Four bombs at once, with the token or without: the receiver run as the docs say
    (``auto_decompress=False``) refuses them inflating nothing. With aiohttp 3.10's
    default server one bomb of 1 MiB costs 270 MiB and four 650 MiB."""
    bomb = gzip_bomb()
    async with served(auto_decompress=False) as receiver:
        url = receiver.url.replace(SECRET, token)
        tracemalloc.start()
        try:
            answers = await asyncio.gather(
                *(posted(url, "Content-Encoding: gzip\r\n", bomb) for _ in range(4))
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert {status(answer) for answer in answers} == {415 if token == SECRET else 403}
    assert peak < 32 * 1024 * 1024, peak  # the bombs themselves are 1 MiB


HOSTILE_BODIES = {
    "not JSON": b"<html>hello</html>",
    "empty": b"",
    "nested 100k deep": b"[" * 100_000 + b"]" * 100_000,
    "objects nested 100k deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "not UTF-8": b'{"id": "\xff", "object": "task", "status": "done"}',
    "a JSON string": b'"done"',
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES)
async def test_a_hostile_body_is_a_400_that_logs_no_error_nor_the_token(
    body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 (the same body would be refused again: no retry helps), no ERROR of
    aiohttp's (a 500, whose traceback's locals hold the request line), and no log line
    holding the token."""
    caplog.set_level(logging.DEBUG)
    async with served(auto_decompress=False) as receiver:
        answer = await posted(receiver.url, "Content-Type: application/json\r\n", body)
    assert status(answer) == 400, answer
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any(SECRET in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (b"", 408),  # the chunks never come
        (b'5\r\n{"id"\r\n', 408),  # they stop coming, the last chunk never sent
        (b"10000\r\n" + b" " * 0x10000 + b"\r\n", 413),  # 17 of them pass 1 MiB
    ],
)
@pytest.mark.parametrize("token", [SECRET, "not-the-token"])
async def test_a_chunked_body_without_end_is_refused_and_its_connection_closed(
    monkeypatch: pytest.MonkeyPatch, sent: bytes, expected: int, token: str
) -> None:
    """A chunked delivery says no length: one that never ends holds the handler no
    longer than ``DELIVERY_BODY_TIME`` (408, a retry may help) and no more than 1 MiB
    of it is read (413); without the token none of it is read (403). Either way the
    connection is closed after the answer: after a 413 or a 403 aiohttp read on for its
    ``lingering_time`` (10 s by default, an hour here), and on aiohttp 3.10's default
    server inflated what it read of a gzip body."""
    monkeypatch.setattr(webhooks, "DELIVERY_BODY_TIME", 0.05)
    chunks = sent * 17 if expected == 413 else sent
    async with served(auto_decompress=False, lingering_time=3600) as receiver:
        target = URL(receiver.url.replace(SECRET, token))
        reader, writer = await asyncio.open_connection(target.host, target.port)
        writer.write(
            f"POST {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + chunks
        )
        try:
            async with asyncio.timeout(10):
                answer = await reader.readuntil(b"\r\n\r\n")
                with contextlib.suppress(ConnectionResetError):  # closed with bytes unread
                    await reader.read()  # to the end: the server closed the connection
        finally:
            writer.close()
    assert status(answer) == (expected if token == SECRET else 403), answer
    assert b"Connection: close\r\n" in answer
