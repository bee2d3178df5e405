"""Effects exactly once in the REAL services, as processes: a simulated week is published while each
service is SIGKILLed and restarted at random points (20+ times), Redis is stopped for 10 s, Redis is
restarted once losing its memory, and the broker is restarted once. Then: every input got exactly its
expected predictions (distinct event ids = expected ids, none missing, none extra), the service's state
equals a from-scratch replay of the same events, a webhook subscriber (the gateway's worker) received each
prediction once, and nothing is in the DLQ.

Everything runs on a PRIVATE Redis and a PRIVATE broker (tests/services_harness.py); the shared stack is
only used by the gateway for its own webhook store. A service joins by adding a :class:`Case`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import redis

from gateway.devtools import harness
from gateway.webhooks import signing
from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, derived_event_id
from mesh.features import InMemoryAggregates, RedisAggregates, TopicReader
from simulator import SimConfig, Simulation
from tests.services_harness import (
    PrivateBroker,
    PrivateRedis,
    Registry,
    ServiceProcess,
    register_champions,
    service_env,
)
from tests.support import Receiver, await_until, drain, webhook_receiver

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

WORLD = SimConfig(tenants=2, users_per_tenant=30, weeks=1, seed=7)
MIN_KILLS = 20
MODEL_VERSION = "1"  # the first (only) version registered in the test's own registry
CHUNK = 8
PUBLISH_EVERY_S = 1.0
"""Task events go out CHUNK at a time, at most one chunk a second, paced by the kills."""


@dataclass(frozen=True)
class Case:
    """One service under test: its inputs, the outputs each input must produce, and its state check."""

    name: str
    topics: tuple[str, ...]
    output: str
    """Logical topic of its predictions."""
    event_types: tuple[str, ...]
    expected: Callable[[list[Envelope]], set[str]]
    """The event ids of the outputs the inputs must produce (derived ids: computable up front)."""
    state_matches_replay: Callable[[list[Envelope], str, str], list[str]]
    """(inputs, redis url, namespace) -> the differences between the live state and a replay (none: [])."""
    counted: Callable[[Envelope], bool] = lambda env: True
    """The outputs ``expected`` covers; the others (timeline's project forecasts, published when they move)
    are held to the rest: each id delivered once, nothing in the DLQ."""


def _assignment_expected(events: list[Envelope]) -> set[str]:
    from services.assignment.ranker import MODEL_NAME

    return {derived_event_id(ev.event_id, "assignment_prediction", f"{MODEL_NAME}:{MODEL_VERSION}",
                             ev.task_created.task_id) for ev in events if ev.type == "task_created"}


def _assignment_state(events: list[Envelope], redis_url: str, namespace: str) -> list[str]:
    from services.assignment.state import ASSIGNMENT_REDUCERS, StateStore

    client = redis.Redis.from_url(redis_url)
    live = StateStore(RedisAggregates(client, f"{namespace}:assignment", reducers=ASSIGNMENT_REDUCERS))
    replay = StateStore(InMemoryAggregates(ASSIGNMENT_REDUCERS))
    for ev in sorted(events, key=lambda e: e.occurred_at.ToDatetime()):
        replay.apply([ev])
    diffs: list[str] = []
    for tenant in sorted({ev.tenant_id for ev in events}):
        ids = replay.active_ids(tenant)
        if live.active_ids(tenant) != ids:
            diffs.append(f"{tenant}: active people differ")
        for want, got in zip(replay.people(tenant, ids), live.people(tenant, ids), strict=False):
            if want != got:
                diffs.append(f"{tenant}:{want.user_id}: live {got} != replay {want}")
        tasks = sorted({ev.task_created.task_id for ev in events
                        if ev.type == "task_created" and ev.tenant_id == tenant})
        diffs += [f"{tenant}:{t}: task row differs" for t in tasks if live.task(tenant, t) != replay.task(tenant, t)]
    client.close()
    return diffs


ASSIGNMENT = Case("assignment", ("tasks", "users", "projects"), "predictions.assignment",
                  ("user_joined", "user_skills_updated", "project_created", "project_updated", "task_created",
                   "task_updated", "task_assigned", "task_completed"),
                  _assignment_expected, _assignment_state)


def _timeline_expected(events: list[Envelope]) -> set[str]:
    from services.timeline.handlers import predicts_task
    from services.timeline.predictor import MODEL_NAME

    return {derived_event_id(ev.event_id, "timeline_prediction", f"{MODEL_NAME}:{MODEL_VERSION}",
                             getattr(ev, ev.type).task_id) for ev in events if predicts_task(ev)}


def _timeline_state(events: list[Envelope], redis_url: str, namespace: str) -> list[str]:
    from services.timeline.alerts import DEFAULT_POLICY, output_reducers
    from services.timeline.state import InMemoryTimelineStore, TimelineState, apply_event

    client = redis.Redis.from_url(redis_url)
    live = TimelineState(RedisAggregates(client, f"{namespace}:timeline", reducers=output_reducers(DEFAULT_POLICY)))
    replay = InMemoryTimelineStore()
    for ev in sorted(events, key=lambda e: e.occurred_at.ToDatetime()):
        apply_event(replay, ev)
    want, got = replay.rows(), live.rows()
    client.close()
    return [f"{key}: live {got.get(key)} != replay {row}" for key, row in want.items() if got.get(key) != row] + [
        f"{key}: only live" for key in set(got) - set(want)]


def _task_prediction(env: Envelope) -> bool:
    from sunday.ml.v1 import events_pb2

    return env.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK


TIMELINE = Case("timeline", ("tasks", "projects", "users"), "predictions.timeline",
                ("user_joined", "project_created", "project_updated", "milestone_created", "milestone_completed",
                 "task_created", "task_updated", "task_assigned", "task_status_changed", "task_completed"),
                _timeline_expected, _timeline_state, _task_prediction)
CASES = [ASSIGNMENT, TIMELINE]


Step = Literal["kill_at_start", "kill_while_serving", "redis_down", "redis_lost", "broker_restart"]

KILLS: list[Step] = ["kill_while_serving" if i % 3 == 0 else "kill_at_start" for i in range(MIN_KILLS)]
"""Twenty SIGKILLs: one in three while consuming, the others at a random point of the start (importing,
loading the model, rebuilding the state)."""
OUTAGES: list[Step] = ["kill_while_serving", "redis_down", "kill_while_serving", "redis_lost",
                       "kill_while_serving", "broker_restart", "kill_while_serving"]
"""Redis stopped for 10 s, Redis restarted empty, the broker restarted, each while the service consumes;
kills between them."""


@dataclass
class Chaos:
    """What the chaos loop did."""

    steps: int = 0
    kills: int = 0
    restarts_after_exit: list[int] = field(default_factory=list)
    outages: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    timeline: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.started:6.1f}s {what}")


@pytest.fixture(scope="module")
def champions(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return register_champions(tmp_path_factory.mktemp("champions"), [c.name for c in CASES])


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivateRedis, PrivateBroker]]:
    root = tmp_path_factory.mktemp("private-stack")
    with PrivateRedis(root / "redis") as redis_, PrivateBroker(root / "kafka") as broker:
        yield redis_, broker


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as state:
        yield state


def _inputs(case: Case) -> list[Envelope]:
    return [ev for ev in Simulation(WORLD).events() if ev.type in case.event_types]


def _publish(publisher: KafkaPublisher, events: list[Envelope], chaos: Chaos, n_steps: int, done: threading.Event,
             stop: threading.Event) -> None:
    """People and projects first (topics are not ordered with each other), then the rest in small chunks
    spread over the chaos (chunk i once the chaos is i/n of the way), so that records arrive while the
    service is up, down and restarting."""
    first = [ev for ev in events if not ev.type.startswith("task_")]
    rest = [ev for ev in events if ev.type.startswith("task_")]
    for ev in first:
        publisher.publish(ev)
    publisher.flush()
    chunks = [rest[i: i + CHUNK] for i in range(0, len(rest), CHUNK)]
    for i, chunk in enumerate(chunks):
        while chaos.steps < i * (n_steps - 1) / len(chunks):
            if stop.wait(0.2):
                return
        for ev in chunk:
            publisher.publish(ev)
        publisher.flush()
        if stop.wait(PUBLISH_EVERY_S):
            return
    done.set()


def _chaos(plan: list[Step], svc: ServiceProcess, redis_: PrivateRedis, broker: PrivateBroker,
           stop: threading.Event, chaos: Chaos, rng: random.Random) -> None:
    """Run the plan's steps in order, restarting the service whenever it is down."""
    actions: dict[Step, tuple[str, Callable[[], None]]] = {
        "redis_down": ("redis stopped for 10 s", lambda: _redis_down(redis_, 10.0)),
        "redis_lost": ("redis restarted empty", lambda: _redis_lost(redis_)),
        "broker_restart": ("broker restarted", broker.restart_kafka),
    }
    for step in plan:
        while not stop.is_set() and not _step(step, svc, stop, chaos, rng, actions):
            pass  # the service exited by itself before the step could happen: restarted, try again
        chaos.steps += 1
    _ensure_running(svc, chaos)


def _step(step: Step, svc: ServiceProcess, stop: threading.Event, chaos: Chaos, rng: random.Random,
          actions: dict[Step, tuple[str, Callable[[], None]]]) -> bool:
    _ensure_running(svc, chaos)
    if step == "kill_at_start":
        stop.wait(rng.uniform(0.0, 8.0))
    else:
        try:
            svc.wait_serving(240)
        except RuntimeError:  # exited by itself (an outage at start)
            return False
        stop.wait(rng.uniform(0.0, 3.0))  # a random point: in a batch, between batches, during a publish
    if step in actions:
        what, run = actions[step]
        run()  # while the service consumes
        chaos.outages.append(what)
        chaos.note(f"outage done: {what}")
        return True
    if not svc.alive():
        return False
    svc.kill()
    chaos.kills += 1
    chaos.note(f"{step} {chaos.kills}")
    return True


def _ensure_running(svc: ServiceProcess, chaos: Chaos) -> None:
    code = svc.reap()
    if code is not None:
        chaos.restarts_after_exit.append(code)
        chaos.note(f"exited by itself with {code}")
    if not svc.alive():
        svc.start()


def _redis_down(redis_: PrivateRedis, seconds: float) -> None:
    redis_.stop()
    time.sleep(seconds)  # the outage itself: ten seconds of connection refused
    redis_.start()


def _redis_lost(redis_: PrivateRedis) -> None:
    redis_.kill()
    redis_.wipe()
    redis_.start()


async def _subscribe(http: httpx.AsyncClient, tenants: set[str], url: str) -> None:
    for tenant in sorted(tenants):
        auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, tenant))}"}
        created = await http.post("/v1/webhooks", headers=auth,
                                  json={"url": url, "event_types": ["assignment_prediction", "timeline_prediction"]})
        assert created.status_code == 201, created.text


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_twenty_kills_leave_every_effect_exactly_once(
        case: Case, champions: Registry, private_stack: tuple[PrivateRedis, PrivateBroker], receiver: Receiver,
        tmp_path: Path) -> None:
    summary = await _run(case, KILLS, champions, private_stack, receiver, tmp_path)
    assert summary["kills"] >= MIN_KILLS, summary


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_redis_and_broker_outages_leave_every_effect_exactly_once(
        case: Case, champions: Registry, private_stack: tuple[PrivateRedis, PrivateBroker], receiver: Receiver,
        tmp_path: Path) -> None:
    summary = await _run(case, OUTAGES, champions, private_stack, receiver, tmp_path)
    assert summary["outages"] == ["redis stopped for 10 s", "redis restarted empty", "broker restarted"], summary


