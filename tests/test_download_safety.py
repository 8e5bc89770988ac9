"""Downloads fail only with typed errors, end within their deadline, and reach only public
addresses unless the API itself is local or the caller opts in."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import (
    APITimeoutError,
    ConfigurationError,
    DownloadError,
    GPTunnelClient,
    GPTunnelError,
    Task,
)
from gptunnel_async._destinations import Destinations, PublicResolver
from gptunnel_async._download import check_destination
from gptunnel_async._sansio.addresses import (
    base_url_is_private,
    carried_ipv4s,
    is_no_host_name,
    is_public,
    parse_address,
)

from .conftest import HANG_GUARD, PROXY_WAYS, loopback_server

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
PUBLIC_API = "https://api.example.org/v1"
"""A base URL on a public name: nothing is ever sent there in these tests."""


class Storage:
    """A loopback storage host: ``/r.png`` at once, ``/drip.png`` a byte every 0.5 s,
    ``/hop`` a redirect to ``/r.png``, ``/answer/<status>/r.png`` that status with the
    file's first bytes (a ``Content-Range`` on a 206, no body where HTTP allows none) and
    ``/hop/<status>`` a redirect there; it counts the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.path == "/hop":
            raise web.HTTPFound(self.url + "r.png")
        if request.path.startswith("/hop/"):
            raise web.HTTPFound(f"{self.url}answer/{request.path[5:]}/r.png")
        if request.path.startswith("/answer/"):
            return self.answer(int(request.path.split("/")[2]))
        if request.path != "/drip.png":
            return web.Response(body=PNG, content_type="image/png")
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"x")
            await asyncio.sleep(0.5)
        return response

    @staticmethod
    def answer(status: int) -> web.Response:
        if status in (204, 205):
            return web.Response(status=status, reason="Odd")
        headers = {"Content-Range": f"bytes 0-9/{len(PNG)}"} if status == 206 else {}
        return web.Response(status=status, reason="Odd", body=PNG[:10], headers=headers)


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    host = Storage()
    async with loopback_server(host.handle) as server:
        host.url = str(server.make_url("/"))
        yield host


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# -- every failure typed ------------------------------------------------------------


