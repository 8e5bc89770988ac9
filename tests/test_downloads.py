"""download_result: atomic, size-capped, http(s) only, and the key never leaves the API origin."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from gptunnel_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    DownloadError,
    GPTunnelClient,
    GPTunnelError,
    MediaTask,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    Task,
)
from gptunnel_async._sansio.requests import RequestBuilder
from gptunnel_async._sansio.responses import (
    RESULT_GONE,
    RESULT_REFUSED,
    decode_media_task,
    structure,
)
from gptunnel_async.testing import FakeGPTunnel, instant_waits

from . import faults
from .conftest import (
    API_KEY,
    ScriptedAPI,
    client_tasks,
    connections_in_use,
    loopback_server,
    media_json,
    task_json,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000


class Storage:
    """A second loopback origin standing in for object storage."""

    def __init__(self) -> None:
        self.seen_headers: list[dict[str, str]] = []
        self.routes: dict[str, web.StreamResponse | object] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen_headers.append(dict(request.headers))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="NoSuchKey")
        return await handler(request)  # type: ignore[operator,no-any-return]


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    store = Storage()
    async with loopback_server(store.handle) as server:
        store.url = str(server.make_url("/"))
        yield store


def serve_bytes(body: bytes, chunked: bool = False) -> object:
    async def handler(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=body, content_type="image/png")
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 1024):
            await response.write(body[start : start + 1024])
        await response.write_eof()
        return response

    return handler


def done_task(url: str) -> object:
    return structure(Task, task_json(status="done", percent=100, result=url))


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_a_done_task_is_saved_atomically_and_its_path_returned(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/r/result.png"] = serve_bytes(PNG)
    path = await client.download_result(
        done_task(storage.url + "r/result.png"), tmp_path / "out.png"
    )  # type: ignore[arg-type]
    assert path == tmp_path / "out.png"
    assert path.read_bytes() == PNG
    assert folder_listing(tmp_path) == ["out.png"]


async def test_a_folder_destination_uses_the_url_file_name(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/r/abc_faceswap_result.png"] = serve_bytes(PNG)
    path = await client.download_result(storage.url + "r/abc_faceswap_result.png", tmp_path)
    assert path == tmp_path / "abc_faceswap_result.png"


async def test_the_key_is_never_sent_to_the_storage_origin(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/r.png"] = serve_bytes(PNG)
    await client.download_result(storage.url + "r.png", tmp_path / "a.png")
    assert "Authorization" not in storage.seen_headers[0]
    assert API_KEY not in str(storage.seen_headers)


async def test_a_redirect_to_another_origin_drops_the_key(
    client: GPTunnelClient, api: ScriptedAPI, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/final.png"] = serve_bytes(PNG)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(storage.url + "final.png")

    api.script(redirect)
    path = await client.download_result(api.base_url + "/files/x.png", tmp_path / "x.png")
    assert path.read_bytes() == PNG
    assert "Authorization" not in api.requests[0]["headers"]  # a result fetch, not an API call
    assert "Authorization" not in storage.seen_headers[0]


@pytest.mark.parametrize("target", ["ftp://example.com/x.png", "file:///etc/passwd", "data:,x"])
async def test_redirects_to_other_schemes_are_refused(
    target: str, client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    storage.routes["/r.png"] = redirect
    with pytest.raises(DownloadError, match="redirect"):
        await client.download_result(storage.url + "r.png", tmp_path / "x.png")
    assert folder_listing(tmp_path) == []


@pytest.mark.parametrize("url", ["ftp://example.com/x.png", "file:///etc/passwd", "x.png", ""])
async def test_only_http_urls_are_downloaded(
    url: str, client: GPTunnelClient, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError):
        await client.download_result(url, tmp_path / "x.png")


async def test_a_task_that_is_not_done_has_nothing_to_download(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    running = structure(Task, task_json(status="running"))
    with pytest.raises(ConfigurationError, match="no result"):
        await client.download_result(running, tmp_path / "x.png")


async def test_a_done_media_task_with_one_file_is_saved(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/m/clip.mp3"] = serve_bytes(b"ID3 audio")
    clip = {"audio_url": storage.url + "m/clip.mp3", "status": "succeeded"}
    task = decode_media_task(json.dumps(media_json("succeeded", url=None, result=[clip])).encode())
    path = await client.download_result(task, tmp_path)
    assert path == tmp_path / "clip.mp3" and path.read_bytes() == b"ID3 audio"


async def test_a_clip_that_failed_is_not_saved_whatever_url_it_carries(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/m/good.mp3"] = serve_bytes(b"ID3 good")
    storage.routes["/m/bad.mp3"] = serve_bytes(b"ID3 bad")
    clips = [
        {"status": "error", "error": "flagged", "audio_url": storage.url + "m/bad.mp3"},
        {"status": "succeeded", "audio_url": storage.url + "m/good.mp3"},
    ]
    task = decode_media_task(json.dumps(media_json("succeeded", url=None, result=clips)).encode())
    assert [path.name for path in await client.download_results(task, tmp_path)] == ["good.mp3"]
    assert folder_listing(tmp_path) == ["good.mp3"]
    assert (await client.download_result(task, tmp_path / "one.mp3")).read_bytes() == b"ID3 good"
    assert len(storage.seen_headers) == 2  # good.mp3 twice, bad.mp3 never


async def test_a_task_listing_more_files_than_any_model_gives_saves_none(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes.update({f"/m/{n}.mp3": serve_bytes(b"ID3") for n in range(102)})
    clips = [{"audio_url": f"{storage.url}m/{n}.mp3"} for n in range(101)]
    task = decode_media_task(json.dumps(media_json("succeeded", url=None, result=clips)).encode())
    with pytest.raises(DownloadError, match="lists 101 result files, more than the 100"):
        await client.download_results(task, tmp_path)
    assert folder_listing(tmp_path) == [] and storage.seen_headers == []
    saved = await client.download_result(task, tmp_path, clip=100)  # one at a time: yes
    assert saved.name == "100.mp3"
    hundred = decode_media_task(
        json.dumps(media_json("succeeded", url=None, result=clips[:100])).encode()
    )
    assert len(await client.download_results(hundred, tmp_path / "")) == 100


async def test_files_saved_before_a_failure_are_kept_and_named_in_its_note(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    """Clip 2's result has expired: clips 0 and 1 stay, and the error says where (a
    caller that saves again would otherwise make ``0-1.mp3`` beside ``0.mp3``)."""
    storage.routes.update({f"/m/{n}.mp3": serve_bytes(b"ID3") for n in range(2)})
    clips = [{"audio_url": f"{storage.url}m/{n}.mp3"} for n in range(3)]
    task = decode_media_task(json.dumps(media_json("succeeded", url=None, result=clips)).encode())
    with pytest.raises(NotFoundError) as raised:
        await client.download_results(task, tmp_path)
    assert folder_listing(tmp_path) == ["0.mp3", "1.mp3"]
    [note] = raised.value.__notes__
    assert (
        note == f"saved before this failure, and kept: {tmp_path / '0.mp3'}, {tmp_path / '1.mp3'}"
    )


async def test_a_failure_before_any_file_is_saved_has_no_note(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    clips = [{"audio_url": f"{storage.url}m/{n}.mp3"} for n in range(2)]
    task = decode_media_task(json.dumps(media_json("succeeded", url=None, result=clips)).encode())
    with pytest.raises(NotFoundError) as raised:
        await client.download_results(task, tmp_path)
    assert not getattr(raised.value, "__notes__", None)


async def test_a_media_task_with_several_files_asks_for_one_url(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    clips = [{"audio_url": f"https://s/{n}.mp3"} for n in (1, 2)]
    task = decode_media_task(json.dumps(media_json("succeeded", url=None, result=clips)).encode())
    with pytest.raises(ConfigurationError, match=r"2 result files"):
        await client.download_result(task, tmp_path)
    assert folder_listing(tmp_path) == []


@pytest.mark.parametrize(
    "reply",
    [
        serve_bytes(PNG),
        serve_bytes(PNG, chunked=True),
        faults.gzipped(PNG),  # about 50 bytes on the wire: the decoded size is what counts
        faults.gzipped(PNG, declare_length=True),
    ],
    ids=["plain", "chunked", "gzip-chunked", "gzip-with-length"],
)
async def test_a_body_over_max_bytes_fails_and_leaves_nothing(
    reply: object, client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/big.png"] = reply
    dest = tmp_path / "big.png"
    dest.write_bytes(b"previous")
    with pytest.raises(DownloadError, match="max_bytes"):
        await client.download_result(storage.url + "big.png", dest, max_bytes=1000)
    assert dest.read_bytes() == b"previous"
    assert folder_listing(tmp_path) == ["big.png"]


async def test_an_expired_result_is_not_found_and_dest_untouched(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="NoSuchKey"):
        await client.download_result(storage.url + "gone.png", tmp_path / "gone.png")
    assert folder_listing(tmp_path) == []


S3_EXPIRED = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Request has expired"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, b"NoSuchKey", NotFoundError),
        (404, b'{"error": {"message": "Not Found", "type": "not_found_error"}}', NotFoundError),
        (403, S3_EXPIRED, PermissionDeniedError),
        (410, b"", APIError),
    ],
)
async def test_a_result_gone_from_storage_says_it_expired_not_to_check_base_url(
    client: GPTunnelClient,
    storage: Storage,
    tmp_path: Path,
    status: int,
    body: bytes,
    error: type[APIError],
) -> None:
    async def gone(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body)

    storage.routes["/gone.png"] = gone
    with pytest.raises(error) as caught:
        await client.download_result(storage.url + "gone.png", tmp_path / "gone.png")
    assert str(caught.value).endswith(f"({RESULT_GONE})")
    assert "base_url" not in str(caught.value)


@pytest.mark.parametrize("status", [400, 409, 500])
async def test_other_storage_errors_get_no_expiry_hint(
    client: GPTunnelClient, storage: Storage, tmp_path: Path, status: int, instant: None
) -> None:
    async def refused(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text="nope")

    storage.routes["/x.png"] = refused
    with pytest.raises(APIError) as caught:
        await client.download_result(storage.url + "x.png", tmp_path / "x.png")
    assert caught.value.status_code == status and "expired" not in str(caught.value)
    assert str(caught.value) == f"{status}: nope"


@pytest.mark.parametrize(
    "body", [b"", b'{"error": {"message": "Unauthorized", "type": "unauthorized_request_error"}}']
)
async def test_a_storage_hosts_401_does_not_blame_the_api_key(
    client: GPTunnelClient, storage: Storage, tmp_path: Path, body: bytes
) -> None:
    """No download sends the API key, so a storage host's 401 is not the key's fault;
    its AuthenticationError said "check the API key", and a user replaced a good one."""

    async def refused(request: web.Request) -> web.StreamResponse:
        assert "Authorization" not in request.headers
        return web.Response(status=401, body=body)

    storage.routes["/locked.png"] = refused
    with pytest.raises(AuthenticationError) as caught:
        await client.download_result(storage.url + "locked.png", tmp_path / "locked.png")
    assert str(caught.value).endswith(f"({RESULT_REFUSED})")
    assert "check the API key" not in str(caught.value)


async def test_an_api_path_that_is_missing_still_says_to_check_base_url(
    fake: FakeGPTunnel,
) -> None:
    async with fake.client(base_url=fake.base_url.removesuffix("/v1")) as lost:
        with pytest.raises(NotFoundError, match="check base_url") as caught:
            await lost.get_result("t-1")
    assert RESULT_GONE not in str(caught.value)


async def test_a_cut_body_is_retried_and_then_succeeds(
    client: GPTunnelClient, storage: Storage, tmp_path: Path, instant: None
) -> None:
    attempts = 0

    async def cut_once(request: web.Request) -> web.StreamResponse:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            return web.Response(body=PNG)
        response = web.StreamResponse(headers={"Content-Length": str(len(PNG))})
        await response.prepare(request)
        await response.write(PNG[:100])
        assert request.transport is not None
        request.transport.abort()
        return response

    storage.routes["/cut.png"] = cut_once
    path = await client.download_result(storage.url + "cut.png", tmp_path / "cut.png")
    assert path.read_bytes() == PNG
    assert attempts == 2
    assert folder_listing(tmp_path) == ["cut.png"]


async def test_cancelling_a_download_leaves_dest_and_folder_as_they_were(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(PNG))})
        await response.prepare(request)
        await response.write(PNG[:100])
        started.set()
        await asyncio.sleep(10)
        return response

    storage.routes["/slow.png"] = slow
    dest = tmp_path / "slow.png"
    dest.write_bytes(b"previous")
    download = asyncio.create_task(client.download_result(storage.url + "slow.png", dest))
    await started.wait()
    await asyncio.sleep(0.05)
    download.cancel()
    with pytest.raises(asyncio.CancelledError):
        await download
    assert dest.read_bytes() == b"previous"
    assert folder_listing(tmp_path) == ["slow.png"]


async def test_a_missing_folder_fails_before_any_request(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await client.download_result(storage.url + "x.png", tmp_path / "nope" / "x.png")
    assert str(caught.value) == (
        f"the folder {str(tmp_path / 'nope')!r} does not exist: create it first"
        " (Path(...).mkdir(parents=True)); downloads make no folders"
    )
    assert storage.seen_headers == []


# -- hardening: encodings, cancellation, faults, redirects ------------------------------


async def test_a_gzip_encoded_result_is_saved_decoded(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/r.png"] = faults.gzipped(PNG)
    path = await client.download_result(storage.url + "r.png", tmp_path / "r.png")
    assert path.read_bytes() == PNG


async def test_cancelling_a_download_at_any_await_point_leaves_dest_as_it_was(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    bodies_sent = 0
    send_body = serve_bytes(PNG, chunked=True)

    async def counting(request: web.Request) -> web.StreamResponse:
        nonlocal bodies_sent
        response: web.StreamResponse = await send_body(request)  # type: ignore[operator]
        bodies_sent += 1
        return response

    storage.routes["/r.png"] = counting
    dest = tmp_path / "r.png"
    cut: set[str] = set()  # where the cancellations landed, as the server saw it

    async def cancelled_after(ticks: int) -> bool:
        """Download, cancel after ``ticks`` loop turns; say whether it was cut short."""
        dest.write_bytes(b"previous")
        bodies = bodies_sent
        download = asyncio.ensure_future(client.download_result(storage.url + "r.png", dest))
        for _ in range(ticks):
            await asyncio.sleep(0)
        phase = "before the body was sent" if bodies_sent == bodies else "after it was sent"
        download.cancel()
        try:
            await download
        except asyncio.CancelledError:
            assert dest.read_bytes() == b"previous", f"dest changed, cancelled {phase}"
            cut.add(phase)
            return True
        finally:
            assert folder_listing(tmp_path) == ["r.png"], f"a leftover, cancelled {phase}"
            assert connections_in_use(client) == 0
            assert client_tasks() == []
        assert dest.read_bytes() == PNG
        return False

    ticks = 0
    while await cancelled_after(ticks):
        ticks += 1
    # The sweep reached the end and covered both sides of the wire: cancellations
    # before the server had answered and while the client was still saving the body.
    assert cut == {"before the body was sent", "after it was sent"}


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        # the 500 says what it is, however much of its page arrived
        (faults.truncated(b"<Error>InternalError</Error>" * 10, status=500), ServerError),
        (faults.stall_mid_body(b"<Error>SlowDown</Error>" * 10), APITimeoutError),
        (faults.not_http(), APIConnectionError),
        (faults.html(503), ServerError),
    ],
    ids=["cut-error-body", "stalled-body", "not-http", "html-503"],
)
async def test_storage_faults_are_retried_then_raise_typed_errors(
    fault: faults.Reply,
    error: type[Exception],
    api: ScriptedAPI,
    storage: Storage,
    tmp_path: Path,
    recorded_sleeps: list[float],
) -> None:
    storage.routes["/r.png"] = fault
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, timeout=0.2) as client:
        with pytest.raises(error):
            await client.download_result(storage.url + "r.png", tmp_path / "r.png")
    assert len(recorded_sleeps) == 3
    assert folder_listing(tmp_path) == []


async def test_each_download_retry_logs_a_warning_naming_the_url(
    client: GPTunnelClient,
    storage: Storage,
    tmp_path: Path,
    recorded_sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage.routes["/r.png"] = faults.answer(503, "SlowDown")
    with caplog.at_level(logging.WARNING, logger="gptunnel_async"), pytest.raises(ServerError):
        await client.download_result(storage.url + "r.png", tmp_path / "r.png")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert all(m.startswith("GET 127.0.0.1/r.png failed (503: SlowDown); retry") for m in messages)


async def test_a_download_on_the_api_origin_names_its_request_once_per_retry(
    client: GPTunnelClient,
    api: ScriptedAPI,
    tmp_path: Path,
    recorded_sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.script("reset", "reset", serve_bytes(PNG))  # aiohttp may resend one by itself
    url = str(URL(api.base_url).with_path("/task/image/r.png"))
    with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
        path = await client.download_result(url, tmp_path / "r.png")
    assert path.read_bytes() == PNG
    messages = [r.getMessage() for r in caplog.records]
    assert messages
    for message in messages:
        assert message.startswith("GET /task/image/r.png failed: ")
        assert message.count("r.png") == 1, message


async def test_a_redirect_to_the_same_host_by_another_name_drops_the_key(
    client: GPTunnelClient, api: ScriptedAPI, tmp_path: Path
) -> None:
    alias = URL(api.base_url).with_host("localhost").with_path("/files/final.png")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(alias))

    api.script(redirect, faults.answer(200, PNG))
    await client.download_result(api.base_url + "/files/x.png", tmp_path / "x.png")
    first, second = api.requests
    assert "Authorization" not in first["headers"]
    assert second["path"] == "/files/final.png"
    assert "Authorization" not in second["headers"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1/balance",
        "http://127.0.0.1:8080/task/image/1?cache=100",
        "https://127.0.0.1:8080/v1/x.png",
        "http://localhost:8080/v1/x.png",
        "https://storage.example/x.png",
    ],
)
def test_a_fetch_never_carries_the_key_on_any_origin(url: str) -> None:
    requests = RequestBuilder("http://127.0.0.1:8080/v1", API_KEY, "ua")
    fetch = requests.fetch(URL(url))
    assert "Authorization" not in fetch.headers
    assert API_KEY not in repr(fetch)
    assert requests.api("GET", "balance").headers["Authorization"] == API_KEY


async def test_a_storage_redirect_into_the_api_gets_no_key_and_saves_nothing(
    client: GPTunnelClient, api: ScriptedAPI, storage: Storage, tmp_path: Path
) -> None:
    async def to_the_api(request: web.Request) -> web.Response:
        raise web.HTTPFound(api.base_url + "/balance")

    async def balance(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != API_KEY:
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"balance": 12345})

    storage.routes["/r.png"] = to_the_api
    api.script(balance)
    with pytest.raises(GPTunnelError):
        await client.download_result(storage.url + "r.png", tmp_path / "r.png")
    assert "Authorization" not in api.requests[0]["headers"]
    assert not (tmp_path / "r.png").exists()


@pytest.mark.parametrize(
    ("location", "match"),
    [
        ("http://[::1", "unusable"),
        ("https:", "redirect"),
        ("/loop.png", "redirects"),
        ("http://a..b/x.png", "can be looked up"),
        (f"http://{'a' * 64}.example/x.png", "can be looked up"),
    ],
)
async def test_unusable_or_endless_redirects_fail_cleanly(
    location: str, match: str, client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": location})

    storage.routes["/loop.png"] = redirect
    with pytest.raises(DownloadError, match=match):
        await client.download_result(storage.url + "loop.png", tmp_path / "x.png")
    assert folder_listing(tmp_path) == []


async def test_a_done_task_whose_result_host_cannot_be_looked_up_is_a_download_error(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError, match="can be looked up"):
        await client.download_result(done_task("https://a..b/r.png"), tmp_path)
    assert folder_listing(tmp_path) == []


async def test_a_host_the_resolver_refuses_is_a_connection_error_even_past_the_checks(
    client: GPTunnelClient, instant: None
) -> None:
    """The transport's backstop: a request to such a host (the checks refuse every one
    the SDK is given) fails typed, with no UnicodeError out of aiohttp."""
    transport = client._transport
    request = transport.requests.fetch(URL("http://a..b/x.png"))
    with pytest.raises(APIConnectionError, match="the host name cannot be looked up") as caught:
        await transport.exchange(request, transport.read_answer)
    assert isinstance(caught.value.__cause__, UnicodeError)


@pytest.mark.parametrize("letter", ["😀", "é", "a"])
async def test_a_long_name_of_any_script_is_saved_if_the_folder_takes_it(
    client: GPTunnelClient, storage: Storage, tmp_path: Path, letter: str
) -> None:
    """Its hidden temporary file beside it is named after it too: cut by bytes, not by
    characters, so it fits wherever the name does."""
    storage.routes["/r.png"] = serve_bytes(PNG)
    name = letter * ((250 - 4) // len(letter.encode())) + ".png"  # about 250 bytes
    path = await client.download_result(storage.url + "r.png", tmp_path / name)
    assert path.name == name and path.read_bytes() == PNG
    assert folder_listing(tmp_path) == [name]


async def test_a_new_file_gets_the_usual_permissions_and_a_replaced_one_keeps_its_own(
    client: GPTunnelClient, storage: Storage, tmp_path: Path
) -> None:
    storage.routes["/r.png"] = serve_bytes(PNG)
    umask = os.umask(0o022)
    try:
        fresh = await client.download_result(storage.url + "r.png", tmp_path / "new.png")
        kept = tmp_path / "kept.png"
        kept.write_bytes(b"old")
        kept.chmod(0o640)
        await client.download_result(storage.url + "r.png", kept)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    assert kept.read_bytes() == PNG


@pytest.mark.parametrize("result", [None, ""])
async def test_a_done_task_without_a_result_url_is_the_servers_fault(
    client: GPTunnelClient, tmp_path: Path, result: str | None
) -> None:
    done = structure(Task, task_json(status="done", percent=100, result=result))
    with pytest.raises(DownloadError, match="no result"):
        await client.download_result(done, tmp_path / "x.png")
    with pytest.raises(DownloadError, match="no result"):
        await client.download_results(done, tmp_path)
    assert not any(os.scandir(tmp_path))


async def test_a_task_id_given_to_download_is_told_to_pass_the_task(tmp_path: Path) -> None:
    async with GPTunnelClient(api_key="k-1", base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(ConfigurationError, match="pass the Task that wait_for_result"):
            await client.download_result("f8e2a1", tmp_path)


async def test_downloading_a_task_not_yet_done_says_to_wait_for_it_first(
    fake: FakeGPTunnel,
) -> None:
    async with fake.client() as client:
        created = await client.faceswap.create("https://a/1.png", "https://a/2.png")
        with pytest.raises(ConfigurationError, match=r"status 'idle'\): wait for it first"):
            await client.download_result(created, "out.png")


CREATES: dict[str, Callable[[GPTunnelClient], Awaitable[Task | MediaTask]]] = {
    "faceswap": lambda client: client.faceswap.create("https://a/1.png", "https://a/2.png"),
    "bgremover": lambda client: client.bgremover.create_task("bgremover/create", {}),
    "midjourney": lambda client: client.midjourney.imagine("a red fox"),
    "media": lambda client: client.media.create("flux-pro", "a lighthouse"),
}


@pytest.mark.parametrize("family", sorted(CREATES))
async def test_the_wait_a_download_too_soon_names_is_the_tasks_familys(
    fake: FakeGPTunnel, family: str, tmp_path: Path
) -> None:
    """It used to name a bare ``wait_for_result``, which a newcomer read as
    ``client.wait_for_result``: face swaps' own, "not found" for any other task."""
    async with fake.client() as client:
        created = await CREATES[family](client)
        with pytest.raises(ConfigurationError) as raised:
            await client.download_result(created, tmp_path)
        call = f"await client.{family}.wait_for_result({created.id!r})"
        assert call in str(raised.value)
        with instant_waits():  # the call it names waits for the task
            done = await getattr(client, family).wait_for_result(created.id)
        assert (await client.download_results(done, tmp_path))[0].is_file()


async def test_a_task_of_no_known_type_is_told_the_families_to_wait_through(
    tmp_path: Path,
) -> None:
    created = structure(Task, task_json(status="idle", percent=0, type="@Something"))
    async with GPTunnelClient(api_key="k-1", base_url="http://127.0.0.1:9/v1") as client:
        families = r"its family's wait_for_result: client\.faceswap, client\.bgremover"
        with pytest.raises(ConfigurationError, match=families):
            await client.download_result(created, tmp_path)
