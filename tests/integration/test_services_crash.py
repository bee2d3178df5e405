"""Effects exactly once in the REAL services, as processes: a simulated week is published while each
service is SIGKILLed and restarted at random points (20+ times), Redis is stopped for 10 s, Redis is
restarted once losing its memory, and the broker is restarted once. Then: every input got exactly its
expected predictions (distinct event ids = expected ids, none missing, none extra), the service's state
equals a from-scratch replay of the same events, a webhook subscriber (the gateway's worker) received each
prediction once, and nothing is in the DLQ.

The services of one run are up at the same time on the same topics, and the chaos runs in lockstep:
at each kill step EVERY service is SIGKILLed (each at its own random point); an outage (Redis, broker)
hits them all at once. So each service sees every kill and outage of the plan, and adding a service
costs little more time.

Everything runs on a PRIVATE Redis and a PRIVATE broker (tests/services_harness.py); the shared stack is
only used by the gateway for its own webhook store. A service joins by adding a :class:`Case` to CASES.
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
class Where:
    """Where the services of a run keep their state."""

    redis_url: str
    namespace: str
    data_dir: Path
    """MESH_NLP__DATA_DIR (the vector database file)."""


@dataclass(frozen=True)
class Case:
    """One service under test: its inputs, the outputs each input must produce, and its state check."""

    name: str
    topics: tuple[str, ...]
    output: str
    """Logical topic of its predictions."""
    output_type: str
    """Envelope type of its predictions (what the webhook subscription asks for)."""
    event_types: tuple[str, ...]
    expected: Callable[[list[Envelope]], set[str]]
    """The event ids of the outputs the inputs must produce (derived ids: computable up front)."""
    state_matches_replay: Callable[[list[Envelope], Where], list[str]]
    """(inputs, where the state lives) -> the differences between the live state and a replay (none: [])."""
    counted: Callable[[Envelope], bool] = lambda env: True
    """The outputs ``expected`` covers; the others (timeline's project forecasts, published when they move)
    are held to the rest: each id delivered once, nothing in the DLQ."""


def _assignment_expected(events: list[Envelope]) -> set[str]:
    from services.assignment.ranker import MODEL_NAME

    return {derived_event_id(ev.event_id, "assignment_prediction", f"{MODEL_NAME}:{MODEL_VERSION}",
                             ev.task_created.task_id) for ev in events if ev.type == "task_created"}


def _assignment_state(events: list[Envelope], where: Where) -> list[str]:
    from services.assignment.state import ASSIGNMENT_REDUCERS, StateStore

    client = redis.Redis.from_url(where.redis_url)
    live = StateStore(RedisAggregates(client, f"{where.namespace}:assignment", reducers=ASSIGNMENT_REDUCERS))
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


ASSIGNMENT = Case("assignment", ("tasks", "users", "projects"), "predictions.assignment", "assignment_prediction",
                  ("user_joined", "user_skills_updated", "project_created", "project_updated", "task_created",
                   "task_updated", "task_assigned", "task_completed"),
                  _assignment_expected, _assignment_state)


def _timeline_expected(events: list[Envelope]) -> set[str]:
    from services.timeline.handlers import predicts_task
    from services.timeline.predictor import MODEL_NAME

    return {derived_event_id(ev.event_id, "timeline_prediction", f"{MODEL_NAME}:{MODEL_VERSION}",
                             getattr(ev, ev.type).task_id) for ev in events if predicts_task(ev)}


def _timeline_state(events: list[Envelope], where: Where) -> list[str]:
    from services.timeline.alerts import DEFAULT_POLICY, output_reducers
    from services.timeline.state import InMemoryTimelineStore, TimelineState, apply_event

    client = redis.Redis.from_url(where.redis_url)
    live = TimelineState(RedisAggregates(client, f"{where.namespace}:timeline",
                                         reducers=output_reducers(DEFAULT_POLICY)))
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


TIMELINE = Case("timeline", ("tasks", "projects", "users"), "predictions.timeline", "timeline_prediction",
                ("user_joined", "project_created", "project_updated", "milestone_created", "milestone_completed",
                 "task_created", "task_updated", "task_assigned", "task_status_changed", "task_completed"),
                _timeline_expected, _timeline_state, _task_prediction)


def _nlp_expected(events: list[Envelope]) -> set[str]:
    """Every comment gets its sentiment and every transcript its summary (duplicates depend on what is
    indexed when a task arrives, so they are held to the rest: once each, nothing in the DLQ)."""
    from services.nlp.text import MODEL_NAME as SENTIMENT
    from services.nlp.textwire import SUMMARIZER, SUMMARIZER_VERSION

    out = {derived_event_id(ev.event_id, "nlp_prediction", f"{SENTIMENT}:{MODEL_VERSION}",
                            f"sentiment:{ev.task_commented.comment_id}")
           for ev in events if ev.type == "task_commented"}
    return out | {derived_event_id(ev.event_id, "nlp_prediction", f"{SUMMARIZER}:{SUMMARIZER_VERSION}",
                                   f"summary:{ev.meeting_transcript.meeting_id}")
                  for ev in events if ev.type == "meeting_transcript"}


def _nlp_state(events: list[Envelope], where: Where) -> list[str]:
    """The vector database holds each task once with its newest text, and each comment once."""
    from services.nlp.embedder import DIM
    from services.nlp.vectors import VectorIndex

    want: dict[tuple[str, str, str], str] = {}
    for ev in sorted(events, key=lambda e: e.occurred_at.ToDatetime()):
        if ev.type == "task_created":
            want[(ev.tenant_id, "task", ev.task_created.task_id)] = ev.task_created.title
        elif ev.type == "task_updated" and ev.task_updated.HasField("title"):
            want[(ev.tenant_id, "task", ev.task_updated.task_id)] = ev.task_updated.title
        elif ev.type == "task_commented":
            want[(ev.tenant_id, "comment", ev.task_commented.comment_id)] = ""
    index = VectorIndex(str(where.data_dir / f"{where.namespace}.milvus.db"), dim=DIM)
    diffs: list[str] = []
    try:
        for tenant in sorted({t for t, _, _ in want}):
            for kind in ("task", "comment"):
                live = {i.item_id: i.title for i in index.items(tenant, kind)}
                expect = {i: title for (t, k, i), title in want.items() if t == tenant and k == kind}
                if set(live) != set(expect):
                    diffs.append(f"{tenant} {kind}s: {len(set(expect) - set(live))} missing, "
                                 f"{len(set(live) - set(expect))} unexpected")
                diffs += [f"{tenant} {kind} {i}: live {live[i]!r} != {title!r}" for i, title in expect.items()
                          if i in live and live[i] != title]
    finally:
        index.close()
    return diffs


def _nlp_counted(env: Envelope) -> bool:
    return env.nlp_prediction.kind in ("sentiment", "summary")


NLP = Case("nlp", ("tasks", "comments", "meetings", "tenants"), "predictions.nlp", "nlp_prediction",
           ("task_created", "task_updated", "task_commented", "meeting_transcript"),
           _nlp_expected, _nlp_state, _nlp_counted)
CASES = [ASSIGNMENT, TIMELINE, NLP]


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
    kills: Counter[str] = field(default_factory=Counter)
    restarts_after_exit: dict[str, list[int]] = field(default_factory=dict)
    outages: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    timeline: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str) -> None:
        with self.lock:
            self.timeline.append(f"{time.monotonic() - self.started:6.1f}s {what}")

    def kill(self, service: str, step: str) -> None:
        with self.lock:
            self.kills[service] += 1
        self.note(f"{service}: {step} {self.kills[service]}")

    def exited(self, service: str, code: int) -> None:
        with self.lock:
            self.restarts_after_exit.setdefault(service, []).append(code)
        self.note(f"{service}: exited by itself with {code}")


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


def _inputs(cases: list[Case]) -> list[Envelope]:
    types = {t for case in cases for t in case.event_types}
    return [ev for ev in Simulation(WORLD).events() if ev.type in types]


def _publish(publisher: KafkaPublisher, events: list[Envelope], chaos: Chaos, n_steps: int, done: threading.Event,
             stop: threading.Event) -> None:
    """People and projects first (topics are not ordered with each other), then the rest in small chunks
    spread over the chaos (chunk i once the chaos is i/n of the way), so that records arrive while the
    services are up, down and restarting."""
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


def _chaos(plan: list[Step], svcs: list[ServiceProcess], redis_: PrivateRedis, broker: PrivateBroker,
           stop: threading.Event, chaos: Chaos, rng: random.Random) -> None:
    """Run the plan's steps in order, in lockstep over the services, restarting a service whenever it is
    down: a kill step kills every service (each in its own thread, at its own random point); an outage
    step waits until every service consumes, then hits them all once."""
    actions: dict[Step, tuple[str, Callable[[], None]]] = {
        "redis_down": ("redis stopped for 10 s", lambda: _redis_down(redis_, 10.0)),
        "redis_lost": ("redis restarted empty", lambda: _redis_lost(redis_)),
        "broker_restart": ("broker restarted", broker.restart_kafka),
    }
    seeds = [rng.randrange(2**32) for _ in svcs]
    rngs = [random.Random(seed) for seed in seeds]
    for step in plan:
        if stop.is_set():
            break
        if step in actions:
            while not stop.is_set() and not _outage(step, svcs, stop, chaos, rng, actions):
                pass
        else:
            threads = [threading.Thread(target=_kill_step, args=(step, svc, stop, chaos, r), daemon=True)
                       for svc, r in zip(svcs, rngs, strict=True)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        chaos.steps += 1
    for svc in svcs:
        _ensure_running(svc, chaos)


def _kill_step(step: Step, svc: ServiceProcess, stop: threading.Event, chaos: Chaos, rng: random.Random) -> None:
    while not stop.is_set():
        _ensure_running(svc, chaos)
        if step == "kill_at_start":
            stop.wait(rng.uniform(0.0, 8.0))
        else:
            try:
                svc.wait_serving(240)
            except RuntimeError:  # exited by itself (an outage at start): restarted, try again
                continue
            stop.wait(rng.uniform(0.0, 3.0))  # a random point: in a batch, between batches, during a publish
        if not svc.alive():
            continue
        svc.kill()
        chaos.kill(svc.name, step)
        return


def _outage(step: Step, svcs: list[ServiceProcess], stop: threading.Event, chaos: Chaos, rng: random.Random,
            actions: dict[Step, tuple[str, Callable[[], None]]]) -> bool:
    for svc in svcs:
        _ensure_running(svc, chaos)
    try:
        for svc in svcs:
            svc.wait_serving(240)
    except RuntimeError:  # one exited by itself before the outage: restarted, try again
        return False
    stop.wait(rng.uniform(0.0, 3.0))
    what, run = actions[step]
    run()  # while the services consume
    chaos.outages.append(what)
    chaos.note(f"outage done: {what}")
    return True


def _ensure_running(svc: ServiceProcess, chaos: Chaos) -> None:
    code = svc.reap()
    if code is not None:
        chaos.exited(svc.name, code)
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


async def _subscribe(http: httpx.AsyncClient, tenants: set[str], url: str, event_types: list[str]) -> None:
    for tenant in sorted(tenants):
        auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, tenant))}"}
        created = await http.post("/v1/webhooks", headers=auth, json={"url": url, "event_types": event_types})
        assert created.status_code == 201, created.text


@pytest.mark.timeout(1500)
async def test_twenty_kills_leave_every_effect_exactly_once(
        champions: Registry, private_stack: tuple[PrivateRedis, PrivateBroker], receiver: Receiver,
        tmp_path: Path) -> None:
    summary = await _run(CASES, KILLS, champions, private_stack, receiver, tmp_path)
    assert all(summary["kills"][c.name] >= MIN_KILLS for c in CASES), summary


@pytest.mark.timeout(1500)
async def test_redis_and_broker_outages_leave_every_effect_exactly_once(
        champions: Registry, private_stack: tuple[PrivateRedis, PrivateBroker], receiver: Receiver,
        tmp_path: Path) -> None:
    summary = await _run(CASES, OUTAGES, champions, private_stack, receiver, tmp_path)
    assert summary["outages"] == ["redis stopped for 10 s", "redis restarted empty", "broker restarted"], summary


async def _run(cases: list[Case], plan: list[Step], champions: Registry,
               private_stack: tuple[PrivateRedis, PrivateBroker], receiver: Receiver, tmp_path: Path) -> dict[str, Any]:
    """Publish the world through the plan's chaos, with every case's service running, then check every
    effect of every service happened exactly once."""
    redis_, broker = private_stack
    prefix = f"crash-{uuid.uuid4().hex[:8]}."
    settings = MeshSettings()
    settings.kafka.bootstrap_servers, settings.kafka.topic_prefix = broker.bootstrap, prefix
    settings.redis.url = redis_.url
    registry = TopicRegistry(prefix)
    topics = sorted({t for case in cases for t in (*case.topics, case.output)})
    ensure_topics(settings.kafka, registry, [*topics, "dlq"])
    events = _inputs(cases)
    expected = {case.name: case.expected(events) for case in cases}

    gw = harness.gateway_settings(worker=True)
    gw.kafka.bootstrap_servers, gw.kafka.topic_prefix = broker.bootstrap, prefix
    where = Where(redis_.url, settings.namespace, tmp_path / "nlp")
    env = service_env(champions, redis_.url, broker.bootstrap, prefix, tmp_path / "offline",
                      MESH_NLP__DATA_DIR=str(where.data_dir))
    log_dir = Path(os.environ.get("MESH_TEST_LOG_DIR", tmp_path / "logs"))
    svcs = [ServiceProcess(case.name, env, log_dir) for case in cases]
    publisher = KafkaPublisher(settings.kafka, registry)
    stop, published, chaos = threading.Event(), threading.Event(), Chaos()
    every = set().union(*expected.values())
    outs: dict[str, list[Any]] = {}
    try:
        async with harness.lifespan_client(harness.build(gw)) as http:
            await _subscribe(http, {ev.tenant_id for ev in events}, receiver.url, [c.output_type for c in cases])
            feeder = threading.Thread(target=_publish, args=(publisher, events, chaos, len(plan), published, stop),
                                      daemon=True)
            feeder.start()
            await asyncio.to_thread(_chaos, plan, svcs, redis_, broker, stop, chaos, random.Random(11))
            await asyncio.to_thread(published.wait, 300)
            for svc in svcs:
                await asyncio.to_thread(svc.wait_serving, 240)
            await await_until(lambda: set(_body_ids(receiver)) >= every, "every prediction delivered", 240.0)
            for case in cases:
                outs[case.name] = await asyncio.to_thread(
                    lambda c=case: list(TopicReader(settings.kafka, registry.physical(c.output))))  # type: ignore[misc]
            dlq = await asyncio.to_thread(drain, settings.kafka, registry.physical("dlq"), 1, None, 5.0)
    except BaseException:
        print("\n".join(chaos.timeline), "\n", "\n".join(svc.log_tail(60) for svc in svcs))
        raise
    finally:
        stop.set()
        for svc in svcs:
            svc.close()
        publisher.close()
    deliveries = Counter(_body_ids(receiver))
    summary: dict[str, Any] = {
        "services": [c.name for c in cases], "inputs": len(events), "kills": dict(chaos.kills),
        "exits_restarted": chaos.restarts_after_exit, "outages": chaos.outages,
        "webhook_posts": sum(deliveries.values()), "seconds": round(time.monotonic() - chaos.started, 1),
        "chaos": chaos.timeline}
    others: set[str] = set()
    for case in cases:
        ids = [logged.envelope.event_id for logged in outs[case.name] if case.counted(logged.envelope)]
        others |= {logged.envelope.event_id for logged in outs[case.name]} - set(ids)
        summary[case.name] = {"expected_outputs": len(expected[case.name]), "published_outputs": len(ids),
                              "distinct_output_ids": len(set(ids))}
        missing, extra = expected[case.name] - set(ids), set(ids) - expected[case.name]
        assert not missing and not extra, f"{case.name}: missing {len(missing)}, unexpected {len(extra)}"
    print(json.dumps(summary))  # the figures the report quotes
    assert not dlq, [dict(m.headers).get("dlq.reason") for m in dlq]
    assert set(deliveries) - others == every and set(deliveries.values()) == {1}, summary  # each one once
    assert len(_keys(receiver)) == len(deliveries)  # one idempotency key per prediction
    for case in cases:
        diffs = case.state_matches_replay(events, where)
        assert not diffs, (case.name, diffs[:5])
    return summary


def _body_ids(receiver: Receiver) -> list[str]:
    return [str(json.loads(body)["event_id"]) for _, body in receiver.calls]


def _keys(receiver: Receiver) -> set[str]:
    """The idempotency keys received (derived from the event id and the subscription)."""
    return {h[signing.HEADER_IDEMPOTENCY.lower()] for h, _ in receiver.calls}
