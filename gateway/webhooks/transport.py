"""The webhook HTTP client: every connection dials an address the SSRF guard checked, resolved once.

httpx would otherwise resolve the host again when it connects, after the guard looked (DNS rebinding:
public at the check, private at the connect). Here the resolution happens inside the connect itself: the
URL keeps its host name, so the Host header, the TLS server name (SNI) and certificate verification are
the name's, while the socket goes to the address that passed the check. Each pooled connection was
checked when it was dialed; a redirect is a new request (never followed anyway) and would be checked too.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream
from httpcore._backends.auto import AutoBackend

from gateway.webhooks.ssrf import TargetGuard

SocketOption = typing.Any  # httpcore's SOCKET_OPTION union (not exported)


class GuardedNetwork(AsyncNetworkBackend):
    """An httpcore network backend whose ``connect_tcp`` dials only guard-approved addresses."""

    def __init__(self, guard: TargetGuard, inner: AsyncNetworkBackend | None = None) -> None:
        self._guard = guard
        self._inner = inner or AutoBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: typing.Iterable[SocketOption] | None = None) -> AsyncNetworkStream:
        addresses = await self._guard.addresses(host, port)  # raises UnsafeTarget: nothing is dialed
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the host's next (also checked) address
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[SocketOption] | None = None) -> AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are never sent over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool on a :class:`GuardedNetwork` (no proxies, no env)."""

    def __init__(self, guard: TargetGuard, *, verify: ssl.SSLContext | bool = True,
                 limits: httpx.Limits = POOL_LIMITS) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=GuardedNetwork(guard))


def webhook_client(guard: TargetGuard, timeout_s: float, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """The dispatcher's client: pinned connections, redirects never followed (a 3xx is a failed attempt)."""
    return httpx.AsyncClient(transport=PinnedTransport(guard, verify=verify), follow_redirects=False,
                             timeout=timeout_s, trust_env=False)
