"""Bodies in a ``Content-Encoding`` the SDK cannot undo are refused, never saved or read
as they are.

The SDK has aiohttp leave every coding alone and decodes a single ``gzip``, ``x-gzip``
or ``deflate`` itself (beside any ``identity``, over every header line), on any session.
Any other coding (``br``, ``zstd``, ``compress``, a stack such as ``gzip, gzip``) is
refused: before, a download saved those bytes as the result, a complete-looking file
that is not the file, and an API read called its JSON "not JSON". Which values aiohttp
itself decoded differed between its versions (3.10 left ``" br "`` encoded, later ones
trim it), so the SDK once saved a ``br`` body still encoded on aiohttp 3.10.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import (
    DownloadError,
    GPTunnelClient,
    GPTunnelError,
    NotFoundError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    Task,
)
from gptunnel_async._sansio.requests import content_codings, plain_transfer
from gptunnel_async._sansio.responses import structure

from . import faults
from .conftest import API_KEY, loopback_server, task_json

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
DONE = task_json(status="done", percent=100)

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "identity": lambda data: data,
    # Codings neither side undoes: bytes that are surely not what was sent.
    "compress": lambda data: b"\x1f\x9d" + data[::-1],
    "br": lambda data: b"\x0b" + data[::-1],
    "x-unknown": lambda data: data[::-1],
}


@pytest.mark.parametrize(
    ("lines", "codings"),
    [
        ([], ()),
        ([""], ()),
        (["identity"], ()),
        (["gzip"], ("gzip",)),
        (["  GZIP \t"], ("gzip",)),
        (["X-Gzip"], ("x-gzip",)),
        (["gzip, identity"], ("gzip",)),
        (["identity,,gzip"], ("gzip",)),
        (["gzip, gzip"], ("gzip", "gzip")),
        (["deflate", "gzip"], ("deflate", "gzip")),
        (["identity", "br"], ("br",)),
        (["compress"], ("compress",)),
    ],
)
def test_the_codings_of_a_body_are_read_from_every_header_line(
    lines: list[str], codings: tuple[str, ...]
) -> None:
    assert content_codings(lines) == codings


def encoded(codings: list[str]) -> bytes:
    """``PICTURE`` with ``codings`` applied in order, as a server would send it."""
    body = PICTURE
    for coding in codings:
        body = ENCODERS[coding.strip().lower()](body)
    return body


@asynccontextmanager
async def client_of(
    auto_decompress: bool, api_lines: tuple[str, ...] = ()
) -> AsyncIterator[tuple[GPTunnelClient, TestServer]]:
    """A client on a borrowed session that does (or does not) decompress, and a loopback
    host answering the API with a done task under the header lines ``api_lines``, and
    any other path with the picture under the lines its query names
    (``?line=gzip&line=identity, gzip``)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        api = request.path.startswith("/v1/")
        lines = list(api_lines) if api else request.query.getall("line", [])
        body = json.dumps(DONE).encode() if api else PICTURE
        for line in lines:
            for coding in line.split(","):
                if coding.strip():
                    body = ENCODERS[coding.strip().lower()](body)
        response = web.Response(body=body, content_type="image/png")
        for line in lines:
            response.headers.add("Content-Encoding", line)
        return response

    async with (
        loopback_server(answer) as server,
        aiohttp.ClientSession(auto_decompress=auto_decompress) as session,
        GPTunnelClient(
            api_key=API_KEY, base_url=str(server.make_url("/v1")), session=session, max_retries=0
        ) as client,
    ):
        yield client, server


def entries(folder: str) -> list[str]:
    return sorted(path.name for path in Path(folder).iterdir())


def read(path: Path) -> bytes:
    return path.read_bytes()


async def saved(auto_decompress: bool, lines: list[str]) -> bytes | GPTunnelError:
    """What a download of the picture sent under ``lines`` saves, or its error; with an
    error, the folder is left empty."""
    with tempfile.TemporaryDirectory() as folder:
        async with client_of(auto_decompress) as (client, server):
            url = server.make_url("/r.png").with_query([("line", line) for line in lines])
            try:
                path = await client.download_result(str(url), Path(folder))
            except GPTunnelError as exc:
                assert entries(folder) == []
                return exc
            return read(path)


