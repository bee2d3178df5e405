"""The closed loop against the RUNNING service: the simulated world's events go to Kafka hour by hour, the
simulated frontend asks ``Recommend`` over gRPC, the simulated people click by their latent affinity and
their ``suggestion_feedback`` goes back through Kafka to the service, which learns from it.

Before the requests of an hour are asked, the events published so far must be in the service's state:
the barrier waits for the applied-mark of the newest one in the service's Redis namespace (the store
writes it in the same transaction as the event's effect). Run it on a topic prefix of its own (the
world is published here, progressively: a service that already saw the whole week would recommend tasks
from its future).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import numpy as np
from sunday.ml.v1 import personalization_pb2, personalization_pb2_grpc

from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, occurred_at
from services.personalization.online import TOPICS, state_namespace
from services.personalization.simulate import LoopConfig, PolicyRun, World, build_world, feedback_events
from simulator._engagement import CLICK_SLOPE

HOUR = 3600.0


def _consumed(registry: TopicRegistry) -> set[str]:
    return {t for name in TOPICS for t in registry.spec(name).event_types}


class _Barrier:
    """Waits until the service applied a given event (its applied-mark in the service's namespace)."""

    def __init__(self, settings: MeshSettings, timeout_s: float) -> None:
        import redis

        self._r = redis.Redis.from_url(settings.redis.url)
        self._ns = state_namespace(settings)
        self._timeout = timeout_s

    def wait(self, event_id: str) -> None:
        deadline = time.monotonic() + self._timeout
        while not self._r.exists(f"{self._ns}:seen:{event_id}"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the personalization service did not apply event {event_id} within "
                                   f"{self._timeout:.0f}s (is it running on prefix {self._ns!r}?)")
            time.sleep(0.05)

    def close(self) -> None:
        self._r.close()


def live_closed_loop(settings: MeshSettings, target: str, cfg: LoopConfig, *, world: World | None = None,
                     timeout_s: float = 120.0, progress: Callable[[str], None] | None = None) -> PolicyRun:
    """The service's own policy in the loop (``cfg``'s world); CTR and regret as :func:`run_policy`."""
    world = world or build_world(cfg)
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry)  # every topic the world's events go to
    consumed = _consumed(registry)
    publisher = KafkaPublisher(settings.kafka, registry)
    barrier = _Barrier(settings, timeout_s)
    run = PolicyRun("service")
    cursor = 0
    try:
        with grpc.insecure_channel(target) as channel:
            stub = personalization_pb2_grpc.PersonalizationServiceStub(channel)
            hour = -1.0
            feedback = ""
            for i, (t, user) in enumerate(world.requests):
                if math.floor(t / HOUR) != hour:
                    hour = math.floor(t / HOUR)
                    cursor = _publish_until(publisher, world.events, cursor, hour * HOUR, consumed, barrier)
                    if feedback:  # the last hour's feedback is learnt from before this hour's requests
                        barrier.wait(feedback)
                feedback = _ask(stub, world, run, i, t, user, cfg, publisher) or feedback
                if progress is not None and i % 100 == 0:
                    progress(f"live: request {i}/{len(world.requests)}, CTR so far {run.ctr:.3f}")
            publisher.flush()
    finally:
        publisher.close()
        barrier.close()
    run.weekly_ctr.append(run.ctr)
    run.cumulative_regret.append(run.oracle_clicks - run.expected_clicks)
    return run


def _publish_until(publisher: KafkaPublisher, events: list[Envelope], cursor: int, until: float,
                   consumed: set[str], barrier: _Barrier) -> int:
    last = ""
    while cursor < len(events) and occurred_at(events[cursor]).timestamp() < until:
        env = events[cursor]
        publisher.publish(env)
        if env.type in consumed:
            last = env.event_id
        cursor += 1
    publisher.flush()
    if last:
        barrier.wait(last)
    return cursor


def _ask(stub: personalization_pb2_grpc.PersonalizationServiceStub, world: World, run: PolicyRun, i: int, t: float,
         user: str, cfg: LoopConfig, publisher: KafkaPublisher) -> str:
    """Ask, show, click; the id of the last feedback event published ("" when nothing was shown)."""
    try:
        reply = stub.Recommend(personalization_pb2.RecommendRequest(
            tenant_id=world.tenant_id, user_id=user, k=cfg.k, request_id=f"live-{i}"), timeout=10)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # not joined yet
            return ""
        raise
    p = reply.prediction
    if not p.items:
        return ""
    pref = world.preference[user]

    def prob(item: str) -> float:
        return 1.0 / (1.0 + math.exp(-CLICK_SLOPE * float(pref @ world.vector[item])))

    probs = np.array([prob(c) for c in p.candidate_ids])
    run.oracle_clicks += float(np.sort(probs)[::-1][:min(cfg.k, len(probs))].sum())
    last = ""
    for slot, item in enumerate(x.item_id for x in p.items):
        q = prob(item)
        clicked = bool(world.dice[i, slot] < q)
        run.shown, run.expected_clicks, run.clicks = run.shown + 1, run.expected_clicks + q, run.clicks + clicked
        at = datetime.fromtimestamp(t + 30.0, UTC).timestamp()
        for env in feedback_events(world.tenant_id, user, reply.suggestion_id, item, clicked, at):
            publisher.publish(env)
            last = env.event_id
    publisher.flush()
    return last
