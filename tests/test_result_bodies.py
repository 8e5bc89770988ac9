"""A result download's ``200`` answer that is a document (an error page, a storage
host's ``AccessDenied`` in JSON or XML) is refused, never saved as the result.

Before, a storage host that answered ``200 OK`` with an HTML error page had it saved as
``result.png`` (or ``<task id>.png`` when it even said ``image/png``): a broken file
and no error. Now such an answer is a ``DownloadError`` naming the host's origin and
the ``Content-Type``, not retried, and nothing is written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import DownloadError, GPTunnelClient, MediaClip, MediaTask, Task
from gptunnel_async._sansio.result_bodies import (
    EMPTY,
    HTML,
    JSON,
    MARKUP,
    SNIFF_BYTES,
    TEXT,
    XML,
    declares_media,
    document_kind,
    media_start,
    refused_start,
    refused_type,
    sniffed_kind,
)

from .conftest import API_KEY, loopback_server

SIGNATURE = "SIGNATURE-3c1f9"
"""A signed link's secret, in the query of every URL fetched here: no error may show it."""

MEDIA_STARTS = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "gif": b"GIF89a\x01\x00\x01\x00",
    "webp": b"RIFF\x24\x00\x00\x00WEBPVP8 ",
    "wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00",
    "heic": b"\x00\x00\x00\x18ftypheic\x00\x00",
    "quicktime without ftyp": b"\x00\x00\x00\x08wide\x00\x3a\x1c\x2fmdat",
    "mp3 with tags": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "mp3 frame": b"\xff\xfb\x90\x64\x00\x00\x00\x00",
    "aac": b"\xff\xf1\x50\x80\x02\x1f\xfc",
    "ogg": b"OggS\x00\x02\x00\x00\x00\x00",
    "flac": b"fLaC\x00\x00\x00\x22\x10\x00",
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81",
    "bmp": b"BM\x36\x00\x0c\x00\x00\x00\x00\x00",
    "tiff": b"II*\x00\x08\x00\x00\x00",
}
"""The first bytes of the image, audio and video formats results come in."""

PICTURE = MEDIA_STARTS["png"] + bytes(range(256)) * 8

ERROR_PAGES = {
    "html": (b"<!DOCTYPE html>\n<html><body>Access denied</body></html>", HTML),
    "html, no doctype": (b"<html><head><title>403</title></head></html>", HTML),
    "json": (b'{"error": "AccessDenied", "message": "Request has expired"}', JSON),
    "json, spaced": (b'{\n  "code": 403\n}', JSON),
    "empty json": (b"{}", JSON),
    "s3 xml": (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code></Error>',
        XML,
    ),
    "xml without a declaration": (b"<Error><Code>AccessDenied</Code></Error>", MARKUP),
    "azure xml, with a byte-order mark": (
        b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed',
        XML,
    ),
    "html after blank lines": (b"\r\n\n   \t<!doctype HTML><title>x</title>", HTML),
    "a comment first": (b"<!-- proxy --><html></html>", MARKUP),
    "empty": (b"", EMPTY),
    "blank": (b"\r\n  \r\n", EMPTY),
    "json array": (b'[{"code": "AccessDenied"}]', JSON),
    "empty json array": (b"[ ]", JSON),
    "utf-16 html": ("\ufeff<!DOCTYPE html><html>Forbidden".encode("utf-16-le"), HTML),
    "utf-16 be xml": ('\ufeff<?xml version="1.0"?><Error/>'.encode("utf-16-be"), XML),
    "utf-32 json": ('\ufeff{"error": 1}'.encode("utf-32-le"), JSON),
}


# -- the rules ------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "kind"), list(ERROR_PAGES.values()), ids=list(ERROR_PAGES))
def test_an_error_page_is_sniffed_for_what_it_is(body: bytes, kind: str) -> None:
    assert sniffed_kind(body) == kind


@pytest.mark.parametrize("start", list(MEDIA_STARTS.values()), ids=list(MEDIA_STARTS))
def test_no_media_format_is_sniffed_as_a_document(start: bytes) -> None:
    assert sniffed_kind(start) is None


@pytest.mark.parametrize("start", list(MEDIA_STARTS.values()), ids=list(MEDIA_STARTS))
def test_every_media_format_is_known_by_its_start(start: bytes) -> None:
    assert media_start(start)