CODING = st.sampled_from(sorted(ENCODERS)).flatmap(
    lambda name: st.sampled_from([name, name.upper(), f" {name} "])
)


def undone(lines: list[str]) -> bool:
    """Whether the SDK decodes a body under ``lines``: exactly one coding it asks for,
    ``identity`` aside, in any case and spacing."""
    codings = [c.strip().lower() for line in lines for c in line.split(",")]
    left = [c for c in codings if c and c != "identity"]
    return len(left) <= 1 and all(c in {"gzip", "x-gzip", "deflate"} for c in left)


@settings(max_examples=100)
@given(
    lines=st.lists(st.lists(CODING, min_size=1, max_size=3).map(", ".join), max_size=3),
    auto_decompress=st.booleans(),
)
async def test_a_download_saves_the_file_as_sent_or_nothing(
    lines: list[str], auto_decompress: bool
) -> None:
    """Whatever codings the header states, in any case and spacing, one line or several,
    on any session: the file saved is the one sent when the SDK knows the coding, and
    otherwise nothing is saved and the error is a ``DownloadError`` (the rule is the
    SDK's, the same on every aiohttp version)."""
    outcome = await saved(auto_decompress, lines)
    if undone(lines):
        assert outcome == PICTURE
    else:
        assert isinstance(outcome, DownloadError)


@pytest.mark.parametrize("auto_decompress", [True, False])
@pytest.mark.parametrize(
    "lines",
    [
        ["gzip"],
        [" GZIP "],
        ["deflate"],
        ["x-gzip"],
        ["X-GZIP"],
        ["gzip, identity"],
        ["identity, deflate"],
        ["identity", "gzip"],
    ],
)
async def test_one_coding_the_sdk_knows_is_undone_on_any_session(
    auto_decompress: bool, lines: list[str]
) -> None:
    """``x-gzip`` (``gzip``'s old name, RFC 9110), a coding beside ``identity`` (on one
    line or two) and a padded one are decoded, whether the session decompresses or not
    (before, aiohttp left some encoded and a session that decompresses saved them still
    gzipped)."""
    assert await saved(auto_decompress, lines) == PICTURE


@pytest.mark.parametrize("auto_decompress", [True, False])
@pytest.mark.parametrize(
    "lines",
    [
        ["compress"],
        ["x-unknown"],
        ["br"],
        [" br "],
        ["BR"],
        ["gzip, gzip"],
        ["gzip", "gzip"],
        ["deflate, gzip"],
    ],
)
async def test_a_coding_the_sdk_cannot_undo_saves_nothing(
    auto_decompress: bool, lines: list[str]
) -> None:
    """A body left encoded is not the file: ``DownloadError``, not retried, naming the
    coding, and no file (before, its encoded bytes were saved as the result)."""
    outcome = await saved(auto_decompress, lines)
    assert isinstance(outcome, DownloadError)
    assert "Content-Encoding" in str(outcome)
    assert ", ".join(line.strip() for line in lines) in str(outcome)


@pytest.mark.parametrize("auto_decompress", [True, False])
async def test_an_api_answer_in_a_coding_the_sdk_cannot_undo_is_a_decode_error(
    auto_decompress: bool,
) -> None:
    """A task object left encoded is a ``ResponseDecodeError`` that names the coding, not
    one that says the body is not JSON."""
    async with client_of(auto_decompress, ("gzip, gzip",)) as (client, _):
        with pytest.raises(ResponseDecodeError, match="Content-Encoding 'gzip, gzip'"):
            await client.get_result("task-1")


@pytest.mark.parametrize("auto_decompress", [True, False])
@pytest.mark.parametrize("line", ["x-gzip", "gzip, identity"])
async def test_an_api_answer_in_one_coding_the_sdk_knows_is_read(
    auto_decompress: bool, line: str
) -> None:
    async with client_of(auto_decompress, (line,)) as (client, _):
        assert await client.get_result("task-1") == structure(Task, DONE)


