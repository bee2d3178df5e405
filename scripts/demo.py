"""The main job: a simulated Sunday.com week through the mesh on the local stack, and what came out.

Run by `make demo` (which sets up and starts the stack first). Steps, each with progress output:
1. champions: every model a service serves is trained on simulated history and registered, once, when the
   registry has none (assignment, timeline, nlp embedder + sentiment, anomaly, personalization, automation);
2. the mesh as deployed, as real processes on a fresh set of topics: the feature ingestor
   (`python -m mesh.features consume`), the six services (`python -m services.<name>`) and the gateway
   (`python -m gateway serve`) in front of them;
3. one simulated week of a mid-size tenant is published to Kafka;
4. what the services published (suggestions, forecasts, alerts, duplicates, sentiment, summaries,
   automation suggestions) is read back from Kafka and scored against the simulator's ground truth; one
   automation suggestion is approved through the gateway; the personalization service's policy runs the
   closed loop against the live service; a summary in out/demo (JSON + PNG), logs per process.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, occurred_at
from simulator import SimConfig, Simulation

PORTS = {"assignment": 50061, "timeline": 50062, "nlp": 50063, "anomaly": 50064, "personalization": 50065,
         "automation": 50066}
"""MESH_SERVING__PORT of the demo's services (beside the default ports, so a running mesh is left alone)."""
GATEWAY_PORT = 50071
USER_EVENTS = {"user_joined", "user_skills_updated", "user_activity"}
OUTPUT_TOPICS = ["predictions.assignment", "predictions.timeline", "predictions.nlp", "predictions.automation",
                 "alerts", "suggestions"]


def _say(msg: str) -> None:
    print(f"[demo {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def publish_week(settings: MeshSettings, args: argparse.Namespace
                 ) -> tuple[Simulation, list[Envelope], float, Counter[str]]:
    """The simulated week into Kafka; returns the simulation (its ground truth), the events it published
    (a Simulation runs once), the seconds it took and the events per type."""
    from simulator._sinks import TokenBucket, throttle

    registry = TopicRegistry(settings.kafka.topic_prefix)
    sim = Simulation(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks, seed=args.seed))
    pub = KafkaPublisher(settings.kafka, registry)
    counts: Counter[str] = Counter()
    events: list[Envelope] = []
    started = time.perf_counter()
    for env in throttle(sim.events(), TokenBucket(args.rate) if args.rate else None):
        pub.publish(env)
        counts[env.type] += 1
        events.append(env)
        if len(events) % 20_000 == 0:
            _say(f"  published {len(events)} events")
    pub.flush(120)
    return sim, events, time.perf_counter() - started, counts


def start_process(settings: MeshSettings, name: str, module: list[str], out: Path, *, port: int | None = None,
                  env: dict[str, str] | None = None, ready: None = None) -> subprocess.Popen[bytes]:
    """``python -m <module>`` on this run's topics, its output in ``out/<name>.log``."""
    out.mkdir(parents=True, exist_ok=True)
    full = {**os.environ, "MESH_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix, **(env or {})}
    if port is not None:
        full["MESH_SERVING__PORT"] = str(port)
    log_path = out / f"{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", *module], env=full, stdout=log_path.open("wb"),
                            stderr=subprocess.STDOUT)
    _say(f"{name}: started (pid {proc.pid}, log {log_path})")
    return proc


def check_ports_free(ports: list[int]) -> None:
    """Fail fast, naming the port, when another process already listens where the demo would."""
    import socket

    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                raise SystemExit(f"[demo] port {port} is in use by another process: stop it, or run the demo with "
                                 "--port-base N (services on N..N+5, the gateway on N+10)") from None


def wait_serving(proc: subprocess.Popen[bytes], name: str, port: int, out: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} service exited ({proc.returncode}); see {out / f'{name}.log'}")
        if _grpc_serving(f"127.0.0.1:{port}"):
            _say(f"{name} service up (gRPC 127.0.0.1:{port})")
            return
        time.sleep(0.5)
    raise RuntimeError(f"the {name} service did not become healthy within {timeout_s:.0f} s; see "
                       f"{out / f'{name}.log'}")


