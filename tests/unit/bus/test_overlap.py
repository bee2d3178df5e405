"""Settling in the background (``RunnerOptions.overlap_settle``): batch N+1 is handled while N's flush and
commit run, and still no offset is committed before the outputs of its records are delivered and their ids
marked; a failed background flush hands N's records to the handler again; N's ids count as seen for N+1
before they are marked; a flush covers exactly what was queued before it began."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import (
    ConsumerRunner,
    InMemoryBroker,
    InMemoryConsumer,
    InMemoryDedupe,
    Publisher,
    PublishError,
    RetryPolicy,
    RunnerOptions,
)
from mesh.bus._transport import Header, Message, OnRevoke, TopicPartition
from mesh.events import Envelope, TopicRegistry, decode, new_envelope

FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.01)


class GatedProducer:
    """Queues records; a flush delivers them to the broker. The first flush waits for ``gate`` (or 5 s) and
    the flushes listed in ``fail`` lose their records (a delivery timeout)."""

    def __init__(self, broker: InMemoryBroker, fail: Sequence[int] = ()) -> None:
        self.broker = broker
        self.queued: list[tuple[str, bytes, bytes | None, list[Header]]] = []
        self.gate = threading.Event()
        self.wait_s = 5.0
        self.gate_opened_by_handler: bool | None = None
        self.flushes = 0
        self.fail = set(fail)
        self.lock = threading.Lock()

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[Header]) -> None:
        with self.lock:
            self.queued.append((topic, value, key, headers))

    def flush(self, timeout_s: float) -> int:
        with self.lock:
            self.flushes += 1
            n = self.flushes
            queued, self.queued = self.queued, []
        if n == 1:
            self.gate_opened_by_handler = self.gate.wait(self.wait_s)
        if n in self.fail:
            raise PublishError(f"{len(queued)} record(s) were not delivered: Local: Message timed out",
                               retryable=True)
        for record in queued:
            self.broker.append(*record)
        return 0

    def close(self) -> None:
        return None


class CheckingConsumer(InMemoryConsumer):
    """Asserts at every commit that the records it covers have their outputs delivered and ids marked."""

    def __init__(self, broker: InMemoryBroker, group: str, outputs: str, dedupe: InMemoryDedupe,
                 inputs: str) -> None:
        super().__init__(broker, group)
        self._out, self._in, self._dedupe = outputs, inputs, dedupe
        self.commits: list[dict[TopicPartition, int]] = []
        self.threads: list[str] = []
        self.violations: list[str] = []

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        delivered = {decode(m.value).assignment_prediction.task_id for m in self._broker.messages(self._out)}
        for (topic, partition), upto in offsets.items():
            for msg in self._broker.messages(topic):
                if msg.partition != partition or msg.offset >= upto:
                    continue
                env = decode(msg.value)
                if env.task_created.task_id not in delivered:
                    self.violations.append(f"{env.task_created.task_id}: committed before its output")
                if not self._dedupe.seen_many(self._group, [env.event_id]):
                    self.violations.append(f"{env.task_created.task_id}: committed before its mark")
        self.commits.append(dict(offsets))
        self.threads.append(threading.current_thread().name)
        super().commit(offsets)


class RevokingConsumer(CheckingConsumer):
    """Plays a rebalance at the second poll: ``on_revoke`` with every partition, inside poll."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.on_revoke: OnRevoke | None = None
        self.polls = 0
        self.commits_in_revoke: list[dict[TopicPartition, int]] = []

    def subscribe(self, topics: list[str], on_revoke: OnRevoke | None = None) -> None:
        super().subscribe(topics, on_revoke)
        self.on_revoke = on_revoke

    def poll(self, max_messages: int, timeout_s: float, linger_s: float = 0.0) -> list[Message]:
        self.polls += 1
        if self.polls == 2 and self.on_revoke is not None:
            before = len(self.commits)
            self.on_revoke(sorted(self.assignment()))
            self.commits_in_revoke = self.commits[before:]
        return super().poll(max_messages, timeout_s, linger_s)


def _task(name: str) -> Envelope:
    return new_envelope("t", e.TaskCreated(task_id=name, project_id="p", title=name), producer="tests")


def _world(unique: str, fail: Sequence[int] = ()) -> tuple[InMemoryBroker, Publisher, Publisher, GatedProducer]:
    broker = InMemoryBroker()
    registry = TopicRegistry(f"ov{unique}.")
    inputs = Publisher(broker.producer(), registry)
    producer = GatedProducer(broker, fail)
    return broker, inputs, Publisher(producer, registry), producer


