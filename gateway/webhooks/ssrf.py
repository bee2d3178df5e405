"""SSRF guard: webhook targets must resolve to public addresses only (unless settings allow private ones).

Checked when a subscription is created and again before every attempt (DNS may change in between);
redirects are never followed, so a public target cannot bounce a delivery to a private one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeTarget(ValueError):
    """The URL may not receive webhooks."""


def _check_url(url: str, allow_private: bool) -> tuple[str, int]:
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
    return parts.hostname, port


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_target(url: str, allow_private: bool) -> None:
    """Raise :class:`UnsafeTarget` unless every address the host resolves to is public (or allowed)."""
    host, port = _check_url(url, allow_private)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeTarget(f"webhook host {host!r} does not resolve") from None
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(is_public(a) for a in addresses):
        raise UnsafeTarget("webhook URL resolves to a private, loopback or reserved address")
