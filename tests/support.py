"""Bounded waiting for tests: poll a condition or drain a topic until done or a deadline passes (never a
bare sleep; no timing assertions)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

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
