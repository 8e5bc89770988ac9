"""Compressed bodies a borrowed session leaves to the SDK (``auto_decompress=False``).

A gzip body may be several members one after another (RFC 1952, ``cat a.gz b.gz``):
every member is decoded, as aiohttp does, up to its bound of 1024 members and within
the output limit counted over all of them. Bytes after the end that are not a gzip
member, or any byte after a deflate stream's end, are an error, never dropped: a result
saved from such a body would be a piece of the file, or the file with junk cut off
silently.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import tempfile
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gptunnel_async import DownloadError, GPTunnelClient, GPTunnelError, ResponseDecodeError, Task
from gptunnel_async._sansio.responses import structure
from gptunnel_async._transport import _Inflater

from . import faults
from .conftest import API_KEY, loopback_server, task_json

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 400
DONE = task_json(status="done", percent=100)
MEMBER_BOUND = 1024
"""aiohttp's bound on the members of one gzip body, which the SDK keeps."""


def members(*parts: bytes) -> bytes:
    """``parts`` as one gzip body of one member each, as ``cat a.gz b.gz`` makes it."""
    return b"".join(gzip.compress(part) for part in parts)


def inflated(body: bytes, coding: str, *, chunk: int, limit: int = 1 << 30) -> bytes:
    """``body`` fed to the SDK's inflater in pieces of ``chunk`` bytes, then finished."""
    inflater = _Inflater(coding, limit)
    out = b"".join(
        piece for at in range(0, len(body), chunk) for piece in inflater.feed(body[at : at + chunk])
    )
    inflater.finish()
    return out


def serving(body: bytes, coding: str, chunk: int, *, sized: bool = False) -> faults.Reply:
    """An answer sending ``body`` under ``coding``, chunked, ``chunk`` bytes at a time
    (or, ``sized``, under a ``Content-Length``)."""

    async def reply(request: web.Request) -> web.StreamResponse:
        if sized:
            return web.Response(body=body, headers={"Content-Encoding": coding})
        response = web.StreamResponse(headers={"Content-Encoding": coding})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), chunk):
            await response.write(body[start : start + chunk])
        await response.write_eof()
        return response

    return reply


@asynccontextmanager
async def plain_client(
    body: bytes, coding: str = "gzip", *, chunk: int = 4096, sized: bool = False
) -> AsyncIterator[tuple[GPTunnelClient, str]]:
    """A client on a borrowed session that does not decompress, and the URL of a loopback
    host answering ``body`` under ``coding`` to every request (the API's reads too)."""
    async with (
        loopback_server(serving(body, coding, chunk, sized=sized)) as server,
        aiohttp.ClientSession(auto_decompress=False) as session,
        GPTunnelClient(
            api_key=API_KEY, base_url=str(server.make_url("/v1")), session=session, max_retries=0
        ) as client,
    ):
        yield client, str(server.make_url("/r.png"))


def entries(folder: str) -> list[str]:
    return sorted(path.name for path in Path(folder).iterdir())


def read(path: Path) -> bytes:
    return path.read_bytes()


