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

INPUT_TOPICS = ["tasks", "comments", "projects", "users", "activity", "automations", "meetings", "feedback"]


def _say(msg: str) -> None:
    print(f"[demo {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def publish_week(settings: MeshSettings, args: argparse.Namespace) -> tuple[Simulation, int, float]:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry)
    sim = Simulation(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks, seed=args.seed))
    pub = KafkaPublisher(settings.kafka, registry)
    started, n = time.perf_counter(), 0
    for env in sim.events():
        pub.publish(env)
        n += 1
        if n % 20_000 == 0:
            _say(f"  published {n} events")
    pub.flush(120)
    return sim, n, time.perf_counter() - started


def ingest_features(settings: MeshSettings, n: int) -> tuple[Counter[str], dict[str, Any], float]:
    from mesh.features import FeatureRepo, FeatureRepoConfig, LoggedEvent, build_ingestor

    project = settings.kafka.topic_prefix.strip(".").replace("-", "_")
    repo = FeatureRepo(FeatureRepoConfig.from_settings(settings, project=project))
    repo.apply()
    ingestor = build_ingestor(repo)
    counts: Counter[str] = Counter()
    newest: dict[str, datetime] = {}

    def handle(envs: Sequence[Envelope]) -> None:
        ingestor.handle_batch([LoggedEvent(env) for env in envs])
        for env in envs:
            counts[env.type] += 1
            newest[env.type] = max(newest.get(env.type, occurred_at(env)), occurred_at(env))
        _say(f"  ingested {sum(counts.values())} / {n}")

    started = time.perf_counter()
    stats = ConsumerRunner(
        consumer=KafkaConsumerTransport(settings.kafka, f"features-{uuid.uuid4().hex[:6]}"),
        publisher=KafkaPublisher(settings.kafka, TopicRegistry(settings.kafka.topic_prefix)),
        topics=INPUT_TOPICS, group_id="features", batch_handler=handle,
        options=RunnerOptions(batch_size=2000, max_messages=n, idle_timeout_s=60)).run()
    seconds = time.perf_counter() - started
    freshness = {t: newest[t].isoformat() for t in sorted(newest)}
    return counts, {"handled": stats.handled, "dead_lettered": stats.dead_lettered,
                    "newest_event_per_type": freshness}, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--weeks", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    settings = MeshSettings()
    settings.kafka.topic_prefix = f"demo-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}."
    _say(f"simulating {args.weeks} week(s) of {args.tenants} tenant(s) x {args.users} people -> Kafka "
         f"(topics {settings.kafka.topic_prefix}*)")
    _sim, n, pub_s = publish_week(settings, args)
    _say(f"published {n} events in {pub_s:.1f}s ({n / pub_s:.0f} events/s)")
    _say("feature ingestion: bus -> Feast online store (Redis) + offline event log")
    counts, features, ing_s = ingest_features(settings, n)
    _say(f"ingested {features['handled']} events in {ing_s:.1f}s ({features['handled'] / ing_s:.0f} events/s), "
         f"{features['dead_lettered']} dead-lettered")
    summary: dict[str, Any] = {"topic_prefix": settings.kafka.topic_prefix, "events_published": n,
                               "publish_events_per_s": round(n / pub_s), "events_per_type": dict(counts),
                               "features": features, "ingest_seconds": round(ing_s, 1)}
    print("\nevents per type:")
    for event_type, count in counts.most_common():
        print(f"  {event_type:<24} {count:>8}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    _say(f"summary: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