@given(
    start=st.sampled_from(sorted(MEDIA_STARTS.values())),
    rest=st.binary(max_size=SNIFF_BYTES),
    content_type=st.sampled_from(
        [None, "image/png", "audio/mpeg", "video/mp4", "application/octet-stream", ""]
    ),
    media=st.booleans(),
)
def test_a_media_file_is_never_refused_whatever_follows_its_start(
    start: bytes, rest: bytes, content_type: str | None, media: bool
) -> None:
    """Any body in a media format, of any declared type but a document's, is saved."""
    assert refused_type(content_type, media) is None
    assert refused_start(content_type, start + rest, media) is None


@given(
    leading=st.text(" \t\r\n\f", max_size=40).map(str.encode),
    bom=st.booleans(),
    page=st.sampled_from(sorted(body for body, _ in ERROR_PAGES.values() if body.isascii())),
    declared=st.sampled_from(["image/png", "IMAGE/JPEG; q=1", "audio/mpeg", "video/mp4"]),
)
def test_a_document_under_a_media_type_is_refused_after_any_blank_start(
    leading: bytes, bom: bool, page: bytes, declared: str
) -> None:
    head = (b"\xef\xbb\xbf" if bom else b"") + leading + page.removeprefix(b"\xef\xbb\xbf")
    assert refused_start(declared, head, media=False) is not None
    assert refused_start(declared, head, media=True) is not None


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("text/html", HTML),
        ("TEXT/HTML; charset=utf-8", HTML),
        ("application/xhtml+xml", HTML),
        ("application/json", JSON),
        ("application/problem+json", JSON),
        ("text/json", JSON),
        ("application/xml", XML),
        ("text/xml; charset=UTF-8", XML),
        ("application/problem+xml", XML),
        ("text/plain", TEXT),
        ("text/csv", TEXT),
        ("image/png", None),
        ("image/svg+xml", None),  # a picture, if not one a result comes as
        ("application/octet-stream", None),
        ("binary/octet-stream", None),
        ("application/x-unknown", None),
        ("", None),
        (None, None),
        ("text/htm\u212a", None),  # not ASCII: no look-alike of a type
    ],
)
def test_a_content_type_names_a_document_or_not(content_type: str | None, kind: str | None) -> None:
    assert document_kind(content_type) == kind
    assert refused_type(content_type, media=True) == kind
    assert refused_type(content_type, media=False) is None


@pytest.mark.parametrize(
    ("content_type", "declared"),
    [
        ("image/png", True),
        ("Audio/MPEG", True),
        ("video/webm; codecs=vp9", True),
        ("image/svg+xml", False),
        ("application/octet-stream", False),
        ("text/html", False),
        (None, False),
    ],
)
def test_which_types_declare_a_media_file(content_type: str | None, declared: bool) -> None:
    assert declares_media(content_type) is declared


@pytest.mark.parametrize(
    ("content_type", "body", "media", "refused"),
    [
        ("image/png", b"<html></html>", False, True),  # the host says it is a picture
        ("application/octet-stream", b"<html></html>", True, True),  # the task says so
        ("application/octet-stream", b"<html></html>", False, False),  # nothing promised
        (None, b'{"a": 1}', True, True),
        (None, b'{"a": 1}', False, False),
        ("image/svg+xml", b'<?xml version="1.0"?><svg/>', True, False),  # SVG is markup
        ("image/png", b"", True, True),  # a 200 and then nothing is no picture either
        ("image/png", b" \r\n", False, True),
        ("application/octet-stream", b"", False, False),
        ("image/png", b"{not json at all", True, False),
        ("image/png", b"<", True, False),
        ("image/png", b"<3 ascii art", True, False),
        ("image/png", b"<\x00\x01\x02", True, False),  # binary bytes of no known format
        ("image/png", b"\xff\xfe\x90\x64\x00", True, False),  # an MPEG frame, not UTF-16
        ("image/png", MEDIA_STARTS["png"], True, False),
    ],
)
def test_the_start_of_a_body_is_judged_where_media_is_promised(
    content_type: str | None, body: bytes, media: bool, refused: bool
) -> None:
    assert (refused_start(content_type, body, media) is not None) is refused


# -- downloads on a real server -------------------------------------------------------