async def saved_or_error(
    body: bytes, coding: str = "gzip", *, sized: bool = False, **options: int
) -> bytes | Exception:
    """What a download of ``body`` saves (with ``max_bytes`` and such from ``options``;
    ``sized``: sent under a ``Content-Length``), or its error; either way, the folder
    holds nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            async with plain_client(body, coding, sized=sized) as (client, url):
                saved = await client.download_result(url, Path(folder) / "r.png", **options)
        except GPTunnelError as exc:
            assert entries(folder) == []
            return exc
        assert entries(folder) == ["r.png"]
        return read(saved)


# -- every member, wherever the chunks split them ------------------------------------------


@given(
    parts=st.lists(st.binary(max_size=3000), min_size=1, max_size=6),
    chunk=st.integers(1, 5000),
)
def test_every_gzip_member_is_decoded_wherever_the_chunks_split_it(
    parts: list[bytes], chunk: int
) -> None:
    assert inflated(members(*parts), "gzip", chunk=chunk) == b"".join(parts)


@settings(max_examples=20)
@given(cuts=st.lists(st.integers(1, len(PICTURE) - 1), min_size=1, max_size=4, unique=True))
async def test_a_result_sent_as_several_gzip_members_is_saved_whole(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(PICTURE)]
    body = members(*(PICTURE[start:end] for start, end in itertools.pairwise(bounds)))
    assert await saved_or_error(body) == PICTURE


async def test_an_api_answer_sent_as_two_gzip_members_is_read_whole() -> None:
    text = json.dumps(DONE).encode()
    async with plain_client(members(text[:25], text[25:]), chunk=7) as (client, _):
        assert await client.get_result("task-1") == structure(Task, DONE)


def test_as_many_gzip_members_as_aiohttp_allows_are_decoded() -> None:
    body = members(*[b"x"] * MEMBER_BOUND)
    assert inflated(body, "gzip", chunk=len(body)) == b"x" * MEMBER_BOUND


@pytest.mark.parametrize("chunk", [1, 20, 1 << 20], ids=["bytewise", "member-wise", "at-once"])
def test_one_gzip_member_more_than_aiohttp_allows_is_an_error(chunk: int) -> None:
    with pytest.raises(aiohttp.ClientPayloadError, match="more than 1024 gzip members"):
        inflated(members(*[b""] * (MEMBER_BOUND + 1)), "gzip", chunk=chunk)


async def test_a_body_of_too_many_empty_members_saves_nothing() -> None:
    failure = await saved_or_error(members(PICTURE, *[b""] * MEMBER_BOUND))
    assert isinstance(failure, GPTunnelError)
    assert "more than 1024 gzip members" in str(failure)


@pytest.mark.parametrize("split", [1, 2000, 3999])
async def test_the_size_limit_counts_every_member(split: int) -> None:
    body = members(PICTURE[:split], PICTURE[split:4000])
    failure = await saved_or_error(body, max_bytes=3999)
    assert isinstance(failure, DownloadError)
    assert "over max_bytes=3999" in str(failure)
    assert await saved_or_error(body, max_bytes=4000) == PICTURE[:4000]


# -- nothing after the end is dropped --------------------------------------------------------


def gzip_members_alone(data: bytes) -> bool:
    """Whether ``data`` is whole gzip members and nothing else, as Python reads them."""
    try:
        gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return False
    return True


@given(
    part=st.binary(max_size=2000),
    trailing=st.binary(min_size=2, max_size=64).filter(lambda tail: not tail.startswith(b"\x1f")),
    chunk=st.integers(1, 3000),
)
def test_bytes_after_a_gzip_member_that_start_no_member_are_an_error(
    part: bytes, trailing: bytes, chunk: int
) -> None:
    with pytest.raises(aiohttp.ClientPayloadError, match="not a valid gzip member"):
        inflated(gzip.compress(part) + trailing, "gzip", chunk=chunk)


@given(
    trailing=st.binary(min_size=1, max_size=40)
    | st.binary(max_size=40).map(lambda rest: b"\x1f\x8b\x08" + rest),
    chunk=st.integers(1, 64),
)
def test_bytes_after_a_gzip_member_that_are_no_whole_members_are_an_error(
    trailing: bytes, chunk: int
) -> None:
    assume(not gzip_members_alone(trailing))
    with pytest.raises(aiohttp.ClientPayloadError):
        inflated(gzip.compress(b"picture") + trailing, "gzip", chunk=chunk)


def deflated(data: bytes, raw: bool) -> bytes:
    return zlib.compress(data, wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)


@given(
    part=st.binary(max_size=2000),
    trailing=st.binary(min_size=1, max_size=64),
    raw=st.booleans(),
    chunk=st.integers(1, 3000),
)
def test_any_byte_after_a_deflate_stream_is_an_error(
    part: bytes, trailing: bytes, raw: bool, chunk: int
) -> None:
    with pytest.raises(aiohttp.ClientPayloadError, match="goes on after its end"):
        inflated(deflated(part, raw) + trailing, "deflate", chunk=chunk)


def zlib_header(start: bytes) -> bool:
    """Whether ``start`` begins with a valid zlib header (RFC 1950: method 8, a window of
    at most 32 KiB, and the 16-bit value a multiple of 31)."""
    return (
        len(start) >= 2
        and start[0] & 0x0F == 8
        and start[0] >> 4 <= 7
        and int.from_bytes(start[:2], "big") % 31 == 0
    )


@given(
    padding=st.integers(0, 31),
    stored=st.binary(max_size=300),
    rest=st.binary(max_size=2000),
    chunk=st.integers(1, 3000),
)
def test_a_raw_deflate_stream_is_told_from_a_zlib_one_by_its_whole_header(
    padding: int, stored: bytes, rest: bytes, chunk: int
) -> None:
    """A raw stream that starts with a stored block, whose first byte's five high bits
    are padding that decoders ignore (RFC 1951 3.2.4), is decoded raw unless its first
    two bytes are a whole zlib header: the SDK (as aiohttp) read any first byte whose
    low four bits were 8 as zlib's, and called such a stream corrupt."""
    body = (
        bytes([padding << 3])  # BFINAL 0, BTYPE 00 (stored), then padding
        + len(stored).to_bytes(2, "little")
        + (len(stored) ^ 0xFFFF).to_bytes(2, "little")
        + stored
        + deflated(rest, True)
    )
    assume(not zlib_header(body))
    assert inflated(body, "deflate", chunk=chunk) == stored + rest


