"""Which hosts a result download may reach, enforced where names become addresses.

The rule (which addresses are public) is pure and lives in ``_sansio.addresses``. This
module applies it at the one moment that cannot be raced: a download goes through a
session of its own whose connector resolves every host name with
:class:`PublicResolver`, which keeps only the addresses the rule allows and raises
``DownloadError`` when none remain. The connector then connects only to what the
resolver returned, so there is no window between a check and a connection in which a
name can resolve again differently (DNS rebinding): a refused address is never sent a
single byte, on the first request or on any redirect. Hosts written as addresses never
reach a resolver; :meth:`Destinations.check_literal` refuses those before the request.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ._sansio.addresses import Address, is_no_host_name, is_public, parse_address
from ._sansio.text import shorten
from .errors import DownloadError

__all__ = ["Destinations", "PublicResolver"]

ResolverFactory = Callable[[], AbstractResolver]


def _refusal(host: str, address: object) -> DownloadError:
    return DownloadError(
        f"refusing to fetch from {shorten(host, 80)}: {address} is not a public address "
        "(pass allow_private_result_urls=True to GPTunnelClient to allow it)"
    )


class PublicResolver(AbstractResolver):
    """Resolves with ``inner`` and keeps only the addresses ``allowed`` accepts.

    Args:
        inner: the resolver that does the lookup (by default the system's, through
            ``getaddrinfo``).
        allowed: which addresses may be reached; :func:`is_public` by default.

    Raises:
        DownloadError: from :meth:`resolve`, when the name resolves only to refused
            addresses (not retried: asking again gives the same answer).
    """

    def __init__(
        self, inner: AbstractResolver, allowed: Callable[[Address], bool] = is_public
    ) -> None:
        self._inner = inner
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host`` that may be reached, in the inner resolver's order."""
        found = await self._inner.resolve(host, port, family)
        kept = [entry for entry in found if self._reachable(entry["host"])]
        if not kept:
            raise _refusal(host, found[0]["host"] if found else "no address")
        return kept

    def _reachable(self, text: str) -> bool:
        address = parse_address(text)
        return address is not None and self._allowed(address)

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


class Destinations:
    """Which hosts a download may reach: by default only public addresses (see
    ``_sansio.addresses``).

    Args:
        allow_private: reach any address (the caller opted in, or the API itself is
            local); downloads then use the client's own session like every request.
        resolver: makes the resolver that looks names up, one per download; the
            system's (``getaddrinfo`` in a thread) by default.
        allowed: which addresses may be reached; :func:`is_public` by default.
        lent: the session the caller lent the client, if any. When any address may be
            reached, a download goes through its connection pool (its TLS settings)
            and its proxy settings, but never with its default
            headers, cookies or ``auth=``: those (the key, as some callers lend one
            made for the API) would go to whatever host the result URL names.
    """

    __slots__ = ("_allowed", "_lent", "_resolver", "allow_private")

    def __init__(
        self,
        *,
        allow_private: bool,
        # The system's resolver rather than aiohttp's default (c-ares when aiodns is
        # installed): it reads hosts exactly as every other program here does.
        resolver: ResolverFactory = aiohttp.ThreadedResolver,
        allowed: Callable[[Address], bool] = is_public,
        lent: aiohttp.ClientSession | None = None,
    ) -> None:
        self.allow_private = allow_private
        self._resolver = resolver
        self._allowed = allowed
        self._lent = lent

    def check_literal(self, url: URL) -> None:
        """Refuse ``url`` at once if its host is written as an address that may not be
        reached (in any spelling, ``[::ffff:127.0.0.1]`` or ``2130706433`` too), or is
        neither an address nor a host name (``10.0.0.5.1``, ``[x:y.evil.example]``, see
        :func:`is_no_host_name`); a name is left to the resolver of :meth:`session`."""
        if self.allow_private:
            return
        host = url.raw_host or ""
        address = parse_address(host)
        if address is not None and not self._allowed(address):
            raise _refusal(host, address)
        if address is None and is_no_host_name(host):
            raise DownloadError(
                f"refusing to fetch from {shorten(host, 80)}: it is neither an IP address "
                "nor a host name"
            )

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[aiohttp.ClientSession | None]:
        """The session one download goes through: when any address may be reached,
        ``None`` (the client's own), or one over a lent session's pool (see ``lent``);
        else a new one whose connector resolves through :class:`PublicResolver`. Either
        new one is closed when the download ends."""
        if self.allow_private:
            if self._lent is None:
                yield None
                return
            async with _without_defaults(self._lent) as session:
                yield session
            return
        resolver = PublicResolver(self._resolver(), self._allowed)
        try:
            connector = aiohttp.TCPConnector(resolver=resolver)
            async with aiohttp.ClientSession(connector=connector) as session:
                yield session
        finally:
            await resolver.close()


def _without_defaults(lent: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """A session over ``lent``'s connection pool (left open when it closes), with its
    proxy settings (``trust_env``, ``proxy=``), and none of its default headers, cookies
    or ``auth=`` (nor its ``auto_decompress``: the transport decodes every body)."""
    options: dict[str, Any] = {
        "connector": lent.connector,
        "connector_owner": False,
        "trust_env": lent.trust_env,
    }
    for name in ("proxy", "proxy_auth"):  # aiohttp keeps a session's own under these
        value = getattr(lent, f"_default_{name}", None)
        if value is not None:
            options[name] = value
    return aiohttp.ClientSession(**options)