async def _run(case: Case, plan: list[Step], champions: Registry, private_stack: tuple[PrivateRedis, PrivateBroker],
               receiver: Receiver, tmp_path: Path) -> dict[str, Any]:
    """Publish the world through the plan's chaos, then check every effect happened exactly once."""
    redis_, broker = private_stack
    prefix = f"crash-{uuid.uuid4().hex[:8]}."
    settings = MeshSettings()
    settings.kafka.bootstrap_servers, settings.kafka.topic_prefix = broker.bootstrap, prefix
    settings.redis.url = redis_.url
    registry = TopicRegistry(prefix)
    ensure_topics(settings.kafka, registry, [*case.topics, case.output, "dlq"])
    events = _inputs(case)
    expected = case.expected(events)

    gw = harness.gateway_settings(worker=True)
    gw.kafka.bootstrap_servers, gw.kafka.topic_prefix = broker.bootstrap, prefix
    env = service_env(champions, redis_.url, broker.bootstrap, prefix, tmp_path / "offline")
    svc = ServiceProcess(case.name, env, Path(os.environ.get("MESH_TEST_LOG_DIR", tmp_path / "logs")))
    publisher = KafkaPublisher(settings.kafka, registry)
    stop, published, chaos = threading.Event(), threading.Event(), Chaos()
    try:
        async with harness.lifespan_client(harness.build(gw)) as http:
            await _subscribe(http, {ev.tenant_id for ev in events}, receiver.url)
            feeder = threading.Thread(target=_publish, args=(publisher, events, chaos, len(plan), published, stop),
                                      daemon=True)
            feeder.start()
            await asyncio.to_thread(_chaos, plan, svc, redis_, broker, stop, chaos, random.Random(11))
            await asyncio.to_thread(published.wait, 300)
            await asyncio.to_thread(svc.wait_serving, 240)
            await await_until(lambda: set(_body_ids(receiver)) >= expected, "every prediction delivered", 240.0)
            out = await asyncio.to_thread(lambda: list(TopicReader(settings.kafka, registry.physical(case.output))))
            dlq = await asyncio.to_thread(drain, settings.kafka, registry.physical("dlq"), 1, None, 5.0)
    except BaseException:
        print("\n".join(chaos.timeline), "\n", svc.log_tail(60))
        raise
    finally:
        stop.set()
        svc.close()
        publisher.close()
    ids = [logged.envelope.event_id for logged in out if case.counted(logged.envelope)]
    others = {logged.envelope.event_id for logged in out} - set(ids)
    deliveries = Counter(_body_ids(receiver))
    summary: dict[str, Any] = {
        "service": case.name, "inputs": len(events), "expected_outputs": len(expected), "published_outputs": len(ids),
        "distinct_output_ids": len(set(ids)), "kills": chaos.kills, "exits_restarted": chaos.restarts_after_exit,
        "outages": chaos.outages, "webhook_posts": sum(deliveries.values()),
        "seconds": round(time.monotonic() - chaos.started, 1), "timeline": chaos.timeline}
    print(json.dumps(summary))  # the figures the report quotes
    assert set(ids) == expected, f"missing {len(expected - set(ids))}, unexpected {len(set(ids) - expected)}"
    assert not dlq, [dict(m.headers).get("dlq.reason") for m in dlq]
    assert set(deliveries) - others == expected and set(deliveries.values()) == {1}, summary  # each one once
    assert len(_keys(receiver)) == len(deliveries)  # one idempotency key per prediction
    diffs = case.state_matches_replay(events, redis_.url, settings.namespace)
    assert not diffs, diffs[:5]
    return summary


def _body_ids(receiver: Receiver) -> list[str]:
    return [str(json.loads(body)["event_id"]) for _, body in receiver.calls]


def _keys(receiver: Receiver) -> set[str]:
    """The idempotency keys received (derived from the event id and the subscription)."""
    return {h[signing.HEADER_IDEMPOTENCY.lower()] for h, _ in receiver.calls}