@pytest.mark.parametrize(
    "task_or_url", [123, None, b"http://x/", ["http://x/"], "http://[::1", "ftp://x/a", ""]
)
async def test_a_wrong_task_or_url_is_a_configuration_error(
    task_or_url: Any, tmp_path: Path
) -> None:
    async with GPTunnelClient(api_key="k-1", base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(ConfigurationError):
            await client.download_result(task_or_url, tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("url", ["http://[::1", "ftp://storage/x.png", "http://", "not a url"])
async def test_an_unusable_result_url_from_the_server_is_a_download_error(
    url: str, tmp_path: Path
) -> None:
    task = Task(id="t", status="done", result=url)
    async with GPTunnelClient(api_key="k-1", base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(DownloadError):
            await client.download_result(task, tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("option", "value"),
    [("dest", 12), ("dest", "a\x00b"), ("max_bytes", 0), ("max_bytes", 2.5), ("timeout", 0)],
)
async def test_wrong_download_options_are_configuration_errors(
    option: str, value: Any, storage: Storage, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"dest": tmp_path / "r.png", option: value}
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        with pytest.raises(ConfigurationError, match=option if option != "dest" else "dest"):
            await client.download_result(storage.url + "r.png", **options)
    assert storage.requests == 0


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs a folder nobody may write to")
async def test_a_folder_nobody_may_write_to_is_a_download_error(storage: Storage) -> None:
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        with pytest.raises(DownloadError, match="could not write"):
            await client.download_result(storage.url + "r.png", "/proc")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
async def test_a_read_only_folder_is_a_download_error_and_stays_empty(
    storage: Storage, tmp_path: Path
) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
            with pytest.raises(DownloadError):
                await client.download_result(storage.url + "r.png", folder)
        assert leftovers(folder) == []
    finally:
        folder.chmod(0o700)


def open_descriptors() -> list[str]:
    """What each descriptor this process has open points at (``/proc/self/fd``)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own, closed by now
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
async def test_a_dest_that_cannot_be_looked_at_leaks_no_descriptor(
    storage: Storage, tmp_path: Path
) -> None:
    """A ``dest`` whose ``stat()`` fails with other than "no such file" (a symlink loop)
    fails after the temporary file was opened: its descriptor is closed all the same."""
    loop = tmp_path / "loop.png"
    loop.symlink_to("loop.png")
    async with GPTunnelClient(api_key="k-1", base_url=storage.url, max_retries=0) as client:
        await client.download_result(storage.url + "r.png", tmp_path / "first.png")
        before = open_descriptors()
        for _ in range(50):
            with pytest.raises(DownloadError, match=r"could not write .*symbolic links"):
                await client.download_result(storage.url + "r.png", loop)
        after = open_descriptors()
    assert [target for target in after if ".part" in target] == []
    assert len(after) <= len(before)
    assert leftovers(tmp_path) == ["first.png", "loop.png"]
    assert storage.requests == 1


def with_userinfo(url: str, user: str, password: str | None) -> str:
    """``url`` carrying ``user`` (and ``password``), each percent-encoded whole."""
    info = quote(user, safe="") + ("" if password is None else ":" + quote(password, safe=""))
    return url.replace("://", f"://{info}@", 1)


USERINFO = ["a%3Ab", "a%3Ab:pw", "%E2%82%AC", "u:%E2%82%AC", "%F0%9F%94%91:x"]
"""A user name with a ':', or a name or password outside Latin-1: HTTP Basic cannot
carry them, and aiohttp refused them with a bare ``ValueError`` or ``UnicodeError``."""


async def fetched_with_userinfo(
    folder: Path, where: str, userinfo: str
) -> tuple[GPTunnelError | None, int]:
    """Fetch ``r.png`` from a loopback host by a URL carrying ``userinfo``: given as the
    URL (``argument``), as a done task's result (``task``), or as a redirect's target
    (``redirect``); the error (``None`` if it was saved) and the requests for ``r.png``."""
    reached = 0

    async def host(request: web.Request) -> web.StreamResponse:
        nonlocal reached
        if request.path == "/r.png":
            reached += 1
            return web.Response(body=PNG, content_type="image/png")
        raise web.HTTPFound(target)

    async with loopback_server(host) as server:
        origin = str(server.make_url("/"))
        target = origin.replace("://", f"://{userinfo}@", 1) + "r.png"
        given_as: Any = {
            "argument": target,
            "task": Task(id="t", status="done", result=target),
            "redirect": origin + "hop",
        }[where]
        async with GPTunnelClient(api_key="k-1", base_url=origin + "v1", max_retries=1) as client:
            try:
                await asyncio.wait_for(client.download_result(given_as, folder), HANG_GUARD)
            except GPTunnelError as exc:
                assert leftovers(folder) == []
                return exc, reached
    assert taken_out(folder) == PNG
    return None, reached


def taken_out(folder: Path) -> bytes:
    """The one file in ``folder`` (r.png, or result.png after the redirect, named after
    /hop), removed: its bytes."""
    (saved,) = folder.iterdir()
    body = saved.read_bytes()
    saved.unlink()
    return body


@pytest.mark.parametrize("userinfo", USERINFO)
@pytest.mark.parametrize(
    ("where", "error"),
    [("argument", ConfigurationError), ("task", DownloadError), ("redirect", DownloadError)],
)
async def test_a_url_whose_credentials_http_cannot_carry_is_refused_before_it_is_fetched(
    userinfo: str, where: str, error: type[GPTunnelError], tmp_path: Path
) -> None:
    """A caller's URL is a ``ConfigurationError``, the server's (a task's result, a
    redirect) a ``DownloadError``, neither retried nor quoting the credentials; nothing
    is sent to it."""
    exc, reached = await fetched_with_userinfo(tmp_path, where, userinfo)
    assert isinstance(exc, error), repr(exc)
    assert "user name or password" in str(exc)
    assert f"{userinfo}@" not in str(exc)
    assert "://***@" in str(exc) or where == "redirect"
    assert reached == 0


@settings(max_examples=40, deadline=None)
@given(
    user=st.text(max_size=4),
    password=st.none() | st.text(max_size=4),
    where=st.sampled_from(["argument", "task", "redirect"]),
)
async def test_a_url_with_any_user_and_password_is_fetched_or_refused_with_a_typed_error(
    user: str, password: str | None, where: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    userinfo = with_userinfo("x://", user, password)[4:-1]
    exc, reached = await fetched_with_userinfo(tmp_path_factory.mktemp("saved"), where, userinfo)
    assert exc is None or isinstance(exc, ConfigurationError | DownloadError), repr(exc)
    assert reached == (exc is None)


@pytest.mark.parametrize("local_api", [True, False])
async def test_a_borrowed_sessions_own_headers_and_cookies_never_reach_a_storage_host(
    local_api: bool, tmp_path: Path
) -> None:
    """A lent session made with default headers (the key among them: the emulator's
    docs talk to it so) and cookies sends them with every request it makes. A download
    through it, when the API is local or the caller allowed private result URLs, sent
    them to whatever host the result URL named; it never does now, on either path."""
    seen: list[dict[str, str]] = []

    async def storage(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return web.Response(body=PNG, content_type="image/png")

    async with (
        loopback_server(storage) as host,
        aiohttp.ClientSession(
            headers={"Authorization": "k-secret-1", "X-Gateway-Token": "gw-secret"},
            cookies={"session": "c00kie"},
        ) as lent,
        GPTunnelClient(
            api_key="k-secret-1",
            base_url="http://127.0.0.1:9/v1" if local_api else PUBLIC_API,
            session=lent,
            allow_private_result_urls=not local_api,
        ) as client,
    ):
        await client.download_result(str(host.make_url("/r.png")), tmp_path)
    assert len(seen) == 1
    sent = " ".join(f"{name}: {value}" for name, value in seen[0].items())
    assert "k-secret-1" not in sent
    assert "gw-secret" not in sent
    assert "c00kie" not in sent
    assert (tmp_path / "r.png").read_bytes() == PNG


@pytest.mark.parametrize("way", PROXY_WAYS)
async def test_a_download_through_a_lent_session_still_goes_through_its_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """With ``allow_private_result_urls=True``, a lent session's proxy still carries the
    download (as the docs promise), without the lent session's default headers: a
    proxy given to the session, or by ``$HTTP_PROXY`` to one with ``trust_env=True``."""
    seen: list[tuple[str, dict[str, str]]] = []

    async def proxy(request: web.Request) -> web.StreamResponse:
        seen.append((str(request.url), dict(request.headers)))
        return web.Response(body=PNG, content_type="image/png")

    async with loopback_server(proxy) as server:
        options: dict[str, Any] = {"headers": {"X-Gateway-Token": "gw-secret"}}
        if way == "proxy=":
            options["proxy"] = str(server.make_url("/"))
        else:
            for name in ("no_proxy", "NO_PROXY", "http_proxy"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("HTTP_PROXY", str(server.make_url("/")))
            options["trust_env"] = True
        await _downloaded_through(options, tmp_path)
    assert [url for url, _ in seen] == ["http://storage.invalid/r.png"]
    assert "gw-secret" not in str(seen[0][1])
    assert (tmp_path / "r.png").read_bytes() == PNG


async def _downloaded_through(options: dict[str, Any], folder: Path) -> None:
    """A result downloaded by a client lent a session made with ``options``."""
    async with (
        aiohttp.ClientSession(**options) as lent,
        GPTunnelClient(
            api_key="k-1", base_url=PUBLIC_API, session=lent, allow_private_result_urls=True
        ) as client,
    ):
        await client.download_result("http://storage.invalid/r.png", folder)


# -- only a 200 is the whole file -------------------------------------------------------


@pytest.mark.parametrize("status", range(201, 300))
async def test_a_2xx_other_than_200_is_a_download_error_and_leaves_the_file_as_it_was(
    status: int, storage: Storage, tmp_path: Path
) -> None:
    """Every 2xx but 200 (a 206 is a piece of the file, a 204 none of it): nothing the
    caller had is replaced, nothing is left behind, and it is not retried."""
    dest = tmp_path / "r.png"
    dest.write_bytes(b"the caller's good file")
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        with pytest.raises(DownloadError, match=rf"a {status} answer .* not the whole file"):
            await client.download_result(f"{storage.url}answer/{status}/r.png", dest)
    assert dest.read_bytes() == b"the caller's good file"
    assert leftovers(tmp_path) == ["r.png"]
    assert storage.requests == 1


@pytest.mark.parametrize("status", [206, 204, 226])
async def test_a_partial_answer_after_a_redirect_or_into_a_folder_saves_nothing(
    status: int, storage: Storage, tmp_path: Path
) -> None:
    (tmp_path / "r.png").write_bytes(b"kept")
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        for url in (f"{storage.url}hop/{status}", f"{storage.url}answer/{status}/r.png"):
            with pytest.raises(DownloadError, match=f"a {status} answer"):
                await client.download_result(url, tmp_path)
    assert leftovers(tmp_path) == ["r.png"]
    assert (tmp_path / "r.png").read_bytes() == b"kept"


async def test_a_200_still_replaces_the_callers_file(storage: Storage, tmp_path: Path) -> None:
    dest = tmp_path / "r.png"
    dest.write_bytes(b"old")
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        path = await client.download_result(f"{storage.url}answer/200/r.png", dest)
    assert path == dest
    assert dest.read_bytes() == PNG[:10]
    assert leftovers(tmp_path) == ["r.png"]


# -- on the disk before the name -------------------------------------------------------
# A power cut cannot be run in a test: the system calls are watched instead, each one
# still made for real.


@pytest.fixture
def disk_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every ``fsync``, ``replace`` and ``link`` a download makes, in order, each with the
    size of the file it concerns at that moment; each call goes through to the system."""
    calls: list[tuple[str, int]] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.fstat(fd).st_size))
        real_fsync(fd)

    def replace(source: Any, target: Any, **kwargs: Any) -> None:
        calls.append(("rename", os.stat(source).st_size))
        real_replace(source, target, **kwargs)

    def link(source: Any, target: Any, **kwargs: Any) -> None:
        calls.append(("rename", os.stat(source).st_size))
        real_link(source, target, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    return calls


@pytest.mark.parametrize("into_folder", [False, True])
async def test_the_whole_file_is_on_the_disk_before_it_takes_its_name(
    storage: Storage, tmp_path: Path, disk_calls: list[tuple[str, int]], into_folder: bool
) -> None:
    """The download is synced whole before its rename (or no-clobber link): after a power
    cut the name holds the whole file or what it held before, never an empty or partial
    file that looks complete."""
    dest = tmp_path if into_folder else tmp_path / "mine.png"
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        path = await client.download_result(f"{storage.url}r.png", dest)
    assert path.read_bytes() == PNG
    assert disk_calls[:2] == [("fsync", len(PNG)), ("rename", len(PNG))]


@pytest.mark.parametrize(
    ("code", "saved"),
    [(errno.EIO, False), (errno.ENOSPC, False), (errno.EINVAL, True), (errno.ENOTSUP, True)],
)
async def test_a_sync_the_disk_fails_saves_nothing_and_one_it_cannot_do_is_passed_over(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, saved: bool
) -> None:
    """An ``EIO`` or ``ENOSPC`` on sync means the bytes may not be on the disk: a
    ``DownloadError``, and the caller's file as it was. A file system that cannot sync
    at all (``EINVAL``, ``ENOTSUP``) saves as before."""

    def failing(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing)
    dest = tmp_path / "mine.png"
    dest.write_bytes(b"old")
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        if saved:
            await client.download_result(f"{storage.url}r.png", dest)
        else:
            with pytest.raises(DownloadError, match=os.strerror(code)):
                await client.download_result(f"{storage.url}r.png", dest)
    assert dest.read_bytes() == (PNG if saved else b"old")
    assert leftovers(tmp_path) == ["mine.png"]


async def test_a_download_cancelled_during_its_sync_keeps_the_file_open_until_it_ends(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync runs in a thread (a long one must not stall the event loop); a
    cancellation then waits for it, so the thread never syncs a closed descriptor (or
    another file's that took its number), and ends with the caller's file as it was."""
    entered, release = threading.Event(), threading.Event()
    synced: list[int] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        entered.set()
        release.wait()
        synced.append(os.fstat(fd).st_size)  # the descriptor is still the file's
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    dest = tmp_path / "mine.png"
    dest.write_bytes(b"old")
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        download = asyncio.ensure_future(client.download_result(f"{storage.url}r.png", dest))
        await asyncio.to_thread(entered.wait)
        assert not download.done()  # the event loop runs on while the thread syncs
        download.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not download.done()  # held until the sync ends
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await download
    assert synced == [len(PNG)]
    assert dest.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["mine.png"]


# -- the deadline ---------------------------------------------------------------------


async def test_a_host_that_drips_bytes_cannot_hold_a_download_past_its_deadline(
    storage: Storage, tmp_path: Path
) -> None:
    dest = tmp_path / "drip.png"
    dest.write_bytes(b"old")
    async with GPTunnelClient(api_key="k-1", base_url=storage.url, timeout=2.0) as client:
        with pytest.raises(DownloadError, match=r"did not finish within 1\.2s"):
            await client.download_result(storage.url + "drip.png", dest, timeout=1.2)
    assert dest.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["drip.png"]


@pytest.mark.parametrize("interim", [b"103 Early Hints\r\nLink: </r.css>", b"199 Odd"])
async def test_a_host_that_answers_only_an_interim_1xx_times_out(
    interim: bytes, tmp_path: Path
) -> None:
    """aiohttp's read timeout does not run between an interim answer and the final one:
    the client's ``timeout`` bounds the wait for the final answer's headers."""

    async def answer_1xx_then_nothing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 " + interim + b"\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(answer_1xx_then_nothing, "127.0.0.1", 0)
    origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    dest = tmp_path / "r.png"
    dest.write_bytes(b"old")
    async with (
        server,
        GPTunnelClient(api_key="k-1", base_url=origin + "v1", timeout=0.3, max_retries=0) as client,
    ):
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(APITimeoutError, match=r"timed out after 0\.3s"):
                await client.download_result(origin + "r.png", dest, timeout=None)
    assert dest.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["r.png"]


async def test_a_download_within_its_deadline_is_saved(storage: Storage, tmp_path: Path) -> None:
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        path = await client.download_result(storage.url + "r.png", tmp_path, timeout=None)
    assert path.read_bytes() == PNG


# -- reaching only public addresses ----------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_a_result_on_a_private_address_is_refused_before_anything_is_sent(
    host: str, storage: Storage, tmp_path: Path
) -> None:
    port = URL(storage.url).port
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        with pytest.raises(DownloadError, match="not a public address"):
            await client.download_result(f"http://{host}:{port}/r.png", tmp_path)
    assert storage.requests == 0
    assert leftovers(tmp_path) == []


async def test_the_caller_may_allow_private_result_urls(storage: Storage, tmp_path: Path) -> None:
    async with GPTunnelClient(
        api_key="k-1", base_url=PUBLIC_API, allow_private_result_urls=True
    ) as client:
        path = await client.download_result(storage.url + "r.png", tmp_path)
    assert path.read_bytes() == PNG


async def test_a_local_api_allows_local_results(storage: Storage, tmp_path: Path) -> None:
    async with GPTunnelClient(api_key="k-1", base_url=storage.url + "v1") as client:
        path = await client.download_result(storage.url + "r.png", tmp_path)
    assert path.read_bytes() == PNG


class StaticResolver(AbstractResolver):
    """Made-up host names for tests: each name answers the next list of addresses in
    ``answers[name]`` (the last one again once they run out); counts its lookups."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        script = self.answers[host]
        found = script.pop(0) if len(script) > 1 else script[0]
        return [
            ResolveResult(hostname=host, host=a, port=port, family=0, proto=0, flags=0)
            for a in found
        ]

    async def close(self) -> None:
        pass


def only(*allowed: str) -> Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]:
    """A stand-in for "public" on loopback, where nothing is: exactly these addresses."""
    return lambda address: str(address) in allowed


def guard(
    client: GPTunnelClient,
    resolver: StaticResolver,
    allowed: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool] = is_public,
) -> None:
    client._destinations = Destinations(
        allow_private=False, resolver=lambda: resolver, allowed=allowed
    )


@pytest.mark.parametrize(
    "answer",
    [
        ["127.0.0.1"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["64:ff9b::7f00:1"],
        ["2002:a9fe:a9fe::1"],
        ["fe80::5efe:808:808"],
        ["fd00::200:5efe:808:808"],
        ["5f00::1"],
        ["10.0.0.7", "127.0.0.1"],
        ["0.0.0.0"],
    ],
)
async def test_a_name_resolving_to_a_private_address_is_never_sent_a_request(
    answer: list[str], storage: Storage, tmp_path: Path
) -> None:
    resolver = StaticResolver({"results.example": [answer]})
    url = f"http://results.example:{URL(storage.url).port}/r.png"
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        guard(client, resolver)
        with pytest.raises(DownloadError, match="not a public address"):
            await client.download_result(url, tmp_path)
    assert resolver.lookups == ["results.example"]  # refused at once, not retried
    assert storage.requests == 0
    assert leftovers(tmp_path) == []


async def test_the_same_name_is_reached_when_its_address_is_allowed(
    storage: Storage, tmp_path: Path
) -> None:
    """The control of the test above: the made-up name does lead to the server."""
    resolver = StaticResolver({"results.example": [["127.0.0.1"]]})
    url = f"http://results.example:{URL(storage.url).port}/r.png"
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        guard(client, resolver, only("127.0.0.1"))
        path = await client.download_result(url, tmp_path)
    assert path.read_bytes() == PNG
    assert storage.requests == 1


@pytest.fixture
async def internal(storage: Storage) -> AsyncIterator[Storage]:
    """The "internal endpoint" nothing may reach: a second loopback host on 127.0.0.2, on
    the same port as ``storage``, so one URL reaches either, by the address its name
    resolves to."""
    host = Storage()
    port = URL(storage.url).port
    async with loopback_server(host.handle, host="127.0.0.2", port=port) as server:
        host.url = str(server.make_url("/"))
        yield host


async def test_a_name_that_rebinds_to_a_private_address_is_refused_on_that_lookup(
    storage: Storage, internal: Storage, tmp_path: Path
) -> None:
    """DNS rebinding: the first answer is allowed, the next is not. Each connection uses
    the very answer that was checked, so the private one is never sent anything."""
    resolver = StaticResolver({"rebind.example": [["127.0.0.1"], ["127.0.0.2"]]})
    url = f"http://rebind.example:{URL(storage.url).port}/r.png"
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        guard(client, resolver, only("127.0.0.1"))
        assert (await client.download_result(url, tmp_path / "a.png")).read_bytes() == PNG
        with pytest.raises(DownloadError, match=r"127\.0\.0\.2 is not a public address"):
            await client.download_result(url, tmp_path / "b.png")
    assert (storage.requests, internal.requests) == (1, 0)
    assert leftovers(tmp_path) == ["a.png"]


async def test_a_mixed_answer_connects_only_to_the_allowed_address(
    storage: Storage, internal: Storage, tmp_path: Path
) -> None:
    resolver = StaticResolver({"mixed.example": [["127.0.0.2", "127.0.0.1"]]})
    url = f"http://mixed.example:{URL(storage.url).port}/r.png"
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        guard(client, resolver, only("127.0.0.1"))
        path = await client.download_result(url, tmp_path)
    assert path.read_bytes() == PNG
    assert (storage.requests, internal.requests) == (1, 0)


@pytest.mark.parametrize("target", ["name", "literal"])
async def test_a_redirect_to_a_private_address_is_never_followed(
    target: str, internal: Storage, tmp_path: Path
) -> None:
    internal_port = URL(internal.url).port
    where = "internal.example" if target == "name" else "127.0.0.2"

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://{where}:{internal_port}/r.png")

    resolver = StaticResolver(
        {"storage.example": [["127.0.0.1"]], "internal.example": [["127.0.0.2"]]}
    )
    async with (
        loopback_server(redirect) as first,
        GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client,
    ):
        guard(client, resolver, only("127.0.0.1"))
        with pytest.raises(DownloadError, match=r"127\.0\.0\.2 is not a public address"):
            await client.download_result(
                f"http://storage.example:{first.port}/hop", tmp_path / "r.png"
            )
    assert internal.requests == 0
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7F000001", "017700000001"]
)
async def test_legacy_spellings_of_a_loopback_address_are_refused(
    host: str, storage: Storage, tmp_path: Path
) -> None:
    port = URL(storage.url).port
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        with pytest.raises(DownloadError, match=r"127\.0\.0\.1 is not a public address"):
            await client.download_result(f"http://{host}:{port}/r.png", tmp_path)
    assert storage.requests == 0


def test_allow_private_result_urls_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="allow_private_result_urls"):
        GPTunnelClient(api_key="k-1", allow_private_result_urls="yes")  # type: ignore[arg-type]


NOT_PUBLIC = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
NOT_PUBLIC_V6 = ["::1/128", "::/128", "fe80::/10", "fc00::/7", "ff00::/8", "2001:db8::/32"]


def addresses_in(networks: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from(networks).flatmap(
        lambda net: st.integers(0, ipaddress.ip_network(net).num_addresses - 1).map(
            lambda n: ipaddress.ip_network(net)[n]
        )
    )


def ipv6_forms(address: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """The IPv6 addresses that carry ``address``: IPv4-mapped, IPv4-compatible, SIIT's
    IPv4-translated, NAT64's well-known prefix, 6to4 (with any subnet and interface
    bits) and ISATAP interface ids under a global prefix."""
    n = int(address)
    return [
        ipaddress.IPv6Address(f"::ffff:{address}"),
        ipaddress.IPv6Address(n),
        ipaddress.IPv6Address((0xFFFF_0000 << 32) | n),
        ipaddress.IPv6Address((0x0064_FF9B << 96) | n),
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 0xBEEF_0000_0000_0001),
        ipaddress.IPv6Address((0x2600 << 112) | (0x0000_5EFE << 32) | n),
        ipaddress.IPv6Address((0x2600 << 112) | (0x0200_5EFE << 32) | n),
    ]


@given(addresses_in(NOT_PUBLIC))
def test_no_address_of_a_private_range_is_public_nor_any_ipv6_form_carrying_it(
    address: ipaddress.IPv4Address,
) -> None:
    assert not is_public(address)
    for form in ipv6_forms(address):
        assert address in carried_ipv4s(form)
        assert not is_public(form), form


@given(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address))
def test_an_ipv6_form_carrying_an_ipv4_address_is_judged_as_that_address(
    address: ipaddress.IPv4Address,
) -> None:
    # The same answer on every Python, whatever its own table says of 2002::/16 or
    # 64:ff9b::/96.
    expected = is_public(address)
    for form in ipv6_forms(address):
        assert is_public(form) is expected, form


REGISTRY_ANSWERS = {
    # Where Python's own tables differ between versions (3.11.7 and 3.12.1 read all of
    # 192.0.0.8-255 but .170 and .171 as global, and all of 2001::/23 as not; 3.13 does
    # as IANA's registries do; 3fff::/20 is newer than 3.13.0).
    "192.0.0.8": False,  # the IPv4 dummy address (RFC 7600)
    "192.0.0.100": False,
    "192.0.0.255": False,
    "192.0.0.9": True,  # Port Control Protocol anycast
    "192.0.0.10": True,  # TURN anycast
    "2001:1::1": True,
    "2001:1::2": True,
    "2001:3::1": True,  # AMT
    "2001:4:112::1": True,  # AS112-v6
    "2001:20::1": True,  # ORCHIDv2
    "2001:30::1": True,  # drone remote ID
    "3fff::1": False,  # documentation (RFC 9637)
    "3fff:fff:ffff::1": False,
    # Newer than every Python's table.
    "192.88.99.2": False,  # 6a44 relay anycast (RFC 6751)
    "100:0:0:1::1": False,  # dummy prefix (RFC 9780)
    "100:0:0:1:ffff:ffff:ffff:ffff": False,
    "5f00::1": False,  # SRv6 SIDs (RFC 9602)
    "5f00:ffff::1": False,
    "2001:1::3": True,  # DNS-SD Service Registration Protocol anycast (RFC 9665)
    "2001:1::4": False,
    # Where every version agrees.
    "192.0.0.170": False,
    "192.0.2.1": False,
    "198.18.0.1": False,
    "192.31.196.1": True,  # AS112-v4
    "192.52.193.1": True,  # AMT
    "192.175.48.1": True,  # AS112 direct delegation
    "2001:2::1": False,  # benchmarking
    "2001:10::1": False,  # ORCHID, deprecated
    "2001:db8::1": False,
    "2620:4f:8000::1": True,
    "4000::1": True,
}
"""Special-purpose addresses and whether a download may reach them, by IANA's registries."""


@pytest.mark.parametrize(("text", "public"), REGISTRY_ANSWERS.items())
def test_special_purpose_addresses_are_judged_alike_on_every_python(
    text: str, public: bool
) -> None:
    """The rule is the SDK's own table, not this Python's ``ipaddress``: the same result
    URL was fetched on Python 3.11.7 and refused on 3.13 (``192.0.0.8``), or the other
    way round (``2001:3::1``)."""
    address = ipaddress.ip_address(text)
    assert is_public(address) is public
    if isinstance(address, ipaddress.IPv4Address):
        assert all(is_public(form) is public for form in ipv6_forms(address))
    literal = f"[{address}]" if address.version == 6 else str(address)
    resolver = PublicResolver(StaticResolver({"x.example": [[text, "93.184.216.34"]]}))
    kept = asyncio.run(resolver.resolve("x.example", 443))
    assert [entry["host"] for entry in kept] == [text] * public + ["93.184.216.34"]
    check = functools.partial(
        Destinations(allow_private=False).check_literal, URL(f"https://{literal}/r.png")
    )
    if public:
        check()
    else:
        with pytest.raises(DownloadError, match="not a public address"):
            check()


@given(st.integers(0, 255).filter(lambda n: n not in (9, 10)))
def test_the_ietf_protocol_assignments_block_is_not_public_but_its_two_anycasts(
    last: int,
) -> None:
    address = ipaddress.IPv4Address(f"192.0.0.{last}")
    assert not is_public(address)
    assert not any(is_public(form) for form in ipv6_forms(address))


GLOBAL_IN_IETF_BLOCK = ["2001:1::1/128", "2001:1::2/128", "2001:3::/32", "2001:4:112::/48"]
GLOBAL_IN_IETF_BLOCK += ["2001:20::/28", "2001:30::/28"]


@given(addresses_in(GLOBAL_IN_IETF_BLOCK) | addresses_in(["3fff::/20"]))
def test_the_globally_reachable_blocks_inside_2001_23_are_public_and_3fff_20_is_not(
    address: ipaddress.IPv6Address,
) -> None:
    assert is_public(address) is (address not in ipaddress.IPv6Network("3fff::/20"))


NOT_PUBLIC_V6_PREFIXES = [
    "fe80::/10",
    "fc00::/7",
    "ff00::/8",
    "100::/64",
    "100:0:0:1::/64",
    "2001::/32",
    "2001:2::/48",
    "2001:10::/28",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
]
"""IPv6 blocks of 64 bits or more that a download may not reach."""


def isatap_ids() -> st.SearchStrategy[int]:
    """ISATAP interface ids (RFC 5214): ``0:5efe`` or ``200:5efe``, then an IPv4 address,
    often a public one (what could make the IPv6 address pass for public)."""
    carried = st.sampled_from(["8.8.8.8", "93.184.216.34"]).map(
        ipaddress.IPv4Address
    ) | st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
    return st.tuples(st.sampled_from([0x0000_5EFE, 0x0200_5EFE]), carried).map(
        lambda pair: (pair[0] << 32) | int(pair[1])
    )


@given(
    addresses_in(NOT_PUBLIC_V6_PREFIXES),
    isatap_ids() | st.integers(0, 2**64 - 1),
)
def test_no_address_of_a_refused_ipv6_block_is_public_whatever_its_interface_id(
    address: ipaddress.IPv6Address, interface: int
) -> None:
    """``fe80::5efe:808:808`` (link-local), ``fd00::5efe:808:808`` (unique local) or
    ``5f00::5efe:808:808`` carry the public ``8.8.8.8`` in an ISATAP interface id, but
    lead to a host of the link, the site or the SR domain: they were fetched."""
    form = ipaddress.IPv6Address((int(address) >> 64 << 64) | interface)
    assert not is_public(form), form
    resolver = PublicResolver(StaticResolver({"x.example": [[str(form)]]}))
    with pytest.raises(DownloadError, match="not a public address"):
        asyncio.run(resolver.resolve("x.example", 443))
    with pytest.raises(DownloadError, match="not a public address"):
        Destinations(allow_private=False).check_literal(URL(f"https://[{form}]/r.png"))


@given(st.integers(0, 2**80 - 1))
def test_nat64_local_use_prefixes_are_never_public(suffix: int) -> None:
    assert not is_public(ipaddress.IPv6Address((0x0064_FF9B_0001 << 80) | suffix))


@given(st.integers(0, 2**118 - 1))
def test_site_local_addresses_are_never_public(suffix: int) -> None:
    assert not is_public(ipaddress.IPv6Address((0b1111111011 << 118) | suffix))


NUMERIC_NAMES = ["10.0.0.5.1", "4294967296", "1.2.3.4.5.6", "127.0.0.0x1.2", "9" * 40, "1.2.3.4.08"]
NUMERIC_NAMES += ["93.184.216.34.", "134744072.", "127.0.0.1.", "0x7f.1."]


@pytest.mark.parametrize("host", NUMERIC_NAMES)
def test_a_host_ending_in_a_number_that_is_no_address_is_refused(host: str) -> None:
    assert parse_address(host) is None
    with pytest.raises(DownloadError, match="neither an IP address nor a host name"):
        Destinations(allow_private=False).check_literal(URL(f"http://{host}/r.png"))


@given(
    st.lists(st.from_regex(r"[a-z0-9-]{1,10}", fullmatch=True), max_size=4),
    st.from_regex(r"[0-9]{1,12}|0x[0-9a-f]{0,8}", fullmatch=True),
)
def test_any_host_whose_last_label_is_a_number_is_an_address_or_refused(
    labels: list[str], last: str
) -> None:
    host = ".".join([*labels, last])
    address = parse_address(host)
    destinations = Destinations(allow_private=False)
    if address is None or not is_public(address):
        with pytest.raises(DownloadError):
            destinations.check_literal(URL(f"http://{host}/r.png"))
    else:
        destinations.check_literal(URL(f"http://{host}/r.png"))


BRACKETED_NAMES = ["x:y.evil.example", "v1.a:b", "v7.::1", "::1 ", " ::1", "::ffff:2130706433"]


@pytest.mark.parametrize("host", BRACKETED_NAMES)
def test_a_bracketed_host_that_is_no_ipv6_address_is_refused(host: str) -> None:
    """Newer URL parsers (yarl 1.25) keep what is between brackets; aiohttp takes any host
    with a ``:`` for an address and hands it to the system without the download's
    resolver, so ``[x:y.evil.example]`` was looked up in DNS and connected to unchecked."""
    assert parse_address(host) is None
    assert is_no_host_name(host)
    try:
        url = URL(f"http://[{host}]/r.png")
    except ValueError:  # an older URL parser refuses it itself
        return
    if url.raw_host == host:  # an older one may read it another way
        with pytest.raises(DownloadError, match="neither an IP address nor a host name"):
            Destinations(allow_private=False).check_literal(url)


@given(st.text(alphabet="0123456789abcdefvx:.% -", min_size=1, max_size=16))
def test_any_host_with_a_colon_is_an_address_or_refused(inside: str) -> None:
    try:
        url = URL(f"http://[{inside}]/r.png")
    except ValueError:
        return
    host = url.raw_host or ""
    address = parse_address(host)
    check = functools.partial(Destinations(allow_private=False).check_literal, url)
    if address is not None and is_public(address):
        check()
    elif ":" in host or address is not None:
        with pytest.raises(DownloadError):
            check()


async def test_a_bracketed_name_is_refused_not_looked_up(storage: Storage, tmp_path: Path) -> None:
    resolver = StaticResolver({"x:y.results.example": [["127.0.0.1"]]})
    url = f"http://[x:y.results.example]:{URL(storage.url).port}/r.png"
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        guard(client, resolver, only("127.0.0.1"))
        # DownloadError where the URL parser keeps the host; an older one refuses the URL.
        with pytest.raises((DownloadError, ConfigurationError)):
            await client.download_result(url, tmp_path)
    assert resolver.lookups == []
    assert storage.requests == 0
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("host", ["storage.example", "cdn1.example.", "a.b.c1", "x", "123.example"])
def test_names_are_left_to_the_resolver(host: str) -> None:
    Destinations(allow_private=False).check_literal(URL(f"http://{host}/r.png"))


def test_an_ipv6_address_that_carries_no_ipv4_address_reads_as_itself() -> None:
    assert carried_ipv4s(ipaddress.IPv6Address("2606:4700::1111")) == []
    assert carried_ipv4s(ipaddress.IPv6Address("64:ff9b:0:1::7f00:1")) == []


def test_a_6to4_address_with_an_isatap_interface_id_carries_both_ipv4_addresses() -> None:
    address = ipaddress.IPv6Address("2002:808:808:1:200:5efe:a00:5")
    assert carried_ipv4s(address) == [
        ipaddress.IPv4Address("8.8.8.8"),
        ipaddress.IPv4Address("10.0.0.5"),
    ]
    assert not is_public(address)


def spellings(address: ipaddress.IPv4Address) -> list[str]:
    """The ways the C library reads an IPv4 address: dotted, one number (decimal, hex,
    octal), hex and octal parts, and the short forms ``a.b.c`` and ``a.b``."""
    a, b, c, d = address.packed
    n = int(address)
    return [
        str(address),
        str(n),
        hex(n),
        "0" + format(n, "o"),
        ".".join(hex(part) for part in address.packed),
        ".".join("0" + format(part, "o") for part in address.packed),
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
    ]


@given(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address))
def test_an_address_with_a_trailing_dot_is_no_address_and_is_refused(
    address: ipaddress.IPv4Address,
) -> None:
    """``getaddrinfo`` reads ``8.8.8.8.`` as a DNS name, and aiohttp hands a host of digits
    and dots to it without the download's resolver: read as ``8.8.8.8``, it passed the
    check and whatever the name resolved to was connected to, unchecked."""
    destinations = Destinations(allow_private=False)
    for host in spellings(address):
        assert parse_address(f"{host}.") is None
        with pytest.raises(DownloadError, match="neither an IP address nor a host name"):
            destinations.check_literal(URL(f"http://{host}./r.png"))


