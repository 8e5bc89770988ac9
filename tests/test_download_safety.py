"""Downloads fail only with typed errors, end within their deadline, and reach only public
addresses unless the API itself is local or the caller opts in."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import ConfigurationError, DownloadError, GPTunnelClient, Task
from gptunnel_async._download import Destinations
from gptunnel_async._sansio.addresses import base_url_is_private, is_public

from .conftest import loopback_server

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
PUBLIC_API = "https://api.example.org/v1"
"""A base URL on a public name: nothing is ever sent there in these tests."""


class Storage:
    """A loopback storage host: ``/r.png`` at once, ``/drip.png`` a byte every 0.5 s,
    ``/hop`` a redirect to ``/r.png``; it counts the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.path == "/hop":
            raise web.HTTPFound(self.url + "r.png")
        if request.path != "/drip.png":
            return web.Response(body=PNG, content_type="image/png")
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"x")
            await asyncio.sleep(0.5)
        return response


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


class _FirstHostAllowed(Destinations):
    """Treats one host as public: a stand-in for a public storage host, which a test on
    loopback cannot have, so that what its redirect points to is checked as usual."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allow_private=False)
        self.allowed = allowed

    async def check_host(self, url: URL) -> None:
        if url.path != self.allowed:
            await super().check_host(url)

    def check_peer(self, url: URL, response: Any) -> None:
        if url.path != self.allowed:
            super().check_peer(url, response)


async def test_a_redirect_to_a_private_address_is_refused(storage: Storage, tmp_path: Path) -> None:
    async with GPTunnelClient(api_key="k-1", base_url=PUBLIC_API) as client:
        client._destinations = _FirstHostAllowed("/hop")
        with pytest.raises(DownloadError, match="not a public address"):
            await client.download_result(storage.url + "hop", tmp_path / "r.png")
    assert storage.requests == 1  # the redirect, never its target
    assert leftovers(tmp_path) == []


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
]


@given(
    st.sampled_from(NOT_PUBLIC).flatmap(
        lambda net: st.integers(0, ipaddress.ip_network(net).num_addresses - 1).map(
            lambda n: ipaddress.ip_network(net)[n]
        )
    )
)
def test_no_address_of_a_private_range_is_public_nor_its_ipv4_mapped_form(
    address: ipaddress.IPv4Address,
) -> None:
    assert not is_public(address)
    assert not is_public(ipaddress.IPv6Address(f"::ffff:{address}"))


@pytest.mark.parametrize("text", ["::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1"])
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
