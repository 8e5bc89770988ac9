"""Which network addresses a result download may reach: pure rules, no I/O.

A result URL comes from the server. A compromised or spoofed answer could point it at
the service's own network (``http://127.0.0.1:8080/admin``, a cloud metadata address,
a database on ``10.0.0.5``) and make the SDK fetch it: server-side request forgery.
So by default a download reaches only globally reachable addresses; loopback, private,
link-local, unspecified, shared (carrier-grade NAT, ``100.64.0.0/10``: inside a
provider's network, never the public internet), documentation, benchmarking, the IETF's
protocol assignments, multicast and reserved addresses are refused, in IPv4 and IPv6
alike. Which blocks those are is the SDK's own copy of the IANA special-purpose address
registries (the blocks marked not globally reachable, and the exceptions inside them),
not Python's ``ipaddress`` tables: those differ between Python versions, and between
patch releases of one (3.11.7 and 3.12.1 read ``192.0.0.8`` to ``192.0.0.255`` but
``.170`` and ``.171`` as global, and ``2001:3::/32`` as not; 3.13 learned better, and
``3fff::/20`` came after it), so the same URL was fetched on one Python and refused on
another.

An IPv6 address that carries an IPv4 address is public only if the IPv4 address it
carries is too, since that is where a translator or tunnel on the way delivers it:
IPv4-mapped (``::ffff:127.0.0.1``), IPv4-compatible (``::127.0.0.1``, deprecated),
NAT64's well-known prefix (``64:ff9b::7f00:1``, RFC 6052), SIIT's IPv4-translated
(``::ffff:0:7f00:1``, RFC 6145), 6to4 (``2002:7f00:1::``, RFC 3056) and an ISATAP
interface id (``2600::5efe:7f00:1``, RFC 5214; a 6to4 address with one carries two).
Carrying a public IPv4 address makes no IPv6 address public: an ISATAP interface id
under a link-local or unique local prefix (``fe80::5efe:808:808``,
``fd00::5efe:808:808``) is that link's or that site's host. NAT64's local-use prefix
(``64:ff9b:1::/48``, RFC 8215) and the deprecated site-local ``fec0::/10`` (RFC 3879)
are refused whatever they carry.

A host may spell an IPv4 address the legacy ways the C library still reads: one number
(``2130706433``), fewer parts (``127.1``), octal (``0177.0.0.1``) or hex (``0x7f.1``).
:func:`parse_address` reads them as the system does, so they cannot pass for names, and
names as names: with a trailing dot (``8.8.8.8.``) a host is a name to ``getaddrinfo``,
and one that is all digits and dots is connected to by aiohttp without its resolver,
so it is no address and is refused (:func:`is_no_host_name`). So is a host with a ``:``
that is no IPv6 address (``[x:y.evil.example]``, which the URL parser keeps): aiohttp
takes it for an address and connects without the download's resolver.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final, TypeAlias

from yarl import URL

__all__ = [
    "Address",
    "base_url_is_private",
    "carried_ipv4s",
    "is_no_host_name",
    "is_public",
    "parse_address",
]

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOCAL_NAMES: Final = ("localhost", "localhost.")

_CARRY_LAST_32_BITS: Final = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (RFC 4291, deprecated)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # SIIT's IPv4-translated (RFC 6145)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64's well-known prefix (RFC 6052)
)
"""IPv6 networks whose addresses carry an IPv4 address in their last 32 bits (the
IPv4-mapped ones, ``::ffff:0:0/96``, are read by ``ipaddress`` itself)."""

_ISATAP_INTERFACE: Final = (0x0000_5EFE, 0x0200_5EFE)
"""The upper half of an ISATAP interface id (RFC 5214), whose lower half is an IPv4
address: ``…:0:5efe:a.b.c.d`` under any prefix."""

_SITE_LOCAL: Final = ipaddress.IPv6Network("fec0::/10")
"""Deprecated site-local addresses (RFC 3879): still routed inside some networks."""

_NAT64_LOCAL_USE: Final = ipaddress.IPv6Network("64:ff9b:1::/48")
"""NAT64 prefixes of a local network (RFC 8215): where they lead is the network's choice."""

