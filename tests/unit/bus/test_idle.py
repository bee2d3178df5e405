"""A batch handler's ``on_idle()``: called by the runner while no record arrives (at most every
``idle_interval_s``), on the polling thread, its outputs delivered after it; a failure is logged and tried
again at the next tick, never fatal."""

from __future__ import annotations

from collections.abc import Sequence

from sunday.ml.v1 import events_pb2 as e

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions
from mesh.events import Envelope, TopicRegistry, decode, new_envelope

REGISTRY = TopicRegistry()


class Tail:
    """Handles events; when idle, publishes one output per event seen since the last idle pass (the first
    idle call fails, as an outage would)."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.seen: list[str] = []
        self.pending: list[Envelope] = []
        self.idle_calls = 0

    def __call__(self, events: Sequence[Envelope]) -> None:
        self.seen += [env.event_id for env in events]
        self.pending += list(events)

    def on_idle(self) -> None:
        self.idle_calls += 1
        if self.idle_calls == 1:
            raise ConnectionError("redis down")
        for env in self.pending:
            self.publisher.publish(new_envelope(env.tenant_id, e.AssignmentPrediction(
                task_id=env.task_created.task_id), producer="test", caused_by=env.event_id))
        self.pending = []


def test_idle_work_runs_when_the_topic_is_quiet_and_its_outputs_are_delivered() -> None:
    broker = InMemoryBroker()
    source = Publisher(broker.producer(), REGISTRY)
    for i in range(3):
        source.publish(new_envelope("acme", e.TaskCreated(task_id=f"t-{i}", project_id="p", title="x"),
                                    producer="test"))
    source.flush()
    handler = Tail(Publisher(broker.producer(), REGISTRY))
    ConsumerRunner(consumer=broker.consumer("idle"), publisher=handler.publisher, topics=["tasks"],
                   group_id="idle", batch_handler=handler,
                   options=RunnerOptions(poll_timeout_s=0.02, idle_interval_s=0.05, idle_timeout_s=0.6)).run()
    assert len(handler.seen) == 3
    assert handler.idle_calls >= 2  # the failed first call did not stop the consumer; it was tried again
    out = [decode(m.value) for m in broker.messages(REGISTRY.physical("predictions.assignment"))]
    assert sorted(env.assignment_prediction.task_id for env in out) == ["t-0", "t-1", "t-2"]