class Storage:
    """A loopback storage host: ``/<anything>?type=T&page=NAME`` answers 200 with
    ``ERROR_PAGES[NAME]`` (``PICTURE`` without ``page``) under ``Content-Type: T`` (a
    header line for each ``type``; aiohttp's ``application/octet-stream`` without),
    ``&drip=1`` a byte at a time; it counts the requests."""

    def __init__(self) -> None:
        self.requests = 0
        self.url = URL()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        name = request.query.get("page")
        body = PICTURE if name is None else ERROR_PAGES[name][0]
        response = web.StreamResponse()
        for kind in request.query.getall("type", []):
            response.headers.add("Content-Type", kind)
        await response.prepare(request)
        step = 1 if "drip" in request.query else max(len(body), 1)
        for at in range(0, len(body), step):
            await response.write(body[at : at + step])
        await response.write_eof()
        return response

    def at(self, path: str, *types: str, **query: str) -> str:
        """The URL of ``path`` answered as ``query`` says, under each of ``types``."""
        pairs = [("type", kind) for kind in types] + list(query.items())
        return str(self.url.with_path(path).with_query([*pairs, ("X-Amz-Signature", SIGNATURE)]))


@asynccontextmanager
async def storage_and_client() -> AsyncIterator[tuple[Storage, GPTunnelClient]]:
    storage = Storage()
    async with loopback_server(storage.handle) as server:
        storage.url = server.make_url("/")
        async with GPTunnelClient(
            api_key=API_KEY, base_url=str(server.make_url("/v1")), max_retries=2
        ) as client:
            yield storage, client


def names(folder: Path) -> list[str]:
    """The names in ``folder``, sorted: temporary files included."""
    return sorted(path.name for path in folder.iterdir())


def done(url: str) -> Task:
    return Task(id="t1", status="done", result=url)


def refusal_checked(error: DownloadError, storage: Storage, content_type: str | None) -> None:
    """The error names the origin and the type, and neither the path's query nor the key."""
    text = str(error)
    assert str(storage.url.origin()) in text
    assert (content_type or "no single Content-Type") in text
    assert SIGNATURE not in text and API_KEY not in text
    assert "nothing was saved" in text


REFUSED = [
    # (where, Content-Type header lines, page): a task's result, or a URL's media name
    ("task", ["text/html"], "html"),
    ("task", ["application/json"], "json"),
    ("task", ["application/xml"], "s3 xml"),
    ("task", ["text/plain"], "json"),
    ("task", ["image/png"], "html"),
    ("task", ["application/octet-stream"], "azure xml, with a byte-order mark"),
    ("task", [], "json"),  # aiohttp's application/octet-stream
    ("task", ["image/png", "image/png"], "empty json"),
    ("url", ["text/html; charset=utf-8"], "html"),
    ("url", ["image/jpeg"], "html after blank lines"),
    ("url", [], "xml without a declaration"),
    ("task", ["image/png"], "empty"),
    ("url", ["audio/mpeg"], "blank"),
    ("task", [], "json array"),
    ("task", ["image/png"], "utf-16 html"),
    ("task", ["application/octet-stream"], "utf-32 json"),
]


def stated(types: list[str]) -> str | None:
    """The one ``Content-Type`` the answer under ``types`` has, as the error names it."""
    if not types:
        return "application/octet-stream"
    return types[0] if len(types) == 1 else None


@pytest.mark.parametrize(("where", "types", "page"), REFUSED)
@pytest.mark.parametrize("into", ["folder", "named file"])
async def test_an_error_page_answered_200_is_refused_and_nothing_is_left(
    tmp_path: Path, where: str, types: list[str], page: str, into: str
) -> None:
    async with storage_and_client() as (storage, client):
        if where == "task":
            source: Task | str = done(storage.at("/task/image/t1", *types, page=page))
        else:
            source = storage.at("/results/t1_result.png", *types, page=page)
        dest = tmp_path if into == "folder" else tmp_path / "result.png"
        with pytest.raises(DownloadError) as caught:
            await client.download_result(source, dest)
        assert storage.requests == 1  # not retried: the host answers the same again
    refusal_checked(caught.value, storage, stated(types))
    assert names(tmp_path) == []  # no file, no temporary file


