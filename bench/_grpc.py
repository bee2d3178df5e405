"""gRPC latency of a servicer, measured the same way by every benchmark: a real server on loopback, one
channel, ``warm`` calls discarded, then one sample per call (closed loop: :func:`grpc_latency`); and calls
sent on a clock whatever the replies do (open loop: :func:`open_loop`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from mesh.config import MeshSettings
from mesh.serving import ServiceBinding, build_server


async def grpc_latency(bindings: Sequence[ServiceBinding], call: Callable[[grpc.aio.Channel, int], Awaitable[Any]],
                       n: int, warm: int) -> list[float]:
    """Seconds per call of ``call(channel, i)`` for i in 0..n+warm, the first ``warm`` left out."""
    server = build_server(bindings, MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    samples: list[float] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            for i in range(n + warm):
                start = time.perf_counter()
                await call(channel, i)
                if i >= warm:
                    samples.append(time.perf_counter() - start)
    finally:
        await server.stop(0)
    return samples


@dataclass(frozen=True)
class OpenLoop:
    """Latencies of calls sent on a clock: call i is due at ``i / rate`` s; its latency runs from that
    due time (not from when it was sent), so a client or server that falls behind shows it."""

    rate: float
    sent: int
    latencies_ms: list[float]
    """of the calls that succeeded"""
    errors: int
    seconds: float

    def row(self) -> dict[str, float | int]:
        ms = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([float("nan")])
        return {"offered_rps": self.rate, "sent": self.sent, "ok": len(self.latencies_ms), "errors": self.errors,
                "achieved_rps": len(self.latencies_ms) / self.seconds if self.seconds else 0.0,
                "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                "p99_ms": float(np.percentile(ms, 99))}


async def open_loop(call: Callable[[int], Awaitable[Any]], rate: float, seconds: float) -> OpenLoop:
    """Send ``call(i)`` at ``rate`` per second for ``seconds`` without waiting for replies (open loop);
    a call that raises counts as an error (give it a deadline)."""
    loop = asyncio.get_running_loop()
    n = max(1, int(rate * seconds))
    start = loop.time() + 0.05
    latencies: list[float] = []
    errors = 0

    async def one(i: int, due: float) -> None:
        nonlocal errors
        try:
            await call(i)
        except Exception:
            errors += 1
            return
        latencies.append((loop.time() - due) * 1000.0)

    pending = []
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*pending)
    return OpenLoop(rate, n, latencies, errors, max(loop.time() - start, 1e-9))
