"""The mesh end to end, open loop: the real assignment and timeline services as processes (Kafka, Redis,
models from an MLflow registry), a simulated 300-person tenant.

Event path: after a warm-up (the tenant's people and projects, its first tasks), the task stream (every
task event: created, updated, assigned, status changes, completed) is published on a clock so that
``task_created`` arrives at each offered rate (20..500/s) for a bounded time; task ids are suffixed per
pass so a short simulated history can feed any rate. Latency runs from each task_created's SCHEDULED
publish time to the arrival of its prediction at a consumer of the output topics (assignment and
timeline separately). Per rate: p50/p95/p99, predictions/s, consumer lag when publishing ends, CPU of each
service, GC pauses (the services' /metrics), and tasks without a prediction after a drain (lost: must be
0). Then one vs two assignment replicas on the 6-partition task topic at the highest rate (scaling), with
timeline stopped first (its answers to the rates are in by then) so that the replicas have the machine's
cores to themselves (``--scaling-with-timeline`` keeps it running). The load average before and after the
run is saved with the results: on a shared machine the numbers depend on it.

Request path: ``RankAssignees`` for the tenant's tasks with its real candidate set (all 300 people),
open loop at 10..400 req/s, straight to the service's gRPC port and through the real gateway, in the
same run; the highest rate with p99 <= 100 ms is reported for both.

    python -m bench mesh [--quick] [--out DIR] [--shared-broker]

Runs on a private Kafka broker (``tests/services_harness``) unless ``--shared-broker``, and the local
stack's Redis (its own keys); everything it starts is stopped by pid. Writes DIR/mesh.json and DIR/mesh.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]

from bench._grpc import OpenLoop, open_loop
from bench._report import format_table, write_report
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, decode
from tests.services_harness import PrivateBroker, Registry, ServiceProcess, free_port, service_env

TASK_EVENTS = ("task_created", "task_updated", "task_assigned", "task_status_changed", "task_completed")
SETUP_EVENTS = ("user_joined", "user_skills_updated", "project_created", "project_updated", "milestone_created")
OUTPUTS = {"assignment": "predictions.assignment", "timeline": "predictions.timeline"}
EVENT_COLUMNS = ["service", "offered_tasks_s", "tasks", "p50_ms", "p95_ms", "p99_ms", "predictions_s", "lag_end",
                 "lost", "cpu_cores", "handler_busy", "gc_p99_ms", "gc_per_min"]
WARM_TASKS = 100
REQUEST_COLUMNS = ["path", "offered_rps", "sent", "ok", "errors", "achieved_rps", "p50_ms", "p95_ms", "p99_ms"]


# ------------------------------------------------------------------------------------------ the stream
@dataclass(frozen=True)
class Stream:
    setup: list[Envelope]
    """people, projects, milestones: published first"""
    tasks: list[Envelope]
    """every task event in stream order: cloned per pass"""
    tenant_id: str


def simulated(users: int, weeks: int, seed: int) -> Stream:
    from services.assignment.train import simulated_events
    from simulator import SimConfig

    events = simulated_events(SimConfig(tenants=1, users_per_tenant=users, weeks=weeks, seed=seed))
    return Stream([e for e in events if e.type in SETUP_EVENTS], [e for e in events if e.type in TASK_EVENTS],
                  events[0].tenant_id)


def _clone(env: Envelope, tag: str) -> Envelope:
    out = Envelope()
    out.CopyFrom(env)
    payload = getattr(out, out.type)
    payload.task_id = f"{payload.task_id}-{tag}"
    out.event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{env.event_id}/{tag}"))
    return out


def passes(stream: Stream, n_tasks: int, tag: str) -> list[Envelope]:
    """Task events holding ``n_tasks`` task_created, cloned from the stream as many times as needed."""
    out: list[Envelope] = []
    created, cycle = 0, 0
    while created < n_tasks:
        for env in stream.tasks:
            if env.type == "task_created":
                if created == n_tasks:
                    break
                created += 1
            out.append(_clone(env, f"{tag}{cycle}"))
        cycle += 1
    return out


def schedule(events: Sequence[Envelope], rate: float) -> list[float]:
    """Offsets (s): the k-th task_created at k / rate; the events between two of them evenly between."""
    created = np.cumsum([e.type == "task_created" for e in events])
    out: list[float] = []
    i = 0
    while i < len(events):
        j = i
        while j + 1 < len(events) and created[j + 1] == created[i]:
            j += 1
        k = created[i]  # events i..j follow the k-th task_created (k = 0: before the first)
        span = j - i + 1
        out += [(max(k - 1, 0) + s / span) / rate for s in range(span)]
        i = j + 1
    return out


# ------------------------------------------------------------------------------------------ measuring
class Collector(threading.Thread):
    """Reads the output topics; the first arrival (monotonic) of each task's prediction per service."""

    def __init__(self, bootstrap: str, registry: TopicRegistry) -> None:
        super().__init__(name="collector", daemon=True)
        from confluent_kafka import Consumer

        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self._consumer.subscribe([registry.physical(t) for t in OUTPUTS.values()])
        self.arrivals: dict[str, dict[str, float]] = {name: {} for name in OUTPUTS}
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                # consume(n, timeout) returns only when n arrived or the timeout ended: wait for the first
                # record alone, then take what is already there, so no arrival is stamped late
                first = self._consumer.poll(0.1)
                if first is None:
                    continue
                now = time.monotonic()
                for msg in [first, *self._consumer.consume(1000, 0)]:
                    if msg.error() is None:
                        self._record(decode(msg.value()), now)
        finally:
            self._consumer.close()

    def _record(self, env: Envelope, at: float) -> None:
        if env.type == "assignment_prediction":
            self.arrivals["assignment"].setdefault(env.assignment_prediction.task_id, at)
        elif env.type == "timeline_prediction" and env.timeline_prediction.entity_kind == 1:  # ENTITY_KIND_TASK
            self.arrivals["timeline"].setdefault(env.timeline_prediction.entity_id, at)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def consumer_lag(bootstrap: str, group: str, topics: Sequence[str]) -> int:
    """Messages of ``topics`` not yet committed by ``group`` (read without joining the group)."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(t, p) for t in topics for p in probe.list_topics(t, timeout=10).topics[t].partitions]
        lag = 0
        for tp in probe.committed(parts, timeout=10):
            _, high = probe.get_watermark_offsets(tp, timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag
    finally:
        probe.close()


@dataclass
class Probe:
    """CPU and GC of one service process over a window (its /metrics for the GC)."""

    name: str
    pid: int
    metrics_port: int
    cpu0: float = 0.0
    gc0: tuple[float, dict[float, float]] = (0.0, {})
    wall0: float = 0.0

    handler0: float = 0.0

    def begin(self) -> None:
        self.cpu0, self.wall0 = self._cpu(), time.monotonic()
        self.gc0, self.handler0 = self._gc(), self._handler_s()

    def end(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall0
        busy = (self._handler_s() - self.handler0) / wall
        (count1, buckets1), (count0, buckets0) = self._gc(), self.gc0
        n = count1 - count0
        delta = {le: buckets1.get(le, 0.0) - buckets0.get(le, 0.0) for le in buckets1}
        p99 = next((le * 1000.0 for le in sorted(delta) if n and delta[le] >= 0.99 * n), float("nan"))
        return {"cpu_cores": (self._cpu() - self.cpu0) / wall, "gc_p99_ms": p99, "gc_per_min": n / wall * 60.0,
                "handler_busy": busy}

    def _metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    def _handler_s(self) -> float:
        """Seconds spent in the event handler so far (``mesh_handler_seconds``, every topic)."""
        return sum(float(m[1]) for m in re.finditer(r"^mesh_handler_seconds_sum\{.*\} (\S+)$", self._metrics(),
                                                    re.MULTILINE))

    def _cpu(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def _gc(self) -> tuple[float, dict[float, float]]:
        """(collections, cumulative count per bucket upper bound) summed over generations."""
        text = self._metrics()
        buckets: dict[float, float] = {}
        count = 0.0
        for line in text.splitlines():
            if m := re.match(r'mesh_gc_pause_seconds_bucket\{.*le="([^"]+)".*\} (\S+)', line):
                le = float("inf") if m[1] == "+Inf" else float(m[1])
                buckets[le] = buckets.get(le, 0.0) + float(m[2])
            elif m := re.match(r"mesh_gc_pause_seconds_count\{.*\} (\S+)", line):
                count += float(m[1])
        return count, buckets

    def rss_mb(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20


# ------------------------------------------------------------------------------------------ the services
@dataclass
class Mesh:
    """The stack, the registry and the service processes of one run."""

    settings: MeshSettings
    bootstrap: str
    registry: TopicRegistry
    env: dict[str, str]
    logs: Path
    services: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)

    def start(self, name: str) -> ServiceProcess:
        port = free_port()
        proc = ServiceProcess(name, {**self.env, "MESH_TELEMETRY__METRICS_PORT": str(port)}, self.logs)
        if self.services.get(name):
            proc.log_path = self.logs / f"{name}-{len(self.services[name]) + 1}.log"
        proc.start()
        self.services.setdefault(name, []).append(proc)
        assert proc.pid is not None
        self.probes[f"{name}#{len(self.services[name])}"] = Probe(name, proc.pid, port)
        return proc

    def stop(self, name: str) -> None:
        """Stop every process of one service (its probes go: nothing left to read)."""
        for proc in self.services.pop(name, []):
            proc.terminate(15)
        for key in [k for k in self.probes if k.startswith(f"{name}#")]:
            del self.probes[key]

    def stop_all(self) -> None:
        for procs in self.services.values():
            for proc in procs:
                proc.terminate(15)


def register_models(root: Path, quick: bool) -> Registry:
    """The assignment ensemble trained on a small simulated world (the size and depth a real one has), the
    untrained timeline network; both registered as champions in a temporary MLflow registry."""
    from mesh.models import CHAMPION, ModelRegistry
    from services.assignment.model import LambdaMartOptions, NetOptions
    from services.assignment.ranker import MODEL_NAME as ASSIGNMENT
    from services.assignment.train import simulated_events, train_all
    from services.timeline.export import export_untrained
    from services.timeline.predictor import MODEL_NAME as TIMELINE
    from simulator import SimConfig

    registry = Registry(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")
    if (root / "mlflow.db").exists():
        return registry  # registered by an earlier run (--models DIR)
    root.mkdir(parents=True, exist_ok=True)
    models = ModelRegistry(registry.settings())
    trained = train_all(simulated_events(SimConfig(tenants=2, users_per_tenant=50, weeks=4, seed=11)), root / "a",
                        NetOptions(epochs=2 if quick else 8), LambdaMartOptions(n_estimators=150))
    span = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC) + timedelta(weeks=4))
    for name, path in ((ASSIGNMENT, trained.exported.ensemble.path), (TIMELINE, export_untrained(root / "t"))):
        models.log_and_register(name, path, {}, {"purpose": "bench mesh"}, span, alias=CHAMPION)
    return registry


def publish_timed(mesh: Mesh, events: Sequence[Envelope], offsets: Sequence[float]) -> tuple[dict[str, float], float]:
    """Publish each event at its offset from now (late ones at once: open loop); returns each
    task_created's scheduled time (monotonic) and when publishing ended."""
    from mesh.bus import KafkaPublisher

    publisher = KafkaPublisher(mesh.settings.kafka, mesh.registry)
    due: dict[str, float] = {}
    start = time.monotonic() + 0.2
    try:
        for env, offset in zip(events, offsets, strict=True):
            at = start + offset
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            publisher.publish(env)
            if env.type == "task_created":
                due[env.task_created.task_id] = at
        publisher.flush(60)
    finally:
        publisher.close()
    return due, time.monotonic()


