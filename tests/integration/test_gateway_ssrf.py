"""SSRF at send time, against the real dispatcher, Redis and sockets: the address dialed is the address
checked (DNS rebinding), every spelling of a private address is refused, redirects are not followed."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis

from gateway.devtools import harness
from gateway.settings import WebhookSettings
from gateway.webhooks import ssrf
from gateway.webhooks.dispatcher import Dispatcher
from gateway.webhooks.models import Delivery
from gateway.webhooks.sealing import SecretBox
from gateway.webhooks.store import WebhookStore
from mesh.config import MeshSettings

pytestmark = pytest.mark.integration
NAME = "hooks.example"
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass
class Listener:
    """A raw TCP (or TLS) server: connections accepted, TLS server names asked for, request heads."""

    host: str
    port: int
    response: bytes
    connections: int = 0
    server_names: list[str | None] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def listen(host: str, port: int = 0, tls: ssl.SSLContext | None = None,
                 response: bytes = OK) -> AsyncIterator[Listener]:
    state = Listener(host, port, response)
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: state.server_names.append(name)  # type: ignore[assignment,func-returns-value]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            state.requests.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5))
            writer.write(state.response)
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def _certificate(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a self-signed certificate of ``hooks.example``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return server, ssl.create_default_context(cafile=str(tmp / "cert.pem"))


class Dns:
    """Answers for test names through ``socket.getaddrinfo`` (what every resolver in the process uses)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[str]] = {}
        self.asked: dict[str, int] = {}
        real = socket.getaddrinfo

        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(host, bytes):
                host = host.decode()
            if host not in self.answers:
                return real(host, port, *args, **kwargs)
            n = self.asked[host] = self.asked.get(host, 0) + 1
            answers = self.answers[host]
            address = answers[min(n, len(answers)) - 1]  # the n-th answer, then the last one forever
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

        monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Dns:
    return Dns(monkeypatch)