def _grpc_serving(target: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class Gateway:
    """The gateway as deployed (``python -m gateway serve``) in front of the demo's services, with one API
    client of the demo tenant(s)."""

    proc: subprocess.Popen[bytes]
    url: str
    admin_token: str

    @classmethod
    def start(cls, settings: MeshSettings, out: Path) -> Gateway:
        import httpx

        admin = secrets.token_hex(16)
        env = {"MESH_PORT": str(GATEWAY_PORT), "MESH_AUTH__ADMIN_TOKEN": admin,
               "MESH_REDIS_PREFIX": f"{settings.kafka.topic_prefix}gw:", "MESH_WEBHOOKS__WORKER_ENABLED": "false",
               **{f"MESH_BACKENDS__{name.upper()}": f"127.0.0.1:{port}" for name, port in PORTS.items()}}
        proc = start_process(settings, "gateway", ["gateway", "serve"], out, env=env)
        url = f"http://127.0.0.1:{GATEWAY_PORT}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited ({proc.returncode}); see {out / 'gateway.log'}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    _say(f"gateway up ({url})")
                    return cls(proc, url, admin)
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the gateway did not answer /healthz within 120 s; see {out / 'gateway.log'}")

    def token(self, tenant_id: str, scopes: list[str]) -> str:
        import httpx

        created = httpx.post(f"{self.url}/v1/admin/clients", headers={"Authorization": f"Bearer {self.admin_token}"},
                             json={"tenant_id": tenant_id, "scopes": scopes}, timeout=10)
        created.raise_for_status()
        client = created.json()
        issued = httpx.post(f"{self.url}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}, timeout=10)
        issued.raise_for_status()
        return str(issued.json()["access_token"])


def features_caught_up(settings: MeshSettings, project: str, events: list[Envelope]) -> dict[str, Any]:
    """Wait until the ingestor process has consumed every published event (its consumer group's lag is 0),
    then check each person's online row against their newest event."""
    from mesh.features import USER_VIEW, FeastFeatureClient, FeatureRepo, FeatureRepoConfig
    started = time.perf_counter()
    lag = _group_lag(settings)
    while lag > 0 and time.perf_counter() - started < 600:
        _say(f"  ingestor lag {lag} events")
        time.sleep(2)
        lag = _group_lag(settings)
    seconds = time.perf_counter() - started
    user_newest: dict[str, datetime] = {}
    for env in events:
        if env.type in USER_EVENTS:
            key = f"{env.tenant_id}:{getattr(env, env.type).user_id}"
            user_newest[key] = max(user_newest.get(key, occurred_at(env)), occurred_at(env))
    repo = FeatureRepo(FeatureRepoConfig.from_settings(settings, project=project))
    keys = sorted(user_newest)
    read_started = time.perf_counter()
    rows = FeastFeatureClient(repo).get_online(USER_VIEW, keys)
    read_ms = (time.perf_counter() - read_started) * 1000
    # A row is fresh when it already reflects the person's newest own event (Feast keeps whole seconds).
    lags = [(user_newest[k] - r.event_timestamp).total_seconds() for k, r in zip(keys, rows, strict=True)
            if r is not None]
    online = {"users": len(keys), "rows_found": len(lags), "batch_read_ms": round(read_ms, 1),
              "fresh_rows": sum(1 for x in lags if x < 1.0), "max_staleness_s": max([0.0, *lags])}
    return {"events": len(events), "lag_at_end": lag, "caught_up_after_publish_s": round(seconds, 1),
            "user_features_online": online}


def _group_lag(settings: MeshSettings) -> int:
    """Events of this run's input topics the features consumer group has not committed yet."""
    from confluent_kafka import Consumer, TopicPartition

    from mesh.features._ingest import CONSUMER

    registry = TopicRegistry(settings.kafka.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": CONSUMER,
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=10)
        parts = [TopicPartition(registry.physical(spec.logical), p)
                 for spec in registry.consumed_by(CONSUMER) if registry.physical(spec.logical) in meta.topics
                 for p in meta.topics[registry.physical(spec.logical)].partitions]
        committed = consumer.committed(parts, timeout=10)
        lag = 0
        for tp in committed:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def collect(settings: MeshSettings, logical: list[str], expected: int) -> list[Envelope]:
    """What the services published, read back from Kafka: at least ``expected`` assignment predictions
    (one per new task) and then 20 s of quiet, or 5 minutes."""
    from confluent_kafka import Consumer

    from mesh.events import decode

    registry = TopicRegistry(settings.kafka.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"demo-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([registry.physical(t) for t in logical])
    got: list[Envelope] = []
    assigned = 0
    deadline, last = time.monotonic() + 300, time.monotonic()
    while time.monotonic() < deadline and (assigned < expected or time.monotonic() - last < 20):
        for msg in consumer.consume(500, 1.0):
            if msg.error() is None:
                env = decode(msg.value())
                got.append(env)
                assigned += env.type == "assignment_prediction"
                last = time.monotonic()
    consumer.close()
    by_type = Counter(env.type for env in got)
    _say(f"  read {len(got)} outputs: {dict(by_type)}")
    return got


def assignment_results(sim: Simulation, predictions: list[Envelope], tasks_created: int) -> dict[str, Any]:
    chosen = {(a.tenant_id, a.task_id): a.chosen for a in sim.truth.assignments}
    ranks = []
    for env in predictions:
        truth = chosen.get((env.tenant_id, env.assignment_prediction.task_id))
        if truth is not None:
            ids = [c.user_id for c in env.assignment_prediction.candidates]
            ranks.append(ids.index(truth) + 1 if truth in ids else None)
    k = len(predictions[0].assignment_prediction.candidates) if predictions else 0
    scored = len(ranks)
    sample = predictions[0].assignment_prediction if predictions else None
    return {
        "tasks_created": tasks_created, "predictions": len(predictions), "k": k,
        "with_ground_truth": scored,
        "hit_at_1": round(sum(1 for r in ranks if r == 1) / scored, 3) if scored else None,
        "hit_at_k": round(sum(1 for r in ranks if r is not None) / scored, 3) if scored else None,
        "sample": None if sample is None else {
            "task_id": sample.task_id, "model": f"{sample.provenance.model_name} v{sample.provenance.model_version}",
            "trace_id": sample.provenance.trace_id,
            "candidates": [{"user_id": c.user_id, "score": round(c.score, 3),
                            "reasons": [f"{r.feature} {r.contribution:+.3f}" for r in c.reasons[:3]]}
                           for c in sample.candidates[:3]]},
    }


def timeline_results(sim: Simulation, predictions: list[Envelope], alerts: list[Envelope]) -> dict[str, Any]:
    """Each task's FIRST forecast (made when it was created) against when it really finished: the simulator's
    truth knows finish times past the simulated week too, so long tasks are not left out."""
    from sunday.ml.v1 import events_pb2 as e

    done = {(t.tenant_id, t.task_id): t.done_at for t in sim.truth.tasks}
    kinds: Counter[str] = Counter()
    first: dict[tuple[str, str], Any] = {}
    for env in predictions:
        p = env.timeline_prediction
        kinds[e.EntityKind.Name(p.entity_kind)] += 1
        if p.entity_kind == e.ENTITY_KIND_TASK:
            first.setdefault((env.tenant_id, p.entity_id), p)
    errors, covered = [], 0
    for key, p in first.items():
        if key in done:
            lo, mid, hi = (ts.ToDatetime(tzinfo=UTC) for ts in (p.completion_p10, p.completion_p50, p.completion_p90))
            errors.append(abs((mid - done[key]).total_seconds()) / 3600)
            covered += lo <= done[key] <= hi
    project = next((env.timeline_prediction for env in reversed(predictions)
                    if env.timeline_prediction.entity_kind == e.ENTITY_KIND_PROJECT), None)
    return {
        "predictions_by_kind": dict(kinds), "alerts": len(alerts),
        "tasks_scored": len(errors),
        "completion_abs_error_h_median": round(sorted(errors)[len(errors) // 2], 1) if errors else None,
        "coverage_80": round(covered / len(errors), 3) if errors else None,
        "sample_alert": alerts[0].alert.message if alerts else None,
        "sample_project": None if project is None else {
            "project_id": project.entity_id,
            "completion_p10_p50_p90": [ts.ToDatetime(tzinfo=UTC).date().isoformat() for ts in
                                       (project.completion_p10, project.completion_p50, project.completion_p90)],
            "deadline_miss_probability": round(project.deadline_miss_probability, 3)},
    }


def plot_summary(summary: dict[str, Any], path: Path) -> None:
    """One picture of the run: the stream, and what the services made of it (a failed section is left out)."""
    from bench._report import save_plot

    def ok(name: str) -> dict[str, Any] | None:
        section = summary.get(name)
        return section if isinstance(section, dict) and "error" not in section else None

    def draw(fig: Any) -> None:
        events = sorted(summary.get("events_per_type", {}).items(), key=lambda kv: kv[1])
        ax = fig.add_subplot(1, 3, 1)
        ax.barh([k for k, _ in events], [v for _, v in events], color="#4c72b0")
        ax.set_xscale("log")
        ax.set_title(f"{summary.get('events_published', 0)} events of one simulated week")
        ax = fig.add_subplot(1, 3, 2)
        a = ok("assignment")
        if a is not None:
            ax.bar(["top-1", f"top-{a['k']}", f"random top-{a['k']}"],
                   [a["hit_at_1"] or 0, a["hit_at_k"] or 0, a["random_hit_at_k"] or 0],
                   color=["#55a868", "#55a868", "#999"])
            ax.set_ylim(0, 1)
            ax.set_title(f"assignment: true assignee in the suggestions\n({a['predictions']} tasks)")
        ax = fig.add_subplot(1, 3, 3)
        bars: list[tuple[str, float]] = []
        if (t := ok("timeline")) is not None:
            bars.append(("timeline\n80% interval\ncoverage", t["coverage_80"] or 0))
        if (an := ok("anomaly")) is not None:
            bars.append(("anomaly\nrecall", an["recall"] or 0))
        if (au := ok("automation")) is not None:
            bars += [("automation\nrecall", au["recall"]), ("automation\nprecision", au["precision"])]
        ax.bar([b for b, _ in bars], [v for _, v in bars], color="#c44e52")
        ax.set_ylim(0, 1)
        ax.set_title("against the simulator's truth")

    save_plot(path, draw, figsize=(18, 6))


@dataclass(frozen=True)
class Service:
    """One service of the demo: its gRPC port, the champions it needs (model name -> training command,
    run once when the registry has none) and its extra settings."""

    name: str
    port: int
    champions: tuple[tuple[str, tuple[str, ...]], ...]
    env: tuple[tuple[str, str], ...] = ()


def demo_services(out: Path) -> list[Service]:
    from services.anomaly.model import MODEL_NAME as ANOMALY
    from services.assignment.ranker import MODEL_NAME as ASSIGNMENT
    from services.automation.engine import MODEL_NAME as AUTOMATION
    from services.nlp.embedder import MODEL_NAME as EMBEDDER
    from services.nlp.text import MODEL_NAME as SENTIMENT
    from services.personalization.factors import MODEL_NAME as POLICY
    from services.timeline.predictor import MODEL_NAME as TIMELINE

    nlp = f"127.0.0.1:{PORTS['nlp']}"
    return [
        Service("nlp", PORTS["nlp"], ((EMBEDDER, ("services.nlp.export",)),
                                      (SENTIMENT, ("services.nlp.text.sentiment_train", "--quick"))),
                (("MESH_NLP__DATA_DIR", str(out / "nlp")),)),
        Service("assignment", PORTS["assignment"], ((ASSIGNMENT, ("services.assignment.train", "--seed", "101")),)),
        Service("timeline", PORTS["timeline"], ((TIMELINE, (
            "services.timeline.train", "--tenants", "2", "--users", "20", "--weeks", "12", "--epochs", "25",
            "--seed", "101")),)),
        Service("anomaly", PORTS["anomaly"], ((ANOMALY, (
            "services.anomaly.train", "--tenants", "3", "--users", "40", "--weeks", "4", "--seed", "11",
            "--anomaly-fraction", "0.4")),)),
        Service("personalization", PORTS["personalization"], ((POLICY, (
            "services.personalization.train", "--source", "simulator", "--seed", "101")),),
                (("MESH_NLP_TARGET", nlp),)),
        Service("automation", PORTS["automation"], ((AUTOMATION, (
            "services.automation.train", "--source", "simulator", "--seed", "101")),),
                (("MESH_AUTOMATION__NLP_ADDRESS", nlp),
                 # passes every 10 s (the default is 60): the demo's week arrives in one burst
                 ("MESH_AUTOMATION__MINE_INTERVAL_S", "10"))),
    ]


def ensure_champions(settings: MeshSettings, services: list[Service]) -> None:
    from mesh.models import CHAMPION, ModelRegistry

    registry = ModelRegistry(settings.models)
    for svc in services:
        for model_name, command in svc.champions:
            if registry.version_of(model_name, CHAMPION) is not None:
                _say(f"{svc.name}: serving the registered {model_name}@{CHAMPION}")
                continue
            _say(f"{svc.name}: no {model_name} champion yet -> training (python -m {' '.join(command)})")
            subprocess.run([sys.executable, "-m", *command], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--weeks", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=4000, help="events/s into Kafka (0: as fast as possible)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--port-base", type=int, default=50061, help="gRPC ports of the six services: N..N+5; "
                        "the gateway listens on N+10")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the processes started here on SIGTERM too
    global GATEWAY_PORT
    for i, name in enumerate(PORTS):
        PORTS[name] = args.port_base + i
    GATEWAY_PORT = args.port_base + 10
    check_ports_free([*PORTS.values(), GATEWAY_PORT])
    settings = MeshSettings()
    settings.kafka.topic_prefix = f"demo-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}."
    ensure_topics(settings.kafka, TopicRegistry(settings.kafka.topic_prefix))
    run_dir = args.out / settings.kafka.topic_prefix.strip(".")
    services = demo_services(run_dir)
    ensure_champions(settings, services)
    procs: list[subprocess.Popen[bytes]] = []
    summary: dict[str, Any] = {"topic_prefix": settings.kafka.topic_prefix}
    failed: list[str] = []
    try:
        project = settings.kafka.topic_prefix.strip(".").replace("-", "_")
        procs.append(start_process(settings, "features", ["mesh.features", "--project", project, "consume"],
                                   run_dir, ready=None))
        procs += [start_process(settings, s.name, [f"services.{s.name}"], run_dir, port=s.port, env=dict(s.env))
                  for s in services]
        for proc, svc in zip(procs[1:], services, strict=True):
            wait_serving(proc, svc.name, svc.port, run_dir)
        gateway = Gateway.start(settings, run_dir)
        procs.append(gateway.proc)
        _say(f"simulating {args.weeks} week(s) of {args.tenants} tenant(s) x {args.users} people -> Kafka "
             f"(topics {settings.kafka.topic_prefix}*, {args.rate:.0f} events/s)")
        sim, events, pub_s, counts = publish_week(settings, args)
        n = len(events)
        _say(f"published {n} events in {pub_s:.1f}s ({n / pub_s:.0f} events/s)")
        summary.update(events_published=n, publish_events_per_s=round(n / pub_s), events_per_type=dict(counts))
        _say("feature ingestor (its own process, as deployed): waiting for it to catch up")
        summary["features"] = features_caught_up(settings, project, events)
        _say("collecting what the services published (predictions, alerts, suggestions) from Kafka")
        outputs = collect(settings, OUTPUT_TOPICS, expected=counts["task_created"])
        summary.update(service_results(args, settings, sim, events, counts, outputs, gateway, failed))
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    show(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    plot_summary(summary, args.out / "summary.png")
    _say(f"summary: {args.out / 'summary.json'}, plot: {args.out / 'summary.png'}, logs: {run_dir}")
    if failed:
        _say(f"FAILED: {', '.join(failed)} (see above)")
    return 1 if failed else 0


def service_results(args: argparse.Namespace, settings: MeshSettings, sim: Simulation, events: list[Envelope],
                    counts: Counter[str], outputs: list[Envelope], gateway: Gateway, failed: list[str]
                    ) -> dict[str, Any]:
    """Each service's outputs scored against the simulation's truth; one failing section is reported and
    does not hide the others."""
    from services.anomaly.demo import results as anomaly
    from services.automation.demo import demo as automation
    from services.nlp.demo import week_report
    from services.personalization.demo import results as personalization

    def of(*types: str) -> list[Envelope]:
        return [env for env in outputs if env.type in types]

    def automation_section() -> dict[str, Any]:
        tenant = min((w.tenant_id for w in sim.truth.workflows), default="tenant-000")
        token = gateway.token(tenant, ["automation:read", "automation:write"])
        return automation(sim, of("suggestion", "automation_prediction"), gateway_url=gateway.url, token=token,
                          tenant_id=tenant, settings=settings)

    sections: list[tuple[str, Any]] = [
        ("assignment", lambda: {**assignment_results(sim, of("assignment_prediction"), counts["task_created"]),
                                "random_hit_at_k": None}),
        ("timeline", lambda: timeline_results(sim, of("timeline_prediction"),
                                              [a for a in of("alert") if a.alert.capability == "timeline"])),
        ("nlp", lambda: {**week_report(of("nlp_prediction"), events), "planted_duplicates": planted_duplicates(sim)}),
        ("anomaly", lambda: {"mode": "service process", **anomaly(sim, of("alert"))}),
        ("automation", automation_section),
        ("personalization", lambda: personalization(
            users=args.users, weeks=args.weeks, seed=args.seed, settings=settings,
            target=f"127.0.0.1:{PORTS['personalization']}")),
    ]
    out: dict[str, Any] = {}
    for name, run in sections:
        _say(f"{name}: scoring against the simulation's truth")
        try:
            out[name] = run()
        except Exception as exc:  # the demo goes on and says what failed
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
            _say(f"{name} FAILED: {type(exc).__name__}: {exc}")
    if "k" in out.get("assignment", {}):
        out["assignment"]["random_hit_at_k"] = round(out["assignment"]["k"] / args.users, 3)
    return out


def planted_duplicates(sim: Simulation, k: int = 5) -> dict[str, Any]:
    """The simulator's planted near-duplicates (a paraphrase of an earlier task) asked of the live nlp
    service: is the original among ``SimilarTasks(duplicate, k)``?"""
    import grpc
    from sunday.ml.v1 import nlp_pb2, nlp_pb2_grpc

    planted = [t for t in sim.truth.tasks if t.duplicate_of]
    found, examples = 0, list[dict[str, Any]]()
    with grpc.insecure_channel(f"127.0.0.1:{PORTS['nlp']}") as channel:
        stub = nlp_pb2_grpc.NlpServiceStub(channel)
        for t in planted:
            reply = stub.SimilarTasks(nlp_pb2.SimilarTasksRequest(tenant_id=t.tenant_id, task_id=t.task_id, k=k),
                                      timeout=30)
            ids = [h.item_id for h in reply.hits]
            if t.duplicate_of in ids:
                found += 1
                if len(examples) < 3:
                    examples.append({"task_id": t.task_id, "original": t.duplicate_of,
                                     "rank": ids.index(t.duplicate_of) + 1,
                                     "score": round(reply.hits[ids.index(t.duplicate_of)].score, 3)})
    return {"planted": len(planted), "original_in_top_k": found, "k": k, "examples": examples}


def show(summary: dict[str, Any]) -> None:
    """What the run found, service by service."""
    print("\nevents per type:")
    for event_type, count in Counter(summary.get("events_per_type", {})).most_common():
        print(f"  {event_type:<24} {count:>8}")
    f = summary.get("features")
    if f:
        online = f["user_features_online"]
        print(f"\nfeature ingestor (own process): caught up {f['caught_up_after_publish_s']} s after the publish "
              f"ended (lag {f['lag_at_end']}); online user features: {online['rows_found']}/{online['users']} "
              f"people in one batched read ({online['batch_read_ms']} ms), {online['fresh_rows']} already reflect "
              f"the person's newest event (max staleness {online['max_staleness_s']:.1f} s)")
    for name, show_one in (("assignment", _show_assignment), ("timeline", _show_timeline),
                           ("nlp", _show_nlp),
                           ("anomaly", _show_anomaly), ("automation", _show_automation),
                           ("personalization", _show_personalization)):
        section = summary.get(name)
        if section is None:
            continue
        if "error" in section:
            print(f"\n{name}: FAILED ({section['error']})")
            continue
        show_one(section)


def _show_assignment(a: dict[str, Any]) -> None:
    print(f"\nassignment suggestions: {a['predictions']} for {a['tasks_created']} new tasks; the person actually "
          f"assigned was the top suggestion {a['hit_at_1']} and in the top {a['k']} {a['hit_at_k']} of the time "
          f"({a['with_ground_truth']} tasks with truth; picking at random: {a['random_hit_at_k']})")
    if a["sample"]:
        print(json.dumps(a["sample"], indent=2))


def _show_timeline(t: dict[str, Any]) -> None:
    print(f"\ntimeline forecasts: {t['predictions_by_kind']}; {t['alerts']} deadline-risk alert(s)")
    print(f"  {t['tasks_scored']} tasks scored against their real finish: the forecast at creation was off by "
          f"{t['completion_abs_error_h_median']} h (median) and its 80% interval held the real finish "
          f"{t['coverage_80']} of the time")
    if t["sample_project"]:
        print(f"  {json.dumps(t['sample_project'])}")
    if t["sample_alert"]:
        print(f"  alert: {t['sample_alert']}")


def _show_nlp(r: dict[str, Any]) -> None:
    from services.nlp.demo import render

    print("\n" + "\n".join(render(r)))
    d = r["planted_duplicates"]
    print(f"planted duplicates: for {d['original_in_top_k']} of {d['planted']} the original task is in the live "
          f"service's SimilarTasks top {d['k']} (published duplicate predictions above the precision-calibrated "
          f"threshold: {r['duplicates_found']}); e.g. {d['examples'][:2]}")


def _show_automation(a: dict[str, Any]) -> None:
    print(f"\nautomation: {len(a['found'])} of {a['planted']} planted workflows suggested, "
          f"{len(a['missed'])} missed, {len(a['wrong'])} wrong (recall {a['recall']}, precision {a['precision']})")
    for r in a["found"][:5]:
        print(f"  found: {r}")
    for r in a["missed"][:3]:
        print(f"  missed: {r}")
    approval = a.get("approval", {})
    if "skipped" in approval:
        print(f"  approval through the gateway skipped: {approval['skipped']}")
    else:
        print(f"  approved through the gateway: {approval}")


def _show_personalization(p: dict[str, Any]) -> None:
    ctr = p["ctr"]
    print(f"\npersonalization ({p['policy']}, {p['mode']}): click-through of what was shown: service "
          f"{ctr['service']}, popularity {ctr['popularity']}, random {ctr['random']} (oracle {ctr['oracle']}); "
          f"the service closed {p['service_gap_closed_popularity_to_oracle']} of the popularity-to-oracle gap")


def _show_anomaly(a: dict[str, Any]) -> None:
    print(f"\nanomaly ({a['mode']}): {a['detected']} of {a['planted']} planted anomalies became incidents "
          f"({a['incidents']} incidents, {a['false_incidents']} matching nothing; precision {a['precision']}, "
          f"recall {a['recall']}); per kind: {a['per_kind']}")
    if a["missed"]:
        print(f"  missed: {a['missed'][:5]}")


if __name__ == "__main__":
    raise SystemExit(main())
