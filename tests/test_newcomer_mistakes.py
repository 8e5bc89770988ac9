"""The mistakes a newcomer makes with waits, families and base_url get a pointer to the
fix: a wait never awaited warns as a coroutine does, a task read through the wrong family
is "not found" with a question about its family, in code as on the command line, and a
base_url whose host cannot be reached says to check it."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import aiohttp.abc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    NotFoundError,
    UsageError,
    WaitTimeoutError,
    cli,
    throttle,
)
from gptunnel_async.errors import API_UNREACHED, MAX_MESSAGE
from gptunnel_async.fleet import MemoryStore, Watcher
from gptunnel_async.testing import FakeGPTunnel

from .conftest import PROXY_WAYS
from .test_cli import json_lines, run
from .test_user_typing import strict_errors


@pytest.fixture
async def client(fake: FakeGPTunnel) -> AsyncIterator[GPTunnelClient]:
    """A client of the emulator (``fake``, from conftest)."""
    async with fake.client() as opened:
        yield opened


def collected_warnings(drop: Callable[[], None]) -> list[str]:
    """The RuntimeWarnings raised while ``drop()`` lets go of its objects."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_a_wait_never_awaited_warns_when_it_is_dropped(client: GPTunnelClient) -> None:
    def forget() -> None:
        client.wait_for_result("t-forgotten")  # the missing await

    (warned,) = collected_warnings(forget)
    assert "'t-forgotten' was never awaited or iterated (a missing await?)" in warned


async def test_a_wait_dropped_on_purpose_or_used_does_not_warn(
    client: GPTunnelClient, fake: FakeGPTunnel
) -> None:
    def closed() -> None:
        client.wait_for_result("t-1").close()

    def never_iterated() -> None:
        client.as_completed(["t-1", "t-2"])

    assert collected_warnings(closed) == []
    assert collected_warnings(never_iterated) == []
    task_id = fake.script_task(steps=[("done", 100)])
    awaited = client.wait_for_result(task_id)
    await awaited
    iterated = client.wait_for_result(task_id)
    assert [event.status async for event in iterated] == ["done"]
    assert collected_warnings(lambda: None) == []
    del awaited, iterated
    assert collected_warnings(lambda: None) == []
    unstarted = client.as_completed([task_id])
    await unstarted.aclose()
    del unstarted
    assert collected_warnings(lambda: None) == []


async def test_a_wait_closed_or_refused_before_it_started_does_not_warn(
    client: GPTunnelClient,
) -> None:
    async def aclosed() -> None:
        waiter = client.wait_for_result("t-1")
        async with contextlib.aclosing(waiter):
            pass  # left before the loop: the documented way to stop a wait

    async def refused_by_throttle() -> None:
        with pytest.raises(ConfigurationError, match="every"):
            async for _ in throttle(client.wait_for_result("t-2"), every=-1):
                pass

    for drop in (aclosed, refused_by_throttle):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await drop()
            gc.collect()
        assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


async def test_a_closed_wait_that_never_started_cannot_be_awaited(
    client: GPTunnelClient,
) -> None:
    waiter = client.wait_for_result("t-1")
    waiter.close()
    with pytest.raises(UsageError, match="was closed; call wait_for_result again"):
        await waiter
    assert [event async for event in waiter] == []  # and iterates nothing


Read = Callable[[GPTunnelClient, str], Awaitable[Any]]

WRONG_FAMILY: list[tuple[str, str, Read, str]] = [
    ("a song read as a face swap", "suno", lambda c, t: c.get_result(t), "faceswap"),
    ("a song waited for as a face swap", "suno", lambda c, t: c.wait_for_result(t), "faceswap"),
    ("a song read by midjourney", "suno", lambda c, t: c.midjourney.result(t), "midjourney"),
    ("a face swap read as media", "", lambda c, t: c.media.result(t), "media"),
    ("a face swap waited for as media", "", lambda c, t: c.media.wait_for_result(t), "media"),
]


