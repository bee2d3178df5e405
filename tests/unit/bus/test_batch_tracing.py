"""A batch handler's span links to its events' producer spans, and each event's own producer context is
found by producer_context(env), with the contexts extracted lazily and once per distinct trace headers."""

from __future__ import annotations

import gc
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions, producer_context
from mesh.events import Envelope, TopicRegistry, new_envelope
from mesh.telemetry import TraceContexts, names


def _task(i: int) -> Envelope:
    return new_envelope("t", e.TaskCreated(task_id=f"x{i}", project_id="p"), producer="tests")


def test_batch_span_links_each_trace_once_and_producer_context_finds_each_events_trace(
        unique: str, span_exporter: InMemorySpanExporter) -> None:
    registry = TopicRegistry(f"bt{unique}.")
    broker = InMemoryBroker()
    pub = Publisher(broker.producer(), registry)
    tracer = trace.get_tracer("tests")
    trace_of: dict[str, int] = {}
    roots = []
    for r in range(2):
        with tracer.start_as_current_span(f"backend.{r}") as root:
            roots.append(root.get_span_context().trace_id)
            for i in range(3):
                env = _task(10 * r + i)
                pub.publish(env)
                trace_of[env.event_id] = root.get_span_context().trace_id
    alone = _task(99)
    pub.publish(alone)  # outside the backend's spans: its publish span starts a trace of its own
    found: dict[str, int | None] = {}

    def handle(envs: Sequence[Envelope]) -> None:
        for env in envs:
            ctx = producer_context(env)
            assert ctx is not None
            span = trace.get_current_span(ctx).get_span_context()
            found[env.event_id] = span.trace_id if span.is_valid else None

    group = f"bt-{unique}"
    stats = ConsumerRunner(consumer=broker.consumer(group), publisher=pub, topics=["tasks"], group_id=group,
                           batch_handler=handle,
                           options=RunnerOptions(max_messages=7, batch_size=7, poll_timeout_s=0.1,
                                                 idle_timeout_s=5)).run()
    assert stats.handled == 7
    own = found.pop(alone.event_id)
    assert found == trace_of
    assert own is not None and own not in roots
    handle_spans = [s for s in span_exporter.get_finished_spans()
                    if s.name == names.SPAN_HANDLE and any(link.context.trace_id in roots for link in s.links)]
    assert len(handle_spans) == 1
    linked = [(link.context.trace_id, link.context.span_id) for link in handle_spans[0].links]
    assert len(linked) == len(set(linked)) == 7  # one link per producer span
    assert {t for t, _ in linked} == {*roots, own}
    assert producer_context(alone) is None  # outside a batch handler


def test_trace_contexts_extract_once_per_distinct_headers() -> None:
    extract = TraceContexts()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    a = extract([("traceparent", parent.encode()), ("other", b"x")])
    b = extract([("other", b"y"), ("traceparent", parent.encode())])
    assert a is b  # headers other than the trace's do not matter
    span = trace.get_current_span(a).get_span_context()
    assert span.is_valid and format(span.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert not trace.get_current_span(extract([])).get_span_context().is_valid


def test_the_collector_is_tuned_while_running_and_restored_after(unique: str) -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    seen: list[tuple[tuple[int, int, int], int]] = []
    broker = InMemoryBroker()
    registry = TopicRegistry(f"gc{unique}.")
    pub = Publisher(broker.producer(), registry)
    pub.publish(_task(1))
    group = f"gc-{unique}"
    ConsumerRunner(consumer=broker.consumer(group), publisher=pub, topics=["tasks"], group_id=group,
                   handler=lambda env: seen.append((gc.get_threshold(), gc.get_freeze_count())),
                   options=RunnerOptions(max_messages=1, poll_timeout_s=0.1, idle_timeout_s=5,
                                         gc_gen0=max(before[0], 700) * 10)).run()
    assert seen[0][0][0] == max(before[0], 700) * 10
    assert seen[0][1] > 0  # the start-up heap is frozen while it runs
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before
