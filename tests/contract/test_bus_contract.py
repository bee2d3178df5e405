"""ONE contract suite for the bus, run against the in-process broker and the real Kafka broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import (
    ConsumerRunner,
    DeadLetterCapExceeded,
    DeadLetterPolicy,
    InMemoryBroker,
    InMemoryDedupe,
    KafkaConsumerTransport,
    KafkaPublisher,
    Publisher,
    RetryPolicy,
    RunnerOptions,
    TransientError,
    ensure_topics,
)
from mesh.bus._transport import ConsumerTransport, Message
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, decode, example_events, new_envelope


@dataclass
class Backend:
    publisher: Publisher
    consumer: Callable[[str], ConsumerTransport]
    read_all: Callable[[str, int], list[Message]]


def _memory_backend(registry: TopicRegistry) -> Backend:
    broker = InMemoryBroker()
    return Backend(
        publisher=Publisher(broker.producer(), registry),
        consumer=broker.consumer,
        read_all=lambda logical, n: broker.messages(registry.physical(logical)),
    )


def _kafka_backend(settings: MeshSettings, registry: TopicRegistry) -> Backend:
    ensure_topics(settings.kafka, registry, ["tasks", "dlq", "predictions.assignment"])

    def read_all(logical: str, n: int) -> list[Message]:
        consumer = KafkaConsumerTransport(settings.kafka, f"reader-{uuid.uuid4().hex}")
        consumer.subscribe([registry.physical(logical)])
        out: list[Message] = []
        for _ in range(60):  # bounded: at most ~30 s
            out.extend(consumer.poll(500, 0.5))
            if len(out) >= n:
                break
        consumer.close()
        return out

    return Backend(
        publisher=KafkaPublisher(settings.kafka, registry),
        consumer=lambda group: KafkaConsumerTransport(settings.kafka, group),
        read_all=read_all,
    )


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, settings: MeshSettings) -> Iterator[Backend]:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    yield _memory_backend(registry) if request.param == "memory" else _kafka_backend(settings, registry)


def _task(i: int) -> Envelope:
    return new_envelope("tenant-a", e.TaskCreated(task_id=f"task-{i}", project_id="p1", title=f"t{i}"),
                        producer="tests")


def _runner(backend: Backend, handler: Callable[[Envelope], None], group: str, **kw: object) -> ConsumerRunner:
    opts = RunnerOptions(batch_size=50, poll_timeout_s=0.2, idle_timeout_s=kw.pop("idle_timeout_s", 20.0),  # type: ignore[arg-type]
                         max_messages=kw.pop("max_messages", None))  # type: ignore[arg-type]
    return ConsumerRunner(consumer=backend.consumer(group), publisher=backend.publisher, topics=["tasks"],
                          group_id=group, handler=handler, options=opts, **kw)  # type: ignore[arg-type]


def test_round_trip_in_order_per_entity(backend: Backend) -> None:
    sent = [_task(i) for i in range(30)]
    for env in sent:
        backend.publisher.publish(env)
    backend.publisher.flush()
    got: list[Envelope] = []
    stats = _runner(backend, got.append, "g1", max_messages=30).run()
    assert stats.handled == 30
    assert sorted(x.event_id for x in got) == sorted(x.event_id for x in sent)
    assert [x.task_created.task_id for x in got if x.task_created.task_id == "task-3"] == ["task-3"]


def test_commits_only_after_effect_and_resumes(backend: Backend) -> None:
    for i in range(10):
        backend.publisher.publish(_task(i))
    backend.publisher.flush()
    first: list[str] = []
    _runner(backend, lambda env: first.append(env.event_id), "g2", max_messages=4).run()
    rest: list[str] = []
    _runner(backend, lambda env: rest.append(env.event_id), "g2", max_messages=6).run()
    assert len(first) == 4
    assert sorted(first + rest) == sorted(set(first + rest)) and len(first + rest) == 10


def test_poison_message_goes_to_dlq_and_consumer_goes_on(backend: Backend) -> None:
    backend.publisher.publish(_task(1))
    backend.publisher.publish_raw("tasks", b"\xff\x00not-protobuf", b"k", [])
    backend.publisher.publish(_task(2))
    backend.publisher.flush()
    got: list[str] = []
    stats = _runner(backend, lambda env: got.append(env.task_created.task_id), "g3", max_messages=3).run()
    assert sorted(got) == ["task-1", "task-2"]
    assert stats.dead_lettered == 1
    dlq = backend.read_all("dlq", 1)
    assert len(dlq) == 1
    assert dlq[0].value == b"\xff\x00not-protobuf"
    assert b"not a sunday.ml.v1.Envelope" in (dlq[0].header("dlq.reason") or b"")
    assert dlq[0].header("dlq.original.topic") == backend.publisher.registry.physical("tasks").encode()
    assert dlq[0].header("dlq.original.offset") is not None


def test_event_of_wrong_type_for_topic_is_dead_lettered(backend: Backend) -> None:
    wrong = example_events("user_joined")[0]
    backend.publisher.publish_raw("tasks", wrong.SerializeToString(), b"k", [])
    backend.publisher.flush()
    stats = _runner(backend, lambda env: None, "g4", max_messages=1).run()
    assert stats.dead_lettered == 1
    assert "not declared on topic" in stats.dlq_reasons[0]


def test_dead_letter_cap_stops_loudly(backend: Backend) -> None:
    for _ in range(4):
        backend.publisher.publish_raw("tasks", b"garbage", b"k", [])
    backend.publisher.flush()
    runner = ConsumerRunner(consumer=backend.consumer("g5"), publisher=backend.publisher, topics=["tasks"],
                            group_id="g5", handler=lambda env: None, dead_letter=DeadLetterPolicy(max_consecutive=2),
                            options=RunnerOptions(poll_timeout_s=0.2, idle_timeout_s=20.0))
    with pytest.raises(DeadLetterCapExceeded, match="in a row"):
        runner.run()
    assert len(backend.read_all("dlq", 2)) == 2


def test_transient_errors_are_retried_by_policy(backend: Backend) -> None:
    backend.publisher.publish(_task(1))
    backend.publisher.flush()
    calls: list[int] = []

    def flaky(env: Envelope) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("dependency restarting")

    stats = _runner(backend, flaky, "g6", max_messages=1,
                    retry=RetryPolicy(max_attempts=5, initial_backoff_s=0.01)).run()
    assert stats.handled == 1 and stats.retries == 2 and len(calls) == 3


def test_exhausted_retries_hold_the_batch_until_it_goes_through(backend: Backend) -> None:
    """Past the retry policy a transient failure is never dead-lettered and never kills the consumer: the
    batch is held (partitions paused) and retried until the dependency is back."""
    for i in range(3):
        backend.publisher.publish(_task(i))
    backend.publisher.flush()
    calls: list[str] = []

    def down_for_a_while(env: Envelope) -> None:
        calls.append(env.event_id)
        if len(calls) <= 6:  # the policy's 2 attempts and then several held retries
            raise TransientError("redis restarting")

    stats = _runner(backend, down_for_a_while, "g7", max_messages=3,
                    retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02)).run()
    assert stats.handled == 3 and stats.dead_lettered == 0 and stats.holds >= 2
    assert len(set(calls)) == 3
    again: list[str] = []
    _runner(backend, lambda env: again.append(env.event_id), "g7", max_messages=1, idle_timeout_s=3.0).run()
    assert again == []  # committed once through


def test_stop_while_held_leaves_without_commit(backend: Backend) -> None:
    backend.publisher.publish(_task(1))
    backend.publisher.flush()
    calls: list[str] = []

    def down(env: Envelope) -> None:
        calls.append(env.event_id)
        if len(calls) == 4:  # held by now (2 attempts per pass): SIGTERM arrives during the outage
            runner.stop()
        raise TransientError("still down")

    runner = _runner(backend, down, "g7b", max_messages=1,
                     retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02))
    stats = runner.run()
    assert stats.handled == 0 and stats.dead_lettered == 0 and stats.holds >= 1
    again: list[str] = []
    _runner(backend, lambda env: again.append(env.event_id), "g7b", max_messages=1).run()
    assert again == calls[:1]  # not committed: the same event is delivered again


def test_duplicates_are_skipped_by_event_id(backend: Backend) -> None:
    env = _task(1)
    for _ in range(3):
        backend.publisher.publish(env)
    backend.publisher.flush()
    got: list[str] = []
    stats = _runner(backend, lambda x: got.append(x.event_id), "g8", max_messages=3, dedupe=InMemoryDedupe()).run()
    assert got == [env.event_id]
    assert stats.duplicates == 2


def test_published_bytes_decode_to_the_same_envelope(backend: Backend) -> None:
    env = _task(7)
    backend.publisher.publish(env)
    backend.publisher.flush()
    (msg,) = backend.read_all("tasks", 1)
    assert decode(msg.value) == env
    assert msg.key == b"tenant-a:task-7"
    assert msg.header("tenant-id") == b"tenant-a"


def test_batch_handler_gets_whole_batches_and_isolates_a_poison_event(backend: Backend) -> None:
    sent = [_task(i) for i in range(40)]
    for env in sent:
        backend.publisher.publish(env)
    backend.publisher.flush()
    calls: list[int] = []
    applied: list[str] = []

    def batch(envs: Sequence[Envelope]) -> None:
        calls.append(len(envs))
        if any(env.task_created.task_id == "task-13" for env in envs):
            raise ValueError("task-13 cannot be handled")
        applied.extend(env.event_id for env in envs)

    runner = ConsumerRunner(consumer=backend.consumer("gb"), publisher=backend.publisher, topics=["tasks"],
                            group_id="gb", batch_handler=batch,
                            options=RunnerOptions(batch_size=50, poll_timeout_s=0.2, idle_timeout_s=20,
                                                  max_messages=40))
    stats = runner.run()
    assert stats.handled == 39 and stats.dead_lettered == 1
    assert sorted(applied) == sorted(env.event_id for env in sent if env.task_created.task_id != "task-13")
    assert max(calls) > 1  # really batched
    assert "task-13 cannot be handled" in stats.dlq_reasons[0]


def test_runner_needs_exactly_one_handler(backend: Backend) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ConsumerRunner(consumer=backend.consumer("gx"), publisher=backend.publisher, topics=["tasks"], group_id="gx")


def test_poll_returns_what_arrived_without_waiting_for_a_full_batch(backend: Backend) -> None:
    consumer = backend.consumer("glinger")
    consumer.subscribe([backend.publisher.registry.physical("tasks")])
    got: list[Message] = []
    done = threading.Event()

    def poll() -> None:  # asks for 200 with a minute to wait: must come back as soon as the 3 are there
        while len(got) < 3:
            got.extend(consumer.poll(200, 60.0, 0.005))
        done.set()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    for i in range(3):
        backend.publisher.publish(_task(i))
    backend.publisher.flush()
    assert done.wait(30), "poll waited for a full batch"
    assert len(got) == 3
    consumer.close()


def test_paused_partitions_give_nothing_and_resume_where_they_stopped(backend: Backend) -> None:
    for i in range(6):
        backend.publisher.publish(_task(i))
    backend.publisher.flush()
    consumer = backend.consumer("gpause")
    consumer.subscribe([backend.publisher.registry.physical("tasks")])
    first: list[Message] = []
    for _ in range(60):  # bounded: the group join takes a few seconds on Kafka
        first.extend(consumer.poll(1, 0.5))
        if first:
            break
    assert len(first) == 1
    held = consumer.assignment()
    assert (first[0].topic, first[0].partition) in held
    consumer.pause(held)
    for i in range(6, 9):
        backend.publisher.publish(_task(i))
    backend.publisher.flush()
    while_paused = [m for _ in range(4) for m in consumer.poll(100, 0.5)]
    assert while_paused == []
    consumer.resume(held)
    rest: list[Message] = []
    for _ in range(60):
        rest.extend(consumer.poll(100, 0.5))
        if len(rest) >= 8:
            break
    seen = [(m.partition, m.offset) for m in first + rest]
    assert len(seen) == 9 and len(set(seen)) == 9  # nothing lost, nothing twice
    consumer.close()