@pytest.mark.parametrize(
    ("what", "model", "read", "family"), WRONG_FAMILY, ids=[w[0] for w in WRONG_FAMILY]
)
async def test_a_task_of_another_family_is_not_found_with_a_question_about_its_family(
    client: GPTunnelClient, fake: FakeGPTunnel, what: str, model: str, read: Read, family: str
) -> None:
    options = {"model": model} if model else {}
    task_id = fake.script_task(steps=[("running", 5)], **options)
    with pytest.raises(NotFoundError) as caught:
        await read(client, task_id)
    text = str(caught.value)
    others = [
        f"client.{name}"
        for name in ("faceswap", "bgremover", "midjourney", "media")
        if name != family
    ]
    assert f"(is it a {family} task? read another family's task through that family: " in text
    assert text.endswith(", ".join(others) + ")") and text.count("is it a") == 1
    assert caught.value.status_code in (200, 404)  # media says so with HTTP 200, code 4


async def test_a_path_the_api_lacks_gets_no_family_question(fake: FakeGPTunnel) -> None:
    async with fake.client(base_url=fake.base_url.removesuffix("/v1")) as lost:
        with pytest.raises(NotFoundError) as caught:
            await lost.get_result("t-1")
    assert "check base_url" in str(caught.value) and "is it a" not in str(caught.value)


# -- a base_url whose host cannot be reached ----------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class NoSuchName(aiohttp.abc.AbstractResolver):
    """A resolver that finds no host, as the system's does for a mistyped name (without
    asking any DNS server)."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


Call = Callable[[GPTunnelClient], Awaitable[Any]]

API_CALLS: list[tuple[str, Call]] = [
    ("get_result", lambda c: c.get_result("t-1")),
    (
        "faceswap.create",
        lambda c: c.faceswap.create("https://a.example/p.png", "https://a.example/f.png"),
    ),
    ("media.result", lambda c: c.media.result("t-1")),
    ("balance", lambda c: c.balance()),
]


@pytest.mark.parametrize("call", [c[1] for c in API_CALLS], ids=[c[0] for c in API_CALLS])
@pytest.mark.parametrize("unreachable", ["refused", "no such name"])
async def test_an_api_request_that_cannot_connect_says_to_check_base_url(
    call: Call, unreachable: str
) -> None:
    """aiohttp's words name a host and port only ("Cannot connect to host 127.0.0.1:9
    ssl:default [...]"); the SDK's say where that host came from."""
    async with contextlib.AsyncExitStack() as stack:
        if unreachable == "refused":
            base_url, session = f"http://127.0.0.1:{closed_port()}/v1", None
        else:
            connector = aiohttp.TCPConnector(resolver=NoSuchName())
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
            base_url = "https://gptunel.example/v1"  # one letter short
        client = await stack.enter_async_context(
            GPTunnelClient(
                api_key="k-" + "7" * 20, base_url=base_url, max_retries=0, session=session
            )
        )
        with pytest.raises(APIConnectionError) as caught:
            await call(client)
    text = str(caught.value)
    assert type(caught.value) is APIConnectionError
    assert text.startswith(("GET /v1/", "POST /v1/"))
    assert text.endswith(f"; {API_UNREACHED}") and text.count("base_url") == 1
    assert "GPTUNNEL_BASE_URL" in text and "https://gptunnel.ru/v1" in text