def _answer(out: Publisher, env: Envelope) -> None:
    out.publish(new_envelope(env.tenant_id, e.AssignmentPrediction(task_id=env.task_created.task_id),
                             producer="tests", caused_by=env.event_id))


def test_the_next_batch_is_handled_while_the_last_one_settles_and_nothing_is_committed_early(unique: str) -> None:
    broker, inputs, out, producer = _world(unique)
    first = [_task(f"a{i}") for i in range(5)]
    second = [_task(f"b{i}") for i in range(5)]
    for env in first:
        inputs.publish(env)
    group = f"ov-{unique}"
    dedupe = InMemoryDedupe()
    consumer = CheckingConsumer(broker, group, out.registry.physical("predictions.assignment"), dedupe,
                                inputs.registry.physical("tasks"))
    seen_batches: list[list[str]] = []

    def handler(envs: Sequence[Envelope]) -> None:
        seen_batches.append([env.task_created.task_id for env in envs])
        for env in envs:
            _answer(out, env)
        if len(seen_batches) == 1:
            for env in second:  # arrives while the first batch settles
                inputs.publish(env)
        elif any(env.task_created.task_id.startswith("b") for env in envs):
            producer.gate.set()  # handled while the first flush is still waiting: the two overlapped

    runner = ConsumerRunner(consumer=consumer, publisher=out, topics=["tasks"], group_id=group,
                            batch_handler=handler, dedupe=dedupe, retry=FAST,
                            options=RunnerOptions(max_messages=10, poll_timeout_s=0.05, idle_timeout_s=10))
    stats = runner.run()
    assert stats.handled == 10 and stats.holds == 0
    assert producer.gate_opened_by_handler is True  # batch 2 was handled during batch 1's flush
    assert consumer.violations == []
    assert consumer.commits  # and everything was committed by the end
    delivered = [decode(m.value).assignment_prediction.task_id
                 for m in broker.messages(out.registry.physical("predictions.assignment"))]
    assert sorted(delivered) == sorted(env.task_created.task_id for env in first + second)
    again: list[str] = []
    ConsumerRunner(consumer=broker.consumer(group), publisher=out, topics=["tasks"], group_id=group,
                   handler=lambda env: again.append(env.event_id),
                   options=RunnerOptions(poll_timeout_s=0.05, idle_timeout_s=0.3)).run()
    assert again == []  # all ten committed


def test_a_failed_background_flush_hands_its_records_to_the_handler_again(unique: str) -> None:
    broker, inputs, out, producer = _world(unique, fail=[1])
    producer.gate.set()
    first = [_task(f"a{i}") for i in range(4)]
    second = [_task(f"b{i}") for i in range(4)]
    for env in first:
        inputs.publish(env)
    group = f"ovf-{unique}"
    dedupe = InMemoryDedupe()
    consumer = CheckingConsumer(broker, group, out.registry.physical("predictions.assignment"), dedupe,
                                inputs.registry.physical("tasks"))
    calls: list[str] = []

    def handler(envs: Sequence[Envelope]) -> None:
        calls.extend(env.task_created.task_id for env in envs)
        for env in envs:
            _answer(out, env)
        if len(calls) == len(first):
            for env in second:
                inputs.publish(env)

    stats = ConsumerRunner(consumer=consumer, publisher=out, topics=["tasks"], group_id=group, batch_handler=handler,
                           dedupe=dedupe, retry=FAST,
                           options=RunnerOptions(max_messages=8, poll_timeout_s=0.05, idle_timeout_s=10)).run()
    assert stats.holds >= 1 and consumer.violations == []
    assert sorted(set(calls)) == sorted(env.task_created.task_id for env in first + second)
    assert all(calls.count(env.task_created.task_id) == 2 for env in first)  # lost with the flush: again
    delivered = {decode(m.value).assignment_prediction.task_id
                 for m in broker.messages(out.registry.physical("predictions.assignment"))}
    assert delivered == {env.task_created.task_id for env in first + second}