def wait_for(collector: Collector, services: Sequence[str], ids: Sequence[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(all(i in collector.arrivals[s] for i in ids) for s in services):
            return
        time.sleep(0.2)


@dataclass
class Phase:
    """One offered rate: what was published when, and what the services did meanwhile."""

    name: str
    rate: float
    services: list[str]
    due: dict[str, float]
    """task id -> scheduled publish time (monotonic)"""
    ended: float
    lags: dict[str, int]
    usage: dict[str, dict[str, float]]

    def rows(self, collector: Collector) -> list[dict[str, Any]]:
        """Latencies of every prediction that arrived by now (late ones count with their real latency);
        lost = never arrived."""
        out = []
        first = min(self.due.values())
        for service in self.services:
            arrived = collector.arrivals[service]
            got = [arrived[t] - d for t, d in self.due.items() if t in arrived]
            ms = np.asarray(got) * 1000.0 if got else np.asarray([float("nan")])
            last = max((arrived[t] for t in self.due if t in arrived), default=self.ended)
            mine = [u for name, u in self.usage.items() if name.startswith(f"{service}#")]
            out.append({
                "phase": self.name, "service": service, "replicas": len(mine), "offered_tasks_s": self.rate,
                "tasks": len(self.due), "p50_ms": float(np.percentile(ms, 50)),
                "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
                "predictions_s": len(got) / max(last - first, 1e-9), "lag_end": self.lags[service],
                "lost": len(self.due) - len(got), "cpu_cores": sum(u["cpu_cores"] for u in mine),
                "gc_p99_ms": max((u["gc_p99_ms"] for u in mine), default=float("nan")),
                "gc_per_min": sum(u["gc_per_min"] for u in mine),
                "handler_busy": sum(u["handler_busy"] for u in mine)})
        return out


def run_rate(mesh: Mesh, collector: Collector, stream: Stream, rate: float, seconds: float, tag: str,
             services: Sequence[str], drain_s: float, name: str = "rates") -> Phase:
    """Publish at ``rate`` for ``seconds``, note the lag when publishing ends, then wait (at most
    ``drain_s``) for every prediction so that the next rate starts without a backlog; CPU and GC are
    measured over the whole window."""
    events = passes(stream, max(1, int(rate * seconds)), tag)
    for probe in mesh.probes.values():
        probe.begin()
    due, ended = publish_timed(mesh, events, schedule(events, rate))
    tasks_topic = [mesh.registry.physical("tasks")]
    lags = {s: consumer_lag(mesh.bootstrap, s, tasks_topic) for s in services}
    wait_for(collector, services, list(due), drain_s)
    phase = Phase(name, rate, list(services), due, ended, lags, {n: p.end() for n, p in mesh.probes.items()})
    for row in phase.rows(collector):
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return phase


# ------------------------------------------------------------------------------------------ request path
async def request_path(mesh: Mesh, stream: Stream, rates: Sequence[float], seconds: float,
                       tenant_tasks: Sequence[str]) -> list[dict[str, Any]]:
    import aiohttp
    import grpc.aio
    from sunday.ml.v1 import assignment_pb2, assignment_pb2_grpc

    from bench.gateway import start_gateway, token

    service = mesh.services["assignment"][0]
    backend = f"127.0.0.1:{service.port}"
    gateway, url, admin = start_gateway(backend, env={**mesh.env})
    rows: list[dict[str, Any]] = []
    try:
        headers = {"Authorization": f"Bearer {await token(url, admin, stream.tenant_id)}"}
        connector = aiohttp.TCPConnector(limit=1000)
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with (aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http,
                    grpc.aio.insecure_channel(backend) as channel):
            stub = assignment_pb2_grpc.AssignmentServiceStub(channel)

            async def direct(i: int) -> None:
                await stub.RankAssignees(assignment_pb2.RankAssigneesRequest(
                    tenant_id=stream.tenant_id, task_id=tenant_tasks[i % len(tenant_tasks)], k=5), timeout=2.0)

            async def via_gateway(i: int) -> None:
                body = {"task_id": tenant_tasks[i % len(tenant_tasks)], "k": 5}
                async with http.post("/v1/assignment/rank", json=body, headers=headers) as response:
                    await response.read()
                    response.raise_for_status()

            for warm in (direct, via_gateway):
                await open_loop(warm, 10, 1.0)  # warm-up: connections, the candidate pool
            for rate in rates:
                for path, call in (("grpc-direct", direct), ("gateway", via_gateway)):
                    result: OpenLoop = await open_loop(call, rate, seconds)
                    rows.append({"path": path, **result.row()})
                    print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in rows[-1].items()), flush=True)
                    await asyncio.sleep(1.0)  # let a backlog clear before the next level
    finally:
        gateway.terminate()
        gateway.wait(30)
    return rows


