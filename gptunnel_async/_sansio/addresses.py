"""Which network addresses a result download may reach: pure rules, no I/O.

A result URL comes from the server. A compromised or spoofed answer could point it at
the service's own network (``http://127.0.0.1:8080/admin``, a cloud metadata address,
a database on ``10.0.0.5``) and make the SDK fetch it: server-side request forgery.
So by default a download reaches only globally routable addresses; loopback, private,
link-local, unspecified, shared (carrier-grade NAT, ``100.64.0.0/10``: inside a
provider's network, never the public internet), multicast and reserved addresses are
refused, in IPv4 and IPv6 alike, IPv4-mapped IPv6 (``::ffff:127.0.0.1``) read as the
IPv4 address it carries. Which addresses those are is the standard library's
``ipaddress`` tables (``is_global``, ``is_multicast``), not a list of our own.

A host may spell an IPv4 address the legacy ways the C library still reads: one number
(``2130706433``), fewer parts (``127.1``), octal (``0177.0.0.1``) or hex (``0x7f.1``).
:func:`parse_address` reads them as the system does, so they cannot pass for names.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final, TypeAlias

from yarl import URL

__all__ = ["Address", "base_url_is_private", "is_public", "parse_address"]

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOCAL_NAMES: Final = ("localhost", "localhost.")

_PART: Final = r"(?:0x[0-9a-f]*|[0-9]+)"
_LEGACY_IPV4: Final = re.compile(rf"{_PART}(?:\.{_PART}){{0,3}}\.?", re.IGNORECASE)
"""One to four parts, each decimal, octal (a leading ``0``) or hex (``0x``): what
``inet_aton`` reads as an IPv4 address."""


def parse_address(text: str) -> Address | None:
    """``text`` as an IP address (an IPv6 zone such as ``%eth0`` dropped; an IPv4 address
    in any spelling the C library reads, e.g. ``2130706433`` or ``0x7f.1``), or ``None``
    if it is a name."""
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        pass
    if not _LEGACY_IPV4.fullmatch(text):
        return None
    try:  # the system's own reading, so that ours cannot differ from what it connects to
        return ipaddress.IPv4Address(socket.inet_aton(text.rstrip(".")))
    except OSError:  # a part over its range, e.g. 256.1.1.1
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
