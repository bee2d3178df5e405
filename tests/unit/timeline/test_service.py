"""The timeline service in process: simulated events through the runner (batch handler) -> one
TimelinePrediction per task event that does not close its task (with provenance, its id derived from the
input event), project forecasts, at most one alert per dedup key; a malformed event goes to the DLQ and the
service goes on; the state after the live handler equals a from-scratch replay; a redelivered batch
changes no state and re-publishes the same ids; missing state is a transient failure; gRPC
PredictTask/PredictProject, unknown ids -> NOT_FOUND."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
import onnxruntime
import pytest
from sunday.ml.v1 import events_pb2, timeline_pb2, timeline_pb2_grpc

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions
from mesh.config import MeshSettings, ModelSettings
from mesh.events import Envelope, TopicRegistry, decode, derived_event_id, new_envelope
from mesh.features import StateMissing
from mesh.models import OnnxModel, StaticModel, VersionedModel
from mesh.serving import build_server
from services.timeline.alerts import AlertPolicy, RiskState
from services.timeline.export import export_untrained
from services.timeline.handlers import TASK_EVENTS, in_memory_handler, predicts_task
from services.timeline.predictor import MODEL_NAME, TimelinePredictor
from services.timeline.server import binding
from services.timeline.state import InMemoryTimelineStore, PersonState, ProjectState, TaskState, apply_event

TOPICS = ("tasks", "projects", "users")
N_TASK_EVENTS = 60


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> StaticModel:
    path = export_untrained(tmp_path_factory.mktemp("timeline-model"))
    return StaticModel(VersionedModel(MODEL_NAME, "3", OnnxModel.load(path, ModelSettings())))


@pytest.fixture(scope="module")
def events() -> list[Envelope]:
    from simulator import SimConfig, Simulation

    accepted = {t for n in TOPICS for t in TopicRegistry().spec(n).event_types}
    stream = [ev for ev in Simulation(SimConfig(tenants=1, users_per_tenant=12, weeks=2, seed=5)).events()
              if ev.type in accepted]
    first_task = next(i for i, ev in enumerate(stream) if ev.type in TASK_EVENTS)
    tasks = [ev for ev in stream[first_task:] if ev.type in TASK_EVENTS][:N_TASK_EVENTS]
    return [ev for ev in stream[:first_task]] + tasks


class SeededModel:
    """The MC-dropout graph with onnxruntime's random seed reset before every run: the same inputs give
    the same forecast, so a redelivered batch can be compared output by output."""

    def __init__(self, model: OnnxModel) -> None:
        self._model = model

    def run(self, feeds: Any) -> Any:
        onnxruntime.set_seed(0)
        return self._model.run(feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> StaticModel:
    model = OnnxModel.load(export_untrained(tmp_path_factory.mktemp("timeline-seeded")), ModelSettings())
    return StaticModel(VersionedModel(MODEL_NAME, "3", SeededModel(model)))  # type: ignore[arg-type]


POLICY = AlertPolicy(threshold=0.3, hysteresis=0.1)


def run_service(model: StaticModel, events: list[Envelope], extra_raw: list[bytes]) -> tuple[InMemoryBroker,
                                                                                               TopicRegistry]:
    """Setup (people, projects) first: topics are not ordered with each other; then the task stream."""
    broker, registry = InMemoryBroker(), TopicRegistry("unit.")
    publisher = Publisher(broker.producer(), registry)
    handler = in_memory_handler(model, publisher, simulations=200, policy=POLICY)
    setup = [ev for ev in events if ev.type not in TASK_EVENTS]
    tasks = [ev for ev in events if ev.type in TASK_EVENTS]
    for batch, raw in ((setup, []), (tasks, extra_raw)):
        for ev in batch:
            publisher.publish(ev)
        for value in raw:
            publisher.publish_raw("tasks", value, b"t:x", [])
        ConsumerRunner(consumer=broker.consumer("timeline"), publisher=publisher, topics=TOPICS, group_id="timeline",
                       batch_handler=handler, options=RunnerOptions(max_messages=len(batch) + len(raw),
                                                                    poll_timeout_s=0.05, batch_size=25)).run()
    return broker, registry


def task_prediction_causes(events: list[Envelope]) -> list[Envelope]:
    """The task events that each yield one prediction (their tasks are all known here)."""
    return [ev for ev in events if predicts_task(ev)]


def test_a_prediction_per_task_event_with_an_id_derived_from_it(model: StaticModel, events: list[Envelope],
                                                                span_exporter: object) -> None:
    broker, registry = run_service(model, events, [])
    out = [decode(m.value) for m in broker.messages(registry.physical("predictions.timeline"))]
    tasks = [env for env in out if env.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK]
    causes = task_prediction_causes(events)
    assert causes and sorted(e.event_id for e in tasks) == sorted(
        derived_event_id(ev.event_id, "timeline_prediction", f"{MODEL_NAME}:3", getattr(ev, ev.type).task_id)
        for ev in causes)
    for env in tasks:
        p = env.timeline_prediction
        assert 0 <= p.remaining_hours_p10 <= p.remaining_hours_p50 <= p.remaining_hours_p90
        assert p.completion_p10.ToDatetime() <= p.completion_p50.ToDatetime() <= p.completion_p90.ToDatetime()
        assert p.provenance.model_name == MODEL_NAME and p.provenance.model_version == "3"
        assert len(p.provenance.trace_id) == 32 and "task_state" in p.provenance.feature_timestamps
    projects = [env for env in out if env.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_PROJECT]
    assert projects and all(0 <= e.timeline_prediction.deadline_miss_probability <= 1 for e in projects)
    assert len({e.event_id for e in out}) == len(out)  # no id published twice
    alerts = [decode(m.value) for m in broker.messages(registry.physical("alerts"))]
    assert max(Counter(a.alert.dedup_key for a in alerts).values(), default=1) == 1  # no alert storm
    assert all(a.event_id == a.alert.alert_id for a in alerts)


def test_malformed_events_go_to_the_dlq_and_the_service_goes_on(model: StaticModel, events: list[Envelope]) -> None:
    bad = new_envelope("tenant-000", events_pb2.TaskCreated(task_id="bad", project_id="p", priority=9),
                       producer="test")
    broker, registry = run_service(model, events, [b"\x00not-protobuf", bad.SerializeToString()])
    dlq = broker.messages(registry.physical("dlq"))
    assert len(dlq) == 2
    tasks = [m for m in broker.messages(registry.physical("predictions.timeline"))
             if decode(m.value).timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK]
    assert len(tasks) == len(task_prediction_causes(events))


def _state(state: Any, kinds: Sequence[type[Any]] = (TaskState, PersonState, ProjectState)) -> dict[str, Any]:
    """Every row of the given kinds, as plain data (maps compare without their insertion order)."""
    rows: dict[str, Any] = state.rows()
    for kind in kinds:
        if kind not in (TaskState, PersonState, ProjectState):
            for key in state.store.keys(kind.kind):
                _, tenant, entity = key.split(":", 2)
                rows[key] = state.store.load(kind, tenant, entity).model_dump()
    return rows


def _batches(events: list[Envelope], rng: random.Random) -> list[list[Envelope]]:
    out, i = [], 0
    while i < len(events):
        n = rng.randint(1, 40)
        out.append(events[i:i + n])
        i += n
    return out


def test_live_state_with_batches_and_redeliveries_equals_a_replay(seeded: StaticModel,
                                                                  events: list[Envelope]) -> None:
    # Live: random batch sizes, every third batch delivered twice (a consumer restarted before its commit).
    handler = in_memory_handler(seeded, Publisher(InMemoryBroker().producer(), TopicRegistry()), simulations=100,
                                policy=POLICY)
    rng = random.Random(3)
    for i, batch in enumerate(_batches(events, rng)):
        handler(batch)
        if i % 3 == 0:
            handler(batch[: rng.randint(1, len(batch))])  # a redelivery of part of it
    replay = InMemoryTimelineStore()
    for ev in sorted(events, key=lambda e: (e.occurred_at.ToDatetime(), e.event_id)):  # time order, one by one
        apply_event(replay, ev)
    live = _state(handler.state)
    assert live and live == _state(replay)


def _interleaved(events: list[Envelope], rng: random.Random) -> list[Envelope]:
    """The events as a consumer of several partitions may see them: each key's events in order (a task's,
    a project's, a person's), the keys interleaved at random."""
    queues: dict[str, list[Envelope]] = {}
    for ev in events:
        payload = getattr(ev, ev.type)
        key = next(str(getattr(payload, f)) for f in ("task_id", "project_id", "user_id") if hasattr(payload, f))
        queues.setdefault(key, []).append(ev)
    out: list[Envelope] = []
    while queues:
        key = rng.choice(sorted(queues))
        out.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]
    return out


def test_state_does_not_depend_on_how_partitions_interleave(events: list[Envelope]) -> None:
    in_order = InMemoryTimelineStore()
    for ev in events:
        apply_event(in_order, ev)
    for seed in range(3):
        shuffled = InMemoryTimelineStore()
        for ev in _interleaved(events, random.Random(seed)):
            apply_event(shuffled, ev)
        assert _state(shuffled) == _state(in_order)


class Outputs(Publisher):
    """A publisher that also keeps what was published, in order (read in slices with `new`)."""

    def __init__(self, broker: InMemoryBroker) -> None:
        super().__init__(broker.producer(), TopicRegistry())
        self.published: list[Envelope] = []
        self._read = 0

    def publish(self, env: Envelope) -> None:
        super().publish(env)
        self.published.append(env)

    def new(self) -> list[Envelope]:
        """Everything published since the last call."""
        out, self._read = self.published[self._read:], len(self.published)
        return out


def _content(env: Envelope) -> Envelope:
    """The envelope without what differs between two runs by design (the wall-clock time of the
    prediction and the trace)."""
    out = Envelope()
    out.CopyFrom(env)
    for prov in (out.timeline_prediction.provenance, out.alert.provenance):
        prov.ClearField("predicted_at")
        prov.ClearField("trace_id")
    return out


class RecordFails(Exception):
    pass


def test_a_redelivered_batch_changes_no_state_and_republishes_the_same_ids(seeded: StaticModel,
                                                                           events: list[Envelope]) -> None:
    outputs = Outputs(InMemoryBroker())
    handler = in_memory_handler(seeded, outputs, simulations=100, policy=AlertPolicy(threshold=0.01, hysteresis=0.005))
    setup = [ev for ev in events if ev.type not in TASK_EVENTS]
    tasks = [ev for ev in events if ev.type in TASK_EVENTS]
    handler(setup)  # projects without tasks yet: no risk, no alert
    outputs.new()
    batch = tasks[:30]

    # 1. The process dies after publishing, before the record of what it published (and the commit).
    record = handler._risk.record
    handler._risk.record = lambda outputs: (_ for _ in ()).throw(RecordFails())  # type: ignore[method-assign]
    with pytest.raises(RecordFails):
        handler(batch)
    first = outputs.new()
    state = _state(handler.state, (TaskState, PersonState, ProjectState, RiskState))
    handler._risk.record = record  # type: ignore[method-assign]

    # 2. The batch comes again: no state effect twice, the same outputs under the same ids.
    handler(batch)
    second = outputs.new()
    assert first and [e.event_id for e in second] == [e.event_id for e in first]
    assert [_content(e) for e in second] == [_content(e) for e in first]
    assert _state(handler.state, (TaskState, PersonState, ProjectState)) == {
        k: v for k, v in state.items() if not k.startswith(RiskState.kind)}
    kinds = Counter(e.type for e in first)
    assert kinds["timeline_prediction"] > len([e for e in batch if predicts_task(e)]) and kinds["alert"] > 0

    # 3. Once recorded, the same batch again re-publishes its task predictions (same ids) and no forecast
    #    or alert that was already published.
    handler(batch)
    third = outputs.new()
    tasks_first = [e.event_id for e in first if e.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK]
    assert [e.event_id for e in third if e.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK] \
        == tasks_first
    assert not {e.event_id for e in third} & ({e.event_id for e in first} - set(tasks_first))
    assert not [e for e in third if e.type == "alert"]  # the risk is still active: no second alert


def test_missing_state_is_a_transient_failure_not_a_skip(model: StaticModel, events: list[Envelope]) -> None:
    broker, registry = InMemoryBroker(), TopicRegistry()
    handler = in_memory_handler(model, Publisher(broker.producer(), registry), simulations=100)
    handler([ev for ev in events if ev.type not in TASK_EVENTS])
    before = len(broker.messages(registry.physical("predictions.timeline")))
    handler.state.store.clear()  # Redis restarted without persistence: state and built marker gone
    with pytest.raises(StateMissing) as info:
        handler([next(ev for ev in events if ev.type == "task_created")])
    assert info.value.retryable  # the bus retries it (and holds the partition) instead of skipping it
    assert len(broker.messages(registry.physical("predictions.timeline"))) == before


@pytest.fixture
async def stub(model: StaticModel, events: list[Envelope]):  # type: ignore[no-untyped-def]
    store = InMemoryTimelineStore()
    for ev in events:
        apply_event(store, ev)
    server = build_server([binding(TimelinePredictor(store, model, simulations=200))], MeshSettings(), 0,
                          host="127.0.0.1")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield timeline_pb2_grpc.TimelineServiceStub(channel)
    await server.stop(0)


async def test_predict_task_and_project(stub, events: list[Envelope]) -> None:  # type: ignore[no-untyped-def]
    last = task_prediction_causes(events)[-1]
    tenant, task_id = last.tenant_id, getattr(last, last.type).task_id
    got = await stub.PredictTask(timeline_pb2.PredictTaskRequest(tenant_id=tenant, task_id=task_id))
    assert got.prediction.entity_id == task_id and got.prediction.remaining_hours_p50 > 0
    project_id = next(ev.task_created.project_id for ev in events if ev.type == "task_created")
    got_p = await stub.PredictProject(timeline_pb2.PredictProjectRequest(tenant_id=tenant, project_id=project_id,
                                                                       simulations=100))
    assert got_p.project.entity_id == project_id
    assert got_p.project.entity_kind == events_pb2.ENTITY_KIND_PROJECT


@pytest.mark.parametrize("which", ["task", "project", "tenant"])
async def test_unknown_ids_are_not_found(stub, which: str) -> None:  # type: ignore[no-untyped-def]
    tenant = "no-such-tenant" if which == "tenant" else "tenant-000"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if which == "project":
            await stub.PredictProject(timeline_pb2.PredictProjectRequest(tenant_id=tenant, project_id="nope"))
        else:
            await stub.PredictTask(timeline_pb2.PredictTaskRequest(tenant_id=tenant, task_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_task_event_without_its_project_id_still_gets_its_prediction(model: StaticModel,
                                                                       events: list[Envelope]) -> None:
    outputs = Outputs(InMemoryBroker())
    handler = in_memory_handler(model, outputs, simulations=100)
    created = next(ev for ev in events if ev.type == "task_created")
    handler([ev for ev in events if ev.type not in TASK_EVENTS] + [created])
    update = new_envelope(created.tenant_id, events_pb2.TaskUpdated(task_id=created.task_created.task_id, priority=2),
                          producer="test")  # no project_id: the task's state knows it
    outputs.new()
    handler([update])
    tasks = [e for e in outputs.new() if e.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK]
    assert [e.timeline_prediction.entity_id for e in tasks] == [created.task_created.task_id]
