"""A challenger served in shadow by the real assignment handler, on the real broker and Redis: its predictions go
to ml.shadow.assignment only (not to the predictions topic, not to any topic the gateway's webhooks deliver),
the outcome joiner scores champion and shadow on the same outcomes, and the shadow evidence gates promotion."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.settings import WebhookSettings
from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings, ModelSettings
from mesh.events import Envelope, decode
from mesh.features import InMemoryAggregates, RedisAggregates
from mesh.mlops import (
    Emitter,
    LiveMetricState,
    OutcomeJoiner,
    joiner_namespace,
    outcome_runner,
    paired_scores,
    promote_on_evidence,
    reducers,
    shadow_evidence,
    with_shadow_topics,
)
from mesh.models import OnnxModel, StaticModel, VersionedModel
from services.assignment.handlers import AssignmentHandler
from services.assignment.model import LambdaMartOptions, NetOptions
from services.assignment.online import OnlineFeatures
from services.assignment.outcomes import SPEC, TOPICS
from services.assignment.ranker import MODEL_NAME, AssignmentRanker
from services.assignment.state import StateStore
from services.assignment.train import simulated_events, train_all
from simulator import SimConfig
from tests.support import drain, wait_until

WORLD = SimConfig(tenants=1, users_per_tenant=8, weeks=4, seed=5)


class Recording(KafkaPublisher):
    """The real publisher, remembering what went where (the expected side of the test)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.published: list[Envelope] = []
        self.shadow: list[bytes] = []

    def publish(self, env: Envelope) -> None:
        super().publish(env)
        self.published.append(env)

    def publish_raw(self, logical_topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
                    ) -> None:
        super().publish_raw(logical_topic, value, key, headers)
        if logical_topic == "shadow.assignment":
            self.shadow.append(value)


@pytest.fixture
def shadow_settings(settings: MeshSettings) -> Iterator[MeshSettings]:
    yield settings
    RedisAggregates(redis.Redis.from_url(settings.redis.url), joiner_namespace(settings, "assignment"),
                    reducers=reducers(SPEC)).clear()


def test_shadow_is_scored_beside_the_champion_and_never_published_to_subscribers(
        shadow_settings: MeshSettings, tmp_path: Path) -> None:
    events = simulated_events(WORLD)
    trained = train_all(events, tmp_path, NetOptions(epochs=1, patience=1), LambdaMartOptions(n_estimators=5))
    champion = StaticModel(VersionedModel(MODEL_NAME, "7", OnnxModel.load(trained.exported.ensemble.path,
                                                                          ModelSettings())))
    # the challenger: the network alone (same features, its own scores)
    challenger = StaticModel(VersionedModel(MODEL_NAME, "8", OnnxModel.load(trained.exported.nn.path,
                                                                            ModelSettings())))
    state = StateStore()  # in memory: the subject here is the outputs, not the service's state
    state.store.mark_built()
    registry = with_shadow_topics(shadow_settings.kafka.topic_prefix, ["assignment"])
    ensure_topics(shadow_settings.kafka, registry, [*TOPICS, "users", "projects", "shadow.assignment", "alerts",
                                                    "dlq"])
    pub = Recording(shadow_settings.kafka, registry)
    try:
        handler = AssignmentHandler(state, AssignmentRanker(state, OnlineFeatures(state), champion), pub,
                                    shadow=AssignmentRanker(state, OnlineFeatures(state), challenger))
        for i in range(0, len(events), 200):
            handler(events[i:i + 200])
        for env in events:  # the backend's events: the truths the joiner reads
            pub.publish(env)
        pub.flush()
        predictions = [e for e in pub.published if e.type == "assignment_prediction"]
        shadowed = [decode(v) for v in pub.shadow]
        assert predictions and len(shadowed) == len(predictions)
        assert {e.assignment_prediction.provenance.model_version for e in predictions} == {"7"}
        assert {e.assignment_prediction.provenance.model_version for e in shadowed} == {"8"}

        # expected: the same join replayed in memory over what was published
        local = OutcomeJoiner(SPEC, InMemoryAggregates(reducers(SPEC)), Emitter(lambda env: None, lambda: None))
        local([*predictions, *shadowed, *events])
        tenant = sorted({e.tenant_id for e in events})[0]
        want = local.live(tenant, f"{MODEL_NAME}:7")
        assert want is not None and want.outcomes > 20

        runner, joiner = outcome_runner(shadow_settings, SPEC, [*TOPICS, "shadow.assignment"], pub)
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        try:
            def joined() -> bool:
                a, b = joiner.live(tenant, f"{MODEL_NAME}:7"), joiner.live(tenant, f"{MODEL_NAME}:8")
                return a is not None and b is not None and a.outcomes == want.outcomes == b.outcomes
            wait_until(joined, "champion and shadow outcomes joined", timeout_s=120)
        finally:
            runner.stop()
            thread.join(60)
    finally:
        pub.close()
    got = joiner.live(tenant, f"{MODEL_NAME}:7")
    assert isinstance(got, LiveMetricState) and got.sums == pytest.approx(want.sums)

    store = RedisAggregates(redis.Redis.from_url(shadow_settings.redis.url),
                            joiner_namespace(shadow_settings, "assignment"), reducers=reducers(SPEC))
    a, b = paired_scores(store, SPEC, f"{MODEL_NAME}:7", f"{MODEL_NAME}:8")
    assert len(a) == want.outcomes and float(a.sum()) == pytest.approx(want.sums["mrr"])
    evidence = shadow_evidence(SPEC, f"{MODEL_NAME}:7", f"{MODEL_NAME}:8", a, b, min_outcomes=10)
    assert evidence.ci_low <= evidence.improvement <= evidence.ci_high
    moves: list[tuple[str, str]] = []

    class Registry:
        def set_alias(self, name: str, alias: str, version: str, *, action: str = "set", actor: str | None = None,
                      reason: str = "") -> None:
            moves.append((alias, version))

    assert promote_on_evidence(Registry(), evidence) == evidence.passed
    assert moves == ([("champion", "8")] if evidence.passed else [])

    # subscribers: the predictions topic holds the champion's only, and the webhooks never read the shadow topic
    on_predictions = drain(shadow_settings.kafka, registry.physical("predictions.assignment"), want=len(predictions))
    assert {decode(m.value).assignment_prediction.provenance.model_version for m in on_predictions} == {"7"}
    assert not any(t.startswith("shadow.") for t in WebhookSettings.model_validate({}).topics)