def test_an_id_of_the_batch_settling_counts_as_seen_before_it_is_marked(unique: str) -> None:
    broker, inputs, out, producer = _world(unique)
    producer.wait_s = 0.5  # the gate opens only if the copy is handled (it must not be)
    env = _task("once")
    inputs.publish(env)
    group = f"ovd-{unique}"
    calls: list[str] = []

    def handler(envs: Sequence[Envelope]) -> None:
        calls.extend(x.event_id for x in envs)
        if len(calls) == 1:
            inputs.publish(env)  # redelivered by its producer while the first copy settles (unmarked)
        else:
            producer.gate.set()

    stats = ConsumerRunner(consumer=broker.consumer(group), publisher=out, topics=["tasks"], group_id=group,
                           batch_handler=handler, dedupe=InMemoryDedupe(), retry=FAST,
                           options=RunnerOptions(max_messages=2, poll_timeout_s=0.05, idle_timeout_s=1)).run()
    assert calls == [env.event_id] and stats.duplicates == 1


def test_a_flush_covers_what_was_queued_before_it_and_holds_what_comes_during_it(unique: str) -> None:
    broker, _, out, producer = _world(unique, fail=[1])
    topic = out.registry.physical("predictions.assignment")
    _answer(out, _task("before"))
    failure: list[BaseException] = []

    def flush() -> None:
        try:
            out.flush()
        except PublishError as exc:
            failure.append(exc)

    flusher = threading.Thread(target=flush)
    flusher.start()
    while producer.flushes == 0:  # the flush began (it waits for the gate)
        threading.Event().wait(0.001)
    _answer(out, _task("during"))  # held back: not the failing flush's record
    assert producer.queued == []
    producer.gate.set()
    flusher.join(5)
    assert len(failure) == 1  # the failure is the first flush's, which covered "before"
    out.flush()  # "during" was queued when the first flush ended, and this one delivers it
    assert [decode(m.value).assignment_prediction.task_id for m in broker.messages(topic)] == ["during"]


@pytest.mark.parametrize("overlap", [True, False])
def test_both_settling_modes_deliver_and_commit_everything(unique: str, overlap: bool) -> None:
    broker, inputs, out, producer = _world(unique)
    producer.gate.set()
    sent = [_task(f"t{i}") for i in range(30)]
    group = f"ovm-{unique}-{overlap}"
    dedupe = InMemoryDedupe()
    consumer = CheckingConsumer(broker, group, out.registry.physical("predictions.assignment"), dedupe,
                                inputs.registry.physical("tasks"))
    for env in sent:
        inputs.publish(env)
    stats = ConsumerRunner(consumer=consumer, publisher=out, topics=["tasks"], group_id=group,
                           handler=lambda env: _answer(out, env), dedupe=dedupe, retry=FAST,
                           options=RunnerOptions(batch_size=7, max_messages=30, poll_timeout_s=0.05,
                                                 idle_timeout_s=10, overlap_settle=overlap)).run()
    assert stats.handled == 30 and consumer.violations == []
    committed = {tp: o for c in consumer.commits for tp, o in c.items()}
    assert committed == {(inputs.registry.physical("tasks"), p): end for p, end in
                         enumerate(broker.end_offsets(inputs.registry.physical("tasks"))) if end}


def test_a_revoke_commits_the_batch_settling_on_the_polling_thread_before_the_partitions_go(unique: str) -> None:
    broker, inputs, out, producer = _world(unique)
    producer.wait_s = 0.3  # the first flush is slow: the revoke comes while it runs
    sent = [_task(f"r{i}") for i in range(6)]
    for env in sent:
        inputs.publish(env)
    group = f"ovr-{unique}"
    dedupe = InMemoryDedupe()
    consumer = RevokingConsumer(broker, group, out.registry.physical("predictions.assignment"), dedupe,
                                inputs.registry.physical("tasks"))
    def handler(envs: Sequence[Envelope]) -> None:
        for env in envs:
            _answer(out, env)

    stats = ConsumerRunner(consumer=consumer, publisher=out, topics=["tasks"], group_id=group,
                           batch_handler=handler, dedupe=dedupe,
                           retry=FAST, options=RunnerOptions(poll_timeout_s=0.05, idle_timeout_s=0.5)).run()
    assert stats.handled == 6 and consumer.violations == []
    topic = inputs.registry.physical("tasks")
    ends = {(topic, p): end for p, end in enumerate(broker.end_offsets(topic)) if end}
    # committed inside the revoke, by the polling thread (a commit from the settling thread would wait for the
    # rebalance to end, which waits for the revoke callback), and only once
    assert consumer.commits_in_revoke == [ends]
    assert consumer.threads == [threading.main_thread().name]