async def test_an_error_answer_in_a_coding_the_sdk_cannot_undo_keeps_its_status() -> None:
    """An expired result's 404 whose page is in an odd coding is still the 404."""

    async def gone(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=404, body=b"\x1f\x9dzz", headers={"Content-Encoding": "compress"}
        )

    with tempfile.TemporaryDirectory() as folder:
        async with (
            loopback_server(gone) as server,
            GPTunnelClient(
                api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=0
            ) as client,
        ):
            with pytest.raises(NotFoundError):
                await client.download_result(str(server.make_url("/r.png")), Path(folder))
        assert entries(folder) == []


@asynccontextmanager
async def counted(coding: str) -> AsyncIterator[tuple[GPTunnelClient, list[str], URL]]:
    """A client that retries, and a loopback host (its root URL) that answers every
    request (the API's and a download's) with a body under ``Content-Encoding:
    coding``; the paths asked for, one per request."""
    asked: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        body = json.dumps(DONE).encode() if request.path.startswith("/v1/") else PICTURE
        response = web.Response(body=b"\x0b" + body[::-1], content_type="image/png")
        response.headers["Content-Encoding"] = coding
        return response

    async with (
        loopback_server(answer) as server,
        GPTunnelClient(
            api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=2
        ) as client,
    ):
        yield client, asked, server.make_url("/")


NOT_ASKED_FOR = ["br", "zstd", " br ", "Zstd"]
"""Codings the SDK does not ask for, which some aiohttp versions decode (with Brotli or
``backports.zstd`` installed) and others do not."""


@pytest.mark.parametrize("coding", NOT_ASKED_FOR)
async def test_a_coding_not_asked_for_fails_a_download_at_once(coding: str) -> None:
    """A ``br`` or ``zstd`` body is a ``DownloadError`` at once, naming the coding, and
    nothing is saved: whether aiohttp could have decoded it depended on its version and
    on libraries (without them it was an ``APIConnectionError``, retried as if the
    network had failed; with aiohttp 3.10, ``" br "`` was saved still encoded)."""
    with tempfile.TemporaryDirectory() as folder:
        async with counted(coding) as (client, asked, root):
            url = root.with_path("/r.png").with_query({"X-Amz-Signature": "s3cr3t"})
            with pytest.raises(DownloadError) as caught:
                await client.download_result(Task(id="t", status="done", result=str(url)), folder)
        assert entries(folder) == []
    assert asked == ["/r.png"]  # one request: not retried
    text = str(caught.value)
    assert f"Content-Encoding {coding.strip()!r}" in text
    assert "s3cr3t" not in text


@pytest.mark.parametrize("coding", NOT_ASKED_FOR)
async def test_an_api_answer_in_a_coding_not_asked_for_is_a_decode_error(coding: str) -> None:
    """The same answer to an API read is a ``ResponseDecodeError``, not retried."""
    async with counted(coding) as (client, asked, _):
        with pytest.raises(
            ResponseDecodeError, match=f"Content-Encoding '{coding.strip()}'"
        ) as caught:
            await client.get_result("task-1")
    assert asked == ["/v1/faceswap/result"]
    assert caught.value.status_code == 200


# -- transfer codings ---------------------------------------------------------------------


def chunked(data: bytes, size: int = 1000) -> bytes:
    """``data`` in HTTP/1.1 chunked framing, ``size`` bytes a chunk."""
    framed = b"".join(
        b"%x\r\n%s\r\n" % (len(data[at : at + size]), data[at : at + size])
        for at in range(0, len(data), size)
    )
    return framed + b"0\r\n\r\n"


def transfer_answer(lines: list[str]) -> bytes:
    """A 200 with the picture under the ``Transfer-Encoding`` lines ``lines``: gzipped if
    they name gzip, in chunked framing if they name chunked (how aiohttp reads such
    an answer, whether it undoes the framing, is up to it)."""
    named = [item.strip(" \t").lower() for line in lines for item in line.split(",")]
    body = gzip.compress(PICTURE) if "gzip" in named else PICTURE
    body = chunked(body) if "chunked" in named else body
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
    head += b"".join(b"Transfer-Encoding: %s\r\n" % line.encode() for line in lines)
    return head + b"\r\n" + body


