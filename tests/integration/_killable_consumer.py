"""A consumer process for the crash test: its effect is a non-idempotent counter and a list in Redis,
applied together with the dedupe mark by RedisDedupe.apply_once. Run by test_bus_crash.py."""

from __future__ import annotations

import sys
import time
from typing import Any

import redis

from mesh.bus import ConsumerRunner, KafkaConsumerTransport, KafkaPublisher, RedisDedupe, RunnerOptions
from mesh.config import MeshSettings
from mesh.events import Envelope


def main(prefix: str, group: str, ns: str) -> None:
    settings = MeshSettings()
    settings.kafka.topic_prefix = prefix
    r = redis.Redis.from_url(settings.redis.url)
    dedupe = RedisDedupe(settings.redis.url, namespace=ns)

    def handle(env: Envelope) -> None:
        r.incr(f"{ns}:calls")
        time.sleep(0.004)  # work in progress, so that a SIGKILL lands in the middle of a batch

        def effect(pipe: Any) -> None:
            pipe.incr(f"{ns}:applied")
            pipe.rpush(f"{ns}:ids", env.event_id)

        dedupe.apply_once(group, env.event_id, effect)

    runner = ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, group),
                            publisher=KafkaPublisher(settings.kafka), topics=["tasks"], group_id=group,
                            handler=handle, dedupe=dedupe, options=RunnerOptions(batch_size=40, poll_timeout_s=0.2))
    runner.install_signal_handlers()
    stats = runner.run()
    print(f"handled={stats.handled} duplicates={stats.duplicates}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