@given(data=st.binary(max_size=2000), level=st.integers(0, 9), chunk=st.integers(1, 3000))
def test_a_zlib_stream_is_read_as_zlib_whatever_its_chunks(
    data: bytes, level: int, chunk: int
) -> None:
    """Its two-byte header told apart even when it comes a byte at a time."""
    body = zlib.compress(data, level)
    assert zlib_header(body)
    assert inflated(body, "deflate", chunk=chunk) == data


@pytest.mark.parametrize("start", [b"", b"\x78"], ids=["empty", "one-byte"])
def test_a_deflate_body_cut_in_its_header_is_cut(start: bytes) -> None:
    """One byte of a stream is a cut one; none is an empty body, as aiohttp reads it."""
    if start:
        with pytest.raises(aiohttp.ClientPayloadError, match="ends before its end"):
            inflated(start, "deflate", chunk=1)
    else:
        assert inflated(start, "deflate", chunk=1) == b""


@pytest.mark.parametrize("raw", [False, True], ids=["zlib", "raw"])
def test_a_deflate_stream_alone_is_decoded(raw: bool) -> None:
    assert inflated(deflated(PICTURE, raw), "deflate", chunk=999) == PICTURE


@pytest.mark.parametrize(
    ("body", "coding", "problem"),
    [
        (gzip.compress(PICTURE) + b"garbage after the end", "gzip", "not a valid gzip member"),
        (gzip.compress(PICTURE) + b"\x00" * 8, "gzip", "not a valid gzip member"),
        (gzip.compress(PICTURE) + b"\x1f\x8b\x08", "gzip", "ends before its end"),
        (deflated(PICTURE, False) + b"garbage", "deflate", "goes on after its end"),
        (deflated(PICTURE, True) + deflated(b"more", True), "deflate", "goes on after its end"),
    ],
    ids=["gzip-garbage", "gzip-zeros", "gzip-cut-member", "deflate-garbage", "deflate-twice"],
)
async def test_a_result_with_bytes_after_its_end_is_not_saved(
    body: bytes, coding: str, problem: str
) -> None:
    failure = await saved_or_error(body, coding)
    assert isinstance(failure, GPTunnelError)
    assert problem in str(failure)


# -- an empty body is empty, as aiohttp reads it ----------------------------------------------


