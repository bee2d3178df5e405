"""gRPC latency of a servicer, measured the same way by every benchmark: a real server on loopback, one
channel, ``warm`` calls discarded, then one sample per call."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

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
