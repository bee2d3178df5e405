"""Gateway latency: POST /v1/assignment/rank through the gateway vs the same RankAssignees call straight
to gRPC, at a few concurrency levels, in the same run. Everything on loopback; the load stops by itself.

The backend is the stub AssignmentService (gateway.devtools.stub_backend), so the numbers are the
gateway's own cost (auth, rate limit in Redis, JSON <-> protobuf, HTTP), not a model's.

The HTTP load comes from aiohttp (keep-alive, TCP_NODELAY), not httpx: on this 2-core machine httpx spent
0.7 ms of client CPU per request at concurrency 1 and ~2 ms at 32 (its pool scans every connection),
so at 32 clients the bench measured its own client (/healthz alone topped out at ~460 rps).
`python -m bench gateway [--quick] --out DIR` writes DIR/gateway.json and DIR/gateway.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
from sunday.ml.v1 import assignment_pb2, assignment_pb2_grpc

from bench._report import write_report

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["path", "concurrency", "requests", "p50_ms", "p95_ms", "p99_ms", "throughput_rps", "added_p50_ms"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(call: Callable[[], Awaitable[None]], concurrency: int, total: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def _row(path: str, concurrency: int, latencies: list[float], elapsed: float) -> dict[str, Any]:
    return {"path": path, "concurrency": concurrency, "requests": len(latencies),
            "p50_ms": statistics.median(latencies), "p95_ms": _percentile(latencies, 0.95),
            "p99_ms": _percentile(latencies, 0.99), "throughput_rps": len(latencies) / elapsed}


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout_s:.0f}s")


def start_gateway(backend: str, *, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str, str]:
    """The real gateway (uvicorn, bench plan without limits) in front of the AssignmentService at
    ``backend``; returns the process, its URL and its admin token."""
    port, admin = _free_port(), secrets.token_hex(16)
    plans = {"free": {"rate_per_s": 1e6, "burst": 10**7, "client_rate_per_s": 1e6, "client_burst": 10**7,
                      "daily_quota": 10**9, "monthly_quota": 10**9}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "gateway.devtools.bench_app:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"], cwd=ROOT, env={
            **_env(), **(env or {}), "MESH_ENVIRONMENT": "test", "MESH_REDIS_PREFIX": f"bench-{admin[:8]}:",
            "MESH_AUTH__ADMIN_TOKEN": admin, "MESH_BACKENDS__ASSIGNMENT": backend,
            "MESH_WEBHOOKS__WORKER_ENABLED": "false", "MESH_PLANS": json.dumps(plans)})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/healthz").status_code == 200, "gateway")
    except RuntimeError:
        proc.terminate()
        raise
    return proc, url, admin


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"}


def _start(work: Path) -> tuple[list[subprocess.Popen[bytes]], str, str, str]:
    port_file = work / "backend.port"
    procs = [subprocess.Popen([sys.executable, "-m", "gateway.devtools.stub_backend", "--port", "0",
                               "--port-file", str(port_file)], env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL)]
    _wait(lambda: port_file.exists() and bool(port_file.read_text()), "stub backend")
    backend = f"127.0.0.1:{port_file.read_text()}"
    gateway, url, admin = start_gateway(backend)
    return [*procs, gateway], url, backend, admin


async def token(url: str, admin: str, tenant_id: str = "acme") -> str:
    """A bearer token of a new API client of ``tenant_id`` allowed to call the assignment routes."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = (await http.post("/v1/admin/clients", headers={"Authorization": f"Bearer {admin}"},
                                   json={"tenant_id": tenant_id, "scopes": ["assignment:read"]})).json()
        reply = (await http.post("/oauth/token", data={"grant_type": "client_credentials",
                                                       "client_id": created["client_id"],
                                                       "client_secret": created["client_secret"]})).json()
    return str(reply["access_token"])


async def _measure(url: str, backend: str, admin: str, levels: list[int], total: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {await token(url, admin)}"}
    connector = aiohttp.TCPConnector(limit=max(levels))  # keep-alive; aiohttp sets TCP_NODELAY itself
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def via_gateway() -> None:
            body = {"task_id": "task-1", "k": 5}
            async with http.post("/v1/assignment/rank", json=body, headers=headers) as response:
                await response.read()
                response.raise_for_status()

        async with grpc.aio.insecure_channel(backend) as channel:
            stub = assignment_pb2_grpc.AssignmentServiceStub(channel)
            request = assignment_pb2.RankAssigneesRequest(tenant_id="acme", task_id="task-1", k=5)

            async def direct() -> None:
                await stub.RankAssignees(request, timeout=30)

            rows: list[dict[str, Any]] = []
            for concurrency in levels:
                for path, call in (("grpc-direct", direct), ("gateway", via_gateway)):
                    await _load(call, concurrency, min(50, total))  # warm-up
                    rows.append(_row(path, concurrency, *await _load(call, concurrency, total)))
                rows[-1]["added_p50_ms"] = rows[-1]["p50_ms"] - rows[-2]["p50_ms"]
    return rows


def _plot(rows: list[dict[str, Any]]) -> Callable[[Any], None]:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for path in ("grpc-direct", "gateway"):
            mine = [r for r in rows if r["path"] == path]
            for q, style in (("p50_ms", "-o"), ("p99_ms", "--x")):
                ax.plot([r["concurrency"] for r in mine], [r[q] for r in mine], style, label=f"{path} {q[:3]}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("latency (ms)")
        ax.set_title("POST /v1/assignment/rank via gateway vs gRPC direct (loopback, stub backend)")
        ax.legend()
    return draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gateway")
    parser.add_argument("--quick", action="store_true", help="fewer requests and levels")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    levels, total = ([1, 8, 32], 300) if args.quick else ([1, 4, 16, 64], 2000)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    procs, url, backend, admin = _start(work)
    try:
        rows = asyncio.run(_measure(url, backend, admin, levels, total))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    payload = {"benchmark": "gateway", "quick": args.quick, "levels": levels, "requests_per_level": total,
               "backend": "stub AssignmentService (gateway.devtools.stub_backend)", "rows": rows}
    write_report(args.out, "gateway", payload, rows, COLUMNS, _plot(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