async def outcome(status: int, coding: str, *, auto_decompress: bool) -> tuple[str, str]:
    """What a read and a download get from a host answering ``status`` with an empty body
    labelled ``coding``, through a borrowed session that does (or does not) decompress:
    the type of each error, or ``"read"`` / ``"saved"``."""

    async def empty(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=b"", headers={"Content-Encoding": coding})

    results: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        async with (
            loopback_server(empty) as server,
            aiohttp.ClientSession(auto_decompress=auto_decompress) as session,
            GPTunnelClient(
                api_key=API_KEY,
                base_url=str(server.make_url("/v1")),
                session=session,
                max_retries=0,
            ) as client,
        ):
            calls = [
                client.get_result("task-1"),
                client.download_result(str(server.make_url("/r.png")), Path(folder)),
            ]
            for call, done in zip(calls, ("read", "saved"), strict=True):
                try:
                    await call
                except GPTunnelError as exc:
                    results.append(type(exc).__name__)
                else:
                    results.append(done)
    return results[0], results[1]


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize("status", [200, 401, 404, 410, 503])
async def test_an_empty_body_labelled_compressed_is_read_as_aiohttp_reads_it(
    status: int, coding: str
) -> None:
    """An empty error page labelled ``gzip`` (as some servers send one) is an empty
    body, as aiohttp decodes it: a 404 from storage is the expired result's
    ``NotFoundError``, a 401 the API's ``AuthenticationError``. The SDK's own inflater
    called it a cut body, a retried ``APIConnectionError``."""
    assert await outcome(status, coding, auto_decompress=False) == await outcome(
        status, coding, auto_decompress=True
    )


# -- a bomb is decoded a piece at a time ------------------------------------------------------

PIECE = 64 * 1024
"""The most decoded bytes the SDK holds of a body at once, whatever it inflates to."""


@settings(max_examples=60)
@given(
    runs=st.lists(
        st.tuples(st.binary(min_size=1, max_size=3), st.integers(1, 300_000)), max_size=4
    ),
    members_at=st.lists(st.integers(0, 4), max_size=2),
    chunk=st.integers(1, 70_000),
    coding=st.sampled_from(["gzip", "deflate"]),
)
def test_a_body_that_inflates_far_is_decoded_in_bounded_pieces(
    runs: list[tuple[bytes, int]], members_at: list[int], chunk: int, coding: str
) -> None:
    """However far a chunk inflates (a 64 KiB read of zeros is 64 MiB decoded), each piece
    the inflater gives is at most 64 KiB, and together they are the body: zlib's
    output left over after a full piece is asked for, not lost or called a cut."""
    parts = [pattern * repeat for pattern, repeat in runs]
    if coding == "gzip":
        cuts = sorted({min(at, len(parts)) for at in members_at})
        groups = [b"".join(parts[a:b]) for a, b in itertools.pairwise([0, *cuts, len(parts)])]
        body = members(*groups)
    else:
        body = zlib.compress(b"".join(parts))
    inflater = _Inflater(coding, 1 << 30)
    pieces = [
        piece for at in range(0, len(body), chunk) for piece in inflater.feed(body[at : at + chunk])
    ]
    inflater.finish()
    assert all(0 < len(piece) <= PIECE for piece in pieces)
    assert b"".join(pieces) == b"".join(parts)


async def test_a_bomb_under_max_bytes_is_saved_without_holding_it() -> None:
    """A 32 MiB result sent as 32 KiB of gzip is saved whole, while the SDK holds a few
    pieces of it at a time (before, one read inflated to the whole 32 MiB in memory,
    copied again for the check of its first bytes; recent aiohttp inflates in bounded
    pieces itself)."""
    size = 32 << 20
    with tempfile.TemporaryDirectory() as folder:
        async with plain_client(gzip.compress(PICTURE[:8] + bytes(size - 8))) as (client, url):
            tracemalloc.start()
            try:
                saved = await client.download_result(url, Path(folder) / "r.png")
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert saved.stat().st_size == size
        with saved.open("rb") as file:
            assert file.read(8) == PICTURE[:8]
            assert all(not any(block) for block in iter(lambda: file.read(PIECE), b""))
    assert peak < 8 << 20


# -- the size as sent ------------------------------------------------------------------------