_NOT_GLOBAL_IPV4: Final = tuple(
    map(
        ipaddress.IPv4Network,
        (
            "0.0.0.0/8",  # "this network" (RFC 791)
            "10.0.0.0/8",  # private (RFC 1918)
            "100.64.0.0/10",  # shared, carrier-grade NAT (RFC 6598)
            "127.0.0.0/8",  # loopback (RFC 1122)
            "169.254.0.0/16",  # link-local (RFC 3927)
            "172.16.0.0/12",  # private (RFC 1918)
            "192.0.0.0/24",  # IETF protocol assignments (RFC 6890): dummy, NAT64 discovery...
            "192.0.2.0/24",  # documentation (RFC 5737)
            "192.88.99.2/32",  # 6a44 relay anycast, inside a provider's network (RFC 6751)
            "192.168.0.0/16",  # private (RFC 1918)
            "198.18.0.0/15",  # benchmarking (RFC 2544)
            "198.51.100.0/24",  # documentation (RFC 5737)
            "203.0.113.0/24",  # documentation (RFC 5737)
            "224.0.0.0/4",  # multicast (RFC 5771)
            "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255 (RFC 1112)
        ),
    )
)
"""The IPv4 blocks a download may not reach: those the IANA IPv4 special-purpose address
registry marks not globally reachable, and multicast."""

_GLOBAL_IPV4: Final = tuple(map(ipaddress.IPv4Network, ("192.0.0.9/32", "192.0.0.10/32")))
"""Globally reachable anycast addresses inside :data:`_NOT_GLOBAL_IPV4` (Port Control
Protocol, RFC 7723; TURN, RFC 8155)."""

_NOT_GLOBAL_IPV6: Final = tuple(
    map(
        ipaddress.IPv6Network,
        (
            "::/128",  # unspecified (RFC 4291)
            "::1/128",  # loopback (RFC 4291)
            "100::/64",  # discard-only (RFC 6666)
            "100:0:0:1::/64",  # dummy prefix (RFC 9780)
            "2001::/23",  # IETF protocol assignments (RFC 2928): benchmarking, ORCHID...
            "2001:db8::/32",  # documentation (RFC 3849)
            "3fff::/20",  # documentation (RFC 9637)
            "5f00::/16",  # segment routing (SRv6) SIDs, inside an SR domain (RFC 9602)
            "fc00::/7",  # unique local (RFC 4193)
            "fe80::/10",  # link-local (RFC 4291)
            "ff00::/8",  # multicast (RFC 4291)
        ),
    )
)
"""The IPv6 blocks a download may not reach, whatever IPv4 address their addresses
carry: those the IANA IPv6 special-purpose address registry marks not globally
reachable, and multicast (the site-local and NAT64 local-use blocks are refused before;
IPv4-mapped ``::ffff:0:0/96``, not globally reachable in the registry, is judged by the
address it carries, which is where the system sends it)."""

_GLOBAL_IPV6: Final = tuple(
    map(
        ipaddress.IPv6Network,
        (
            "2001:1::1/128",  # Port Control Protocol anycast (RFC 7723)
            "2001:1::2/128",  # TURN anycast (RFC 8155)
            "2001:1::3/128",  # DNS-SD Service Registration Protocol anycast (RFC 9665)
            "2001:3::/32",  # AMT (RFC 7450)
            "2001:4:112::/48",  # AS112-v6 (RFC 7535)
            "2001:20::/28",  # ORCHIDv2 (RFC 7343)
            "2001:30::/28",  # drone remote ID tags (RFC 9374)
        ),
    )
)
"""Globally reachable blocks inside :data:`_NOT_GLOBAL_IPV6`."""

