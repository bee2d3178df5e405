"""End to end on the real broker and Redis: a simulated week in -> the service's facts in Redis -> the
planted workflows suggested on ml.suggestions (found / missed / wrong against the simulator's truth);
malformed events go to the DLQ and the service goes on; then, over gRPC on the state that built, the
suggestions are listed, one is approved (the approved automation is published), a second decision on it is
refused, and an unsafe automation is rejected by Validate."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
from sunday.ml.v1 import automation_pb2 as api
from sunday.ml.v1 import automation_pb2_grpc as api_grpc
from sunday.ml.v1 import events_pb2 as pb

from mesh.bus import ConsumerRunner, KafkaConsumerTransport, KafkaPublisher, Message, RunnerOptions, ensure_topics
from mesh.config import MeshSettings, ModelSettings
from mesh.events import Envelope, TopicRegistry, decode, new_envelope
from mesh.features import RedisAggregates
from mesh.models import OnnxModel, StaticModel, VersionedModel
from mesh.serving import build_server
from services.automation.__main__ import TOPICS
from services.automation.approval import ApprovalStore
from services.automation.demo import results
from services.automation.engine import MODEL_NAME
from services.automation.handlers import AutomationHandler
from services.automation.model import VersionedScorer
from services.automation.nets import NetConfig
from services.automation.sequences import episodes_of
from services.automation.server import binding
from services.automation.state import AUTOMATION_REDUCERS, FactStore
from services.automation.train import fit_episodes
from services.automation.validate import Validator
from simulator import SimConfig, Simulation
from tests.support import drain

pytestmark = pytest.mark.integration
WAIT_S = 120.0


@dataclass
class World:
    sim: Simulation
    events: list[Envelope]
    model: StaticModel


@dataclass
class Running:
    handler: AutomationHandler
    facts: FactStore
    registry: TopicRegistry
    publisher: KafkaPublisher
    start: Callable[[], None]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    sim = Simulation(SimConfig(tenants=1, users_per_tenant=50, weeks=1, seed=0))
    events = list(sim.events())
    path = Path(tmp_path_factory.mktemp("automation-e2e")) / "next.onnx"
    config = NetConfig(hidden=32, epochs=60, batch_size=32, learning_rate=0.01, patience=10, use_time=False)
    fit_episodes(episodes_of(events), path, config)
    onnx = OnnxModel.load(path, ModelSettings.model_validate({}))
    return World(sim, events, StaticModel(VersionedModel(MODEL_NAME, "1", onnx)))


@pytest.fixture
def running(settings: MeshSettings, world: World) -> Iterator[Running]:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "suggestions", "predictions.automation", "dlq"])
    publisher = KafkaPublisher(settings.kafka, registry)
    client = redis.Redis.from_url(settings.redis.url)
    ns = f"it_automation_{uuid.uuid4().hex[:10]}"
    facts = FactStore(RedisAggregates(client, ns, reducers=AUTOMATION_REDUCERS))
    facts.store.mark_built()
    handler = AutomationHandler(facts, ApprovalStore(client, ns), publisher, VersionedScorer(world.model),
                                mine_interval_s=0.0)
    runner = ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, "automation"), publisher=publisher,
                            topics=TOPICS, group_id="automation", batch_handler=handler,
                            options=RunnerOptions(poll_timeout_s=0.2, batch_size=1000))
    thread = threading.Thread(target=runner.run, daemon=True)
    yield Running(handler, facts, registry, publisher, thread.start)
    if thread.is_alive():
        runner.stop()
        thread.join(30)
    publisher.close()
    facts.store.clear()
    for key in client.scan_iter(f"{ns}:*"):
        client.delete(key)
    client.close()


async def test_a_simulated_week_in_planted_workflows_suggested_out_then_approved_over_grpc(
        running: Running, world: World, settings: MeshSettings) -> None:
    registry, publisher = running.registry, running.publisher
    consumed = {t for name in TOPICS for t in registry.spec(name).event_types}
    inputs = [ev for ev in world.events if ev.type in consumed]
    half = len(inputs) // 2
    for ev in inputs[:half]:
        publisher.publish(ev)
    publisher.publish_raw("activity", b"\x08garbage", b"tenant-000:x", [])
    no_task = new_envelope("tenant-000", pb.TaskAssigned(project_id="p", assignee_id="u"), producer="test")
    publisher.publish_raw("tasks", no_task.SerializeToString(), b"tenant-000:none", [])
    for ev in inputs[half:]:
        publisher.publish(ev)
    publisher.flush()
    running.start()  # the week is waiting on the topics: a few large batches, one suggestion pass each

    def all_found(msgs: list[Message]) -> bool:
        return bool(results(world.sim, [decode(m.value) for m in msgs])["recall"] == 1.0)

    out = [decode(m.value) for m in drain(settings.kafka, registry.physical("suggestions"), 10_000, all_found,
                                          timeout_s=WAIT_S)]
    got = results(world.sim, out)
    assert got["recall"] == 1.0 and got["wrong"] == [] and got["planted"] == 4, got
    dlq = drain(settings.kafka, registry.physical("dlq"), 2)
    assert len(dlq) == 2 and all(dict(m.headers).get("dlq.reason") for m in dlq)
    # the same suggestion announced twice carries the same event id (replays dedupe downstream)
    suggested = [e for e in out if e.suggestion.status == "suggested"]
    assert len({e.event_id for e in suggested}) == len({(e.suggestion.suggestion_id, e.event_id) for e in suggested})
    await approve_over_grpc(running, settings, {r["user_id"] for r in got["found"]})


async def approve_over_grpc(running: Running, settings: MeshSettings, users: set[str]) -> None:
    server = build_server([binding(running.handler, Validator(running.facts))], MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await decide(api_grpc.AutomationServiceStub(channel), running, settings, users)
    finally:
        await server.stop(0)


async def decide(stub: api_grpc.AutomationServiceStub, running: Running, settings: MeshSettings,
                 users: set[str]) -> None:
    listed = await stub.ListSuggestions(api.ListSuggestionsRequest(tenant_id="tenant-000"))
    assert {s.user_id for s in listed.suggestions} == users
    target = listed.suggestions[0].suggestion_id
    done = await stub.Approve(api.DecisionRequest(tenant_id="tenant-000", suggestion_id=target, decided_by="boss"))
    assert done.suggestion.status == "approved" and done.suggestion.decided_by == "boss"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Reject(api.DecisionRequest(tenant_id="tenant-000", suggestion_id=target, decided_by="boss"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "is approved" in (refused.value.details() or "")
    unsafe = await stub.Validate(api.ValidateRequest(
        tenant_id="tenant-000", actor_id=listed.suggestions[0].user_id, trigger_type="task_created",
        steps=["create_subtask:template=x"]))
    assert not unsafe.ok and {"cycle", "cross_project"} <= {r.rule for r in unsafe.reasons}
    assert unsafe.dry_run.firings > 0

    def approved(msgs: list[Message]) -> bool:
        return any(decode(m.value).suggestion.status == "approved" for m in msgs)

    events = [decode(m.value) for m in drain(settings.kafka, running.registry.physical("suggestions"), 10_000,
                                             approved)]
    mine = [e for e in events if e.suggestion.status == "approved"]
    assert [e.suggestion.suggestion_id for e in mine] == [target] and list(mine[0].suggestion.rule.actions)