def test_an_ipv4_address_with_a_zone_is_a_name() -> None:
    """Only an IPv6 address has a zone; ``8.8.8.8%x`` is a name to the system."""
    assert parse_address("8.8.8.8%x") is None
    assert parse_address("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")


async def test_a_public_address_with_a_trailing_dot_is_refused_not_resolved(
    storage: Storage, tmp_path: Path
) -> None:
    resolver = StaticResolver({"93.184.216.34.": [["127.0.0.1"]]})
    url = f"http://93.184.216.34.:{URL(storage.url).port}/r.png"
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        guard(client, resolver, only("127.0.0.1", "93.184.216.34"))
        with pytest.raises(DownloadError, match="neither an IP address nor a host name"):
            await client.download_result(url, tmp_path)
    assert resolver.lookups == []
    assert storage.requests == 0
    assert leftovers(tmp_path) == []


@given(addresses_in(NOT_PUBLIC))
def test_every_spelling_of_a_refused_ipv4_address_is_refused_before_any_request(
    address: ipaddress.IPv4Address,
) -> None:
    destinations = Destinations(allow_private=False)
    for host in spellings(address):
        assert parse_address(host) == address
        with pytest.raises(DownloadError, match="not a public address"):
            destinations.check_literal(URL(f"http://{host}/r.png"))