class OnlyTheAPI(aiohttp.abc.AbstractResolver):
    """A resolver that knows the emulator's name (``api.example``, on loopback) and no
    other, as the system's for a mistyped proxy name."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
        if host != "api.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            {"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET}
            | {"proto": 0, "flags": 0}
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("way", PROXY_WAYS)
async def test_a_proxy_that_cannot_be_reached_does_not_blame_base_url(
    fake: FakeGPTunnel, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """A proxy name that does not resolve is reported by aiohttp as a failed lookup of the
    proxy's host (not ``ClientProxyConnectionError``): base_url is not at fault. The
    proxy is the session's ``proxy=`` (aiohttp 3.11 and later) or ``$HTTP_PROXY`` read
    with ``trust_env=True`` (every version)."""
    base_url = str(URL(fake.base_url).with_host("api.example"))
    proxy = "http://proxy.example:3128"
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    for options in ({}, {"proxy": proxy} if way == "proxy=" else {"trust_env": True}):
        if options.get("trust_env"):
            monkeypatch.setenv("HTTP_PROXY", proxy)
        connector = aiohttp.TCPConnector(resolver=OnlyTheAPI())
        async with (
            aiohttp.ClientSession(connector=connector, **options) as session,
            GPTunnelClient(
                api_key=fake.api_key, base_url=base_url, max_retries=0, session=session
            ) as client,
        ):
            if not options:  # no proxy: the API's own name resolves
                assert await client.balance()
                continue
            with pytest.raises(APIConnectionError) as caught:
                await client.balance()
    assert "Cannot connect to host proxy.example:3128" in str(caught.value)
    assert "base_url" not in str(caught.value)
    assert cli._hint(caught.value, argparse.Namespace(family="faceswap")) is None


@contextlib.contextmanager
def no_file_descriptor_left() -> Iterator[None]:
    """This process at its limit of open files (lowered to a few more than it has open,
    each of them then taken): a new socket fails with EMFILE, as under a flood of waits."""
    import resource  # POSIX only: the test that uses this is skipped elsewhere

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(soft, len(os.listdir("/proc/self/fd")) + 64), hard)
    )
    held = [os.open(os.devnull, os.O_RDONLY)]
    try:
        with contextlib.suppress(OSError):
            while True:
                held.append(os.dup(held[0]))
        yield
    finally:
        for descriptor in held:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
async def test_a_socket_this_process_cannot_make_does_not_blame_base_url() -> None:
    """aiohttp reports "Too many open files" as a connection to the host that failed."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with GPTunnelClient(api_key="k-" + "7" * 20, base_url=url, max_retries=0) as client:
        with pytest.raises(APIConnectionError) as caught, no_file_descriptor_left():
            await client.get_result("t-1")
    assert "Too many open files" in str(caught.value)
    assert "base_url" not in str(caught.value)
    assert cli._hint(caught.value, argparse.Namespace(family="faceswap")) is None


async def test_a_result_download_on_the_api_s_own_origin_says_what_an_api_request_does(
    tmp_path: Path,
) -> None:
    """Midjourney's results are on the API's origin (``/task/image/<id>``): that host is
    ``base_url``'s, unlike a storage host's."""
    origin = f"http://127.0.0.1:{closed_port()}"
    async with GPTunnelClient(
        api_key="k-" + "7" * 20,
        base_url=f"{origin}/v1",
        max_retries=0,
        allow_private_result_urls=True,
    ) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.download_result(f"{origin}/task/image/abc", tmp_path / "r")
    assert str(caught.value).startswith("GET /task/image/abc failed: Cannot connect to host")
    assert str(caught.value).endswith(f"; {API_UNREACHED}")


