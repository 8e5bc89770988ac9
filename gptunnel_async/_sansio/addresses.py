"""Which network addresses a result download may reach: pure rules, no I/O.

A result URL comes from the server. A compromised or spoofed answer could point it at
the service's own network (``http://127.0.0.1:8080/admin``, a cloud metadata address,
a database on ``10.0.0.5``) and make the SDK fetch it: server-side request forgery.
So by default a download reaches only globally routable addresses; loopback, private,
link-local, unspecified, shared (carrier-grade NAT), multicast and reserved addresses
are refused, in IPv4 and IPv6 alike, IPv4-mapped IPv6 (``::ffff:127.0.0.1``) read as
the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
from typing import Final, TypeAlias

from yarl import URL

__all__ = ["Address", "base_url_is_private", "is_public", "parse_address"]

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOCAL_NAMES: Final = ("localhost", "localhost.")


def parse_address(text: str) -> Address | None:
    """``text`` as an IP address (an IPv6 zone such as ``%eth0`` dropped), or ``None`` if
    it is a name."""
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


def is_public(address: Address) -> bool:
    """Whether ``address`` is globally routable, so a download may reach it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def base_url_is_private(base_url: str) -> bool:
    """Whether ``base_url`` itself names a non-public host: an IP address that is not
    public, or ``localhost``. Then the API is local (an emulator, a test server), and its
    result URLs are as local as it is."""
    host = (URL(base_url).raw_host or "").lower()
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    address = parse_address(host)
    return address is not None and not is_public(address)