def drop_namespace(redis_url: str, namespace: str) -> None:
    """Delete this run's keys from the shared Redis (a run leaves ~200k: dedupe marks and service state)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{namespace}:*", count=10_000):
            batch.append(key)
            if len(batch) >= 5_000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


def best_rate(rows: Sequence[dict[str, Any]], key: str, value: str, limit_ms: float) -> float | None:
    ok = [r["offered_rps" if "offered_rps" in r else "offered_tasks_s"] for r in rows
          if r[key] == value and r["p99_ms"] <= limit_ms and not r.get("errors") and not r.get("lost")]
    return max(ok, default=None)


# ------------------------------------------------------------------------------------------ main
@dataclass(frozen=True)
class Plan:
    rates: tuple[float, ...]
    seconds: float
    request_rates: tuple[float, ...]
    request_seconds: float
    scaling_rate: float
    scaling_seconds: float
    weeks: int


QUICK = Plan((20, 100, 200), 5.0, (10, 50, 200), 3.0, 200, 5.0, 1)
FULL = Plan((20, 50, 100, 200, 500), 10.0, (10, 25, 50, 100, 200, 400), 8.0, 300, 10.0, 2)


def _plot(event_rows: list[dict[str, Any]], request_rows: list[dict[str, Any]]) -> Callable[[Any], None]:
    def draw(fig: Any) -> None:
        ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for service in OUTPUTS:
            mine = [r for r in event_rows if r["service"] == service and r.get("replicas", 1) == 1
                    and r.get("phase") == "rates"]
            for q, style in (("p50_ms", "-o"), ("p99_ms", "--x")):
                ax1.plot([r["offered_tasks_s"] for r in mine], [r[q] for r in mine], style, label=f"{service} {q[:3]}")
        ax1.axhline(100, color="grey", lw=0.8)
        ax1.set(xscale="log", yscale="log", xlabel="offered task_created / s", ylabel="task -> prediction (ms)",
                title="Event path (open loop, from scheduled publish)")
        ax1.legend(fontsize=7)
        for path in ("grpc-direct", "gateway"):
            mine = [r for r in request_rows if r["path"] == path]
            for q, style in (("p50_ms", "-o"), ("p99_ms", "--x")):
                ax2.plot([r["offered_rps"] for r in mine], [r[q] for r in mine], style, label=f"{path} {q[:3]}")
        ax2.axhline(100, color="grey", lw=0.8)
        ax2.set(xlabel="offered RankAssignees / s (300 candidates)", ylabel="latency (ms)",
                title="Request path (open loop)")
        if request_rows:  # log axes need data
            ax2.set(xscale="log", yscale="log")
            ax2.legend(fontsize=7)
    return draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench mesh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rates (a few minutes)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    parser.add_argument("--users", type=int, default=300, help="people of the simulated tenant")
    parser.add_argument("--shared-broker", action="store_true",
                        help="use the local stack's Kafka and Redis instead of private ones")
    parser.add_argument("--models", type=Path, default=None,
                        help="registry folder to reuse (trained and registered there when empty)")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--scaling-with-timeline", action="store_true",
                        help="keep timeline running while 1 vs 2 assignment replicas are measured (default: it is "
                             "stopped once its predictions of the rate phases are in, so the replicas have the cores)")
    parser.add_argument("--no-requests", action="store_true")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-mesh-"))
    print(f"[mesh] work dir {root}", flush=True)
    started = time.monotonic()
    stream = simulated(args.users, plan.weeks, seed=7)
    registry = register_models(args.models or root / "models", args.quick)
    print(f"[mesh] models registered ({time.monotonic() - started:.0f}s)", flush=True)
    with ExitStack() as stack:
        # Redis: the local stack's (AOF, fsync every second, as deployed; keys under this run's namespace).
        # Kafka: a private broker, so no other consumer group named "assignment" rebalances ours mid-run.
        redis_url = MeshSettings().redis.url
        if args.shared_broker:
            bootstrap = MeshSettings().kafka.bootstrap_servers
        else:
            bootstrap = stack.enter_context(PrivateBroker(root / "kafka")).bootstrap
        prefix = f"bench-mesh-{uuid.uuid4().hex[:6]}."
        env = service_env(registry, redis_url, bootstrap, prefix, root / "offline")
        base = MeshSettings()
        settings = base.model_copy(update={
            "kafka": base.kafka.model_copy(update={"bootstrap_servers": bootstrap, "topic_prefix": prefix}),
            "redis": base.redis.model_copy(update={"url": redis_url})})
        stack.callback(drop_namespace, redis_url, settings.namespace)  # runs last: after the services stopped
        mesh = Mesh(settings, bootstrap, TopicRegistry(prefix), env, root / "logs")
        stack.callback(mesh.stop_all)
        for name in OUTPUTS:
            mesh.start(name)
        for procs in mesh.services.values():
            procs[0].wait_serving(300)
        collector = Collector(bootstrap, mesh.registry)
        collector.start()
        stack.callback(collector.stop)
        payload = run_all(mesh, collector, stream, plan, args)
    payload.update({"quick": args.quick, "users": args.users, "plan": plan.__dict__,
                    "broker": "local stack" if args.shared_broker else "private (tests/services_harness)",
                    "redis": "local stack (AOF, appendfsync everysec)",
                    "seconds": time.monotonic() - started,
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count()})
    rows = payload["event_path"]
    if payload["request_path"]:
        print(format_table(payload["request_path"], REQUEST_COLUMNS))
    write_report(args.out, "mesh", payload, rows, ["phase", "replicas", *EVENT_COLUMNS],
                 _plot(rows, payload["request_path"]))
    print(f"[mesh] footprint after warm-up (MB RSS): {payload['rss_mb_after_warmup']}")
    print(f"[mesh] best rate with p99 <= 100 ms: {payload['best_request_rate_p99_100ms']}")
    return 0


def run_all(mesh: Mesh, collector: Collector, stream: Stream, plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    from mesh.bus import KafkaPublisher

    services = list(OUTPUTS)
    publisher = KafkaPublisher(mesh.settings.kafka, mesh.registry)
    for env in stream.setup:
        publisher.publish(env)
    publisher.close()
    time.sleep(3.0)  # people and projects are applied before the tasks that name them
    warm = run_rate(mesh, collector, stream, WARM_TASKS / 5.0, 5.0, "w", services, 120, "warm-up")
    rss = {name: round(probe.rss_mb(), 1) for name, probe in mesh.probes.items()}
    print(f"[mesh] warmed up; RSS MB {rss}", flush=True)
    phases = [run_rate(mesh, collector, stream, rate, plan.seconds, f"r{i}-", services, 120.0)
              for i, rate in enumerate(plan.rates)]
    if not args.no_scaling:
        if not args.scaling_with_timeline:
            deadline = time.monotonic() + 180.0  # timeline's answers to the rates first (they count for "lost")
            for phase in phases:
                wait_for(collector, ["timeline"], list(phase.due), max(deadline - time.monotonic(), 0.0))
            mesh.stop("timeline")
            print("[mesh] timeline stopped for the scaling phases", flush=True)
        phases.append(run_rate(mesh, collector, stream, plan.scaling_rate, plan.scaling_seconds, "s1-",
                               ["assignment"], 180, "scaling"))
        mesh.start("assignment").wait_serving(300)
        time.sleep(10.0)  # the group rebalances over the 6 partitions
        phases.append(run_rate(mesh, collector, stream, plan.scaling_rate, plan.scaling_seconds, "s2-",
                               ["assignment"], 180, "scaling"))
    deadline = time.monotonic() + 120.0  # the last word on what was lost
    for phase in phases:
        wait_for(collector, phase.services, list(phase.due), max(deadline - time.monotonic(), 0.0))
    rows = [r for p in phases for r in p.rows(collector)]
    # the warm-up's tasks (same ids: same clone tag): ranked by id against all the tenant's people
    tasks = [e.task_created.task_id for e in passes(stream, WARM_TASKS, "w") if e.type == "task_created"]
    requests = [] if args.no_requests else asyncio.run(
        request_path(mesh, stream, plan.request_rates, plan.request_seconds, tasks))
    scaling = [r for r in rows if r["phase"] == "scaling"]
    return {
        "event_path": rows, "warmup": warm.rows(collector), "request_path": requests, "rss_mb_after_warmup": rss,
        "lost_total": sum(r["lost"] for r in rows),
        "scaling_ratio_two_over_one": (scaling[1]["predictions_s"] / scaling[0]["predictions_s"]
                                       if len(scaling) == 2 else None),
        "scaling_timeline_running": bool(args.scaling_with_timeline),
        "best_event_rate_p99_100ms": {s: best_rate([r for r in rows if r["phase"] == "rates"], "service", s, 100.0)
                                      for s in services},
        "best_request_rate_p99_100ms": {p: best_rate(requests, "path", p, 100.0) for p in ("grpc-direct", "gateway")},
    }


if __name__ == "__main__":
    raise SystemExit(main())
