"""Bounded waiting for tests: poll a condition or drain a topic until done or a deadline passes (never a
bare sleep; no timing assertions)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from mesh.bus import KafkaConsumerTransport, Message
from mesh.config import KafkaSettings


def wait_until(check: Callable[[], object], what: str, timeout_s: float = 30.0,
               ignore: tuple[type[BaseException], ...] = ()) -> None:
    """Poll ``check`` until it is truthy; ``ignore`` lists exceptions that mean "not yet"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except ignore:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


async def await_until(check: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    """:func:`wait_until` for async tests (yields to the event loop between polls)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def drain(kafka: KafkaSettings, topic: str, want: int, enough: Callable[[list[Message]], bool] | None = None,
          timeout_s: float = 60.0) -> list[Message]:
    """Read ``topic`` from the start until ``want`` records came (or ``enough`` says so) or the deadline."""
    consumer = KafkaConsumerTransport(kafka, f"reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < want and not (enough and enough(out)) and time.monotonic() < deadline:
            out.extend(consumer.poll(max(want - len(out), 1), 0.5))
    finally:
        consumer.close()
    return out


@dataclass
class Receiver:
    """A webhook subscriber on loopback: every POST it got, and the status it answers with."""

    url: str
    status: int = 200
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server on a free loopback port recording POSTs to ``/hook``; stopped on exit."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = Receiver(url=f"http://127.0.0.1:{port}/hook")

    async def hook(request: Request) -> Response:
        state.calls.append((dict(request.headers), await request.body()))
        return Response(status_code=state.status)

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
                                           host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await await_until(lambda: server.started, "receiver start")
    try:
        yield state
    finally:
        server.should_exit = True
        await task
