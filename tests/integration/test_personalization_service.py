"""The personalization service as it runs (``python -m services.personalization``) on the real broker and
Redis: world events in -> Recommend answers from the tenant's visible tasks -> feedback events in -> the
bandit statistics in Redis move (once) -> the scores of the next recommendation change; a malformed
feedback goes to the DLQ and the service goes on. A redelivered batch changes no statistic."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest
import redis
from sunday.ml.v1 import events_pb2 as e
from sunday.ml.v1 import personalization_pb2, personalization_pb2_grpc

from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings, ModelSettings
from mesh.events import TopicRegistry, decode
from mesh.features import RedisAggregates
from mesh.models import CHAMPION, ModelRegistry
from services.personalization.factors import MODEL_NAME, POLICY_FILE, PolicyModel, Segments
from services.personalization.handlers import PersonalizationHandler
from services.personalization.online import TOPICS, state_namespace
from services.personalization.state import PERSONALIZATION_REDUCERS, ArmState, arm_key
from tests.services_harness import ServiceProcess
from tests.support import drain, wait_until
from tests.unit.personalization.helpers import feedback, world

pytestmark = pytest.mark.integration
TENANT = "tenant-it"
POLICY_VERSION = "it-champion"


@pytest.fixture(scope="module")
def shared() -> MeshSettings:
    """One service process for the module's tests (each starts in ~10-20 s): its own topic prefix."""
    s = MeshSettings()
    s.kafka.topic_prefix = f"test-pers-{uuid.uuid4().hex[:8]}."
    s.kafka.connect_timeout_s = 10
    return s


@pytest.fixture(scope="module")
def service(shared: MeshSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    settings, tmp_path = shared, tmp_path_factory.mktemp("personalization")
    ensure_topics(settings.kafka, TopicRegistry(settings.kafka.topic_prefix), [*TOPICS, "dlq"])
    models = ModelSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",  # type: ignore[call-arg]
                           artifact_dir=tmp_path / "artifacts")
    policy = PolicyModel(POLICY_VERSION, None, Segments(np.zeros((1, 11)))).save(tmp_path / POLICY_FILE)
    span = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    ModelRegistry(models).log_and_register_file(MODEL_NAME, policy, {}, {}, span, alias=CHAMPION)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env.update({"MESH_ENVIRONMENT": "test", "MESH_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
                "MESH_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix, "MESH_REDIS__URL": settings.redis.url,
                "MESH_FEATURES__OFFLINE_DIR": str(tmp_path / "offline"),
                "MESH_MODELS__TRACKING_URI": models.tracking_uri, "MESH_MODELS__ARTIFACT_DIR": str(models.artifact_dir),
                "MESH_FEATURES__REPO_DIR": str(tmp_path / "feast"), "MESH_TELEMETRY__METRICS_PORT": "0",
                "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    proc = ServiceProcess("personalization", env, tmp_path / "logs")
    proc.start()
    try:
        proc.wait_serving(120)
        yield proc
    finally:
        proc.close()
        RedisAggregates(redis.Redis.from_url(settings.redis.url), state_namespace(settings)).clear()


def _recommend(port: int, request_id: str, k: int = 2) -> personalization_pb2.RecommendResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = personalization_pb2_grpc.PersonalizationServiceStub(channel)
        reply: personalization_pb2.RecommendResponse = stub.Recommend(personalization_pb2.RecommendRequest(
            tenant_id=TENANT, user_id="alice", k=k, request_id=request_id), timeout=10)
        return reply


def test_feedback_in_statistics_updated_recommendations_change_poison_to_dlq(
        service: ServiceProcess, shared: MeshSettings) -> None:
    settings = shared
    registry = TopicRegistry(settings.kafka.topic_prefix)
    publisher = KafkaPublisher(settings.kafka, registry)
    try:
        for env in world(TENANT):
            publisher.publish(env)
        publisher.flush()

        def ready() -> bool:
            return set(_recommend(service.port, "probe").prediction.candidate_ids) == {"task-1", "task-3"}

        wait_until(ready, "alice's visible tasks to be recommendable", timeout_s=60, ignore=(grpc.RpcError,))
        first = _recommend(service.port, "first")
        assert first.prediction.policy_version == f"hybrid-{POLICY_VERSION}"  # the champion, fetched by alias
        assert all(p > 0 for p in first.prediction.propensities)
        shown = first.prediction.items[0].item_id
        bad = feedback(TENANT, first.suggestion_id, "alice", "", e.FEEDBACK_ACTION_CLICKED, 90)
        publisher.publish(bad)
        publisher.publish(feedback(TENANT, first.suggestion_id, "alice", shown, e.FEEDBACK_ACTION_CLICKED, 91))
        publisher.flush()
        store = RedisAggregates(redis.Redis.from_url(settings.redis.url), state_namespace(settings),
                                reducers=PERSONALIZATION_REDUCERS)
        key = arm_key(first.prediction.policy_version, first.prediction.arm)

        def updated() -> bool:
            arm = store.load(ArmState, TENANT, key)
            return arm is not None and arm.updates == 1 and arm.clicks == 1

        wait_until(updated, "the clicked item's statistics in Redis", timeout_s=60)
        after = _recommend(service.port, "after")
        assert not np.allclose(after.prediction.candidate_scores, first.prediction.candidate_scores)
        dead = drain(settings.kafka, registry.physical("dlq"), 1, timeout_s=60)
        assert bad.event_id in {decode(m.value).event_id for m in dead}
    finally:
        publisher.close()


def test_the_closed_loop_through_kafka_and_grpc_learns(service: ServiceProcess, shared: MeshSettings) -> None:
    """The simulated frontend asks the running service; clicks return through Kafka; the service's CTR
    beats the random recommender's on the same requests and the same dice."""
    from services.personalization.live import live_closed_loop
    from services.personalization.simulate import LoopConfig, build_world, run_policy

    cfg = LoopConfig(users=30, weeks=2, warmup_weeks=0)
    world = build_world(cfg)
    live = live_closed_loop(shared, f"127.0.0.1:{service.port}", cfg, world=world, timeout_s=60)
    random = run_policy(world, "random", cfg)
    assert live.shown > 150 and live.clicks > 0
    assert live.ctr > random.ctr + 0.05


def test_a_redelivered_batch_changes_no_statistic(settings: MeshSettings) -> None:
    from services.personalization.recommend import RecommendRequest
    from tests.unit.personalization.helpers import NOW, recommender

    client = redis.Redis.from_url(settings.redis.url)
    store = RedisAggregates(client, f"{state_namespace(settings)}_redelivery", reducers=PERSONALIZATION_REDUCERS)
    store.mark_built()
    try:
        handler = PersonalizationHandler(store)
        handler(world(TENANT))
        rec = recommender(store)
        out = rec.recommend(RecommendRequest(TENANT, "alice", 2, now=NOW, request_id="x"))
        batch = [feedback(TENANT, out.envelope.event_id, "alice", item, e.FEEDBACK_ACTION_CLICKED, 60 + i)
                 for i, item in enumerate(out.item_ids)]
        handler(batch)
        key = arm_key(rec.version, out.prediction.arm)
        once = store.load(ArmState, TENANT, key)
        handler(batch)  # redelivered after a crash before the offsets were committed
        handler(batch[:1])
        again = store.load(ArmState, TENANT, key)
        assert once is not None and once.updates == len(batch) == 2
        assert again == once
    finally:
        store.clear()
        client.close()
