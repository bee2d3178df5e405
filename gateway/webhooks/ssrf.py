"""SSRF guard: webhook targets must be public addresses only (unless settings allow private ones).

The policy is an allow-list: IPv4 outside the special-purpose ranges, IPv6 global unicast (``2000::/3``)
outside its special ranges, and any IPv4 carried inside an IPv6 address (mapped, NAT64, 6to4, Teredo, ...)
is checked as IPv4. A URL is checked when a subscription is created or changed; at send time the
dispatcher's transport (:mod:`gateway.webhooks.transport`) resolves the host once, checks the answer and
dials exactly that address, so a name that answers public then private (DNS rebinding) cannot pass.
Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import urlsplit

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""host, port -> the addresses it resolves to (tests pass fakes that change their answer)."""


class UnsafeTarget(ValueError):
    """The URL may not receive webhooks."""


def _v4(*nets: str) -> tuple[IPv4Network, ...]:
    return tuple(IPv4Network(n) for n in nets)


def _v6(*nets: str) -> tuple[IPv6Network, ...]:
    return tuple(IPv6Network(n) for n in nets)


# IANA special-purpose IPv4 ranges that are not globally reachable, plus multicast and the 6to4 relay
# anycast. Spelled out rather than ipaddress.is_global, whose answer changes between Python versions.
_V4_DENIED = _v4("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                 "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
                 "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
# Inside 2000::/3: IETF protocol assignments (Teredo, benchmarking, ORCHID, ...) and documentation.
_V6_DENIED = _v6("2001::/23", "2001:db8::/32", "3fff::/20")
# IPv6 forms that reach an IPv4 host: allowed exactly when that IPv4 address is.
_V4_CARRIERS = _v6("::ffff:0:0/96", "64:ff9b::/96")
_LOW32 = _v6("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")
_TEREDO = IPv6Network("2001::/32")


def embedded_ipv4(ip: IPv6Address) -> list[IPv4Address]:
    """IPv4 addresses carried in ``ip``: mapped, SIIT, IPv4-compatible, NAT64 (low 32 bits), 6to4, Teredo."""
    if any(ip in net for net in _LOW32):
        return [IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in _SIX_TO_FOUR:
        return [IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)]
    if ip in _TEREDO:
        server, client = ip.teredo or (IPv4Address(0), IPv4Address(0))
        return [server, client]
    return []


def _public_v4(ip: IPv4Address) -> bool:
    return not any(ip in net for net in _V4_DENIED)


def is_public(address: str | IPAddress) -> bool:
    """True only for an address a webhook may be sent to (see the module docstring for the policy)."""
    ip = address if isinstance(address, IPv4Address | IPv6Address) else ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, IPv4Address):
        return _public_v4(ip)
    carried = embedded_ipv4(ip)
    if not all(_public_v4(v4) for v4 in carried):
        return False
    if any(ip in net for net in _V4_CARRIERS):
        return True
    return ip in _V6_GLOBAL_UNICAST and not any(ip in net for net in _V6_DENIED)


def _ipv4_number(part: str) -> int | None:
    """One label of an IPv4 host in the forms resolvers accept (WHATWG URL): decimal, 0-octal, 0x-hex."""
    try:
        if part[:2].lower() == "0x":
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def parse_ip_host(host: str) -> tuple[IPAddress, bool] | None:
    """``(address, canonical)`` when ``host`` is an IP literal in any form (``2130706433``, ``0177.0.0.1``,
    ``0x7f.1``, ``[::1]``), None for a name. ``canonical`` is False for the numeric IPv4 shorthands."""
    bare = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(bare), True
    except ValueError:
        pass
    parts = bare.rstrip(".").split(".")
    if not parts or _ipv4_number(parts[-1]) is None:
        return None  # a name: its last label is not a number
    numbers = [_ipv4_number(p) for p in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise UnsafeTarget(f"webhook host {host!r} is not a valid address")
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        raise UnsafeTarget(f"webhook host {host!r} is not a valid address")
    value = sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + last
    return IPv4Address(value), False


def check_url(url: str, allow_private: bool) -> tuple[str, int]:
    """The URL's ``(host, port)`` when its shape is acceptable; an IP-literal host is checked here too."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_private):
        raise UnsafeTarget("webhook URLs must use https")
    if parts.username or parts.password:
        raise UnsafeTarget("webhook URLs must not carry credentials")
    if not parts.hostname:
        raise UnsafeTarget("webhook URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeTarget("webhook URL has an invalid port") from None
    literal = parse_ip_host(parts.hostname)
    if literal is not None:
        address, canonical = literal
        _require_public([address], allow_private)
        if not canonical:  # what the HTTP client would make of it is not what was checked
            raise UnsafeTarget(f"webhook host {parts.hostname!r}: write the address as {address}")
    return parts.hostname, port


def _require_public(addresses: list[IPAddress], allow_private: bool) -> None:
    if not addresses:
        raise UnsafeTarget("webhook host resolves to no address")
    if not allow_private and not all(is_public(a) for a in addresses):
        raise UnsafeTarget("webhook URL resolves to a private, loopback or reserved address")


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the system resolver (getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class TargetGuard:
    """Resolves webhook hosts and refuses the ones that are not public (unless ``allow_private``)."""

    def __init__(self, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self._resolve = resolver

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The checked addresses to dial for ``host`` (every one must pass, so none of them is private)."""
        literal = parse_ip_host(host)
        if literal is not None:
            found = [literal[0]]
        else:
            try:
                found = [ipaddress.ip_address(a.split("%")[0]) for a in await self._resolve(host, port)]
            except OSError:
                raise UnsafeTarget(f"webhook host {host!r} does not resolve") from None
        _require_public(found, self.allow_private)
        return list(dict.fromkeys(found))

    async def check(self, url: str) -> None:
        """Raise :class:`UnsafeTarget` unless ``url`` is an acceptable target right now."""
        host, port = check_url(url, self.allow_private)
        await self.addresses(host, port)


async def check_target(url: str, allow_private: bool) -> None:
    """:meth:`TargetGuard.check` with the system resolver."""
    await TargetGuard(allow_private).check(url)
