"""The main job: a simulated Sunday.com week through the mesh on the local stack, and what came out.

Run by `make demo` (which sets up and starts the stack first). Steps, each with progress output:
1. simulate one week of a mid-size tenant and publish it to Kafka (fresh topic prefix per run);
2. the feature ingestor consumes every input topic through the bus into Feast (Redis) + the event log;
3. the assignment service trains (if no champion yet), then ranks every new task from the stream and
   publishes suggestions;
4. a summary: events per type, feature freshness, DLQ, predictions, a sample suggestion; JSON in out/demo.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.bus import ConsumerRunner, KafkaConsumerTransport, KafkaPublisher, RunnerOptions, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, occurred_at
from simulator import SimConfig, Simulation

ASSIGNMENT_PORT = 50061  # MESH_SERVING__PORT of the demo's services
TIMELINE_PORT = 50062
USER_EVENTS = {"user_joined", "user_skills_updated", "user_activity"}
INPUT_TOPICS = ["tasks", "comments", "projects", "users", "activity", "automations", "meetings", "feedback"]


def _say(msg: str) -> None:
    print(f"[demo {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def publish_week(settings: MeshSettings, args: argparse.Namespace) -> tuple[Simulation, int, float]:
    from simulator._sinks import TokenBucket, throttle

    registry = TopicRegistry(settings.kafka.topic_prefix)
    sim = Simulation(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks, seed=args.seed))
    pub = KafkaPublisher(settings.kafka, registry)
    started, n = time.perf_counter(), 0
    for env in throttle(sim.events(), TokenBucket(args.rate) if args.rate else None):
        pub.publish(env)
        n += 1
        if n % 20_000 == 0:
            _say(f"  published {n} events")
    pub.flush(120)
    return sim, n, time.perf_counter() - started


def ingest_features(settings: MeshSettings, n: int) -> tuple[Counter[str], dict[str, Any], float]:
    from mesh.features import USER_VIEW, FeastFeatureClient, FeatureRepo, FeatureRepoConfig, LoggedEvent, build_ingestor

    project = settings.kafka.topic_prefix.strip(".").replace("-", "_")
    repo = FeatureRepo(FeatureRepoConfig.from_settings(settings, project=project))
    repo.apply()
    ingestor = build_ingestor(repo)
    counts: Counter[str] = Counter()
    newest: dict[str, datetime] = {}

    user_newest: dict[str, datetime] = {}

    def handle(envs: Sequence[Envelope]) -> None:
        ingestor.handle_batch([LoggedEvent(env) for env in envs])
        for env in envs:
            counts[env.type] += 1
            newest[env.type] = max(newest.get(env.type, occurred_at(env)), occurred_at(env))
            if env.type in USER_EVENTS:
                key = f"{env.tenant_id}:{getattr(env, env.type).user_id}"
                user_newest[key] = max(user_newest.get(key, occurred_at(env)), occurred_at(env))
        _say(f"  ingested {sum(counts.values())} / {n}")

    started = time.perf_counter()
    stats = ConsumerRunner(
        consumer=KafkaConsumerTransport(settings.kafka, f"features-{uuid.uuid4().hex[:6]}"),
        publisher=KafkaPublisher(settings.kafka, TopicRegistry(settings.kafka.topic_prefix)),
        topics=INPUT_TOPICS, group_id="features", batch_handler=handle,
        options=RunnerOptions(batch_size=2000, max_messages=n, idle_timeout_s=60)).run()
    seconds = time.perf_counter() - started
    freshness = {t: newest[t].isoformat() for t in sorted(newest)}
    # Freshness: each person's online feature row against the newest event about that person.
    keys = sorted(user_newest)
    read_started = time.perf_counter()
    rows = FeastFeatureClient(repo).get_online(USER_VIEW, keys)
    read_ms = (time.perf_counter() - read_started) * 1000
    # A row is fresh when it already reflects the person's newest own event (Feast keeps whole seconds).
    lags = [(user_newest[k] - r.event_timestamp).total_seconds() for k, r in zip(keys, rows, strict=True)
            if r is not None]
    online = {"users": len(keys), "rows_found": len(lags), "batch_read_ms": round(read_ms, 1),
              "fresh_rows": sum(1 for lag in lags if lag < 1.0), "max_staleness_s": max([0.0, *lags])}
    return counts, {"handled": stats.handled, "dead_lettered": stats.dead_lettered,
                    "newest_event_per_type": freshness, "user_features_online": online}, seconds


def ensure_champion(settings: MeshSettings, service: str, model_name: str, train_args: list[str]) -> None:
    from mesh.models import CHAMPION, ModelRegistry

    if ModelRegistry(settings.models).version_of(model_name, CHAMPION) is not None:
        _say(f"{service}: serving the registered {model_name}@{CHAMPION}")
        return
    _say(f"{service}: no champion yet -> training on simulated history (python -m services.{service}.train)")
    subprocess.run([sys.executable, "-m", f"services.{service}.train", *train_args], check=True)


def start_service(settings: MeshSettings, service: str, port: int, out: Path) -> subprocess.Popen[bytes]:
    """The real service process (Kafka consumer + gRPC server) on this run's topics."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MESH_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix, "MESH_SERVING__PORT": str(port)}
    log_path = out / f"{service}-service.log"
    proc = subprocess.Popen([sys.executable, "-m", f"services.{service}"], env=env, stdout=log_path.open("wb"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {service} service exited ({proc.returncode}); see {log_path}")
        if _grpc_serving(f"127.0.0.1:{port}"):
            _say(f"{service} service up (pid {proc.pid}, gRPC 127.0.0.1:{port}, log {log_path})")
            return proc
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the {service} service did not become healthy within 180 s; see {log_path}")


def _grpc_serving(target: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def collect(settings: MeshSettings, logical: list[str], expected: int) -> list[Envelope]:
    """What the services published, read back from Kafka until ``expected`` or 15 s of quiet."""
    from confluent_kafka import Consumer

    from mesh.events import decode

    registry = TopicRegistry(settings.kafka.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"demo-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([registry.physical(t) for t in logical])
    got: list[Envelope] = []
    deadline, last = time.monotonic() + 180, time.monotonic()
    while time.monotonic() < deadline and len(got) < expected and time.monotonic() - last < 15:
        for msg in consumer.consume(500, 1.0):
            if msg.error() is None:
                got.append(decode(msg.value()))
                last = time.monotonic()
    consumer.close()
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


def personalization_results(args: argparse.Namespace) -> dict[str, Any]:
    """The demo week's closed loop: the personalization service's policy (its code path, in process) against
    random and popularity on the same simulated people, requests and dice."""
    from services.personalization.demo import results

    return results(users=args.users, weeks=args.weeks, seed=args.seed)


def anomaly_results(args: argparse.Namespace) -> dict[str, Any]:
    """The anomaly detector (Isolation Forest + LSTM autoencoder ensemble, ONNX; rules engine) trained on a
    separate simulated month (weeks 1-2 train, week 3 chooses weight and threshold), then run over the demo
    week's events in process; its incidents beside the planted anomalies of the demo week."""
    from datetime import timedelta

    from services.anomaly.demo import results
    from services.anomaly.detector import alerts_for
    from services.anomaly.pipeline import Dataset, train_and_choose
    from services.anomaly.train import LstmConfig

    history = Simulation(SimConfig(tenants=3, users_per_tenant=40, weeks=4, seed=11, anomaly_user_fraction=0.4))
    ds = Dataset.from_events(history.events())
    t0 = min(r.hour for r in ds.rows).replace(hour=0)
    train_end, val_end = t0 + timedelta(days=14), t0 + timedelta(days=21)
    val = [a for a in history.truth.anomalies if train_end <= a.start < val_end]
    _say(f"anomaly: training on a simulated month ({len(ds.rows)} user-hours, {len(val)} planted anomalies to "
         "choose the threshold on)")
    ensemble = train_and_choose(ds, train_end, val_end, val, LstmConfig(epochs=10)).ensemble
    week = Simulation(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks, seed=args.seed))
    events = list(week.events())
    alerts, _ = alerts_for(events, ensemble)
    return {"mode": "in process (the anomaly service process is not built yet)", **results(week, alerts)}


def plot_summary(summary: dict[str, Any], path: Path) -> None:
    """One picture of the run: the stream, and what the two services made of it."""
    from bench._report import save_plot

    def draw(fig: Any) -> None:
        events = sorted(summary["events_per_type"].items(), key=lambda kv: kv[1])
        ax = fig.add_subplot(1, 3, 1)
        ax.barh([k for k, _ in events], [v for _, v in events], color="#4c72b0")
        ax.set_xscale("log")
        ax.set_title(f"{summary['events_published']} events of one simulated week")
        a = summary["assignment"]
        ax = fig.add_subplot(1, 3, 2)
        ax.bar(["top-1", f"top-{a['k']}", f"random top-{a['k']}"],
               [a["hit_at_1"] or 0, a["hit_at_k"] or 0, a["random_hit_at_k"] or 0],
               color=["#55a868", "#55a868", "#999"])
        ax.set_ylim(0, 1)
        ax.set_title(f"assignment: true assignee in the suggestions\n({a['predictions']} tasks)")
        t = summary["timeline"]
        ax = fig.add_subplot(1, 3, 3)
        ax.bar(["80% interval coverage", "target"], [t["coverage_80"] or 0, 0.8], color=["#c44e52", "#999"])
        ax.set_ylim(0, 1)
        ax.set_title(f"timeline: forecast at creation vs real finish\n({t['tasks_scored']} tasks, "
                     f"median error {t['completion_abs_error_h_median']} h)")

    save_plot(path, draw, figsize=(16, 6))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--weeks", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=4000, help="events/s into Kafka (0: as fast as possible)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    settings = MeshSettings()
    settings.kafka.topic_prefix = f"demo-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}."
    ensure_topics(settings.kafka, TopicRegistry(settings.kafka.topic_prefix))
    from services.assignment.ranker import MODEL_NAME as ASSIGNMENT_MODEL
    from services.timeline.predictor import MODEL_NAME as TIMELINE_MODEL

    ensure_champion(settings, "assignment", ASSIGNMENT_MODEL, ["--seed", "101"])
    ensure_champion(settings, "timeline", TIMELINE_MODEL,
                    ["--tenants", "2", "--users", "20", "--weeks", "12", "--epochs", "25", "--seed", "101"])
    services = [start_service(settings, "assignment", ASSIGNMENT_PORT, args.out),
                start_service(settings, "timeline", TIMELINE_PORT, args.out)]
    try:
        _say(f"simulating {args.weeks} week(s) of {args.tenants} tenant(s) x {args.users} people -> Kafka "
             f"(topics {settings.kafka.topic_prefix}*, {args.rate:.0f} events/s)")
        sim, n, pub_s = publish_week(settings, args)
        _say(f"published {n} events in {pub_s:.1f}s ({n / pub_s:.0f} events/s)")
        _say("feature ingestion: bus -> Feast online store (Redis) + offline event log")
        counts, features, ing_s = ingest_features(settings, n)
        _say(f"ingested {features['handled']} events in {ing_s:.1f}s "
             f"({features['handled'] / ing_s:.0f} events/s), {features['dead_lettered']} dead-lettered")
        online = features["user_features_online"]
        _say(f"online user features: {online['rows_found']}/{online['users']} people in one batched read "
             f"({online['batch_read_ms']} ms); {online['fresh_rows']} already reflect the person's newest event "
             f"(max staleness {online['max_staleness_s']:.1f} s)")
        _say("assignment: collecting the service's suggestions from Kafka")
        predictions = collect(settings, ["predictions.assignment"], counts["task_created"])
        _say("timeline: collecting forecasts and deadline-risk alerts from Kafka")
        timeline_out = collect(settings, ["predictions.timeline", "alerts"], 10**9)
    finally:
        for proc in services:
            proc.send_signal(signal.SIGTERM)
        for proc in services:
            proc.wait(60)
    assignment = assignment_results(sim, predictions, counts["task_created"])
    timeline = timeline_results(sim, [x for x in timeline_out if x.type == "timeline_prediction"],
                                [x for x in timeline_out if x.type == "alert"])
    assignment["random_hit_at_k"] = round(assignment["k"] / args.users, 3)
    summary: dict[str, Any] = {"topic_prefix": settings.kafka.topic_prefix, "events_published": n,
                               "publish_events_per_s": round(n / pub_s), "events_per_type": dict(counts),
                               "features": features, "ingest_seconds": round(ing_s, 1), "assignment": assignment,
                               "timeline": timeline}
    print("\nevents per type:")
    for event_type, count in counts.most_common():
        print(f"  {event_type:<24} {count:>8}")
    print(f"\nassignment suggestions: {assignment['predictions']} for {assignment['tasks_created']} new tasks; "
          f"the person actually assigned was the top suggestion {assignment['hit_at_1']} and in the top "
          f"{assignment['k']} {assignment['hit_at_k']} of the time "
          f"({assignment['with_ground_truth']} tasks with truth; picking at random: {assignment['random_hit_at_k']})")
    if assignment["sample"]:
        print(json.dumps(assignment["sample"], indent=2))
    print(f"\ntimeline forecasts: {timeline['predictions_by_kind']}; {timeline['alerts']} deadline-risk alert(s)")
    print(f"  {timeline['tasks_scored']} tasks scored against their real finish: the forecast at creation was off by "
          f"{timeline['completion_abs_error_h_median']} h (median) and its 80% interval held the real finish "
          f"{timeline['coverage_80']} of the time")
    if timeline["sample_project"]:
        print(f"  {json.dumps(timeline['sample_project'])}")
    if timeline["sample_alert"]:
        print(f"  alert: {timeline['sample_alert']}")
    failed = more_services(args, summary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_summary(summary, args.out / "summary.png")
    _say(f"summary: {args.out / 'summary.json'}, plot: {args.out / 'summary.png'}")
    if failed:
        _say(f"FAILED: {', '.join(failed)} (see above)")
    return 1 if failed else 0


def more_services(args: argparse.Namespace, summary: dict[str, Any]) -> list[str]:
    """The services that run in process in the demo; one failing is reported and does not hide the others."""
    failed = []
    for name, run, show in (("personalization", personalization_results, _show_personalization),
                            ("anomaly", anomaly_results, _show_anomaly)):
        _say(f"{name}: running")
        try:
            summary[name] = run(args)
        except Exception as exc:  # the demo goes on and says what failed
            summary[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
            _say(f"{name} FAILED: {type(exc).__name__}: {exc}")
            continue
        show(summary[name])
    return failed


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