UNCOMPRESSIBLE = PICTURE[:8] + random.Random(7).randbytes(20_000)
"""A result that gzip and deflate make a little larger, as a PNG or a JPEG."""


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: deflated(data, True)),
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
async def test_max_bytes_is_the_size_decoded_whatever_the_size_as_sent(
    coding: str, encode: Callable[[bytes], bytes], sized: bool
) -> None:
    """A result of exactly ``max_bytes`` that is a few bytes longer compressed is saved:
    ``max_bytes`` counts the bytes written (before, a ``Content-Length`` of the
    compressed size over ``max_bytes`` refused it, "the result is 20031 bytes")."""
    body = encode(UNCOMPRESSIBLE)
    assert len(body) > len(UNCOMPRESSIBLE)
    size = len(UNCOMPRESSIBLE)
    assert await saved_or_error(body, coding, sized=sized, max_bytes=size) == UNCOMPRESSIBLE
    failure = await saved_or_error(body, coding, sized=sized, max_bytes=size - 1)
    assert isinstance(failure, DownloadError)
    assert f"over max_bytes={size - 1}" in str(failure)


def most_as_sent(limit: int) -> int:
    """The most bytes the SDK reads of a coded body of at most ``limit`` bytes decoded."""
    return limit + limit // 64 + (1 << 20)


def padded(data: bytes, padding: str, size: int) -> tuple[str, bytes]:
    """``data`` encoded with about ``size`` bytes of padding that decodes to nothing: a
    gzip header's file name or comment, gzip members' extra fields, or a deflate
    stream's empty stored blocks (what a flush writes), in zlib's format or raw."""
    if padding in ("gzip-name", "gzip-comment"):
        flag = 0x08 if padding == "gzip-name" else 0x10
        member = gzip.compress(data)
        return "gzip", member[:3] + bytes([flag]) + member[4:10] + b"n" * size + b"\0" + member[10:]
    if padding == "gzip-extra":
        extra = min(size, 0xFFFF)
        empty = gzip.compress(b"")
        pad = empty[:3] + b"\x04" + empty[4:10] + extra.to_bytes(2, "little") + b"e" * extra
        return "gzip", pad + empty[10:] + (pad + empty[10:]) * (
            size // max(extra, 1)
        ) + gzip.compress(data)
    blocks = b"\x00\x00\x00\xff\xff" * (size // 5)
    raw = blocks + deflated(data, True)
    if padding == "deflate-raw":
        return "deflate", raw
    return "deflate", b"\x78\x9c" + raw + zlib.adler32(data).to_bytes(4, "big")


@settings(max_examples=40, deadline=None)
@given(
    padding=st.sampled_from(
        ["gzip-name", "gzip-comment", "gzip-extra", "deflate-zlib", "deflate-raw"]
    ),
    size=st.integers(0, 3 << 20),
    sized=st.booleans(),
)
async def test_a_coded_body_is_read_only_as_far_as_its_decoded_bytes_can_take(
    padding: str, size: int, sized: bool
) -> None:
    """A body padded with bytes that decode to nothing (which the caps, counting decoded
    bytes, never stopped: a 2xx API answer ran on until its timeout, gigabytes on a fast
    link) is refused once it is past what ``max_bytes`` decoded can take as sent, a
    ``DownloadError`` that saves nothing; one within it is saved."""
    coding, body = padded(PICTURE, padding, size)
    outcome = await saved_or_error(body, coding, sized=sized, max_bytes=len(PICTURE))
    if len(body) <= most_as_sent(len(PICTURE)):
        assert outcome == PICTURE
    else:
        assert isinstance(outcome, DownloadError)
        assert f"bytes as sent, more than a body of at most {len(PICTURE)} bytes" in str(outcome)


async def test_an_api_answer_padded_past_the_cap_is_refused_at_once() -> None:
    """A 2xx task object behind 6 MiB of a gzip header's file name is a
    ``ResponseDecodeError`` with its status, not retried (before, it was read whole, and
    one that never ended was read until the timeout, then retried)."""
    asked: list[str] = []
    _, body = padded(json.dumps(DONE).encode(), "gzip-name", 6 << 20)

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        return await serving(body, "gzip", 1 << 16)(request)

    async with (
        loopback_server(answer) as server,
        GPTunnelClient(
            api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=2
        ) as client,
    ):
        with pytest.raises(ResponseDecodeError, match="bytes as sent") as caught:
            await client.get_result("task-1")
    assert caught.value.status_code == 200
    assert asked == ["/v1/faceswap/result"]
