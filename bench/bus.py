"""Bus throughput: the mesh's publisher and consumer runner vs raw confluent-kafka, same messages, one run.

`python -m bench bus [--quick] [--events N] --out DIR` -> DIR/bus.json + DIR/bus.png. Needs the local
stack (deploy/local/stack.sh start). Load stays on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from sunday.ml.v1 import events_pb2 as e

from bench._report import write_report
from mesh.bus import (
    ConsumerRunner,
    InMemoryDedupe,
    KafkaConsumerTransport,
    KafkaPublisher,
    RedisDedupe,
    RunnerOptions,
    ensure_topics,
)
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, encode, new_envelope, partition_key


def _events(n: int) -> list[Envelope]:
    return [new_envelope(f"tenant-{i % 7}", e.TaskCreated(
        task_id=f"task-{i}", project_id=f"proj-{i % 50}", title=f"Fix flaky export job #{i}",
        description="The nightly export fails intermittently with a timeout on large boards.",
        task_type="bug", priority=e.PRIORITY_HIGH, required_skills=["python", "sql"], estimate_hours=5),
        producer="bench") for i in range(n)]


def _rate(n: int, fn: Callable[[], None]) -> dict[str, float]:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    return {"events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds, 1)}


def _raw_produce(settings: MeshSettings, topic: str, payloads: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5, "compression.type": settings.kafka.compression})
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)


def _mesh_produce(pub: KafkaPublisher, events: list[Envelope]) -> None:
    for env in events:
        pub.publish(env)
    pub.flush(60)


def _raw_consume(settings: MeshSettings, topic: str, n: int) -> None:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"raw-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = 0
    while got < n:
        msgs = consumer.consume(500, 1.0)
        got += sum(1 for m in msgs if m.error() is None)
        if msgs:
            consumer.commit(asynchronous=False)
    consumer.close()


def _mesh_consume(settings: MeshSettings, pub: KafkaPublisher, n: int, dedupe: Any) -> None:
    runner = ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, f"mesh-{uuid.uuid4()}"), publisher=pub,
                            topics=["tasks"], group_id="bench", handler=lambda env: None, dedupe=dedupe,
                            options=RunnerOptions(batch_size=500, max_messages=n, idle_timeout_s=60))
    stats = runner.run()
    if stats.handled != n:
        raise RuntimeError(f"mesh consumer handled {stats.handled} of {n}")


def run(n: int, settings: MeshSettings) -> dict[str, Any]:
    settings.kafka.topic_prefix = f"bench-{uuid.uuid4().hex[:8]}."
    registry = TopicRegistry(settings.kafka.topic_prefix)
    raw_registry = TopicRegistry(f"{settings.kafka.topic_prefix}raw.")
    ensure_topics(settings.kafka, registry, ["tasks", "dlq"])
    ensure_topics(settings.kafka, raw_registry, ["tasks"])
    events = _events(n)
    payloads = [(partition_key(env), encode(env)) for env in events]
    pub = KafkaPublisher(settings.kafka, registry)
    print(f"[bench bus] {n} events, topics {registry.physical('tasks')} / {raw_registry.physical('tasks')}")
    results = {
        "produce_raw_confluent": _rate(n, lambda: _raw_produce(settings, raw_registry.physical("tasks"), payloads)),
        "produce_mesh_publisher": _rate(n, lambda: _mesh_produce(pub, events)),
        "consume_raw_confluent": _rate(n, lambda: _raw_consume(settings, raw_registry.physical("tasks"), n)),
        "consume_mesh_runner": _rate(n, lambda: _mesh_consume(settings, pub, n, InMemoryDedupe())),
        "consume_mesh_runner_redis_dedupe": _rate(n, lambda: _mesh_consume(
            settings, pub, n, RedisDedupe(settings.redis.url, namespace=f"bench-{uuid.uuid4()}"))),
    }
    return {"events": n, "message_bytes": len(payloads[0][1]), "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench bus", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20k events instead of 100k")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    n = args.events or (20_000 if args.quick else 100_000)
    payload = run(n, MeshSettings())
    rows = [{"path": k, **v} for k, v in payload["results"].items()]

    def plot(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        ax.barh([r["path"] for r in rows], [r["events_per_s"] for r in rows], color="#4c72b0")
        ax.set_xlabel("events/s (higher is better)")
        ax.set_title(f"Bus throughput, {n} events, loopback broker, 2 cores")

    write_report(args.out, "bus", payload, rows, ["path", "events", "seconds", "events_per_s"], plot)
    return 0