@pytest.fixture
def loopback_two_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.2 stands for a public host (a test cannot listen on one); 127.0.0.1 stays private."""
    real = ssrf.is_public
    monkeypatch.setattr(ssrf, "is_public", lambda a: str(a) == "127.0.0.2" or real(a))


@pytest.fixture
async def store() -> AsyncIterator[WebhookStore]:
    redis: Redis[bytes] = Redis.from_url(MeshSettings().redis.url)
    prefix = f"test-ssrf-{uuid.uuid4().hex[:8]}:"
    yield WebhookStore(redis, prefix, box=SecretBox.from_settings(WebhookSettings()))
    keys = [k async for k in redis.scan_iter(f"{prefix}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()  # type: ignore[attr-defined]


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return _certificate(tmp_path)


def _settings(allow_private: bool = False) -> WebhookSettings:
    return WebhookSettings(allow_private_targets=allow_private, max_attempts=1, timeout_s=2.0)


async def _deliver_once(store: WebhookStore, url: str, settings: WebhookSettings,
                        client_of: Callable[[WebhookSettings], Any] = Dispatcher.make_client) -> Delivery:
    """Subscribe ``url`` (no create-time check: the target changed after it), enqueue one event, dispatch."""
    sub = await store.create("acme", url, ["alert"], "")
    event_id = uuid.uuid4().hex
    [dlv] = await store.enqueue("acme", event_id, "alert", b'{"x":1}', "")
    dispatcher = Dispatcher(store, settings, client_of(settings), clock=lambda: 1.0e9)
    try:
        assert await dispatcher.dispatch_due() >= 1
    finally:
        await dispatcher._client.aclose()
    found = await store.delivery("acme", dlv)
    assert sub is not None and found is not None and found.subscription_id == sub.id
    return found


async def test_a_name_that_turns_private_after_the_check_is_not_dialed(
        store: WebhookStore, dns: Dns, loopback_two_is_public: None,
        tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async with listen("127.0.0.1") as internal, listen("127.0.0.2", internal.port, tls=tls[0]) as public:
        dns.answers[NAME] = ["127.0.0.2", "127.0.0.1"]  # public for the first lookup, private afterwards
        await _deliver_once(store, f"https://{NAME}:{public.port}/hook", _settings())
    assert internal.connections == 0, "the delivery went to the address the guard never checked"
    assert public.server_names == [NAME]  # dialed the checked address, with the name as TLS server name
    assert dns.asked[NAME] == 1  # one resolution per attempt: the one that was checked


async def test_pinned_delivery_keeps_the_host_header_and_server_name(
        store: WebhookStore, dns: Dns, loopback_two_is_public: None,
        tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async with listen("127.0.0.2", tls=tls[0]) as public:
        dns.answers[NAME] = ["127.0.0.2", "127.0.0.1"]
        found = await _deliver_once(store, f"https://{NAME}:{public.port}/hook", _settings(),
                                    lambda s: Dispatcher.make_client(s, verify=tls[1]))
    assert found.status == "delivered", found.log  # the certificate verified against the name
    assert public.server_names == [NAME]
    assert f"host: {NAME}:{public.port}".encode() in public.requests[0].lower()


async def test_answer_changed_between_create_and_send_is_refused_at_send(dns: Dns) -> None:
    settings = harness.gateway_settings(allow_private_targets=False)
    async with harness.lifespan_client(harness.build(settings)) as http:
        auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, 'acme'))}"}
        dns.answers["rebind.example"] = ["93.184.215.14", "169.254.169.254"]
        created = await http.post("/v1/webhooks", headers=auth, json={
            "url": "https://rebind.example/hook", "event_types": ["alert"]})
        assert created.status_code == 201, created.text  # public when created
        ctx = http._transport.app.state.gateway  # type: ignore[attr-defined]
        [dlv] = await ctx.webhooks.enqueue("acme", uuid.uuid4().hex, "alert", b"{}", "")
        dispatcher = Dispatcher(ctx.webhooks, settings.webhooks.model_copy(update={"max_attempts": 1}),
                                Dispatcher.make_client(settings.webhooks), clock=lambda: 1.0e9)
        await dispatcher.dispatch_due()
        await dispatcher._client.aclose()
        delivery = (await http.get(f"/v1/webhooks/deliveries/{dlv}", headers=auth)).json()
        assert delivery["status"] == "dead" and "private" in delivery["log"][0]["error"]
        # and the same name can no longer be set by PATCH either
        patched = await http.patch(f"/v1/webhooks/{created.json()['id']}", headers=auth,
                                   json={"url": "https://rebind.example/other"})
        assert patched.status_code == 422 and patched.json()["type"].endswith("/unsafe-webhook-target")


SPELLINGS = ["https://2130706433:{port}/", "https://0177.0.0.1:{port}/", "https://0x7f.1:{port}/",
             "https://127.1:{port}/", "https://[::ffff:127.0.0.1]:{port}/", "https://[::ffff:0:7f00:1]:{port}/",
             "https://[::7f00:1]:{port}/", "https://[64:ff9b::7f00:1]:{port}/", "https://[2002:7f00:1::1]:{port}/",
             "https://[::1]:{port}/", "https://[fec0::1]:{port}/", "https://localhost:{port}/"]


@pytest.mark.parametrize("template", SPELLINGS)
async def test_every_spelling_of_a_private_address_is_refused_at_send(store: WebhookStore, template: str) -> None:
    async with listen("127.0.0.1") as internal:
        found = await _deliver_once(store, template.format(port=internal.port), _settings())
    assert internal.connections == 0
    assert found.status == "dead" and found.log[0].error is not None
    assert any(w in found.log[0].error for w in ("private", "address", "resolve")), found.log[0].error


async def test_redirects_are_not_followed(store: WebhookStore) -> None:
    async with listen("127.0.0.1") as internal:
        moved = (f"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{internal.port}/admin\r\n"
                 "content-length: 0\r\nconnection: close\r\n\r\n").encode()
        async with listen("127.0.0.1", response=moved) as target:
            found = await _deliver_once(store, f"http://127.0.0.1:{target.port}/hook", _settings(allow_private=True))
    assert target.connections == 1 and internal.connections == 0
    assert found.status == "dead" and found.log[0].status_code == 307



CARRYING_METADATA = ["https://[64:ff9b::a9fe:a9fe]/latest", "https://[::ffff:0:a9fe:a9fe]/", "https://[::a9fe:a9fe]/",
                     "https://[2002:a9fe:a9fe::1]/", "https://[2001:0:4136:e378:8000:63bf:5601:5601]/",
                     "https://[fec0::1]/", "https://[64:ff9b:1::a9fe:a9fe]/"]


async def test_ipv6_carrying_a_private_ipv4_is_refused_at_create_and_patch(dns: Dns) -> None:
    settings = harness.gateway_settings(allow_private_targets=False)
    async with harness.lifespan_client(harness.build(settings)) as http:
        auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, 'acme'))}"}
        dns.answers["hooks.example"] = ["93.184.215.14"]
        sub = await http.post("/v1/webhooks", headers=auth, json={"url": "https://hooks.example/h",
                                                                   "event_types": ["alert"]})
        assert sub.status_code == 201, sub.text
        for url in CARRYING_METADATA:
            created = await http.post("/v1/webhooks", headers=auth, json={"url": url, "event_types": ["alert"]})
            patched = await http.patch(f"/v1/webhooks/{sub.json()['id']}", headers=auth, json={"url": url})
            for response in (created, patched):
                assert response.status_code == 422, (url, response.text)
                assert response.json()["type"].endswith("/unsafe-webhook-target")
        assert (await http.get(f"/v1/webhooks/{sub.json()['id']}", headers=auth)).json()["url"] == \
            "https://hooks.example/h"
