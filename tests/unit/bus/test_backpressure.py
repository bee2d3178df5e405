"""An outage is not poison: transient failures (handler, dedupe, flush) hold the batch with its partitions
paused until it goes through; nothing valid is dead-lettered and the consumer does not die."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest
import redis
from prometheus_client import REGISTRY
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import (
    ConsumerRunner,
    DeadLetterCapExceeded,
    DeadLetterPolicy,
    InMemoryBroker,
    InMemoryConsumer,
    InMemoryDedupe,
    PermanentError,
    Publisher,
    PublishError,
    RedisDedupe,
    RetryPolicy,
    RunnerOptions,
)
from mesh.bus._transport import Header, Message, OnRevoke, TopicPartition
from mesh.errors import Unavailable
from mesh.events import Envelope, TopicRegistry, new_envelope

FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.01)


class SpyConsumer(InMemoryConsumer):
    """The in-memory consumer, recording pauses and able to play a rebalance that takes partitions away."""

    def __init__(self, broker: InMemoryBroker, group: str) -> None:
        super().__init__(broker, group)
        self.paused_log: list[set[TopicPartition]] = []
        self.resumed_log: list[set[TopicPartition]] = []
        self.on_revoke: OnRevoke | None = None
        self.revoke_on_poll: list[TopicPartition] = []

    def subscribe(self, topics: list[str], on_revoke: OnRevoke | None = None) -> None:
        super().subscribe(topics, on_revoke)
        self.on_revoke = on_revoke

    def poll(self, max_messages: int, timeout_s: float, linger_s: float = 0.0) -> list[Message]:
        if self.revoke_on_poll and self._paused and self.on_revoke is not None:
            self.on_revoke(self.revoke_on_poll)
            self.revoke_on_poll = []
        return super().poll(max_messages, timeout_s, linger_s)

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self.paused_log.append(set(partitions))
        super().pause(partitions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self.resumed_log.append(set(partitions))
        super().resume(partitions)


def _setup(unique: str, n: int, key: str | None = None) -> tuple[InMemoryBroker, Publisher, list[Envelope]]:
    broker = InMemoryBroker()
    publisher = Publisher(broker.producer(), TopicRegistry(f"bp{unique}."))
    sent = [new_envelope("t", e.TaskCreated(task_id=key or f"task-{i}", project_id="p", title=str(i)),
                         producer="tests") for i in range(n)]
    for env in sent:
        publisher.publish(env)
    return broker, publisher, sent


def _runner(broker: InMemoryBroker, publisher: Publisher, group: str, n: int, consumer: InMemoryConsumer | None = None,
            **kw: object) -> ConsumerRunner:
    return ConsumerRunner(consumer=consumer or broker.consumer(group), publisher=publisher, topics=["tasks"],
                          group_id=group, retry=FAST, options=RunnerOptions(max_messages=n, poll_timeout_s=0.05,
                                                                             idle_timeout_s=10),
                          **kw)  # type: ignore[arg-type]


def _gauge(group: str, reason: str) -> float:
    return REGISTRY.get_sample_value("mesh_consumer_backpressure", {"group": group, "reason": reason,
                                                                  "topic": _TOPIC[0]}) or 0.0


_TOPIC: list[str] = [""]


def test_a_redis_outage_in_the_handler_holds_the_batch_and_dead_letters_nothing(unique: str) -> None:
    broker, publisher, sent = _setup(unique, 5)
    group = f"bp-{unique}"
    _TOPIC[0] = publisher.registry.physical("tasks")
    consumer = SpyConsumer(broker, group)
    handled: list[str] = []
    failures: list[int] = []
    gauge_while_down: list[float] = []

    def handler(env: Envelope) -> None:
        if len(failures) < 8:  # Redis is away for 8 attempts: the policy's 2, then held retries
            failures.append(1)
            if len(failures) > 4:
                gauge_while_down.append(_gauge(group, "ConnectionError"))
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:16379. Connection refused.")
        handled.append(env.event_id)

    stats = _runner(broker, publisher, group, 5, consumer, handler=handler).run()
    assert stats.dead_lettered == 0 and broker.messages(publisher.registry.physical("dlq")) == []
    assert sorted(handled) == sorted(env.event_id for env in sent)
    assert stats.holds >= 3
    assert consumer.paused_log and consumer.resumed_log  # partitions paused while held, resumed after
    assert consumer.paused_log[0] >= {(_TOPIC[0], p) for p in range(3)}
    assert gauge_while_down and set(gauge_while_down) == {1.0}
    assert _gauge(group, "ConnectionError") == 0.0  # cleared once the batch went through


def test_a_dedupe_outage_does_not_kill_the_consumer_nor_apply_twice(unique: str) -> None:
    class FlakyDedupe(InMemoryDedupe):
        def __init__(self) -> None:
            super().__init__()
            self.seen_failures, self.mark_failures = 3, 3

        def seen_many(self, group: str, event_ids: list[str]) -> set[str]:
            if self.seen_failures:
                self.seen_failures -= 1
                raise Unavailable("redis dedupe: ConnectionError: refused")
            return super().seen_many(group, event_ids)

        def mark_many(self, group: str, event_ids: list[str]) -> None:
            if self.mark_failures:
                self.mark_failures -= 1
                raise redis.exceptions.TimeoutError("Timeout reading from socket")
            super().mark_many(group, event_ids)

    broker, publisher, sent = _setup(unique, 6)
    calls: list[str] = []
    dedupe = FlakyDedupe()
    stats = _runner(broker, publisher, f"dd-{unique}", 6, handler=lambda env: calls.append(env.event_id),
                    dedupe=dedupe).run()
    assert sorted(calls) == sorted(env.event_id for env in sent)  # each applied once: only marks were retried
    assert stats.dead_lettered == 0 and stats.holds >= 3
    assert dedupe.seen_many(f"dd-{unique}", [env.event_id for env in sent]) == {env.event_id for env in sent}


def test_what_went_through_before_the_outage_is_committed_and_stop_leaves_the_rest(unique: str) -> None:
    broker, publisher, sent = _setup(unique, 5, key="same-task")  # one partition, in order
    group = f"prefix-{unique}"
    runner: ConsumerRunner
    calls: list[str] = []

    def handler(env: Envelope) -> None:
        calls.append(env.event_id)
        if env.event_id == sent[2].event_id:
            if calls.count(env.event_id) >= 4:  # held for a while; then SIGTERM during the outage
                runner.stop()
            raise TimeoutError("feature store timed out")

    runner = _runner(broker, publisher, group, 5, handler=handler)
    stats = runner.run()
    assert stats.handled == 2 and stats.dead_lettered == 0
    again: list[str] = []
    _runner(broker, publisher, group, 3, handler=lambda env: again.append(env.event_id)).run()
    assert again == [env.event_id for env in sent[2:]]  # the first two were committed before the hold


def test_a_batch_handler_outage_is_held_too(unique: str) -> None:
    broker, publisher, sent = _setup(unique, 12)
    batches: list[int] = []
    applied: list[str] = []

    def batch(envs: Sequence[Envelope]) -> None:
        batches.append(len(envs))
        if len(batches) <= 4:
            raise Unavailable("model assignment@champion is not loaded yet")
        applied.extend(env.event_id for env in envs)

    stats = _runner(broker, publisher, f"bulk-{unique}", 12, batch_handler=batch).run()
    assert sorted(applied) == sorted(env.event_id for env in sent)
    assert stats.dead_lettered == 0 and stats.holds >= 2


def test_outputs_lost_by_a_failed_flush_are_produced_again(unique: str) -> None:
    class FlakyProducer:
        """Delivers on flush; the first flush times out and its records are lost."""

        def __init__(self, broker: InMemoryBroker) -> None:
            self._broker, self._queued, self.failures = broker, list[tuple[str, bytes, bytes | None, list[Header]]](), 1

        def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[Header]) -> None:
            self._queued.append((topic, value, key, headers))

        def flush(self, timeout_s: float) -> int:
            queued, self._queued = self._queued, []
            if self.failures:
                self.failures -= 1
                raise PublishError(f"{len(queued)} record(s) were not delivered: Local: Message timed out",
                                   retryable=True)
            for record in queued:
                self._broker.append(*record)
            return 0

        def close(self) -> None:
            return None

    broker, publisher, _ = _setup(unique, 4)
    out = Publisher(FlakyProducer(broker), publisher.registry)

    def handler(env: Envelope) -> None:
        out.publish(new_envelope(env.tenant_id, e.TaskCompleted(task_id=env.task_created.task_id), producer="t"))

    stats = ConsumerRunner(consumer=broker.consumer(f"fl-{unique}"), publisher=out, topics=["tasks"],
                           group_id=f"fl-{unique}", handler=handler, retry=FAST,
                           options=RunnerOptions(max_messages=4, poll_timeout_s=0.05, idle_timeout_s=10)).run()
    outputs = broker.messages(publisher.registry.physical("tasks"))[4:]
    assert stats.holds >= 1 and len(outputs) == 4  # each output delivered (once the flush worked)


def test_partitions_revoked_while_held_are_left_to_their_new_owner(unique: str) -> None:
    broker, publisher, sent = _setup(unique, 3, key="same-task")
    group = f"rv-{unique}"
    consumer = SpyConsumer(broker, group)
    topic = publisher.registry.physical("tasks")
    consumer.revoke_on_poll = [(topic, broker.messages(topic)[0].partition)]
    calls: list[str] = []

    def handler(env: Envelope) -> None:
        calls.append(env.event_id)
        raise redis.exceptions.ConnectionError("refused")  # never comes back: only the revoke ends the hold

    runner = ConsumerRunner(consumer=consumer, publisher=publisher, topics=["tasks"], group_id=group, handler=handler,
                            retry=FAST, options=RunnerOptions(poll_timeout_s=0.05, idle_timeout_s=0.5))
    stats = runner.run()
    assert stats.handled == 0 and stats.dead_lettered == 0 and stats.holds >= 1
    again: list[str] = []
    _runner(broker, publisher, group, 3, handler=lambda env: again.append(env.event_id)).run()
    assert again == [env.event_id for env in sent]  # not committed by the member that lost them


def test_a_bug_is_dead_lettered_with_its_traceback_summary_and_the_cap_still_stops(unique: str) -> None:
    broker, publisher, _ = _setup(unique, 3)

    def buggy(env: Envelope) -> None:
        people: dict[str, int] = {}
        people[env.task_created.task_id]  # a bug in handler code

    stats = _runner(broker, publisher, f"bug-{unique}", 1, handler=buggy).run()
    assert stats.dead_lettered == 1
    assert "KeyError" in stats.dlq_reasons[0] and "test_backpressure.py:" in stats.dlq_reasons[0]
    capped = _runner(broker, publisher, f"bug-{unique}", 3, handler=buggy,
                     dead_letter=DeadLetterPolicy(max_consecutive=1))
    with pytest.raises(DeadLetterCapExceeded):
        capped.run()


def test_redis_dedupe_reports_an_outage_as_unavailable() -> None:
    dedupe = RedisDedupe("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(Unavailable, match="redis dedupe"):
        dedupe.seen_many("g", ["a"])
    with pytest.raises(Unavailable):
        dedupe.mark_many("g", ["a"])


def test_a_rejected_batch_falls_back_per_event_without_dead_lettering_twice(unique: str) -> None:
    broker, publisher, sent = _setup(unique, 6)
    publisher.publish_raw("tasks", b"\xff not an envelope", b"k", [])
    applied: list[str] = []

    def batch(envs: Sequence[Envelope]) -> None:
        if any(env.event_id == sent[3].event_id for env in envs):
            raise PermanentError("task 3 can never be handled")
        applied.extend(env.event_id for env in envs)

    stats = _runner(broker, publisher, f"fb-{unique}", 7, batch_handler=batch).run()
    assert stats.dead_lettered == 2 and len(broker.messages(publisher.registry.physical("dlq"))) == 2
    assert sorted(applied) == sorted(env.event_id for env in sent if env.event_id != sent[3].event_id)