async def saved_under(lines: list[str]) -> bytes | GPTunnelError:
    """What a download of the picture sent under the ``Transfer-Encoding`` lines ``lines``
    saves, or its error; with an error, the folder is left empty."""
    with tempfile.TemporaryDirectory() as folder:
        async with (
            loopback_server(faults.raw(transfer_answer(lines))) as server,
            GPTunnelClient(
                api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=0
            ) as client,
        ):
            try:
                path = await client.download_result(str(server.make_url("/r.png")), folder)
            except GPTunnelError as exc:
                assert entries(folder) == []
                return exc
            return read(path)


@pytest.mark.parametrize(
    ("lines", "plain"),
    [
        ([], True),
        (["chunked"], True),
        ([" CHUNKED\t"], True),
        (["identity"], True),
        (["identity", "identity"], True),
        (["gzip, chunked"], False),
        (["gzip"], False),
        (["chunked, identity"], False),  # aiohttp reads the last item: not chunked
        (["chunked,"], False),  # nor this
        (["chunked, chunked"], True),  # a proxy that repeats it: undone once
        (["chunked", "Chunked"], True),
        ([", chunked"], True),
        (["identity", "chunked"], False),  # aiohttp's Python parser reads the first line
        (["", "chunked"], False),
        (["chunked", "identity"], False),  # and its C parser the last
        (["chunked", "gzip, chunked"], False),
        (["chunked\xa0"], False),
        ([""], True),
        (["identity,"], True),
    ],
)
def test_only_chunked_framing_leaves_a_body_as_sent(lines: list[str], plain: bool) -> None:
    assert plain_transfer(lines) is plain


TRANSFER_ITEM = st.sampled_from(["chunked", "Chunked", " chunked ", "gzip", "identity", ""])


@settings(max_examples=60)
@given(lines=st.lists(st.lists(TRANSFER_ITEM, min_size=1, max_size=3).map(",".join), max_size=2))
async def test_a_transfer_coding_never_saves_anything_but_the_file(lines: list[str]) -> None:
    """Whatever ``Transfer-Encoding`` a host states, the file saved is the one sent, or
    nothing is saved: before, ``gzip, chunked`` (aiohttp undoes the framing alone) saved
    the gzip bytes as the picture, a complete-looking file that was not the file."""
    outcome = await saved_under(lines)
    assert outcome == PICTURE or isinstance(outcome, GPTunnelError)


@pytest.mark.parametrize(
    "lines",
    [["gzip, chunked"], ["x-gzip, Chunked"], ["gzip", "chunked"], ["chunked, identity"]],
)
async def test_a_transfer_coding_other_than_chunked_saves_nothing(lines: list[str]) -> None:
    """Not retried: the host sends it the same way each time."""
    outcome = await saved_under(lines)
    assert isinstance(outcome, DownloadError)
    assert "Transfer-Encoding" in str(outcome)


@pytest.mark.parametrize(
    "lines",
    [[], ["chunked"], [" Chunked "], ["identity"], ["chunked", "chunked"], ["chunked, chunked"]],
)
async def test_a_body_only_framed_is_saved(lines: list[str]) -> None:
    """``chunked`` said twice (a proxy that repeats the line) is the framing, undone once."""
    assert await saved_under(lines) == PICTURE


async def test_an_api_answer_in_a_transfer_coding_is_a_decode_error() -> None:
    done = json.dumps(DONE).encode()
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
    async with (
        loopback_server(faults.raw(answer + chunked(gzip.compress(done)))) as server,
        GPTunnelClient(
            api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=2
        ) as client,
    ):
        with pytest.raises(
            ResponseDecodeError, match="Transfer-Encoding 'gzip, chunked'"
        ) as caught:
            await client.get_result("task-1")
    assert caught.value.status_code == 200


async def test_an_error_answer_in_a_transfer_coding_keeps_its_status() -> None:
    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"
        b"Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
    )
    async with (
        loopback_server(faults.raw(answer + chunked(gzip.compress(b"{}")))) as server,
        GPTunnelClient(
            api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=0
        ) as client,
    ):
        with pytest.raises(RateLimitError) as caught:
            await client.get_result("task-1")
    assert caught.value.retry_after == 7


# -- an error status keeps its error, whatever its body's coding ------------------------------

ERROR_PAGE = json.dumps({"error": {"message": "the page of the error"}}).encode()

