"""A rebalance while a consumer holds a batch (partitions paused during an outage): the partitions it loses
are handled by their new owner, the held member drops its uncommitted copies, nothing is lost or
dead-lettered, and nothing is handled twice."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import (
    ConsumerRunner,
    KafkaConsumerTransport,
    KafkaPublisher,
    RetryPolicy,
    RunnerOptions,
    TransientError,
    ensure_topics,
)
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, new_envelope
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_partitions_taken_from_a_held_consumer_are_handled_once_by_the_new_owner(settings: MeshSettings,
                                                                                 unique: str) -> None:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, ["tasks", "dlq"])
    publisher = KafkaPublisher(settings.kafka, registry)
    sent = [new_envelope("t", e.TaskCreated(task_id=f"task-{i}", project_id="p"), producer="tests") for i in range(60)]
    for env in sent:
        publisher.publish(env)
    publisher.flush()
    group = f"rebalance-{unique}"
    handled: Counter[str] = Counter()
    lock = threading.Lock()
    outage = threading.Event()
    outage.set()
    held_attempts: list[int] = []

    def held(env: Envelope) -> None:  # member A: its dependency is down until we say so
        if outage.is_set():
            held_attempts.append(1)
            raise TransientError("redis restarting")
        with lock:
            handled[env.event_id] += 1

    def healthy(env: Envelope) -> None:  # member B, joining during A's outage
        with lock:
            handled[env.event_id] += 1

    opts = RunnerOptions(poll_timeout_s=0.2, idle_timeout_s=8.0)
    retry = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.3)
    runner_a = ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, group), publisher=publisher,
                              topics=["tasks"], group_id=group, handler=held, retry=retry, options=opts)
    thread_a = threading.Thread(target=runner_a.run, daemon=True)
    thread_a.start()
    wait_until(lambda: len(held_attempts) >= 6, "member A to hold its batch", 60)

    runner_b = ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, group), publisher=publisher,
                              topics=["tasks"], group_id=group, handler=healthy, retry=retry, options=opts)
    thread_b = threading.Thread(target=runner_b.run, daemon=True)
    thread_b.start()
    wait_until(lambda: len(handled) > 0, "member B to handle the partitions it was given", 60)
    outage.clear()  # A's dependency is back
    wait_until(lambda: len(handled) == len(sent), "every event to be handled", 90)
    runner_a.stop()
    runner_b.stop()
    thread_a.join(30)
    thread_b.join(30)
    assert set(handled) == {env.event_id for env in sent}
    assert max(handled.values()) == 1, [k for k, v in handled.items() if v > 1]