async def test_a_result_download_that_cannot_connect_does_not_blame_base_url(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    """A result file's host is the storage's, named by the task: base_url is not at fault."""
    async with fake.client(max_retries=0) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.download_result(f"http://127.0.0.1:{closed_port()}/r.png", tmp_path / "r")
    assert "Cannot connect to host" in str(caught.value)
    assert "base_url" not in str(caught.value)


async def test_a_wait_that_never_connected_says_to_check_base_url_once() -> None:
    """The wait's deadline message adds "no read reached the API" to the last read's
    error, which already says what to check: not a second "check base_url"."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with GPTunnelClient(api_key="k-" + "7" * 20, base_url=url, max_retries=0) as client:
        with pytest.raises(WaitTimeoutError) as caught:
            await client.wait_for_result("t-1", timeout=0.3)
    text = str(caught.value)
    assert isinstance(caught.value.last_error, APIConnectionError)
    assert text.endswith(f"{API_UNREACHED}; no read reached the API)")
    assert text.count("check base_url") == 1


UNREACHED_READ = f"GET /v1/faceswap/result failed: Cannot connect to host h:1; {API_UNREACHED}"

DEADLINE_ENDINGS: list[tuple[str, GPTunnelError | None, str]] = [
    (
        "the read said what to check",
        APIConnectionError(UNREACHED_READ),
        "; no read reached the API)",
    ),
    (
        "the read's hint after a long host name",
        APIConnectionError("GET /v1/x failed: " + "x" * 300 + f"; {API_UNREACHED}"),
        f"x…; {API_UNREACHED}; no read reached the API)",
    ),
    (
        "a read without the hint (a download host, a server that hung up)",
        APIConnectionError("GET /v1/x failed: Server disconnected"),
        "; no read reached the API: check base_url and the network)",
    ),
    ("a read that timed out", APITimeoutError("GET /v1/x timed out after 30s"), "after 30s)"),
    ("no read failed", None, "(no state read yet)"),
]


@pytest.mark.parametrize(
    ("what", "last_error", "ending"), DEADLINE_ENDINGS, ids=[d[0] for d in DEADLINE_ENDINGS]
)
def test_a_deadline_message_says_to_check_base_url_once_at_most(
    what: str, last_error: GPTunnelError | None, ending: str
) -> None:
    text = str(WaitTimeoutError("t-1", 5.0, None, last_error))
    assert text.endswith(ending)
    assert text.count("check base_url") <= 1


@given(length=st.integers(0, 1000), label=st.sampled_from("a-1."))
def test_a_deadline_message_keeps_the_read_s_base_url_hint_whole(length: int, label: str) -> None:
    """A long host name (a DNS failure's) pushed the read's hint past the 300 characters
    kept of it: cut mid-word, then "check base_url and the network" again after it."""
    host = (label * length)[:length]
    read = f"GET /v1/x failed: Cannot connect to host {host}:443 ssl:default [...]"
    text = str(WaitTimeoutError("t-1", 5.0, None, APIConnectionError(f"{read}; {API_UNREACHED}")))
    assert text.endswith(f"; {API_UNREACHED}; no read reached the API)")
    assert text.count("check base_url") == 1 and len(text) <= MAX_MESSAGE


async def test_the_command_line_hints_at_base_url_for_the_api_s_host_only(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    """``gptunnel-async wait --save`` whose result host (the storage's) refuses must not
    be told to check ``--base-url``, which was right: the API answered."""
    unreachable = f"http://127.0.0.1:{closed_port()}"
    async with fake.client(max_retries=0) as client:
        with pytest.raises(APIConnectionError) as download:
            await client.download_result(f"{unreachable}/r.png", tmp_path / "r")
    async with GPTunnelClient(
        api_key=fake.api_key, base_url=f"{unreachable}/v1", max_retries=0
    ) as lost:
        with pytest.raises(APIConnectionError) as read:
            await lost.get_result("t-1")
    args = argparse.Namespace(family="faceswap")
    assert cli._hint(download.value, args) is None
    assert cli._hint(read.value, args) == cli.NO_CONNECTION


# -- `with` where `async with` is meant ---------------------------------------------------

Enter = Callable[[GPTunnelClient], Any]

ASYNC_ONLY: list[tuple[str, Enter]] = [
    ("GPTunnelClient", lambda client: client),
    ("AsCompleted", lambda client: client.as_completed([])),
    ("Watcher", lambda client: Watcher(client, MemoryStore())),
]


@pytest.mark.parametrize(("name", "make"), ASYNC_ONLY, ids=[a[0] for a in ASYNC_ONLY])
async def test_a_plain_with_says_to_write_async_with(
    fake: FakeGPTunnel, name: str, make: Enter
) -> None:
    """Python's own error was a TypeError, "'GPTunnelClient' object does not support the
    context manager protocol", which is no GPTunnelError and names no fix."""
    async with fake.client() as client:
        entered = make(client)
        with pytest.raises(UsageError) as caught, entered:
            pytest.fail("the block ran")
        assert str(caught.value) == (
            f"{name} is an async context manager: use `async with`, not `with` "
            "(inside an `async def`)"
        )
        async with entered:  # the `with` opened and closed nothing: it still works
            assert await client.balance()


@pytest.mark.parametrize(("name", "make"), ASYNC_ONLY, ids=[a[0] for a in ASYNC_ONLY])
@pytest.mark.parametrize("stack", ["ExitStack", "AsyncExitStack"])
async def test_an_exit_stack_s_push_of_an_async_context_manager_is_refused_at_exit(
    fake: FakeGPTunnel, name: str, make: Enter, stack: str
) -> None:
    """``stack.push(client)`` (meant: ``push_async_exit``) registers ``__exit__``: one
    that did nothing left the object open, where Python had said it was not callable."""
    async with fake.client() as client, contextlib.AsyncExitStack() as outer:
        opened = await outer.enter_async_context(make(client))
        if stack == "ExitStack":
            with pytest.raises(UsageError) as caught, contextlib.ExitStack() as pushed:
                pushed.push(opened)
        else:
            with pytest.raises(UsageError) as caught:
                async with contextlib.AsyncExitStack() as pushed_async:
                    pushed_async.push(opened)
        assert str(caught.value) == (
            f"{name} is an async context manager and was not closed: give it to an "
            "AsyncExitStack's push_async_exit or enter_async_context, not to push or "
            "enter_context"
        )


WITH_INSTEAD_OF_ASYNC_WITH = """
from gptunnel_async import GPTunnelClient


async def main() -> None:
    with GPTunnelClient() as client:
        await client.balance()
"""


def test_a_type_checker_still_reports_the_plain_with(tmp_path: Path) -> None:
    """The refusal is hidden from type checkers: ``with`` stays an error before it runs."""
    code = tmp_path / "bot.py"
    code.write_text(WITH_INSTEAD_OF_ASYNC_WITH, encoding="utf-8")
    said = strict_errors(tmp_path, [code])
    assert '"GPTunnelClient" has no attribute "__enter__"; maybe "__aenter__"?' in said


def test_a_cli_wait_cut_during_its_first_read_s_retries_says_why() -> None:
    """``gptunnel-async wait`` with a ``--timeout`` shorter than the client's retries of
    a first read that found no server said only "(no state read yet)", and its hint
    that "the task goes on at GPTunnel": nothing had reached GPTunnel."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    done = run("wait", "t-1", "--timeout", "0.3", "--json", instant=False,
               GPTUNNEL_API_KEY="k-" + "7" * 20, GPTUNNEL_BASE_URL=url)  # fmt: skip
    assert done.returncode == 3
    record = json_lines(done.stdout)[-1]
    assert (record["event"], record["task"]) == ("timeout", None)
    assert "its last read failed: APIConnectionError: " in record["message"]
    assert record["message"].endswith(f"{API_UNREACHED}; no read reached the API)")
    assert record["hint"] == cli.NO_CONNECTION


# -- a Path where text or a link is meant -------------------------------------------------

PATH_TYPE = type(Path()).__name__  # PosixPath, or WindowsPath

PATHS_FOR_TEXT: list[tuple[str, Call, str]] = [
    ("a model", lambda c: c.media.create(Path("flux"), "a cat"), "model"),
    ("a task id read", lambda c: c.get_result(Path("flux")), "task_id"),
    ("a task id waited for", lambda c: c.media.wait_for_result(Path("flux")), "task_id"),
]


@pytest.mark.parametrize(
    ("what", "call", "name"), PATHS_FOR_TEXT, ids=[p[0] for p in PATHS_FOR_TEXT]
)
async def test_a_path_given_for_text_is_named_as_a_path(
    client: GPTunnelClient, what: str, call: Call, name: str
) -> None:
    """The refusal said "got 'flux'", quoting the text it asked for."""
    with pytest.raises(ConfigurationError) as caught:
        await call(client)
    assert str(caught.value) == f"{name} must be a non-empty string, got a {PATH_TYPE} ('flux')"


@pytest.mark.parametrize(
    "given", [Path, PurePosixPath, str.encode, lambda key: bytearray(key.encode())]
)
async def test_a_task_id_that_is_the_key_in_another_type_is_refused_without_it(
    fake: FakeGPTunnel, given: Callable[[str], object]
) -> None:
    """``get_result(Path(key))`` said "got a PosixPath ('<the key>')": the key was
    looked for in a task id given as text only."""
    async with fake.client() as client:
        with pytest.raises(ConfigurationError) as caught:
            await client.get_result(given(fake.api_key))  # type: ignore[arg-type]
    assert str(caught.value) == (
        "task_id holds the API key (not shown here): pass the id a create call returned"
    )


def test_a_path_given_for_an_emulated_task_s_error_is_named_as_a_path(
    fake: FakeGPTunnel,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        fake.script_task(steps=[("failed", 0)], error=Path("no face"))  # type: ignore[arg-type]
    assert str(caught.value) == f"error must be a string, got a {PATH_TYPE} ('no face')"


class AsyncPath(os.PathLike[str]):
    """A path object of another library (anyio's and trio's ``Path``): only a path's
    text, which ``os.fspath`` reads; made as pathlib makes it (``//`` turned into ``/``)."""

    def __init__(self, text: str) -> None:
        self._text = str(PurePosixPath(text))

    def __fspath__(self) -> str:
        return self._text


@pytest.mark.parametrize("link", ["https://a.example/me.png", "HTTP://a.example/me.png"])
@pytest.mark.parametrize("argument", ["source_image", "face_image"])
@pytest.mark.parametrize("path", [Path, AsyncPath])
async def test_a_link_given_as_a_path_says_to_pass_it_as_text(
    client: GPTunnelClient, link: str, argument: str, path: Callable[[str], os.PathLike[str]]
) -> None:
    """``Path("https://a.example/me.png")`` is the file ``https:/a.example/me.png``."""
    images = {"source_image": "https://a.example/p.png", "face_image": "https://a.example/f.png"}
    images[argument] = path(link)  # type: ignore[assignment]
    with pytest.raises(ConfigurationError) as caught:
        await client.faceswap.create(**images)
    assert str(caught.value).startswith(f"cannot read the {argument} file ")
    assert str(caught.value).endswith(
        "(a link given as a Path, which turned its // into /: pass it as a str)"
    )


# -- a base_url that is no URL ------------------------------------------------------------

QUOTES = (
    ": it is wrapped in quotes (an env file's, kept by the tool that read it?); "
    "give it without them"
)
NO_SCHEME = ": it needs its scheme in front, https:// (or http:// for a local server)"
BLANK = ": it is blank; leave it out (and GPTUNNEL_BASE_URL unset) for https://gptunnel.ru/v1"
KEY_GIVEN = ": it is the API key, not the API's URL (GPTunnel's is https://gptunnel.ru/v1)"
BASE_URL_KEY = "k-" + "7" * 20

BAD_BASE_URLS: list[tuple[str, str, str | None, str]] = [
    ("an env file's quotes", '"https://gptunnel.ru/v1"', None, QUOTES),
    ("single quotes, given", "'https://gptunnel.ru/v1'", "given", QUOTES),
    ("no scheme", "gptunnel.ru/v1", "given", NO_SCHEME),
    ("a local server without http://", "127.0.0.1:8080/v1", None, NO_SCHEME),
    ("a scheme cut short", "http:/gptunnel.ru/v1", "given", "got 'http:/gptunnel.ru/v1'"),
    ("blank, given", "", "given", BLANK),
    ("blank, in the environment", "  ", None, BLANK),
    ("quotes around nothing", '""', None, BLANK),
    ("the API key, given", BASE_URL_KEY, "given", f"got '***'{KEY_GIVEN}"),
    ("the API key, in quotes", f"'{BASE_URL_KEY}'", None, f"got \"'***'\"{KEY_GIVEN}"),
]


@pytest.mark.parametrize(
    ("what", "url", "given", "ending"), BAD_BASE_URLS, ids=[b[0] for b in BAD_BASE_URLS]
)
def test_a_base_url_that_is_no_url_says_where_it_came_from_and_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, what: str, url: str, given: str | None, ending: str
) -> None:
    """The error said "base_url must be an absolute http(s) URL" also when no base_url
    was passed (it came from GPTUNNEL_BASE_URL), and nothing of the likely fix."""
    monkeypatch.setenv("GPTUNNEL_BASE_URL", url)
    with pytest.raises(ConfigurationError) as caught:
        GPTunnelClient(api_key=BASE_URL_KEY, base_url=url if given else None)
    name = "base_url" if given else "base_url (from GPTUNNEL_BASE_URL)"
    assert str(caught.value).startswith(f"{name} must be an absolute http(s) URL, got ")
    assert str(caught.value).endswith(ending)


@pytest.mark.parametrize("around", [" ", "\t", "\r\n", " \r", "\x0b "])
@pytest.mark.parametrize("given", [True, False])
async def test_a_base_url_with_spaces_around_reaches_the_api(
    fake: FakeGPTunnel, monkeypatch: pytest.MonkeyPatch, around: str, given: bool
) -> None:
    """An env file's trailing space was kept as ``/v1%20``: every request a 404."""
    url = f"{around}{fake.base_url}{around}"
    monkeypatch.setenv("GPTUNNEL_BASE_URL", url)
    async with GPTunnelClient(api_key=fake.api_key, base_url=url if given else None) as client:
        assert repr(client) == f"GPTunnelClient(base_url={fake.base_url!r})"
        assert await client.balance()