ERROR_BODIES: dict[str, tuple[list[tuple[str, str]], bytes, bool]] = {
    # name: (headers, body sent, whether the page's message can be read from it)
    "gzip": ([("Content-Encoding", "gzip")], gzip.compress(ERROR_PAGE), True),
    "deflate-raw": (
        [("Content-Encoding", "deflate")],
        zlib.compress(ERROR_PAGE, wbits=-zlib.MAX_WBITS),
        True,
    ),
    "gzip-corrupt": ([("Content-Encoding", "gzip")], b"\x1f\x8b\x08junk", False),
    "gzip-cut": ([("Content-Encoding", "gzip")], gzip.compress(ERROR_PAGE)[:-9], True),
    "br": ([("Content-Encoding", "br")], b"\x0b" + ERROR_PAGE, False),
    "gzip-gzip": ([("Content-Encoding", "gzip, gzip")], gzip.compress(ERROR_PAGE), False),
    "padded": (
        [("Content-Encoding", "gzip")],
        b"\x1f\x8b\x08\x08\0\0\0\0\0\xff"
        + b"n" * (6 << 20)
        + b"\0"
        + gzip.compress(ERROR_PAGE)[10:],
        False,
    ),
}

ERRORS_BY_STATUS = {404: NotFoundError, 429: RateLimitError, 500: ServerError, 503: ServerError}


@pytest.mark.parametrize("status", sorted(ERRORS_BY_STATUS))
@pytest.mark.parametrize("name", sorted(ERROR_BODIES))
async def test_an_error_status_keeps_its_error_and_retry_after_whatever_its_body(
    name: str, status: int
) -> None:
    """A 404, 429, 500 or 503 with a coded body, one the SDK decodes, one it refuses, one
    cut or corrupt or padded past the cap, is the status's own error with its
    ``Retry-After``, and its page's message when the body could be read, to an API read
    and to a download alike (which saves nothing); never a decode or connection error."""
    headers, body, readable = ERROR_BODIES[name]

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.Response(status=status, body=body, content_type="application/json")
        for header, value in [*headers, ("Retry-After", "7")]:
            response.headers.add(header, value)
        return response

    with tempfile.TemporaryDirectory() as folder:
        async with (
            loopback_server(answer) as server,
            GPTunnelClient(
                api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=0
            ) as client,
        ):
            url = str(server.make_url("/r.png"))
            for call in (
                lambda: client.get_result("task-1"),
                lambda: client.download_result(url, folder),
            ):
                with pytest.raises(ERRORS_BY_STATUS[status]) as caught:
                    await call()
                assert caught.value.status_code == status
                assert caught.value.retry_after == 7
                if readable:
                    assert "the page of the error" in str(caught.value)
        assert entries(folder) == []


# -- what a refusal quotes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "quoted"),
    [
        ("Content-Encoding", b"gzip\xc2\xa0", r"gzip\xa0"),  # a no-break space, in UTF-8
        ("Content-Encoding", b"gzip\x0b", r"gzip\x0b"),
        ("Content-Encoding", "gzip\u200b".encode(), r"gzip\u200b"),  # a zero-width space
        ("Content-Encoding", b"g\xffzip", r"g\udcffzip"),  # not UTF-8
        ("Content-Encoding", b"br,\tgzip", r"br,\tgzip"),
        ("Transfer-Encoding", b"chunked\xc2\xa0", r"chunked\xa0"),
    ],
)
async def test_a_refused_value_is_quoted_as_sent(header: str, value: bytes, quoted: str) -> None:
    """A value refused for a character that is not a plain one is quoted with it escaped:
    ``gzip`` and a no-break space was quoted as ``'gzip'`` (its blank folded away by the
    shortening of server text), an error that said ``gzip`` is a coding the SDK cannot
    undo."""
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n%s: %s\r\n" % (header.encode(), value)
    body = gzip.compress(PICTURE)
    framed = chunked(body) if header == "Transfer-Encoding" else body
    with tempfile.TemporaryDirectory() as folder:
        async with (
            loopback_server(faults.raw(answer + b"\r\n" + framed)) as server,
            GPTunnelClient(
                api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=0
            ) as client,
        ):
            with pytest.raises(DownloadError) as caught:
                await client.download_result(str(server.make_url("/r.png")), folder)
        assert entries(folder) == []
    assert f"{header} '{quoted}' is not one" in str(caught.value)