@given(addresses_in(NOT_PUBLIC) | addresses_in(NOT_PUBLIC_V6))
def test_a_resolver_answer_of_only_refused_addresses_is_a_download_error(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    resolver = PublicResolver(StaticResolver({"x.example": [[str(address)]]}))
    with pytest.raises(DownloadError, match="not a public address"):
        asyncio.run(resolver.resolve("x.example", 443))
    literal = f"[{address}]" if address.version == 6 else str(address)
    with pytest.raises(DownloadError):
        Destinations(allow_private=False).check_literal(URL(f"https://{literal}/r.png"))


def test_a_resolver_answer_keeps_only_public_addresses_in_order() -> None:
    answers = [["10.1.1.1", "93.184.216.34", "::1", "2606:4700::1111", "100.64.0.1"]]
    resolver = PublicResolver(StaticResolver({"x.example": answers}))
    kept = asyncio.run(resolver.resolve("x.example", 443))
    assert [entry["host"] for entry in kept] == ["93.184.216.34", "2606:4700::1111"]


@pytest.mark.parametrize(
    "text", ["::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1"]
)
def test_ipv6_loopback_unspecified_link_local_unique_local_and_multicast_are_not_public(
    text: str,
) -> None:
    assert not is_public(ipaddress.IPv6Address(text))


@pytest.mark.parametrize("text", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_global_addresses_are_public(text: str) -> None:
    assert is_public(ipaddress.ip_address(text))


@pytest.mark.parametrize(
    ("base_url", "private"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://localhost/v1", True),
        ("http://api.localhost/v1", True),
        ("http://[::1]:9/v1", True),
        ("http://10.1.2.3/v1", True),
        ("https://gptunnel.ru/v1", False),
        ("https://8.8.8.8/v1", False),
    ],
)
def test_a_base_url_is_private_when_its_host_is(base_url: str, private: bool) -> None:
    assert base_url_is_private(base_url) is private


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
    return path


def _link_to_fifo(path: Path) -> Path:
    path.symlink_to(_fifo(path.with_name("pipe")))
    return path


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and Unix sockets")
@pytest.mark.parametrize("make", [_fifo, _socket, _link_to_fifo])
async def test_a_dest_that_is_no_regular_file_is_refused_and_left_as_it_is(
    make: Callable[[Path], Path], storage: Storage, tmp_path: Path
) -> None:
    """A device, FIFO or socket (or a link to one: ``/dev/stdout``) is not replaced by
    the download: renamed onto ``/dev/null``, it put a PNG file in the device's place."""
    dest = make(tmp_path / "out.png")
    kind = os.stat(dest).st_mode
    async with GPTunnelClient(api_key="k-1", base_url=storage.url) as client:
        with pytest.raises(ConfigurationError, match="device, pipe or socket"):
            await client.download_result(storage.url + "r.png", dest)
    with pytest.raises(ConfigurationError, match=r"--save .* device, pipe or socket"):
        check_destination(dest, "--save")
    assert os.stat(dest).st_mode == kind
    assert storage.requests == 0