async def test_a_named_file_is_kept_when_the_answer_is_an_error_page(tmp_path: Path) -> None:
    dest = tmp_path / "result.png"
    dest.write_bytes(b"the picture saved yesterday")
    async with storage_and_client() as (storage, client):
        with pytest.raises(DownloadError):
            await client.download_result(done(storage.at("/r.png", "image/png", page="html")), dest)
    assert dest.read_bytes() == b"the picture saved yesterday"
    assert names(tmp_path) == ["result.png"]


async def test_an_error_page_sent_a_byte_at_a_time_is_refused_too(tmp_path: Path) -> None:
    """The start is judged on the first bytes together, however they arrive."""
    async with storage_and_client() as (storage, client):
        url = storage.at("/x", "image/png", page="html after blank lines", drip="1")
        with pytest.raises(DownloadError, match="an HTML page"):
            await client.download_result(done(url), tmp_path)
    assert names(tmp_path) == []


async def test_the_origin_named_is_the_one_that_answered_after_a_redirect(
    tmp_path: Path,
) -> None:
    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(final.at("/r.png", "application/json", page="json"))

    final = Storage()
    async with loopback_server(final.handle) as server, loopback_server(hop) as first:
        final.url = server.make_url("/")
        async with GPTunnelClient(api_key=API_KEY, base_url=str(first.make_url("/v1"))) as client:
            with pytest.raises(DownloadError) as caught:
                await client.download_result(done(str(first.make_url("/go"))), tmp_path)
    refusal_checked(caught.value, final, "application/json")


SAVED = [
    # (where, Content-Type header lines, saved as): binary bytes of an unknown type
    ("task", ["application/octet-stream"], "t1.bin"),
    ("task", [], "t1.bin"),
    ("task", ["image/png", "image/png"], "t1.bin"),
    ("task", ["image/png"], "t1.png"),
    ("task", ["binary/octet-stream"], "t1.bin"),
    ("task", ["image/svg+xml"], "t1.bin"),
    ("url", ["application/octet-stream"], "result.bin"),
    # a media file under a document's type (a host that labels every file text/plain)
    ("task", ["text/plain"], "t1.bin"),
    ("task", ["text/html; charset=utf-8"], "t1.bin"),
    ("url", ["application/json"], "result.bin"),
]


@pytest.mark.parametrize(("where", "types", "name"), SAVED)
async def test_binary_bytes_of_any_type_but_a_documents_are_saved(
    tmp_path: Path, where: str, types: list[str], name: str
) -> None:
    async with storage_and_client() as (storage, client):
        url = storage.at("/task/image/t1", *types)
        saved = await client.download_result(done(url) if where == "task" else url, tmp_path)
    assert saved == tmp_path / name
    assert saved.read_bytes() == PICTURE


async def test_a_document_that_promises_no_media_is_saved_as_it_is(tmp_path: Path) -> None:
    """A URL you gave, naming no media file, saved under a name of no media type: the
    SDK cannot tell what you expect, so it saves what came."""
    async with storage_and_client() as (storage, client):
        url = storage.at("/report", "application/json", page="json")
        saved = await client.download_result(url, tmp_path / "report.json")
    assert saved.read_bytes() == ERROR_PAGES["json"][0]


async def test_every_clip_of_a_task_is_held_to_media(tmp_path: Path) -> None:
    """``download_results`` saves a task's files: an error page among them is refused,
    the files before it stay, and no page is saved."""
    async with storage_and_client() as (storage, client):
        task = MediaTask(
            id="m1",
            status="done",
            clips=(
                MediaClip(audio_url=storage.at("/a", "audio/mpeg")),
                MediaClip(audio_url=storage.at("/b", "text/html", page="html")),
            ),
        )
        with pytest.raises(DownloadError) as caught:
            await client.download_results(task, tmp_path)
    refusal_checked(caught.value, storage, "text/html")
    assert names(tmp_path) == ["m1-0.mp3"]


async def test_the_emulators_results_are_saved(tmp_path: Path) -> None:
    """The emulator's storage serves real pictures: a plain download still works."""
    from gptunnel_async.testing import FakeGPTunnel

    async with FakeGPTunnel() as fake, fake.client() as client:
        task_id = fake.script_task(steps=[("done", 100)])
        saved = await client.download_result(await client.faceswap.result(task_id), tmp_path)
    assert saved.read_bytes().startswith(b"\x89PNG")