_PART: Final = r"(?:0x[0-9a-f]*|[0-9]+)"
_LEGACY_IPV4: Final = re.compile(rf"{_PART}(?:\.{_PART}){{0,3}}", re.IGNORECASE)
"""One to four parts, each decimal, octal (a leading ``0``) or hex (``0x``), and no
trailing dot: what ``getaddrinfo`` reads as an IPv4 address (glibc reads
``8.8.8.8.`` as a DNS name)."""


def parse_address(text: str) -> Address | None:
    """``text`` as an IP address (an IPv6 zone such as ``%eth0`` dropped; an IPv4 address
    in any spelling the C library reads, e.g. ``2130706433`` or ``0x7f.1``), or ``None``
    if the system reads it as a name: ``8.8.8.8.`` (a trailing dot) or ``8.8.8.8%x`` (a
    zone, which only an IPv6 address has) is looked up in DNS, not connected to."""
    try:
        return ipaddress.ip_address(text.partition("%")[0] if ":" in text else text)
    except ValueError:
        pass
    if not _LEGACY_IPV4.fullmatch(text):
        return None
    try:  # the system's own reading, so that ours cannot differ from what it connects to
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:  # a part over its range, e.g. 256.1.1.1
        return None


def is_no_host_name(host: str) -> bool:
    """Whether ``host``, not an address, is no host name either, so neither a check of
    addresses nor one of names applies to it. Such a host holds a ``:`` (the URL parser
    keeps whatever is between brackets: ``[x:y.evil.example]``, ``[v1.a:b]``,
    ``[::1 ]``; aiohttp takes any host with a ``:`` for an address and hands it to the
    system without the download's resolver, which may look it up in DNS), or ends in a
    numeric label (``10.0.0.5.1``, ``4294967296``, ``1.2.3.0x1``, ``8.8.8.8.``): no DNS
    name does (a top-level domain is never all digits, RFC 3696), and a system or an
    HTTP library may read it as an address in ways of its own."""
    label = host.rstrip(".").rpartition(".")[2]
    numeric = bool(label) and re.fullmatch(_PART, label, re.IGNORECASE) is not None
    return numeric or ":" in host


def carried_ipv4s(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, none to two: IPv4-mapped,
    IPv4-compatible, SIIT's IPv4-translated or NAT64's well-known prefix (one, in the
    last 32 bits), 6to4 (one, in bits 16 to 47) and an ISATAP interface id (one, in the
    last 32 bits, under any prefix: a 6to4 address with one carries two)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    carried = [] if address.sixtofour is None else [address.sixtofour]
    isatap = (int(address) >> 32) & 0xFFFF_FFFF in _ISATAP_INTERFACE
    if isatap or any(address in network for network in _CARRY_LAST_32_BITS):
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return carried


def is_public(address: Address) -> bool:
    """Whether ``address`` is globally reachable, so a download may reach it, by the SDK's
    own tables (the same answer on every Python); an IPv6 address must be, and so must
    every IPv4 address it carries (see the module's docstring)."""
    if isinstance(address, ipaddress.IPv4Address):
        return _reachable(address, _NOT_GLOBAL_IPV4, _GLOBAL_IPV4)
    if address in _NAT64_LOCAL_USE or address in _SITE_LOCAL:
        return False
    return _reachable(address, _NOT_GLOBAL_IPV6, _GLOBAL_IPV6) and all(
        _reachable(carried, _NOT_GLOBAL_IPV4, _GLOBAL_IPV4) for carried in carried_ipv4s(address)
    )


def _reachable(
    address: Address,
    refused: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    excepted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
) -> bool:
    """Whether ``address`` is outside every block of ``refused`` or inside one of
    ``excepted``."""
    return any(address in block for block in excepted) or not any(
        address in block for block in refused
    )


def base_url_is_private(base_url: str) -> bool:
    """Whether ``base_url`` itself names a non-public host: an IP address that is not
    public, or ``localhost``. Then the API is local (an emulator, a test server), and its
    result URLs are as local as it is."""
    host = (URL(base_url).raw_host or "").lower()
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    address = parse_address(host)
    return address is not None and not is_public(address)
